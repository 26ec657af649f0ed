//! A SUBSCRIBE, decided: the filter parsed once, a pairing-code look-up
//! counted, the rules applied.

use std::net::IpAddr;

use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::session::Session;
use rmqtt::types::{Subscribe, SubscribeAclResult};
use switchboard_pairing::PairingRefusal;
use switchboard_protocol::acl::{authorize, Action, Denial, Principal, PrincipalKind};
use switchboard_protocol::topic::PairingField;
use switchboard_protocol::{Filter, Topic};

use super::Hooks;

impl Hooks {
    pub(super) fn subscribe(&self, s: &Session, sub: &Subscribe) -> SubscribeAclResult {
        let address = s.id.remote_addr.map(|a| a.ip());
        let verdict = match self.logins.principal(&s.id.client_id) {
            Some(p) => self.decide_subscribe(&p, address, &sub.topic_filter),
            None => Err(Denial::NotYours),
        };
        match verdict {
            Ok(()) => SubscribeAclResult::new_success(sub.opts.qos(), None),
            Err(denial) => {
                tracing::debug!(client_id = %s.id.client_id, filter = %sub.topic_filter,
                    %denial, "subscription refused");
                self.metrics.count_refusal("subscribe");
                SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
            }
        }
    }

    fn decide_subscribe(
        &self,
        principal: &Principal,
        address: Option<IpAddr>,
        filter: &str,
    ) -> Result<(), Denial> {
        let filter: Filter = filter.parse()?;
        // Before the rules: the look-up is what lets the user read it.
        self.look_up_code(principal, address, &filter)?;
        authorize(principal, Action::Subscribe, &filter, &self.facts())
    }

    /// A user subscribing to a code's `robotID` looks it up (see
    /// `RobotService::look`); robots subscribe to their own codes.
    fn look_up_code(
        &self,
        principal: &Principal,
        address: Option<IpAddr>,
        filter: &Filter,
    ) -> Result<(), Denial> {
        let Filter::Topic(Topic::Pairing {
            code,
            field: PairingField::RobotId,
        }) = filter
        else {
            return Ok(());
        };
        if principal.kind == PrincipalKind::Robot {
            return Ok(());
        }
        match self.services.robots.look(principal.id(), address, code) {
            Ok(_) => Ok(()),
            Err(PairingRefusal::TooManyTries) => {
                tracing::info!(client_id = %principal.client, "pairing code lookups refused: too many tries");
                Err(Denial::NotYours)
            }
            Err(_) => Err(Denial::NotYours),
        }
    }
}
