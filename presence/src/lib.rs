//! Server-authoritative presence, free of IO.
//!
//! The broker tells the tracker when a connection comes and goes; the
//! tracker answers with what to publish on `users/<id>/isConnected` and
//! `users/<id>/presence`. A user is online while any of its devices is.
//! Three things the plain Last Will design gets wrong are handled here:
//!
//! - several devices: one device leaving never makes the user look offline
//!   while another is still connected;
//! - takeover (the same client id reconnecting): the old connection's end
//!   is recognised by its connection token and never published, so
//!   watchers see no `false` then `true`;
//! - late events: an event about a connection that is no longer current is
//!   ignored, and every publication carries a `seq` that grows, so a
//!   watcher can tell a late or repeated update from a new one.
//!
//! Time is passed in (milliseconds); `tick` expires takeovers whose new
//! connection never arrived.

mod devices;
mod merged;

use std::collections::HashMap;

use devices::Devices;
pub use merged::{device_rows, merged, Last};

use switchboard_protocol::payload::Presence;
use switchboard_protocol::{ClientId, Id};

/// How long a device taken over may wait for its new connection before it
/// counts as gone.
pub const TAKEOVER_WAIT_MS: i64 = 5_000;

/// A connection of one client id; the broker's connection creation time
/// tells two connections of the same client id apart.
pub type Connection = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Connected {
        client: ClientId,
        connection: Connection,
        at: i64,
    },
    Disconnected {
        client: ClientId,
        connection: Connection,
        at: i64,
        cause: Cause,
    },
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The client said DISCONNECT.
    Graceful,
    /// Keep-alive expired, the socket closed, the server closed it: the
    /// client's Last Will case.
    Lost,
    /// A new connection with the same client id replaced it.
    TakenOver,
}

/// What to publish for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub user: Id,
    /// `Some` when the user's online status changed: the new
    /// `users/<id>/isConnected`.
    pub is_connected: Option<bool>,
    /// The new `users/<id>/presence`.
    pub presence: Presence,
}

impl Publication {
    /// This publication in place of `older`, which was never published:
    /// if either changed the online status, the one that goes out says so.
    pub fn replacing(mut self, older: Publication) -> Publication {
        if self.is_connected.is_none() && older.is_connected.is_some() {
            self.is_connected = Some(self.presence.online);
        }
        self
    }
}

#[derive(Debug, Clone, Copy)]
struct Device {
    connection: Connection,
    /// Taken over; counts as online until then.
    waiting_until: Option<i64>,
}

#[derive(Debug, Default)]
struct User {
    /// By device name; `""` is a connection with the bare id.
    devices: Devices<Device>,
    seq: u64,
    last_seen: Option<i64>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    users: HashMap<Id, User>,
    /// Users and devices online now, kept as events arrive so reading them
    /// costs nothing.
    online_users: usize,
    online_devices: usize,
}

fn device_key(client: &ClientId) -> String {
    client
        .device
        .as_ref()
        .map(|d| d.as_str().to_string())
        .unwrap_or_default()
}

impl User {
    fn online(&self) -> (usize, usize) {
        (usize::from(!self.devices.is_empty()), self.devices.len())
    }

    fn presence(&self) -> Presence {
        Presence {
            online: !self.devices.is_empty(),
            devices: self.devices.names().map(str::to_string).collect(),
            last_seen: self.last_seen,
            seq: self.seq,
        }
    }
}

impl Tracker {
    pub fn new() -> Self {
        Tracker::default()
    }

    /// Whether the tracker holds `user`: online, or offline and not yet
    /// forgotten.
    pub fn knows(&self, user: &Id) -> bool {
        self.users.contains_key(user)
    }

    /// A user the tracker does not hold, with its stored `seq` and
    /// `lastSeen` (as read before its first connection is applied); a user
    /// already held keeps what it has, which is newer.
    pub fn learn(&mut self, user: Id, seq: u64, last_seen: Option<i64>) {
        self.users.entry(user).or_insert(User {
            devices: Devices::default(),
            seq,
            last_seen,
        });
    }

    /// Lets go of a user who is offline once its publication `seq` is
    /// stored: only users online (or changed since) stay in memory. A user
    /// who changed since is kept.
    pub fn forget(&mut self, user: &Id, seq: u64) {
        if let Some(u) = self.users.get(user) {
            if u.devices.is_empty() && u.seq == seq {
                self.users.remove(user);
                // A map never shrinks by itself: once a quarter full, to
                // twice its length, so the memory of a connect storm's
                // users returns once they left, at a constant cost each.
                if self.users.capacity() > 64 && self.users.len() < self.users.capacity() / 4 {
                    self.users.shrink_to(self.users.len() * 2);
                }
            }
        }
    }

    pub fn apply(&mut self, event: Event) -> Option<Publication> {
        let id = match &event {
            Event::Connected { client, .. } | Event::Disconnected { client, .. } => {
                client.id.clone()
            }
        };
        let user = match &event {
            Event::Connected { .. } => self.users.entry(id.clone()).or_default(),
            // Not held: none of its devices is connected.
            Event::Disconnected { .. } => self.users.get_mut(&id)?,
        };
        let before = user.online();
        let publication = Self::change(id, user, event);
        let after = user.online();
        self.count(before, after);
        publication
    }

    fn count(&mut self, before: (usize, usize), after: (usize, usize)) {
        self.online_users = self.online_users + after.0 - before.0;
        self.online_devices = self.online_devices + after.1 - before.1;
    }

    fn change(id: Id, user: &mut User, event: Event) -> Option<Publication> {
        match event {
            Event::Connected {
                client,
                connection,
                at,
            } => {
                let was_online = !user.devices.is_empty();
                let fresh = user
                    .devices
                    .insert(
                        device_key(&client),
                        Device {
                            connection,
                            waiting_until: None,
                        },
                    )
                    .is_none();
                // A reconnect of a device already listed (a takeover) is
                // no news to watchers.
                fresh.then(|| Self::publish(id, user, at, !was_online))
            }
            Event::Disconnected {
                client,
                connection,
                at,
                cause,
            } => {
                let key = device_key(&client);
                let device = user.devices.get_mut(&key)?;
                if device.connection != connection {
                    // The end of a connection already replaced.
                    return None;
                }
                if cause == Cause::TakenOver {
                    device.waiting_until = Some(at + TAKEOVER_WAIT_MS);
                    return None;
                }
                user.devices.remove(&key);
                let offline = user.devices.is_empty();
                Some(Self::publish(id, user, at, offline))
            }
        }
    }

    /// Devices taken over whose new connection never came are gone.
    pub fn tick(&mut self, now: i64) -> Vec<Publication> {
        let mut out = Vec::new();
        let mut removed = (0, 0);
        for (id, user) in self.users.iter_mut() {
            let before = user.online();
            user.devices
                .retain(|d| d.waiting_until.is_none_or(|until| until > now));
            let after = user.online();
            if after != before {
                removed = (
                    removed.0 + before.0 - after.0,
                    removed.1 + before.1 - after.1,
                );
                let offline = user.devices.is_empty();
                out.push(Self::publish(id.clone(), user, now, offline));
            }
        }
        self.count(removed, (0, 0));
        out
    }

    fn publish(id: Id, user: &mut User, at: i64, status_changed: bool) -> Publication {
        user.seq += 1;
        user.last_seen = Some(at);
        let presence = user.presence();
        Publication {
            user: id,
            is_connected: status_changed.then_some(presence.online),
            presence,
        }
    }

    /// The current presence of a user the tracker knows.
    pub fn get(&self, user: &Id) -> Option<Presence> {
        self.users.get(user).map(User::presence)
    }

    /// Every user with a device here, and the devices.
    pub fn held(&self) -> Vec<(Id, Vec<String>)> {
        (self.users.iter())
            .filter(|(_, u)| !u.devices.is_empty())
            .map(|(id, u)| (id.clone(), u.devices.names().map(str::to_string).collect()))
            .collect()
    }

    /// Users online and devices online now.
    pub fn counts(&self) -> (usize, usize) {
        (self.online_users, self.online_devices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn cid(device: &str) -> ClientId {
        format!("{A}:{device}").parse().unwrap()
    }

    fn id() -> Id {
        A.parse().unwrap()
    }

    fn connected(device: &str, connection: i64, at: i64) -> Event {
        Event::Connected {
            client: cid(device),
            connection,
            at,
        }
    }

    fn gone(device: &str, connection: i64, at: i64, cause: Cause) -> Event {
        Event::Disconnected {
            client: cid(device),
            connection,
            at,
            cause,
        }
    }

    #[test]
    fn online_while_any_device_is() {
        let mut t = Tracker::new();
        let p = t.apply(connected("phone", 1, 10)).unwrap();
        assert_eq!(p.is_connected, Some(true));
        assert_eq!(p.presence.devices, vec!["phone"]);
        let p = t.apply(connected("tablet", 2, 20)).unwrap();
        assert_eq!(p.is_connected, None, "already online");
        assert_eq!(p.presence.devices, vec!["phone", "tablet"]);

        let p = t.apply(gone("phone", 1, 30, Cause::Lost)).unwrap();
        assert_eq!(p.is_connected, None, "the tablet is still online");
        assert!(p.presence.online);
        assert_eq!(t.counts(), (1, 1));
        let p = t.apply(gone("tablet", 2, 40, Cause::Graceful)).unwrap();
        assert_eq!(t.counts(), (0, 0));
        assert_eq!(p.is_connected, Some(false));
        assert_eq!(p.presence.last_seen, Some(40));
        assert_eq!(p.presence.seq, 4, "one step per publication");
    }

    #[test]
    fn takeover_does_not_flap_in_either_order() {
        // New connection first, then the old one's end.
        let mut t = Tracker::new();
        t.apply(connected("phone", 1, 10));
        assert_eq!(t.apply(connected("phone", 2, 20)), None);
        assert_eq!(t.apply(gone("phone", 1, 21, Cause::TakenOver)), None);
        assert_eq!(
            t.apply(gone("phone", 1, 22, Cause::Lost)),
            None,
            "stale connection"
        );
        assert!(t.get(&id()).unwrap().online);

        // The old one's end first (it was kicked), then the new connection.
        let mut t = Tracker::new();
        t.apply(connected("phone", 1, 10));
        assert_eq!(t.apply(gone("phone", 1, 20, Cause::TakenOver)), None);
        assert_eq!(t.apply(connected("phone", 2, 21)), None);
        assert!(
            t.tick(21 + TAKEOVER_WAIT_MS + 1).is_empty(),
            "the new connection arrived"
        );
        assert!(t.get(&id()).unwrap().online);
    }

    #[test]
    fn a_takeover_without_a_new_connection_ends_offline() {
        let mut t = Tracker::new();
        t.apply(connected("phone", 1, 10));
        t.apply(gone("phone", 1, 20, Cause::TakenOver));
        assert!(t.tick(20 + TAKEOVER_WAIT_MS - 1).is_empty());
        assert_eq!(t.counts(), (1, 1), "waiting for the new connection");
        let p = t.tick(20 + TAKEOVER_WAIT_MS).pop().unwrap();
        assert_eq!(p.is_connected, Some(false));
        assert_eq!(t.counts(), (0, 0));
    }

    #[test]
    fn late_and_unknown_events_change_nothing() {
        let mut t = Tracker::new();
        assert_eq!(t.apply(gone("phone", 1, 10, Cause::Lost)), None);
        t.apply(connected("phone", 5, 20));
        assert_eq!(t.apply(gone("phone", 4, 30, Cause::Lost)), None);
        assert_eq!(t.get(&id()).unwrap().seq, 1);
    }

    #[test]
    fn a_learned_user_goes_on_from_its_stored_seq() {
        let mut t = Tracker::new();
        t.learn(id(), 7, Some(5));
        let p = t.apply(connected("phone", 2, 20)).unwrap();
        assert_eq!((p.presence.seq, p.is_connected), (8, Some(true)));
        // Learning again (a second device's read) changes nothing.
        t.learn(id(), 7, Some(5));
        assert_eq!(t.get(&id()).unwrap().seq, 8);
    }

    #[test]
    fn only_an_offline_user_whose_last_change_is_stored_is_forgotten() {
        let mut t = Tracker::new();
        t.apply(connected("phone", 1, 10));
        t.forget(&id(), 1);
        assert!(t.knows(&id()), "online: kept");
        let offline = t.apply(gone("phone", 1, 20, Cause::Lost)).unwrap();
        t.apply(connected("phone", 2, 30));
        t.apply(gone("phone", 2, 40, Cause::Lost));
        t.forget(&id(), offline.presence.seq);
        assert!(t.knows(&id()), "changed since that publication: kept");
        t.forget(&id(), 4);
        assert!(!t.knows(&id()));
        assert_eq!(t.counts(), (0, 0));
    }

    #[test]
    fn the_end_of_a_connection_of_a_user_not_held_is_ignored() {
        let mut t = Tracker::new();
        assert_eq!(t.apply(gone("phone", 1, 10, Cause::Lost)), None);
        assert!(!t.knows(&id()));
    }

    #[test]
    fn bare_client_ids_are_a_device_too() {
        let mut t = Tracker::new();
        let bare: ClientId = A.parse().unwrap();
        let p = t
            .apply(Event::Connected {
                client: bare,
                connection: 1,
                at: 1,
            })
            .unwrap();
        assert_eq!(p.presence.devices, vec![""]);
        assert_eq!(t.counts(), (1, 1));
    }

    #[test]
    fn a_publication_replacing_an_unpublished_one_keeps_its_status_change() {
        let mut t = Tracker::new();
        let phone = t.apply(connected("phone", 1, 10)).unwrap();
        let laptop = t.apply(connected("laptop", 2, 11)).unwrap();
        assert_eq!(phone.is_connected, Some(true));
        assert_eq!(laptop.is_connected, None, "already online");
        let merged = laptop.clone().replacing(phone);
        assert_eq!(merged.is_connected, Some(true));
        assert_eq!(merged.presence, laptop.presence, "the newest state");
        let later = t.apply(connected("tablet", 3, 12)).unwrap();
        assert_eq!(later.clone().replacing(laptop).is_connected, None);
    }
}
