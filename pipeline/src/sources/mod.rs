//! Sources: where messages come from. The dataflow only ever sees what
//! [`crate::ingest`] makes of a [`Message`], so file replay and Kafka share one
//! path from bytes to collections.

pub mod file;
pub mod kafka;

use causeway_schemas::Encoding;

/// The input topics of SPEC §1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// OTLP `TracesData`.
    Spans,
    /// OTLP `LogsData`.
    Logs,
    /// CDEvents deploy events.
    Deploys,
    /// Audit records.
    Audit,
}

impl Topic {
    /// The default topic name, which is also the replay file-name prefix.
    pub fn default_name(&self) -> &'static str {
        match self {
            Topic::Spans => "otlp_spans",
            Topic::Logs => "otlp_logs",
            Topic::Deploys => "deploys",
            Topic::Audit => "audit",
        }
    }

    /// Every topic.
    pub const ALL: [Topic; 4] = [Topic::Spans, Topic::Logs, Topic::Deploys, Topic::Audit];
}

/// One message read from a partition.
#[derive(Debug, Clone)]
pub struct Message {
    /// Offset in the partition (replay: 1-based line, or 0-based message ordinal).
    pub offset: u64,
    /// The message value.
    pub payload: Vec<u8>,
    /// The W3C `traceparent` header, if the record carried one.
    pub traceparent: Option<String>,
    /// A framing error: the bytes could not even be cut into a message.
    pub framing_error: Option<String>,
}

/// A partition of one topic, read in order.
pub trait PartitionReader: Send {
    /// The next message, `Ok(None)` at the end.
    fn next_message(&mut self) -> std::io::Result<Option<Message>>;
    /// Bytes consumed so far (for progress).
    fn position(&self) -> u64;
}

/// A partition assigned to a worker.
pub struct Partition {
    /// Its topic.
    pub topic: Topic,
    /// Encoding of its messages.
    pub encoding: Encoding,
    /// Global partition id (replay: ordinal of the file among all inputs).
    pub id: u32,
    /// Human name (file name or `topic/partition`).
    pub name: String,
    /// The reader.
    pub reader: Box<dyn PartitionReader>,
}
