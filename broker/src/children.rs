//! A trie level's children by name: a list while there are few, a hash
//! map once there are many. Most levels have one child (`errors` below
//! a phone's `clients/<cid>`), and a `HashMap` holding one entry
//! allocates room for three: about 500 bytes a phone, where a list of one
//! takes its entry's size.

use std::collections::HashMap;

use crate::sparse::shrink_when_sparse;

/// Past this many children a level keeps them in a map.
const FEW: usize = 8;

pub enum Children<V> {
    /// Exactly as long as it holds (a push reserves one more).
    Few(Vec<(Box<str>, V)>),
    /// Boxed: a level's size stays that of the list (24 bytes, not 48).
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Box<str>, V>>),
}

impl<V> Default for Children<V> {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl<V: Default> Children<V> {
    pub fn get(&self, name: &str) -> Option<&V> {
        match self {
            Children::Few(list) => list.iter().find(|(n, _)| **n == *name).map(|(_, v)| v),
            Children::Many(map) => map.get(name),
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut V> {
        match self {
            Children::Few(list) => (list.iter_mut())
                .find(|(n, _)| **n == *name)
                .map(|(_, v)| v),
            Children::Many(map) => map.get_mut(name),
        }
    }

    /// The child `name`, made empty if there was none.
    pub fn get_or_default(&mut self, name: &str) -> &mut V {
        if let Children::Few(list) = self {
            if list.len() == FEW && !list.iter().any(|(n, _)| **n == *name) {
                *self = Children::Many(Box::new(std::mem::take(list).into_iter().collect()));
            }
        }
        match self {
            Children::Few(list) => {
                let i = match list.iter().position(|(n, _)| **n == *name) {
                    Some(i) => i,
                    None => {
                        list.reserve_exact(1);
                        list.push((name.into(), V::default()));
                        list.len() - 1
                    }
                };
                &mut list[i].1
            }
            Children::Many(map) => map.entry(name.into()).or_default(),
        }
    }

    /// Removes the child `name`; a map back to half of `FEW` becomes a
    /// list again, and one mostly empty gives memory back.
    pub fn remove(&mut self, name: &str) {
        match self {
            Children::Few(list) => {
                list.retain(|(n, _)| **n != *name);
                list.shrink_to_fit();
            }
            Children::Many(map) => {
                map.remove(name);
                if map.len() <= FEW / 2 {
                    *self = Children::Few(map.drain().collect());
                } else {
                    shrink_when_sparse(map);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Children::Few(list) => list.is_empty(),
            Children::Many(map) => map.is_empty(),
        }
    }

    #[cfg(test)]
    fn len_and_kind(&self) -> (usize, &'static str) {
        match self {
            Children::Few(list) => (list.len(), "few"),
            Children::Many(map) => (map.len(), "many"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Children named 0..n, each holding its number.
    fn numbered(n: u32) -> Children<u32> {
        let mut c = Children::default();
        for i in 0..n {
            *c.get_or_default(&i.to_string()) = i;
        }
        c
    }

    #[test]
    fn a_level_is_a_list_up_to_few_children_then_a_map_and_a_list_again() {
        // (children made, children then removed, how many left, as what)
        let cases = [
            (1, 0, 1, "few"),
            (8, 0, 8, "few"),
            (9, 0, 9, "many"),
            (100, 0, 100, "many"),
            (9, 4, 5, "many"),
            (9, 5, 4, "few"),
            (8, 8, 0, "few"),
            (100, 100, 0, "few"),
            (3, 3, 0, "few"),
        ];
        for (made, removed, left, kind) in cases {
            let mut c = numbered(made);
            for i in 0..removed {
                c.remove(&i.to_string());
            }
            assert_eq!(
                c.len_and_kind(),
                (left, kind),
                "{made} made, {removed} removed"
            );
            assert_eq!(c.is_empty(), left == 0);
            for i in 0..made {
                let want = (i >= removed).then_some(i);
                assert_eq!(c.get(&i.to_string()).copied(), want, "child {i}");
            }
        }
    }

    #[test]
    fn a_child_is_found_and_changed_by_name_whatever_holds_it() {
        for n in [3, 8, 30] {
            let mut c = numbered(n);
            *c.get_mut("2").unwrap() += 100;
            *c.get_or_default("1") += 1000;
            assert_eq!(c.get("2"), Some(&102));
            assert_eq!(c.get("1"), Some(&1001));
            assert_eq!(c.get_mut("missing"), None);
            c.remove("missing");
            assert_eq!(c.len_and_kind().0, n as usize);
            // A full list asked for a child it has stays a list.
            let kind = if n <= 8 { "few" } else { "many" };
            assert_eq!(c.len_and_kind().1, kind, "{n} children");
        }
    }

    #[test]
    fn a_list_holds_no_more_room_than_its_children() {
        let capacity = |c: &Children<u32>| match c {
            Children::Few(list) => list.capacity(),
            Children::Many(_) => panic!("few children are a list"),
        };
        let mut c = numbered(5);
        assert_eq!(capacity(&c), 5);
        c.remove("0");
        assert_eq!(capacity(&c), 4);
    }
}
