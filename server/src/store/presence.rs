//! What presence keeps: each node's devices online per user, each user's
//! last published state (seq, last-seen time, online), and when each node
//! last said it is alive. A user's presence is merged from every node's
//! rows in one transaction, so nodes never publish a seq twice or out of
//! turn.

use std::collections::HashMap;

use anyhow::Result;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use switchboard_presence::{device_rows, merged, Last};
use switchboard_protocol::payload::Presence;
use switchboard_protocol::Id;

use super::{json_list, typed, Store};

/// `online` as a number: the `Any` driver reads no SQLite boolean.
const ONLINE: &str = "CAST(CASE WHEN online THEN 1 ELSE 0 END AS BIGINT)";

/// A change of this node's devices for a user at `at`, or (`devices:
/// None`) a reason to merge again: other rows of the user changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub user: Id,
    pub devices: Option<Vec<String>>,
    pub at: i64,
}

/// A user's presence over every node as stored, and its new `isConnected`
/// when the online status changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub user: Id,
    pub presence: Presence,
    pub is_connected: Option<bool>,
}

impl Store {
    /// Stores `node`'s devices of each change and merges each user's
    /// presence over every node, with a seq one higher, in one
    /// transaction (the users' presence rows locked first, in id order).
    /// A user comes once in `changes` (the service queues one change per
    /// user).
    pub async fn merge_presences(&self, node: &str, changes: &[Change]) -> Result<Vec<Merged>> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut changes: Vec<&Change> = changes.iter().collect();
        changes.sort_by(|a, b| a.user.cmp(&b.user));
        debug_assert!(changes.windows(2).all(|w| w[0].user != w[1].user));
        let mut tx = self.begin().await?;
        let out = self.merge(&mut tx, node, &changes).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Says `node` is alive at `now`; `false` if it was not listed (new,
    /// or removed as silent by another node).
    pub async fn heartbeat(&self, node: &str, now: i64) -> Result<bool> {
        let seen = sqlx::query("UPDATE nodes SET seen_at = $2 WHERE id = $1")
            .bind(node)
            .bind(now)
            .execute(&self.pool)
            .await?;
        if seen.rows_affected() > 0 {
            return Ok(true);
        }
        sqlx::query("INSERT INTO nodes (id, seen_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(node)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(false)
    }

    /// Removes the nodes other than `node` silent since before `cutoff`,
    /// and their devices; the users who had devices there, to merge
    /// again. Of nodes sweeping at once, each dead node's rows go to one:
    /// the first statement locks their `nodes` rows (a heartbeat waits,
    /// then finds its node gone). A device row the dead node added
    /// meanwhile keeps its `nodes` row from going: the sweep fails, and
    /// the next one removes it.
    pub async fn sweep_nodes(&self, node: &str, cutoff: i64) -> Result<Vec<Id>> {
        let mut tx = self.begin().await?;
        let dead: Vec<String> = sqlx::query_scalar(
            "UPDATE nodes SET seen_at = seen_at WHERE seen_at < $1 AND id <> $2 RETURNING id",
        )
        .bind(cutoff)
        .bind(node)
        .fetch_all(&mut *tx)
        .await?;
        let mut users = Vec::new();
        for node in &dead {
            users.extend(remove_devices_of(&mut tx, node).await?);
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(node)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        users.sort();
        users.dedup();
        Ok(users)
    }

    /// A node starting. Every user stored online with no device on any
    /// node (a crash of the last node, or rows from before devices were
    /// kept) is set offline with a seq one higher, in one statement, as
    /// nobody can be watching them from a live node. Then the devices this
    /// node's previous run left are removed: returned are how many users
    /// were set offline, and the users whose devices were removed, to
    /// merge again (another node may hold them).
    pub async fn start_node(&self, node: &str, now: i64) -> Result<(u64, Vec<Id>)> {
        let mut tx = self.begin().await?;
        let orphans = sqlx::query(
            "UPDATE presence SET seq = seq + 1, online = FALSE WHERE online AND NOT EXISTS
             (SELECT 1 FROM presence_devices d WHERE d.user_id = presence.user_id)",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut left = remove_devices_of(&mut tx, node).await?;
        tx.commit().await?;
        self.heartbeat(node, now).await?;
        left.sort();
        left.dedup();
        Ok((orphans, left))
    }

    /// Whether a node other than `node` has a device of `user` stored.
    pub async fn online_elsewhere(&self, user: &Id, node: &str) -> Result<bool> {
        let found = sqlx::query(
            "SELECT 1 FROM presence_devices WHERE user_id = $1 AND node_id <> $2 LIMIT 1",
        )
        .bind(user.as_str())
        .bind(node)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// The stored presence of `users` over every node; a user never
    /// published is left out.
    pub async fn presences(&self, users: &[Id]) -> Result<HashMap<Id, Presence>> {
        let select = format!(
            "SELECT p.user_id, p.seq, p.last_seen, {ONLINE}, d.device FROM presence p
             LEFT JOIN presence_devices d ON d.user_id = p.user_id WHERE p.user_id IN"
        );
        let rows = self.rows_in(&select, users).await?;
        let mut out: HashMap<Id, Presence> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let user: Id = typed(row.get(0))?;
            let p = out.entry(user).or_insert_with(|| Presence {
                online: row.get::<i64, _>(3) != 0,
                devices: Vec::new(),
                last_seen: row.get(2),
                seq: u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
            });
            if let Some(device) = row.get::<Option<String>, _>(4) {
                p.devices.push(device);
            }
        }
        for p in out.values_mut() {
            p.devices.sort();
            p.devices.dedup();
        }
        Ok(out)
    }
}

/// Removes `node`'s devices; the users who had any.
async fn remove_devices_of(tx: &mut AnyConnection, node: &str) -> Result<Vec<Id>> {
    let users: Vec<String> =
        sqlx::query_scalar("DELETE FROM presence_devices WHERE node_id = $1 RETURNING user_id")
            .bind(node)
            .fetch_all(&mut *tx)
            .await?;
    users.into_iter().map(typed).collect()
}

impl Store {
    /// `merge_presences` within its transaction, `changes` in id order.
    async fn merge(
        &self,
        tx: &mut AnyConnection,
        node: &str,
        changes: &[&Change],
    ) -> Result<Vec<Merged>> {
        let ids: Vec<&str> = changes.iter().map(|c| c.user.as_str()).collect();
        let ids = json_list(&ids);
        // What was last published of each user, each row locked before
        // any device changes. SQLite's transaction holds the database's
        // write lock already (`BEGIN IMMEDIATE`); PostgreSQL's locks are
        // per row, so each user gets a row to lock.
        let users = self.strings_at(1);
        let sql = if self.sqlite {
            format!(
                "SELECT user_id, seq, {ONLINE}, last_seen FROM presence
                 WHERE user_id IN (SELECT value FROM {users})"
            )
        } else {
            format!(
                "INSERT INTO presence (user_id, seq, online) SELECT value, 0, FALSE FROM {users}
                 ON CONFLICT (user_id) DO UPDATE SET seq = presence.seq
                 RETURNING user_id, seq, {ONLINE}, last_seen"
            )
        };
        let last: Vec<AnyRow> = sqlx::query(&sql).bind(&ids).fetch_all(&mut *tx).await?;
        if !self.sqlite {
            // A node swept as silent stores nothing until it lists itself
            // again. Its row shared, a sweep (which locks the row first)
            // waits for this merge, or this finds the row gone. SQLite has
            // one node, and one writer at a time.
            let listed = sqlx::query("SELECT 1 FROM nodes WHERE id = $1 FOR SHARE")
                .bind(node)
                .fetch_optional(&mut *tx)
                .await?;
            anyhow::ensure!(
                listed.is_some(),
                "node {node} is not listed: swept as silent"
            );
        }
        let mut lasts: HashMap<String, Last> = HashMap::with_capacity(last.len());
        for row in &last {
            let last = Last {
                seq: u64::try_from(row.get::<i64, _>(1)).unwrap_or(0),
                online: row.get::<i64, _>(2) != 0,
                last_seen: row.get(3),
            };
            lasts.insert(row.get(0), last);
        }

        // Every node's devices of these users, by user: (node, device).
        let sql = format!(
            "SELECT user_id, node_id, device FROM presence_devices
             WHERE user_id IN (SELECT value FROM {users})"
        );
        let rows: Vec<AnyRow> = sqlx::query(&sql).bind(&ids).fetch_all(&mut *tx).await?;
        let mut held: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for row in &rows {
            let user = held.entry(row.get(0)).or_default();
            user.push((row.get(1), row.get(2)));
        }

        // This node's rows change by what went and what came.
        let (mut gone, mut come) = (Vec::new(), Vec::new());
        for change in changes {
            let Some(listed) = &change.devices else {
                continue;
            };
            let user = change.user.as_str();
            let theirs = held.get(user).into_iter().flatten();
            let mine: Vec<&str> = (theirs.filter(|(n, _)| n == node))
                .map(|(_, d)| d.as_str())
                .collect();
            let (g, c) = device_rows(&mine, listed);
            gone.extend(g.into_iter().map(|d| [user, d]));
            come.extend(c.into_iter().map(|d| [user, d]));
        }
        if !gone.is_empty() {
            let sql = format!(
                "DELETE FROM presence_devices WHERE node_id = $1
                 AND (user_id, device) IN (SELECT value ->> 0, value ->> 1 FROM {})",
                self.arrays_at(2)
            );
            let q = sqlx::query(&sql).bind(node).bind(json_list(&gone));
            q.execute(&mut *tx).await?;
        }
        if !come.is_empty() {
            let sql = format!(
                "INSERT INTO presence_devices (user_id, node_id, device)
                 SELECT value ->> 0, $1, value ->> 1 FROM {}",
                self.arrays_at(2)
            );
            let q = sqlx::query(&sql).bind(node).bind(json_list(&come));
            q.execute(&mut *tx).await?;
        }

        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            let user = change.user.as_str();
            let rows = held.get(user).into_iter().flatten();
            let devices: Vec<&str> = match &change.devices {
                // This node's rows are now its list.
                Some(listed) => (rows.filter(|(n, _)| n != node))
                    .map(|(_, d)| d.as_str())
                    .chain(listed.iter().map(String::as_str))
                    .collect(),
                None => rows.map(|(_, d)| d.as_str()).collect(),
            };
            let last = lasts.get(user).copied().filter(|l| l.seq > 0);
            let (presence, is_connected) = merged(last, devices, change.at);
            out.push(Merged {
                user: change.user.clone(),
                presence,
                is_connected,
            });
        }
        let stored: Vec<(&str, i64, Option<i64>, bool)> = (out.iter())
            .map(|m| {
                let seq = i64::try_from(m.presence.seq).unwrap_or(i64::MAX);
                let p = &m.presence;
                (m.user.as_str(), seq, p.last_seen, p.online)
            })
            .collect();
        let sql = format!(
            "INSERT INTO presence (user_id, seq, last_seen, online)
             SELECT value ->> 0, CAST(value ->> 1 AS BIGINT), CAST(value ->> 2 AS BIGINT),
                 CAST(value ->> 3 AS BOOLEAN)
             FROM {} WHERE TRUE
             ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq,
                 last_seen = excluded.last_seen, online = excluded.online",
            self.arrays_at(1)
        );
        let q = sqlx::query(&sql).bind(json_list(&stored));
        q.execute(&mut *tx).await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use switchboard_protocol::acl::PrincipalKind;

    use super::*;
    use crate::store::tests::temp_store;

    fn change(user: &Id, devices: Option<&[&str]>, at: i64) -> Change {
        Change {
            user: user.clone(),
            devices: devices.map(|d| d.iter().map(|s| s.to_string()).collect()),
            at,
        }
    }

    /// Users on two nodes: each user's devices are merged over both, with
    /// one seq.
    #[tokio::test]
    async fn presences_merge_over_nodes() {
        let store = temp_store().await;
        let users: Vec<Id> = (0..300)
            .map(|i| format!("{i:032x}").parse().unwrap())
            .collect();
        for user in &users {
            store.ensure_user(user, PrincipalKind::User).await.unwrap();
        }
        let on = |devices: &'static [&'static str], at| {
            let list: Vec<Change> = users.iter().map(|u| change(u, Some(devices), at)).collect();
            list
        };
        assert!(!store.heartbeat("n1", 1).await.unwrap(), "new");
        assert!(!store.heartbeat("n2", 1).await.unwrap());
        let merged = store
            .merge_presences("n1", &on(&["phone"], 10))
            .await
            .unwrap();
        assert_eq!(merged.len(), users.len());
        assert!(merged
            .iter()
            .all(|m| m.presence.seq == 1 && m.is_connected == Some(true)));
        let merged = store
            .merge_presences("n2", &on(&["tablet"], 20))
            .await
            .unwrap();
        assert!(merged
            .iter()
            .all(|m| m.presence.devices == ["phone", "tablet"]
                && m.presence.seq == 2
                && m.is_connected.is_none()));
        let merged = store.merge_presences("n1", &on(&[], 30)).await.unwrap();
        assert!(merged
            .iter()
            .all(|m| m.presence.devices == ["tablet"] && m.presence.online));
        let stored = store.presences(&users).await.unwrap();
        assert_eq!(stored.len(), users.len());
        let p = &stored[&users[0]];
        assert_eq!(
            (p.online, p.devices.as_slice(), p.seq, p.last_seen),
            (true, &["tablet".to_string()][..], 3, Some(30))
        );
        // Node 2 goes silent: swept, its users merge offline.
        assert!(store.heartbeat("n1", 200).await.unwrap());
        assert_eq!(store.sweep_nodes("n1", 60).await.unwrap(), users);
        assert_eq!(store.sweep_nodes("n1", 60).await.unwrap(), [], "once");
        let late = store.merge_presences("n2", &on(&["tablet"], 75)).await;
        assert!(late.is_err(), "a swept node adds no device until listed");
        let again: Vec<Change> = users.iter().map(|u| change(u, None, 70)).collect();
        let merged = store.merge_presences("n1", &again).await.unwrap();
        assert!(merged
            .iter()
            .all(|m| !m.presence.online && m.is_connected == Some(false) && m.presence.seq == 4));
        assert!(!store.heartbeat("n2", 80).await.unwrap(), "swept: told so");
    }

    /// A node's rows change by the devices that went and came, and the
    /// presence is every node's devices together.
    #[tokio::test]
    async fn a_nodes_devices_change_by_what_went_and_came() {
        let store = temp_store().await;
        let user: Id = "d".repeat(32).parse().unwrap();
        store.ensure_user(&user, PrincipalKind::User).await.unwrap();
        for node in ["n1", "n2"] {
            store.heartbeat(node, 1).await.unwrap();
        }
        assert!(store.merge_presences("n1", &[]).await.unwrap().is_empty());
        // (node, its devices or a merge again, rows stored, devices
        // published, online)
        type Step<'a> = (
            &'a str,
            Option<&'a [&'a str]>,
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            bool,
        );
        let steps: [Step; 6] = [
            ("n1", Some(&["phone"]), &[("n1", "phone")], &["phone"], true),
            // Replaced in one merge.
            ("n1", Some(&["web"]), &[("n1", "web")], &["web"], true),
            // The same device on two nodes (a takeover between them).
            (
                "n2",
                Some(&["tablet", "web"]),
                &[("n1", "web"), ("n2", "tablet"), ("n2", "web")],
                &["tablet", "web"],
                true,
            ),
            (
                "n1",
                Some(&[]),
                &[("n2", "tablet"), ("n2", "web")],
                &["tablet", "web"],
                true,
            ),
            (
                "n1",
                None,
                &[("n2", "tablet"), ("n2", "web")],
                &["tablet", "web"],
                true,
            ),
            ("n2", Some(&[]), &[], &[], false),
        ];
        for (i, (node, devices, rows, published, online)) in steps.into_iter().enumerate() {
            let at = 10 + i as i64;
            let merged = (store
                .merge_presences(node, &[change(&user, devices, at)])
                .await)
                .unwrap();
            let p = &merged[0].presence;
            let devices: Vec<&str> = p.devices.iter().map(String::as_str).collect();
            assert_eq!(
                (devices.as_slice(), p.online, p.seq),
                (published, online, i as u64 + 1),
                "step {i}"
            );
            let stored: Vec<(String, String)> = sqlx::query_as(
                "SELECT node_id, device FROM presence_devices ORDER BY node_id, device",
            )
            .fetch_all(&store.pool)
            .await
            .unwrap();
            let stored: Vec<(&str, &str)> = stored
                .iter()
                .map(|(n, d)| (n.as_str(), d.as_str()))
                .collect();
            assert_eq!(stored, rows, "step {i}");
            assert_eq!(
                &store.presences(std::slice::from_ref(&user)).await.unwrap()[&user],
                p
            );
        }
    }

    #[tokio::test]
    async fn a_starting_node_clears_its_last_runs_devices_and_finds_orphans() {
        let store = temp_store().await;
        let (a, b, c): (Id, Id, Id) = (
            "a".repeat(32).parse().unwrap(),
            "b".repeat(32).parse().unwrap(),
            "c".repeat(32).parse().unwrap(),
        );
        for user in [&a, &b, &c] {
            store.ensure_user(user, PrincipalKind::User).await.unwrap();
        }
        for node in ["n1", "n2"] {
            store.heartbeat(node, 1).await.unwrap();
        }
        store
            .merge_presences("n1", &[change(&a, Some(&["phone"]), 1)])
            .await
            .unwrap();
        store
            .merge_presences(
                "n2",
                &[change(&b, Some(&["phone"]), 1), change(&c, Some(&[]), 1)],
            )
            .await
            .unwrap();
        let left = store.start_node("n1", 5).await.unwrap();
        assert_eq!(
            left,
            (0, vec![a.clone()]),
            "its device removed, nobody set offline"
        );
        // Stored online with no device anywhere (a version before device
        // rows): set offline at once, with a seq one higher.
        sqlx::query("DELETE FROM presence_devices")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(store.start_node("n3", 6).await.unwrap(), (2, vec![]));
        let stored = store.presences(&[a.clone(), b.clone()]).await.unwrap();
        for user in [&a, &b] {
            let p = &stored[user];
            assert_eq!((p.online, p.seq), (false, 2), "{user}");
        }
    }
}
