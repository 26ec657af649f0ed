//! Accounts signed in through the client SDK, as an app or a robot would.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use switchboard_sdk::{
    Call, CallStateKind, Config, ConnectionState, Event, EventQueue, IncomingCall, PendingCommand,
    Session, Switchboard,
};

use crate::api::Api;
use crate::{Backend, Server, ADMIN_TOKEN};

/// How long a test waits for an event the server should send at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// A signed-in account and the events it receives.
pub struct Account {
    pub session: Arc<Session>,
    pub events: Arc<EventQueue>,
}

impl Account {
    pub fn id(&self) -> String {
        self.session.user_id()
    }

    /// The first event `pick` accepts, skipping others.
    pub async fn until<T>(&self, what: &str, pick: impl FnMut(Event) -> Option<T>) -> Result<T> {
        self.events
            .until(WAIT, pick)
            .await
            .with_context(|| format!("{}: no {what} within {WAIT:?}", self.id()))
    }

    /// The next incoming call.
    pub async fn incoming(&self) -> Result<IncomingCall> {
        self.until("incoming call", |e| match e {
            Event::IncomingCall { call } => Some(call),
            _ => None,
        })
        .await
    }

    /// Waits for call `sid` to reach `state`.
    pub async fn state_of(&self, sid: &str, state: CallStateKind) -> Result<Call> {
        self.until("call state", |e| match e {
            Event::CallState { call } if call.sid == sid && call.state == state => Some(call),
            _ => None,
        })
        .await
    }

    /// Waits for the connection to reach `state`.
    pub async fn connection(&self, state: ConnectionState) -> Result<()> {
        self.until("connection state", |e| {
            (e == Event::Connection { state }).then_some(())
        })
        .await
    }

    /// Asks the robot in call `sid` to move to `destination`, as its
    /// owner's app does.
    pub async fn move_to(&self, sid: &str, destination: &str) -> Result<Arc<PendingCommand>> {
        let arguments = serde_json::json!({ "destination": destination }).to_string();
        let pending = self
            .session
            .send_command(sid.to_owned(), "moveTo".into(), arguments)
            .await?;
        Ok(pending)
    }
}

pub fn switchboard(server: &Server, device: Option<&str>) -> Arc<Switchboard> {
    Switchboard::new(Config {
        http_url: server.http.clone(),
        mqtt_url: None,
        device: device.map(str::to_owned),
        ca_file: None,
    })
    .expect("a valid configuration")
}

/// Signs `phone` in from `device`: the code comes from the SMS webhook.
pub async fn user(backend: &Backend, phone: &str, device: &str) -> Result<Account> {
    let sb = switchboard(&backend.server, Some(device));
    let e164 = sb.request_code(phone.to_owned()).await?;
    let code = backend.sms.code_for(&e164).await?;
    let events = EventQueue::new();
    let session = sb.sign_in(phone.to_owned(), code, events.clone()).await?;
    Ok(Account { session, events })
}

/// Provisions a robot (admin API) and signs it in.
pub async fn robot(server: &Server) -> Result<Account> {
    let r = Api::new(server).create_robot(Some(ADMIN_TOKEN)).await?;
    ensure!(r.status == 201, "provisioning: {r:?}");
    let field = |f: &str| r.body[f].as_str().unwrap_or_default().to_owned();
    let events = EventQueue::new();
    let session = switchboard(server, None)
        .sign_in_robot(field("robotId"), field("secret"), events.clone())
        .await?;
    Ok(Account { session, events })
}
