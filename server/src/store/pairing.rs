//! Pairing codes, who looked at them, and wrong look-ups, so every node
//! issues, checks and burns the same codes against the same budgets. The
//! rules are the pairing crate's; each step here is one transaction.

use std::net::IpAddr;

use anyhow::Result;
use sqlx::{AnyConnection, Row};
use switchboard_pairing::{self as pairing, Misses, PairingRefusal, WINDOW_MS};
use switchboard_protocol::acl::PairingRole;
use switchboard_protocol::{Id, PairingCode};

use super::{typed, Store};

/// The robot of `code` if it lives at `at`.
async fn live_robot(
    conn: &mut AnyConnection,
    code: &PairingCode,
    at: i64,
) -> Result<Option<String>> {
    let robot = sqlx::query_scalar(
        "SELECT robot_id FROM pairing_codes WHERE code = $1 AND expires_at > $2",
    )
    .bind(code.as_str())
    .bind(at)
    .fetch_optional(conn)
    .await?;
    Ok(robot)
}

/// Forgets who looked at `code` (it ended, or its number is issued again).
async fn forget_looks(conn: &mut AnyConnection, code: &str) -> Result<()> {
    sqlx::query("DELETE FROM pairing_looks WHERE code = $1")
        .bind(code)
        .execute(conn)
        .await?;
    Ok(())
}

/// A new code: what it is, when it expires, and the robot's earlier code
/// it replaced, if one was live (to be finished `expired`).
pub struct Issued {
    pub code: PairingCode,
    pub expires_at: i64,
    pub replaced: Vec<PairingCode>,
}

impl Store {
    /// Issues `robot` a code living `ttl_ms` from `at`, drawn from
    /// `random` until one is free (taken numbers include expired codes not
    /// yet finished); its earlier codes go.
    pub async fn issue_code(
        &self,
        robot: &Id,
        at: i64,
        ttl_ms: i64,
        mut random: impl FnMut() -> u32,
    ) -> Result<Issued> {
        let mut tx = self.begin().await?;
        if !self.sqlite {
            // One issue per robot at a time, so it never holds two codes.
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE")
                .bind(robot.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let replaced: Vec<String> =
            sqlx::query_scalar("DELETE FROM pairing_codes WHERE robot_id = $1 RETURNING code")
                .bind(robot.as_str())
                .fetch_all(&mut *tx)
                .await?;
        for code in &replaced {
            forget_looks(&mut tx, code).await?;
        }
        let expires_at = at + ttl_ms;
        let code = loop {
            let code = pairing::code_from(random());
            let inserted = sqlx::query(
                "INSERT INTO pairing_codes (code, robot_id, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (code) DO NOTHING",
            )
            .bind(code.as_str())
            .bind(robot.as_str())
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                break code;
            }
        };
        // Looks at an earlier code of that number, left by a look-up that
        // raced the earlier code's end, count for nothing.
        forget_looks(&mut tx, code.as_str()).await?;
        tx.commit().await?;
        Ok(Issued {
            code,
            expires_at,
            replaced: replaced.into_iter().map(typed).collect::<Result<_>>()?,
        })
    }

    /// Where `user` stands with `code` at `at`: the robot it was issued
    /// to, a user who looked at it, or neither (or no live code).
    pub async fn pairing_role(
        &self,
        user: &Id,
        code: &PairingCode,
        at: i64,
    ) -> Result<PairingRole> {
        let row = sqlx::query(
            "SELECT c.robot_id, l.user_id FROM pairing_codes c
             LEFT JOIN pairing_looks l ON l.code = c.code AND l.user_id = $2
             WHERE c.code = $1 AND c.expires_at > $3",
        )
        .bind(code.as_str())
        .bind(user.as_str())
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(PairingRole::None);
        };
        let robot: String = row.get(0);
        let looked: Option<String> = row.get(1);
        Ok(if robot == user.as_str() {
            PairingRole::Robot
        } else if looked.is_some() {
            PairingRole::Looked
        } else {
            PairingRole::None
        })
    }

    /// The robot of the live `code`.
    pub async fn code_robot(&self, code: &PairingCode, at: i64) -> Result<Option<Id>> {
        let mut conn = self.pool.acquire().await?;
        live_robot(&mut conn, code, at)
            .await?
            .map(typed)
            .transpose()
    }

    /// `user`, from `address`, looks `code` up at `at` (codes living
    /// `ttl_ms`): within its budgets, a live code is marked looked at by
    /// it and its robot returned; a miss is counted (`pairing::miss`). One look-up at a time
    /// over every node: each locks the guard row first.
    pub async fn look_code(
        &self,
        user: &Id,
        address: Option<IpAddr>,
        code: &PairingCode,
        at: i64,
        ttl_ms: i64,
    ) -> Result<Result<Id, PairingRefusal>> {
        let mut tx = self.begin().await?;
        let lock = if self.sqlite { "" } else { " FOR UPDATE" };
        let guarded_until: i64 = sqlx::query_scalar(&format!(
            "SELECT until FROM pairing_guard WHERE id = 1{lock}"
        ))
        .fetch_one(&mut *tx)
        .await?;
        let network = address.map(|a| pairing::network(a).to_string());
        let since = at - WINDOW_MS;
        let count = |n: i64| usize::try_from(n).unwrap_or(0);
        let row = sqlx::query(
            "SELECT
               (SELECT count(*) FROM pairing_misses WHERE user_id = $1 AND at > $2),
               (SELECT count(*) FROM pairing_misses WHERE network = $3 AND at > $2),
               (SELECT count(*) FROM pairing_misses WHERE at > $4),
               (SELECT max(at) FROM pairing_misses WHERE user_id = $1 AND code = $5 AND at > $4)",
        )
        .bind(user.as_str())
        .bind(since)
        .bind(network.as_deref())
        .bind(at - ttl_ms)
        .bind(code.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let misses = Misses {
            user: count(row.get(0)),
            network: count(row.get(1)),
            recent: count(row.get(2)),
            this_code: row.get(3),
            guarded_until,
        };
        if !pairing::allowed(&misses, at) {
            return Ok(Err(PairingRefusal::TooManyTries));
        }
        if let Some(robot) = live_robot(&mut tx, code, at).await? {
            // Only while the code lives: a claim or expiry committed since
            // the read above leaves no look behind.
            sqlx::query(
                "INSERT INTO pairing_looks (code, user_id)
                 SELECT $1, $2 WHERE EXISTS
                     (SELECT 1 FROM pairing_codes WHERE code = $1 AND expires_at > $3)
                 ON CONFLICT DO NOTHING",
            )
            .bind(code.as_str())
            .bind(user.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Ok(typed(robot)?));
        }
        let miss = pairing::miss(&misses, at, ttl_ms);
        if miss.counts {
            sqlx::query(
                "INSERT INTO pairing_misses (user_id, network, code, at) VALUES ($1, $2, $3, $4)",
            )
            .bind(user.as_str())
            .bind(network.as_deref())
            .bind(code.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(until) = miss.guard_until {
            sqlx::query("UPDATE pairing_guard SET until = $1 WHERE id = 1")
                .bind(until)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Err(PairingRefusal::NoSuchCode))
    }

    /// `user` claims the robot behind the live `code` it looked at, at
    /// `at`: the code is burned and the ownership stored, in one
    /// transaction. Returns the robot.
    pub async fn claim_code(
        &self,
        user: &Id,
        code: &PairingCode,
        at: i64,
    ) -> Result<Result<Id, PairingRefusal>> {
        let mut tx = self.begin().await?;
        // Deleting locks the row: of two claims, the second finds nothing.
        let robot: Option<String> = sqlx::query_scalar(
            "DELETE FROM pairing_codes WHERE code = $1 AND expires_at > $2 RETURNING robot_id",
        )
        .bind(code.as_str())
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(robot) = robot else {
            return Ok(Err(PairingRefusal::NoSuchCode));
        };
        let looked: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM pairing_looks WHERE code = $1 AND user_id = $2",
        )
        .bind(code.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let robot = match pairing::claim(typed(robot)?, user, looked.is_some()) {
            Ok(robot) => robot,
            Err(refusal) => return Ok(Err(refusal)),
        };
        forget_looks(&mut tx, code.as_str()).await?;
        sqlx::query(
            "INSERT INTO ownership (robot_id, user_id, paired_at) VALUES ($1, $2, $3)
             ON CONFLICT (robot_id, user_id) DO NOTHING",
        )
        .bind(robot.as_str())
        .bind(user.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(robot))
    }

    /// Removes the codes expired by `now`, returning each `(code, robot)`
    /// once over every node; forgets misses older than the window.
    pub async fn expire_codes(&self, now: i64) -> Result<Vec<(PairingCode, Id)>> {
        let mut tx = self.begin().await?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM pairing_codes WHERE expires_at <= $1 RETURNING code, robot_id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for (code, _) in &rows {
            forget_looks(&mut tx, code).await?;
        }
        sqlx::query("DELETE FROM pairing_misses WHERE at <= $1")
            .bind(now - WINDOW_MS)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(code, robot)| Ok((typed(code)?, typed(robot)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;
    use switchboard_pairing::{GUARD_AFTER, PER_USER};
    use switchboard_protocol::acl::PrincipalKind;

    const TTL: i64 = 120_000;

    fn id(n: u8) -> Id {
        format!("{n:032x}").parse().unwrap()
    }

    fn code(n: u32) -> PairingCode {
        pairing::code_from(n)
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(format!("198.51.100.{n}").parse().unwrap())
    }

    #[tokio::test]
    async fn a_code_is_issued_unique_looked_at_claimed_once_and_expires_once() {
        let store = temp_store().await;
        let (robot, user, other) = (id(1), id(2), id(3));
        store
            .ensure_user(&robot, PrincipalKind::Robot)
            .await
            .unwrap();
        for u in [&user, &other] {
            store.ensure_user(u, PrincipalKind::User).await.unwrap();
        }
        let first = store.issue_code(&robot, 0, TTL, || 42).await.unwrap();
        assert_eq!((first.code.as_str(), first.expires_at), ("000042", TTL));
        let mut numbers = [42, 7].into_iter();
        let second = store
            .issue_code(&other, 0, TTL, || numbers.next().unwrap())
            .await
            .unwrap();
        assert_eq!(
            second.code.as_str(),
            "000007",
            "a taken number is drawn again"
        );
        let again = store.issue_code(&robot, 1, TTL, || 9).await.unwrap();
        assert_eq!(
            again.replaced,
            std::slice::from_ref(&first.code),
            "one code per robot"
        );
        let k = again.code;

        let claim = |who: Id| {
            let (store, k) = (store.clone(), k.clone());
            async move { store.claim_code(&who, &k, 2).await.unwrap() }
        };
        assert_eq!(claim(user.clone()).await, Err(PairingRefusal::NotLooked));
        assert_eq!(
            store.pairing_role(&user, &k, 2).await.unwrap(),
            PairingRole::None
        );
        let looked = store.look_code(&user, ip(1), &k, 2, TTL).await.unwrap();
        assert_eq!(looked, Ok(robot.clone()));
        assert_eq!(
            store.pairing_role(&user, &k, 2).await.unwrap(),
            PairingRole::Looked
        );
        assert_eq!(
            store.pairing_role(&robot, &k, 2).await.unwrap(),
            PairingRole::Robot
        );
        assert_eq!(claim(robot.clone()).await, Err(PairingRefusal::RobotClaim));
        assert_eq!(claim(user.clone()).await, Ok(robot.clone()));
        assert_eq!(
            claim(user.clone()).await,
            Err(PairingRefusal::NoSuchCode),
            "burned"
        );
        assert_eq!(store.owners_of(&robot).await.unwrap().len(), 1);

        assert!(store.expire_codes(TTL - 1).await.unwrap().is_empty());
        assert_eq!(
            store.expire_codes(TTL).await.unwrap(),
            [(second.code, other)]
        );
        assert!(store.expire_codes(TTL).await.unwrap().is_empty(), "once");
    }

    #[tokio::test]
    async fn wrong_look_ups_spend_the_budgets_over_every_node() {
        let store = temp_store().await;
        let look = |user: u8, address: u8, n: u32, at: i64| {
            let store = store.clone();
            async move {
                let user = id(user);
                store.ensure_user(&user, PrincipalKind::User).await.unwrap();
                store
                    .look_code(&user, ip(address), &code(n), at, TTL)
                    .await
                    .unwrap()
            }
        };
        for n in 0..PER_USER as u32 {
            assert_eq!(look(1, 1, n, 10).await, Err(PairingRefusal::NoSuchCode));
        }
        assert_eq!(look(1, 2, 99, 11).await, Err(PairingRefusal::TooManyTries));
        // The same wrong code again within a lifetime is a retry.
        for at in [10, 20] {
            assert_eq!(look(2, 3, 5, at).await, Err(PairingRefusal::NoSuchCode));
        }
        // Many accounts and addresses missing at once put the server on
        // guard: an account or address that missed is then shut out.
        for n in 0..GUARD_AFTER as u8 {
            look(10 + n, 10 + n, 1, 30).await.ok();
        }
        assert_eq!(look(2, 200, 6, 40).await, Err(PairingRefusal::TooManyTries));
        assert_eq!(look(99, 201, 6, 40).await, Err(PairingRefusal::NoSuchCode));
        // A day later the window has passed.
        assert_eq!(
            look(1, 1, 7, 11 + WINDOW_MS).await,
            Err(PairingRefusal::NoSuchCode)
        );
    }
}
