//! A map that remembers which of its entries changed, so that what the
//! controller saves after a decision costs the size of the change, not of
//! the cluster (a thousand servers and their instances rewritten per
//! heartbeat that moved one VM to Running would be the state file's whole
//! size each time).
//!
//! Reading goes through `Deref` to the `BTreeMap`; every way to change an
//! entry marks its key. A mark is conservative: taking an entry for writing
//! marks it whether or not anything is then written, so nothing changed can
//! be missed by the save that follows. Two consumers each drain their own
//! set of marks: the store ([`Tracked::take_unsaved`]) and the core's
//! per-server index of instances ([`Tracked::take_unindexed`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

#[derive(Clone, Debug)]
pub struct Tracked<K: Ord + Clone, V> {
    map: BTreeMap<K, V>,
    unsaved: BTreeSet<K>,
    unindexed: BTreeSet<K>,
}

impl<K: Ord + Clone, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            unsaved: BTreeSet::new(),
            unindexed: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone, V> Deref for Tracked<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<K: Ord + Clone, V> FromIterator<(K, V)> for Tracked<K, V> {
    /// A map read back from the store: every entry counts as saved and as
    /// needing the index.
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let map: BTreeMap<K, V> = iter.into_iter().collect();
        let unindexed = map.keys().cloned().collect();
        Self {
            map,
            unsaved: BTreeSet::new(),
            unindexed,
        }
    }
}

impl<K: Ord + Clone, V> Tracked<K, V> {
    fn mark(&mut self, key: &K) {
        self.unsaved.insert(key.clone());
        self.unindexed.insert(key.clone());
    }

    /// The entry for writing; marks it changed.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if self.map.contains_key(key) {
            self.mark(key);
        }
        self.map.get_mut(key)
    }

    /// Marks `key` changed (after writing through
    /// [`Tracked::get_mut_unmarked`] and finding a change worth saving).
    pub fn touch(&mut self, key: &K) {
        if self.map.contains_key(key) {
            self.mark(key);
        }
    }

    /// The entry for writing fields that are not worth a save of their own
    /// (a server's last heartbeat): they are saved with the entry's next
    /// marked change, or the next full snapshot, and are not indexed.
    pub fn get_mut_unmarked(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.mark(&key);
        self.map.insert(key, value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.map.remove(key);
        if removed.is_some() {
            self.mark(key);
        }
        removed
    }

    /// Keeps the entries `keep` accepts; marks the others (removed).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut gone = Vec::new();
        self.map.retain(|k, v| {
            let kept = keep(k, v);
            if !kept {
                gone.push(k.clone());
            }
            kept
        });
        for k in gone {
            self.mark(&k);
        }
    }

    /// Every entry for writing; marks them all, so for rare decisions only
    /// (a cluster-wide fresh grace).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        for k in self.map.keys() {
            self.unsaved.insert(k.clone());
            self.unindexed.insert(k.clone());
        }
        self.map.values_mut()
    }

    /// The keys changed since the last call, for the store: each is now
    /// either present (write it) or absent (delete it).
    pub fn take_unsaved(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.unsaved)
    }

    /// Forgets the unsaved marks (after a full snapshot was saved).
    pub fn all_saved(&mut self) {
        self.unsaved.clear();
    }

    /// The keys changed since the last call, for an index kept beside the
    /// map.
    pub fn take_unindexed(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.unindexed)
    }

    /// The map itself (for rebuilding another structure from it).
    pub fn as_map(&self) -> &BTreeMap<K, V> {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_of_changing_an_entry_marks_it_and_reading_does_not() {
        let mut t: Tracked<u32, &str> = [(1, "a"), (2, "b"), (3, "c")].into_iter().collect();
        assert!(t.take_unsaved().is_empty(), "loaded entries are saved");
        assert_eq!(t.get(&1), Some(&"a"));
        assert_eq!(t.values().count(), 3);
        assert!(t.take_unsaved().is_empty());

        *t.get_mut(&1).unwrap() = "A";
        t.insert(4, "d");
        t.remove(&2);
        t.remove(&99);
        assert!(t.get_mut(&98).is_none());
        assert_eq!(t.take_unsaved(), BTreeSet::from([1, 2, 4]));
        assert!(t.take_unsaved().is_empty(), "drained");

        t.retain(|k, _| *k != 3);
        assert_eq!(t.take_unsaved(), BTreeSet::from([3]));

        *t.get_mut_unmarked(&1).unwrap() = "quiet";
        assert!(t.take_unsaved().is_empty());

        for v in t.values_mut() {
            *v = "all";
        }
        assert_eq!(t.take_unsaved(), BTreeSet::from([1, 4]));
    }

    #[test]
    fn the_index_has_marks_of_its_own() {
        let mut t: Tracked<u32, u32> = [(1, 10)].into_iter().collect();
        assert_eq!(t.take_unindexed(), BTreeSet::from([1]), "loaded: index it");
        t.insert(2, 20);
        assert_eq!(t.take_unsaved(), BTreeSet::from([2]));
        assert_eq!(
            t.take_unindexed(),
            BTreeSet::from([2]),
            "the store's take left them"
        );
    }
}
