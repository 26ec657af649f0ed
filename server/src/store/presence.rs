//! What presence keeps across restarts: sequence numbers and last-seen
//! times.

use anyhow::Result;
use switchboard_protocol::Id;

use super::{typed, Store};

impl Store {
    /// Every user's stored `(id, seq, lastSeen)`, users without a row
    /// getting one with seq 0. The caller publishes everyone offline with
    /// seq + 1 and saves that.
    pub async fn presence_rows(&self) -> Result<Vec<(Id, i64, Option<i64>)>> {
        sqlx::query(
            "INSERT INTO presence (user_id, seq, last_seen)
             SELECT id, 0, NULL FROM users WHERE id NOT IN (SELECT user_id FROM presence)",
        )
        .execute(&self.pool)
        .await?;
        let rows: Vec<(String, i64, Option<i64>)> =
            sqlx::query_as("SELECT user_id, seq, last_seen FROM presence")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, seq, last_seen)| Ok((typed(id)?, seq, last_seen)))
            .collect()
    }

    /// Raises every stored seq by one: the restart's own change.
    pub async fn bump_presence_seqs(&self) -> Result<()> {
        sqlx::query("UPDATE presence SET seq = seq + 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps a user's newest seq and last-seen time; an older one (written
    /// late) never overwrites a newer one.
    pub async fn save_presence(&self, user: &Id, seq: i64, last_seen: Option<i64>) -> Result<()> {
        sqlx::query(
            "INSERT INTO presence (user_id, seq, last_seen) VALUES ($1, $2, $3)
             ON CONFLICT (user_id) DO UPDATE SET seq = $2, last_seen = $3 WHERE presence.seq < $2",
        )
        .bind(user.as_str())
        .bind(seq)
        .bind(last_seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
