//! A user's presence over every node: the union of the devices each node
//! holds online for it, one `seq` for all. The database keeps each node's
//! devices and the user's last published state; this is the step between.

use std::collections::BTreeSet;

use switchboard_protocol::payload::Presence;

/// What was last published for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Last {
    pub seq: u64,
    pub online: bool,
    pub last_seen: Option<i64>,
}

/// The presence to publish after a change at `at` (`last`: `None` for a
/// user never published), given every node's devices for the user; and
/// the new `isConnected` when the online status changed.
pub fn merged<'a>(
    last: Option<Last>,
    devices: impl IntoIterator<Item = &'a str>,
    at: i64,
) -> (Presence, Option<bool>) {
    let devices: BTreeSet<&str> = devices.into_iter().collect();
    let online = !devices.is_empty();
    let last = last.unwrap_or_default();
    let presence = Presence {
        online,
        devices: devices.into_iter().map(str::to_string).collect(),
        // Nodes' clocks differ a little: never back.
        last_seen: Some(last.last_seen.map_or(at, |seen| seen.max(at))),
        seq: last.seq + 1,
    };
    let changed = online != last.online || last.seq == 0;
    (presence, changed.then_some(online))
}

/// How a node's stored devices of a user become `listed`: the stored ones
/// no longer listed go, the listed ones not stored come (each once).
pub fn device_rows<'a>(stored: &[&'a str], listed: &'a [String]) -> (Vec<&'a str>, Vec<&'a str>) {
    let listed: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let gone = (stored.iter().copied())
        .filter(|d| !listed.contains(d))
        .collect();
    let come = (listed.into_iter())
        .filter(|d| !stored.contains(d))
        .collect();
    (gone, come)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nodes_device_rows_change_by_what_is_gone_and_what_came() {
        // (stored, listed, gone, come)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: [Case; 6] = [
            (&[], &["phone"], &[], &["phone"]),
            (&["phone"], &[], &["phone"], &[]),
            (&["phone"], &["phone"], &[], &[]),
            (&["phone"], &["phone", "tablet"], &[], &["tablet"]),
            (
                &["phone", "tablet"],
                &["web"],
                &["phone", "tablet"],
                &["web"],
            ),
            (&[], &["phone", "phone"], &[], &["phone"]),
        ];
        for (stored, listed, gone, come) in cases {
            let listed: Vec<String> = listed.iter().map(|d| d.to_string()).collect();
            let (g, c) = device_rows(stored, &listed);
            assert_eq!(
                (g.as_slice(), c.as_slice()),
                (gone, come),
                "{stored:?} {listed:?}"
            );
        }
    }

    #[test]
    fn the_devices_of_every_node_make_one_presence() {
        let last = |seq, online| {
            let last_seen = Some(50);
            Some(Last {
                seq,
                online,
                last_seen,
            })
        };
        // (last published, devices over the nodes, online, devices, seq,
        // isConnected)
        type Case<'a> = (
            Option<Last>,
            &'a [&'a str],
            bool,
            &'a [&'a str],
            u64,
            Option<bool>,
        );
        let cases: [Case; 6] = [
            (None, &["phone"], true, &["phone"], 1, Some(true)),
            (None, &[], false, &[], 1, Some(false)),
            (
                last(4, false),
                &["tablet", "phone"],
                true,
                &["phone", "tablet"],
                5,
                Some(true),
            ),
            // The same device on two nodes (a takeover between them).
            (
                last(5, true),
                &["phone", "phone"],
                true,
                &["phone"],
                6,
                None,
            ),
            (last(6, true), &[], false, &[], 7, Some(false)),
            (last(7, false), &[], false, &[], 8, None),
        ];
        for (last, devices, online, want, seq, is_connected) in cases {
            let (p, changed) = merged(last, devices.iter().copied(), 100);
            let names: Vec<&str> = p.devices.iter().map(String::as_str).collect();
            assert_eq!(
                (p.online, names.as_slice(), p.seq, changed, p.last_seen),
                (online, want, seq, is_connected, Some(100)),
                "{last:?} {devices:?}"
            );
        }
    }

    #[test]
    fn last_seen_never_goes_back() {
        let last = Last {
            seq: 3,
            online: true,
            last_seen: Some(500),
        };
        assert_eq!(
            merged(Some(last), [], 400).0.last_seen,
            Some(500),
            "an earlier clock"
        );
        assert_eq!(merged(Some(last), [], 600).0.last_seen, Some(600));
    }
}
