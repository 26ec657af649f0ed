//! Call history and push tokens.

use anyhow::Result;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use switchboard_protocol::payload::{CallKind, CallStateKind, EndReason};
use switchboard_protocol::{ClientId, Id, Sid};
use utoipa::ToSchema;

use super::{typed, Store};
use crate::clock::now_ms;

/// A call as stored: the history, and what a restart needs to end the
/// calls it found live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub sid: Sid,
    /// With the device it called from.
    pub caller: ClientId,
    pub callee: Id,
    pub kind: CallKind,
    pub state: CallStateKind,
    pub reason: Option<EndReason>,
    pub accepted_by: Option<ClientId>,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub ended_at: Option<i64>,
}

const COLUMNS: &str = "sid, caller, caller_device, callee, kind, state, reason, accepted_by, \
                       created_at, accepted_at, ended_at";

fn record(row: &AnyRow) -> Result<CallRecord> {
    let device: Option<String> = row.get(2);
    let reason: Option<String> = row.get(6);
    let accepted_by: Option<String> = row.get(7);
    Ok(CallRecord {
        sid: typed(row.get(0))?,
        caller: ClientId::new(typed(row.get(1))?, device.map(typed).transpose()?),
        callee: typed(row.get(3))?,
        kind: typed(row.get(4))?,
        state: typed(row.get(5))?,
        reason: reason.map(typed).transpose()?,
        accepted_by: accepted_by.map(typed).transpose()?,
        created_at: row.get(8),
        accepted_at: row.get(9),
        ended_at: row.get(10),
    })
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
    pub async fn save_call(&self, c: &CallRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO calls ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (sid) DO UPDATE SET state = $6, reason = $7, accepted_by = $8, accepted_at = $10, ended_at = $11",
        ))
        .bind(c.sid.as_str())
        .bind(c.caller.id.as_str())
        .bind(c.caller.device.as_ref().map(|d| d.as_str()))
        .bind(c.callee.as_str())
        .bind(c.kind.as_str())
        .bind(c.state.as_str())
        .bind(c.reason.map(EndReason::as_str))
        .bind(c.accepted_by.as_ref().map(ClientId::to_string))
        .bind(c.created_at)
        .bind(c.accepted_at)
        .bind(c.ended_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends every call still live (after a restart: their state was in the
    /// process that stopped) as `failed`, and returns them so ended. A row
    /// that does not read back is an error, and then no call is changed.
    pub async fn fail_live_calls(&self) -> Result<Vec<CallRecord>> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM calls WHERE state <> 'ended'"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let live = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        sqlx::query("UPDATE calls SET state = 'ended', reason = 'failed', ended_at = $1 WHERE state <> 'ended'")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(live
            .into_iter()
            .map(|call| CallRecord {
                state: CallStateKind::Ended,
                reason: Some(EndReason::Failed),
                ended_at: Some(now),
                ..call
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
        rows.iter().map(record).collect()
    }

    pub async fn call(&self, sid: &Sid) -> Result<Option<CallRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM calls WHERE sid = $1"))
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record).transpose()
    }

    /// Registers a push token, keeping the newest `MAX_PUSH_TOKENS`.
    pub async fn add_push_token(&self, user: &Id, platform: &str, token: &str) -> Result<()> {
        let mut tx = self.begin().await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;
    use switchboard_protocol::acl::PrincipalKind;

    const CALLER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const CALLEE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[tokio::test]
    async fn calls_read_back_as_saved_and_live_ones_end_failed() {
        let store = temp_store().await;
        let callee: Id = CALLEE.parse().unwrap();
        for id in [CALLER, CALLEE] {
            let id = id.parse().unwrap();
            store.ensure_user(&id, PrincipalKind::User).await.unwrap();
        }
        let answered = CallRecord {
            sid: "1".repeat(32).parse().unwrap(),
            caller: format!("{CALLER}:phone").parse().unwrap(),
            callee: callee.clone(),
            kind: CallKind::Audio,
            state: CallStateKind::Ended,
            reason: Some(EndReason::Hangup),
            accepted_by: Some(format!("{CALLEE}:tablet").parse().unwrap()),
            created_at: 1,
            accepted_at: Some(2),
            ended_at: Some(5),
        };
        let ringing = CallRecord {
            sid: "2".repeat(32).parse().unwrap(),
            caller: CALLER.parse().unwrap(),
            kind: CallKind::Video,
            state: CallStateKind::Ringing,
            reason: None,
            accepted_by: None,
            created_at: 3,
            accepted_at: None,
            ended_at: None,
            ..answered.clone()
        };
        for call in [&answered, &ringing] {
            store.save_call(call).await.unwrap();
        }
        assert_eq!(
            store.call(&answered.sid).await.unwrap().as_ref(),
            Some(&answered)
        );
        assert_eq!(
            store.calls_of(&callee, i64::MAX, 10).await.unwrap(),
            [ringing.clone(), answered.clone()],
            "newest first"
        );

        let failed = store.fail_live_calls().await.unwrap();
        let [call] = &failed[..] else {
            panic!("one live call: {failed:?}")
        };
        assert_eq!(
            (call.state, call.reason, &call.caller),
            (
                CallStateKind::Ended,
                Some(EndReason::Failed),
                &ringing.caller
            )
        );
        assert_eq!(store.call(&ringing.sid).await.unwrap().as_ref(), Some(call));
        assert!(store.fail_live_calls().await.unwrap().is_empty());
    }
}
