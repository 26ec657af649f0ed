//! Users, one-time codes, refresh tokens and robots.

use anyhow::Result;
use sqlx::Row;
use switchboard_protocol::acl::PrincipalKind;
use switchboard_protocol::{Device, Id};

use super::Store;
use crate::clock::now_ms;
use crate::token::TokenKind;

/// What the rate limit says about sending another one-time code.
#[derive(Debug, PartialEq, Eq)]
pub enum SendAllowance {
    Allowed,
    /// Too many codes for this number lately; retry after this many ms.
    Wait(i64),
}

#[derive(Debug, PartialEq, Eq)]
pub enum OtpCheck {
    /// The code was right; it is used up.
    Accepted,
    Wrong,
    /// No live code: never sent, expired, used, or out of attempts.
    NoCode,
}

/// A refresh token row as the server needs it after rotation.
#[derive(Debug, Clone)]
pub struct StoredRefresh {
    pub subject: Id,
    pub kind: TokenKind,
    pub device: Option<Device>,
    pub family: String,
}

#[derive(Debug)]
pub enum RefreshOutcome {
    Rotated(StoredRefresh),
    /// Already rotated once: the family is now revoked.
    Reused,
    Invalid,
}

/// One-time code policy: how long a code lives, how many guesses it allows,
/// and how many codes one number may get per window. The lifetime is in
/// whole minutes because the SMS tells it in minutes.
pub const OTP_TTL_MINUTES: i64 = 5;
pub const OTP_MAX_ATTEMPTS: i64 = 5;
pub const OTP_SENDS_PER_WINDOW: i64 = 3;
pub const OTP_WINDOW_MS: i64 = 15 * 60 * 1000;

impl Store {
    /// Creates the user if it is new. Returns whether it was created.
    pub async fn ensure_user(&self, id: &Id, kind: PrincipalKind) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO users (id, kind, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(kind.as_str())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Which of `ids` are registered users or robots.
    pub async fn existing_ids(&self, ids: &[Id]) -> Result<Vec<Id>> {
        let rows = self
            .rows_in("SELECT id FROM users WHERE id IN", ids)
            .await?;
        rows.iter().map(|row| super::typed(row.get(0))).collect()
    }

    /// Whether another code may be sent to this number now.
    pub async fn otp_send_allowance(&self, phone_hash: &str) -> Result<SendAllowance> {
        let row = sqlx::query("SELECT sends, window_start FROM otp_codes WHERE phone_hash = $1")
            .bind(phone_hash)
            .fetch_optional(&self.pool)
            .await?;
        let now = now_ms();
        Ok(match row {
            Some(r) => {
                let sends: i64 = r.get(0);
                let start: i64 = r.get(1);
                if now - start < OTP_WINDOW_MS && sends >= OTP_SENDS_PER_WINDOW {
                    SendAllowance::Wait(start + OTP_WINDOW_MS - now)
                } else {
                    SendAllowance::Allowed
                }
            }
            None => SendAllowance::Allowed,
        })
    }

    /// Stores a freshly sent code, replacing any earlier one.
    pub async fn store_otp(&self, phone_hash: &str, code_hash: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT sends, window_start FROM otp_codes WHERE phone_hash = $1")
            .bind(phone_hash)
            .fetch_optional(&mut *tx)
            .await?;
        let (sends, start) = match row {
            Some(r) if now - r.get::<i64, _>(1) < OTP_WINDOW_MS => {
                (r.get::<i64, _>(0) + 1, r.get(1))
            }
            _ => (1, now),
        };
        sqlx::query("DELETE FROM otp_codes WHERE phone_hash = $1")
            .bind(phone_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO otp_codes (phone_hash, code_hash, expires_at, attempts, sends, window_start)
             VALUES ($1, $2, $3, 0, $4, $5)",
        )
        .bind(phone_hash)
        .bind(code_hash)
        .bind(now + OTP_TTL_MINUTES * 60_000)
        .bind(sends)
        .bind(start)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks a guess. A right guess uses the code up; a wrong one counts
    /// against its attempts. Both are single statements, so two guesses at
    /// once cannot both win or both escape the count.
    pub async fn check_otp(&self, phone_hash: &str, code_hash: &str) -> Result<OtpCheck> {
        let now = now_ms();
        let won = sqlx::query(
            "UPDATE otp_codes SET attempts = $4, expires_at = 0
             WHERE phone_hash = $1 AND code_hash = $2 AND expires_at > $3 AND attempts < $4",
        )
        .bind(phone_hash)
        .bind(code_hash)
        .bind(now)
        .bind(OTP_MAX_ATTEMPTS)
        .execute(&self.pool)
        .await?;
        if won.rows_affected() == 1 {
            return Ok(OtpCheck::Accepted);
        }
        let counted = sqlx::query(
            "UPDATE otp_codes SET attempts = attempts + 1
             WHERE phone_hash = $1 AND expires_at > $2 AND attempts < $3",
        )
        .bind(phone_hash)
        .bind(now)
        .bind(OTP_MAX_ATTEMPTS)
        .execute(&self.pool)
        .await?;
        Ok(if counted.rows_affected() == 1 {
            OtpCheck::Wrong
        } else {
            OtpCheck::NoCode
        })
    }

    pub async fn insert_refresh(
        &self,
        token_hash: &str,
        family: &str,
        subject: &Id,
        kind: TokenKind,
        device: Option<&Device>,
        ttl_ms: i64,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family, subject, kind, device, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash)
        .bind(family)
        .bind(subject.as_str())
        .bind(kind.as_str())
        .bind(device.map(Device::as_str))
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a refresh token used, once. A second use of the same token is
    /// taken as theft: its whole family is revoked.
    pub async fn use_refresh(&self, token_hash: &str) -> Result<RefreshOutcome> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT subject, kind, device, family, used_at, revoked_at, expires_at
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(RefreshOutcome::Invalid);
        };
        let device: Option<String> = row.get(2);
        let stored = StoredRefresh {
            subject: super::typed(row.get(0))?,
            kind: super::typed(row.get(1))?,
            device: device.map(super::typed).transpose()?,
            family: row.get(3),
        };
        let used: Option<i64> = row.get(4);
        let revoked: Option<i64> = row.get(5);
        let expires: i64 = row.get(6);
        if revoked.is_some() || expires <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        if used.is_some() {
            self.revoke_family(&stored.family).await?;
            return Ok(RefreshOutcome::Reused);
        }
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if claimed.rows_affected() == 1 {
            Ok(RefreshOutcome::Rotated(stored))
        } else {
            // Someone used it between our read and write: that is reuse too.
            self.revoke_family(&stored.family).await?;
            Ok(RefreshOutcome::Reused)
        }
    }

    pub async fn revoke_family(&self, family: &str) -> Result<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family = $1 AND revoked_at IS NULL",
        )
        .bind(family)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The family of a refresh token, for logout.
    pub async fn refresh_family(&self, token_hash: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT family FROM refresh_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Creates a robot account (a user row of kind `robot` and its secret).
    pub async fn create_robot(&self, id: &Id, secret_hash: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO users (id, kind, created_at) VALUES ($1, 'robot', $2)")
            .bind(id.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO robots (id, secret_hash, created_at) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(secret_hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn robot_secret_hash(&self, id: &Id) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT secret_hash FROM robots WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Counts `n` discovery lookups against today's quota; refuses (and
    /// counts nothing) past `quota`. The write comes first so that
    /// concurrent requests of one user queue on the row instead of all
    /// reading the same old count.
    pub async fn take_discovery_quota(&self, user: &Id, n: i64, quota: i64) -> Result<bool> {
        let day = now_ms() / 86_400_000;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO discovery_usage (user_id, day, lookups) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, day) DO UPDATE SET lookups = discovery_usage.lookups + $3",
        )
        .bind(user.as_str())
        .bind(day)
        .bind(n)
        .execute(&mut *tx)
        .await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT lookups FROM discovery_usage WHERE user_id = $1 AND day = $2",
        )
        .bind(user.as_str())
        .bind(day)
        .fetch_one(&mut *tx)
        .await?;
        if used > quota {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::temp_store;

    #[tokio::test]
    async fn codes_work_once_and_not_after_expiry() {
        let store = temp_store().await;
        store.store_otp("phone", "right").await.unwrap();
        assert_eq!(
            store.check_otp("phone", "wrong").await.unwrap(),
            OtpCheck::Wrong
        );
        assert_eq!(
            store.check_otp("phone", "right").await.unwrap(),
            OtpCheck::Accepted
        );
        assert_eq!(
            store.check_otp("phone", "right").await.unwrap(),
            OtpCheck::NoCode
        );

        store.store_otp("phone", "right").await.unwrap();
        sqlx::query("UPDATE otp_codes SET expires_at = $1")
            .bind(now_ms() - 1)
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.check_otp("phone", "right").await.unwrap(),
            OtpCheck::NoCode
        );
    }

    /// A refresh gives a token of the kind it was issued for: an admin's
    /// came back as a user's while the handler mapped the stored name by
    /// hand. A kind this server never writes is an error.
    #[tokio::test]
    async fn refresh_tokens_come_back_with_their_kind_and_device() {
        let store = temp_store().await;
        let subject: Id = "36940d0ece18aebf69d0ef6825534e24".parse().unwrap();
        store
            .ensure_user(&subject, PrincipalKind::User)
            .await
            .unwrap();
        let phone: Device = "phone".parse().unwrap();
        for kind in [TokenKind::User, TokenKind::Robot, TokenKind::Admin] {
            let hash = format!("hash-{}", kind.as_str());
            store
                .insert_refresh(&hash, "family", &subject, kind, Some(&phone), 60_000)
                .await
                .unwrap();
            match store.use_refresh(&hash).await.unwrap() {
                RefreshOutcome::Rotated(stored) => {
                    assert_eq!(
                        (stored.subject, stored.kind, stored.device),
                        (subject.clone(), kind, Some(phone.clone()))
                    );
                }
                other => panic!("{kind:?}: {other:?}"),
            }
        }
        store
            .insert_refresh("root", "family", &subject, TokenKind::User, None, 60_000)
            .await
            .unwrap();
        sqlx::query("UPDATE refresh_tokens SET kind = 'root' WHERE token_hash = 'root'")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(store.use_refresh("root").await.is_err());
    }

    #[tokio::test]
    async fn the_send_window_reopens() {
        let store = temp_store().await;
        for _ in 0..OTP_SENDS_PER_WINDOW {
            assert_eq!(
                store.otp_send_allowance("p").await.unwrap(),
                SendAllowance::Allowed
            );
            store.store_otp("p", "c").await.unwrap();
        }
        assert!(matches!(
            store.otp_send_allowance("p").await.unwrap(),
            SendAllowance::Wait(_)
        ));
        sqlx::query("UPDATE otp_codes SET window_start = $1")
            .bind(now_ms() - OTP_WINDOW_MS)
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.otp_send_allowance("p").await.unwrap(),
            SendAllowance::Allowed
        );
    }
}
