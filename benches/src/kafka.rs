//! Kafka harness shared by the integration tests and the broker benchmark: a
//! real broker (tansu) or librdkafka's mock cluster, input
//! files produced as the OpenTelemetry Collector's `kafka` exporter would (one
//! OTLP batch per message), and output topics read back.
//!
//! Each input file of a `replay` directory becomes one partition of its topic
//! (files of a topic in sorted order → partitions 0, 1, ...), with its messages in
//! file order, so `run` sees the same per-partition sequences as `replay`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use causeway::kafka::{close, produce_input};
use causeway::sources::file::{list_inputs, open};
use causeway::sources::Topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, Producer, ThreadedProducer,
};
use rdkafka::{Message, Offset, TopicPartitionList};

/// The output topics `run` writes.
pub const OUTPUT_TOPICS: [&str; 7] = [
    "causeway_sli",
    "causeway_service_graph",
    "causeway_dlq",
    "causeway_alerts",
    "causeway_slo",
    "causeway_evidence",
    "causeway_checkpoints",
];

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The tansu binary: `$TANSU`, else `~/.cargo/bin/tansu`, else `tansu` on `PATH`.
pub fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo = Path::new(&home).join(".cargo/bin/tansu");
    if cargo.exists() {
        return cargo;
    }
    PathBuf::from("tansu")
}

/// Extra client settings (TLS, SASL) for the broker at an address, set by
/// [`set_client_settings`] and used by every client this harness creates.
static CLIENT_SETTINGS: std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Makes every client of this harness for `brokers` use `settings` too (a
/// broker that needs TLS or SASL).
pub fn set_client_settings(brokers: &str, settings: &[(&str, &str)]) {
    let settings = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    CLIENT_SETTINGS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(brokers.to_string(), settings);
}

/// A client config for `brokers`, with the settings registered for it.
pub fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    let registered = CLIENT_SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
    for (k, v) in registered.get(brokers).into_iter().flatten() {
        c.set(k, v);
    }
    c
}

/// A tansu broker on a loopback port, killed when dropped.
pub struct Tansu {
    child: Child,
    /// The address clients use: `127.0.0.1:port`, or the address advertised in
    /// front of it (a TLS proxy).
    pub brokers: String,
    port: u16,
    storage: String,
    dir: Option<PathBuf>,
    args: Vec<String>,
}

impl Tansu {
    /// Starts tansu with in-memory storage.
    pub fn start() -> Tansu {
        Self::start_with("memory://tansu/".to_string())
    }

    /// Starts tansu with the given storage engine URL.
    pub fn start_with(storage: String) -> Tansu {
        Self::spawn(free_port(), storage, None, None, Vec::new())
    }

    /// Starts tansu (in-memory) on `port`, advertising `advertised`
    /// (`host:port`) in metadata instead: clients reach it through a proxy
    /// there, and [`Tansu::brokers`] is that address.
    pub fn start_behind(port: u16, advertised: &str) -> Tansu {
        Self::spawn(
            port,
            "memory://tansu/".into(),
            None,
            Some(advertised.to_string()),
            Vec::new(),
        )
    }

    /// Starts tansu with SASL/SCRAM authentication required (`--authentication`)
    /// and SQLite storage in `dir`, after creating `users` (name, password,
    /// mechanism `scram256` or `scram512`) with `tansu user create` on the same
    /// storage (an authenticating tansu refuses unauthenticated user creation).
    pub fn start_sasl(dir: &Path, users: &[(&str, &str, &str)]) -> Tansu {
        Self::start_sasl_at(dir, users, free_port(), None)
    }

    /// As [`Tansu::start_sasl`], on `port`, advertising `advertised` (a TLS
    /// proxy in front, as in [`Tansu::start_behind`]): SASL over TLS. The
    /// users are created on the plain port.
    pub fn start_sasl_behind(
        dir: &Path,
        users: &[(&str, &str, &str)],
        port: u16,
        advertised: &str,
    ) -> Tansu {
        Self::start_sasl_at(dir, users, port, Some(advertised.to_string()))
    }

    fn start_sasl_at(
        dir: &Path,
        users: &[(&str, &str, &str)],
        port: u16,
        advertised: Option<String>,
    ) -> Tansu {
        std::fs::create_dir_all(dir).expect("broker dir");
        let mut open = Self::spawn(
            port,
            "sqlite://tansu.db".into(),
            Some(dir.to_path_buf()),
            None,
            Vec::new(),
        );
        for (name, password, mechanism) in users {
            let status = Command::new(tansu_binary())
                .args(["user", "create", "--broker"])
                .arg(format!("tcp://{}", open.brokers))
                .args(["--mechanism", mechanism, name, password])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("tansu user create");
            assert!(status.success(), "tansu user create {name} failed");
        }
        open.stop();
        drop(open);
        Self::spawn(
            port,
            "sqlite://tansu.db".into(),
            Some(dir.to_path_buf()),
            advertised,
            vec!["--authentication".into()],
        )
    }

    /// Produces every message of `dir`'s input files (see [`produce_inputs`]).
    pub fn produce(&self, dir: &Path) -> usize {
        produce_inputs(&self.brokers, dir)
    }

    /// Starts tansu with SQLite storage in `dir`, which survives a restart.
    pub fn start_persistent(dir: &Path) -> Tansu {
        std::fs::create_dir_all(dir).expect("broker dir");
        Self::spawn(
            free_port(),
            "sqlite://tansu.db".into(),
            Some(dir.to_path_buf()),
            None,
            Vec::new(),
        )
    }

    fn spawn(
        port: u16,
        storage: String,
        dir: Option<PathBuf>,
        advertised: Option<String>,
        args: Vec<String>,
    ) -> Tansu {
        let brokers = advertised.unwrap_or_else(|| format!("127.0.0.1:{port}"));
        let bin = tansu_binary();
        let mut cmd = Command::new(&bin);
        if let Some(d) = &dir {
            cmd.current_dir(d);
        }
        let child = cmd
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://{brokers}"),
                "--storage-engine",
                &storage,
            ])
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start tansu ({}): {e}. Install it with `cargo install tansu --version 0.6.0 --locked --features dynostore,libsql` (bash .ci/run does) or set TANSU",
                    bin.display()
                )
            });
        let t = Tansu {
            child,
            brokers,
            port,
            storage,
            dir,
            args,
        };
        t.wait_ready();
        t
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tansu did not listen on {} within 30 s", self.brokers);
    }

    /// Kills the broker (the outage begins).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        let again = Self::spawn(
            self.port,
            self.storage.clone(),
            self.dir.clone(),
            Some(self.brokers.clone()),
            self.args.clone(),
        );
        // The old process is already gone; dropping it only reaps nothing.
        drop(std::mem::replace(self, again));
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates `topic` with `partitions` partitions through the admin API.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = client(brokers).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create_topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// The input files of `dir` grouped by topic, each list in partition order.
pub fn layout(dir: &Path) -> BTreeMap<Topic, Vec<PathBuf>> {
    let mut by_topic: BTreeMap<Topic, Vec<PathBuf>> = BTreeMap::new();
    for (path, topic, _) in list_inputs(dir).expect("input dir") {
        by_topic.entry(topic).or_default().push(path);
    }
    by_topic
}

/// Creates the input topics (one partition per file; one for a topic without
/// files) and the output topics, with `create(topic, partitions)`.
pub fn create_topics(dir: &Path, mut create: impl FnMut(&str, i32)) {
    let l = layout(dir);
    for t in Topic::ALL {
        let n = l.get(&t).map_or(1, |files| files.len().max(1));
        create(t.default_name(), n as i32);
    }
    for t in OUTPUT_TOPICS {
        create(t, 1);
    }
}

/// Produces every message of every input file to its topic and partition.
/// Returns the number of messages produced.
pub fn produce_inputs(brokers: &str, dir: &Path) -> usize {
    produce_messages(brokers, dir, &mut |_, _| true)
}

/// Which part of the input [`produce_inputs_split`] sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// Each partition's messages before its first one at or after the cutoff.
    Before,
    /// The rest.
    From,
}

/// Produces the input files split in event time: `Half::Before` sends each
/// partition's messages up to (not including) the first one holding an event at or
/// after `cutoff_ns`; `Half::From` sends the rest. The two halves, in that order,
/// are exactly what [`produce_inputs`] sends, so a run can be held at a known
/// point of its input and then let go on.
pub fn produce_inputs_split(brokers: &str, dir: &Path, cutoff_ns: u64, half: Half) -> usize {
    let opts = causeway_schemas::DecodeOptions {
        now_ns: u64::MAX / 2,
        ..Default::default()
    };
    let mut reached = BTreeMap::new();
    produce_messages(brokers, dir, &mut |(topic, p, enc), payload| {
        let seen = reached.entry((topic, p)).or_insert(false);
        *seen |= latest_event(topic, enc, payload, &opts).is_some_and(|t| t >= cutoff_ns);
        (half == Half::From) == *seen
    })
}

/// Produces one event-time slice of the input: per partition, the messages
/// from the first one holding an event at or after `from_ns` up to (not
/// including) the first one at or after `to_ns`. Slices over increasing
/// cutoffs, in order, are exactly what [`produce_inputs`] sends, so a test can
/// feed a run gradually, as a live source would.
pub fn produce_inputs_between(brokers: &str, dir: &Path, from_ns: u64, to_ns: u64) -> usize {
    let opts = causeway_schemas::DecodeOptions {
        now_ns: u64::MAX / 2,
        ..Default::default()
    };
    let mut reached = BTreeMap::new();
    produce_messages(brokers, dir, &mut |(topic, p, enc), payload| {
        let (from, to) = reached.entry((topic, p)).or_insert((false, false));
        let latest = latest_event(topic, enc, payload, &opts);
        *from |= latest.is_some_and(|t| t >= from_ns);
        *to |= latest.is_some_and(|t| t >= to_ns);
        *from && !*to
    })
}

/// The latest event time in one input message, if it decodes.
fn latest_event(
    topic: Topic,
    enc: causeway_schemas::Encoding,
    payload: &[u8],
    opts: &causeway_schemas::DecodeOptions,
) -> Option<u64> {
    use causeway_schemas::{audit, cdevents, model, otlp};
    let origin = model::Origin {
        partition: 0,
        offset: 0,
        index: 0,
    };
    match topic {
        Topic::Spans => otlp::decode_traces(payload, enc, opts)
            .records
            .iter()
            .map(|s| model::span_event_time(s.start, s.end))
            .max(),
        Topic::Logs => otlp::decode_logs(payload, enc, origin, opts)
            .records
            .iter()
            .map(|l| l.time)
            .max(),
        Topic::Deploys => cdevents::decode_deploy(payload, origin, None, opts)
            .ok()
            .map(|d| d.time),
        Topic::Audit => audit::decode_audit(payload, origin, None, opts)
            .ok()
            .map(|a| a.time),
    }
}

/// Decides, in file order, whether a message (given its topic, partition,
/// encoding and payload) is produced.
type Keep<'a> = dyn FnMut((Topic, i32, causeway_schemas::Encoding), &[u8]) -> bool + 'a;

/// Calls `each` with every message of the input files of `dir`, file by file
/// in partition order, as [`produce_inputs`] sends them: its topic, partition
/// and encoding, and the message.
pub fn input_messages(
    dir: &Path,
    mut each: impl FnMut((Topic, i32, causeway_schemas::Encoding), causeway::sources::Message),
) {
    let inputs = list_inputs(dir).expect("input dir");
    for (topic, files) in layout(dir) {
        for (p, path) in files.iter().enumerate() {
            let enc = inputs
                .iter()
                .find(|(f, _, _)| f == path)
                .map(|(_, _, e)| *e)
                .expect("listed");
            let mut part = open(path, topic, enc, 0).expect("open input");
            while let Some(m) = part.reader.next_message().expect("read input") {
                each((topic, p as i32, enc), m);
            }
        }
    }
}

/// Produces the messages of every input file that `keep` accepts.
fn produce_messages(brokers: &str, dir: &Path, keep: &mut Keep<'_>) -> usize {
    let producer: ThreadedProducer<DefaultProducerContext> = client(brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer");
    let mut n = 0;
    input_messages(dir, |(topic, p, enc), m| {
        if !keep((topic, p, enc), &m.payload) {
            return;
        }
        produce_input(
            &producer,
            topic.default_name(),
            p,
            &m.payload,
            m.traceparent.as_deref(),
        )
        .expect("produce an input message");
        n += 1;
    });
    producer
        .flush(Duration::from_secs(60))
        .expect("flush inputs");
    n
}

/// How many messages [`produce_inputs`] writes to each (topic, partition).
pub fn partition_counts(dir: &Path) -> BTreeMap<(String, i32), usize> {
    // An empty file is a partition with no messages.
    let mut out: BTreeMap<(String, i32), usize> = layout(dir)
        .into_iter()
        .flat_map(|(topic, files)| {
            (0..files.len() as i32).map(move |p| ((topic.default_name().to_string(), p), 0))
        })
        .collect();
    input_messages(dir, |(topic, p, _), _| {
        *out.entry((topic.default_name().to_string(), p))
            .or_default() += 1;
    });
    out
}

/// One record read back: key, value and headers.
#[derive(Debug, Clone)]
pub struct Record {
    /// Key.
    pub key: String,
    /// Value.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Every record of every partition of `topic`, partition by partition, up to
/// a fence record written first to each partition (some brokers, tansu 0.6,
/// report a stale high watermark, so the end is not taken from `ListOffsets`).
/// Fence records (null values, also written by Causeway's restarts) are skipped.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Record> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = client(brokers)
        .set("group.id", "causeway-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .map(|p| p.id())
        .collect();
    let fence = format!("__test_fence__/{}/{:?}", std::process::id(), Instant::now());
    // A plain producer, served here: a `ThreadedProducer`'s flush and drop
    // each wait in 100 ms steps, which made every read take 0.2 s or more.
    let producer: BaseProducer<DefaultProducerContext> = client(brokers)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        producer
            .send(BaseRecord::<str, ()>::to(topic).key(&fence).partition(*p))
            .map_err(|(e, _)| e)
            .expect("fence");
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("tpl");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        producer.poll(Duration::ZERO);
        if producer.flush(Duration::ZERO).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "fence records not acknowledged");
        std::thread::sleep(Duration::from_micros(200));
    }
    consumer.assign(&tpl).expect("assign");
    drop(tpl);
    let mut open: std::collections::BTreeSet<i32> = partitions.into_iter().collect();
    let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "reading {topic} did not reach the fence"
        );
        let Some(m) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let m = m.expect("consume");
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        if key == fence {
            open.remove(&m.partition());
            continue;
        }
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        let Some(value) = m.payload() else { continue };
        by_partition.entry(m.partition()).or_default().push(Record {
            key,
            value: value.to_vec(),
            headers,
        });
    }
    close(consumer);
    by_partition.into_values().flatten().collect()
}
