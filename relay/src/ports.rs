//! The UDP ports the relay may bind. webrtc 0.21 opens one socket per
//! PeerConnection and has no port range of its own, so the relay hands each
//! connection a port from the configured range and takes it back on close.

use std::collections::BTreeSet;

#[derive(Debug)]
pub struct PortRange {
    first: u16,
    last: u16,
    taken: BTreeSet<u16>,
    /// Where the next search starts, so a just-released port (which may
    /// still be in TIME_WAIT-like use by a straggling peer) is reused last.
    next: u16,
}

impl PortRange {
    /// `first..=last`; `None` when `first > last`.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first <= last).then_some(PortRange {
            first,
            last,
            taken: BTreeSet::new(),
            next: first,
        })
    }

    /// How many ports the range holds (never none).
    pub fn size(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    /// A free port, marked taken; `None` when all are in use.
    pub fn take(&mut self) -> Option<u16> {
        let span = self.size();
        let start = self.next;
        for i in 0..span {
            let offset = (usize::from(start - self.first) + i) % span;
            let port = self.first + offset as u16;
            if self.taken.insert(port) {
                self.next = if port == self.last {
                    self.first
                } else {
                    port + 1
                };
                return Some(port);
            }
        }
        None
    }

    pub fn release(&mut self, port: u16) {
        self.taken.remove(&port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_every_port_once_then_none() {
        let mut r = PortRange::new(40000, 40002).unwrap();
        let mut got: Vec<u16> = (0..3).map(|_| r.take().unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![40000, 40001, 40002]);
        assert_eq!(r.take(), None);
    }

    #[test]
    fn released_ports_come_back_after_the_others() {
        let mut r = PortRange::new(10, 13).unwrap();
        assert_eq!(r.take(), Some(10));
        assert_eq!(r.take(), Some(11));
        r.release(10);
        assert_eq!(r.take(), Some(12));
        assert_eq!(r.take(), Some(13));
        assert_eq!(r.take(), Some(10));
        assert_eq!(r.take(), None);
    }

    #[test]
    fn single_port_and_top_of_the_port_space() {
        let mut r = PortRange::new(65535, 65535).unwrap();
        assert_eq!(r.size(), 1);
        assert_eq!(r.take(), Some(65535));
        assert_eq!(r.take(), None);
        r.release(65535);
        assert_eq!(r.take(), Some(65535));
    }

    #[test]
    fn an_inverted_range_is_refused() {
        assert!(PortRange::new(5, 4).is_none());
    }
}
