//! Actual state during a run, indexed by component: the records of the model's components
//! in a vector (found through the run's id index, one hash of the id), the others (removed
//! components being deleted) in a map. Looking a record up in the `BTreeMap` of
//! [`ActualState`] costs a few dozen string comparisons on a large service, and a task
//! looks up its own record, its dependencies' and its producers'.
//!
//! A run with no task (a converge with nothing to do) keeps the map as it came instead:
//! moving every record into the vector and back into a new map would copy each twice into
//! fresh memory (a fifth of the page faults of a no-op converge of 1,000 components) for
//! the few lookups by model index that refreshing the records' metadata makes.

use std::collections::BTreeMap;

use dtk_model::instance::{ComponentId, ComponentInstance};

use crate::hash::FastMap;
use crate::state::{ActualState, AppliedComponent};

pub(super) struct Records<'a> {
    /// Each model component's index, by id (the id's text itself: one indirection
    /// fewer per lookup than through the model's `ComponentId`). Made only for an indexed
    /// store: a run with no task looks nothing up by index.
    index: FastMap<&'a str, usize>,
    components: &'a [ComponentInstance],
    version: u32,
    store: Store,
    /// Whether any record was (or may have been) changed: set by every mutable access.
    changed: bool,
}

/// Where the records are kept.
enum Store {
    /// The model's records by model index; the others by id.
    Indexed {
        by_index: Vec<Option<AppliedComponent>>,
        others: BTreeMap<ComponentId, AppliedComponent>,
    },
    /// The state's own map, as it came (a run with no task).
    Keyed(BTreeMap<ComponentId, AppliedComponent>),
}

impl<'a> Records<'a> {
    /// The records of `actual`, for a run of a model made of `components`: indexed by
    /// model component when the run has tasks (`indexed`), kept in their map otherwise.
    pub(super) fn new(
        components: &'a [ComponentInstance],
        actual: ActualState,
        indexed: bool,
    ) -> Self {
        let index: FastMap<&'a str, usize> = if indexed {
            components
                .iter()
                .enumerate()
                .map(|(i, c)| (c.id.as_str(), i))
                .collect()
        } else {
            FastMap::default()
        };
        let version = actual.version;
        let store = if indexed {
            let mut by_index: Vec<Option<AppliedComponent>> = vec![None; components.len()];
            let mut others = BTreeMap::new();
            for (id, rec) in actual.components {
                match index.get(id.as_str()) {
                    Some(&i) => by_index[i] = Some(rec),
                    None => {
                        others.insert(id, rec);
                    }
                }
            }
            Store::Indexed { by_index, others }
        } else {
            Store::Keyed(actual.components)
        };
        Records {
            index,
            components,
            version,
            store,
            changed: false,
        }
    }

    pub(super) fn get(&self, id: &ComponentId) -> Option<&AppliedComponent> {
        match &self.store {
            Store::Indexed { by_index, others } => match self.index.get(id.as_str()) {
                Some(&i) => by_index[i].as_ref(),
                None => others.get(id),
            },
            Store::Keyed(map) => map.get(id),
        }
    }

    pub(super) fn get_mut(&mut self, id: &ComponentId) -> Option<&mut AppliedComponent> {
        self.changed = true;
        match &mut self.store {
            Store::Indexed { by_index, others } => match self.index.get(id.as_str()) {
                Some(&i) => by_index[i].as_mut(),
                None => others.get_mut(id),
            },
            Store::Keyed(map) => map.get_mut(id),
        }
    }

    pub(super) fn insert(&mut self, id: &ComponentId, rec: AppliedComponent) {
        // (A keyed store has no index: its records all go in its map.)
        if let Some(&i) = self.index.get(id.as_str()) {
            return self.insert_at(i, rec);
        }
        self.changed = true;
        match &mut self.store {
            Store::Indexed { others: map, .. } | Store::Keyed(map) => {
                map.insert(id.clone(), rec);
            }
        }
    }

    /// Sets the record of model component `i`.
    pub(super) fn insert_at(&mut self, i: usize, rec: AppliedComponent) {
        self.changed = true;
        match &mut self.store {
            Store::Indexed { by_index, .. } => {
                if let Some(slot) = by_index.get_mut(i) {
                    *slot = Some(rec);
                }
            }
            Store::Keyed(map) => {
                if let Some(c) = self.components.get(i) {
                    map.insert(c.id.clone(), rec);
                }
            }
        }
    }

    pub(super) fn remove(&mut self, id: &ComponentId) {
        self.changed = true;
        match &mut self.store {
            Store::Indexed { by_index, others } => match self.index.get(id.as_str()) {
                Some(&i) => by_index[i] = None,
                None => {
                    others.remove(id);
                }
            },
            Store::Keyed(map) => {
                map.remove(id);
            }
        }
    }

    /// The model index of component `id`.
    pub(super) fn index_of(&self, id: &ComponentId) -> Option<usize> {
        match self.store {
            Store::Indexed { .. } => self.index.get(id.as_str()).copied(),
            // No index was made (the run has no task, so nothing asks in practice).
            Store::Keyed(_) => self.components.iter().position(|c| c.id == *id),
        }
    }

    /// The record of model component `i`, read only.
    pub(super) fn at(&self, i: usize) -> Option<&AppliedComponent> {
        match &self.store {
            Store::Indexed { by_index, .. } => by_index.get(i).and_then(Option::as_ref),
            Store::Keyed(map) => map.get(&self.components.get(i)?.id),
        }
    }

    /// The record of model component `i`.
    pub(super) fn at_mut(&mut self, i: usize) -> Option<&mut AppliedComponent> {
        self.changed = true;
        match &mut self.store {
            Store::Indexed { by_index, .. } => by_index.get_mut(i).and_then(Option::as_mut),
            Store::Keyed(map) => map.get_mut(&self.components.get(i)?.id),
        }
    }

    /// Whether the run may have changed a record (no mutable access means it did not).
    pub(super) fn changed(&self) -> bool {
        self.changed
    }

    /// Back to an [`ActualState`]. The map is built in one go from the records in id
    /// order (inserting them one by one was 2% of a no-op converge of 1,000): the ids
    /// are sorted by reference, and each record moves once into the list the map is
    /// built from.
    pub(super) fn into_state(self) -> ActualState {
        let Records {
            components,
            version,
            store,
            ..
        } = self;
        let (mut by_index, others) = match store {
            Store::Indexed { by_index, others } => (by_index, others),
            Store::Keyed(components) => {
                return ActualState {
                    version,
                    components,
                };
            }
        };
        // Each id with its first eight bytes as a number that orders as they do: most
        // comparisons of the sort end there, without reading the id itself (on a large
        // service, a cache miss for each side of each comparison).
        let mut order: Vec<(u64, &str, usize)> = by_index
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some())
            .map(|(i, _)| {
                let id = components[i].id.as_str();
                (id_prefix(id), id, i)
            })
            .collect();
        // Model ids are unique: an unstable sort is exact.
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let mut all: Vec<(ComponentId, AppliedComponent)> =
            Vec::with_capacity(order.len() + others.len());
        all.extend(
            order
                .into_iter()
                .filter_map(|(_, _, i)| Some((components[i].id.clone(), by_index[i].take()?))),
        );
        // The others (not the model's) are a second sorted run: the map's own stable
        // sort merges the two.
        all.extend(others);
        ActualState {
            version,
            components: all.into_iter().collect(),
        }
    }
}

/// The first eight bytes of `id` (zero-padded) as a big-endian number: two ids whose
/// numbers differ compare as the numbers do; equal numbers say nothing (compare the ids).
fn id_prefix(id: &str) -> u64 {
    let mut b = [0u8; 8];
    let n = id.len().min(8);
    b[..n].copy_from_slice(&id.as_bytes()[..n]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::id_prefix;

    #[test]
    fn id_prefixes_order_as_the_ids_do() {
        let mut ids = vec![
            "",
            "a",
            "ab",
            "abcdefgh",
            "abcdefghi",
            "abcdefgh0",
            "abcdefg",
            "n1/app9",
            "n10/app1",
            "n1/app10",
            "node[n1]",
            "node[n10]",
            "z",
            "Ä",
            "app12345",
            "app1234",
        ];
        ids.sort_unstable();
        for w in ids.windows(2) {
            let (a, b) = (w[0], w[1]);
            assert!(id_prefix(a) <= id_prefix(b), "{a:?} < {b:?}");
        }
        assert_eq!(id_prefix("abcdefgh"), id_prefix("abcdefghi"));
        assert!(id_prefix("ab") < id_prefix("abc"));
    }
}
