//! A deterministic incident scenario: a bad deploy that breaks a service behind
//! a gateway, then a rollback.
//!
//! Traffic: `gateway` (SERVER, root) → `gateway` (CLIENT) → `checkout` (SERVER) →
//! `checkout` (CLIENT) → `payments` (SERVER), `traces_per_minute` requests.
//! - At `bad_deploy_at` a CDEvent `service.deployed` of `checkout` 1.5.0 arrives,
//!   with an audit record naming its actor and sharing its trace context. From then
//!   on, `error_share` of the checkout requests fail (`ERROR` on checkout and, as
//!   the error propagates, on the gateway) and are slow.
//! - At `rollback_at` a `service.rolledback` event (another actor) restores 1.4.2
//!   and the errors stop.
//! - A gateway deploy happens early on (a change that is innocent).
//!
//! The files are `replay` inputs (OTLP JSON spans in two partitions, CloudEvents
//! structured-mode CDEvents, Causeway audit records) and can be produced to Kafka
//! one file per partition.

use std::io::Write;
use std::path::Path;

use causeway_schemas::time::format_rfc3339;
use serde_json::{json, Value};

/// The scenario's knobs. All times are Unix seconds.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// First request.
    pub start: u64,
    /// Minutes of traffic.
    pub minutes: u64,
    /// Requests per minute.
    pub traces_per_minute: u64,
    /// When checkout 1.5.0 is deployed.
    pub bad_deploy_at: u64,
    /// When checkout is rolled back to 1.4.2.
    pub rollback_at: u64,
    /// Share of checkout requests that fail while 1.5.0 runs.
    pub error_share: f64,
    /// Seed of the pseudo-random choices.
    pub seed: u64,
}

impl Scenario {
    /// 100 minutes from `start`, 60 requests per minute, the bad deploy at +30m10s,
    /// the rollback at +50m, half the checkout requests failing in between.
    pub fn standard(start: u64) -> Self {
        Scenario {
            start,
            minutes: 100,
            traces_per_minute: 60,
            bad_deploy_at: start + 30 * 60 + 10,
            rollback_at: start + 50 * 60,
            error_share: 0.5,
            seed: 7,
        }
    }

    /// The SLO and alerting config the scenario is meant for: availability of every
    /// service at 99.9% with the default policy.
    pub fn config_toml(&self) -> String {
        "[[slo]]\nname = \"availability\"\nservice = \"*\"\nsli = \"availability\"\nobjective = 0.999\n\n\
         [alerting]\nchange_lookback = \"1h\"\nrunbook_url = \"https://runbooks.example.com/availability\"\n"
            .to_string()
    }

    /// Writes the input files into `dir`; returns the number of spans.
    pub fn write(&self, dir: &Path) -> std::io::Result<usize> {
        std::fs::create_dir_all(dir)?;
        let mut rng = SplitMix(self.seed);
        // Partition 0: gateway and payments; partition 1: checkout.
        let mut parts: [Vec<(u64, Value)>; 2] = [Vec::new(), Vec::new()];
        let mut spans = 0usize;
        let step_ns = 60_000_000_000 / self.traces_per_minute.max(1);
        let total = self.minutes * self.traces_per_minute;
        for i in 0..total {
            let t = self.start * NS + i * step_ns;
            let trace = format!("{:016x}{:016x}", rng.next(), i + 1);
            let id = |k: u64| format!("{:016x}", (i + 1) * 16 + k);
            let bad_version = (self.bad_deploy_at * NS..self.rollback_at * NS).contains(&t);
            let checkout_fails = bad_version && rng.unit() < self.error_share;
            let failed = checkout_fails;
            let co_ms = if checkout_fails {
                200 + rng.below(200)
            } else {
                10 + rng.below(20)
            };
            let pay_ms = 5 + rng.below(5);
            let gw_ms = co_ms + pay_ms + 10 + rng.below(10);
            let version = if bad_version { "1.5.0" } else { "1.4.2" };
            let gw = [
                span(&trace, &id(1), "", "GET /checkout", 2, t, gw_ms, failed),
                span(
                    &trace,
                    &id(2),
                    &id(1),
                    "POST checkout",
                    3,
                    t + MS,
                    co_ms + pay_ms + 4,
                    failed,
                ),
            ];
            let mut co = vec![span(
                &trace,
                &id(3),
                &id(2),
                "POST /orders",
                2,
                t + 2 * MS,
                co_ms + pay_ms + 2,
                failed,
            )];
            let mut pay = Vec::new();
            if !checkout_fails {
                co.push(span(
                    &trace,
                    &id(4),
                    &id(3),
                    "POST payments",
                    3,
                    t + 3 * MS,
                    pay_ms + 1,
                    false,
                ));
                pay.push(span(
                    &trace,
                    &id(5),
                    &id(4),
                    "POST /charge",
                    2,
                    t + 4 * MS,
                    pay_ms,
                    false,
                ));
            }
            spans += gw.len() + co.len() + pay.len();
            parts[0].push((t, batch("gateway", "3.1.0", &gw)));
            if !pay.is_empty() {
                parts[0].push((t, batch("payments", "2.0.1", &pay)));
            }
            parts[1].push((t, batch("checkout", version, &co)));
        }
        for (p, msgs) in parts.iter().enumerate() {
            let mut f = std::io::BufWriter::new(std::fs::File::create(
                dir.join(format!("otlp_spans-{p}.jsonl")),
            )?);
            for (_, m) in msgs {
                writeln!(f, "{m}")?;
            }
            f.flush()?;
        }
        let changes = [
            (
                self.start + 5 * 60,
                "gateway",
                "3.1.0",
                "deployed",
                "carol@example.com",
            ),
            (
                self.bad_deploy_at,
                "checkout",
                "1.5.0",
                "deployed",
                "alice@example.com",
            ),
            (
                self.rollback_at,
                "checkout",
                "1.4.2",
                "rolledback",
                "bob@example.com",
            ),
        ];
        let mut deploys =
            std::io::BufWriter::new(std::fs::File::create(dir.join("deploys-0.jsonl"))?);
        let mut audit = std::io::BufWriter::new(std::fs::File::create(dir.join("audit-0.jsonl"))?);
        for (n, (at, service, version, action, actor)) in changes.iter().enumerate() {
            let trace = format!("{:016x}{:016x}", 0xdeu64, n + 1);
            let traceparent = format!("00-{trace}-{:016x}-01", n + 1);
            let id = format!("deploy-{service}-{version}-{at}");
            let cdevent = json!({
                "context": {
                    "version": "0.4.1",
                    "id": id,
                    "source": "/ci/deployer",
                    "type": format!("dev.cdevents.service.{action}.0.2.0"),
                    "timestamp": format_rfc3339(*at),
                },
                "subject": {
                    "id": format!("service/{service}"),
                    "source": "/ci/deployer",
                    "type": "service",
                    "content": {
                        "environment": { "id": "prod" },
                        "artifactId": format!("pkg:oci/{service}@{version}"),
                    },
                },
            });
            let envelope = json!({
                "specversion": "1.0",
                "id": id,
                "source": "/ci/deployer",
                "type": format!("dev.cdevents.service.{action}.0.2.0"),
                "time": format_rfc3339(*at),
                "traceparent": traceparent,
                "datacontenttype": "application/json",
                "data": cdevent,
            });
            writeln!(deploys, "{envelope}")?;
            let record = json!({
                "kind": "causeway.audit/v1",
                "ts": format_rfc3339(at + 2),
                "service": service,
                "environment": "prod",
                "version": version,
                "actor": actor,
                "action": if *action == "rolledback" { "rollback" } else { "deploy" },
                "trace_id": trace,
            });
            writeln!(audit, "{record}")?;
        }
        deploys.flush()?;
        audit.flush()?;
        Ok(spans)
    }
}

const NS: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// One OTLP JSON span.
#[allow(clippy::too_many_arguments)]
fn span(
    trace: &str,
    id: &str,
    parent: &str,
    name: &str,
    kind: u8,
    start: u64,
    ms: u64,
    error: bool,
) -> Value {
    json!({
        "traceId": trace,
        "spanId": id,
        "parentSpanId": parent,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + ms * MS).to_string(),
        "status": { "code": if error { 2 } else { 0 } },
    })
}

/// One OTLP JSON `TracesData` message of one resource.
fn batch(service: &str, version: &str, spans: &[Value]) -> Value {
    let attr = |k: &str, v: &str| json!({ "key": k, "value": { "stringValue": v } });
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                attr("service.name", service),
                attr("service.version", version),
                attr("deployment.environment.name", "prod"),
            ]},
            "scopeSpans": [{ "scope": { "name": "causeway-scenario" }, "spans": spans }],
        }]
    })
}

/// splitmix64: a tiny deterministic generator, so the scenario needs no RNG crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
