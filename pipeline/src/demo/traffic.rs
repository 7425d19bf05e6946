//! The demo's services and request traffic: a `gateway` that takes every request
//! (root `SERVER` span) and fans out to about twenty backends over
//! `CLIENT`→`SERVER` edges, one asynchronous hop (`orders` → queue → `notifier`,
//! `PRODUCER`→`CONSUMER`), and a request log record per served span.
//!
//! What a trace looks like depends on the [`Conditions`] of its start time: which
//! `checkout` and `search` versions serve it, whether the bad `checkout` fails
//! it, and how likely the async hop is to lose the trace context.

use causeway_schemas::otlp::proto::{
    any_value, AnyValue, KeyValue, LogRecord, Resource, Span, Status,
};

use super::rng::Rng;

const MS: u64 = 1_000_000;

/// `SpanKind` values of OTLP.
pub(crate) const INTERNAL: i32 = 1;
pub(crate) const SERVER: i32 = 2;
pub(crate) const CLIENT: i32 = 3;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

/// One service of the demo.
pub(crate) struct Service {
    pub name: &'static str,
    /// Version at the start of the story.
    pub version: &'static str,
    /// The version a deploy of the story installs, if one does.
    pub next_version: Option<&'static str>,
    /// Serves HTTP (`http.*` attributes); otherwise gRPC (`rpc.*`).
    pub http: bool,
    /// Reports its environment under the older `deployment.environment` key.
    pub legacy_env: bool,
    /// Own work per request, milliseconds `[lo, hi)`.
    pub work_ms: (u64, u64),
    /// Multiplies the base share of request logs written without a trace id.
    pub untraced: f64,
    /// Whether its request logs and spans may carry PII (users, payments...).
    pub pii: bool,
}

const fn svc(name: &'static str, version: &'static str, http: bool) -> Service {
    Service {
        name,
        version,
        next_version: None,
        http,
        legacy_env: false,
        work_ms: (1, 8),
        untraced: 1.0,
        pii: false,
    }
}

pub(crate) const GATEWAY: usize = 0;
pub(crate) const SEARCH: usize = 5;
pub(crate) const CHECKOUT: usize = 13;
pub(crate) const NOTIFIER: usize = 18;
pub(crate) const DEPLOYER: usize = 20;

/// Every service; the index is the service's id in [`Call`] and resources.
pub(crate) const SERVICES: [Service; 21] = [
    Service {
        work_ms: (2, 6),
        ..svc("gateway", "3.8.2", true)
    },
    Service {
        pii: true,
        ..svc("auth", "1.12.0", false)
    },
    Service {
        pii: true,
        ..svc("users", "4.2.1", true)
    },
    svc("sessions", "2.0.7", false),
    Service {
        work_ms: (4, 20),
        ..svc("catalog", "5.1.0", true)
    },
    Service {
        next_version: Some("1.8.0"),
        work_ms: (8, 40),
        ..svc("search", "1.7.3", false)
    },
    Service {
        work_ms: (10, 35),
        ..svc("recommendations", "0.9.4", false)
    },
    Service {
        legacy_env: true,
        work_ms: (3, 60),
        ..svc("ads", "2.2.0", false)
    },
    svc("reviews", "1.3.5", true),
    svc("pricing", "3.0.2", false),
    svc("currency", "1.1.9", false),
    svc("inventory", "2.6.0", false),
    svc("cart", "3.3.3", false),
    Service {
        next_version: Some("2.4.0"),
        work_ms: (5, 25),
        pii: true,
        ..svc("checkout", "2.3.1", false)
    },
    Service {
        work_ms: (20, 80),
        pii: true,
        ..svc("payments", "6.0.1", false)
    },
    Service {
        work_ms: (5, 30),
        ..svc("fraud", "1.4.0", false)
    },
    svc("shipping", "2.9.1", false),
    svc("orders", "4.4.0", false),
    svc("notifier", "1.0.6", false),
    Service {
        legacy_env: true,
        untraced: 15.0,
        pii: true,
        work_ms: (20, 90),
        ..svc("email", "2.1.2", false)
    },
    svc("deployer", "1.0.0", false),
];

/// The resource index of (service, whether it runs its `next_version`).
pub(crate) fn res_index(service: usize, next: bool) -> u16 {
    (service * 2 + usize::from(next)) as u16
}

/// The OTLP resources, indexed by [`res_index`].
pub(crate) fn resources(environment: &str) -> Vec<Resource> {
    let mut out = Vec::with_capacity(SERVICES.len() * 2);
    for s in &SERVICES {
        for v in [Some(s.version), s.next_version] {
            let version = v.unwrap_or(s.version);
            let env_key = if s.legacy_env {
                "deployment.environment"
            } else {
                "deployment.environment.name"
            };
            let env = if s.name == "deployer" {
                "ci"
            } else {
                environment
            };
            out.push(Resource {
                attributes: vec![
                    KeyValue::string("service.name", s.name),
                    KeyValue::string("service.version", version),
                    KeyValue::string(env_key, env),
                    KeyValue::string("telemetry.sdk.language", sdk_language(s.name)),
                ],
            });
        }
    }
    out
}

fn sdk_language(name: &str) -> &'static str {
    match name.len() % 3 {
        0 => "go",
        1 => "java",
        _ => "python",
    }
}

/// How a caller reaches a callee.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    /// A synchronous call; a failure fails the caller.
    Sync,
    /// A synchronous call with a 250 ms deadline; the caller degrades gracefully
    /// when it expires (its `CLIENT` span fails, the request does not).
    Optional,
    /// Through a queue: `PRODUCER` span in the caller, `CONSUMER` in the callee.
    Async,
}

/// A call from one service to another, made with probability `permille / 1000`.
pub(crate) struct Call {
    pub svc: usize,
    pub op: &'static str,
    pub permille: u64,
    pub hop: Hop,
    pub kids: &'static [Call],
}

const fn call(svc: usize, op: &'static str, kids: &'static [Call]) -> Call {
    Call {
        svc,
        op,
        permille: 1000,
        hop: Hop::Sync,
        kids,
    }
}

const SESSIONS: Call = call(3, "GetSession", &[]);
const AUTH: Call = call(1, "Verify", &[SESSIONS]);
const CURRENCY: Call = call(10, "Convert", &[]);
const PRICING: Call = call(9, "GetPrice", &[CURRENCY]);
const CATALOG: Call = call(4, "GET /products/{id}", &[]);
const ADS: Call = Call {
    permille: 600,
    hop: Hop::Optional,
    ..call(7, "GetAds", &[])
};
const EMAIL: Call = call(19, "Send", &[]);
const NOTIFY: Call = Call {
    hop: Hop::Async,
    ..call(NOTIFIER, "process order.created", &[EMAIL])
};

/// One kind of request the gateway serves.
pub(crate) struct Route {
    pub weight: u64,
    pub method: &'static str,
    pub path: &'static str,
    pub kids: &'static [Call],
}

/// The gateway's routes; weights sum to 100.
pub(crate) const ROUTES: [Route; 6] = [
    Route {
        weight: 30,
        method: "GET",
        path: "/api/products",
        kids: &[
            call(4, "GET /products", &[PRICING, call(11, "GetStock", &[])]),
            call(8, "GET /reviews", &[]),
            ADS,
        ],
    },
    Route {
        weight: 20,
        method: "GET",
        path: "/api/search",
        kids: &[call(SEARCH, "Search", &[CATALOG]), ADS],
    },
    Route {
        weight: 10,
        method: "GET",
        path: "/api/recommendations",
        kids: &[call(
            6,
            "Recommend",
            &[call(2, "GET /users/{id}", &[]), CATALOG],
        )],
    },
    Route {
        weight: 15,
        method: "POST",
        path: "/api/cart",
        kids: &[AUTH, call(12, "AddItem", &[CATALOG, PRICING])],
    },
    Route {
        weight: 15,
        method: "POST",
        path: "/api/checkout",
        kids: &[
            AUTH,
            call(
                CHECKOUT,
                "PlaceOrder",
                &[
                    call(12, "GetCart", &[]),
                    PRICING,
                    call(14, "Charge", &[call(15, "Score", &[])]),
                    call(11, "Reserve", &[]),
                    call(16, "Quote", &[]),
                    call(17, "CreateOrder", &[NOTIFY]),
                ],
            ),
        ],
    },
    Route {
        weight: 10,
        method: "GET",
        path: "/api/account",
        kids: &[AUTH, call(2, "GET /users/{id}", &[SESSIONS])],
    },
];

/// What holds at a trace's start time.
pub(crate) struct Conditions {
    /// Probability that this request's checkout runs the bad version.
    pub checkout_bad: f64,
    /// Share of bad-version checkout requests that fail.
    pub error_share: f64,
    /// Whether search runs its new version.
    pub search_new: bool,
    /// Probability that the async hop loses the trace context.
    pub context_loss: f64,
    /// Share of request logs (and, a quarter as often, spans) of PII-prone
    /// services that carry PII.
    pub pii_share: f64,
    /// Base share of request logs without a trace id.
    pub untraced_share: f64,
}

/// A generated span or log record.
pub(crate) enum Rec {
    Span(Span),
    Log(LogRecord),
}

/// A record with its resource and the time its exporter sends it.
pub(crate) struct Item {
    pub export_ns: u64,
    pub res: u16,
    pub pii: bool,
    pub rec: Rec,
}

/// Generates one trace's records into `out`.
pub(crate) struct TraceGen<'a> {
    pub rng: &'a mut Rng,
    pub cond: &'a Conditions,
    pub out: &'a mut Vec<Item>,
    checkout_next: bool,
    checkout_fails: bool,
    /// Orphans made by the async hop (for the counts).
    pub orphans: u64,
}

fn id_bytes(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

fn status(failed: bool, message: &str) -> Option<Status> {
    Some(Status {
        message: if failed {
            message.to_string()
        } else {
            String::new()
        },
        code: if failed { 2 } else { 0 },
    })
}

const EMAILS: [&str; 4] = [
    "jane.doe@example.com",
    "j.smith@example.org",
    "maria.garcia@example.net",
    "wei.chen@example.com",
];
/// Test card numbers (they pass the Luhn check).
const CARDS: [&str; 3] = [
    "4111 1111 1111 1111",
    "5555-5555-5555-4444",
    "4242424242424242",
];

impl<'a> TraceGen<'a> {
    pub(crate) fn new(rng: &'a mut Rng, cond: &'a Conditions, out: &'a mut Vec<Item>) -> Self {
        let checkout_next = rng.chance(cond.checkout_bad);
        let checkout_fails = checkout_next && rng.chance(cond.error_share);
        TraceGen {
            rng,
            cond,
            out,
            checkout_next,
            checkout_fails,
            orphans: 0,
        }
    }

    fn res(&self, service: usize) -> u16 {
        let next = match service {
            CHECKOUT => self.checkout_next,
            SEARCH => self.cond.search_new,
            _ => false,
        };
        res_index(service, next)
    }

    /// One request through the gateway, starting at `start`.
    pub(crate) fn request(&mut self, start: u64) {
        let pick = self.rng.range(0, 100);
        let mut acc = 0;
        let route = ROUTES
            .iter()
            .find(|r| {
                acc += r.weight;
                pick < acc
            })
            .unwrap_or(&ROUTES[0]);
        let trace = self.rng.trace_id();
        let name = format!("{} {}", route.method, route.path);
        self.serve(
            GATEWAY,
            &name,
            SERVER,
            trace,
            0,
            start,
            route.kids,
            route.method,
        );
    }

    /// A served span of `svc` (and everything it calls); returns (end, failed).
    #[allow(clippy::too_many_arguments)]
    fn serve(
        &mut self,
        svc: usize,
        op: &str,
        kind: i32,
        trace: u128,
        parent: u64,
        start: u64,
        kids: &[Call],
        method: &str,
    ) -> (u64, bool) {
        let s = &SERVICES[svc];
        let id = self.rng.span_id();
        let mut t = start + self.work(s) / 2;
        let fails_here = svc == CHECKOUT && self.checkout_fails;
        let mut failed = false;
        for (i, k) in kids.iter().enumerate() {
            if fails_here && i >= 2 {
                break; // the bad checkout fails after pricing, before payments
            }
            if k.permille < 1000 && self.rng.range(0, 1000) >= k.permille {
                continue;
            }
            match k.hop {
                Hop::Sync | Hop::Optional => {
                    let cid = self.rng.span_id();
                    let net = self.rng.range(MS / 5, MS);
                    let (send, sfailed) =
                        self.serve(k.svc, k.op, SERVER, trace, cid, t + net, k.kids, "POST");
                    let deadline = t + 250 * MS;
                    let (cend, cfailed, why) = if k.hop == Hop::Optional && send + net > deadline {
                        (deadline, true, "DEADLINE_EXCEEDED")
                    } else {
                        (send + net, sfailed, "upstream request failed")
                    };
                    self.span(svc, trace, cid, id, k.op, CLIENT, t, cend, cfailed, why);
                    t = cend + self.rng.range(MS / 10, MS);
                    if cfailed && k.hop == Hop::Sync {
                        failed = true;
                        break;
                    }
                }
                Hop::Async => {
                    let pid = self.rng.span_id();
                    let pend = t + self.rng.range(MS, 3 * MS);
                    self.span(
                        svc,
                        trace,
                        pid,
                        id,
                        "publish order.created",
                        PRODUCER,
                        t,
                        pend,
                        false,
                        "",
                    );
                    let queued = pend + self.rng.range(20 * MS, 1500 * MS);
                    let ctrace = if self.rng.chance(self.cond.context_loss) {
                        // The consumer starts a new trace but keeps the producer's
                        // span id as its parent: an orphan (SLI M4).
                        self.orphans += 1;
                        self.rng.trace_id()
                    } else {
                        trace
                    };
                    self.serve(k.svc, k.op, CONSUMER, ctrace, pid, queued, k.kids, "");
                    t = pend + self.rng.range(MS / 10, MS);
                }
            }
        }
        if fails_here {
            failed = true;
            t += self.rng.range(300 * MS, 900 * MS);
        }
        let end = t + self.work(s) / 2 + MS / 10;
        let why = if fails_here {
            "INTERNAL: tax calculation failed: nil region"
        } else {
            "upstream request failed"
        };
        self.span(svc, trace, id, parent, op, kind, start, end, failed, why);
        self.request_log(svc, op, trace, id, end, end - start, failed, method);
        (end, failed)
    }

    fn work(&mut self, s: &Service) -> u64 {
        let ms = self.rng.range(s.work_ms.0 * MS, s.work_ms.1 * MS);
        // A slow tail: one request in a hundred takes five times as long.
        if self.rng.chance(0.01) {
            ms * 5
        } else {
            ms
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        svc: usize,
        trace: u128,
        id: u64,
        parent: u64,
        name: &str,
        kind: i32,
        start: u64,
        end: u64,
        failed: bool,
        why: &str,
    ) {
        let s = &SERVICES[svc];
        let mut attributes = Vec::with_capacity(4);
        if kind == SERVER && s.http {
            attributes.push(KeyValue::string("http.route", name));
            attributes.push(KeyValue::int(
                "http.response.status_code",
                if failed { 502 } else { 200 },
            ));
        } else if kind == SERVER || kind == CLIENT {
            attributes.push(KeyValue::string("rpc.system", "grpc"));
            attributes.push(KeyValue::string("rpc.method", name));
        } else {
            attributes.push(KeyValue::string("messaging.system", "kafka"));
            attributes.push(KeyValue::string("messaging.destination.name", "orders"));
        }
        let mut pii = false;
        if s.pii && kind == SERVER && self.rng.chance(self.cond.pii_share / 4.0) {
            let card = CARDS[self.rng.range(0, CARDS.len() as u64) as usize];
            attributes.push(KeyValue::string("payment.card_number", card));
            pii = true;
        }
        let span = Span {
            trace_id: trace.to_be_bytes().to_vec(),
            span_id: id_bytes(id),
            parent_span_id: if parent == 0 {
                Vec::new()
            } else {
                id_bytes(parent)
            },
            name: name.to_string(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status: status(failed, why),
        };
        let export_ns = end + self.rng.range(MS, 500 * MS);
        self.out.push(Item {
            export_ns,
            res: self.res(svc),
            pii,
            rec: Rec::Span(span),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn request_log(
        &mut self,
        svc: usize,
        op: &str,
        trace: u128,
        span: u64,
        t: u64,
        dur: u64,
        failed: bool,
        method: &str,
    ) {
        let s = &SERVICES[svc];
        let ms = dur / MS;
        let (mut attributes, mut body) = if s.http {
            let code = if failed { 502 } else { 200 };
            (
                vec![
                    KeyValue::string("http.request.method", method),
                    KeyValue::string("http.route", op),
                    KeyValue::int("http.response.status_code", code),
                ],
                format!("{op} {code} in {ms} ms"),
            )
        } else if method.is_empty() {
            // The queue consumer: a message record, not a request record.
            (
                vec![KeyValue::string("messaging.operation", "process")],
                format!("{op} processed in {ms} ms"),
            )
        } else {
            let (code, outcome) = if failed { (13, "INTERNAL") } else { (0, "OK") };
            (
                vec![
                    KeyValue::string("rpc.method", op),
                    KeyValue::int("rpc.grpc.status_code", code),
                ],
                format!("{op} {outcome} in {ms} ms"),
            )
        };
        let mut pii = false;
        if s.pii && self.rng.chance(self.cond.pii_share) {
            pii = true;
            match self.rng.range(0, 3) {
                0 => attributes.push(KeyValue::string(
                    "user.email",
                    EMAILS[self.rng.range(0, EMAILS.len() as u64) as usize],
                )),
                1 => {
                    let card = CARDS[self.rng.range(0, CARDS.len() as u64) as usize];
                    body.push_str(&format!(" (card {card})"));
                }
                _ => {
                    let to = EMAILS[self.rng.range(0, EMAILS.len() as u64) as usize];
                    body.push_str(&format!(" for {to}"));
                }
            }
        }
        let untraced = self.rng.chance(self.cond.untraced_share * s.untraced);
        let log = LogRecord {
            time_unix_nano: t,
            severity_number: if failed { 17 } else { 9 },
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(body)),
            }),
            attributes,
            trace_id: if untraced {
                Vec::new()
            } else {
                trace.to_be_bytes().to_vec()
            },
            span_id: if untraced { Vec::new() } else { id_bytes(span) },
            observed_time_unix_nano: t + self.rng.range(MS / 10, 5 * MS),
        };
        let export_ns = t + self.rng.range(MS, 800 * MS);
        self.out.push(Item {
            export_ns,
            res: self.res(svc),
            pii,
            rec: Rec::Log(log),
        });
    }
}

/// The deployer's trace of one change: a root `INTERNAL` span over the rollout
/// and a `CLIENT` span for the API call the audit record describes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn deployer_trace(
    out: &mut Vec<Item>,
    trace: u128,
    root: u64,
    patch: u64,
    service: &str,
    version: &str,
    start: u64,
    patch_at: u64,
    end: u64,
) {
    let res = res_index(DEPLOYER, false);
    let mk = |id: u64, parent: u64, name: String, kind, s: u64, e: u64| Span {
        trace_id: trace.to_be_bytes().to_vec(),
        span_id: id_bytes(id),
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            id_bytes(parent)
        },
        name,
        kind,
        start_time_unix_nano: s,
        end_time_unix_nano: e,
        attributes: vec![
            KeyValue::string("k8s.deployment.name", service),
            KeyValue::string("deploy.version", version),
        ],
        status: status(false, ""),
    };
    out.push(Item {
        export_ns: patch_at + 120 * MS,
        res,
        pii: false,
        rec: Rec::Span(mk(
            patch,
            root,
            format!("PATCH deployments/{service}"),
            CLIENT,
            patch_at,
            patch_at + 90 * MS,
        )),
    });
    out.push(Item {
        export_ns: end + 50 * MS,
        res,
        pii: false,
        rec: Rec::Span(mk(
            root,
            0,
            format!("deploy {service} {version}"),
            INTERNAL,
            start,
            end,
        )),
    });
}
