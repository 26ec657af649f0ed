//! The HTTP API from a client's side, and an SMS webhook receiver that
//! catches one-time codes the way an SMS gateway would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};
use switchboard_protocol::http;
use tokio::sync::Notify;

use crate::mqtt::Login;
use crate::Server;

/// A JSON response: status and body (`Null` when there was none).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        Api {
            base: server.http.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends `body` (any bytes) with a JSON content type.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{status} answered non-JSON: {text}"))?
        };
        Ok(Reply { status, body })
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Reply> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        self.raw(method, path, token, bytes).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Result<Reply> {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Result<Reply> {
        self.call("POST", path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Result<Reply> {
        self.call("PUT", path, Some(token), Some(body)).await
    }

    /// Replaces the profile of the account `token` signs in.
    pub async fn set_profile(&self, token: &str, profile: Value) -> Result<Reply> {
        self.put("/v1/me/profile", token, profile).await
    }

    /// Replaces the contact list of the account `token` signs in.
    pub async fn set_contacts(&self, token: &str, ids: &[impl Serialize]) -> Result<Reply> {
        self.put("/v1/me/contacts", token, json!({ "userIds": ids }))
            .await
    }

    /// Replaces the block list of the account `token` signs in.
    pub async fn set_blocked(&self, token: &str, ids: &[impl Serialize]) -> Result<Reply> {
        self.put("/v1/me/blocked", token, json!({ "userIds": ids }))
            .await
    }

    /// Sets who may see the account `token` signs in (`contacts`,
    /// `everyone`).
    pub async fn set_visibility(&self, token: &str, visibility: &str) -> Result<Reply> {
        self.put(
            "/v1/me/visibility",
            token,
            json!({ "visibility": visibility }),
        )
        .await
    }

    /// Looks `phones` (a JSON list) up among the accounts.
    pub async fn discover(&self, token: &str, phones: Value) -> Result<Reply> {
        self.post(
            "/v1/contacts/discover",
            Some(token),
            json!({ "phones": phones }),
        )
        .await
    }

    /// Makes everyone in `people` a contact of everyone else.
    pub async fn all_contacts(&self, people: &[&SignedIn]) -> Result<()> {
        for me in people {
            let ids: Vec<&str> = people
                .iter()
                .filter(|o| o.id != me.id)
                .map(|o| o.id.as_str())
                .collect();
            let r = self.set_contacts(&me.access, &ids).await?;
            anyhow::ensure!(r.status == 200, "contacts of {}: {r:?}", me.id);
        }
        Ok(())
    }

    /// Asks for a one-time code to be sent to `phone`.
    pub async fn request_code(&self, phone: &str) -> Result<Reply> {
        self.post("/v1/auth/otp", None, json!({ "phone": phone }))
            .await
    }

    /// Signs in from `device` with the one-time code sent to `phone`.
    pub async fn verify(&self, phone: &str, code: &str, device: &str) -> Result<Reply> {
        self.post(
            "/v1/auth/verify",
            None,
            json!({"phone": phone, "code": code, "device": device}),
        )
        .await
    }

    /// Trades a refresh token for new tokens.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Reply> {
        self.post(
            "/v1/auth/refresh",
            None,
            json!({ "refreshToken": refresh_token }),
        )
        .await
    }

    /// Provisions a robot with the admin token `admin` (`None`: none).
    pub async fn create_robot(&self, admin: Option<&str>) -> Result<Reply> {
        self.call("POST", "/v1/robots", admin, None).await
    }

    /// Signs a robot in with its secret.
    pub async fn robot_sign_in(&self, robot_id: &str, secret: &str) -> Result<Reply> {
        self.post(
            "/v1/auth/robot",
            None,
            json!({"robotId": robot_id, "secret": secret}),
        )
        .await
    }

    /// Signs a phone in: asks for a code, catches it at the webhook, and
    /// verifies it.
    pub async fn sign_in(&self, sms: &SmsInbox, phone: &str, device: &str) -> Result<SignedIn> {
        let sent = self.request_code(phone).await?;
        if sent.status != 200 {
            return Err(anyhow!("otp: {sent:?}"));
        }
        let e164 = sent.body["phone"]
            .as_str()
            .context("phone in answer")?
            .to_string();
        let code = sms.code_for(&e164).await?;
        let r = self.verify(phone, &code, device).await?;
        if r.status != 200 {
            return Err(anyhow!("verify: {r:?}"));
        }
        SignedIn::from_reply(&r.body, "userId")
    }
}

/// A signed-in user or robot, as the tests use it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: String,
    pub access: String,
    pub refresh: String,
    pub client_id: String,
    pub body: Value,
}

impl SignedIn {
    /// From what sign-in answered, read as the protocol's body; `id_field`
    /// says whose id it must carry (`userId` or `robotId`).
    pub fn from_reply(body: &Value, id_field: &str) -> Result<SignedIn> {
        let reply: http::SignedIn = serde_json::from_value(body.clone())
            .with_context(|| format!("not a sign-in: {body}"))?;
        let id = match id_field {
            "userId" => reply.user_id,
            "robotId" => reply.robot_id,
            other => anyhow::bail!("a sign-in carries userId or robotId, not {other}"),
        };
        Ok(SignedIn {
            id: id.with_context(|| format!("no {id_field} in {body}"))?,
            access: reply.tokens.access_token,
            refresh: reply.tokens.refresh_token,
            client_id: reply.mqtt.client_id,
            body: body.clone(),
        })
    }

    /// The MQTT login of this client: its client id, its id as the
    /// username, its access token as the password.
    pub fn login(&self) -> Login<'_> {
        Login::token(&self.client_id, &self.id, &self.access)
    }

    /// Where the broker reports what it refused of this client.
    pub fn errors_topic(&self) -> String {
        format!("clients/{}/errors", self.client_id)
    }
}

/// Receives `POST {"phone", "code", "message"}` like an SMS gateway.
#[derive(Clone)]
pub struct SmsInbox {
    pub url: String,
    /// Every body received, in order.
    pub received: Arc<Mutex<Vec<Value>>>,
    latest: Arc<Mutex<HashMap<String, String>>>,
    arrived: Arc<Notify>,
}

impl SmsInbox {
    pub async fn start() -> Result<SmsInbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/sms", listener.local_addr()?);
        let inbox = SmsInbox {
            url,
            received: Arc::default(),
            latest: Arc::default(),
            arrived: Arc::new(Notify::new()),
        };
        let sink = inbox.clone();
        let reader = inbox.clone();
        let app = axum::Router::new()
            // For tests in other languages: the newest code of `?phone=`.
            .route(
                "/sms/code",
                axum::routing::get(
                    move |axum::extract::Query(q): axum::extract::Query<
                        HashMap<String, String>,
                    >| {
                        let reader = reader.clone();
                        async move {
                            let phone = q.get("phone").cloned().unwrap_or_default();
                            match reader.code_for(&phone).await {
                                Ok(code) => (axum::http::StatusCode::OK, code),
                                Err(e) => (axum::http::StatusCode::NOT_FOUND, e.to_string()),
                            }
                        }
                    },
                ),
            )
            .route(
                "/sms",
                axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                    let sink = sink.clone();
                    async move {
                        if let (Some(phone), Some(code)) =
                            (body["phone"].as_str(), body["code"].as_str())
                        {
                            sink.latest
                                .lock()
                                .unwrap()
                                .insert(phone.to_string(), code.to_string());
                        }
                        sink.received.lock().unwrap().push(body);
                        sink.arrived.notify_waiters();
                        "ok"
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(inbox)
    }

    /// The newest code sent to `phone` (E.164), taken out of the inbox;
    /// waits for it to arrive.
    pub async fn code_for(&self, phone: &str) -> Result<String> {
        let wait = async {
            loop {
                let notified = self.arrived.notified();
                if let Some(code) = self.latest.lock().unwrap().remove(phone) {
                    return code;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .map_err(|_| anyhow!("no code for {phone} reached the webhook"))
    }
}
