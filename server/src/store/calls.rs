//! Call history and push tokens.

use anyhow::Result;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use switchboard_protocol::{Id, Sid};
use utoipa::ToSchema;

use super::Store;
use crate::clock::now_ms;

/// A call as the history shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub sid: String,
    pub caller: String,
    pub callee: String,
    /// `video` or `audio`.
    pub kind: String,
    /// `inviting`, `ringing`, `accepted` or `ended`.
    pub state: String,
    pub reason: Option<String>,
    pub accepted_by: Option<String>,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// Milliseconds from accept to end, for calls that were answered.
    pub duration_ms: Option<i64>,
}

const COLUMNS: &str =
    "sid, caller, callee, kind, state, reason, accepted_by, created_at, accepted_at, ended_at";

fn record(row: &AnyRow) -> CallRecord {
    let accepted_at: Option<i64> = row.get(8);
    let ended_at: Option<i64> = row.get(9);
    CallRecord {
        sid: row.get(0),
        caller: row.get(1),
        callee: row.get(2),
        kind: row.get(3),
        state: row.get(4),
        reason: row.get(5),
        accepted_by: row.get(6),
        created_at: row.get(7),
        accepted_at,
        ended_at,
        duration_ms: accepted_at.zip(ended_at).map(|(a, e)| e - a),
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PushToken {
    pub platform: String,
    pub token: String,
}

/// Most push tokens kept per user (one per installation; old ones go).
pub const MAX_PUSH_TOKENS: i64 = 10;

impl Store {
    pub async fn call_exists(&self, sid: &Sid) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM calls WHERE sid = $1")
            .bind(sid.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// Inserts or updates a call.
    pub async fn save_call(&self, c: &CallRecord, caller_device: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO calls (sid, caller, caller_device, callee, kind, state, reason, accepted_by, created_at, accepted_at, ended_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (sid) DO UPDATE SET state = $6, reason = $7, accepted_by = $8, accepted_at = $10, ended_at = $11",
        )
        .bind(&c.sid)
        .bind(&c.caller)
        .bind(caller_device)
        .bind(&c.callee)
        .bind(&c.kind)
        .bind(&c.state)
        .bind(c.reason.as_deref())
        .bind(c.accepted_by.as_deref())
        .bind(c.created_at)
        .bind(c.accepted_at)
        .bind(c.ended_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends every call still live (after a restart: their state was in the
    /// process that stopped) as `failed`, and returns them with their
    /// caller's device.
    pub async fn fail_live_calls(&self) -> Result<Vec<(CallRecord, Option<String>)>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS}, caller_device FROM calls WHERE state <> 'ended'"
        ))
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE calls SET state = 'ended', reason = 'failed', ended_at = $1 WHERE state <> 'ended'")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| {
                let failed = CallRecord {
                    state: "ended".into(),
                    reason: Some("failed".into()),
                    ended_at: Some(now),
                    ..record(r)
                };
                (failed, r.get(10))
            })
            .collect())
    }

    /// A user's calls, newest first, created before `before`.
    pub async fn calls_of(&self, user: &Id, before: i64, limit: i64) -> Result<Vec<CallRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM calls WHERE (caller = $1 OR callee = $1) AND created_at < $2
             ORDER BY created_at DESC, sid DESC LIMIT $3"
        ))
        .bind(user.as_str())
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect())
    }

    pub async fn call(&self, sid: &Sid) -> Result<Option<CallRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM calls WHERE sid = $1"))
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(record))
    }

    /// Registers a push token, keeping the newest `MAX_PUSH_TOKENS`.
    pub async fn add_push_token(&self, user: &Id, platform: &str, token: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM push_tokens WHERE user_id = $1 AND token = $2")
            .bind(user.as_str())
            .bind(token)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO push_tokens (user_id, platform, token, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user.as_str())
            .bind(platform)
            .bind(token)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "DELETE FROM push_tokens WHERE user_id = $1 AND token NOT IN
             (SELECT token FROM push_tokens WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2)",
        )
        .bind(user.as_str())
        .bind(MAX_PUSH_TOKENS)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn push_tokens(&self, user: &Id) -> Result<Vec<PushToken>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT platform, token FROM push_tokens WHERE user_id = $1 ORDER BY created_at DESC",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(platform, token)| PushToken { platform, token })
            .collect())
    }
}
