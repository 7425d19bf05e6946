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
        use rdkafka::message::{Header, OwnedHeaders};
        use rdkafka::producer::BaseRecord;
        use rdkafka::types::RDKafkaErrorCode;
        let mut rec = BaseRecord::<(), [u8]>::to(topic)
            .partition(self.partition as i32)
            .payload(&self.payload);
        if let Some(tp) = &self.traceparent {
            rec = rec.headers(OwnedHeaders::new().insert(Header {
                key: "traceparent",
                value: Some(tp.as_bytes()),
            }));
        }
        loop {
            match producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    rec = back;
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}
