//! MQTT 5 topic aliases on one connection: those its client set on the
//! way in, and those the broker sets on the way out.

use std::collections::HashMap;
use std::num::NonZeroU16;

use bytestring::ByteString;

pub struct Aliases {
    /// How many the client may use toward the broker.
    max_in: u16,
    /// How many the broker may use toward the client.
    max_out: u16,
    /// Made at the first alias: most connections never use one.
    maps: Option<Box<Maps>>,
}

#[derive(Default)]
struct Maps {
    incoming: HashMap<u16, ByteString>,
    outgoing: HashMap<ByteString, NonZeroU16>,
}

impl Aliases {
    pub fn new(max_in: u16, max_out: u16) -> Aliases {
        Aliases {
            max_in,
            max_out,
            maps: None,
        }
    }

    /// The topic of an incoming PUBLISH with alias `alias`: `topic` (now
    /// the alias's) if it has one, else the alias's; `None` if the alias
    /// is out of range or unknown.
    pub fn resolve(&mut self, alias: u16, topic: &ByteString) -> Option<ByteString> {
        if alias == 0 || alias > self.max_in {
            return None;
        }
        let incoming = &mut self.maps.get_or_insert_default().incoming;
        if topic.is_empty() {
            return incoming.get(&alias).cloned();
        }
        incoming.insert(alias, topic.clone());
        Some(topic.clone())
    }

    /// The alias to send `topic` with, and whether the client already
    /// knows it (then the topic itself is left out).
    pub fn outgoing(&mut self, topic: &ByteString) -> (Option<NonZeroU16>, bool) {
        if self.max_out == 0 {
            return (None, false);
        }
        let outgoing = &mut self.maps.get_or_insert_default().outgoing;
        if let Some(alias) = outgoing.get(topic) {
            return (Some(*alias), true);
        }
        let next = outgoing.len() as u16 + 1;
        if next > self.max_out {
            return (None, false);
        }
        let alias = NonZeroU16::new(next).expect("counted from 1");
        outgoing.insert(topic.clone(), alias);
        (Some(alias), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_aliases_stand_for_the_topic_last_sent_with_them() {
        let mut a = Aliases::new(2, 0);
        let t = |s: &str| ByteString::from(s);
        let steps = [
            (1, "a", Some("a")),
            (1, "", Some("a")),
            (2, "", None),
            (1, "b", Some("b")),
            (1, "", Some("b")),
            (0, "a", None),
            (3, "a", None),
        ];
        for (alias, topic, want) in steps {
            assert_eq!(
                a.resolve(alias, &t(topic)),
                want.map(t),
                "{alias} {topic:?}"
            );
        }
    }

    #[test]
    fn outgoing_aliases_are_given_until_the_clients_maximum() {
        let mut a = Aliases::new(0, 2);
        let t = |s: &str| ByteString::from(s);
        let n = |v: u16| NonZeroU16::new(v);
        assert_eq!(a.outgoing(&t("a")), (n(1), false));
        assert_eq!(a.outgoing(&t("a")), (n(1), true));
        assert_eq!(a.outgoing(&t("b")), (n(2), false));
        assert_eq!(a.outgoing(&t("c")), (None, false));
        assert_eq!(a.outgoing(&t("b")), (n(2), true));
        let mut none = Aliases::new(0, 0);
        assert_eq!(none.outgoing(&t("a")), (None, false));
    }
}
