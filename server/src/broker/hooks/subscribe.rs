//! A SUBSCRIBE, decided: the filter parsed once, a pairing-code look-up
//! counted, the rules applied.

use std::net::IpAddr;

use switchboard_broker::Granted;
use switchboard_pairing::PairingRefusal;
use switchboard_protocol::acl::{authorize, Action, Denial, Principal, PrincipalKind};
use switchboard_protocol::topic::PairingField;
use switchboard_protocol::{Filter, Topic};

use super::Hooks;

impl Hooks {
    /// Whether `principal`, connected from `address`, may subscribe to
    /// `filter`.
    pub(super) fn subscribe(
        &self,
        principal: &Principal,
        address: IpAddr,
        filter: &str,
    ) -> Result<(), Granted> {
        self.decide_subscribe(principal, Some(address), filter)
            .map_err(|denial| {
                tracing::debug!(client_id = %principal.client, filter, %denial,
                    "subscription refused");
                self.metrics.count_refusal("subscribe");
                Granted::NotAuthorized
            })
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
