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
    pub(super) async fn subscribe(
        &self,
        principal: &Principal,
        address: IpAddr,
        filter: &str,
    ) -> Result<(), Granted> {
        self.decide_subscribe(principal, Some(address), filter)
            .await
            .map_err(|denial| {
                tracing::debug!(client_id = %principal.client, filter, %denial,
                    "subscription refused");
                self.metrics.count_refusal("subscribe");
                Granted::NotAuthorized
            })
    }

    async fn decide_subscribe(
        &self,
        principal: &Principal,
        address: Option<IpAddr>,
        raw: &str,
    ) -> Result<(), Denial> {
        let filter: Filter = raw.parse()?;
        // Before the rules: the look-up is what lets the user read it.
        self.look_up_code(principal, address, &filter).await?;
        let pairing = self.pairing_role(principal, raw).await;
        authorize(principal, Action::Subscribe, &filter, &self.facts(pairing))
    }

    /// A user subscribing to a code's `robotID` looks it up (see
    /// `RobotService::look`); robots subscribe to their own codes.
    async fn look_up_code(
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
        match self
            .services
            .robots
            .look(principal.id(), address, code)
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(PairingRefusal::TooManyTries)) => {
                tracing::info!(client_id = %principal.client, "pairing code lookups refused: too many tries");
                Err(Denial::NotYours)
            }
            Ok(Err(_)) => Err(Denial::NotYours),
            Err(e) => {
                tracing::warn!("looking a pairing code up: {e:#}");
                Err(Denial::NotYours)
            }
        }
    }
}
