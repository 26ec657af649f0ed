//! Maps that grew with a load give their memory back once it ends: a
//! `HashMap` never shrinks by itself, so one that held every connection
//! of a storm would keep that size while idle.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Shrinks `map` to twice its length once it is less than a quarter
/// full, and says whether it did: after a shrink it must lose half its
/// entries again before the next, so the cost stays constant per removal.
pub fn shrink_when_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) -> bool {
    let sparse = map.capacity() > 64 && map.len() < map.capacity() / 4;
    if sparse {
        map.shrink_to(map.len() * 2);
    }
    sparse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_shrinks_once_mostly_empty_and_not_before() {
        let mut map: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let full = map.capacity();
        let mut shrinks = 0;
        for i in 0..9_990 {
            map.remove(&i);
            let before = map.capacity();
            shrink_when_sparse(&mut map);
            if map.capacity() < before {
                shrinks += 1;
                assert!(map.len() * 4 < before, "not before a quarter full");
            }
        }
        assert!(map.capacity() <= 64, "{} of {full}", map.capacity());
        assert!(
            shrinks <= 10,
            "{shrinks} shrinks: a few, not one per removal"
        );
    }
}
