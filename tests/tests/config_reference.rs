//! The README's configuration reference is checked against the config types,
//! so it cannot drift: every key the types accept is listed, every listed key
//! exists, and every listed default is the one the types apply.

use std::collections::BTreeMap;
use std::path::Path;

use causeway::config::Config;
use serde_json::Value;

/// A key's default as the types apply it; `None` when the key is required.
type Defaults = BTreeMap<String, Option<Value>>;

/// Flattens `v` into dotted keys under `prefix`. An empty table (a map of
/// free-form settings, like `kafka.librdkafka`) is a key of its own.
fn flatten(prefix: &str, v: &Value, out: &mut Defaults) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), Some(v.clone()));
        }
    }
}

/// Every key the config types accept, with its default.
fn type_keys() -> Defaults {
    let mut out = Defaults::new();
    let mut top = serde_json::to_value(Config::default()).unwrap();
    let top = top.as_object_mut().unwrap();
    // Arrays of tables: their keys come from an element with only the required
    // keys set, so the rest show their defaults.
    top.remove("slo");
    top["alerting"]
        .as_object_mut()
        .unwrap()
        .remove("maintenance");
    flatten("", &Value::Object(top.clone()), &mut out);
    let minimal = Config::from_toml(
        "[[slo]]\nname = \"n\"\nservice = \"s\"\nsli = \"availability\"\nobjective = 0.5\n\
         [[slo.policy]]\nseverity = \"page\"\nlong = \"1h\"\nshort = \"5m\"\nfactor = 1.0\n\
         [[alerting.maintenance]]\nstart = \"2026-01-01T00:00:00Z\"\nend = \"2026-01-02T00:00:00Z\"\n",
        std::iter::empty(),
    )
    .unwrap();
    let mut slo = serde_json::to_value(&minimal.slo[0]).unwrap();
    let policy = slo.as_object_mut().unwrap().remove("policy").unwrap();
    flatten("slo", &slo, &mut out);
    flatten("slo.policy", &policy[0], &mut out);
    let maintenance = serde_json::to_value(&minimal.alerting.maintenance[0]).unwrap();
    flatten("alerting.maintenance", &maintenance, &mut out);
    for required in [
        "slo.name",
        "slo.service",
        "slo.sli",
        "slo.objective",
        "slo.policy.severity",
        "slo.policy.long",
        "slo.policy.short",
        "slo.policy.factor",
        "alerting.maintenance.start",
        "alerting.maintenance.end",
    ] {
        assert!(out.contains_key(required), "{required}");
        out.insert(required.to_string(), None);
    }
    // `policy` itself defaults to the SRE-workbook rows.
    out.insert("slo.policy".into(), Some(Value::String("workbook".into())));
    out
}

/// The rows of the README's "Configuration reference" table: key → default
/// cell (`required`, `none`, or a TOML value in backticks).
fn readme_rows() -> BTreeMap<String, String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme
        .split("\n## Configuration reference\n")
        .nth(1)
        .expect("README has a Configuration reference section");
    let section = section.split("\n## ").next().unwrap();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let key = cells[0].trim_start_matches("| `").trim_end_matches('`');
        let default = cells.get(1).copied().unwrap_or("").trim();
        assert!(
            rows.insert(key.to_string(), default.to_string()).is_none(),
            "{key} is listed twice"
        );
    }
    rows
}

/// A default cell as JSON: `none` is null, a backticked TOML value is itself.
fn cell_value(cell: &str) -> Option<Value> {
    match cell {
        "required" => None,
        "none" => Some(Value::Null),
        "the workbook policy" => Some(Value::String("workbook".into())),
        c => {
            let literal = c
                .strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .unwrap_or_else(|| panic!("default {c:?} is not `value`, none or required"));
            let t: toml::Table = toml::from_str(&format!("v = {literal}"))
                .unwrap_or_else(|e| panic!("default {literal:?} is not a TOML value: {e}"));
            Some(serde_json::to_value(&t["v"]).unwrap())
        }
    }
}

#[test]
fn the_readme_lists_every_config_key_with_its_default() {
    let types = type_keys();
    if std::env::var_os("CAUSEWAY_PRINT_CONFIG_KEYS").is_some() {
        for (k, v) in &types {
            println!(
                "{k}\t{}",
                v.as_ref().map_or("required".into(), |v| v.to_string())
            );
        }
    }
    let readme = readme_rows();
    let missing: Vec<&String> = types.keys().filter(|k| !readme.contains_key(*k)).collect();
    let unknown: Vec<&String> = readme.keys().filter(|k| !types.contains_key(*k)).collect();
    assert!(missing.is_empty(), "README lacks config keys: {missing:?}");
    assert!(
        unknown.is_empty(),
        "README lists keys the config does not have: {unknown:?}"
    );
    for (key, cell) in &readme {
        let want = &types[key];
        let got = cell_value(cell);
        // Numbers compare by value (1 and 1.0 are one default).
        let same = match (&got, want) {
            (Some(Value::Number(a)), Some(Value::Number(b))) => a.as_f64() == b.as_f64(),
            _ => &got == want,
        };
        assert!(
            same,
            "README gives {key} the default {cell}, the types {want:?}"
        );
    }
}

#[test]
fn every_listed_default_is_accepted_by_the_parser() {
    // Setting each key to its listed default is a valid config (the parser
    // rejects unknown keys, so a misspelt key fails here too).
    for (key, cell) in readme_rows() {
        if !matches!(cell_value(&cell), Some(v) if !v.is_null()) {
            continue;
        }
        let (table, field) = key.rsplit_once('.').unwrap();
        if matches!(table, "slo" | "slo.policy" | "alerting.maintenance") {
            continue;
        }
        let literal = cell.trim_matches('`');
        Config::from_toml(
            &format!("[{table}]\n{field} = {literal}\n"),
            std::iter::empty(),
        )
        .unwrap_or_else(|e| panic!("{key} = {literal}: {e}"));
    }
}
