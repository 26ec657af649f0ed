//! What presence keeps across restarts: each user's sequence number,
//! last-seen time, and whether it was last online.

use anyhow::Result;
use switchboard_protocol::Id;

use super::Store;

/// A user's stored presence: `(seq, lastSeen)`, offline.
pub type Stored = (u64, Option<i64>);

/// A presence to store: `(user, seq, lastSeen, online)`.
pub type Saved = (Id, i64, Option<i64>, bool);

impl Store {
    /// Sets offline, with a seq one higher, every user stored as online:
    /// those the last stop (or crash) left online. Returns how many.
    pub async fn end_presences_left_online(&self) -> Result<u64> {
        let done = sqlx::query("UPDATE presence SET seq = seq + 1, online = FALSE WHERE online")
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// A user's stored presence; `None` for one that never connected.
    pub async fn stored_presence(&self, user: &Id) -> Result<Option<Stored>> {
        let row: Option<(i64, Option<i64>)> =
            sqlx::query_as("SELECT seq, last_seen FROM presence WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(seq, last_seen)| (u64::try_from(seq).unwrap_or(0), last_seen)))
    }

    /// Keeps each user's newest seq, last-seen time and status, all in one
    /// transaction; an older one (written late) never overwrites a newer
    /// one.
    pub async fn save_presences(&self, rows: &[Saved]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for (user, seq, last_seen, online) in rows {
            sqlx::query(
                "INSERT INTO presence (user_id, seq, last_seen, online) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id) DO UPDATE SET seq = $2, last_seen = $3, online = $4
                 WHERE presence.seq < $2",
            )
            .bind(user.as_str())
            .bind(*seq)
            .bind(*last_seen)
            .bind(*online)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
