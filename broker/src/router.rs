//! Who gets a message: the plain subscriptions that match its topic, and
//! one member of each shared subscription group (`$share/<group>/<filter>`)
//! that matches, chosen in turn among those online.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytestring::ByteString;

use crate::session::Session;
use crate::trie::Trie;
use crate::valid_filter;
use crate::wire::SubscribeOptions;

#[derive(Clone)]
pub(crate) struct Subscriber {
    pub session: Arc<Session>,
    pub options: SubscribeOptions,
}

/// A SUBSCRIBE's filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter<'a> {
    Plain(&'a str),
    Shared { group: &'a str, filter: &'a str },
}

impl<'a> Filter<'a> {
    /// `None` if `s` is not a valid filter.
    pub fn parse(s: &'a str) -> Option<Filter<'a>> {
        let parsed = match s.strip_prefix("$share/") {
            Some(rest) => {
                let (group, filter) = rest.split_once('/')?;
                if group.is_empty() || group.contains(['+', '#']) {
                    return None;
                }
                Filter::Shared { group, filter }
            }
            None => Filter::Plain(s),
        };
        valid_filter(parsed.topics()).then_some(parsed)
    }

    /// The filter on topics, without a group.
    pub fn topics(&self) -> &'a str {
        match *self {
            Filter::Plain(f) | Filter::Shared { filter: f, .. } => f,
        }
    }
}

#[derive(Default)]
pub(crate) struct Router {
    plain: Trie<Subscriber>,
    shared: Trie<(ByteString, Subscriber)>,
    turn: AtomicUsize,
}

impl Router {
    /// Adds session `id`'s subscription; whether its filter had no holder
    /// of this kind (plain, or shared by any group) before.
    pub fn insert(&mut self, filter: Filter<'_>, id: u64, subscriber: Subscriber) -> bool {
        match filter {
            Filter::Plain(f) => self.plain.insert(f, id, subscriber),
            Filter::Shared { group, filter } => {
                self.shared.insert(filter, id, (group.into(), subscriber))
            }
        }
    }

    /// Removes session `id`'s subscription (and, for a shared one, only
    /// its membership of that group); whether that left its filter with
    /// no holder of this kind.
    pub fn remove(&mut self, filter: Filter<'_>, id: u64) -> bool {
        match filter {
            Filter::Plain(f) => self.plain.remove(f, id),
            Filter::Shared { group, filter } => {
                self.shared.remove_where(filter, id, |(g, _)| g == group)
            }
        }
    }

    /// The sessions subscribed to exactly `filter` (plain).
    pub fn holders(&self, filter: &str) -> Vec<Subscriber> {
        self.plain.holders(filter)
    }

    /// The subscribers of `topic`: each plain one, and one per shared
    /// group.
    pub fn matches(&self, topic: &str) -> Vec<Subscriber> {
        let mut matched = self.plain.matches(topic);
        let mut members = self.shared.matches(topic);
        if members.is_empty() {
            return matched;
        }
        members.sort_by(|a, b| a.0.cmp(&b.0));
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        for group in members.chunk_by(|a, b| a.0 == b.0) {
            if let Some(i) = pick(turn, group.len(), |i| group[i].1.session.online()) {
                matched.push(group[i].1.clone());
            }
        }
        matched
    }
}

/// From turn `turn`, the next of `count` members that is online, or the
/// member whose turn it is when none is.
fn pick(turn: usize, count: usize, online: impl Fn(usize) -> bool) -> Option<usize> {
    if count == 0 {
        return None;
    }
    let start = turn % count;
    let next_online = (0..count).map(|k| (start + k) % count).find(|&i| online(i));
    Some(next_online.unwrap_or(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_plain_or_shared_by_a_named_group() {
        let cases = [
            ("a/+", Some(Filter::Plain("a/+"))),
            (
                "$share/g/a/#",
                Some(Filter::Shared {
                    group: "g",
                    filter: "a/#",
                }),
            ),
            ("$share/g", None),
            ("$share//a", None),
            ("$share/g+/a", None),
            ("$share/g/a/#/b", None),
            ("a/#/b", None),
            ("$SYS/x", Some(Filter::Plain("$SYS/x"))),
        ];
        for (s, want) in cases {
            assert_eq!(Filter::parse(s), want, "{s}");
        }
    }

    #[test]
    fn a_group_member_is_chosen_in_turn_among_those_online() {
        type Online<'a> = &'a dyn Fn(usize) -> bool;
        let all = |_| true;
        let cases: &[(usize, usize, Online, Option<usize>)] = &[
            (0, 3, &all, Some(0)),
            (1, 3, &all, Some(1)),
            (5, 3, &all, Some(2)),
            // Member 1 is offline: its turn passes to 2.
            (1, 3, &|i| i != 1, Some(2)),
            // Nobody online: the one whose turn it is (its session keeps it).
            (4, 3, &|_| false, Some(1)),
            (7, 0, &all, None),
        ];
        for (turn, count, online, want) in cases {
            assert_eq!(pick(*turn, *count, online), *want, "turn {turn} of {count}");
        }
    }
}
