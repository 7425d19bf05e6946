//! Checkpoints: records of the checkpoint topic ([`CheckpointRecord`], keyed by
//! group, topic and partition; the newest per key wins). Each holds the
//! partition's *restart point* (the first message still needed to rebuild
//! correlation state for windows not yet emitted) and a [`Checkpoint`]: the
//! emitted frontier, the partition's newest event time before the restart point
//! (so lateness is judged exactly as before), the read position (dead letters
//! below it are already written) and, on worker 0, the output offsets an
//! exactly-once restart reads back. The consumer group's committed offsets mirror
//! them for lag monitoring; they are not read back, because not every broker
//! keeps offset-commit metadata (tansu 0.6 drops it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::InputPartition;

/// What a committed offset's metadata records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Every output of a time below this was acknowledged when the checkpoint was taken.
    pub emitted: u64,
    /// The partition's newest event time (ns) before the restart offset.
    pub max_seen: Option<u64>,
    /// The read position: dead letters below it are already written.
    pub read: u64,
    /// Kafka timestamp (ms) of the restart message, to seek by time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts_ms: Option<i64>,
    /// Output (topic, partition, offset): every output record of a time at or
    /// after `emitted` is at or after these offsets. Written by worker 0 only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out: Vec<(String, i32, i64)>,
}

/// A partition's committed restart offset and checkpoint, if it has one.
pub type Committed = Option<(u64, Checkpoint)>;

/// One record of the checkpoint topic: the restart offset of a partition and
/// its checkpoint. Keyed by [`checkpoint_key`]; the newest record of a key wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The restart offset.
    pub offset: u64,
    /// The checkpoint.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
}

/// The checkpoint-topic key of a partition for a consumer group.
pub fn checkpoint_key(group: &str, p: &InputPartition) -> String {
    format!("{group}|{}|{}", p.topic_name, p.partition)
}

/// The newest checkpoint of each of `parts`, in order, from the records of the
/// checkpoint topic.
pub fn latest_checkpoints(
    group: &str,
    parts: &[InputPartition],
    records: &[super::Stored],
) -> Vec<Committed> {
    let mut latest: BTreeMap<&str, (u64, Checkpoint)> = BTreeMap::new();
    for s in records {
        if let Ok(r) = serde_json::from_slice::<CheckpointRecord>(&s.value) {
            latest.insert(s.key.as_str(), (r.offset, r.checkpoint));
        }
    }
    parts
        .iter()
        .map(|p| latest.get(checkpoint_key(group, p).as_str()).cloned())
        .collect()
}

/// A position in a partition: a message offset, the partition's newest event
/// time before it, and the message's Kafka timestamp (used to seek: some brokers
/// (tansu 0.6) return nothing for a fetch that starts inside a record batch, but
/// a timestamp lookup gives a batch start at or before the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// Message offset.
    pub offset: u64,
    /// Newest event time (ns) of the partition before this message.
    pub max_seen: Option<u64>,
    /// The message's timestamp (ms), if known.
    pub ts_ms: Option<i64>,
}

/// Per-partition bookkeeping of which messages are still needed.
///
/// A message is needed while some output time at or after the emitted frontier
/// may depend on it: while the latest retraction time of its records is at or
/// past the frontier (a record present until `leave` counts in windows final at
/// times up to `leave`). Keyed by that time, each entry keeps the first
/// message's [`Mark`].
#[derive(Debug, Default, Clone)]
pub struct Retention {
    by_leave: BTreeMap<u64, Mark>,
}

impl Retention {
    /// Notes that the message at `mark` is needed up to time `leave`.
    pub fn note(&mut self, leave: u64, mark: Mark) {
        self.by_leave.entry(leave).or_insert(mark);
    }

    /// The restart point once every output before `emitted` is durable: the
    /// first needed message, or `next` (the next message to read) when nothing
    /// is needed.
    pub fn restart_point(&mut self, emitted: u64, next: Mark) -> Mark {
        self.by_leave = self.by_leave.split_off(&emitted);
        self.by_leave
            .values()
            .min_by_key(|m| m.offset)
            .copied()
            .unwrap_or(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_point_is_the_first_message_still_needed() {
        let mark = |offset, seen| Mark {
            offset,
            max_seen: Some(seen),
            ts_ms: Some(seen as i64),
        };
        let mut r = Retention::default();
        r.note(200, mark(10, 1));
        r.note(140, mark(11, 2));
        r.note(200, mark(12, 3));
        r.note(260, mark(13, 4));
        // Nothing emitted: the first message.
        assert_eq!(r.restart_point(0, mark(14, 5)), mark(10, 1));
        // Times below 201 are emitted: messages needed only up to 200 are not.
        assert_eq!(r.restart_point(201, mark(14, 5)), mark(13, 4));
        // Everything emitted: the next message.
        assert_eq!(r.restart_point(300, mark(14, 5)), mark(14, 5));
    }

    #[test]
    fn checkpoint_metadata_round_trips() {
        let cp = Checkpoint {
            emitted: 1_700_000_120,
            max_seen: Some(1_700_000_100_000_000_000),
            read: 42,
            ts_ms: Some(1_700_000_100_000),
            out: vec![("causeway_sli".into(), 0, 7)],
        };
        let s = serde_json::to_string(&cp).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&s).unwrap(), cp);
    }
}
