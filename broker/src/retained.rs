//! Retained messages by topic level, so a new subscription finds those its
//! filter matches without looking at the others.

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::Message;

#[derive(Default)]
pub struct Retained {
    children: HashMap<Box<str>, Retained>,
    message: Option<Arc<Message>>,
}

impl Retained {
    /// Keeps `message` for its topic; an empty payload clears the topic.
    pub fn set(&mut self, message: Arc<Message>) {
        let topic = message.topic.clone();
        let levels: Vec<&str> = topic.split('/').collect();
        let keep = (!message.payload.is_empty()).then_some(message);
        self.set_levels(&levels, keep);
    }

    fn set_levels(&mut self, levels: &[&str], message: Option<Arc<Message>>) {
        match levels.split_first() {
            None => self.message = message,
            Some((level, rest)) => {
                if message.is_none() && !self.children.contains_key(*level) {
                    return;
                }
                let child = self.children.entry((*level).into()).or_default();
                child.set_levels(rest, message);
                if child.is_empty() {
                    self.children.remove(*level);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.message.is_none() && self.children.is_empty()
    }

    /// The retained messages `filter` matches. A wildcard in the first
    /// level does not match topics starting with `$` (MQTT 4.7.2).
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut out = Vec::new();
        self.matching_levels(&levels, true, &mut out);
        out
    }

    fn matching_levels(&self, levels: &[&str], first: bool, out: &mut Vec<Arc<Message>>) {
        let wild = |name: &str| !(first && name.starts_with('$'));
        match levels.split_first() {
            None => out.extend(self.message.clone()),
            Some((&"#", _)) => {
                // `a/#` matches `a` too.
                out.extend(self.message.clone().filter(|_| !first));
                for (name, child) in &self.children {
                    if wild(name) {
                        child.all(out);
                    }
                }
            }
            Some((&"+", rest)) => {
                for (name, child) in &self.children {
                    if wild(name) {
                        child.matching_levels(rest, false, out);
                    }
                }
            }
            Some((level, rest)) => {
                if let Some(child) = self.children.get(*level) {
                    child.matching_levels(rest, false, out);
                }
            }
        }
    }

    fn all(&self, out: &mut Vec<Arc<Message>>) {
        out.extend(self.message.clone());
        for child in self.children.values() {
            child.all(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QoS;

    fn message(topic: &str, payload: &str) -> Arc<Message> {
        let payload = bytes::Bytes::copy_from_slice(payload.as_bytes());
        Arc::new(Message::new(topic.into(), payload, QoS::AtLeastOnce))
    }

    fn topics(r: &Retained, filter: &str) -> Vec<String> {
        let mut t: Vec<String> = r
            .matching(filter)
            .iter()
            .map(|m| m.topic.to_string())
            .collect();
        t.sort();
        t
    }

    #[test]
    fn a_filter_finds_the_retained_messages_it_matches() {
        let mut r = Retained::default();
        for topic in ["a", "a/b", "a/c", "a/b/c", "x/b", "$SYS/x"] {
            r.set(message(topic, "v"));
        }
        let cases: &[(&str, &[&str])] = &[
            ("a/b", &["a/b"]),
            ("a/+", &["a/b", "a/c"]),
            ("+/b", &["a/b", "x/b"]),
            ("a/#", &["a", "a/b", "a/b/c", "a/c"]),
            ("#", &["a", "a/b", "a/b/c", "a/c", "x/b"]),
            ("+", &["a"]),
            ("$SYS/#", &["$SYS/x"]),
            ("nothing", &[]),
        ];
        for (filter, want) in cases {
            assert_eq!(topics(&r, filter), *want, "{filter}");
        }
    }

    #[test]
    fn an_empty_payload_clears_the_topic_and_leaves_no_branch() {
        let mut r = Retained::default();
        r.set(message("a/b", "v"));
        r.set(message("a/b", "w"));
        assert_eq!(&r.matching("a/b")[0].payload[..], b"w");
        r.set(message("a/b", ""));
        assert!(r.matching("#").is_empty());
        assert!(r.is_empty());
        r.set(message("never/set", ""));
        assert!(r.is_empty());
    }
}
