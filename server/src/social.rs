//! Who may see whom, held in memory so the broker's topic checks (run on
//! every SUBSCRIBE and PUBLISH) need no database round trip. The database
//! is the record: the graph is loaded from it at startup and changed only
//! after a write to it succeeded.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use anyhow::Result;
use switchboard_protocol::acl::PrincipalKind;

use crate::store::{List, Store, Visibility};

#[derive(Default)]
struct Inner {
    visibility: HashMap<String, Visibility>,
    contacts: HashMap<String, HashSet<String>>,
    blocked: HashMap<String, HashSet<String>>,
    robots: HashSet<String>,
    /// Owners by robot.
    owners: HashMap<String, HashSet<String>>,
}

pub struct Graph(RwLock<Inner>);

impl Graph {
    pub async fn load(store: &Store) -> Result<Graph> {
        let (visibility, contacts, blocks) = store.load_graph().await?;
        let mut inner = Inner {
            visibility,
            ..Inner::default()
        };
        for (owner, contact) in contacts {
            inner.contacts.entry(owner).or_default().insert(contact);
        }
        for (owner, blocked) in blocks {
            inner.blocked.entry(owner).or_default().insert(blocked);
        }
        let (robots, owners) = store.load_robots().await?;
        inner.robots = robots.into_iter().collect();
        for (robot, owner) in owners {
            inner.owners.entry(robot).or_default().insert(owner);
        }
        Ok(Graph(RwLock::new(inner)))
    }

    /// A user that was just created, with the default visibility.
    pub fn add_user(&self, id: &str) {
        let mut g = self.0.write().expect("graph lock");
        g.visibility
            .entry(id.to_string())
            .or_insert(Visibility::Contacts);
    }

    /// Learns an account this process did not make (`switchboard token` or
    /// `robot create` while the server runs) the first time it shows a
    /// token, from the store.
    pub async fn learn(&self, store: &Store, id: &str) -> Result<()> {
        if self
            .0
            .read()
            .expect("graph lock")
            .visibility
            .contains_key(id)
        {
            return Ok(());
        }
        if let Some((kind, visibility)) = store.account(id).await? {
            let mut g = self.0.write().expect("graph lock");
            g.visibility.entry(id.to_string()).or_insert(visibility);
            if kind == PrincipalKind::Robot {
                g.robots.insert(id.to_string());
            }
        }
        Ok(())
    }

    /// A robot that was just provisioned.
    pub fn add_robot(&self, id: &str) {
        let mut g = self.0.write().expect("graph lock");
        g.visibility
            .entry(id.to_string())
            .or_insert(Visibility::Contacts);
        g.robots.insert(id.to_string());
    }

    pub fn is_robot(&self, id: &str) -> bool {
        self.0.read().expect("graph lock").robots.contains(id)
    }

    pub fn set_owner(&self, robot: &str, user: &str, owns: bool) {
        let mut g = self.0.write().expect("graph lock");
        let owners = g.owners.entry(robot.to_string()).or_default();
        if owns {
            owners.insert(user.to_string());
        } else {
            owners.remove(user);
        }
    }

    /// Whether one of the two owns the other (a robot and its owner).
    pub fn paired(&self, a: &str, b: &str) -> bool {
        let g = self.0.read().expect("graph lock");
        Self::paired_in(&g, a, b)
    }

    fn paired_in(g: &Inner, a: &str, b: &str) -> bool {
        let owns = |robot: &str, user: &str| g.owners.get(robot).is_some_and(|o| o.contains(user));
        owns(a, b) || owns(b, a)
    }

    /// Robots and their owners call each other; nobody else calls a
    /// robot, and robots call nobody else. Users call users they see.
    pub fn may_call(&self, caller: &str, callee: &str) -> bool {
        let robot_involved = {
            let g = self.0.read().expect("graph lock");
            if g.robots.contains(caller) || g.robots.contains(callee) {
                Some(Self::paired_in(&g, caller, callee))
            } else {
                None
            }
        };
        robot_involved.unwrap_or_else(|| self.can_see_str(caller, callee))
    }

    pub fn set_visibility(&self, id: &str, v: Visibility) {
        self.0
            .write()
            .expect("graph lock")
            .visibility
            .insert(id.to_string(), v);
    }

    pub fn visibility(&self, id: &str) -> Visibility {
        let g = self.0.read().expect("graph lock");
        g.visibility
            .get(id)
            .copied()
            .unwrap_or(Visibility::Contacts)
    }

    pub fn set_list(&self, owner: &str, list: List, ids: &[String]) {
        let mut g = self.0.write().expect("graph lock");
        let map = match list {
            List::Contacts => &mut g.contacts,
            List::Blocked => &mut g.blocked,
        };
        map.insert(owner.to_string(), ids.iter().cloned().collect());
    }

    pub fn list(&self, owner: &str, list: List) -> Vec<String> {
        let g = self.0.read().expect("graph lock");
        let map = match list {
            List::Contacts => &g.contacts,
            List::Blocked => &g.blocked,
        };
        let mut ids: Vec<String> = map.get(owner).into_iter().flatten().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether `owner` has blocked `other`.
    pub fn has_blocked(&self, owner: &str, other: &str) -> bool {
        let g = self.0.read().expect("graph lock");
        g.blocked.get(owner).is_some_and(|s| s.contains(other))
    }

    pub fn can_see_str(&self, viewer: &str, target: &str) -> bool {
        if viewer == target {
            return true;
        }
        let g = self.0.read().expect("graph lock");
        // A robot and its owners always see each other.
        if Self::paired_in(&g, viewer, target) {
            return true;
        }
        let Some(visibility) = g.visibility.get(target) else {
            return false;
        };
        let blocked = g.blocked.get(target).is_some_and(|s| s.contains(viewer));
        let contact = g.contacts.get(target).is_some_and(|s| s.contains(viewer));
        !blocked && (*visibility == Visibility::Everyone || contact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccc";

    #[test]
    fn visibility_contacts_and_blocks() {
        let g = Graph(RwLock::new(Inner::default()));
        for id in [A, B, C] {
            g.add_user(id);
        }
        assert!(g.can_see_str(A, A));
        assert!(!g.can_see_str(B, A), "contacts-only by default");
        g.set_list(A, List::Contacts, &[B.to_string()]);
        assert!(g.can_see_str(B, A));
        assert!(!g.can_see_str(A, B), "listing is one way");
        g.set_visibility(A, Visibility::Everyone);
        assert!(g.can_see_str(C, A));
        g.set_list(A, List::Blocked, &[C.to_string(), B.to_string()]);
        assert!(!g.can_see_str(C, A), "blocked users see nothing");
        assert!(!g.can_see_str(B, A), "blocking beats being a contact");
        assert!(
            !g.can_see_str(A, "dddddddddddddddddddddddddddddddd"),
            "unknown users are invisible"
        );
    }

    #[test]
    fn robots_and_their_owners() {
        let g = Graph(RwLock::new(Inner::default()));
        let robot = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
        for id in [A, B] {
            g.add_user(id);
        }
        g.add_robot(robot);
        g.set_visibility(robot, Visibility::Everyone);
        assert!(
            !g.may_call(A, robot),
            "even a visible robot takes calls from owners only"
        );
        g.set_owner(robot, A, true);
        assert!(g.may_call(A, robot) && g.may_call(robot, A));
        assert!(g.can_see_str(robot, A) && g.can_see_str(A, robot));
        assert!(!g.may_call(robot, B) && !g.may_call(B, robot));
        assert!(
            !g.may_call(A, B),
            "users call the users they see, as before"
        );
        g.set_owner(robot, A, false);
        assert!(!g.may_call(A, robot));
    }
}
