//! Shared subscriptions (`$share/<group>/<filter>`, MQTT 5): rmqtt routes
//! each message to one member of the group, chosen here, in turn among the
//! members online (any member when none is). The topic rules check the
//! filter inside as for a plain subscription.

use std::sync::atomic::{AtomicUsize, Ordering};

use rmqtt::context::ServerContext;
use rmqtt::subscribe::SharedSubscription;
use rmqtt::types::{
    ClientId, Id, IsOnline, NodeId, SharedGroup, SubscriptionIdentifier, SubscriptionOptions,
    TopicName,
};

#[derive(Default)]
pub struct InTurn {
    next: AtomicUsize,
}

type Member = (
    NodeId,
    ClientId,
    SubscriptionOptions,
    Option<Vec<SubscriptionIdentifier>>,
    Option<IsOnline>,
);

#[async_trait::async_trait]
impl SharedSubscription for InTurn {
    fn is_supported(&self) -> bool {
        true
    }

    async fn choice(
        &self,
        _scx: &ServerContext,
        _group: &SharedGroup,
        _publisher: &Id,
        _topic: &TopicName,
        members: &[Member],
    ) -> Option<(usize, IsOnline)> {
        let online = |m: &Member| m.4.unwrap_or(true);
        pick(
            self.next.fetch_add(1, Ordering::Relaxed),
            members.len(),
            |i| online(&members[i]),
        )
    }
}

/// From turn `turn`, the next of `count` members that is online, or the
/// member whose turn it is when none is; with whether it is online.
fn pick(turn: usize, count: usize, online: impl Fn(usize) -> bool) -> Option<(usize, bool)> {
    if count == 0 {
        return None;
    }
    let start = turn % count;
    (0..count)
        .map(|k| (start + k) % count)
        .find(|&i| online(i))
        .map(|i| (i, true))
        .or(Some((start, false)))
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn members_in_turn_skipping_those_offline() {
        type Chosen = Option<(usize, bool)>;
        // (turn, online members of 3, chosen)
        let cases: [(usize, [bool; 3], Chosen); 5] = [
            (0, [true, true, true], Some((0, true))),
            (4, [true, true, true], Some((1, true))),
            (1, [true, false, true], Some((2, true))),
            (2, [true, false, false], Some((0, true))),
            (1, [false, false, false], Some((1, false))),
        ];
        for (turn, online, want) in cases {
            assert_eq!(pick(turn, 3, |i| online[i]), want, "{turn} {online:?}");
        }
        assert_eq!(pick(7, 0, |_| true), None);
    }
}
