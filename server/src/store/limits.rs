//! Per-user rate limits, counted here so that a user's budget is the same
//! however many nodes it talks to. Each key is a GCRA cell: its
//! theoretical arrival time moves one interval further per use, and a use
//! is allowed while that time is at most a burst ahead of now. One
//! statement decides and records, so two nodes never both spend the last
//! use.

use anyhow::Result;
use sqlx::AnyConnection;

use super::Store;

/// Spends one of `key`'s `per_minute` uses (which may all come at once) at
/// `now`, on `conn` (in its transaction, if it has one); whether there
/// was one left.
pub(super) async fn spend(
    conn: &mut AnyConnection,
    key: &str,
    now: i64,
    per_minute: u32,
) -> Result<bool> {
    let interval = 60_000 / i64::from(per_minute.max(1));
    let burst = interval * (i64::from(per_minute) - 1);
    let spent: Option<i64> = sqlx::query_scalar(
        "INSERT INTO rate_limits (key, tat) VALUES ($1, $2 + $3)
             ON CONFLICT (key) DO UPDATE
                 SET tat = CASE WHEN rate_limits.tat > $2 THEN rate_limits.tat ELSE $2 END + $3
                 WHERE rate_limits.tat - $2 <= $4
             RETURNING tat",
    )
    .bind(key)
    .bind(now)
    .bind(interval)
    .bind(burst)
    .fetch_optional(conn)
    .await?;
    Ok(spent.is_some())
}

impl Store {
    /// Spends one of `key`'s `per_minute` uses at `now` (`spend`).
    pub async fn spend(&self, key: &str, now: i64, per_minute: u32) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        spend(&mut conn, key, now, per_minute).await
    }

    /// Forgets the keys whose budget is full again by `now`.
    pub async fn forget_spent(&self, now: i64) -> Result<u64> {
        let gone = sqlx::query("DELETE FROM rate_limits WHERE tat <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(gone.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::tests::temp_store;

    /// Three a minute: an interval of 20 s, all three at once.
    #[tokio::test]
    async fn a_key_spends_its_burst_then_one_use_per_interval() {
        let store = temp_store().await;
        // (time, whether a use is left)
        let steps = [
            (0, true),
            (0, true),
            (0, true),
            (0, false),
            (19_999, false),
            (20_000, true),
            (20_000, false),
            (100_000, true),
            (100_000, true),
            (100_000, true),
            (100_000, false),
        ];
        for (at, want) in steps {
            assert_eq!(store.spend("k", at, 3).await.unwrap(), want, "at {at}");
        }
        assert!(
            store.spend("other", 100_000, 3).await.unwrap(),
            "keys apart"
        );
        assert_eq!(
            store.forget_spent(159_999).await.unwrap(),
            1,
            "other is full again"
        );
        assert_eq!(store.forget_spent(160_000).await.unwrap(), 1);
    }
}
