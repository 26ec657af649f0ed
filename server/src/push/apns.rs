//! APNs VoIP pushes over HTTP/2 with token authentication: a provider
//! token (an ES256 JWT from the team's `.p8` key) signs each request, and
//! is made again before its hour runs out.

use std::sync::Mutex;

use anyhow::{Context, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::note::Note;
use super::outcome::{retry_after, Outcome};
use crate::config;

/// Apple refuses a provider token older than an hour, and one renewed
/// more often than every 20 minutes: made again after 50.
const TOKEN_FOR_MS: i64 = 50 * 60 * 1000;

pub struct Apns {
    client: reqwest::Client,
    url: String,
    /// `<bundle id>.voip`.
    topic: String,
    key: EncodingKey,
    key_id: String,
    team_id: String,
    /// The provider token and when it was made (ms).
    token: Mutex<Option<(String, i64)>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

#[derive(Deserialize)]
struct Refusal {
    reason: String,
}

impl Apns {
    /// Reads the `.p8` key: a file that is not an EC P-256 PKCS#8 key is
    /// an error naming `apns_key_file`.
    pub fn new(config: &config::Apns, client: reqwest::Client) -> Result<Apns> {
        let file = config.key_file.display();
        let pem = std::fs::read(&config.key_file)
            .with_context(|| format!("apns_key_file: reading {file}"))?;
        let key = EncodingKey::from_ec_pem(&pem)
            .with_context(|| format!("apns_key_file: {file} is not a .p8 key (PKCS#8, P-256)"))?;
        Ok(Apns {
            client,
            url: config.url.clone(),
            topic: format!("{}.voip", config.topic),
            key,
            key_id: config.key_id.clone(),
            team_id: config.team_id.clone(),
            token: Mutex::new(None),
        })
    }

    /// The provider token at `now` (ms): the cached one while it is young.
    fn provider_token(&self, now: i64) -> Result<String> {
        let mut cached = self.token.lock().expect("provider token lock");
        if let Some((token, made)) = &*cached {
            if now - made < TOKEN_FOR_MS && now >= *made {
                return Ok(token.clone());
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat: now / 1000,
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.key)?;
        *cached = Some((token.clone(), now));
        Ok(token)
    }

    /// Forgets the provider token `stale`, which Apple said expired,
    /// unless another push renewed it already: Apple refuses renewals
    /// made too often.
    fn renew(&self, stale: &str) {
        let mut cached = self.token.lock().expect("provider token lock");
        if cached.as_ref().is_some_and(|(token, _)| token == stale) {
            *cached = None;
        }
    }

    pub async fn send(&self, device_token: &str, note: &Note, now: i64) -> Outcome {
        // Never valid, and in a URL it could name another path.
        if !is_device_token(device_token) {
            return Outcome::DeadToken;
        }
        let jwt = match self.provider_token(now) {
            Ok(jwt) => jwt,
            Err(e) => return Outcome::Failed(format!("signing the provider token: {e}")),
        };
        let sent = self
            .client
            .post(format!("{}/3/device/{device_token}", self.url))
            .header("authorization", format!("bearer {jwt}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "voip")
            .header("apns-priority", "10")
            // Now or never: a ring delivered late is worse than none.
            .header("apns-expiration", "0")
            .json(note)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::unanswered("APNs", &e),
        };
        let status = response.status().as_u16();
        let after = retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        let reason = serde_json::from_slice::<Refusal>(&body)
            .ok()
            .map(|r| r.reason);
        let outcome = classify(status, reason.as_deref(), after);
        if outcome == Outcome::Renew {
            self.renew(&jwt);
        }
        outcome
    }
}

/// An APNs device token as an app reads it: hex digits, two per byte.
pub fn is_device_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 200
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What APNs's answer means: its status and `reason`.
fn classify(status: u16, reason: Option<&str>, after: Option<std::time::Duration>) -> Outcome {
    let why = || format!("APNs answered {status} {}", reason.unwrap_or(""));
    match (status, reason) {
        (410, _) | (400, Some("BadDeviceToken")) => Outcome::DeadToken,
        (403, Some("ExpiredProviderToken")) => Outcome::Renew,
        (status, _) => Outcome::from_status(status, after, why()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn apns_answers_are_acted_on() {
        let wait = Some(Duration::from_secs(2));
        for (status, reason, outcome) in [
            (200, None, Outcome::Sent),
            (410, Some("Unregistered"), Outcome::DeadToken),
            (400, Some("BadDeviceToken"), Outcome::DeadToken),
            (403, Some("ExpiredProviderToken"), Outcome::Renew),
            (429, Some("TooManyRequests"), Outcome::Retry { after: wait }),
            (
                500,
                Some("InternalServerError"),
                Outcome::Retry { after: wait },
            ),
            (
                503,
                Some("ServiceUnavailable"),
                Outcome::Retry { after: wait },
            ),
        ] {
            assert_eq!(
                classify(status, reason, wait),
                outcome,
                "{status} {reason:?}"
            );
        }
        // The app's own mistakes: no token is forgotten for them.
        for (status, reason) in [
            (400, Some("DeviceTokenNotForTopic")),
            (400, Some("BadTopic")),
            (403, Some("InvalidProviderToken")),
            (413, Some("PayloadTooLarge")),
        ] {
            let outcome = classify(status, reason, None);
            assert!(
                matches!(outcome, Outcome::Failed(_)),
                "{status} {reason:?}: {outcome:?}"
            );
        }
    }

    /// APNs with `key_pem` as its `.p8` key.
    fn apns(key_pem: &str) -> Result<Apns> {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("AuthKey.p8");
        std::fs::write(&key_file, key_pem).unwrap();
        let config = config::Apns {
            key_file,
            key_id: "ABC123DEFG".into(),
            team_id: "TEAM123456".into(),
            topic: "com.example.app".into(),
            url: "https://apns.test".into(),
        };
        Apns::new(&config, reqwest::Client::new())
    }

    #[test]
    fn the_provider_token_is_kept_for_50_minutes_and_renewed() {
        let key = rcgen::KeyPair::generate().unwrap();
        let apns = apns(&key.serialize_pem()).unwrap();
        let t0 = 1_800_000_000_000;
        let first = apns.provider_token(t0).unwrap();
        assert_eq!(apns.provider_token(t0 + TOKEN_FOR_MS - 1).unwrap(), first);
        let later = apns.provider_token(t0 + TOKEN_FOR_MS).unwrap();
        assert_ne!(later, first);
        // Renewing a token already replaced keeps its replacement.
        apns.renew(&first);
        let kept = apns.provider_token(t0 + TOKEN_FOR_MS + 1_000).unwrap();
        assert_eq!(kept, later);
        apns.renew(&later);
        let renewed = apns.provider_token(t0 + TOKEN_FOR_MS + 1_000).unwrap();
        assert_ne!(renewed, later);
        // Signed with the key, naming it and the team.
        let public = jsonwebtoken::DecodingKey::from_ec_pem(key.public_key_pem().as_bytes());
        let mut check = jsonwebtoken::Validation::new(Algorithm::ES256);
        check.required_spec_claims.clear();
        check.validate_exp = false;
        let read = jsonwebtoken::decode::<serde_json::Value>(&first, &public.unwrap(), &check);
        let read = read.unwrap();
        assert_eq!(read.header.kid.as_deref(), Some("ABC123DEFG"));
        assert_eq!(read.claims["iss"], "TEAM123456");
        assert_eq!(read.claims["iat"], t0 / 1000);
    }

    #[test]
    fn device_tokens_are_hex() {
        for (token, ok) in [
            ("a1b2c3d4", true),
            (&"0f".repeat(32), true),
            (&"0f".repeat(100), true),
            (&"0f".repeat(101), false),
            ("", false),
            ("abc", false),
            ("../../x", false),
            ("a1b2?c3", false),
            ("fcm:token", false),
        ] {
            assert_eq!(is_device_token(token), ok, "{token}");
        }
    }

    #[test]
    fn a_key_file_that_is_not_a_p8_key_is_refused() {
        let err = apns("not a key").err().unwrap();
        assert!(format!("{err:#}").contains("apns_key_file"), "{err:#}");
    }
}
