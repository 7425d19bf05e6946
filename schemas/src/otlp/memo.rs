//! A bounded memo of decoded OTLP protobuf `Resource` bodies, for one worker.
//!
//! An SDK or a Collector sends the same few resources in message after message,
//! byte for byte. The memo maps the exact bytes of a `Resource` body that
//! decoded fine to what its attributes fold to ([`ResourceAttrs`]), kept as
//! offsets into the body; a body with the same bytes (compared in full) is then
//! not walked again: its attributes are sliced out of the current message at
//! those offsets, so the result borrows the message as a full decode does.
//! A body that fails to decode is never stored, so it fails again the same way.
//!
//! Each entry can also hold a note of the caller's (`T`), such as the id the
//! caller interned the entry's resource under, reached through the
//! [`MemoKey`] of the decoded [`super::ResourceRef`]; a key whose entry has since
//! been replaced finds no note. The notes sit beside the entries, so that the
//! decoder itself is not generic (it is compiled once, in this crate).
//!
//! Bounds: a fixed number of entries, [`WAYS`]-way set associative on a hash
//! of the body (the entry of a set used least recently is evicted; an entry
//! never moves), and bodies longer than [`MAX_BODY`] bytes are not stored.

use super::ResourceAttrs;

/// Entries of [`ResourceMemo::new`].
pub const DEFAULT_ENTRIES: usize = 64;

/// The longest `Resource` body the memo stores, in bytes.
pub const MAX_BODY: usize = 4096;

/// Entries a body may sit in (fewer in a memo of fewer entries): enough that
/// a stream's few hot resources do not evict each other by chance.
pub const WAYS: usize = 8;

/// A resource attribute of a stored body: unset, set to a value that is not a
/// string, or set to the string at `body[start..start + len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Unset,
    NotStr,
    Str(u32, u32),
}

#[derive(Debug)]
struct Entry {
    /// The recursion budget the body was decoded with.
    ctx: u32,
    body: Vec<u8>,
    /// `service.name`, `deployment.environment.name`, `deployment.environment`,
    /// `service.version`.
    attrs: [Slot; 4],
    /// Tells this entry apart from every other one of the memo.
    stamp: u64,
    /// The clock when it was last stored or found.
    used: u64,
}

/// Identifies the memo entry a decoded resource came from, for
/// [`ResourceMemo::note`] and [`ResourceMemo::set_note`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoKey {
    slot: u32,
    stamp: u64,
}

/// The entries of a [`ResourceMemo`], what the decoder reads and fills.
#[derive(Debug)]
pub(crate) struct Memo {
    /// Sets of `ways` slots; none when disabled.
    entries: Vec<Option<Entry>>,
    /// The hash of each slot's entry, 0 for none (scanned on a lookup).
    hashes: Vec<u64>,
    ways: usize,
    /// `entries.len() / ways`.
    sets: u64,
    /// Counts stores and finds: stamps of new entries, and `used`.
    clock: u64,
}

/// Decoded `Resource` bodies by their bytes, with a note of type `T` each; see
/// the [module docs](self).
#[derive(Debug)]
pub struct ResourceMemo<T = ()> {
    pub(crate) memo: Memo,
    /// By slot: the note and the stamp of the entry it is for.
    notes: Vec<Option<(u64, T)>>,
}

impl<T: Copy> Default for ResourceMemo<T> {
    fn default() -> Self {
        ResourceMemo::new()
    }
}

impl<T: Copy> ResourceMemo<T> {
    /// A memo of [`DEFAULT_ENTRIES`] entries.
    pub fn new() -> Self {
        ResourceMemo::with_entries(DEFAULT_ENTRIES)
    }

    /// A memo of at most `entries` entries (rounded up to a multiple of
    /// [`WAYS`] past it); 0 gives a memo that stores nothing and costs nothing
    /// to ask.
    pub fn with_entries(entries: usize) -> Self {
        let ways = entries.min(WAYS);
        let n = if ways == 0 {
            0
        } else {
            entries.div_ceil(ways) * ways
        };
        ResourceMemo {
            memo: Memo {
                entries: (0..n).map(|_| None).collect(),
                hashes: vec![0; n],
                ways,
                sets: n.checked_div(ways).unwrap_or(0) as u64,
                clock: 1,
            },
            notes: (0..n).map(|_| None).collect(),
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.memo.entries.iter().filter(|e| e.is_some()).count()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The note of the entry `key` names, if that entry is still held and has
    /// a note.
    #[inline]
    pub fn note(&self, key: MemoKey) -> Option<T> {
        match self.notes.get(key.slot as usize)? {
            Some((stamp, note)) if *stamp == key.stamp && self.memo.holds(key) => Some(*note),
            _ => None,
        }
    }

    /// Notes `note` on the entry `key` names, if it is still held.
    pub fn set_note(&mut self, key: MemoKey, note: T) {
        if self.memo.holds(key) {
            self.notes[key.slot as usize] = Some((key.stamp, note));
        }
    }
}

impl Memo {
    /// A memo that stores nothing.
    pub(crate) fn disabled() -> Self {
        Memo {
            entries: Vec::new(),
            hashes: Vec::new(),
            ways: 0,
            sets: 0,
            clock: 1,
        }
    }

    /// Whether the entry `key` names is still held.
    #[inline]
    fn holds(&self, key: MemoKey) -> bool {
        matches!(self.entries.get(key.slot as usize), Some(Some(e)) if e.stamp == key.stamp)
    }

    /// The attributes of a stored body equal to `body` decoded with budget
    /// `ctx`, sliced from `body`, and its key; on a miss, the hash of `body`
    /// to store it under ([`Self::insert`]), or `None` when it cannot be stored.
    #[inline]
    pub(crate) fn get<'a>(
        &mut self,
        body: &'a [u8],
        ctx: u32,
    ) -> Result<(ResourceAttrs<&'a [u8]>, MemoKey), Option<u64>> {
        if self.entries.is_empty() || body.len() > MAX_BODY {
            return Err(None);
        }
        let hash = hash(body);
        let set = self.set(hash);
        let clock = self.clock;
        for j in set.clone() {
            if self.hashes[j] != hash {
                continue;
            }
            let Some(e) = &mut self.entries[j] else {
                continue;
            };
            if e.ctx == ctx && e.body == body {
                e.used = clock;
                self.clock += 1;
                let key = MemoKey {
                    slot: j as u32,
                    stamp: e.stamp,
                };
                return match attrs_of(&e.attrs, body) {
                    Some(attrs) => Ok((attrs, key)),
                    None => Err(None),
                };
            }
        }
        Err(Some(hash))
    }

    /// Stores what `body` (hashing to `hash`, decoded fine with budget `ctx`)
    /// folded to, `attrs`, whose strings are slices of `body`, in an empty
    /// slot of its set or over the entry used least recently; its key, or
    /// `None` when a string is not one.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        body: &[u8],
        ctx: u32,
        attrs: &ResourceAttrs<&[u8]>,
    ) -> Option<MemoKey> {
        let slots = [
            slot_of(&attrs.service, body)?,
            slot_of(&attrs.environment_name, body)?,
            slot_of(&attrs.environment, body)?,
            slot_of(&attrs.version, body)?,
        ];
        let used = |j: &usize| self.entries[*j].as_ref().map_or(0, |e| e.used);
        let j = self.set(hash).min_by_key(used)?;
        let stamp = self.clock;
        self.clock += 1;
        // Reuse the evicted entry's buffer.
        let mut buf = self.entries[j].take().map(|e| e.body).unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(body);
        self.hashes[j] = hash;
        self.entries[j] = Some(Entry {
            ctx,
            body: buf,
            attrs: slots,
            stamp,
            used: stamp,
        });
        Some(MemoKey {
            slot: j as u32,
            stamp,
        })
    }

    /// The slots of the set for `hash`, picked by its top bits (the best
    /// mixed).
    #[inline]
    fn set(&self, hash: u64) -> std::ops::Range<usize> {
        let first = (((hash >> 32) * self.sets) >> 32) as usize * self.ways;
        first..first + self.ways
    }
}

/// `slot` as offsets into `body`; `None` when its string is not a slice of
/// `body`.
fn slot_of(slot: &Option<Option<&[u8]>>, body: &[u8]) -> Option<Slot> {
    Some(match slot {
        None => Slot::Unset,
        Some(None) => Slot::NotStr,
        Some(Some(s)) => {
            let start = (s.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
            if start.checked_add(s.len())? > body.len() {
                return None;
            }
            Slot::Str(u32::try_from(start).ok()?, u32::try_from(s.len()).ok()?)
        }
    })
}

/// Stored slots as attributes sliced from `body`.
#[inline]
fn attrs_of<'a>(slots: &[Slot; 4], body: &'a [u8]) -> Option<ResourceAttrs<&'a [u8]>> {
    let get = |slot: Slot| -> Option<Option<Option<&'a [u8]>>> {
        Some(match slot {
            Slot::Unset => None,
            Slot::NotStr => Some(None),
            Slot::Str(start, len) => {
                let start = start as usize;
                Some(Some(body.get(start..start + len as usize)?))
            }
        })
    };
    Some(ResourceAttrs {
        service: get(slots[0])?,
        environment_name: get(slots[1])?,
        environment: get(slots[2])?,
        version: get(slots[3])?,
    })
}

/// A hash of a body, sixteen bytes at a step: each step multiplies two words
/// (mixed with the hash so far) to 128 bits and folds the halves. Much cheaper
/// than walking the attributes; equal hashes are confirmed by comparing the
/// bytes, so a collision only costs a miss.
#[inline]
fn hash(b: &[u8]) -> u64 {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xd6e8_feb8_6659_fd93;
    let fold = |x: u64, y: u64| {
        let p = u128::from(x) * u128::from(y);
        (p as u64) ^ ((p >> 64) as u64)
    };
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("8 bytes"));
    let n = b.len();
    let mut h = (n as u64) ^ K1;
    let mut blocks = b.chunks_exact(16);
    for c in &mut blocks {
        h = fold(word(&c[..8]) ^ h, word(&c[8..]) ^ K2);
    }
    if !blocks.remainder().is_empty() {
        // The last sixteen bytes (overlapping), or the few there are.
        let (x, y) = if n >= 16 {
            (word(&b[n - 16..n - 8]), word(&b[n - 8..]))
        } else if n >= 8 {
            (word(&b[..8]), word(&b[n - 8..]))
        } else {
            (b.iter().fold(0, |w, &x| w << 8 | u64::from(x)), 0)
        };
        h = fold(x ^ h, y ^ K2);
    }
    // Mixed once more, so the top bits (which pick the set) depend on every
    // byte; 0 marks an empty slot.
    fold(h ^ K2, K1) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body with `service.name` = `name` at the offsets a real one has.
    fn stored(memo: &mut ResourceMemo<u32>, body: &[u8], name: &[u8]) -> Option<MemoKey> {
        let at = body
            .windows(name.len())
            .rposition(|w| w == name)
            .expect("name in body");
        let mut attrs = ResourceAttrs::default();
        attrs.offer(b"service.name", Some(&body[at..at + name.len()]));
        attrs.offer(b"service.version", None);
        let hash = memo.memo.get(body, 99).err().flatten()?;
        memo.memo.insert(hash, body, 99, &attrs)
    }

    #[test]
    fn a_hit_slices_the_new_body_and_checks_the_budget() {
        let mut memo = ResourceMemo::<u32>::new();
        let body = b"....svc-a....".to_vec();
        let key = stored(&mut memo, &body, b"svc-a").expect("stored");
        let copy = body.clone();
        let (attrs, hit) = memo.memo.get(&copy, 99).expect("hit");
        assert_eq!(hit, key);
        let service = attrs.service.flatten().expect("service");
        assert_eq!(service, b"svc-a");
        // Sliced from the new bytes, not the stored ones.
        assert_eq!(service.as_ptr(), copy[4..].as_ptr());
        assert_eq!(attrs.version, Some(None));
        assert_eq!(attrs.environment, None);
        // Another budget, or other bytes, miss.
        assert!(memo.memo.get(&copy, 98).is_err());
        assert!(memo.memo.get(b"....svc-b....", 99).is_err());
    }

    #[test]
    fn notes_belong_to_one_entry() {
        let mut memo = ResourceMemo::<u32>::with_entries(2);
        let a = stored(&mut memo, b"svc-a", b"svc-a").expect("stored");
        assert_eq!(memo.note(a), None);
        memo.set_note(a, 7);
        assert_eq!(memo.note(a), Some(7));
        // `b` takes the set's other slot.
        let b = stored(&mut memo, b"svc-b", b"svc-b").expect("stored");
        assert_ne!(a, b);
        assert_eq!((memo.note(a), memo.note(b)), (Some(7), None));
        // `a` was found last, so `c` evicts `b`; setting a note through
        // `b`'s key (now `c`'s slot) does nothing.
        let (_, a2) = memo.memo.get(b"svc-a", 99).expect("hit");
        assert_eq!(a2, a);
        let c = stored(&mut memo, b"svc-c", b"svc-c").expect("stored");
        assert_eq!(memo.len(), 2);
        assert!(memo.memo.get(b"svc-b", 99).is_err());
        memo.set_note(b, 9);
        assert_eq!((memo.note(b), memo.note(c)), (None, None));
        memo.set_note(c, 3);
        // `c` was stored last, so `d` evicts `a`: its note goes with it.
        let d = stored(&mut memo, b"svc-d", b"svc-d").expect("stored");
        assert_eq!(
            (memo.note(a), memo.note(c), memo.note(d)),
            (None, Some(3), None)
        );
        assert!(memo.memo.get(b"svc-a", 99).is_err());
    }

    #[test]
    fn bounds() {
        // Rounded up to whole sets.
        assert_eq!(ResourceMemo::<()>::with_entries(3).memo.entries.len(), 3);
        assert_eq!(ResourceMemo::<()>::with_entries(20).memo.entries.len(), 24);
        // Nothing stored with no entries, or for a body over the cap.
        let mut off = ResourceMemo::<u32>::with_entries(0);
        assert!(matches!(off.memo.get(b"svc-a", 99), Err(None)));
        assert_eq!(stored(&mut off, b"svc-a", b"svc-a"), None);
        let mut memo = ResourceMemo::<u32>::new();
        let mut big = vec![b'x'; MAX_BODY + 1];
        big[..5].copy_from_slice(b"svc-a");
        assert_eq!(stored(&mut memo, &big, b"svc-a"), None);
        assert!(stored(&mut memo, &big[..MAX_BODY], b"svc-a").is_some());
        // A string that is not a slice of the body is not stored.
        let mut attrs = ResourceAttrs::default();
        attrs.offer(b"service.name", Some(&b"elsewhere"[..]));
        let hash = memo.memo.get(b"svc-z", 99).err().flatten().expect("hash");
        assert_eq!(memo.memo.insert(hash, b"svc-z", 99, &attrs), None);
        // Many distinct bodies: never more entries than slots.
        for i in 0..1_000 {
            let body = format!("svc-{i}");
            stored(&mut memo, body.as_bytes(), body.as_bytes());
        }
        assert_eq!(memo.len(), DEFAULT_ENTRIES);
    }
}
