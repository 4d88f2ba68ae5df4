//! The Grafana dashboard and the Prometheus alert rules in `deploy/` use only metric names that
//! cbtrail exports (`metrics::ALL_NAMES`), parse, and have the structure their tools expect.
//!
//! PromQL is read with a small tokenizer: identifiers that are not functions, keywords, label names
//! (inside `{…}` or after `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`), durations
//! (inside `[…]`), strings or Grafana `$variables` are metric names.

use cbtrail::metrics::{ALL_NAMES, FAMILIES, Kind};
use serde_json::Value;
use std::collections::BTreeSet;

const DASHBOARD: &str = include_str!("../deploy/grafana-dashboard.json");
const ALERTS: &str = include_str!("../deploy/prometheus-alerts.yml");

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
    // Aggregation operators: a modifier may stand between them and their parenthesis.
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
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names used in one PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    // Skip a bracketed span, honouring quoted strings inside it.
    let skip_span = |mut i: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        while i < chars.len() {
            match chars[i] {
                '"' | '\'' | '`' => i = skip_string(&chars, i),
                c if c == open => {
                    depth += 1;
                    i += 1;
                }
                c if c == close => {
                    depth -= 1;
                    i += 1;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => i += 1,
            }
        }
        panic!("unbalanced {open}{close} in {expr:?}");
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' => i = skip_span(i, '{', '}'),
            '[' => i = skip_span(i, '[', ']'),
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                // Numbers, including 1e9, 0x1f and durations outside brackets (offset 5m).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let followed_by_paren = chars.get(j) == Some(&'(');
                if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                    if followed_by_paren {
                        i = skip_span(j, '(', ')');
                    }
                } else if KEYWORDS.contains(&word.as_str()) || followed_by_paren {
                    // keyword or function name
                } else {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    panic!("unterminated string");
}

#[test]
fn tokenizer_finds_metric_names_only() {
    let got = metric_names(
        r#"histogram_quantile(0.99, sum by (instance, le) (rate(cbtrail_commit_duration_seconds_bucket{instance=~"$instance", x="a}b"}[$__rate_interval])))
           / on (instance) group_left(version) cbtrail_build_info offset 5m > bool 1e3
           and time() - cbtrail_last_event_timestamp_seconds > 900"#,
    );
    assert_eq!(
        got,
        [
            "cbtrail_commit_duration_seconds_bucket",
            "cbtrail_build_info",
            "cbtrail_last_event_timestamp_seconds"
        ]
    );
    assert_eq!(metric_names("up == 0"), ["up"]);
    assert_eq!(metric_names("sum without (reason) (x_total)"), ["x_total"]);
    assert_eq!(metric_names("max by (a) (y) + count(z)"), ["y", "z"]);
}

fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

fn check_names(source: &str, exprs: &[String]) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for e in exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "{source}: no metric in {e:?}");
        for n in names {
            assert!(
                ALL_NAMES.contains(&n.as_str()),
                "{source}: {n:?} in {e:?} is not exported (metrics::ALL_NAMES)"
            );
            used.insert(n);
        }
    }
    used
}

/// The family a series name belongs to (`x_bucket` → `x` for histograms).
fn family_of(series: &str) -> &'static str {
    FAMILIES
        .iter()
        .find(|f| {
            f.name == series
                || (f.kind == Kind::Histogram
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| series.strip_suffix(s) == Some(f.name)))
        })
        .map(|f| f.name)
        .unwrap_or_else(|| panic!("{series} has no family"))
}

#[test]
fn dashboard_parses_and_uses_only_exported_names() {
    let dash: Value = serde_json::from_str(DASHBOARD).expect("dashboard is JSON");
    assert_eq!(dash["uid"], "cbtrail");
    let panels = dash["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        assert!(p["title"].as_str().is_some_and(|t| !t.is_empty()));
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].as_u64().is_some(), "gridPos.{k} of {id}");
        }
        if p["type"] != "row" {
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "panel {id} has no query");
            for t in targets {
                assert!(t["refId"].as_str().is_some());
                assert_eq!(t["datasource"]["uid"], "${datasource}");
            }
        }
    }
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let mut used = check_names("dashboard", &exprs);

    // The instance picker's label_values(metric, label) query.
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(def) = var["definition"].as_str() {
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .expect("label_values(metric, label)");
            let metric = inner.split(',').next().unwrap().trim();
            assert!(ALL_NAMES.contains(&metric), "templating uses {metric}");
            used.insert(metric.to_owned());
        }
    }

    // Every family is on the dashboard somewhere.
    let shown: BTreeSet<&str> = used.iter().map(|s| family_of(s)).collect();
    for f in FAMILIES {
        assert!(shown.contains(f.name), "{} is not on the dashboard", f.name);
    }
    // Quantiles come from histogram buckets.
    assert!(exprs.iter().any(|e| e.contains(
        "histogram_quantile(0.99, sum by (le) (rate(cbtrail_commit_duration_seconds_bucket"
    )));
}

/// One rule of the alerts file, as read by [`read_rules`].
#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    has_for: bool,
    severity: String,
    summary: String,
    description: String,
}

/// A minimal reader for the subset of YAML a Prometheus rule file uses: nested maps by indentation,
/// `- ` list items, plain / quoted scalars and `|` block scalars. Checks the structure
/// `groups: - name: … rules: - alert: …` on the way.
fn read_rules(text: &str) -> Vec<Rule> {
    let lines: Vec<&str> = text.lines().collect();
    let mut rules: Vec<Rule> = Vec::new();
    let mut saw_groups = false;
    let mut saw_group_name = false;
    let mut saw_rules = false;
    let mut section = ""; // "labels" / "annotations" inside a rule
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        i += 1;
        assert!(!raw.contains('\t'), "tab in YAML: {raw:?}");
        let line = raw.trim_end();
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        let (is_item, body) = match content.strip_prefix("- ") {
            Some(b) => (true, b),
            None => (false, content),
        };
        let (key, value) = body
            .split_once(':')
            .unwrap_or_else(|| panic!("not a key: {raw:?}"));
        let key = key.trim();
        let mut value = value.trim().to_owned();
        if value == "|" || value == ">" {
            let mut block = Vec::new();
            while i < lines.len() {
                let l = lines[i];
                let c = l.trim_start();
                if !c.is_empty() && l.len() - c.len() <= indent + if is_item { 2 } else { 0 } {
                    break;
                }
                block.push(c.trim_end());
                i += 1;
            }
            value = block.join("\n").trim().to_owned();
            assert!(!value.is_empty(), "empty block for {key}");
        } else if let Some(q) = value.strip_prefix('"') {
            value = q
                .strip_suffix('"')
                .unwrap_or_else(|| panic!("unterminated string: {raw:?}"))
                .replace("\\\"", "\"");
        }
        match (indent, is_item, key) {
            (0, false, "groups") => saw_groups = true,
            (2, true, "name") => {
                assert!(saw_groups);
                saw_group_name = true;
            }
            (4, false, "rules") => {
                assert!(saw_group_name);
                saw_rules = true;
            }
            (6, true, "alert") => {
                assert!(saw_rules, "alert outside rules:");
                rules.push(Rule {
                    alert: value,
                    ..Rule::default()
                });
                section = "";
            }
            (8, false, k) => {
                let r = rules.last_mut().expect("rule key before any alert");
                section = "";
                match k {
                    "expr" => r.expr = value,
                    "for" => r.has_for = true,
                    "labels" | "annotations" => {
                        section = if k == "labels" {
                            "labels"
                        } else {
                            "annotations"
                        }
                    }
                    other => panic!("unknown rule key {other:?}"),
                }
            }
            (10, false, k) => {
                let r = rules.last_mut().expect("nested key before any alert");
                match (section, k) {
                    ("labels", "severity") => r.severity = value,
                    ("annotations", "summary") => r.summary = value,
                    ("annotations", "description") => r.description = value,
                    (s, k) => panic!("unexpected {s}.{k}"),
                }
            }
            other => panic!("unexpected YAML structure {other:?} at {raw:?}"),
        }
    }
    rules
}

#[test]
fn alerts_parse_and_use_only_exported_names() {
    let rules = read_rules(ALERTS);
    let names: BTreeSet<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    assert_eq!(names.len(), rules.len(), "duplicate alert names");
    for required in [
        "CbtrailBusSilent",
        "CbtrailDisconnected",
        "CbtrailQuarantineGrowing",
        "CbtrailCommitLatencyHigh",
        "CbtrailExportFailures",
        "CbtrailUnackedStuck",
    ] {
        assert!(names.contains(required), "missing alert {required}");
    }
    for r in &rules {
        assert!(r.alert.starts_with("Cbtrail"), "{}", r.alert);
        assert!(!r.expr.is_empty(), "{} has no expr", r.alert);
        assert!(
            ["warning", "critical"].contains(&r.severity.as_str()),
            "{}: severity {:?}",
            r.alert,
            r.severity
        );
        assert!(
            !r.summary.is_empty() && !r.description.is_empty(),
            "{}",
            r.alert
        );
        // State-based alerts wait before firing; counter-increase ones fire on the increase.
        if r.expr.contains("== 0") || r.expr.contains("time() -") {
            assert!(r.has_for, "{} should have a for:", r.alert);
        }
    }
    let exprs: Vec<String> = rules.iter().map(|r| r.expr.clone()).collect();
    check_names("alerts", &exprs);
}

#[test]
fn yaml_reader_rejects_bad_structure() {
    let bad = [
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        exprr: up\n",
        "groups:\n  - name: x\n    rules:\n      - alert: A\n\texpr: up\n",
        "rules:\n  - alert: A\n",
    ];
    for b in bad {
        assert!(
            std::panic::catch_unwind(|| read_rules(b)).is_err(),
            "accepted {b:?}"
        );
    }
    let ok = read_rules(
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: |\n          a\n            + b\n        labels:\n          severity: warning\n",
    );
    assert_eq!(ok[0].expr, "a\n+ b");
    assert_eq!(ok[0].severity, "warning");
}

/// Alert logic, not just names: `promtool test rules` runs `deploy/prometheus-alerts.test.yml`
/// (synthetic series in, expected alerts out). Needs promtool (Debian package `prometheus`); skipped
/// with a message when it is not installed.
#[test]
fn alert_rules_pass_promtool_unit_tests() {
    let Some(promtool) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    }) else {
        eprintln!("SKIPPED: promtool not found (apt-get install prometheus)");
        return;
    };
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    for args in [
        &["check", "rules", "prometheus-alerts.yml"][..],
        &["test", "rules", "prometheus-alerts.test.yml"][..],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&deploy)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
