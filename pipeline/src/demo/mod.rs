//! `causeway demo`'s traffic: a seeded story of a small shop with a bad deploy,
//! a rollback, context loss, PII, late and malformed messages, produced lazily
//! as the Kafka messages of its inputs ([`story`]).

mod changes;
mod rng;
pub mod story;
mod traffic;

pub use story::{Change, Counts, DemoMessage, Flaw, Story, StoryConfig, Timeline};

impl DemoMessage {
    /// Produces the message to `topic` as the Collector's kafka exporter would
    /// (its partition, a `traceparent` header when it has one), waiting while
    /// the producer's queue is full. Any other error is returned.
    pub fn produce(
        &self,
        producer: &rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
        topic: &str,
    ) -> rdkafka::error::KafkaResult<()> {
        crate::kafka::produce_input(
            producer,
            topic,
            self.partition as i32,
            &self.payload,
            self.traceparent.as_deref(),
        )
    }
}
