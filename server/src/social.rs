//! Who may see whom, held in memory so the broker's topic checks (run on
//! every SUBSCRIBE and PUBLISH) need no database round trip. The database
//! is the record: the graph is loaded from it at startup and changed only
//! after a write to it succeeded.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockWriteGuard};

use anyhow::Result;
use switchboard_protocol::acl::PrincipalKind;
use switchboard_protocol::Id;

use crate::batched::Batched;
use crate::store::{List, Store, Visibility};

#[derive(Default)]
struct Inner {
    visibility: HashMap<Id, Visibility>,
    contacts: HashMap<Id, HashSet<Id>>,
    blocked: HashMap<Id, HashSet<Id>>,
    robots: HashSet<Id>,
    /// Owners by robot.
    owners: HashMap<Id, HashSet<Id>>,
}

impl Inner {
    async fn read(store: &Store) -> Result<Inner> {
        let rows = store.load_graph().await?;
        let mut inner = Inner {
            visibility: rows.visibility,
            ..Inner::default()
        };
        for (owner, contact) in rows.contacts {
            inner.contacts.entry(owner).or_default().insert(contact);
        }
        for (owner, blocked) in rows.blocks {
            inner.blocked.entry(owner).or_default().insert(blocked);
        }
        let (robots, owners) = store.load_robots().await?;
        inner.robots = robots.into_iter().collect();
        for (robot, owner) in owners {
            inner.owners.entry(robot).or_default().insert(owner);
        }
        Ok(inner)
    }
}

/// The users whose visibility, kind, lists or owners differ between two
/// graphs (an empty list is no list), sorted.
fn changed_users(old: &Inner, new: &Inner) -> Vec<Id> {
    fn sets<'a>(m: &'a HashMap<Id, HashSet<Id>>, id: &Id) -> Option<&'a HashSet<Id>> {
        m.get(id).filter(|s| !s.is_empty())
    }
    let differs = |id: &Id| {
        old.visibility.get(id) != new.visibility.get(id)
            || old.robots.contains(id) != new.robots.contains(id)
            || sets(&old.contacts, id) != sets(&new.contacts, id)
            || sets(&old.blocked, id) != sets(&new.blocked, id)
            || sets(&old.owners, id) != sets(&new.owners, id)
    };
    let everyone: HashSet<&Id> = [old, new]
        .iter()
        .flat_map(|g| {
            (g.visibility.keys())
                .chain(g.contacts.keys())
                .chain(g.blocked.keys())
                .chain(g.owners.keys())
                .chain(g.robots.iter())
        })
        .collect();
    let mut changed: Vec<Id> = everyone
        .into_iter()
        .filter(|id| differs(id))
        .cloned()
        .collect();
    changed.sort();
    changed
}

pub struct Graph {
    inner: RwLock<Inner>,
    /// Changes this node made, counted: a read of the store that one
    /// overtook is read again, so it never undoes the change.
    changes: AtomicU64,
    /// Accounts this process did not make, read together when several
    /// first show their tokens at once.
    accounts: Batched<Id, (PrincipalKind, Visibility)>,
}

impl Graph {
    pub async fn load(store: &Store) -> Result<Graph> {
        let accounts = Batched::new(store.clone(), |store, ids| async move {
            store.accounts(&ids).await
        });
        Ok(Graph {
            inner: RwLock::new(Inner::read(store).await?),
            changes: AtomicU64::new(0),
            accounts,
        })
    }

    /// Reads the whole graph again (after the bus was away, and other
    /// nodes' news with it); returns the users whose rows changed.
    pub async fn reload_all(&self, store: &Store) -> Result<Vec<Id>> {
        loop {
            let before = self.changes.load(Ordering::Acquire);
            let fresh = Inner::read(store).await?;
            // Compared under the read lock, so the rules are not held up.
            let changed = changed_users(&self.inner.read().expect("graph lock"), &fresh);
            let mut g = self.inner.write().expect("graph lock");
            if self.changes.load(Ordering::Acquire) == before {
                *g = fresh;
                return Ok(changed);
            }
        }
    }

    /// The graph, to change it as this node stored.
    fn change(&self) -> RwLockWriteGuard<'_, Inner> {
        self.changes.fetch_add(1, Ordering::AcqRel);
        self.inner.write().expect("graph lock")
    }

    /// A user that was just created, with the default visibility.
    pub fn add_user(&self, id: &Id) {
        let mut g = self.change();
        g.visibility
            .entry(id.clone())
            .or_insert(Visibility::Contacts);
    }

    /// Learns an account this process did not make (`switchboard token` or
    /// `robot create` while the server runs) the first time it shows a
    /// token, from the store.
    pub async fn learn(&self, id: &Id) -> Result<()> {
        if self
            .inner
            .read()
            .expect("graph lock")
            .visibility
            .contains_key(id)
        {
            return Ok(());
        }
        if let Some((kind, visibility)) = self.accounts.get(id.clone()).await? {
            let mut g = self.inner.write().expect("graph lock");
            g.visibility.entry(id.clone()).or_insert(visibility);
            if kind == PrincipalKind::Robot {
                g.robots.insert(id.clone());
            }
        }
        Ok(())
    }

    /// A robot that was just provisioned.
    pub fn add_robot(&self, id: &Id) {
        let mut g = self.change();
        g.visibility
            .entry(id.clone())
            .or_insert(Visibility::Contacts);
        g.robots.insert(id.clone());
    }

    /// Reads `users`' accounts, lists and owners again from the store,
    /// after another node changed them.
    pub async fn reload(&self, store: &Store, users: &[Id]) -> Result<()> {
        let (rows, mut g) = loop {
            let before = self.changes.load(Ordering::Acquire);
            let rows = store.edges_of(users).await?;
            let g = self.inner.write().expect("graph lock");
            if self.changes.load(Ordering::Acquire) == before {
                break (rows, g);
            }
        };
        for id in users {
            g.contacts.remove(id);
            g.blocked.remove(id);
            g.owners.remove(id);
            g.robots.remove(id);
            match rows.accounts.get(id) {
                Some(&(kind, visibility)) => {
                    g.visibility.insert(id.clone(), visibility);
                    if kind == PrincipalKind::Robot {
                        g.robots.insert(id.clone());
                    }
                }
                None => {
                    g.visibility.remove(id);
                }
            }
        }
        for (owner, contact) in rows.contacts {
            g.contacts.entry(owner).or_default().insert(contact);
        }
        for (owner, blocked) in rows.blocks {
            g.blocked.entry(owner).or_default().insert(blocked);
        }
        for (robot, owner) in rows.owners {
            g.owners.entry(robot).or_default().insert(owner);
        }
        Ok(())
    }

    pub fn is_robot(&self, id: &Id) -> bool {
        self.inner.read().expect("graph lock").robots.contains(id)
    }

    pub fn set_owner(&self, robot: &Id, user: &Id, owns: bool) {
        let mut g = self.change();
        let owners = g.owners.entry(robot.clone()).or_default();
        if owns {
            owners.insert(user.clone());
        } else {
            owners.remove(user);
        }
    }

    /// Whether one of the two owns the other (a robot and its owner).
    pub fn paired(&self, a: &Id, b: &Id) -> bool {
        let g = self.inner.read().expect("graph lock");
        Self::paired_in(&g, a, b)
    }

    fn paired_in(g: &Inner, a: &Id, b: &Id) -> bool {
        let owns = |robot: &Id, user: &Id| g.owners.get(robot).is_some_and(|o| o.contains(user));
        owns(a, b) || owns(b, a)
    }

    /// Robots and their owners call each other; nobody else calls a
    /// robot, and robots call nobody else. Users call users they see.
    pub fn may_call(&self, caller: &Id, callee: &Id) -> bool {
        let robot_involved = {
            let g = self.inner.read().expect("graph lock");
            if g.robots.contains(caller) || g.robots.contains(callee) {
                Some(Self::paired_in(&g, caller, callee))
            } else {
                None
            }
        };
        robot_involved.unwrap_or_else(|| self.can_see(caller, callee))
    }

    pub fn set_visibility(&self, id: &Id, v: Visibility) {
        self.change().visibility.insert(id.clone(), v);
    }

    pub fn visibility(&self, id: &Id) -> Visibility {
        let g = self.inner.read().expect("graph lock");
        g.visibility
            .get(id)
            .copied()
            .unwrap_or(Visibility::Contacts)
    }

    pub fn set_list(&self, owner: &Id, list: List, ids: &[Id]) {
        let mut g = self.change();
        let map = match list {
            List::Contacts => &mut g.contacts,
            List::Blocked => &mut g.blocked,
        };
        map.insert(owner.clone(), ids.iter().cloned().collect());
    }

    pub fn list(&self, owner: &Id, list: List) -> Vec<Id> {
        let g = self.inner.read().expect("graph lock");
        let map = match list {
            List::Contacts => &g.contacts,
            List::Blocked => &g.blocked,
        };
        let mut ids: Vec<Id> = map.get(owner).into_iter().flatten().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether `owner` has blocked `other`.
    pub fn has_blocked(&self, owner: &Id, other: &Id) -> bool {
        let g = self.inner.read().expect("graph lock");
        g.blocked.get(owner).is_some_and(|s| s.contains(other))
    }

    pub fn can_see(&self, viewer: &Id, target: &Id) -> bool {
        if viewer == target {
            return true;
        }
        let g = self.inner.read().expect("graph lock");
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
    use crate::store::tests::temp_store;

    /// An account made after the graph was loaded (by the CLI, say) is
    /// known once it logs in; an id with no account stays unknown.
    #[tokio::test]
    async fn accounts_made_elsewhere_are_learned_at_their_first_login() {
        let store = temp_store().await;
        let g = Graph::load(&store).await.unwrap();
        let (user, robot, nobody) = (id('a'), id('b'), id('c'));
        store.ensure_user(&user, PrincipalKind::User).await.unwrap();
        store
            .ensure_user(&robot, PrincipalKind::Robot)
            .await
            .unwrap();
        store
            .set_visibility(&user, Visibility::Everyone)
            .await
            .unwrap();
        assert!(!g.can_see(&nobody, &user) && !g.is_robot(&robot));
        for id in [&user, &robot, &nobody] {
            g.learn(id).await.unwrap();
        }
        assert!(g.can_see(&nobody, &user), "known, with its visibility");
        assert!(g.is_robot(&robot));
        assert_eq!(g.visibility(&nobody), Visibility::Contacts);
        assert!(!g.is_robot(&nobody) && !g.inner.read().unwrap().visibility.contains_key(&nobody));
    }

    /// What another node stored is read again for the users it names,
    /// and only for them.
    #[tokio::test]
    async fn a_reload_takes_the_stored_rows_of_the_users_it_names() {
        let store = temp_store().await;
        let (a, b, c, robot) = (id('a'), id('b'), id('c'), id('e'));
        for user in [&a, &b, &c] {
            store.ensure_user(user, PrincipalKind::User).await.unwrap();
        }
        store
            .ensure_user(&robot, PrincipalKind::Robot)
            .await
            .unwrap();
        let g = Graph::load(&store).await.unwrap();
        g.set_list(&c, List::Contacts, std::slice::from_ref(&a));
        // Another node: a blocks b, lists c, goes public; a owns the robot.
        store
            .replace_list(&a, List::Blocked, std::slice::from_ref(&b))
            .await
            .unwrap();
        store
            .replace_list(&a, List::Contacts, std::slice::from_ref(&c))
            .await
            .unwrap();
        store
            .set_visibility(&a, Visibility::Everyone)
            .await
            .unwrap();
        store.add_owner(&robot, &a).await.unwrap();
        assert!(!g.has_blocked(&a, &b) && !g.paired(&robot, &a));
        g.reload(&store, &[a.clone(), robot.clone()]).await.unwrap();
        assert!(g.has_blocked(&a, &b) && !g.can_see(&b, &a));
        assert_eq!(g.list(&a, List::Contacts), std::slice::from_ref(&c));
        assert_eq!(g.visibility(&a), Visibility::Everyone);
        assert!(g.paired(&robot, &a) && g.is_robot(&robot));
        assert_eq!(
            g.list(&c, List::Contacts),
            std::slice::from_ref(&a),
            "c was not named"
        );
        // Emptied lists are emptied here too.
        store.replace_list(&a, List::Blocked, &[]).await.unwrap();
        g.reload(&store, std::slice::from_ref(&a)).await.unwrap();
        assert!(!g.has_blocked(&a, &b) && g.can_see(&b, &a));
    }

    #[test]
    fn the_users_whose_rows_changed_are_found() {
        let (a, b, c, d) = (id('a'), id('b'), id('c'), id('d'));
        let set = |ids: &[&Id]| ids.iter().map(|i| (*i).clone()).collect::<HashSet<Id>>();
        let base = || {
            let mut g = Inner::default();
            for user in [&a, &b, &c] {
                g.visibility.insert(user.clone(), Visibility::Contacts);
            }
            g.contacts.insert(a.clone(), set(&[&b]));
            g
        };
        type Change<'a> = Box<dyn Fn(&mut Inner) + 'a>;
        let cases: Vec<(&str, Change, Vec<Id>)> = vec![
            ("nothing", Box::new(|_| {}), vec![]),
            (
                "an empty list is no list",
                Box::new(|g| {
                    g.blocked.insert(c.clone(), HashSet::new());
                }),
                vec![],
            ),
            (
                "a contact added",
                Box::new(|g| {
                    g.contacts.insert(a.clone(), set(&[&b, &c]));
                }),
                vec![a.clone()],
            ),
            (
                "a list emptied",
                Box::new(|g| {
                    g.contacts.remove(&a);
                }),
                vec![a.clone()],
            ),
            (
                "a block and a visibility",
                Box::new(|g| {
                    g.blocked.insert(b.clone(), set(&[&a]));
                    g.visibility.insert(c.clone(), Visibility::Everyone);
                }),
                vec![b.clone(), c.clone()],
            ),
            (
                "a new robot with an owner",
                Box::new(|g| {
                    g.visibility.insert(d.clone(), Visibility::Contacts);
                    g.robots.insert(d.clone());
                    g.owners.insert(d.clone(), set(&[&a]));
                }),
                vec![d.clone()],
            ),
        ];
        for (what, change, want) in cases {
            let mut new = base();
            change(&mut new);
            assert_eq!(changed_users(&base(), &new), want, "{what}");
        }
    }

    /// The id of 32 `c`s.
    fn id(c: char) -> Id {
        c.to_string().repeat(32).parse().unwrap()
    }

    /// A graph on an empty store.
    async fn empty() -> Graph {
        Graph::load(&temp_store().await).await.unwrap()
    }

    #[tokio::test]
    async fn visibility_contacts_and_blocks() {
        let g = empty().await;
        let (a, b, c) = (id('a'), id('b'), id('c'));
        for id in [&a, &b, &c] {
            g.add_user(id);
        }
        assert!(g.can_see(&a, &a));
        assert!(!g.can_see(&b, &a), "contacts-only by default");
        g.set_list(&a, List::Contacts, std::slice::from_ref(&b));
        assert!(g.can_see(&b, &a));
        assert!(!g.can_see(&a, &b), "listing is one way");
        g.set_visibility(&a, Visibility::Everyone);
        assert!(g.can_see(&c, &a));
        g.set_list(&a, List::Blocked, &[c.clone(), b.clone()]);
        assert!(!g.can_see(&c, &a), "blocked users see nothing");
        assert!(!g.can_see(&b, &a), "blocking beats being a contact");
        assert!(!g.can_see(&a, &id('d')), "unknown users are invisible");
    }

    #[tokio::test]
    async fn robots_and_their_owners() {
        let g = empty().await;
        let (a, b, robot) = (id('a'), id('b'), id('e'));
        for id in [&a, &b] {
            g.add_user(id);
        }
        g.add_robot(&robot);
        g.set_visibility(&robot, Visibility::Everyone);
        assert!(
            !g.may_call(&a, &robot),
            "even a visible robot takes calls from owners only"
        );
        g.set_owner(&robot, &a, true);
        assert!(g.may_call(&a, &robot) && g.may_call(&robot, &a));
        assert!(g.can_see(&robot, &a) && g.can_see(&a, &robot));
        assert!(!g.may_call(&robot, &b) && !g.may_call(&b, &robot));
        assert!(
            !g.may_call(&a, &b),
            "users call the users they see, as before"
        );
        g.set_owner(&robot, &a, false);
        assert!(!g.may_call(&a, &robot));
    }
}
