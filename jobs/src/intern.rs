//! Resource interning: every distinct (service, environment, version) gets one
//! small id per process, so the hot path carries 8 bytes instead of an
//! `Arc<Resource>` (no shared reference counts between worker threads) and
//! compares services as integers.
//!
//! Ids are internal to a process and depend on arrival order; nothing that is
//! written out depends on them (outputs are keyed and sorted by the strings).
//! Between processes a [`Res`] travels as its strings and is interned again on
//! arrival, so an id never crosses a process boundary.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use causeway_schemas::otlp::ResourceRef;
use causeway_schemas::Resource;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An interned resource: its id and the id of its service name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Res {
    /// Resource id: equal ids, equal (service, environment, version).
    pub id: u32,
    /// Service id: equal ids, equal service names.
    pub service: u32,
}

#[derive(Default)]
struct Table {
    ids: HashMap<Arc<Resource>, Res>,
    resources: Vec<Arc<Resource>>,
    services: HashMap<String, u32>,
}

fn table() -> &'static RwLock<Table> {
    static TABLE: OnceLock<RwLock<Table>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

impl Res {
    /// The id of `r`, interning it on first sight.
    pub fn intern(r: &Resource) -> Res {
        if let Some(res) = table().read().unwrap_or_else(|e| e.into_inner()).ids.get(r) {
            return *res;
        }
        let mut t = table().write().unwrap_or_else(|e| e.into_inner());
        if let Some(res) = t.ids.get(r) {
            return *res;
        }
        let next_service = t.services.len() as u32;
        let service = *t.services.entry(r.service.clone()).or_insert(next_service);
        let res = Res {
            id: t.resources.len() as u32,
            service,
        };
        let arc = Arc::new(r.clone());
        t.resources.push(Arc::clone(&arc));
        t.ids.insert(arc, res);
        res
    }

    /// The resource behind the id.
    pub fn resource(self) -> Arc<Resource> {
        let t = table().read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&t.resources[self.id as usize])
    }
}

/// Slots of the caches of recent resources and span names: pairs of slots
/// (2-way), so two values whose hashes collide can both stay.
const RECENT: usize = 256;

/// A cheap hash of byte strings, for picking a cache slot.
fn slot<'b>(parts: impl IntoIterator<Item = &'b [u8]>) -> usize {
    let mut h = 0u64;
    for part in parts {
        for &b in part {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        h = h.rotate_left(5) ^ part.len() as u64;
    }
    (h ^ (h >> 32)) as usize % RECENT
}

/// A slot of the pair of slot `i` (`i` and `i ^ 1`) for a new entry: an empty
/// one, else `i`, once its entry has moved over the other slot's.
fn vacate<T>(slots: &mut [Option<T>], i: usize) -> usize {
    if slots[i].is_none() {
        i
    } else if slots[i ^ 1].is_none() {
        i ^ 1
    } else {
        slots.swap(i, i ^ 1);
        i
    }
}

/// Interns resources for one stream of records: consecutive records of one OTLP
/// resource share its `Arc`, so only a change of `Arc` costs a table lookup.
/// Span names likewise, capped at `name_cap` distinct names. Resources and
/// names read straight from a message ([`Interner::resource_ref`],
/// [`Interner::name_bytes`]) are looked up in small caches of recent ones
/// first, by their bytes.
pub struct Interner {
    last: Option<(Arc<Resource>, Res)>,
    recent: Vec<Option<(Resource, Res)>>,
    names: NameInterner,
    name_cap: usize,
}

impl Default for Interner {
    fn default() -> Self {
        Interner::with_name_cap(crate::params::DEFAULT_MAX_SPAN_NAMES)
    }
}

impl Interner {
    /// An interner that gives at most `name_cap` span names an id of their own.
    pub fn with_name_cap(name_cap: usize) -> Self {
        Interner {
            last: None,
            recent: vec![None; RECENT],
            names: NameInterner::default(),
            name_cap,
        }
    }

    /// The id of span name `name`.
    pub fn name(&mut self, name: &Arc<str>) -> Name {
        self.names.get(name, self.name_cap)
    }

    /// The id of the span name with these bytes (UTF-8).
    pub fn name_bytes(&mut self, name: &[u8]) -> Name {
        self.names.get_bytes(name, self.name_cap)
    }

    /// The id of the resource `r` names.
    pub fn resource_ref(&mut self, r: &ResourceRef<'_>) -> Res {
        let bytes = r.as_bytes();
        let i = slot(bytes);
        for j in [i, i ^ 1] {
            if let Some((cached, res)) = &self.recent[j] {
                if [
                    cached.service.as_bytes(),
                    cached.environment.as_bytes(),
                    cached.version.as_bytes(),
                ] == bytes
                {
                    return *res;
                }
            }
        }
        let resource = r.to_resource();
        let res = Res::intern(&resource);
        let j = vacate(&mut self.recent, i);
        self.recent[j] = Some((resource, res));
        res
    }

    /// The id of `r`.
    pub fn get(&mut self, r: &Arc<Resource>) -> Res {
        match &self.last {
            Some((a, res)) if Arc::ptr_eq(a, r) => *res,
            _ => {
                let res = Res::intern(r);
                self.last = Some((Arc::clone(r), res));
                res
            }
        }
    }
}

impl Serialize for Res {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.resource().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Res {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Resource::deserialize(d).map(|r| Res::intern(&r))
    }
}

/// The span name every name past the cap becomes.
pub const OVERFLOW_NAME: &str = "__overflow__";

/// An interned span name (span metrics' `span_name`).
///
/// At most `cap` distinct names get an id of their own per process (the first
/// ones seen); every later name is [`OVERFLOW_NAME`], so high-cardinality names
/// (ids in URLs) cost neither memory nor series. Equality is by id; the order is
/// that of the strings, so it does not depend on arrival order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Name(pub u32);

#[derive(Default)]
struct Names {
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

fn names() -> &'static RwLock<Names> {
    static NAMES: OnceLock<RwLock<Names>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

impl Name {
    /// The id of `name`; [`OVERFLOW_NAME`]'s once `cap` names have ids.
    pub fn intern(name: &str, cap: usize) -> Name {
        if let Some(id) = names()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .ids
            .get(name)
        {
            return Name(*id);
        }
        let mut t = names().write().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = t.ids.get(name) {
            return Name(*id);
        }
        // The overflow name is interned beside the first `cap` others.
        let name = if t.names.len() >= cap {
            OVERFLOW_NAME
        } else {
            name
        };
        if let Some(id) = t.ids.get(name) {
            return Name(*id);
        }
        let id = t.names.len() as u32;
        let arc: Arc<str> = Arc::from(name);
        t.names.push(Arc::clone(&arc));
        t.ids.insert(arc, id);
        Name(id)
    }

    /// The name behind the id.
    pub fn get(self) -> Arc<str> {
        let t = names().read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&t.names[self.0 as usize])
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.0 == other.0 {
            return std::cmp::Ordering::Equal;
        }
        self.get().cmp(&other.get())
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.get().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A name that crosses a process was capped where it was read; the cap
        // here only guards against an unbounded table.
        String::deserialize(d).map(|n| Name::intern(&n, usize::MAX - 1))
    }
}

/// Interns span names for one stream of spans: consecutive spans sharing one
/// `Arc<str>` (a batch's spans of one name) cost one table lookup, and so do
/// names given as bytes that are in a small cache of recent ones.
///
/// A cached id stays right: a name's id never changes, and a name past the cap
/// stays past it (the table only grows).
pub struct NameInterner {
    last: Option<(Arc<str>, Name)>,
    recent: Vec<Option<(Box<[u8]>, Name)>>,
    /// The slot of `recent` that answered last.
    last_slot: usize,
}

impl Default for NameInterner {
    fn default() -> Self {
        NameInterner {
            last: None,
            recent: vec![None; RECENT],
            last_slot: 0,
        }
    }
}

impl NameInterner {
    /// The id of the name with bytes `name` (UTF-8), capped at `cap` names.
    pub fn get_bytes(&mut self, name: &[u8], cap: usize) -> Name {
        // Spans of one batch often share their name: the slot of the last
        // name first.
        if let Some((cached, id)) = &self.recent[self.last_slot] {
            if **cached == *name {
                return *id;
            }
        }
        let i = slot([name]);
        for j in [i, i ^ 1] {
            if let Some((cached, id)) = &self.recent[j] {
                if **cached == *name {
                    self.last_slot = j;
                    return *id;
                }
            }
        }
        let id = Name::intern(&String::from_utf8_lossy(name), cap);
        let j = vacate(&mut self.recent, i);
        self.recent[j] = Some((name.into(), id));
        self.last_slot = j;
        id
    }

    /// The id of `name`, capped at `cap` names.
    pub fn get(&mut self, name: &Arc<str>, cap: usize) -> Name {
        match &self.last {
            Some((a, id)) if Arc::ptr_eq(a, name) => *id,
            _ => {
                let id = Name::intern(name, cap);
                self.last = Some((Arc::clone(name), id));
                id
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_resources_share_an_id_and_services_share_theirs() {
        let r = |s: &str, v: &str| Resource {
            service: s.into(),
            environment: "prod".into(),
            version: v.into(),
        };
        let a = Res::intern(&r("intern-a", "1"));
        let b = Res::intern(&r("intern-a", "2"));
        assert_eq!(a, Res::intern(&r("intern-a", "1")));
        assert_ne!(a.id, b.id);
        assert_eq!(a.service, b.service);
        assert_eq!(*b.resource(), r("intern-a", "2"));
        let mut i = Interner::default();
        let arc = Arc::new(r("intern-c", "1"));
        assert_eq!(i.get(&arc), i.get(&Arc::new(r("intern-c", "1"))));
    }

    #[test]
    fn span_names_past_the_cap_share_the_overflow_name() {
        // The table is process-wide and other tests intern names too (at most
        // one other name here), so the cap is "however many exist now, plus 3".
        let base = names().read().unwrap().names.len();
        let cap = base + 3;
        let ids: Vec<Name> = (0..10_000)
            .map(|i| Name::intern(&format!("cap-test /items/{i}"), cap))
            .collect();
        let distinct: std::collections::HashSet<Name> = ids.iter().copied().collect();
        assert!(distinct.len() <= 4, "{} distinct ids", distinct.len());
        assert_eq!(&*ids[9_999].get(), OVERFLOW_NAME);
        assert_eq!(&*ids[0].get(), "cap-test /items/0");
    }
}
