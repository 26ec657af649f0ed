//! Robots and their owners: a robot shows a pairing code and waits, a user
//! claims it; who owns which robot, and giving one up.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_protocol::topic::PairingField;
use switchboard_protocol::{payload, Id, PairingCode as Code, Topic};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use super::wait::{next_json, recv_until};
use super::{now_ms, parse_id, Session, ANSWER};
use crate::error::SdkError;
use crate::link::Request;
use crate::router::Arrival;
use crate::types::{Pairing, PairingCode};

/// `pairing/<code>/<field>`.
fn topic(code: &Code, field: PairingField) -> String {
    Topic::Pairing {
        code: code.clone(),
        field,
    }
    .to_string()
}

/// A pairing's outcome as either side sees it: `Ok` once paired.
fn settled(outcome: payload::PairingOutcome, code: &str) -> Result<(), SdkError> {
    match outcome {
        payload::PairingOutcome::Paired => Ok(()),
        payload::PairingOutcome::Expired => Err(SdkError::PairingExpired { code: code.into() }),
        payload::PairingOutcome::Rejected => Err(SdkError::PairingRefused { code: code.into() }),
    }
}

/// A claim's outcome as the claiming user `me` sees it: paired to another
/// user (who claimed the code first) is a refusal, not a success.
fn claimed(status: &payload::PairingStatus, me: &Id, code: &str) -> Result<(), SdkError> {
    settled(status.status, code)?;
    if status.user_id.as_ref() == Some(me) {
        Ok(())
    } else {
        Err(SdkError::PairingRefused { code: code.into() })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Robots {
    robots: Vec<RobotRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RobotRow {
    robot_id: String,
    paired_at: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Owners {
    owners: Vec<OwnerRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerRow {
    user_id: String,
    paired_at: i64,
}

#[uniffi::export(async_runtime = "tokio")]
impl Session {
    /// (Robots) a new pairing code to show; `wait` on it for the owner.
    pub async fn start_pairing(&self) -> Result<Arc<PairingWait>, SdkError> {
        let issued: PairingCode = self
            .auth
            .call(Method::POST, "/v1/pairing/codes", Some(&json!({})))
            .await?;
        let code: Code = issued.code.parse().map_err(|_| SdkError::Server {
            reason: format!("the server issued a malformed code {}", issued.code),
        })?;
        let status = topic(&code, PairingField::Status);
        let robot_topic = topic(&code, PairingField::RobotId);
        let arrivals = self.shared.wait_on_all(&[&status, &robot_topic]);
        self.subscribe_or(status).await?;
        self.publish(robot_topic, self.me.id.to_string().into_bytes(), true)?;
        Ok(Arc::new(PairingWait {
            code: issued,
            arrivals: Mutex::new(arrivals),
        }))
    }

    /// (Users) pairs with the robot showing `code`; returns its id.
    pub async fn pair(&self, code: String) -> Result<String, SdkError> {
        let parsed: Code = code.parse().map_err(SdkError::invalid)?;
        let (robot_topic, user_topic, status) = (
            topic(&parsed, PairingField::RobotId),
            topic(&parsed, PairingField::UserId),
            topic(&parsed, PairingField::Status),
        );
        let refused = || SdkError::PairingRefused { code: code.clone() };
        let mut robot_ids = self.shared.wait_on(&robot_topic);
        let mut outcome = self.shared.wait_on_all(&[&user_topic, &status]);
        let result = async {
            if !self.subscribe(robot_topic.clone()).await? {
                return Err(refused());
            }
            let deadline = Instant::now() + ANSWER;
            let robot = loop {
                if let Arrival::Message(bytes) =
                    recv_until(&mut robot_ids, deadline, "the robot's id").await?
                {
                    match std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.parse::<Id>().ok())
                    {
                        Some(id) => break id,
                        None => return Err(refused()),
                    }
                }
            };
            self.subscribe_or(status.clone()).await?;
            self.publish(
                user_topic.clone(),
                self.me.id.to_string().into_bytes(),
                false,
            )?;
            let s: payload::PairingStatus =
                next_json(&mut outcome, deadline, "the pairing's outcome").await?;
            claimed(&s, &self.me.id, &code).map(|()| robot.to_string())
        }
        .await;
        let _ = self.send(Request::Unsubscribe(robot_topic));
        let _ = self.send(Request::Unsubscribe(status));
        result
    }

    /// (Users) the robots this user owns.
    pub async fn robots(&self) -> Result<Vec<Pairing>, SdkError> {
        let r: Robots = self.auth.call(Method::GET, "/v1/me/robots", None).await?;
        Ok(r.robots
            .into_iter()
            .map(|r| Pairing {
                id: r.robot_id,
                paired_at: r.paired_at,
            })
            .collect())
    }

    /// (Robots) the users who own this robot.
    pub async fn owners(&self) -> Result<Vec<Pairing>, SdkError> {
        let o: Owners = self.auth.call(Method::GET, "/v1/me/owners", None).await?;
        Ok(o.owners
            .into_iter()
            .map(|o| Pairing {
                id: o.user_id,
                paired_at: o.paired_at,
            })
            .collect())
    }

    /// (Users) gives a robot up.
    pub async fn unpair(&self, robot_id: String) -> Result<(), SdkError> {
        let id = parse_id(&robot_id)?;
        let _: Value = self
            .auth
            .call(Method::DELETE, &format!("/v1/me/robots/{id}"), None)
            .await?;
        Ok(())
    }
}

/// A robot's pairing code, waiting for an owner to claim it.
#[derive(uniffi::Object)]
pub struct PairingWait {
    code: PairingCode,
    arrivals: Mutex<mpsc::UnboundedReceiver<Arrival>>,
}

#[uniffi::export(async_runtime = "tokio")]
impl PairingWait {
    pub fn code(&self) -> PairingCode {
        self.code.clone()
    }

    /// The owner's user id once the code is claimed; `PairingExpired` if it
    /// is not claimed in time.
    pub async fn wait(&self) -> Result<String, SdkError> {
        let mut arrivals = self.arrivals.lock().await;
        let left = (self.code.expires_at - now_ms()).max(0) as u64;
        // The server publishes `expired` itself; the margin covers its timer.
        let deadline = Instant::now() + Duration::from_millis(left) + ANSWER;
        let s: payload::PairingStatus = next_json(&mut arrivals, deadline, "an owner").await?;
        settled(s.status, &self.code.code)?;
        // A `paired` status that names no owner cannot be acted on.
        s.user_id
            .map(|user| user.to_string())
            .ok_or_else(|| SdkError::PairingRefused {
                code: self.code.code.clone(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payload::PairingOutcome::{Expired, Paired, Rejected};

    #[test]
    fn a_claim_succeeds_only_when_paired_to_the_claimant() {
        let me: Id = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let other: Id = "fedcba9876543210fedcba9876543210".parse().unwrap();
        let robot: Id = "00112233445566778899aabbccddeeff".parse().unwrap();
        let refused = || Err("refused");
        // (case, outcome, the user it names, what the claimant gets)
        let cases: [(&str, _, Option<&Id>, Result<(), &str>); 5] = [
            ("paired to me", Paired, Some(&me), Ok(())),
            (
                "paired to another user first",
                Paired,
                Some(&other),
                refused(),
            ),
            ("paired to nobody named", Paired, None, refused()),
            ("rejected", Rejected, Some(&me), refused()),
            ("expired", Expired, None, Err("expired")),
        ];
        for (case, status, user, want) in cases {
            let status = payload::PairingStatus {
                status,
                robot_id: robot.clone(),
                user_id: user.cloned(),
            };
            let got = claimed(&status, &me, "123456").map_err(|e| match e {
                SdkError::PairingRefused { .. } => "refused",
                SdkError::PairingExpired { .. } => "expired",
                _ => "other",
            });
            assert_eq!(got, want, "{case}");
        }
    }
}
