//! A signed-in user or robot: everything an app does once it has an
//! account. HTTP for what is stored, MQTT for what is live.
//!
//! One uniffi object, its API in a module per domain: this one holds the
//! session itself (start, identity, sign-out) and what the others share.

mod calls;
mod commands;
mod pairing;
mod profiles;
mod wait;

use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use switchboard_protocol::{payload, Id, Sid, Topic};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::api::Auth;
use crate::error::SdkError;
use crate::link::{Request, Shared};

pub use commands::PendingCommand;
pub use pairing::PairingWait;

/// How long the SDK waits for the server to answer something it sent.
const ANSWER: Duration = Duration::from_secs(10);

#[derive(uniffi::Object)]
pub struct Session {
    auth: Arc<Auth>,
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
    me: switchboard_protocol::ClientId,
    /// The task calling the app's listener; `sign_out` waits for it.
    dispatcher: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Session {
    pub(crate) async fn start(
        auth: Arc<Auth>,
        shared: Arc<Shared>,
        requests: mpsc::UnboundedSender<Request>,
        dispatcher: JoinHandle<()>,
    ) -> Result<Session, SdkError> {
        let me = shared.router().me().clone();
        let session = Session {
            auth,
            shared,
            requests,
            me,
            dispatcher: std::sync::Mutex::new(Some(dispatcher)),
        };
        session
            .subscribe_or(Topic::ClientErrors(session.me.clone()).to_string())
            .await?;
        session
            .subscribe_or(format!("invite/{}/+", session.me.id))
            .await?;
        Ok(session)
    }

    fn send(&self, request: Request) -> Result<(), SdkError> {
        self.requests
            .send(request)
            .map_err(|_| SdkError::disconnected())
    }

    fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) -> Result<(), SdkError> {
        self.send(Request::Publish {
            topic,
            payload,
            retain,
        })
    }

    /// Subscribes and learns whether the broker granted it.
    async fn subscribe(&self, filter: String) -> Result<bool, SdkError> {
        let (done, granted) = oneshot::channel();
        self.send(Request::Subscribe {
            filter,
            done: Some(done),
        })?;
        match timeout(ANSWER, granted).await {
            Ok(Ok(granted)) => Ok(granted),
            Ok(Err(_)) => Err(SdkError::disconnected()),
            Err(_) => Err(SdkError::timeout("the broker's SUBACK")),
        }
    }

    async fn subscribe_or(&self, filter: String) -> Result<(), SdkError> {
        if self.subscribe(filter.clone()).await? {
            Ok(())
        } else {
            Err(SdkError::Refused {
                code: "forbidden".into(),
                reason: format!("subscription to {filter} refused"),
            })
        }
    }

    /// The call as this session last saw it, if it may act on it.
    fn known_call(&self, sid: &str) -> Result<(Sid, payload::CallState), SdkError> {
        let no_call = || SdkError::NoCall { sid: sid.into() };
        let parsed: Sid = sid.parse().map_err(|_| no_call())?;
        let state = self
            .shared
            .router()
            .call(&parsed)
            .cloned()
            .ok_or_else(no_call)?;
        Ok((parsed, state))
    }

    /// A call whose media this device carries now, as the relay's
    /// signalling and a robot's answers require.
    fn media_call(&self, sid: &str) -> Result<Sid, SdkError> {
        let (sid, _) = self.known_call(sid)?;
        if self.shared.router().is_media_device(&sid) {
            Ok(sid)
        } else {
            Err(SdkError::NoCall {
                sid: sid.to_string(),
            })
        }
    }
}

fn parse_id(id: &str) -> Result<Id, SdkError> {
    id.parse().map_err(SdkError::invalid)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[uniffi::export(async_runtime = "tokio")]
impl Session {
    /// This account's id (a user's or a robot's).
    pub fn user_id(&self) -> String {
        self.me.id.to_string()
    }

    /// The MQTT client id: `<id>` or `<id>:<device>`.
    pub fn client_id(&self) -> String {
        self.me.to_string()
    }

    /// Disconnects and ends this sign-in on the server. When it returns,
    /// the listener has had its last event (`SignedOut`).
    pub async fn sign_out(&self) -> Result<(), SdkError> {
        let (done, closed) = oneshot::channel();
        if self.send(Request::Close(done)).is_ok() {
            let _ = timeout(ANSWER, closed).await;
        }
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(d) = dispatcher {
            let _ = timeout(ANSWER, d).await;
        }
        self.auth.logout().await
    }
}
