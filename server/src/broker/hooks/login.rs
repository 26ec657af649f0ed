//! MQTT logins: the token checked (`auth.rs`), the account learned if it
//! is new, refusals counted; and each connection's token expiry watched,
//! so it closes once its token ran out and the grace period passed.

use std::sync::Arc;
use std::time::Duration;

use switchboard_broker::{ConnectRefusal, Login};
use switchboard_protocol::acl::Principal;

use super::super::auth::check_login;
use super::super::expiry::Expiry;
use crate::metrics::{Metrics, RefusalLabels};
use crate::social::Graph;
use crate::token::{now_s, Tokens};

pub struct Logins {
    tokens: Tokens,
    /// Accounts made while the server ran are learned at their first
    /// login.
    graph: Arc<Graph>,
    metrics: Arc<Metrics>,
    /// Connections to close when their token expires.
    expiry: Arc<Expiry>,
    /// How long a connection may outlive its token.
    token_grace: Duration,
}

/// A login let in: who, and until when (token expiry, seconds since the
/// epoch).
pub struct Allowed {
    pub principal: Principal,
    pub exp: u64,
}

impl Logins {
    pub fn new(
        tokens: Tokens,
        graph: Arc<Graph>,
        metrics: Arc<Metrics>,
        expiry: Arc<Expiry>,
        token_grace: Duration,
    ) -> Self {
        Logins {
            tokens,
            graph,
            metrics,
            expiry,
            token_grace,
        }
    }

    pub async fn authenticate(&self, login: &Login<'_>) -> Result<Allowed, ConnectRefusal> {
        let client_id = login.client_id;
        let checked = check_login(
            &self.tokens,
            login.username,
            login.password,
            client_id,
            login.will_topic,
        );
        match checked {
            Ok((claims, principal)) => {
                // An account made while the server ran (by the CLI, or
                // another process) is known from its first login on.
                if let Err(e) = self.graph.learn(principal.id()).await {
                    tracing::warn!(client_id, "learning a new account: {e:#}");
                }
                Ok(Allowed {
                    principal,
                    exp: claims.exp,
                })
            }
            Err(refusal) => {
                tracing::info!(client_id, reason = refusal.label(), "MQTT login refused");
                self.metrics
                    .mqtt_logins_refused
                    .get_or_create(&RefusalLabels {
                        reason: refusal.label(),
                    })
                    .inc();
                Err(match refusal.is_credentials() {
                    true => ConnectRefusal::BadCredentials,
                    false => ConnectRefusal::NotAuthorized,
                })
            }
        }
    }

    /// Watches the connection, to close it once its token has expired and
    /// the grace period passed.
    pub fn connected(&self, client_id: &str, connection: u64, exp: u64) {
        let wait = Duration::from_secs(exp.saturating_sub(now_s())) + self.token_grace;
        self.expiry.watch((client_id.into(), connection), wait);
        self.metrics.mqtt_token_timers.set(self.expiry.len() as i64);
    }

    pub fn disconnected(&self, client_id: &str, connection: u64) {
        self.expiry.forget(&(client_id.into(), connection));
        self.metrics.mqtt_token_timers.set(self.expiry.len() as i64);
    }
}
