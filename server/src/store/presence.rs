//! What presence keeps across restarts: each user's sequence number,
//! last-seen time, and whether it was last online.

use std::collections::HashMap;

use anyhow::Result;
use sqlx::Row;
use switchboard_protocol::Id;

use super::{typed, Store};

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

    /// The stored presence of those of `users` who ever connected.
    pub async fn stored_presences(&self, users: &[Id]) -> Result<HashMap<Id, Stored>> {
        let select = "SELECT user_id, seq, last_seen FROM presence WHERE user_id IN";
        let rows = self.rows_in(select, users).await?;
        rows.iter()
            .map(|row| {
                let seq = u64::try_from(row.get::<i64, _>(1)).unwrap_or(0);
                Ok((typed(row.get(0))?, (seq, row.get(2))))
            })
            .collect()
    }

    /// Keeps each user's newest seq, last-seen time and status, all in one
    /// transaction; an older one (written late) never overwrites a newer
    /// one.
    pub async fn save_presences(&self, rows: &[Saved]) -> Result<()> {
        // One statement per chunk: a round trip per row was most of a
        // connect storm's database work. PostgreSQL refuses a statement
        // that updates a row twice: each user once, with its newest seq.
        let rows = newest_per_user(rows);
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(super::IN_LIST_MAX / 4) {
            let sql = format!(
                "INSERT INTO presence (user_id, seq, last_seen, online) VALUES {}
                 ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq,
                     last_seen = excluded.last_seen, online = excluded.online
                 WHERE presence.seq < excluded.seq",
                super::values_list(chunk.len(), 4)
            );
            let mut q = sqlx::query(&sql);
            for (user, seq, last_seen, online) in chunk {
                q = q
                    .bind(user.as_str())
                    .bind(*seq)
                    .bind(*last_seen)
                    .bind(*online);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `rows` with each user once, at its highest seq, in first-seen order.
fn newest_per_user(rows: &[Saved]) -> Vec<&Saved> {
    let mut at: HashMap<&Id, usize> = HashMap::with_capacity(rows.len());
    let mut newest: Vec<&Saved> = Vec::with_capacity(rows.len());
    for row in rows {
        match at.get(&row.0) {
            Some(&i) if newest[i].1 < row.1 => newest[i] = row,
            Some(_) => {}
            None => {
                at.insert(&row.0, newest.len());
                newest.push(row);
            }
        }
    }
    newest
}

#[cfg(test)]
mod tests {
    use switchboard_protocol::acl::PrincipalKind;

    use super::*;
    use crate::store::tests::temp_store;
    use crate::store::IN_LIST_MAX;

    #[test]
    fn each_user_once_at_its_highest_seq() {
        let (a, b): (Id, Id) = (
            "a".repeat(32).parse().unwrap(),
            "b".repeat(32).parse().unwrap(),
        );
        let rows = [
            (a.clone(), 3, Some(30), true),
            (b.clone(), 1, Some(10), true),
            (a.clone(), 5, Some(50), false),
            (a.clone(), 4, Some(40), true),
        ];
        let kept: Vec<_> = newest_per_user(&rows).into_iter().cloned().collect();
        assert_eq!(kept, [rows[2].clone(), rows[1].clone()]);
    }

    /// More users than one statement holds, half of them stored: each
    /// stored one comes back, the others are missing.
    #[tokio::test]
    async fn presences_of_more_users_than_one_statement_holds() {
        let store = temp_store().await;
        let users: Vec<Id> = (0..IN_LIST_MAX as u64 + 20)
            .map(|i| format!("{i:032x}").parse().unwrap())
            .collect();
        let mut saved = Vec::new();
        for (i, user) in users.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            store.ensure_user(user, PrincipalKind::User).await.unwrap();
            saved.push((user.clone(), i as i64 + 1, Some(i as i64), false));
        }
        store.save_presences(&saved).await.unwrap();
        let found = store.stored_presences(&users).await.unwrap();
        assert_eq!(found.len(), saved.len());
        for (user, seq, last_seen, _) in &saved {
            assert_eq!(found.get(user), Some(&(*seq as u64, *last_seen)));
        }
        // Written late, an older seq changes nothing; a newer one wins.
        let (older, newer) = (&saved[0].0, &saved[1].0);
        let late = [
            (older.clone(), 0, Some(99), true),
            (newer.clone(), 50, Some(77), true),
        ];
        store.save_presences(&late).await.unwrap();
        let found = store
            .stored_presences(&[older.clone(), newer.clone()])
            .await
            .unwrap();
        assert_eq!(found[older], (1, Some(0)));
        assert_eq!(found[newer], (50, Some(77)));
        assert_eq!(store.end_presences_left_online().await.unwrap(), 1);
    }
}
