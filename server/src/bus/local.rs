//! The bus between nodes in one process: each member gets what another
//! sends under a key it wants. A server without `nats_url` is its hub's
//! only member, so what it sends reaches nobody; tests join several.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use switchboard_protocol::Id;

use super::{Arrivals, Carried, Interest};

struct Joined {
    id: usize,
    node: String,
    interest: Arc<Interest>,
    arrivals: Arc<dyn Arrivals>,
}

#[derive(Default)]
struct Members {
    joined: Mutex<Vec<Joined>>,
    /// How many joined, read without the lock: one member sends to nobody.
    count: AtomicUsize,
}

/// The nodes of one process.
#[derive(Clone, Default)]
pub struct Hub(Arc<Members>);

impl Hub {
    pub(super) fn join(
        &self,
        node: &str,
        interest: Arc<Interest>,
        arrivals: Arc<dyn Arrivals>,
    ) -> Member {
        let mut joined = self.0.joined.lock().expect("hub lock");
        let id = joined.len();
        joined.push(Joined {
            id,
            node: node.to_string(),
            interest,
            arrivals,
        });
        self.0.count.store(joined.len(), Ordering::Release);
        Member {
            hub: self.clone(),
            id,
        }
    }
}

#[derive(Clone)]
pub(super) struct Member {
    hub: Hub,
    id: usize,
}

impl Member {
    /// The other members, those `pick` takes.
    fn others(&self, pick: impl Fn(&Joined) -> bool) -> Vec<Arc<dyn Arrivals>> {
        if self.hub.0.count.load(Ordering::Acquire) < 2 {
            return Vec::new();
        }
        let joined = self.hub.0.joined.lock().expect("hub lock");
        (joined.iter())
            .filter(|j| j.id != self.id && pick(j))
            .map(|j| j.arrivals.clone())
            .collect()
    }

    pub fn send(&self, key: &str, message: impl FnOnce() -> Carried) {
        let to = self.others(|j| j.interest.wants(key));
        if to.is_empty() {
            return;
        }
        let message = message();
        for to in to {
            to.message(message.clone());
        }
    }

    pub fn logged_in(&self, client_id: &str, at: SystemTime) {
        for to in self.others(|_| true) {
            to.connected_elsewhere(client_id.to_string(), at);
        }
    }

    pub fn graph_changed(&self, users: &[Id]) {
        for to in self.others(|_| true) {
            to.graph_changed(users.to_vec());
        }
    }

    pub fn call_changed(&self, call: Bytes) {
        for to in self.others(|_| true) {
            to.call_changed(call.clone());
        }
    }

    pub fn to_holder(&self, node: &str, work: Bytes) -> bool {
        let to = self.others(|j| j.node == node);
        for to in &to {
            to.for_holder(work.clone());
        }
        !to.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Bus;
    use super::*;

    /// What a member was sent, in order.
    #[derive(Default)]
    struct Got(Mutex<Vec<String>>);

    impl Arrivals for Got {
        fn message(&self, m: Carried) {
            self.0.lock().unwrap().push(m.topic);
        }
        fn graph_changed(&self, users: Vec<Id>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("graph {}", users.len()));
        }
        fn call_changed(&self, call: Bytes) {
            self.0
                .lock()
                .unwrap()
                .push(format!("call {}", String::from_utf8_lossy(&call)));
        }
        fn for_holder(&self, work: Bytes) {
            self.0
                .lock()
                .unwrap()
                .push(format!("held {}", String::from_utf8_lossy(&work)));
        }
        fn connected_elsewhere(&self, client_id: String, _: SystemTime) {
            self.0
                .lock()
                .unwrap()
                .push(format!("connected {client_id}"));
        }
        fn resync(&self) {
            unreachable!("an in-process bus is never away");
        }
    }

    fn message(topic: &str) -> Carried {
        Carried {
            topic: topic.into(),
            payload: "p".into(),
            qos: 1,
            retain: false,
            expires_in_ms: None,
        }
    }

    #[test]
    fn a_message_reaches_the_other_members_that_hold_a_filter_under_its_key() {
        let hub = Hub::default();
        let (got_a, got_b) = (Arc::new(Got::default()), Arc::new(Got::default()));
        let a = Bus::local(&hub, "a", got_a.clone());
        let b = Bus::local(&hub, "b", got_b.clone());
        b.interest("users/x/+", true);
        b.interest("users/x/info", true);
        a.interest("users/x/+", true);
        a.send("users/x/info", || message("users/x/info"));
        a.send("users/y/info", || message("users/y/info"));
        b.send("users/x/presence", || message("users/x/presence"));
        b.interest("users/x/+", false);
        a.send("users/x/isConnected", || message("users/x/isConnected"));
        b.interest("users/x/info", false);
        a.send("users/x/info", || message("users/x/info"));
        a.graph_changed(&[]);
        a.call_changed("c".into());
        assert!(a.to_holder("b", "s".into()));
        assert!(!a.to_holder("c", "nobody".into()));
        a.logged_in("c1", SystemTime::now());
        let got = |g: &Got| g.0.lock().unwrap().clone();
        assert_eq!(
            got(&got_b),
            [
                "users/x/info",
                "users/x/isConnected",
                "graph 0",
                "call c",
                "held s",
                "connected c1"
            ],
            "once each, under a key it held, never its own"
        );
        assert_eq!(got(&got_a), ["users/x/presence"]);
    }
}
