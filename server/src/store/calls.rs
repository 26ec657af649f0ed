//! Calls, decided here: a transition locks the rows of the users it
//! involves, reads their live calls, runs the state machine (the
//! signalling crate) and stores what changed, in one transaction, so two
//! nodes never decide on the same calls at once. Also the call history
//! and push tokens.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use switchboard_protocol::payload::{EndReason, LegState};
use switchboard_protocol::{ClientId, Id, Sid};
use switchboard_signalling::{Call, Calls};
use utoipa::ToSchema;

use super::{typed, Store};
use crate::clock::now_ms;

const COLUMNS: &str = "sid, caller, caller_device, callee, kind, state, reason, accepted_by, \
                       created_at, accepted_at, ended_at, legs, ring_deadline, version, node";

fn call(row: &AnyRow) -> Result<Call> {
    let device: Option<String> = row.get(2);
    let reason: Option<String> = row.get(6);
    let accepted_by: Option<String> = row.get(7);
    let legs: String = row.get(11);
    let legs: BTreeMap<ClientId, LegState> = serde_json::from_str(&legs)
        .with_context(|| format!("malformed legs {legs:?} in the database"))?;
    let version: i64 = row.get(13);
    Ok(Call {
        sid: typed(row.get(0))?,
        caller: ClientId::new(typed(row.get(1))?, device.map(typed).transpose()?),
        callee: typed(row.get(3))?,
        kind: typed(row.get(4))?,
        state: typed(row.get(5))?,
        reason: reason.map(typed).transpose()?,
        legs,
        accepted_by: accepted_by.map(typed).transpose()?,
        created_at: row.get(8),
        accepted_at: row.get(9),
        ended_at: row.get(10),
        ring_deadline: row.get(12),
        version: version.try_into().context("a negative call version")?,
        node: row.get(14),
    })
}

/// The calls of some users, read with their rows locked: what a
/// transition may look at. Dropped without `store`, nothing changes.
pub struct LockedCalls {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    pub calls: Calls,
    /// The version of each call as read.
    read: HashMap<Sid, u64>,
}

impl LockedCalls {
    /// Stores `changed` (calls of the locked users) and commits; `false`,
    /// with nothing stored, when a new call's sid was taken meanwhile (by
    /// a call of other users, whose rows were not locked) or a call read
    /// changed meanwhile.
    pub async fn store(mut self, changed: &[Call]) -> Result<bool> {
        let insert = format!(
            "INSERT INTO calls ({COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (sid) DO NOTHING",
        );
        for c in changed {
            let legs = serde_json::to_string(&c.legs).expect("legs serialize");
            let version = i64::try_from(c.version).context("a call version past i64")?;
            let written = match self.read.get(&c.sid) {
                None => sqlx::query(&insert)
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
                    .bind(legs)
                    .bind(c.ring_deadline)
                    .bind(version)
                    .bind(c.node.as_deref()),
                Some(&was) => sqlx::query(
                    "UPDATE calls SET state = $2, reason = $3, accepted_by = $4, accepted_at = $5,
                         ended_at = $6, legs = $7, version = $8, node = $9
                     WHERE sid = $1 AND version = $10",
                )
                .bind(c.sid.as_str())
                .bind(c.state.as_str())
                .bind(c.reason.map(EndReason::as_str))
                .bind(c.accepted_by.as_ref().map(ClientId::to_string))
                .bind(c.accepted_at)
                .bind(c.ended_at)
                .bind(legs)
                .bind(version)
                .bind(c.node.as_deref())
                .bind(i64::try_from(was).context("a call version past i64")?),
            }
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
            if written == 0 {
                return Ok(false);
            }
        }
        self.tx.commit().await?;
        Ok(true)
    }

    /// Spends one of `key`'s `per_minute` uses at `now` in this
    /// transaction: kept only if the transition is stored.
    pub async fn spend(&mut self, key: &str, now: i64, per_minute: u32) -> Result<bool> {
        super::limits::spend(&mut self.tx, key, now, per_minute).await
    }

    /// The nodes heard from since `since` (ms), with how many accepted
    /// calls each holds: where a new call's media may go.
    pub async fn loads(&mut self, since: i64) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT n.id, (SELECT count(*) FROM calls c WHERE c.state = 'accepted' AND c.node = n.id)
             FROM nodes n WHERE n.seen_at >= $1",
        )
        .bind(since)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok((rows.into_iter())
            .map(|(node, held)| (node, held.try_into().unwrap_or(0)))
            .collect())
    }
}

/// Who a call is between, never changing: what locking its calls needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parties {
    pub sid: Sid,
    pub caller: Id,
    pub callee: Id,
}

fn parties(row: &AnyRow) -> Result<Parties> {
    Ok(Parties {
        sid: typed(row.get(0))?,
        caller: typed(row.get(1))?,
        callee: typed(row.get(2))?,
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
    /// Locks `users`' rows (in id order, so transitions never deadlock),
    /// then reads their live calls and the call `sid`, if named (live or
    /// not). On SQLite the write lock taken at `BEGIN` does the locking.
    pub async fn lock_calls(&self, users: [&Id; 2], sid: Option<&Sid>) -> Result<LockedCalls> {
        let mut tx = self.begin().await?;
        let mut ids = users;
        ids.sort();
        if !self.sqlite {
            for id in ids.iter().take(if ids[0] == ids[1] { 1 } else { 2 }) {
                // Not FOR UPDATE: that would also wait for (and block) the
                // foreign-key checks of rows naming these users.
                sqlx::query("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let mut rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM calls
             WHERE state <> 'ended' AND (caller IN ($1, $2) OR callee IN ($1, $2))"
        ))
        .bind(ids[0].as_str())
        .bind(ids[1].as_str())
        .fetch_all(&mut *tx)
        .await?;
        if let Some(sid) = sid {
            let one = sqlx::query(&format!("SELECT {COLUMNS} FROM calls WHERE sid = $1"))
                .bind(sid.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            rows.extend(one);
        }
        let mut calls = Calls::new();
        let mut read = HashMap::new();
        for row in &rows {
            let call = call(row)?;
            read.insert(call.sid.clone(), call.version);
            calls.apply(call);
        }
        Ok(LockedCalls { tx, calls, read })
    }

    /// Who the call `sid` is between, if it exists.
    pub async fn call_parties(&self, sid: &Sid) -> Result<Option<Parties>> {
        let row = sqlx::query("SELECT sid, caller, callee FROM calls WHERE sid = $1")
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(parties).transpose()
    }

    /// Unanswered calls whose ring deadline is `now` or past.
    pub async fn calls_due(&self, now: i64) -> Result<Vec<Parties>> {
        let rows = sqlx::query(
            "SELECT sid, caller, callee FROM calls
             WHERE state IN ('inviting', 'ringing') AND ring_deadline <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(parties).collect()
    }

    /// Accepted calls held by `node` (or by no node: accepted before
    /// nodes held calls).
    pub async fn calls_held_by(&self, node: &str) -> Result<Vec<Parties>> {
        let rows = sqlx::query(
            "SELECT sid, caller, callee FROM calls
             WHERE state = 'accepted' AND (node = $1 OR node IS NULL)",
        )
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(parties).collect()
    }

    /// Accepted calls held by a node no longer listed in `nodes` (silent
    /// past its TTL, and swept).
    pub async fn calls_held_by_gone_nodes(&self) -> Result<Vec<Parties>> {
        let rows = sqlx::query(
            "SELECT sid, caller, callee FROM calls
             WHERE state = 'accepted' AND node NOT IN (SELECT id FROM nodes)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(parties).collect()
    }

    /// The calls ringing for each of `users`' devices (legs aside), by
    /// callee; a user with none is left out.
    pub async fn calls_ringing(&self, users: &[Id]) -> Result<HashMap<Id, Vec<Call>>> {
        let select = format!(
            "SELECT {COLUMNS} FROM calls WHERE state IN ('inviting', 'ringing') AND callee IN"
        );
        let mut ringing: HashMap<Id, Vec<Call>> = HashMap::new();
        for row in self.rows_in(&select, users).await? {
            let call = call(&row)?;
            ringing.entry(call.callee.clone()).or_default().push(call);
        }
        Ok(ringing)
    }

    /// A user's calls, newest first, created before `before`.
    pub async fn calls_of(&self, user: &Id, before: i64, limit: i64) -> Result<Vec<Call>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM calls WHERE (caller = $1 OR callee = $1) AND created_at < $2
             ORDER BY created_at DESC, sid DESC LIMIT $3"
        ))
        .bind(user.as_str())
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call).collect()
    }

    pub async fn call(&self, sid: &Sid) -> Result<Option<Call>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM calls WHERE sid = $1"))
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(call).transpose()
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

    /// Forgets a token its push service called dead.
    pub async fn delete_push_token(&self, user: &Id, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM push_tokens WHERE user_id = $1 AND token = $2")
            .bind(user.as_str())
            .bind(token)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks the call as one a ring was pushed for, if it still rings and
    /// was not marked: whether it is now.
    pub async fn mark_pushed(&self, sid: &Sid) -> Result<bool> {
        let marked = sqlx::query(
            "UPDATE calls SET pushed = 1
             WHERE sid = $1 AND pushed = 0 AND state IN ('inviting', 'ringing')",
        )
        .bind(sid.as_str())
        .execute(&self.pool)
        .await?;
        Ok(marked.rows_affected() == 1)
    }

    /// Whether a ring was pushed for the call and its stop not yet.
    pub async fn rings_pushed(&self, sid: &Sid) -> Result<bool> {
        let pushed: Option<i64> = sqlx::query_scalar("SELECT pushed FROM calls WHERE sid = $1")
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(pushed == Some(1))
    }

    /// Takes the mark off a call whose ringing ended: whether a ring was
    /// pushed for it (true once, whichever node asks first).
    pub async fn unmark_pushed(&self, sid: &Sid) -> Result<bool> {
        let unmarked = sqlx::query("UPDATE calls SET pushed = 2 WHERE sid = $1 AND pushed = 1")
            .bind(sid.as_str())
            .execute(&self.pool)
            .await?;
        Ok(unmarked.rows_affected() == 1)
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
    use switchboard_protocol::payload::{CallActionKind, CallKind};
    use switchboard_signalling::Invitation;

    const CALLER: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const CALLEE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const THIRD: &str = "cccccccccccccccccccccccccccccccc";
    const FOURTH: &str = "dddddddddddddddddddddddddddddddd";
    const RING: i64 = 30_000;

    fn id(s: &str) -> Id {
        s.parse().unwrap()
    }

    /// A store with these users.
    async fn store_of(users: &[&str]) -> Store {
        let store = temp_store().await;
        for user in users {
            (store.ensure_user(&id(user), PrincipalKind::User).await).unwrap();
        }
        store
    }

    /// Invites `callee` from `caller`'s phone at `at`, as the service does.
    async fn invite(store: &Store, sid: u8, caller: &str, callee: &str, at: i64) -> Call {
        let (caller, callee) = (id(caller), id(callee));
        let sid: Sid = format!("{sid:032x}").parse().unwrap();
        let mut locked = store
            .lock_calls([&caller, &callee], Some(&sid))
            .await
            .unwrap();
        let invitation = Invitation {
            sid,
            caller: ClientId::new(caller, Some("phone".parse().unwrap())),
            callee,
            kind: CallKind::Video,
        };
        let invited = locked.calls.invite(invitation, at, RING).unwrap();
        let changed: Vec<Call> = [invited.call.clone()]
            .into_iter()
            .chain(invited.ended)
            .collect();
        assert!(locked.store(&changed).await.unwrap());
        invited.call
    }

    #[tokio::test]
    async fn calls_read_back_as_stored_and_transitions_see_the_users_live_calls() {
        let store = store_of(&[CALLER, CALLEE, THIRD, FOURTH]).await;
        let first = invite(&store, 1, CALLER, CALLEE, 10).await;
        assert_eq!(store.call(&first.sid).await.unwrap(), Some(first.clone()));
        let ringing = store.calls_ringing(&[id(CALLEE), id(THIRD)]).await.unwrap();
        assert_eq!(ringing, HashMap::from([(id(CALLEE), vec![first.clone()])]));

        // The callee's tablet rings, then accepts: the legs and the holding
        // node are stored.
        let tablet: ClientId = format!("{CALLEE}:tablet").parse().unwrap();
        let mut locked = store
            .lock_calls([&id(CALLEE), &id(CALLER)], Some(&first.sid))
            .await
            .unwrap();
        let ringing = locked
            .calls
            .act(&first.sid, &tablet, CallActionKind::Ringing, 11)
            .unwrap()
            .unwrap();
        let mut accepted = locked
            .calls
            .act(&first.sid, &tablet, CallActionKind::Accept, 12)
            .unwrap()
            .unwrap();
        assert_eq!((ringing.version, accepted.version), (2, 3));
        accepted.node = Some("n2".into());
        locked.store(std::slice::from_ref(&accepted)).await.unwrap();
        assert_eq!(
            store.call(&first.sid).await.unwrap(),
            Some(accepted.clone())
        );
        assert!(store.calls_ringing(&[id(CALLEE)]).await.unwrap().is_empty());
        let held = |node: &'static str| {
            let store = store.clone();
            async move { store.calls_held_by(node).await.unwrap() }
        };
        assert_eq!(held("n2").await.len(), 1, "held by the node placed");
        assert!(held("n1").await.is_empty());
        // Where the next call's media may go: listed nodes heard from
        // lately, with the calls each holds.
        for (node, seen) in [("n1", 100), ("n2", 100), ("gone", 10)] {
            store.heartbeat(node, seen).await.unwrap();
        }
        let mut locked = store
            .lock_calls([&id(THIRD), &id(FOURTH)], None)
            .await
            .unwrap();
        let mut loads = locked.loads(50).await.unwrap();
        loads.sort();
        assert_eq!(loads, [("n1".to_string(), 0), ("n2".to_string(), 1)]);
        drop(locked);

        // A third user's call to the callee sees it busy; the sid is taken.
        let busy = invite(&store, 2, THIRD, CALLEE, 20).await;
        assert_eq!(busy.reason, Some(EndReason::Busy));
        let locked = store
            .lock_calls([&id(THIRD), &id(CALLER)], Some(&first.sid))
            .await
            .unwrap();
        assert!(
            locked.calls.get(&first.sid).is_some(),
            "the named call, though not theirs"
        );
        drop(locked);

        // Due calls: those unanswered past their deadline only.
        let third = invite(&store, 3, THIRD, FOURTH, 30).await;
        let due = |at| {
            let store = store.clone();
            async move { store.calls_due(at).await.unwrap() }
        };
        assert!(due(30 + RING - 1).await.is_empty());
        assert_eq!(
            due(30 + RING).await,
            [Parties {
                sid: third.sid.clone(),
                caller: id(THIRD),
                callee: id(FOURTH)
            }]
        );
        assert_eq!(
            store.calls_of(&id(CALLEE), i64::MAX, 10).await.unwrap(),
            [busy, accepted],
            "newest first"
        );
        assert_eq!(
            store
                .call_parties(&third.sid)
                .await
                .unwrap()
                .unwrap()
                .caller,
            id(THIRD)
        );
    }

    /// Two invites with one sid between other users: the rows locked are
    /// not the same, so the store refuses the second.
    #[tokio::test]
    async fn a_new_call_never_overwrites_another_with_its_sid() {
        let store = store_of(&[CALLER, CALLEE, THIRD, FOURTH]).await;
        let first = invite(&store, 1, CALLER, CALLEE, 10).await;
        // As if read before the first was stored: the sid unseen.
        let mut locked = store
            .lock_calls([&id(THIRD), &id(FOURTH)], None)
            .await
            .unwrap();
        let invitation = Invitation {
            sid: first.sid.clone(),
            caller: ClientId::new(id(THIRD), None),
            callee: id(FOURTH),
            kind: CallKind::Audio,
        };
        let second = locked.calls.invite(invitation, 11, RING).unwrap().call;
        assert!(!locked.store(&[second]).await.unwrap(), "refused");
        assert_eq!(store.call(&first.sid).await.unwrap(), Some(first));
    }

    #[tokio::test]
    async fn a_transition_dropped_unstored_changes_nothing() {
        let store = store_of(&[CALLER, CALLEE]).await;
        let call = invite(&store, 1, CALLER, CALLEE, 10).await;
        let mut locked = store
            .lock_calls([&id(CALLER), &id(CALLEE)], None)
            .await
            .unwrap();
        let phone: ClientId = format!("{CALLER}:phone").parse().unwrap();
        locked
            .calls
            .act(&call.sid, &phone, CallActionKind::Cancel, 11)
            .unwrap();
        drop(locked);
        assert_eq!(store.call(&call.sid).await.unwrap(), Some(call));
    }
}
