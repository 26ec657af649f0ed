//! Subscriptions by topic level: each subscriber's value is kept under
//! its filter's levels, `+` and `#` in their own branches, so a topic is
//! matched in as many steps as it has levels.

use crate::children::Children;

pub struct Trie<S> {
    children: Children<Trie<S>>,
    plus: Option<Box<Trie<S>>>,
    /// `#` here: everything below.
    rest: Vec<(u64, S)>,
    /// A filter that ends here.
    here: Vec<(u64, S)>,
}

impl<S> Default for Trie<S> {
    fn default() -> Self {
        Trie {
            children: Children::default(),
            plus: None,
            rest: Vec::new(),
            here: Vec::new(),
        }
    }
}

/// Adds `entry` to a filter's holders; whether it is the first.
fn hold<S>(holders: &mut Vec<(u64, S)>, entry: (u64, S)) -> bool {
    holders.push(entry);
    holders.len() == 1
}

/// Drops the holders `keep` refuses; whether that left none.
fn release<S>(holders: &mut Vec<(u64, S)>, keep: impl FnMut(&(u64, S)) -> bool) -> bool {
    let before = holders.len();
    holders.retain(keep);
    before > 0 && holders.is_empty()
}

impl<S: Clone> Trie<S> {
    /// Adds subscriber `id`'s `filter`; whether the filter had no holder
    /// before.
    pub fn insert(&mut self, filter: &str, id: u64, s: S) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        self.insert_levels(&levels, id, s)
    }

    fn insert_levels(&mut self, levels: &[&str], id: u64, s: S) -> bool {
        match levels.split_first() {
            None => hold(&mut self.here, (id, s)),
            Some((&"#", _)) => hold(&mut self.rest, (id, s)),
            Some((&"+", rest)) => {
                (self.plus.get_or_insert_with(Default::default)).insert_levels(rest, id, s)
            }
            Some((level, rest)) => (self.children.get_or_default(level)).insert_levels(rest, id, s),
        }
    }

    /// Removes subscriber `id`'s `filter`, and the branches left empty;
    /// whether the filter has no holder left.
    pub fn remove(&mut self, filter: &str, id: u64) -> bool {
        self.remove_where(filter, id, |_| true)
    }

    /// Removes those of subscriber `id`'s entries under `filter` that
    /// `which` picks; whether that left the filter with no holder.
    pub fn remove_where(&mut self, filter: &str, id: u64, which: impl Fn(&S) -> bool) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        self.remove_levels(&levels, id, &which)
    }

    fn remove_levels(&mut self, levels: &[&str], id: u64, which: &impl Fn(&S) -> bool) -> bool {
        let keep = |(i, s): &(u64, S)| *i != id || !which(s);
        match levels.split_first() {
            None => release(&mut self.here, keep),
            Some((&"#", _)) => release(&mut self.rest, keep),
            Some((&"+", rest)) => {
                let Some(plus) = &mut self.plus else {
                    return false;
                };
                let emptied = plus.remove_levels(rest, id, which);
                if plus.is_empty() {
                    self.plus = None;
                }
                emptied
            }
            Some((level, rest)) => {
                let Some(child) = self.children.get_mut(level) else {
                    return false;
                };
                let emptied = child.remove_levels(rest, id, which);
                if child.is_empty() {
                    self.children.remove(level);
                }
                emptied
            }
        }
    }

    /// The subscribers of exactly `filter`.
    pub fn holders(&self, filter: &str) -> Vec<S> {
        let mut node = self;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            let next = match level {
                "#" if levels.peek().is_none() => {
                    return node.rest.iter().map(|(_, s)| s.clone()).collect()
                }
                "+" => node.plus.as_deref(),
                level => node.children.get(level),
            };
            match next {
                Some(n) => node = n,
                None => return Vec::new(),
            }
        }
        node.here.iter().map(|(_, s)| s.clone()).collect()
    }

    fn is_empty(&self) -> bool {
        self.here.is_empty()
            && self.rest.is_empty()
            && self.plus.is_none()
            && self.children.is_empty()
    }

    /// Every subscriber whose filter matches `topic`. A topic starting
    /// with `$` is not matched by a wildcard in the first level (MQTT
    /// 4.7.2).
    pub fn matches(&self, topic: &str) -> Vec<S> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut out = Vec::new();
        if topic.starts_with('$') {
            if let Some(child) = self.children.get(levels[0]) {
                child.matches_levels(&levels[1..], &mut out);
            }
        } else {
            self.matches_levels(&levels, &mut out);
        }
        out
    }

    fn matches_levels(&self, levels: &[&str], out: &mut Vec<S>) {
        out.extend(self.rest.iter().map(|(_, s)| s.clone()));
        match levels.split_first() {
            None => out.extend(self.here.iter().map(|(_, s)| s.clone())),
            Some((level, rest)) => {
                if let Some(child) = self.children.get(level) {
                    child.matches_levels(rest, out);
                }
                if let Some(plus) = &self.plus {
                    plus.matches_levels(rest, out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says() {
        let mut t = Trie::default();
        for (id, filter) in ["a/b", "a/+", "a/#", "+/b", "#", "a/b/c"]
            .iter()
            .enumerate()
        {
            t.insert(filter, id as u64, *filter);
        }
        let cases: &[(&str, &[&str])] = &[
            ("a/b", &["#", "a/#", "a/b", "a/+", "+/b"]),
            ("a/c", &["#", "a/#", "a/+"]),
            ("x/b", &["#", "+/b"]),
            ("a/b/c", &["#", "a/#", "a/b/c"]),
            ("a", &["#", "a/#"]),
            ("$SYS/b", &[]),
        ];
        for (topic, want) in cases {
            let mut got = t.matches(topic);
            got.sort();
            let mut want = want.to_vec();
            want.sort();
            assert_eq!(got, want, "{topic}");
        }
    }

    #[test]
    fn a_dollar_topic_is_matched_only_by_a_filter_naming_its_first_level() {
        let mut t = Trie::default();
        for (id, filter) in ["#", "+/x", "$SYS/#", "$SYS/+", "$SYS/x"]
            .iter()
            .enumerate()
        {
            t.insert(filter, id as u64, *filter);
        }
        let mut got = t.matches("$SYS/x");
        got.sort();
        assert_eq!(got, ["$SYS/#", "$SYS/+", "$SYS/x"]);
    }

    #[test]
    fn the_holders_of_a_filter_are_those_who_named_it() {
        let mut t = Trie::default();
        for (id, filter) in ["a/b", "a/+", "a/#", "#", "a/b", "+/b"].iter().enumerate() {
            t.insert(filter, id as u64, id);
        }
        let cases: &[(&str, &[usize])] = &[
            ("a/b", &[0, 4]),
            ("a/+", &[1]),
            ("a/#", &[2]),
            ("#", &[3]),
            ("+/b", &[5]),
            ("a", &[]),
            ("a/b/c", &[]),
        ];
        for (filter, want) in cases {
            let mut got = t.holders(filter);
            got.sort();
            assert_eq!(got, *want, "{filter}");
        }
    }

    #[test]
    fn a_removed_filter_matches_nothing_and_leaves_no_branch() {
        let mut t = Trie::default();
        t.insert("a/+/c", 1, ());
        t.insert("a/b", 2, ());
        t.remove("a/+/c", 1);
        assert!(t.matches("a/x/c").is_empty());
        assert_eq!(t.matches("a/b").len(), 1);
        t.remove("a/b", 2);
        assert!(t.is_empty());
    }

    /// The embedder learns when a filter is first held and last let go
    /// (to want another node's messages for it, or not).
    #[test]
    fn a_filter_reports_its_first_holder_and_its_last() {
        let mut t = Trie::default();
        // (subscriber, filter, insert or remove, what is reported)
        let steps = [
            (1, "a/+", true, true),
            (2, "a/+", true, false),
            (1, "a/#", true, true),
            (3, "a/b", true, true),
            (1, "a/+", false, false),
            (9, "a/+", false, false),
            (2, "a/+", false, true),
            (2, "a/+", false, false),
            (1, "a/#", false, true),
            (7, "x/y", false, false),
            (3, "a/b", false, true),
        ];
        for (id, filter, insert, want) in steps {
            let got = if insert {
                t.insert(filter, id, ())
            } else {
                t.remove(filter, id)
            };
            assert_eq!(got, want, "{id} {filter} {insert}");
        }
        assert!(t.is_empty());
    }
}
