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

/// Interns resources for one stream of records: consecutive records of one OTLP
/// resource share its `Arc`, so only a change of `Arc` costs a table lookup.
#[derive(Default)]
pub struct Interner {
    last: Option<(Arc<Resource>, Res)>,
}

impl Interner {
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
}
