//! Causeway's Kafka client, shared by the source (`causeway run`'s input
//! consumers) and the sinks (outputs, dead letters, checkpoints): client
//! settings, topic discovery and assignment ([`topics`]), broker health
//! ([`health`]), the acknowledging producer ([`producer`]), fenced read-backs
//! ([`fence`]) and checkpoints ([`checkpoint`]).

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::Message;

use crate::config::KafkaConfig;

pub mod checkpoint;
pub mod fence;
pub mod health;
pub mod producer;
pub mod topics;

pub use checkpoint::{
    checkpoint_key, latest_checkpoints, Checkpoint, CheckpointRecord, Committed, Mark, Retention,
};
pub use fence::{fenced_ends, read_fenced, Stored, FENCE_KEY};
pub use health::Health;
pub use producer::{flush, produce_input, producer, Acks};
pub use topics::{discover, inputs, topic_partitions, InputPartition};

/// librdkafka's prefetch per input partition, KiB (`queued.max.messages.kbytes`).
pub const PREFETCH_KIB: u32 = 4096;

/// Timeout of metadata and offset requests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A Kafka problem at start-up, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// A client could not be created (bad librdkafka setting).
    #[error("cannot create Kafka client: {0}; check [kafka] and [kafka.librdkafka] in the config")]
    Client(KafkaError),
    /// Metadata could not be fetched.
    #[error(
        "cannot reach Kafka at {brokers}: {source}; check kafka.brokers, that the cluster is up, and the TLS/SASL settings of [kafka.librdkafka] (librdkafka's own error, e.g. a failed certificate check or authentication, is printed above)"
    )]
    Unreachable {
        /// Brokers.
        brokers: String,
        /// Cause.
        source: KafkaError,
    },
    /// A TLS handshake or SASL authentication failed.
    #[error(
        "cannot connect to Kafka at {brokers}: {reason}; {hint}{sep}check the TLS/SASL settings of [kafka.librdkafka] (security.protocol, ssl.ca.location, ssl.certificate.location, ssl.key.location, sasl.mechanisms, sasl.username) and the secrets in kafka.librdkafka_from_env / librdkafka_from_file",
        hint = health::auth_hint(reason),
        sep = if health::auth_hint(reason).is_empty() { "" } else { "; " }
    )]
    Authentication {
        /// Brokers.
        brokers: String,
        /// librdkafka's report.
        reason: String,
    },
    /// An input topic is missing.
    #[error("topic {topic:?} does not exist; create it or set kafka.topics.{key}")]
    MissingTopic {
        /// Topic name.
        topic: String,
        /// Config key.
        key: &'static str,
    },
    /// A topic could not be read back to the fence written at start-up.
    #[error("reading back {0} did not reach the fence record within 2 minutes; check that the broker is up and the topics are readable")]
    ReadBack(String),
    /// Another Kafka operation failed.
    #[error("Kafka {what} failed: {source}")]
    Op {
        /// What was attempted.
        what: &'static str,
        /// Cause.
        source: KafkaError,
    },
}

/// A client config with the brokers and every passthrough setting, the
/// secret ones included.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    for (key, v) in &k.librdkafka {
        c.set(key, v);
    }
    // Read by `KafkaConfig::read_secrets`; rdkafka's `Debug` of a ClientConfig
    // leaves these settings out.
    for (key, v) in &k.secrets {
        c.set(key, v.expose());
    }
    c
}

/// Sets `key` unless the passthrough settings chose a value.
pub fn default_setting(c: &mut ClientConfig, k: &KafkaConfig, key: &str, value: &str) {
    if !k.librdkafka.contains_key(key) {
        c.set(key, value);
    }
}

/// The settings of `causeway run`'s input consumers (one per worker): the
/// brokers and passthrough settings, the group, offsets managed by Causeway
/// (never auto-committed or auto-stored), committed reads only, statistics
/// every second (partition ends for the lag gauge) and a prefetch of at most
/// [`PREFETCH_KIB`] per partition. The broker benchmark's bare consumer uses the
/// same settings.
pub fn consumer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = client_config(k);
    // One consumer reads many partitions, some empty or idle: a fetch must not
    // wait the default 500 ms for them.
    default_setting(&mut c, k, "fetch.wait.max.ms", "20");
    // `run` reads each partition from a queue of its own, and librdkafka's
    // prefetch bound then applies per partition (64 MiB by default): a held
    // partition's queue stops at this. A partition whose queue is full is
    // fetched again only after `fetch.queue.backoff.ms` (1 s by default),
    // which would stall a partition read faster than one fetch per second.
    default_setting(
        &mut c,
        k,
        "queued.max.messages.kbytes",
        &PREFETCH_KIB.to_string(),
    );
    default_setting(&mut c, k, "fetch.queue.backoff.ms", "10");
    c.set("group.id", &k.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("statistics.interval.ms", "1000");
    c
}

/// Closes a consumer, waiting for it in 1 ms steps. Dropping an open consumer
/// closes it too, but checks whether it is closed only every 100 ms, which
/// added 0.1 s to every start (the checkpoint read-back) and every exit.
pub fn close<C: ConsumerContext>(consumer: BaseConsumer<C>) {
    if consumer.close_queue().is_ok() {
        while !consumer.closed() {
            consumer.poll(Duration::from_millis(1));
        }
    }
}

/// The headers of a consumed message, copied.
pub fn copy_headers<M: Message>(m: &M) -> Vec<(String, Option<Vec<u8>>)> {
    m.headers()
        .map(|hs| {
            hs.iter()
                .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn kafka(toml: &str, env: &[(&str, &str)]) -> KafkaConfig {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_toml(toml, env).unwrap().kafka
    }

    #[test]
    fn the_read_ahead_per_partition_is_a_passthrough_setting() {
        let c = consumer_config(&kafka("", &[]));
        assert_eq!(
            c.get("queued.max.messages.kbytes"),
            Some(PREFETCH_KIB.to_string().as_str())
        );
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));

        let c = consumer_config(&kafka(
            "[kafka.librdkafka]\n\"queued.max.messages.kbytes\" = \"1024\"\n\"fetch.queue.backoff.ms\" = \"50\"\n",
            &[],
        ));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("1024"));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("50"));

        let c = consumer_config(&kafka(
            "",
            &[(
                "CAUSEWAY__KAFKA__LIBRDKAFKA__QUEUED.MAX.MESSAGES.KBYTES",
                "2048",
            )],
        ));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("2048"));

        // In the file, a number or a boolean without quotes is its text too.
        let k = kafka(
            "[kafka.librdkafka]\n\"queued.max.messages.kbytes\" = 512\n\"enable.sparse.connections\" = false\n",
            &[],
        );
        assert_eq!(
            consumer_config(&k).get("queued.max.messages.kbytes"),
            Some("512")
        );
        assert_eq!(k.librdkafka["enable.sparse.connections"], "false");
    }

    #[test]
    fn a_librdkafka_setting_that_is_a_table_is_refused_with_what_to_write() {
        let err = Config::from_toml(
            "[kafka.librdkafka]\n\"queued.max.messages.kbytes\" = [1]\n",
            std::iter::empty(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("queued.max.messages.kbytes"), "{err}");
        assert!(err.contains("a string, a number or a boolean"), "{err}");
    }

    #[test]
    fn a_read_ahead_out_of_range_is_refused_when_the_consumer_is_made() {
        let c = consumer_config(&kafka(
            "[kafka.librdkafka]\n\"queued.max.messages.kbytes\" = \"0\"\n",
            &[],
        ));
        let err = c
            .create::<BaseConsumer>()
            .err()
            .map(|e| KafkaSetupError::Client(e).to_string())
            .unwrap();
        assert!(err.contains("queued.max.messages.kbytes"), "{err}");
        assert!(err.contains("1..2097151"), "{err}");
        assert!(err.contains("[kafka.librdkafka]"), "{err}");
    }
}
