//! A structure per candidate slot (a hash ring, a sampler, a schedule), rebuilt only when the
//! slot's candidate set changes.

use super::{Candidates, SLOTS};

#[derive(Clone, Debug)]
struct Entry<T> {
    /// The candidate set `value` was built for.
    members: Vec<usize>,
    /// Its generation stamp when last seen (0: none).
    generation: u64,
    value: T,
}

/// Per-slot cache keyed by the candidate set.
///
/// A lookup with the generation the entry was last seen with is O(1). Otherwise the indices
/// are compared once (O(n), only after the balancer recomputed its sets): equal sets keep the
/// structure and adopt the new stamp, different ones rebuild it.
#[derive(Clone, Debug)]
pub(crate) struct SlotCache<T> {
    entries: [Option<Entry<T>>; SLOTS],
}

impl<T> Default for SlotCache<T> {
    fn default() -> Self {
        Self {
            entries: std::array::from_fn(|_| None),
        }
    }
}

impl<T> SlotCache<T> {
    /// Forgets every structure (the endpoint set changed, so indices changed meaning).
    pub(crate) fn clear(&mut self) {
        self.entries = std::array::from_fn(|_| None);
    }

    /// The structure built for `slot`, if any.
    pub(crate) fn get(&self, slot: usize) -> Option<&T> {
        self.entries.get(slot)?.as_ref().map(|e| &e.value)
    }

    /// The structure for `candidates`, built with `build(indices)` if missing or stale.
    #[inline]
    pub(crate) fn get_or_build(
        &mut self,
        candidates: &Candidates<'_>,
        build: impl FnOnce(&[usize]) -> T,
    ) -> Option<&mut T> {
        let entry = self.entries.get_mut(candidates.slot())?;
        let generation = candidates.generation();
        let current = match entry {
            Some(e) if generation != 0 && e.generation == generation => true,
            Some(e) if e.members == candidates.indices() => {
                e.generation = generation;
                true
            }
            _ => false,
        };
        if !current {
            let indices = candidates.indices();
            *entry = Some(Entry {
                members: indices.to_vec(),
                generation,
                value: build(indices),
            });
        }
        entry.as_mut().map(|e| &mut e.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_once_per_candidate_set() {
        let mut cache = SlotCache::default();
        let builds = std::cell::Cell::new(0);
        let get = |cache: &mut SlotCache<usize>, c: Candidates<'_>| {
            *cache
                .get_or_build(&c, |m| {
                    builds.set(builds.get() + 1);
                    m.len()
                })
                .unwrap()
        };
        assert_eq!(
            get(&mut cache, Candidates::with_generation(0, &[1, 2], 1)),
            2
        );
        assert_eq!(
            get(&mut cache, Candidates::with_generation(0, &[1, 2], 1)),
            2
        );
        // A new stamp over the same indices keeps the structure.
        assert_eq!(
            get(&mut cache, Candidates::with_generation(0, &[1, 2], 2)),
            2
        );
        // Unstamped sets are compared.
        assert_eq!(get(&mut cache, Candidates::new(0, &[1, 2])), 2);
        assert_eq!(get(&mut cache, Candidates::new(0, &[1, 2, 3])), 3);
        // Slots are independent.
        assert_eq!(get(&mut cache, Candidates::with_generation(3, &[4], 2)), 1);
        assert_eq!(
            get(&mut cache, Candidates::with_generation(2, &[4, 5], 3)),
            2
        );
        assert_eq!(builds.get(), 4);
        assert_eq!(cache.get(0), Some(&3));
        cache.clear();
        assert_eq!(cache.get(0), None);
        assert_eq!(
            get(&mut cache, Candidates::with_generation(0, &[1, 2], 1)),
            2
        );
        assert_eq!(builds.get(), 5);
    }
}
