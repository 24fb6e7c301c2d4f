//! A table of per-connection state whose keys go stale: the key a task
//! carries in its [`Ctx`](crate::Ctx) stops finding anything once its
//! entry is removed, even after the slot is reused.

use std::fmt;
use std::ops::{Index, IndexMut};

/// Per-connection (or per-anything) state, keyed by a `u64` meant to be a
/// task's [`Ctx::key`](crate::Ctx::key), whose keys go stale.
///
/// A key packs the slot's index with the slot's generation: once an entry
/// is removed, its key finds nothing ([`get`](ConnTable::get) is `None`,
/// [`remove`](ConnTable::remove) does nothing), also after the slot has
/// been reused for another entry. So a completion that arrives after its
/// connection was closed — a cancelled receive, a send that finished late —
/// is recognised as stale instead of being handed to whichever connection
/// took the slot (what an index into a `Vec` or a `slab::Slab` does).
///
/// Removed slots are reused (a free list), so a table that has reached its
/// peak size does not allocate. Key 0 is never handed out, so `Ctx`'s
/// default key names no entry. A slot whose generation has run out (after
/// about four billion reuses) is retired rather than reused, so a key is
/// never handed out twice.
///
/// ```
/// use ouro::ConnTable;
///
/// let mut conns = ConnTable::new();
/// let old = conns.insert("first");
/// assert_eq!(conns.remove(old), Some("first"));
/// let new = conns.insert("second"); // same slot, new generation
/// assert_eq!(conns.get(old), None); // a late completion for `old` finds nothing
/// assert_eq!(conns.get(new), Some(&"second"));
/// ```
pub struct ConnTable<T> {
    slots: Vec<Slot<T>>,
    /// The first free slot, or `NONE`.
    free: u32,
    len: usize,
}

enum Slot<T> {
    Used { generation: u32, value: T },
    Free { generation: u32, next: u32 },
}

const NONE: u32 = u32::MAX;
/// Generations start at 1, so that no key is 0.
const FIRST_GENERATION: u32 = 1;

fn pack(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn unpack(key: u64) -> (usize, u32) {
    ((key & u64::from(u32::MAX)) as usize, (key >> 32) as u32)
}

impl<T> ConnTable<T> {
    /// An empty table.
    pub const fn new() -> ConnTable<T> {
        ConnTable {
            slots: Vec::new(),
            free: NONE,
            len: 0,
        }
    }

    /// An empty table with room for `capacity` entries before it allocates.
    pub fn with_capacity(capacity: usize) -> ConnTable<T> {
        ConnTable {
            slots: Vec::with_capacity(capacity),
            free: NONE,
            len: 0,
        }
    }

    /// Stores `value`; returns its key.
    pub fn insert(&mut self, value: T) -> u64 {
        self.insert_with(|_| value)
    }

    /// Stores the value `make` builds from the key it will have (for state
    /// that keeps its own key); returns the key.
    ///
    /// # Panics
    ///
    /// If the table already holds `u32::MAX - 1` slots.
    pub fn insert_with(&mut self, make: impl FnOnce(u64) -> T) -> u64 {
        // The value is made before the table changes: a `make` that panics
        // leaves the table as it was.
        if self.free != NONE {
            let index = self.free;
            let Slot::Free { generation, next } = self.slots[index as usize] else {
                unreachable!("the free list holds free slots only");
            };
            let key = pack(index, generation);
            let value = make(key);
            self.slots[index as usize] = Slot::Used { generation, value };
            self.free = next;
            self.len += 1;
            return key;
        }
        let index = u32::try_from(self.slots.len())
            .ok()
            .filter(|&i| i != NONE)
            .expect("a ConnTable holds fewer than u32::MAX slots");
        let key = pack(index, FIRST_GENERATION);
        let value = make(key);
        self.slots.push(Slot::Used {
            generation: FIRST_GENERATION,
            value,
        });
        self.len += 1;
        key
    }

    /// The entry `key` names, if it is still there.
    pub fn get(&self, key: u64) -> Option<&T> {
        let (index, generation) = unpack(key);
        match self.slots.get(index)? {
            Slot::Used {
                generation: g,
                value,
            } if *g == generation => Some(value),
            _ => None,
        }
    }

    /// The entry `key` names, if it is still there, to change it.
    pub fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        let (index, generation) = unpack(key);
        match self.slots.get_mut(index)? {
            Slot::Used {
                generation: g,
                value,
            } if *g == generation => Some(value),
            _ => None,
        }
    }

    /// Whether `key` still names an entry.
    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Takes the entry `key` names out of the table; `None` (and nothing
    /// touched) if the key is stale or was never handed out.
    pub fn remove(&mut self, key: u64) -> Option<T> {
        let (index, generation) = unpack(key);
        let slot = self.slots.get_mut(index)?;
        if !matches!(slot, Slot::Used { generation: g, .. } if *g == generation) {
            return None;
        }
        let next_generation = generation.checked_add(1);
        let (next, free) = match next_generation {
            Some(_) => (self.free, true),
            // Out of generations: retire the slot so no key repeats.
            None => (NONE, false),
        };
        let old = std::mem::replace(
            slot,
            Slot::Free {
                generation: next_generation.unwrap_or(generation),
                next,
            },
        );
        if free {
            self.free = index as u32;
        }
        self.len -= 1;
        match old {
            Slot::Used { value, .. } => Some(value),
            Slot::Free { .. } => unreachable!("checked to be used"),
        }
    }

    /// How many entries the table holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry with its key, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Used { generation, value } => Some((pack(index as u32, *generation), value)),
                Slot::Free { .. } => None,
            })
    }

    /// Every entry with its key, in slot order, to change them.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut T)> + '_ {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Used { generation, value } => Some((pack(index as u32, *generation), value)),
                Slot::Free { .. } => None,
            })
    }

    /// The keys of every entry, in slot order (collect them to remove
    /// entries while going through them).
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(key, _)| key)
    }
}

/// The entry `key` names, where the caller knows it is there (e.g. in a
/// helper called after [`get_mut`](ConnTable::get_mut) found it).
///
/// # Panics
///
/// If the key is stale. A completion's key may be: look it up with
/// [`get`](ConnTable::get) or [`get_mut`](ConnTable::get_mut) instead.
impl<T> Index<u64> for ConnTable<T> {
    type Output = T;

    fn index(&self, key: u64) -> &T {
        self.get(key).expect("no entry for this ConnTable key")
    }
}

/// The entry `key` names, to change it; see [`Index`].
///
/// # Panics
///
/// If the key is stale.
impl<T> IndexMut<u64> for ConnTable<T> {
    fn index_mut(&mut self, key: u64) -> &mut T {
        self.get_mut(key).expect("no entry for this ConnTable key")
    }
}

impl<T> Default for ConnTable<T> {
    fn default() -> ConnTable<T> {
        ConnTable::new()
    }
}

impl<T: fmt::Debug> fmt::Debug for ConnTable<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_key_finds_nothing_after_its_slot_is_reused() {
        let mut table = ConnTable::new();
        let old = table.insert(1);
        assert_eq!(table.remove(old), Some(1));
        let new = table.insert(2);
        assert_eq!(unpack(old).0, unpack(new).0, "the slot is reused");
        assert_eq!(table.get(old), None);
        assert_eq!(table.get_mut(old), None);
        assert_eq!(table.remove(old), None, "a stale remove touches nothing");
        assert_eq!(table.get(new), Some(&2));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn no_key_is_zero_and_unknown_keys_find_nothing() {
        let mut table = ConnTable::new();
        let key = table.insert("a");
        assert_ne!(key, 0);
        assert_eq!(table.get(0), None);
        assert_eq!(table.get(u64::MAX), None);
        assert_eq!(table.remove(pack(5, FIRST_GENERATION)), None);
    }

    #[test]
    fn a_slot_out_of_generations_is_retired_not_reused() {
        let mut table = ConnTable::new();
        let key = table.insert('a');
        table.slots[0] = Slot::Used {
            generation: u32::MAX,
            value: 'a',
        };
        let last = pack(0, u32::MAX);
        assert_eq!(table.get(key), None);
        assert_eq!(table.remove(last), Some('a'));
        let next = table.insert('b');
        assert_ne!(unpack(next).0, 0, "the worn-out slot is not reused");
        assert_eq!(table.get(last), None);
        for generation in [0, 1, u32::MAX] {
            assert_eq!(table.get(pack(0, generation)), None);
        }
    }

    #[test]
    fn removed_slots_are_reused_without_growing() {
        let mut table = ConnTable::with_capacity(4);
        let keys: Vec<u64> = (0..4).map(|i| table.insert(i)).collect();
        for &key in &keys {
            table.remove(key);
        }
        let capacity = table.slots.capacity();
        for round in 0..100 {
            let keys: Vec<u64> = (0..4).map(|i| table.insert(round * 4 + i)).collect();
            for key in keys {
                assert!(table.remove(key).is_some());
            }
        }
        assert_eq!(table.slots.capacity(), capacity);
        assert!(table.is_empty());
    }

    #[test]
    fn a_make_that_panics_leaves_the_table_as_it_was() {
        let mut table = ConnTable::new();
        let freed = table.insert(0);
        table.remove(freed);
        for _ in 0..2 {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                table.insert_with(|_| -> u32 { panic!("make panics") })
            }));
            assert!(panicked.is_err());
            assert_eq!((table.len(), table.is_empty()), (0, true));
        }
        let key = table.insert(7);
        assert_eq!(
            unpack(key).0,
            unpack(freed).0,
            "the freed slot is still free"
        );
        assert_eq!(table.slots.len(), 1, "and the table did not grow");
        let mut fresh = ConnTable::new();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fresh.insert_with(|_| -> u32 { panic!("make panics") })
        }));
        assert!(panicked.is_err());
        assert!(fresh.is_empty() && fresh.slots.is_empty());
    }

    #[test]
    fn iteration_gives_every_live_entry_with_its_key() {
        let mut table = ConnTable::new();
        let a = table.insert_with(|key| key);
        let b = table.insert_with(|key| key);
        let c = table.insert_with(|key| key);
        table.remove(b);
        let seen: Vec<(u64, u64)> = table.iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(seen, [(a, a), (c, c)]);
        for (_, value) in table.iter_mut() {
            *value += 1;
        }
        assert_eq!(table.get(c), Some(&(c + 1)));
        assert_eq!(table.keys().collect::<Vec<_>>(), [a, c]);
    }
}
