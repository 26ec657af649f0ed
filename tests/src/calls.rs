//! Getting two devices into an accepted call over MQTT, for the tests and
//! benchmarks that need one (media, commands).

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::api::SignedIn;
use crate::mqtt::{connect, granted, Client, Incoming, Via};
use crate::{random_id, Server};

pub async fn device(server: &Server, who: &SignedIn) -> Result<Client> {
    connect(server.mqtt, Via::Tcp, who.login())
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", who.client_id))
}

/// The invite to call `sid` that `caller`'s device sends (a robot's
/// client id names no device).
pub fn invitation(sid: &str, caller: &SignedIn, kind: &str) -> Value {
    let device = caller.client_id.split_once(':').map(|(_, d)| d);
    json!({"sid": sid, "from": caller.id, "fromDevice": device, "kind": kind, "sentAt": 1})
}

/// Sends a call action (`accept`, `hangup`, ...) on `session/<sid>/call`.
pub async fn act(client: &Client, sid: &str, action: &str) -> Result<()> {
    client
        .publish_json(&format!("session/{sid}/call"), &json!({ "action": action }))
        .await
}

/// Waits for `state` on the call's state topic.
pub async fn state_until(client: &mut Client, sid: &str, state: &str) -> Result<Value> {
    let topic = format!("session/{sid}/state");
    loop {
        if let Incoming::Publish {
            topic: t, payload, ..
        } = client.next().await?
        {
            let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
            if t == topic && v["state"] == state {
                return Ok(v);
            }
            if t.starts_with("clients/") {
                bail!("refused: {v}");
            }
        }
    }
}

/// The next report on `clients/<me>/errors`, skipping anything else.
pub async fn next_error(client: &mut Client) -> Result<Value> {
    loop {
        if let Incoming::Publish { topic, payload, .. } = client.next().await? {
            if topic.starts_with("clients/") {
                return Ok(serde_json::from_slice(&payload)?);
            }
        }
    }
}

/// `caller` invites `callee` (who may see each other), the callee's
/// device rings and accepts; returns the sid and both devices' clients,
/// subscribed to the call's state.
pub async fn accepted(
    server: &Server,
    caller: &SignedIn,
    callee: &SignedIn,
) -> Result<(String, Client, Client)> {
    let sid = random_id();
    let mut from = device(server, caller).await?;
    let mut to = device(server, callee).await?;
    to.subscribe(&format!("invite/{}/+", callee.id)).await?;
    let invite = invitation(&sid, caller, "video");
    from.publish_json(&format!("invite/{}/{sid}", callee.id), &invite)
        .await?;
    // Each side may read the state once it is in the call.
    from.subscribe(&format!("session/{sid}/state")).await?;
    loop {
        if let Incoming::Publish { topic, .. } = to.next().await? {
            if topic.starts_with("invite/") {
                break;
            }
        }
    }
    to.subscribe(&format!("session/{sid}/state")).await?;
    act(&to, &sid, "ringing").await?;
    act(&to, &sid, "accept").await?;
    state_until(&mut from, &sid, "accepted").await?;
    state_until(&mut to, &sid, "accepted").await?;
    Ok((sid, from, to))
}

/// A user's device: an MQTT client subscribed to its invites and errors.
pub struct Device {
    pub who: SignedIn,
    pub mqtt: Client,
}

impl Device {
    pub async fn new(server: &Server, who: &SignedIn, device: &str) -> Device {
        let who = device_of(server, who, device);
        let mut mqtt = server.mqtt_as(&who).await;
        for filter in [format!("invite/{}/+", who.id), who.errors_topic()] {
            let codes = mqtt.subscribe(&filter).await.unwrap();
            assert!(granted(&codes), "{filter}: {codes:?}");
        }
        Device { who, mqtt }
    }

    pub async fn invite(&self, callee: &str, sid: &str) {
        let invite = invitation(sid, &self.who, "video");
        self.mqtt
            .publish_json(&format!("invite/{callee}/{sid}"), &invite)
            .await
            .unwrap();
    }

    /// Invites `callee` to `sid` and follows the call's state.
    pub async fn call(&mut self, callee: &str, sid: &str) {
        self.invite(callee, sid).await;
        self.watch(sid).await;
    }

    pub async fn act(&self, sid: &str, action: &str) {
        act(&self.mqtt, sid, action).await.unwrap();
    }

    pub async fn watch(&mut self, sid: &str) {
        let codes = self
            .mqtt
            .subscribe(&format!("session/{sid}/state"))
            .await
            .unwrap();
        assert!(granted(&codes), "{codes:?}");
    }

    /// The next message; panics after the harness's wait.
    pub async fn next(&mut self) -> (String, Value) {
        match self.mqtt.next().await.unwrap() {
            Incoming::Publish { topic, payload, .. } => (
                topic,
                serde_json::from_slice(&payload).unwrap_or(Value::Null),
            ),
            other => panic!("{other:?}"),
        }
    }

    /// Waits for a state of `sid` matching `want`.
    pub async fn state_until(&mut self, sid: &str, want: impl Fn(&Value) -> bool) -> Value {
        let topic = format!("session/{sid}/state");
        loop {
            let (t, v) = self.next().await;
            if t == topic && want(&v) {
                return v;
            }
        }
    }

    /// Waits for call `sid` to be in `state`.
    pub async fn reaches(&mut self, sid: &str, state: &str) -> Value {
        self.state_until(sid, |v| v["state"] == state).await
    }

    pub async fn ended(&mut self, sid: &str) -> Value {
        self.reaches(sid, "ended").await
    }

    /// The next error report.
    pub async fn error(&mut self) -> Value {
        next_error(&mut self.mqtt).await.unwrap()
    }

    /// The next invite; then the state of its call `sid` is followed.
    pub async fn invited_to(&mut self, sid: &str) -> Value {
        let invite = loop {
            let (t, v) = self.next().await;
            if t.starts_with("invite/") {
                break v;
            }
        };
        self.watch(sid).await;
        invite
    }

    /// Takes the invite to `sid` and accepts; returns once it sees the
    /// call accepted.
    pub async fn accepts(&mut self, sid: &str) {
        self.invited_to(sid).await;
        self.act(sid, "accept").await;
        self.reaches(sid, "accepted").await;
    }
}

/// The same user on another device (a token of its own).
pub fn device_of(server: &Server, who: &SignedIn, device: &str) -> SignedIn {
    server
        .minted_for(&who.id, "user", Some(device), 600)
        .unwrap()
}
