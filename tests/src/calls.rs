//! Getting two devices into an accepted call over MQTT, for the tests and
//! benchmarks that need one (media, commands).

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::api::SignedIn;
use crate::mqtt::{connect, Client, Incoming, Via};
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
