//! The `summary` column: which attributes of each event type to show, and how to render them.
//!
//! The spec is the CBC Process Event Exporter's `summary.json`, extended where that tool was
//! ambiguous or silent:
//!
//! ```json
//! {
//!   "types": { "netconn": ["direction", "protocol", "remote_ip", "remote_port", "domain"], "*": ["action", "path"] },
//!   "transforms": { "requested_access": "hex" }
//! }
//! ```
//!
//! - `types` maps an `event_type` to the attributes shown, in order; `"*"` applies to types not
//!   listed. An attribute is an `events` column (`path`, `action`, `remote_ip`, `command_line`, …)
//!   or a key of the event's `details` object; `a.b` reaches into nested objects. Attributes the
//!   event lacks are left out (everything is in the `details` column anyway).
//! - `transforms` maps an attribute name to a transform: `int2ip` (signed or unsigned 32-bit
//!   integer, big-endian, to a dotted quad, as CB's JSON IPs), `ms2iso`, `s2iso`, `filetime2iso`
//!   (timestamps to ISO-8601 UTC), `hex`, `basename`, `lower`, `upper`. A value the transform
//!   does not apply to (a string given to `int2ip`) is shown unchanged.
//! - The rendering is `name=value` pairs separated by one space. A value that is empty or holds
//!   whitespace, a double quote or a control character is wrapped in double quotes, inner quotes
//!   doubled (as in CSV); nothing else is escaped, so Windows paths read as they are. A summary
//!   therefore always splits back into the same pairs: a pair ends at the first space outside
//!   quotes, and its name at the first `=` (the CBC tool's ` key: value` text is ambiguous when
//!   values hold spaces).
//!
//! Unknown top-level keys, unknown transforms and wrong shapes are refused when the spec is
//! loaded, with the reason, rather than discovered event by event.

use super::{EventRow, ExportError, iso8601_ms};
use crate::tree::{basename, filetime_to_ms};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The default spec, also shipped as `deploy/summary.json`.
pub const DEFAULT_SPEC: &str = include_str!("../../deploy/summary.json");

/// A named value rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    Int2Ip,
    Ms2Iso,
    S2Iso,
    Filetime2Iso,
    Hex,
    Basename,
    Lower,
    Upper,
}

impl Transform {
    /// Every transform with its spec name.
    pub const ALL: [(&'static str, Transform); 8] = [
        ("int2ip", Transform::Int2Ip),
        ("ms2iso", Transform::Ms2Iso),
        ("s2iso", Transform::S2Iso),
        ("filetime2iso", Transform::Filetime2Iso),
        ("hex", Transform::Hex),
        ("basename", Transform::Basename),
        ("lower", Transform::Lower),
        ("upper", Transform::Upper),
    ];

    /// Look a transform up by its spec name.
    pub fn parse(name: &str) -> Option<Transform> {
        Transform::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }

    /// Render `v` (already text or a JSON scalar). Values the transform does not fit stay as they
    /// are.
    pub fn apply(self, v: &Value) -> String {
        let int = || match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        let float = || match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        let out = match self {
            Transform::Int2Ip => int()
                .filter(|i| (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(i))
                .map(|i| {
                    let b = (i as u32).to_be_bytes();
                    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
                }),
            Transform::Ms2Iso => int().map(iso8601_ms),
            Transform::S2Iso => float()
                .filter(|f| f.is_finite() && f.abs() < 1e14)
                .map(|f| iso8601_ms((f * 1000.0).round() as i64)),
            Transform::Filetime2Iso => int().map(|ft| iso8601_ms(filetime_to_ms(ft))),
            Transform::Hex => int().map(|i| format!("0x{i:x}")),
            Transform::Basename => v.as_str().map(|s| basename(s).to_string()),
            Transform::Lower => v.as_str().map(str::to_lowercase),
            Transform::Upper => v.as_str().map(str::to_uppercase),
        };
        out.unwrap_or_else(|| scalar_text(v))
    }
}

/// Text of a JSON value as shown in a summary: strings bare, everything else as JSON.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    types: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    transforms: BTreeMap<String, String>,
}

/// A loaded, validated summary spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SummarySpec {
    types: BTreeMap<String, Vec<String>>,
    transforms: BTreeMap<String, Transform>,
}

impl Default for SummarySpec {
    /// The shipped default (`deploy/summary.json`).
    fn default() -> SummarySpec {
        // The default is compiled in and checked by a unit test; failing here would be a build
        // defect, not bad input, so fall back to an empty spec rather than panic.
        SummarySpec::from_json(DEFAULT_SPEC).unwrap_or(SummarySpec {
            types: BTreeMap::new(),
            transforms: BTreeMap::new(),
        })
    }
}

impl SummarySpec {
    /// Parse and validate a spec.
    pub fn from_json(text: &str) -> Result<SummarySpec, ExportError> {
        let raw: RawSpec = serde_json::from_str(text)
            .map_err(|e| ExportError::Spec(format!("not a valid summary spec: {e}")))?;
        let mut transforms = BTreeMap::new();
        for (attr, name) in raw.transforms {
            let t = Transform::parse(&name).ok_or_else(|| {
                let known: Vec<&str> = Transform::ALL.iter().map(|(n, _)| *n).collect();
                ExportError::Spec(format!(
                    "unknown transform {name:?} for {attr:?}; known: {}",
                    known.join(", ")
                ))
            })?;
            transforms.insert(attr, t);
        }
        for (ty, attrs) in &raw.types {
            if let Some(bad) = attrs.iter().find(|a| a.trim().is_empty()) {
                return Err(ExportError::Spec(format!(
                    "event type {ty:?} lists an empty attribute name {bad:?}"
                )));
            }
        }
        Ok(SummarySpec {
            types: raw.types,
            transforms,
        })
    }

    /// Load a spec file.
    pub fn load(path: &Path) -> Result<SummarySpec, ExportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ExportError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        SummarySpec::from_json(&text)
            .map_err(|e| ExportError::Spec(format!("{}: {e}", path.display())))
    }

    /// Load `path` if given, else the default.
    pub fn load_or_default(path: Option<&Path>) -> Result<SummarySpec, ExportError> {
        match path {
            Some(p) => SummarySpec::load(p),
            None => Ok(SummarySpec::default()),
        }
    }

    /// The attributes shown for `event_type`.
    pub fn attributes(&self, event_type: &str) -> &[String] {
        self.types
            .get(event_type)
            .or_else(|| self.types.get("*"))
            .map_or(&[], Vec::as_slice)
    }

    /// The summary text of one event.
    pub fn summarize(&self, event: &EventRow) -> String {
        let details = event.parsed_details();
        let mut out = String::new();
        for attr in self.attributes(&event.event_type) {
            let Some(v) = event.attribute(attr, &details) else {
                continue;
            };
            let text = match self.transforms.get(attr) {
                Some(t) => t.apply(&v),
                None => scalar_text(&v),
            };
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(attr);
            out.push('=');
            push_value(&mut out, &text);
        }
        out
    }
}

/// Append `v`, quoted when a reader could otherwise mis-split it.
fn push_value(out: &mut String, v: &str) {
    let plain = !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"');
    if plain {
        out.push_str(v);
        return;
    }
    out.push('"');
    out.push_str(&v.replace('"', "\"\""));
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netconn() -> EventRow {
        EventRow {
            event_type: "netconn".into(),
            direction: Some("outbound".into()),
            remote_ip: Some("10.0.0.1".into()),
            remote_port: Some(443),
            domain: Some("a b.example".into()),
            details: r#"{"ipv4": 169153902, "nested": {"k": "v"}, "access": 2097151}"#.into(),
            ..EventRow::default()
        }
    }

    #[test]
    fn default_spec_parses_and_covers_the_main_types() {
        let spec = SummarySpec::from_json(DEFAULT_SPEC).unwrap();
        assert_eq!(spec, SummarySpec::default());
        for t in [
            "procstart",
            "childproc",
            "filemod",
            "regmod",
            "modload",
            "netconn",
        ] {
            assert!(!spec.attributes(t).is_empty(), "{t}");
        }
    }

    #[test]
    fn summary_pairs_are_unambiguous() {
        let spec = SummarySpec::from_json(
            r#"{"types": {"netconn": ["direction", "remote_ip", "remote_port", "domain", "ipv4", "nested.k", "missing", "access"]},
                "transforms": {"ipv4": "int2ip", "access": "hex"}}"#,
        )
        .unwrap();
        assert_eq!(
            spec.summarize(&netconn()),
            r#"direction=outbound remote_ip=10.0.0.1 remote_port=443 domain="a b.example" ipv4=10.21.21.110 nested.k=v access=0x1fffff"#
        );
    }

    #[test]
    fn transforms_follow_the_cb_conventions() {
        // docs/cb-bus.md §4: JSON IPs are signed big-endian int32.
        assert_eq!(
            Transform::Int2Ip.apply(&Value::from(-1407246848)),
            "172.31.30.0"
        );
        assert_eq!(
            Transform::Int2Ip.apply(&Value::from(917477092)),
            "54.175.150.228"
        );
        assert_eq!(Transform::Int2Ip.apply(&Value::from("1.2.3.4")), "1.2.3.4");
        assert_eq!(
            Transform::Filetime2Iso.apply(&Value::from(130921710236713495i64)),
            "2015-11-16T18:10:23.671Z"
        );
        assert_eq!(
            Transform::S2Iso.apply(&Value::from(1447698003.24)),
            "2015-11-16T18:20:03.240Z"
        );
        assert_eq!(
            Transform::Basename.apply(&Value::from("c:\\a\\B.exe")),
            "B.exe"
        );
    }

    #[test]
    fn bad_specs_are_refused_with_a_reason() {
        for (text, needle) in [
            (
                r#"{"types": {}, "transforms": {"x": "nope"}}"#,
                "unknown transform",
            ),
            (r#"{"typos": {}}"#, "unknown field"),
            (r#"{"types": {"netconn": "remote_ip"}}"#, "not a valid"),
            (r#"{"types": {"netconn": [""]}}"#, "empty attribute"),
        ] {
            let e = SummarySpec::from_json(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn quoting_escapes_what_would_split() {
        let mut s = String::new();
        push_value(&mut s, "a\"b\\c\nd");
        assert_eq!(s, "\"a\"\"b\\c\nd\"");
        let mut s = String::new();
        push_value(&mut s, "c:\\new\\x=y.txt");
        assert_eq!(s, "c:\\new\\x=y.txt", "backslashes and '=' need no quoting");
        let mut s = String::new();
        push_value(&mut s, "");
        assert_eq!(s, r#""""#);
    }

    /// A reader of the documented format: pairs end at the first space outside quotes, names at
    /// the first `=`, quoted values have their quotes doubled.
    fn split_pairs(s: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            let eq = rest.find('=').unwrap();
            let name = rest[..eq].to_string();
            rest = &rest[eq + 1..];
            let mut value = String::new();
            if let Some(q) = rest.strip_prefix('"') {
                let mut chars = q.char_indices().peekable();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    if c == '"' {
                        if chars.peek().map(|p| p.1) == Some('"') {
                            chars.next();
                            value.push('"');
                        } else {
                            end = i + 1;
                            break;
                        }
                    } else {
                        value.push(c);
                    }
                }
                rest = &q[end..];
            } else {
                let end = rest.find(' ').unwrap_or(rest.len());
                value.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            rest = rest.strip_prefix(' ').unwrap_or(rest);
            out.push((name, value));
        }
        out
    }

    #[test]
    fn summaries_split_back_into_their_pairs() {
        let values = [
            "plain",
            "",
            " ",
            "a b",
            "\"",
            "\"\"",
            "x=y",
            "c:\\new folder\\a.txt",
            "tab\there",
            "line\nbreak",
            "end\"",
            "\" start",
            "ünïcode ✓",
        ];
        let spec = SummarySpec::from_json(r#"{"types": {"x": ["a", "b", "c"]}}"#).unwrap();
        for a in values {
            for b in values {
                let e = EventRow {
                    event_type: "x".into(),
                    details: serde_json::json!({"a": a, "b": b, "c": "z"}).to_string(),
                    ..EventRow::default()
                };
                let got = split_pairs(&spec.summarize(&e));
                let want: Vec<(String, String)> = [("a", a), ("b", b), ("c", "z")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                assert_eq!(got, want, "{a:?} {b:?}");
            }
        }
    }
}
