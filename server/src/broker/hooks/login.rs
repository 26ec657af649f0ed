//! Logins: the CONNECT decision (`auth`), who is logged in under which
//! client id, and each connection watched until its token expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, ConnectInfo, LastWill};
use switchboard_protocol::acl::Principal;

use super::super::auth::check_login;
use super::super::expiry::Expiry;
use super::super::takeover::end_clean_session;
use crate::metrics::{Metrics, RefusalLabels};
use crate::social::Graph;
use crate::store::Store;
use crate::token::{now_s, Tokens};

pub struct Logins {
    tokens: Tokens,
    /// Accounts made while the server ran are learned at their first
    /// login.
    graph: Arc<Graph>,
    store: Store,
    scx: ServerContext,
    metrics: Arc<Metrics>,
    /// Connections to close when their token expires.
    expiry: Arc<Expiry>,
    /// How long a connection may outlive its token.
    token_grace: Duration,
    /// By client id.
    logins: Mutex<HashMap<String, Login>>,
}

struct Login {
    principal: Principal,
    /// Token expiry, seconds since the epoch.
    exp: u64,
    /// The connection, once connected. A takeover's old connection may
    /// report its end after the new one logged in; this tells them apart.
    connection: Option<rmqtt::types::Id>,
}

fn will_topic(ci: &ConnectInfo) -> Option<String> {
    ci.last_will().map(|w| match w {
        LastWill::V3(w) => w.topic.to_string(),
        LastWill::V5(w) => w.topic.to_string(),
    })
}

impl Logins {
    pub fn new(
        tokens: Tokens,
        graph: Arc<Graph>,
        store: Store,
        scx: ServerContext,
        metrics: Arc<Metrics>,
        expiry: Arc<Expiry>,
        token_grace: Duration,
    ) -> Self {
        Logins {
            tokens,
            graph,
            store,
            scx,
            metrics,
            expiry,
            token_grace,
            logins: Mutex::new(HashMap::new()),
        }
    }

    pub fn principal(&self, client_id: &str) -> Option<Principal> {
        let logins = self.logins.lock().expect("logins lock");
        logins.get(client_id).map(|l| l.principal.clone())
    }

    /// Conformance-testing mode: everyone may log in.
    pub async fn allow_anyone(&self, ci: &ConnectInfo) -> AuthResult {
        end_clean_session(&self.scx, ci.client_id()).await;
        AuthResult::Allow(false, None)
    }

    pub async fn authenticate(&self, ci: &ConnectInfo) -> AuthResult {
        let username = ci.username().map(|u| u.as_ref());
        let password = ci.password().map(|p| p.as_ref());
        let client_id: &str = ci.client_id();
        let will = will_topic(ci);
        match check_login(&self.tokens, username, password, client_id, will.as_deref()) {
            Ok((claims, principal)) => {
                // An account made while the server ran (by the CLI, or
                // another process) is known from its first login on.
                if let Err(e) = self.graph.learn(&self.store, principal.id()).await {
                    tracing::warn!(client_id, "learning a new account: {e:#}");
                }
                let login = Login {
                    principal,
                    exp: claims.exp,
                    connection: None,
                };
                self.logins
                    .lock()
                    .expect("logins lock")
                    .insert(client_id.to_string(), login);
                end_clean_session(&self.scx, client_id).await;
                AuthResult::Allow(false, None)
            }
            Err(refusal) => {
                tracing::info!(client_id, reason = refusal.label(), "MQTT login refused");
                self.metrics
                    .mqtt_logins_refused
                    .get_or_create(&RefusalLabels {
                        reason: refusal.label(),
                    })
                    .inc();
                if refusal.is_credentials() {
                    AuthResult::BadUsernameOrPassword
                } else {
                    AuthResult::NotAuthorized
                }
            }
        }
    }

    /// Records the connection, to be closed once its token has expired and
    /// the grace period passed.
    pub fn connected(&self, s: &Session) {
        let exp = {
            let mut logins = self.logins.lock().expect("logins lock");
            let Some(login) = logins.get_mut(s.id.client_id.as_ref() as &str) else {
                return;
            };
            login.connection = Some(s.id.clone());
            login.exp
        };
        let wait = Duration::from_secs(exp.saturating_sub(now_s())) + self.token_grace;
        self.expiry.watch(s.id.clone(), wait);
        self.metrics.mqtt_token_timers.set(self.expiry.len() as i64);
    }

    /// Forgets the connection, and its login unless a newer connection of
    /// the same client id took it over.
    pub fn disconnected(&self, s: &Session) {
        self.expiry.forget(&s.id);
        self.metrics.mqtt_token_timers.set(self.expiry.len() as i64);
        let mut logins = self.logins.lock().expect("logins lock");
        let key: &str = s.id.client_id.as_ref();
        if logins
            .get(key)
            .is_some_and(|l| l.connection.as_ref() == Some(&s.id))
        {
            logins.remove(key);
        }
    }
}
