//! Operator tests: tiny collections, exact captured output.

use std::sync::Arc;

use causeway_jobs::{build, Inputs, Params};
use causeway_schemas::records::{ExemplarRecord, ServiceGraphRecord, SliRecord};
use causeway_schemas::{
    AuditRecord, DeployAction, DeployEvent, Origin, Resource, Span, SpanKind, SpanStatus,
};
use differential_dataflow::input::Input;
use timely::dataflow::operators::capture::Event;
use timely::dataflow::operators::Capture;

const S: u64 = 1_000_000_000;

fn res(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        service: service.into(),
        environment: "prod".into(),
        version: "1".into(),
    })
}

fn span(id: u64, parent: u64, start_s: u64, end_s: u64, service: &str, status: SpanStatus) -> Span {
    Span {
        trace: 7,
        span: id,
        parent,
        start: start_s * S,
        end: end_s * S,
        kind: if parent == 0 {
            SpanKind::Server
        } else {
            SpanKind::Client
        },
        status,
        pii: false,
        resource: res(service),
        name: "op".into(),
    }
}

type Captured<T> = Vec<(u64, Vec<T>)>;

fn run(spans: Vec<Span>) -> (Captured<SliRecord>, Captured<ServiceGraphRecord>) {
    let (sli, graph, _) = run_with_exemplars(spans);
    (sli, graph)
}

fn run_with_exemplars(
    spans: Vec<Span>,
) -> (
    Captured<SliRecord>,
    Captured<ServiceGraphRecord>,
    Captured<ExemplarRecord>,
) {
    let params = Params {
        availability_exemplars: true,
        latency_exemplars: true,
        ..Params::default()
    };
    let (sli, graph, exemplars) = timely::example(move |scope| {
        let (mut input, spans_c) = scope.new_collection::<Span, isize>();
        let (_logs_in, logs) = scope.new_collection();
        let (_audits_in, audits) = scope.new_collection();
        let (_deploys_in, deploys) = scope.new_collection();
        for s in &spans {
            let (enter, leave) = params.span_lifetime(s.event_time());
            input.update_at(s.clone(), enter, 1);
            input.update_at(s.clone(), leave, -1);
        }
        let out = build(Inputs::from_events(spans_c, logs, audits, deploys), &params);
        (
            out.sli.capture(),
            out.service_graph.capture(),
            out.exemplars.capture(),
        )
    });
    (collect(sli), collect(graph), collect(exemplars))
}

fn collect<T>(rx: std::sync::mpsc::Receiver<Event<u64, Vec<T>>>) -> Vec<(u64, Vec<T>)> {
    let mut by_time: std::collections::BTreeMap<u64, Vec<T>> = Default::default();
    for event in rx.try_iter() {
        if let Event::Messages(t, mut data) = event {
            if let Some(t) = t.least() {
                by_time.entry(*t).or_default().append(&mut data);
            }
        }
    }
    by_time.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

#[test]
fn duplicates_count_once_and_orphans_are_bad() {
    let t0 = 1_800_000_000;
    let spans = vec![
        span(1, 0, t0, t0 + 1, "gateway", SpanStatus::Unset),
        // Duplicate of span 2: the greater end time wins, and it is an ERROR.
        span(2, 1, t0, t0 + 1, "checkout", SpanStatus::Unset),
        span(2, 1, t0, t0 + 2, "checkout", SpanStatus::Error),
        // Orphan: its parent 99 never arrives.
        span(3, 99, t0, t0 + 1, "checkout", SpanStatus::Unset),
    ];
    let (sli, graph) = run(spans);
    let params = Params::default();
    let window = t0 - t0 % 60;
    // Everything is emitted once, at the time the window became final.
    assert_eq!(sli.len(), 1);
    assert_eq!(sli[0].0, params.final_at(window));
    let find = |name: &str, service: &str| {
        sli[0]
            .1
            .iter()
            .find(|r| r.sli == name && r.service == service)
            .cloned()
            .unwrap()
    };
    let cl = find("context_loss", "checkout");
    assert_eq!((cl.good, cl.total), (Some(1), Some(2)));
    let cl = find("context_loss", "gateway");
    assert_eq!((cl.good, cl.total), (Some(1), Some(1)));
    let lat = find("latency", "gateway");
    assert_eq!(lat.total, Some(1));
    assert_eq!(graph.len(), 1);
    assert_eq!(
        graph[0].1,
        vec![ServiceGraphRecord {
            client: "gateway".into(),
            server: "checkout".into(),
            window_start: window,
            window_end: window + 60,
            total: 1,
            failed: 1,
        }]
    );
}

#[test]
fn a_parent_beyond_the_horizon_does_not_resolve() {
    let t0 = 1_800_000_000;
    // The child starts 11 minutes after its parent: beyond the 10-minute horizon.
    let spans = vec![
        span(1, 0, t0, t0 + 1, "gateway", SpanStatus::Unset),
        span(2, 1, t0 + 660, t0 + 661, "checkout", SpanStatus::Unset),
    ];
    let (sli, graph) = run(spans);
    let late_window: Vec<&SliRecord> = sli
        .iter()
        .flat_map(|(_, v)| v)
        .filter(|r| r.sli == "context_loss" && r.service == "checkout")
        .collect();
    assert_eq!(late_window.len(), 1);
    assert_eq!(
        (late_window[0].good, late_window[0].total),
        (Some(0), Some(1))
    );
    assert!(graph.iter().all(|(_, v)| v.is_empty()));
}

#[test]
fn exemplars_name_the_deepest_error_span_service() {
    let t0 = 1_800_000_000;
    // gateway (ERROR, root) -> checkout (ERROR) -> payments (ERROR, deepest);
    // an OK leaf under the gateway is deeper than nothing but not an error.
    let spans = vec![
        span(1, 0, t0, t0 + 3, "gateway", SpanStatus::Error),
        span(2, 1, t0, t0 + 2, "checkout", SpanStatus::Error),
        span(3, 2, t0, t0 + 1, "payments", SpanStatus::Error),
        span(4, 1, t0, t0 + 1, "inventory", SpanStatus::Unset),
    ];
    let (_, _, exemplars) = run_with_exemplars(spans);
    let params = Params::default();
    let window = t0 - t0 % 60;
    assert_eq!(exemplars.len(), 1);
    assert_eq!(exemplars[0].0, params.final_at(window));
    let availability: Vec<&ExemplarRecord> = exemplars[0]
        .1
        .iter()
        .filter(|x| x.sli == "availability")
        .collect();
    // Only the root is an entry span (the others are CLIENT spans with parents).
    assert_eq!(availability.len(), 1);
    assert_eq!(availability[0].service, "gateway");
    assert_eq!(availability[0].exemplars.len(), 1);
    let x = &availability[0].exemplars[0];
    assert_eq!(x.trace_id, format!("{:032x}", 7));
    assert_eq!(x.deepest_error_service, "payments");
    assert_eq!(x.duration_us, 3_000_000);
    let latency: Vec<&ExemplarRecord> = exemplars[0]
        .1
        .iter()
        .filter(|x| x.sli == "latency")
        .collect();
    assert_eq!(latency.len(), 1);
    assert_eq!(latency[0].exemplars[0].duration_us, 3_000_000);
}

fn audit(n: u64, trace: u128, at_s: u64, service: &str, actor: &str, action: &str) -> AuditRecord {
    AuditRecord {
        trace,
        time: at_s * S,
        origin: Origin {
            partition: 0,
            offset: n,
            index: 0,
        },
        resource: res(service),
        actor: actor.into(),
        action: action.into(),
    }
}

fn deploy(n: u64, trace: u128, at_s: u64, service: &str) -> DeployEvent {
    DeployEvent {
        time: at_s * S,
        origin: Origin {
            partition: 1,
            offset: n,
            index: 0,
        },
        action: DeployAction::Deployed,
        id: format!("d{n}"),
        service: service.into(),
        environment: "prod".into(),
        version: "2.0".into(),
        artifact: format!("pkg:oci/{service}@2.0"),
        trace,
    }
}

/// The actor of a deploy: from the audit record sharing its trace id, else from
/// a changing audit record of the same service within the grace.
#[test]
fn deploys_take_the_actor_of_a_correlated_audit_record() {
    let t0 = 1_800_000_000;
    let params = Params::default();
    let audits = vec![
        audit(0, 9, t0 + 5, "checkout", "alice", "deploy"),
        audit(1, 0, t0 + 3, "checkout", "bob", "patch"),
        audit(2, 0, t0 + 10, "payments", "eve", "get"),
        audit(3, 0, t0 + 20, "payments", "dave", "patch"),
        audit(4, 0, t0 + 300, "search", "frank", "patch"),
    ];
    let deploys = vec![
        deploy(0, 9, t0, "checkout"),
        deploy(1, 0, t0 + 2, "payments"),
        deploy(2, 0, t0 + 4, "search"),
    ];
    let p = params.clone();
    let changes = timely::example(move |scope| {
        let (mut a_in, a) = scope.new_collection::<AuditRecord, isize>();
        let (mut d_in, d) = scope.new_collection::<DeployEvent, isize>();
        for x in &audits {
            let (enter, leave) = p.record_lifetime(x.time);
            a_in.update_at(x.clone(), enter, 1);
            a_in.update_at(x.clone(), leave, -1);
        }
        for x in &deploys {
            let (enter, leave) = p.record_lifetime(x.time);
            d_in.update_at(x.clone(), enter, 1);
            d_in.update_at(x.clone(), leave, -1);
        }
        causeway_jobs::evidence::changes(d, a, &p).capture()
    });
    let got: Vec<(String, String)> = collect(changes)
        .into_iter()
        .flat_map(|(_, v)| v)
        .map(|c| (c.service, c.actor))
        .collect();
    assert_eq!(
        got,
        [
            // The trace match wins over bob's nearby patch.
            ("checkout".to_string(), "alice".to_string()),
            // eve only read; dave patched 18 s later, within the 60 s grace.
            ("payments".to_string(), "dave".to_string()),
            // frank acted 296 s later: not correlated.
            ("search".to_string(), String::new()),
        ]
    );
}
