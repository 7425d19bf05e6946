//! The producer every Kafka sink uses: its context counts acknowledgements per
//! partition, remembers a delivery that failed for good, and lets a caller wait
//! for the delivery reports of what it sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};

use super::{client_config, default_setting, Health, KafkaSetupError};
use crate::config::KafkaConfig;
use crate::metrics::Metrics;

/// Producer context: remembers the newest acknowledged offset per partition and
/// whether any delivery failed for good, and tracks which messages still wait
/// for their delivery report.
#[derive(Clone, Default)]
pub struct Acks {
    health: Health,
    /// Newest acknowledged offset per (topic, partition).
    pub offsets: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    /// Set when a message could not be delivered.
    pub failed: Arc<AtomicBool>,
    in_flight: Arc<InFlight>,
}

/// Messages handed to librdkafka, numbered in sending order (the number is the
/// delivery opaque), whose delivery report (either outcome) has not come, and
/// a condition variable signalled on each report.
#[derive(Default)]
struct InFlight {
    /// (the next number, the numbers without a report).
    state: Mutex<(usize, BTreeSet<usize>)>,
    reported: Condvar,
}

impl Acks {
    /// Numbers a message about to be sent; the number is its delivery opaque.
    pub(crate) fn register(&self) -> usize {
        let Ok(mut s) = self.in_flight.state.lock() else {
            return usize::MAX;
        };
        let n = s.0;
        s.0 += 1;
        s.1.insert(n);
        n
    }

    /// Forgets a registered message that was never handed to librdkafka.
    pub(crate) fn unregister(&self, n: usize) {
        if let Ok(mut s) = self.in_flight.state.lock() {
            s.1.remove(&n);
        }
        self.in_flight.reported.notify_all();
    }

    /// Records a message that could not be sent at all as a delivery failed for good.
    pub(crate) fn fail(&self, topic: &str, e: &rdkafka::error::KafkaError) {
        eprintln!(
            "causeway: a message to {topic} cannot be sent: {e}; stopping before the next checkpoint"
        );
        self.failed.store(true, Ordering::SeqCst);
    }

    /// A mark: every message sent before now has a smaller number.
    pub fn mark(&self) -> usize {
        self.in_flight.state.lock().map_or(0, |s| s.0)
    }

    /// Waits up to `timeout` for the delivery reports of every message sent
    /// before `mark`; true once they are all in.
    pub fn wait_reported(&self, mark: usize, timeout: Duration) -> bool {
        let before = |s: &(usize, BTreeSet<usize>)| s.1.first().is_some_and(|n| *n < mark);
        let Ok(s) = self.in_flight.state.lock() else {
            return false;
        };
        if timeout.is_zero() {
            return !before(&s);
        }
        self.in_flight
            .reported
            .wait_timeout_while(s, timeout, |s| before(s))
            .is_ok_and(|(s, _)| !before(&s))
    }
}

impl ClientContext for Acks {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.health.error(error, reason)
    }
}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, n: usize) {
        match result {
            Ok(m) => {
                if let Ok(mut o) = self.offsets.lock() {
                    let e = o
                        .entry((m.topic().to_string(), m.partition()))
                        .or_insert(-1);
                    *e = (*e).max(m.offset());
                }
            }
            Err((e, m)) => {
                eprintln!(
                    "causeway: delivery to {} failed for good: {e}; stopping before the next checkpoint",
                    m.topic()
                );
                self.failed.store(true, Ordering::SeqCst);
            }
        }
        if let Ok(mut s) = self.in_flight.state.lock() {
            s.1.remove(&n);
        }
        self.in_flight.reported.notify_all();
    }
}

/// A producer whose writes are acknowledged by all in-sync replicas and never
/// given up on while the broker is away (`message.timeout.ms = 0`).
/// `linger_ms` is the default of `linger.ms`: 0 for writers that flush right
/// after writing (lingering would only delay the acknowledgement).
pub fn producer(
    k: &KafkaConfig,
    metrics: Option<Arc<Metrics>>,
    linger_ms: &str,
) -> Result<ThreadedProducer<Acks>, KafkaSetupError> {
    let mut c = client_config(k);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0");
    default_setting(&mut c, k, "linger.ms", linger_ms);
    c.create_with_context(acks(metrics))
        .map_err(KafkaSetupError::Client)
}

fn acks(metrics: Option<Arc<Metrics>>) -> Acks {
    Acks {
        health: Health {
            metrics,
            ..Health::default()
        },
        ..Acks::default()
    }
}

/// A producer dropped on a thread of its own. Dropping a `ThreadedProducer`
/// waits for its polling thread to finish a 100 ms poll, which added up to
/// 0.1 s per producer to every exit; what it wrote is flushed before it is
/// dropped (outputs after each time, dead letters and checkpoints at the
/// last checkpoint), so nothing needs to wait for that.
pub(crate) struct DropAside(pub(crate) Option<ThreadedProducer<Acks>>);

impl std::ops::Deref for DropAside {
    type Target = ThreadedProducer<Acks>;

    fn deref(&self) -> &ThreadedProducer<Acks> {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for DropAside {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // If no thread can be started, the producer is dropped here.
            let _ = std::thread::Builder::new()
                .name("producer drop".into())
                .spawn(move || drop(p));
        }
    }
}

/// Blocks until everything produced so far is acknowledged.
///
/// Not rdkafka's `flush(timeout)`: it waits by polling in slices of up to
/// 100 ms, each run to its end, so a flush not complete at once took 100 ms
/// however fast the broker acknowledged. This waits for the delivery reports
/// themselves (served by the producer's polling thread) and returns as soon
/// as the last one is in.
pub fn flush(p: &ThreadedProducer<Acks>) {
    let acks = p.context();
    let mark = acks.mark();
    let mut waiting = Instant::now();
    loop {
        // Wakes the broker threads, which send what is queued.
        let _ = p.flush(Duration::ZERO);
        if acks.wait_reported(mark, Duration::from_millis(100)) {
            return;
        }
        if waiting.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "causeway: waiting for the broker to acknowledge outputs ({} in flight)",
                p.in_flight_count()
            );
            waiting = Instant::now();
        }
    }
}

/// Produces `payload` to `topic`, retrying while the local queue is full.
///
/// A message larger than the producer's `message.max.bytes` can never be
/// sent: that is returned (and the message counts as reported), where
/// retrying would spin forever.
pub(crate) fn send(
    p: &ThreadedProducer<Acks>,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: Option<OwnedHeaders>,
) -> Result<(), rdkafka::error::KafkaError> {
    let n = p.context().register();
    let mut rec = BaseRecord::with_opaque_to(topic, n)
        .key(key)
        .payload(payload);
    if let Some(h) = headers {
        rec = rec.headers(h);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((e, _))
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge) =>
            {
                p.context().unregister(n);
                return Err(e);
            }
            Err((_, back)) => {
                rec = back;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Produces `payload` to `partition` of `topic` as an OpenTelemetry
/// Collector's kafka exporter would (a `traceparent` header when given),
/// waiting while the producer's queue is full. Any other error is returned.
/// For feeding inputs: the demo, benches and tests.
pub fn produce_input(
    producer: &ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    partition: i32,
    payload: &[u8],
    traceparent: Option<&str>,
) -> rdkafka::error::KafkaResult<()> {
    let mut rec = BaseRecord::<(), [u8]>::to(topic)
        .partition(partition)
        .payload(payload);
    if let Some(tp) = traceparent {
        rec = rec.headers(OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "traceparent",
            value: Some(tp.as_bytes()),
        }));
    }
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                rec = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => return Err(e),
        }
    }
}
