//! The rmqtt hooks: login on CONNECT and the broker's counters. The
//! decisions live in pure functions (`auth`); this file only translates
//! between them and rmqtt's types.

use std::sync::Arc;

use async_trait::async_trait;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::types::AuthResult;

use super::auth::{check_login, Refusal};
use crate::metrics::{Metrics, RefusalLabels};
use crate::token::Tokens;

pub struct Hooks {
    pub tokens: Tokens,
    pub metrics: Arc<Metrics>,
    /// Conformance-testing mode: everyone may log in.
    pub open: bool,
}

/// The hook types `Hooks` handles.
pub const TYPES: [Type; 5] = [
    Type::ClientAuthenticate,
    Type::ClientConnected,
    Type::ClientDisconnected,
    Type::MessagePublish,
    Type::MessageDelivered,
];

#[async_trait]
impl Handler for Hooks {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(ci) => {
                if self.open {
                    return (
                        false,
                        Some(HookResult::AuthResult(AuthResult::Allow(false, None))),
                    );
                }
                let username = ci.username().map(|u| u.as_ref());
                let password = ci.password().map(|p| p.as_ref());
                let client_id: &str = ci.client_id();
                let result = match check_login(&self.tokens, username, password, client_id) {
                    Ok(_) => AuthResult::Allow(false, None),
                    Err(refusal) => {
                        self.refuse(client_id, refusal);
                        if refusal.is_credentials() {
                            AuthResult::BadUsernameOrPassword
                        } else {
                            AuthResult::NotAuthorized
                        }
                    }
                };
                return (false, Some(HookResult::AuthResult(result)));
            }
            Parameter::ClientConnected(_) => {
                self.metrics.mqtt_connections.inc();
            }
            Parameter::ClientDisconnected(_, _) => {
                self.metrics.mqtt_connections.dec();
            }
            // Counts client publishes (and Last Wills), not the server's own.
            Parameter::MessagePublish(Some(_), _, _) => {
                self.metrics.mqtt_messages_in.inc();
            }
            Parameter::MessageDelivered(_, _, _) => {
                self.metrics.mqtt_messages_out.inc();
            }
            _ => {}
        }
        (true, acc)
    }
}

impl Hooks {
    fn refuse(&self, client_id: &str, refusal: Refusal) {
        tracing::info!(client_id, reason = refusal.label(), "MQTT login refused");
        self.metrics
            .mqtt_logins_refused
            .get_or_create(&RefusalLabels {
                reason: refusal.label(),
            })
            .inc();
    }
}
