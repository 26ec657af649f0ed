//! FCM HTTP v1 pushes: a high-priority data message per token, sent with
//! an OAuth2 access token that the service account's key buys from
//! Google's token URL (a JWT bearer grant, RFC 7523) and that is bought
//! again before it expires.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::note::Note;
use super::outcome::{retry_after, Outcome};
use crate::config;

/// The scope FCM's send asks of an access token.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// An access token is bought again this long before it expires.
const EARLY_MS: i64 = 5 * 60 * 1000;

/// The fields of a service account's key file that are used.
#[derive(Deserialize)]
struct ServiceAccount {
    #[serde(rename = "type")]
    kind: String,
    project_id: String,
    private_key_id: Option<String>,
    private_key: String,
    client_email: String,
    token_uri: String,
}

pub struct Fcm {
    client: reqwest::Client,
    /// `<fcm_url>/v1/projects/<project>/messages:send`.
    send_url: String,
    token_uri: String,
    client_email: String,
    key_id: Option<String>,
    key: EncodingKey,
    /// The access token and when it expires (ms); bought by one sender at
    /// a time.
    access: Mutex<Option<(String, i64)>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

#[derive(Deserialize)]
struct Bought {
    access_token: String,
    expires_in: i64,
}

impl Fcm {
    /// Reads the service account's key file: one that is not a service
    /// account's key is an error naming `fcm_service_account_file`.
    pub fn new(config: &config::Fcm, client: reqwest::Client) -> Result<Fcm> {
        let account =
            read_account(&config.service_account_file).context("fcm_service_account_file")?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .context("fcm_service_account_file: private_key is not an RSA key")?;
        Ok(Fcm {
            client,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                config.url, account.project_id
            ),
            token_uri: account.token_uri,
            client_email: account.client_email,
            key_id: account.private_key_id,
            key,
            access: Mutex::new(None),
        })
    }

    /// The access token at `now` (ms): the one held while it has five
    /// minutes left, else a new one.
    async fn access_token(&self, now: i64) -> Result<String, Outcome> {
        let mut held = self.access.lock().await;
        if let Some((token, expires)) = &*held {
            if now < expires - EARLY_MS {
                return Ok(token.clone());
            }
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let iat = now / 1000;
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + 3600,
        };
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Outcome::Failed(format!("signing the OAuth assertion: {e}")))?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let response = (self.client.post(&self.token_uri).form(&form).send().await)
            .map_err(|e| Outcome::unanswered("the OAuth token URL", &e))?;
        let status = response.status().as_u16();
        if status != 200 {
            let after = retry_after(response.headers());
            let body = response.text().await.unwrap_or_default();
            let why = format!("the OAuth token URL answered {status}: {body}");
            return Err(Outcome::from_status(status, after, why));
        }
        let bought: Bought = (response.json().await)
            .map_err(|e| Outcome::Failed(format!("the OAuth token URL's answer: {e}")))?;
        *held = Some((bought.access_token.clone(), now + bought.expires_in * 1000));
        Ok(bought.access_token)
    }

    /// Forgets the access token `stale`, which FCM refused, unless
    /// another push bought a new one already.
    async fn renew(&self, stale: &str) {
        let mut held = self.access.lock().await;
        if held.as_ref().is_some_and(|(token, _)| token == stale) {
            *held = None;
        }
    }

    pub async fn send(&self, platform: &str, token: &str, note: &Note, now: i64) -> Outcome {
        let access = match self.access_token(now).await {
            Ok(access) => access,
            Err(outcome) => return outcome,
        };
        let body = message(platform, token, note, now);
        let sent = (self.client.post(&self.send_url))
            .bearer_auth(&access)
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return Outcome::unanswered("FCM", &e),
        };
        let status = response.status().as_u16();
        let after = retry_after(response.headers());
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        let outcome = classify(status, &answer, after);
        if outcome == Outcome::Renew {
            self.renew(&access).await;
        }
        outcome
    }
}

fn read_account(file: &Path) -> Result<ServiceAccount> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let account: ServiceAccount = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a service account's key", file.display()))?;
    if account.kind != "service_account" {
        bail!(
            "{}: type is {:?}, not \"service_account\"",
            file.display(),
            account.kind
        );
    }
    if !account.token_uri.starts_with("https://") {
        bail!("{}: token_uri must be an https:// URL", file.display());
    }
    Ok(account)
}

/// The send request: the note as string data, at high priority, living
/// no longer than the call rings.
fn message(platform: &str, token: &str, note: &Note, now: i64) -> Value {
    let data = note.strings();
    let ttl_s = ((note.expires_at - now) / 1000).max(0);
    let mut message = json!({ "token": token, "data": data });
    match platform {
        "web" => {
            message["webpush"] =
                json!({ "headers": { "Urgency": "high", "TTL": ttl_s.to_string() } })
        }
        _ => message["android"] = json!({ "priority": "high", "ttl": format!("{ttl_s}s") }),
    }
    json!({ "message": message })
}

/// What FCM's answer means: its status, and the error's `status` and
/// `details[].errorCode`.
fn classify(status: u16, answer: &Value, after: Option<Duration>) -> Outcome {
    let error = &answer["error"];
    let codes: Vec<&str> = (error["details"].as_array().into_iter().flatten())
        .filter_map(|d| d["errorCode"].as_str())
        .chain(error["status"].as_str())
        .collect();
    let said = |code: &str| codes.contains(&code);
    match status {
        // A bare NOT_FOUND is a wrong project or URL: no token is
        // forgotten for it.
        404 | 400 if said("UNREGISTERED") => Outcome::DeadToken,
        401 => Outcome::Renew,
        _ => {
            let why = format!(
                "FCM answered {status}: {}",
                error["message"].as_str().unwrap_or("")
            );
            Outcome::from_status(status, after, why)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: u16, status: &str, detail: Option<&str>) -> Value {
        let details: Vec<Value> = (detail.into_iter())
            .map(|d| json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": d}))
            .collect();
        json!({"error": {"code": code, "message": "m", "status": status, "details": details}})
    }

    #[test]
    fn fcm_answers_are_acted_on() {
        let wait = Some(Duration::from_secs(1));
        for (status, answer, outcome) in [
            (200, json!({"name": "projects/p/messages/1"}), Outcome::Sent),
            (
                404,
                error(404, "NOT_FOUND", Some("UNREGISTERED")),
                Outcome::DeadToken,
            ),
            (
                400,
                error(400, "INVALID_ARGUMENT", Some("UNREGISTERED")),
                Outcome::DeadToken,
            ),
            (401, error(401, "UNAUTHENTICATED", None), Outcome::Renew),
            (
                429,
                error(429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED")),
                Outcome::Retry { after: wait },
            ),
            (
                503,
                error(503, "UNAVAILABLE", Some("UNAVAILABLE")),
                Outcome::Retry { after: wait },
            ),
            (
                500,
                error(500, "INTERNAL", Some("INTERNAL")),
                Outcome::Retry { after: wait },
            ),
        ] {
            assert_eq!(
                classify(status, &answer, wait),
                outcome,
                "{status} {answer}"
            );
        }
        // A bad message, a token of another sender, a wrong project:
        // nothing forgotten.
        for (status, answer) in [
            (404, error(404, "NOT_FOUND", None)),
            (
                400,
                error(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT")),
            ),
            (
                403,
                error(403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH")),
            ),
        ] {
            let outcome = classify(status, &answer, None);
            assert!(
                matches!(outcome, Outcome::Failed(_)),
                "{status}: {outcome:?}"
            );
        }
    }

    fn note() -> Note {
        super::super::note::example()
    }

    #[test]
    fn a_message_is_string_data_at_high_priority_for_the_ring_left() {
        let android = message("android", "tok", &note(), 1_000);
        let m = &android["message"];
        assert_eq!(m["token"], "tok");
        assert_eq!(m["android"], json!({"priority": "high", "ttl": "30s"}));
        assert!(m["data"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
        assert_eq!(m["data"]["event"], "ring");
        assert_eq!(m["data"]["expiresAt"], "31000");
        let web = message("web", "tok", &note(), 40_000);
        assert_eq!(
            web["message"]["webpush"]["headers"],
            json!({"Urgency": "high", "TTL": "0"})
        );
        assert!(web["message"].get("android").is_none());
    }

    #[test]
    fn a_file_that_is_not_a_service_accounts_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let good = json!({
            "type": "service_account",
            "project_id": "p",
            "private_key_id": "k1",
            "private_key": key.serialize_pem(),
            "client_email": "sb@p.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.test/token",
        });
        let mut cases = vec![("not json".to_owned(), "not a service account's key")];
        for (field, value, why) in [
            ("type", json!("authorized_user"), "service_account"),
            ("token_uri", json!("http://oauth2.test/token"), "token_uri"),
            (
                "private_key",
                json!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
                "RSA",
            ),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            cases.push((bad.to_string(), why));
        }
        for (text, why) in cases {
            let file = dir.path().join("sa.json");
            std::fs::write(&file, &text).unwrap();
            let config = config::Fcm {
                service_account_file: file,
                url: "https://fcm.test".into(),
            };
            let err = Fcm::new(&config, reqwest::Client::new())
                .err()
                .expect(&text);
            let err = format!("{err:#}");
            assert!(
                err.contains("fcm_service_account_file") && err.contains(why),
                "{err}"
            );
        }
        let file = dir.path().join("good.json");
        std::fs::write(&file, good.to_string()).unwrap();
        let config = config::Fcm {
            service_account_file: file,
            url: "https://fcm.test".into(),
        };
        let fcm = Fcm::new(&config, reqwest::Client::new()).unwrap();
        assert_eq!(fcm.send_url, "https://fcm.test/v1/projects/p/messages:send");
    }
}
