//! What crosses between the nodes of one service: messages for
//! subscribers connected to another node, and news that who-sees-whom
//! changed. A node without `nats_url` is alone: nothing crosses; with
//! `nats_url` the bus is NATS.
//!
//! A node wants only what its clients subscribe to. Every topic and every
//! filter the rules allow names its user, call, code or client in its
//! first two levels (`users/<id>/…`, `session/<sid>/…`), with wildcards
//! only below, so those two levels are the message's key: a node wants a
//! key while one of its clients holds a filter under it, and gets each
//! message once, however many of its filters match.

mod frame;
mod nats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::Result;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use switchboard_protocol::Id;

/// A message for subscribers on other nodes, as its publisher's node
/// routed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carried {
    pub topic: String,
    pub payload: Bytes,
    /// 0, 1 or 2.
    pub qos: u8,
    pub retain: bool,
    /// What was left of its expiry when it was sent.
    pub expires_in_ms: Option<u64>,
}

/// What a node does with what other nodes send it.
pub trait Arrivals: Send + Sync + 'static {
    /// Routes a message to this node's subscribers (the rules passed on
    /// the node that took it).
    fn message(&self, message: Carried);
    /// Who sees whom changed for `users` on another node (stored there
    /// already).
    fn graph_changed(&self, users: Vec<Id>);
    /// A call changed on another node (stored there already): the call,
    /// as the call service wrote it.
    fn call_changed(&self, call: Bytes);
    /// Work for a call this node holds, from the node its device is
    /// connected to (`Bus::to_holder`).
    fn for_holder(&self, work: Bytes);
    /// A client connected to another node at `at` (wall clock): its
    /// connection here, if made before, is taken over.
    fn connected_elsewhere(&self, client_id: String, at: SystemTime);
    /// The bus was away from some node and is back: news said meanwhile
    /// may be lost, so what is stored must be read again.
    fn resync(&self);
}

/// The key of a topic or filter the rules allow: its first two levels;
/// `None` when they are not a key (a wildcard, an empty level, a
/// character NATS keeps for itself) or the topic is the broker's own
/// (`$...`).
pub fn key(topic_or_filter: &str) -> Option<&str> {
    let mut levels = topic_or_filter.splitn(3, '/');
    let (kind, name) = (levels.next()?, levels.next()?);
    if kind.starts_with('$') {
        return None;
    }
    let plain = |l: &str| {
        !l.is_empty()
            && !matches!(l, "+" | "#")
            && !l.contains(|c: char| c == '.' || c == '*' || c == '>' || c.is_whitespace())
    };
    (plain(kind) && plain(name)).then(|| &topic_or_filter[..kind.len() + 1 + name.len()])
}

/// How many of this node's filters stand under each key.
#[derive(Default)]
struct Interest {
    held: Mutex<HashMap<Box<str>, u32>>,
}

impl Interest {
    /// Counts one more filter under `key`; whether it is the first.
    fn add(&self, key: &str) -> bool {
        let mut held = self.held.lock().expect("interest lock");
        let count = held.entry(key.into()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Counts one filter less under `key`; whether it was the last.
    fn remove(&self, key: &str) -> bool {
        let mut held = self.held.lock().expect("interest lock");
        let Some(count) = held.get_mut(key) else {
            return false;
        };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        held.remove(key);
        switchboard_broker::sparse::shrink_when_sparse(&mut held);
        true
    }

    fn wants(&self, key: &str) -> bool {
        self.held.lock().expect("interest lock").contains_key(key)
    }
}

#[derive(Clone)]
enum Link {
    /// The only node: nothing crosses and no interest is counted. Its
    /// arrivals are held, never called, so the channels they feed stay
    /// open as on a bus that could deliver.
    Alone { _arrivals: Arc<dyn Arrivals> },
    Nats {
        nats: nats::Nats,
        interest: Arc<Interest>,
    },
}

/// This node's end of the bus.
#[derive(Clone)]
pub struct Bus {
    link: Link,
}

impl Bus {
    /// The bus of a node without `nats_url`.
    pub fn alone(arrivals: Arc<dyn Arrivals>) -> Bus {
        Bus {
            link: Link::Alone {
                _arrivals: arrivals,
            },
        }
    }

    /// A lone node's bus, for unit tests.
    #[cfg(test)]
    pub fn for_tests() -> Bus {
        struct Nobody;
        impl Arrivals for Nobody {
            fn message(&self, _: Carried) {}
            fn graph_changed(&self, _: Vec<Id>) {}
            fn call_changed(&self, _: Bytes) {}
            fn for_holder(&self, _: Bytes) {}
            fn connected_elsewhere(&self, _: String, _: SystemTime) {}
            fn resync(&self) {}
        }
        Bus::alone(Arc::new(Nobody))
    }

    /// Connected to the NATS server at `url` as the node named `node`,
    /// retrying until it answers; what could not be sent is counted in
    /// `unsent`.
    pub async fn nats(
        url: &str,
        node: &str,
        arrivals: Arc<dyn Arrivals>,
        unsent: Counter,
    ) -> Result<Bus> {
        let interest = Arc::new(Interest::default());
        let nats = nats::Nats::connect(url, node, interest.clone(), arrivals, unsent).await?;
        Ok(Bus {
            link: Link::Nats { nats, interest },
        })
    }

    /// Sends what is queued for the other nodes; at the stop.
    pub async fn close(&self) {
        if let Link::Nats { nats, .. } = &self.link {
            nats.close().await;
        }
    }

    /// Sends the message on `topic` to the nodes whose clients subscribe
    /// to it; `message` is made only when it goes somewhere.
    pub fn send(&self, topic: &str, message: impl FnOnce() -> Carried) {
        if let (Link::Nats { nats, .. }, Some(key)) = (&self.link, key(topic)) {
            nats.send(key, message());
        }
    }

    /// Tells the other nodes that who sees whom changed for `users`
    /// (stored already).
    pub fn graph_changed(&self, users: &[Id]) {
        if let Link::Nats { nats, .. } = &self.link {
            nats.graph_changed(users);
        }
    }

    /// Tells the other nodes that a call changed (stored already).
    pub fn call_changed(&self, call: Bytes) {
        if let Link::Nats { nats, .. } = &self.link {
            nats.call_changed(call);
        }
    }

    /// Sends work to `node`, which holds the call it is for; whether it
    /// left (not with NATS away or its queue full, nor from a node
    /// alone).
    pub fn to_holder(&self, node: &str, work: Bytes) -> bool {
        match &self.link {
            Link::Alone { .. } => false,
            Link::Nats { nats, .. } => nats.to_holder(node, work),
        }
    }

    /// Tells the other nodes that `client_id` connected here at `at`, so
    /// an older connection of it there is closed: the newest wins.
    pub fn logged_in(&self, client_id: &str, at: SystemTime) {
        if let Link::Nats { nats, .. } = &self.link {
            nats.logged_in(client_id, at);
        }
    }

    /// A filter held by this node's clients for the first time (`held`)
    /// or no longer: other nodes' messages for it are wanted or not.
    pub fn interest(&self, filter: &str, held: bool) {
        let Link::Nats { nats, interest } = &self.link else {
            return;
        };
        let Some(key) = key(filter) else {
            return;
        };
        let changed = match held {
            true => interest.add(key),
            false => interest.remove(key),
        };
        if changed {
            nats.interest_changed(key, held);
        }
    }

    /// Returns once the interest reported so far is in force: a message
    /// another node sends after this reaches this one.
    pub async fn settled(&self) {
        if let Link::Nats { nats, .. } = &self.link {
            nats.settled().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_first_two_levels_of_what_the_rules_allow() {
        let id = "0123456789abcdef0123456789abcdef";
        let cases = [
            (format!("users/{id}/info"), Some(format!("users/{id}"))),
            (format!("users/{id}/+"), Some(format!("users/{id}"))),
            (format!("users/{id}/#"), Some(format!("users/{id}"))),
            (format!("invite/{id}/s1"), Some(format!("invite/{id}"))),
            ("session/s1/+/response".into(), Some("session/s1".into())),
            ("session/s1/webrtc/c/up".into(), Some("session/s1".into())),
            (
                "pairing/123456/robotID".into(),
                Some("pairing/123456".into()),
            ),
            (
                format!("clients/{id}:phone/errors"),
                Some(format!("clients/{id}:phone")),
            ),
            ("users/x".into(), Some("users/x".into())),
            ("users".into(), None),
            ("$switchboard/absorbed".into(), None),
            ("#".into(), None),
            ("users/+/info".into(), None),
            ("+/x/y".into(), None),
            ("users//info".into(), None),
            ("users/a.b/info".into(), None),
            ("users/a*/info".into(), None),
            ("users/a>/info".into(), None),
            ("users/a b/info".into(), None),
        ];
        for (s, want) in cases {
            assert_eq!(key(&s).map(str::to_string), want, "{s}");
        }
    }

    #[test]
    fn interest_counts_the_filters_under_a_key() {
        let i = Interest::default();
        // (add or remove, key, whether the key's interest changed)
        let steps = [
            (true, "users/a", true),
            (true, "users/a", false),
            (true, "users/b", true),
            (false, "users/a", false),
            (false, "users/a", true),
            (false, "users/a", false),
            (false, "users/c", false),
        ];
        for (add, k, want) in steps {
            let got = if add { i.add(k) } else { i.remove(k) };
            assert_eq!(got, want, "{add} {k}");
        }
        assert!(i.wants("users/b") && !i.wants("users/a"));
    }
}
