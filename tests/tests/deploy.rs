//! `deploy/` is correct as far as it can be checked without Docker or
//! Kubernetes:
//! - every YAML file parses; the compose file's services reference files that
//!   exist and agree with each other (topics, ports, mounts, provisioning);
//! - the Causeway configs are accepted by the real config parser, `causeway
//!   rules` turns them into rules `promtool check rules` accepts, and `promtool
//!   check config` accepts the Prometheus config with those rules and the
//!   health rules (which `promtool test rules` exercises); `amtool` accepts the
//!   Alertmanager config;
//! - the Kubernetes manifests agree with each other and the StatefulSet's entry
//!   script writes the timely hostfile and flags from the pod ordinal;
//! - the systemd units pass `systemd-analyze verify` and `security`;
//! - every metric the Grafana dashboard queries is exported by a live `causeway
//!   run` or `causeway dispatch` started with the compose stack's config.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use causeway::config::Config;
use causeway_tests::kafka::{
    causeway_binary, create_topic, create_topics, free_port, produce_inputs, Tansu,
};
use causeway_tests::process::{http_get, terminate, Reaper, Receiver};
use causeway_tests::scenario::prepare;
use serde::Deserialize as _;
use serde_yaml::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("causeway-deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML file, with `<<` merge keys applied (as compose does).
fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let mut v = Value::deserialize(d)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            v.apply_merge()
                .unwrap_or_else(|e| panic!("{}: merge keys: {e}", path.display()));
            v
        })
        .collect()
}

fn yaml(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{} holds one document", path.display());
    docs.remove(0)
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

/// Runs `cmd args` in `dir`, asserts exit 0 and returns the output.
fn tool(cmd: &str, args: &[&str], dir: &Path) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (bash .ci/run installs it)"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_yaml_file_under_deploy_parses() {
    let mut files = Vec::new();
    files_under(&deploy(), &mut files);
    let yaml: Vec<&PathBuf> = files
        .iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    // compose, collector, prometheus (3), alertmanager, grafana (2), k8s (5).
    assert!(yaml.len() >= 13, "only {} YAML files: {yaml:?}", yaml.len());
    for p in yaml {
        let docs = yaml_docs(p);
        assert!(!docs.is_empty(), "{} is empty", p.display());
        for d in docs {
            assert!(
                d.is_mapping(),
                "{}: a document is not a mapping",
                p.display()
            );
        }
    }
    // And the JSON: the dashboard.
    let dash: serde_json::Value =
        serde_json::from_str(&read(&deploy().join("grafana/dashboards/causeway.json"))).unwrap();
    assert!(dash["panels"].as_array().is_some_and(|p| p.len() > 10));
}

/// Loads a config with the real parser (no environment overrides).
fn config(path: &Path) -> Config {
    Config::from_toml(&read(path), std::iter::empty())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `causeway rules --config config --out out`, and `promtool check rules out`.
fn rules(config: &Path, out: &Path) {
    let run = Command::new(causeway_binary())
        .args(["rules", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "causeway rules --config {}: {}",
        config.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    tool(
        "promtool",
        &["check", "rules", out.to_str().unwrap()],
        Path::new("."),
    );
}

#[test]
fn configs_load_and_their_rules_and_the_prometheus_config_pass_promtool() {
    let dir = temp_dir("prometheus");
    let rules_dir = dir.join("rules");
    std::fs::create_dir_all(rules_dir.join("generated")).unwrap();
    for (file, out) in [
        (
            "causeway.toml",
            rules_dir.join("generated/causeway-slo.rules.yml"),
        ),
        ("k8s/causeway.toml", dir.join("k8s.rules.yml")),
    ] {
        let path = deploy().join(file);
        let c = config(&path);
        assert!(!c.slo.is_empty(), "{file} declares SLOs");
        rules(&path, &out);
        // Recording rules and a page and a ticket alert for every SLO.
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        for group in yaml(&out)["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                let kind = rule
                    .get("alert")
                    .map(|_| format!("alert {}", s(&rule["labels"]["severity"])))
                    .unwrap_or_else(|| "record".into());
                seen.insert((s(&rule["labels"]["slo"]).to_string(), kind));
            }
        }
        for slo in &c.slo {
            for kind in ["record", "alert page", "alert ticket"] {
                assert!(
                    seen.contains(&(slo.name.clone(), kind.to_string())),
                    "{file}: no {kind} rule for SLO {}",
                    slo.name
                );
            }
        }
    }
    // The compose stack's Prometheus config, its rule_files pointing here.
    let prom = read(&deploy().join("prometheus/prometheus.yml"));
    assert!(prom.contains("/etc/prometheus/rules/generated/*.yml"));
    let prom = prom.replace(
        "/etc/prometheus/rules/",
        &format!("{}/", rules_dir.display()),
    );
    std::fs::write(dir.join("prometheus.yml"), prom).unwrap();
    std::fs::copy(
        deploy().join("prometheus/causeway-health.rules.yml"),
        rules_dir.join("causeway-health.rules.yml"),
    )
    .unwrap();
    let out = tool("promtool", &["check", "config", "prometheus.yml"], &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 rule files found"),
        "promtool found the generated and the health rules:\n{stdout}"
    );

    // The health alerts fire on what they claim (their unit tests ship next to them).
    let out = tool(
        "promtool",
        &["test", "rules", "causeway-health.test.yml"],
        &deploy().join("prometheus"),
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn alertmanager_config_passes_amtool() {
    let path = deploy().join("alertmanager/alertmanager.yml");
    tool(
        "amtool",
        &["check-config", path.to_str().unwrap()],
        Path::new("."),
    );
    // A page and a ticket from `causeway dispatch` reach their receivers.
    for (severity, receiver) in [("page", "page"), ("ticket", "ticket")] {
        let out = tool(
            "amtool",
            &[
                "config",
                "routes",
                "test",
                &format!("--config.file={}", path.display()),
                "alertname=CausewaySLOErrorBudgetBurn",
                &format!("severity={severity}"),
                "slo=availability",
            ],
            Path::new("."),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), receiver);
    }
}

/// The source of a short volume entry `./x:/target[:ro]` and its target.
fn bind_mount(entry: &str) -> Option<(&str, &str)> {
    let mut parts = entry.splitn(3, ':');
    let (src, dst) = (parts.next()?, parts.next()?);
    (src.starts_with('.') || src.starts_with('/')).then_some((src, dst))
}

#[test]
fn compose_services_reference_existing_files_and_agree() {
    let d = deploy();
    let compose = yaml(&d.join("docker-compose.yml"));
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().map(s).collect();
    for want in [
        "kafka",
        "kafka-init",
        "otel-collector",
        "causeway",
        "causeway-dispatch",
        "causeway-rules",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(names.contains(want), "service {want} is missing");
    }
    let volumes: BTreeSet<&str> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(s).collect())
        .unwrap_or_default();
    // Mount target -> host file, per service.
    let mut mounts: BTreeMap<&str, BTreeMap<&str, PathBuf>> = BTreeMap::new();
    for (name, svc) in services {
        let name = s(name);
        if let Some(build) = svc.get("build") {
            let context = d.join(s(&build["context"]));
            assert!(context.join("Cargo.toml").exists(), "{name}: build context");
            assert!(
                context.join(s(&build["dockerfile"])).exists(),
                "{name}: dockerfile"
            );
        } else {
            let image = s(&svc["image"]);
            let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
            assert!(
                !tag.is_empty() && tag != "latest",
                "{name}: pin the image, not {image}"
            );
        }
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let v = s(v);
            if let Some((src, dst)) = bind_mount(v) {
                let path = d.join(src);
                assert!(path.exists(), "{name}: mounts {src}, which does not exist");
                mounts.entry(name).or_default().insert(dst, path);
            } else {
                let vol = v.split(':').next().unwrap();
                assert!(
                    volumes.contains(vol),
                    "{name}: volume {vol} is not declared"
                );
            }
        }
        if let Some(deps) = svc.get("depends_on") {
            let deps: Vec<&str> = match deps {
                Value::Sequence(seq) => seq.iter().map(s).collect(),
                Value::Mapping(m) => m.keys().map(s).collect(),
                _ => panic!("{name}: depends_on"),
            };
            for dep in deps {
                assert!(names.contains(dep), "{name} depends on unknown {dep}");
            }
        }
    }
    let config_target = "/etc/causeway/causeway.toml";
    for svc in ["causeway", "causeway-dispatch", "causeway-rules"] {
        assert_eq!(
            mounts[svc].get(config_target),
            Some(&d.join("./causeway.toml")),
            "{svc} mounts deploy/causeway.toml"
        );
        let cmd: Vec<&str> = services[svc]["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect();
        assert!(
            cmd.windows(2).any(|w| w == ["--config", config_target]),
            "{svc}: {cmd:?}"
        );
    }
    let cfg = config(&d.join("causeway.toml"));

    // The collector writes the topics and encoding Causeway reads.
    let otel_cfg = &mounts["otel-collector"];
    let (_, otel_path) = otel_cfg.iter().next().expect("collector config mount");
    let otel = yaml(otel_path);
    let kafka = &otel["exporters"]["kafka"];
    assert_eq!(s(&kafka["traces"]["topic"]), cfg.kafka.topics.spans);
    assert_eq!(s(&kafka["logs"]["topic"]), cfg.kafka.topics.logs);
    let enc = |e: causeway_schemas::Encoding| match e {
        causeway_schemas::Encoding::OtlpProto => "otlp_proto",
        causeway_schemas::Encoding::OtlpJson => "otlp_json",
        other => panic!("OTLP topics cannot be {other:?}"),
    };
    assert_eq!(
        s(&kafka["traces"]["encoding"]),
        enc(cfg.kafka.encodings.spans)
    );
    assert_eq!(s(&kafka["logs"]["encoding"]), enc(cfg.kafka.encodings.logs));
    let brokers: Vec<&str> = kafka["brokers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(brokers.join(","), cfg.kafka.brokers);
    for p in ["traces", "logs"] {
        let exporters = &otel["service"]["pipelines"][p]["exporters"];
        assert!(exporters
            .as_sequence()
            .unwrap()
            .iter()
            .any(|e| s(e) == "kafka"));
    }
    // kafka-init creates every topic of the config, checkpoints compacted.
    let init = format!("{:?}", services["kafka-init"]["command"]);
    let t = &cfg.kafka.topics;
    for topic in [
        &t.spans,
        &t.logs,
        &t.deploys,
        &t.audit,
        &t.sli,
        &t.service_graph,
        &t.dlq,
        &t.alerts,
        &t.slo,
        &t.evidence,
    ] {
        assert!(
            init.contains(topic.as_str()),
            "kafka-init does not create {topic}"
        );
    }
    assert!(
        init.contains("create causeway_checkpoints --partitions 1 --config cleanup.policy=compact")
    );

    // Prometheus scrapes the ports Causeway binds, under the compose names.
    let prom = yaml(&mounts["prometheus"]["/etc/prometheus/prometheus.yml"]);
    let targets: BTreeSet<String> = prom["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|j| j["static_configs"].as_sequence().unwrap().iter())
        .flat_map(|sc| {
            sc["targets"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|t| s(t).to_string())
        })
        .collect();
    let port = |bind: &str| bind.rsplit_once(':').unwrap().1.to_string();
    assert!(targets.contains(&format!("causeway:{}", port(&cfg.metrics.bind))));
    assert!(targets.contains(&format!(
        "causeway-dispatch:{}",
        port(&cfg.dispatch.metrics_bind)
    )));
    let am = cfg.dispatch.alertmanager_url.as_deref().unwrap();
    assert_eq!(am, "http://alertmanager:9093");
    let am_targets = format!("{:?}", prom["alerting"]["alertmanagers"]);
    assert!(am_targets.contains("alertmanager:9093"));
    // The generated rules land where Prometheus loads them.
    let rules_cmd = format!("{:?}", services["causeway-rules"]["command"]);
    assert!(rules_cmd.contains("/rules/causeway-slo.rules.yml"));
    assert!(services["prometheus"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| s(v) == "prometheus-rules:/etc/prometheus/rules/generated:ro"));

    // Grafana: the provisioned dashboards path is where the dashboard is mounted,
    // and the dashboard's default data source is the provisioned one.
    let grafana = &mounts["grafana"];
    let prov = &grafana["/etc/grafana/provisioning"];
    let providers = yaml(&prov.join("dashboards/causeway.yml"));
    let path = s(&providers["providers"][0]["options"]["path"]);
    assert!(
        grafana[path].join("causeway.json").exists(),
        "dashboards at {path}"
    );
    let ds = yaml(&prov.join("datasources/prometheus.yml"));
    let ds = &ds["datasources"][0];
    assert_eq!(s(&ds["url"]), "http://prometheus:9090");
    let dash: serde_json::Value =
        serde_json::from_str(&read(&grafana[path].join("causeway.json"))).unwrap();
    let var = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("datasource variable");
    assert_eq!(var["current"]["value"].as_str(), ds["uid"].as_str());

    // The Dockerfile copies files that exist and runs as a non-root user.
    let dockerfile = read(&d.join("Dockerfile"));
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let src = line.split_whitespace().nth(1).unwrap();
        assert!(d.join("..").join(src).exists(), "Dockerfile: {line}");
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "USER {user}"
    );
    assert!(d.join("Dockerfile.dockerignore").exists());
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| s(&e["name"]) == name)
        .and_then(|e| e["value"].as_str())
}

#[test]
fn kubernetes_manifests_agree_with_each_other() {
    let k = deploy().join("k8s");
    let kust = yaml(&k.join("kustomization.yaml"));
    let mut objects = Vec::new();
    for r in kust["resources"].as_sequence().unwrap() {
        let path = k.join(s(r));
        assert!(path.exists(), "kustomization: resource {}", path.display());
        objects.extend(yaml_docs(&path));
    }
    let generated: BTreeMap<&str, Vec<&str>> = kust["configMapGenerator"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| {
            let files: Vec<&str> = g["files"].as_sequence().unwrap().iter().map(s).collect();
            for f in &files {
                assert!(k.join(f).exists(), "configMapGenerator file {f}");
            }
            (s(&g["name"]), files)
        })
        .collect();
    let find = |kind: &str, name: &str| -> &Value {
        objects
            .iter()
            .find(|o| s(&o["kind"]) == kind && s(&o["metadata"]["name"]) == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let cfg = config(&k.join("causeway.toml"));

    let sts = objects
        .iter()
        .find(|o| s(&o["kind"]) == "StatefulSet")
        .expect("StatefulSet");
    let spec = &sts["spec"];
    let headless = find("Service", s(&spec["serviceName"]));
    assert_eq!(s(&headless["spec"]["clusterIP"]), "None");
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    assert_eq!(s(&spec["podManagementPolicy"]), "Parallel");
    assert_eq!(
        headless["spec"]["selector"], spec["selector"]["matchLabels"],
        "the headless Service selects the StatefulSet's pods"
    );
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    let replicas = spec["replicas"].as_u64().unwrap();
    assert_eq!(
        env(c, "CAUSEWAY_PROCESSES"),
        Some(replicas.to_string().as_str())
    );
    assert_eq!(
        env(c, "HEADLESS_SERVICE"),
        headless["metadata"]["name"].as_str()
    );
    let timely_port = headless["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| s(&p["name"]) == "timely")
        .unwrap()["port"]
        .as_u64()
        .unwrap();
    assert_eq!(
        env(c, "TIMELY_PORT"),
        Some(timely_port.to_string().as_str())
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    // The entry script is mounted where the command runs it, the config where
    // CAUSEWAY_CONFIG says; both from generated ConfigMaps.
    let volume = |pod: &Value, name: &str| -> String {
        let v = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| s(&v["name"]) == name)
            .unwrap_or_else(|| panic!("volume {name}"))
            .clone();
        v.get("configMap")
            .map(|m| s(&m["name"]).to_string())
            .or_else(|| v.get("secret").map(|m| s(&m["secretName"]).to_string()))
            .unwrap()
    };
    let mount = |c: &Value, name: &str| -> String {
        s(&c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| s(&m["name"]) == name)
            .unwrap()["mountPath"])
        .to_string()
    };
    let cmd: Vec<&str> = c["command"].as_sequence().unwrap().iter().map(s).collect();
    let script = Path::new(cmd.last().unwrap());
    let entry_volume = c["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| Path::new(s(&m["mountPath"])) == script.parent().unwrap())
        .expect("the entry script's mount");
    let cm = volume(pod, s(&entry_volume["name"]));
    let file = script.file_name().unwrap().to_str().unwrap();
    assert!(generated[cm.as_str()].contains(&file), "{cm} holds {file}");
    let config_path = Path::new(env(c, "CAUSEWAY_CONFIG").unwrap());
    assert_eq!(
        mount(c, "config"),
        config_path.parent().unwrap().to_str().unwrap()
    );
    assert!(generated[volume(pod, "config").as_str()]
        .contains(&config_path.file_name().unwrap().to_str().unwrap()));
    // The hostfile is written to a writable volume (the root file system is read-only).
    let hostfile = Path::new(env(c, "HOSTFILE").unwrap());
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        mount(c, "tmp"),
        hostfile.parent().unwrap().to_str().unwrap()
    );
    assert_eq!(
        s(&sts["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"]),
        env(c, "METRICS_PORT").unwrap()
    );

    // dispatch: same config; the PagerDuty key file is the mounted Secret's key.
    let dispatch = find("Deployment", "causeway-dispatch");
    let dpod = &dispatch["spec"]["template"]["spec"];
    let dc = &dpod["containers"][0];
    let args: Vec<&str> = dc["args"].as_sequence().unwrap().iter().map(s).collect();
    assert_eq!(args[0], "dispatch");
    assert_eq!(volume(dpod, "config"), volume(pod, "config"));
    let key_file = Path::new(cfg.dispatch.pagerduty_routing_key_file.as_deref().unwrap());
    assert_eq!(
        mount(dc, "pagerduty"),
        key_file.parent().unwrap().to_str().unwrap()
    );
    let secret = find("Secret", &volume(dpod, "pagerduty"));
    let key = key_file.file_name().unwrap().to_str().unwrap();
    assert!(
        secret["stringData"].get(key).is_some(),
        "the Secret holds {key}"
    );
    assert_eq!(
        dc["ports"][0]["containerPort"]
            .as_u64()
            .map(|p| p.to_string()),
        cfg.dispatch
            .metrics_bind
            .rsplit_once(':')
            .map(|(_, p)| p.to_string())
    );
    for (what, ctx) in [
        ("run", &c["securityContext"]),
        ("dispatch", &dc["securityContext"]),
    ] {
        assert_eq!(
            ctx["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{what}"
        );
        assert!(
            format!("{:?}", ctx["capabilities"]["drop"]).contains("ALL"),
            "{what}"
        );
    }
}

/// Runs the StatefulSet's entry script as pod `pod` with a stand-in for the
/// causeway binary that prints its arguments and metrics bind.
fn entry(dir: &Path, pod: &str, processes: &str) -> (Output, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("fake-causeway");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"$@\"\necho \"bind=$CAUSEWAY__METRICS__BIND\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hostfile = dir.join(format!("hosts-{pod}"));
    let out = Command::new("sh")
        .arg(deploy().join("k8s/causeway-cluster.sh"))
        .env("POD_NAME", pod)
        .env("POD_NAMESPACE", "obs")
        .env("CAUSEWAY_PROCESSES", processes)
        .env("CAUSEWAY_WORKERS", "2")
        .env("HEADLESS_SERVICE", "causeway-cluster")
        .env("HOSTFILE", &hostfile)
        .env("CAUSEWAY_BIN", format!("{}", fake.display()))
        .env_remove("CAUSEWAY__METRICS__BIND")
        .output()
        .unwrap();
    (out, hostfile)
}

#[test]
fn the_cluster_entry_script_derives_the_hostfile_from_the_ordinal() {
    let dir = temp_dir("entry");
    for (pod, ordinal) in [("causeway-0", 0usize), ("causeway-2", 2)] {
        let (out, hostfile) = entry(&dir, pod, "3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{pod}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: Vec<String> = (0..3)
            .map(|i| {
                if i == ordinal {
                    "0.0.0.0:2101".to_string()
                } else {
                    format!("causeway-{i}.causeway-cluster.obs.svc.cluster.local:2101")
                }
            })
            .collect();
        let got: Vec<String> = read(&hostfile).lines().map(String::from).collect();
        assert_eq!(got, want, "{pod}: hostfile");
        let mut lines = stdout.lines();
        assert_eq!(
            lines.next().unwrap(),
            format!(
                "run --config /etc/causeway/causeway.toml -w 2 -n 3 -p {ordinal} -h {}",
                hostfile.display()
            )
        );
        // causeway run serves on bind port + process index: every pod on 9464.
        assert_eq!(
            lines.next().unwrap(),
            format!("bind=0.0.0.0:{}", 9464 - ordinal)
        );
    }
    // A pod beyond CAUSEWAY_PROCESSES and a name without an ordinal are refused.
    for (pod, n) in [("causeway-3", "3"), ("causeway", "3")] {
        let (out, _) = entry(&dir, pod, n);
        assert_eq!(out.status.code(), Some(2), "{pod} with {n} processes");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_metrics_port_offset_is_what_causeway_run_applies() {
    // The entry script relies on `causeway run` serving process p's /metrics on
    // metrics.bind's port + p: process 1 of 2 with bind port P-1 must serve on P.
    // Its peer never comes up, so the cluster never forms; /metrics answers anyway.
    let dir = temp_dir("offset");
    let port = free_port();
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    let config = dir.join("c.toml");
    std::fs::write(
        &config,
        format!("[metrics]\nbind = \"127.0.0.1:{}\"\n", port - 1),
    )
    .unwrap();
    let mut child = Reaper(
        Command::new(causeway_binary())
            .args(["run", "--config"])
            .arg(&config)
            .args(["-n", "2", "-p", "1", "-h"])
            .arg(&hosts)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut body = String::new();
    while Instant::now() < deadline && body.is_empty() {
        body = http_get(&addr, "/healthz");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.0.kill();
    assert_eq!(body, "ok\n", "process 1 serves on bind port + 1");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let dir = temp_dir("systemd");
    for unit in ["causeway.service", "causeway-dispatch.service"] {
        // verify wants ExecStart's binary to exist: point it at the built one.
        let text = read(&deploy().join("systemd").join(unit)).replace(
            "/usr/local/bin/causeway",
            causeway_binary().to_str().unwrap(),
        );
        std::fs::write(dir.join(unit), text).unwrap();
        let out = tool("systemd-analyze", &["verify", unit], &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.trim().is_empty(),
            "systemd-analyze verify {unit} warns:\n{stderr}"
        );
        // Exposure (0 = locked down, 10 = unprotected) of at most 2.0.
        tool(
            "systemd-analyze",
            &["security", "--offline=true", "--threshold=20", unit],
            &dir,
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The metric names a PromQL expression selects (not functions, keywords,
/// labels, durations or Grafana variables).
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Operators, and aggregations (which may be followed by `by (...)`, not `(`).
    const KEYWORDS: [&str; 23] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "Inf",
        "NaN",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_string = |i: &mut usize| {
        let q = b[*i];
        *i += 1;
        while *i < b.len() && b[*i] != q {
            *i += if b[*i] == b'\\' { 2 } else { 1 };
        }
        *i += 1;
    };
    let skip_until = |i: &mut usize, close: u8| {
        while *i < b.len() && b[*i] != close {
            if matches!(b[*i], b'"' | b'\'' | b'`') {
                skip_string(i);
            } else {
                *i += 1;
            }
        }
        *i += 1;
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => skip_string(&mut i),
            b'{' => skip_until(&mut i, b'}'),
            b'[' => skip_until(&mut i, b']'),
            b'$' => {
                i += 1;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < b.len() && (ident(b[i]) || b[i] == b'.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && ident(b[i]) {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                let call = j < b.len() && b[j] == b'(';
                if GROUPING.contains(&word) {
                    if call {
                        i = j;
                        skip_until(&mut i, b')');
                    }
                } else if !call && !KEYWORDS.contains(&word) {
                    names.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every metric name the dashboard's panels and variables query.
fn dashboard_metrics(dash: &serde_json::Value) -> BTreeSet<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dash["panels"], &mut exprs);
    for var in dash["templating"]["list"].as_array().unwrap() {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(','))
            .map(|(sel, _)| sel)
            .unwrap_or_else(|| panic!("variable query {q:?}: use label_values(selector, label)"));
        exprs.push(inner.to_string());
    }
    assert!(exprs.len() > 20, "{} queries", exprs.len());
    exprs.iter().flat_map(|e| metric_names(e)).collect()
}

#[test]
fn metric_names_are_read_from_promql() {
    let got = metric_names(
        "histogram_quantile(0.99, sum by (service, le) (rate(a_bucket{service=~\"$service\",x=\"}\"}[$__rate_interval])))\n/ on (x) group_left (y) b_total offset 5m and c:rec:ratio > 0.5 or time() - d",
    );
    let want: BTreeSet<String> = ["a_bucket", "b_total", "c:rec:ratio", "d"]
        .map(String::from)
        .into();
    assert_eq!(got, want);
}

/// Sample names in a Prometheus text exposition (`x_bucket`, `x_sum`, ... included).
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(String::from)
        .collect()
}

/// Scrapes `addr` until it exposes every name in `want`, or `limit` passes.
fn scrape_until(addr: &str, want: &BTreeSet<String>, limit: Duration) -> BTreeSet<String> {
    let deadline = Instant::now() + limit;
    loop {
        let got = exposed(&http_get(addr, "/metrics"));
        if want.is_subset(&got) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn produce_garbage(brokers: &str, topic: &str) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    p.send(
        BaseRecord::<(), _>::to(topic)
            .partition(0)
            .payload(b"not an OTLP batch".as_slice()),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    p.flush(Duration::from_secs(10)).unwrap();
}

#[test]
fn the_dashboard_queries_only_metrics_causeway_exports() {
    let dash: serde_json::Value =
        serde_json::from_str(&read(&deploy().join("grafana/dashboards/causeway.json"))).unwrap();
    let names = dashboard_metrics(&dash);
    // The panels the dashboard exists for.
    for want in [
        "causeway_sli_events_total",
        "causeway_slo_burn_rate",
        "causeway_slo_error_budget_remaining_ratio",
        "traces_spanmetrics_calls_total",
        "traces_spanmetrics_latency_bucket",
        "traces_service_graph_request_total",
        "traces_service_graph_request_failed_total",
        "causeway_consumer_lag_messages",
        "causeway_watermark_lag_seconds",
        "causeway_input_rejected_total",
        "causeway_kafka_up",
        "causeway_dispatch_records_total",
    ] {
        assert!(names.contains(want), "the dashboard does not query {want}");
    }
    let (dispatch_names, run_names): (BTreeSet<String>, BTreeSet<String>) = names
        .iter()
        .cloned()
        .partition(|n| n.starts_with("causeway_dispatch_"));

    // `causeway run` with the compose stack's config, pointed at a local broker,
    // on the incident scenario (its SLOs fire), plus one undecodable message.
    let (_, input, _) = prepare("deploy-dashboard", "");
    let dir = input.parent().unwrap().to_path_buf();
    let tansu = Tansu::start();
    create_topics(&input, |t, n| create_topic(&tansu.brokers, t, n));
    produce_inputs(&tansu.brokers, &input);
    produce_garbage(&tansu.brokers, "otlp_spans");
    let json = causeway::sources::file::list_inputs(&input)
        .unwrap()
        .iter()
        .any(|(_, _, e)| *e == causeway_schemas::Encoding::OtlpJson);
    let otlp = if json { "otlp_json" } else { "otlp_proto" };
    let config = deploy().join("causeway.toml");
    let overrides = |c: &mut Command| {
        c.env("CAUSEWAY__KAFKA__BROKERS", &tansu.brokers)
            .env("CAUSEWAY__KAFKA__COMMIT_INTERVAL", "200ms")
            .env("CAUSEWAY__TIME__IDLE_TIMEOUT", "3s")
            .env("CAUSEWAY__KAFKA__ENCODINGS__SPANS", otlp)
            .env("CAUSEWAY__KAFKA__ENCODINGS__LOGS", otlp);
    };
    let run_port = free_port();
    let mut run = Command::new(causeway_binary());
    run.args(["run", "--config"])
        .arg(&config)
        .env("CAUSEWAY__METRICS__BIND", format!("127.0.0.1:{run_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("run.log")).unwrap());
    overrides(&mut run);
    let mut run = Reaper(run.spawn().unwrap());
    let got = scrape_until(
        &format!("127.0.0.1:{run_port}"),
        &run_names,
        Duration::from_secs(240),
    );
    let missing: Vec<&String> = run_names.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which causeway run does not export; it exports {got:?}\nrun log:\n{}",
        read(&dir.join("run.log"))
    );

    // `causeway dispatch` with the same config delivers the alerts run wrote.
    let receiver = Receiver::start(0);
    let dispatch_port = free_port();
    let mut dispatch = Command::new(causeway_binary());
    dispatch
        .args(["dispatch", "--config"])
        .arg(&config)
        .env(
            "CAUSEWAY__DISPATCH__ALERTMANAGER_URL",
            format!("http://{}", receiver.addr),
        )
        .env(
            "CAUSEWAY__DISPATCH__METRICS_BIND",
            format!("127.0.0.1:{dispatch_port}"),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("dispatch.log")).unwrap());
    overrides(&mut dispatch);
    let mut dispatch = Reaper(dispatch.spawn().unwrap());
    let got = scrape_until(
        &format!("127.0.0.1:{dispatch_port}"),
        &dispatch_names,
        Duration::from_secs(120),
    );
    let missing: Vec<&String> = dispatch_names.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, which causeway dispatch does not export; it exports {got:?}\ndispatch log:\n{}",
        read(&dir.join("dispatch.log"))
    );
    assert!(
        !receiver.to("/api/v2/alerts").is_empty(),
        "alerts reached the Alertmanager stand-in"
    );
    for p in [&mut dispatch, &mut run] {
        let status = terminate(&mut p.0, Duration::from_secs(60));
        assert!(status.success(), "exit after SIGTERM: {status}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
