//! A client that logs in again with its client id right after its clean
//! session ended. rmqtt takes the old session over by asking it, and
//! refuses the new login (CONNACK 0x03 / 0x88) when the old session has
//! stopped reading but is not yet removed: that happened to 5-8% of quick
//! reconnects, which standard clients do not expect. So once a login is
//! accepted, and before rmqtt looks, a clean old session is ended here:
//! asked if it still listens, else waited out while its teardown removes
//! it. A persistent session is left to rmqtt, whose offline loop always
//! answers, and whose state moves to the new connection.

use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::session::Session;
use rmqtt::types::{ConnectInfo, Id};

/// Longer than any teardown takes (a few hooks and a store of nothing).
const TEARDOWN_WAIT: Duration = Duration::from_secs(2);

pub async fn end_clean_session(scx: &ServerContext, client_id: &str) {
    let id = Id::from(scx.node.id(), client_id.into());
    let mut entry = scx.extends.shared().await.entry(id);
    let Some(old) = entry.session() else {
        return;
    };
    if !is_clean(&old).await {
        return;
    }
    // As rmqtt would for a clean start: a takeover for presence.
    if entry.kick(true, true, false).await.is_ok() {
        return;
    }
    let deadline = tokio::time::Instant::now() + TEARDOWN_WAIT;
    while scx.extends.shared().await.exist(client_id) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether a session ends with its connection: MQTT 3.1.1 clean session,
/// MQTT 5 session expiry 0.
async fn is_clean(s: &Session) -> bool {
    match s.connect_info().await.as_deref() {
        Ok(ConnectInfo::V3(_, connect)) => connect.clean_session,
        Ok(ConnectInfo::V5(..)) => {
            let disconnect = s.disconnect().await.ok().flatten();
            s.fitter
                .session_expiry_interval(disconnect.as_ref())
                .is_zero()
        }
        Err(_) => true,
    }
}
