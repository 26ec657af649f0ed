//! A user's devices online, by name, in name order: a sorted `Vec`, since
//! a user has one or a few (a `BTreeMap` spends a ~540-byte node on the
//! first).

#[derive(Debug)]
pub struct Devices<D> {
    by_name: Vec<(String, D)>,
}

impl<D> Default for Devices<D> {
    fn default() -> Self {
        Devices {
            by_name: Vec::new(),
        }
    }
}

impl<D> Devices<D> {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.by_name.binary_search_by(|(n, _)| n.as_str().cmp(name))
    }

    /// Sets `name`'s device; the one it replaces, if any.
    pub fn insert(&mut self, name: String, device: D) -> Option<D> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.by_name[i].1, device)),
            Err(i) => {
                // Room for exactly one more: most users have one device.
                self.by_name.reserve_exact(1);
                self.by_name.insert(i, (name, device));
                None
            }
        }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut D> {
        let i = self.find(name).ok()?;
        Some(&mut self.by_name[i].1)
    }

    pub fn remove(&mut self, name: &str) -> Option<D> {
        let i = self.find(name).ok()?;
        let (_, device) = self.by_name.remove(i);
        if self.by_name.is_empty() {
            self.by_name = Vec::new();
        }
        Some(device)
    }

    pub fn retain(&mut self, keep: impl Fn(&D) -> bool) {
        self.by_name.retain(|(_, d)| keep(d));
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.iter().map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_kept_by_name_in_order() {
        let mut d = Devices::default();
        assert_eq!(d.insert("tablet".into(), 1), None);
        assert_eq!(d.insert("".into(), 2), None);
        assert_eq!(d.insert("phone".into(), 3), None);
        assert_eq!(d.insert("phone".into(), 4), Some(3));
        assert_eq!(d.names().collect::<Vec<_>>(), ["", "phone", "tablet"]);
        *d.get_mut("tablet").unwrap() = 5;
        assert_eq!(d.get_mut("laptop"), None);
        assert_eq!(d.remove("phone"), Some(4));
        assert_eq!(d.remove("phone"), None);
        d.retain(|v| *v != 5);
        assert_eq!((d.len(), d.names().collect::<Vec<_>>()), (1, vec![""]));
        assert_eq!(d.remove(""), Some(2));
        assert!(d.is_empty());
    }
}
