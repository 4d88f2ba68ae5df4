//! JSON notifications from `api.events` (watchlist, feed, alert, binaryinfo, binarystore,
//! storage partition, task error …) → one [`Notification`].
//!
//! The body is parsed once and kept verbatim in `json`; the typed fields are extracted tolerantly,
//! because real notifications carry numbers as strings (`"sensor_id": "9"`), dates as text, and
//! fields that are a list in one message and a string in the next (`observed_filename`, `endpoint`).

use serde_json::{Map, Value};

use super::guid::{filetime_to_start_ms, guid_create_time, guid_sensor_id, split_guid};
use crate::model::{
    DeliveryMeta, FactRank, Notification, NotificationTarget, ProcessFacts, QuarantineReason,
    Quarantined, Record, record_key,
};

/// Decode one notification; anything that is not a JSON object is quarantined as `BadJson`.
pub(crate) fn decode_notification(meta: &DeliveryMeta, body: &[u8]) -> Record {
    let bad = |error: String| {
        Record::Quarantined(Box::new(Quarantined::new(
            meta,
            QuarantineReason::BadJson,
            error,
            body.to_vec(),
        )))
    };
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => return bad(format!("notification body is not UTF-8: {e}")),
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return bad(format!("notification body is not valid JSON: {e}")),
    };
    let Value::Object(obj) = value else {
        return bad(format!(
            "notification body is a JSON {}, not an object",
            json_type(&value)
        ));
    };
    Record::Notification(Box::new(notification(meta, body, text, &obj)))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn notification(
    meta: &DeliveryMeta,
    body: &[u8],
    text: &str,
    obj: &Map<String, Value>,
) -> Notification {
    // A capture replayed without its routing key still says what it is in `type`.
    let source_key = if meta.routing_key.is_empty() {
        get_text(obj, "type").unwrap_or_default()
    } else {
        meta.routing_key.clone()
    };
    let (kind, embedded_id) = normalize_kind(&source_key);
    let alert = kind.starts_with("alert.");

    let watchlist_id = get_int(obj, "watchlist_id")
        .or_else(|| embedded_id.filter(|_| kind.starts_with("watchlist.")));
    let feed_id =
        get_int(obj, "feed_id").or_else(|| embedded_id.filter(|_| kind.starts_with("feed.")));
    let timestamp_ms = obj
        .get("event_timestamp")
        .and_then(time_ms)
        .or_else(|| obj.get("timestamp").and_then(time_ms));

    let docs: Vec<&Map<String, Value>> = match obj.get("docs") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    };
    let process_kind = kind.ends_with(".process");
    let mut targets = Vec::with_capacity(docs.len().max(1));
    let mut processes = Vec::new();
    if docs.is_empty() {
        add_target(obj, None, alert, process_kind, &mut targets, &mut processes);
    } else {
        for doc in docs {
            add_target(
                doc,
                Some(obj),
                alert,
                process_kind,
                &mut targets,
                &mut processes,
            );
        }
    }
    let first = targets.first().cloned().unwrap_or_default();

    Notification {
        key: record_key(&[b"notification", meta.routing_key.as_bytes(), body]),
        routing_key: meta.routing_key.clone(),
        kind,
        watchlist_id,
        watchlist_name: get_text(obj, "watchlist_name"),
        feed_id,
        feed_name: get_text(obj, "feed_name"),
        timestamp_ms,
        process_guid: first.process_guid,
        segment: first.segment,
        sensor_id: first.sensor_id,
        hostname: first.hostname,
        md5: first.md5,
        targets,
        json: text.to_owned(),
        processes,
    }
}

/// Routing key → notification kind with the embedded watchlist/feed id removed
/// (`feed.24.ingress.hit.process` → `feed.ingress.hit.process`), plus that id.
pub fn normalize_kind(routing_key: &str) -> (String, Option<i64>) {
    let mut parts = routing_key.splitn(3, '.');
    if let (Some(family @ ("feed" | "watchlist")), Some(id)) = (parts.next(), parts.next())
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
    {
        let kind = match parts.next() {
            Some(rest) => format!("{family}.{rest}"),
            None => family.to_owned(),
        };
        return (kind, id.parse().ok());
    }
    (routing_key.to_owned(), None)
}

/// Fields are looked up in the doc first, then at the top level of the notification.
struct Sources<'a> {
    doc: &'a Map<String, Value>,
    top: Option<&'a Map<String, Value>>,
}

impl<'a> Sources<'a> {
    fn each(&self) -> impl Iterator<Item = &'a Map<String, Value>> {
        std::iter::once(self.doc).chain(self.top)
    }
    fn text(&self, keys: &[&str]) -> Option<String> {
        self.each()
            .find_map(|m| keys.iter().find_map(|k| get_text(m, k)))
    }
    fn int(&self, key: &str) -> Option<i64> {
        self.each().find_map(|m| get_int(m, key))
    }
}

fn add_target(
    doc: &Map<String, Value>,
    top: Option<&Map<String, Value>>,
    alert: bool,
    process_kind: bool,
    targets: &mut Vec<NotificationTarget>,
    processes: &mut Vec<ProcessFacts>,
) {
    let src = Sources { doc, top };
    // In alerts `unique_id` is the alert's own id (itself GUID-shaped), not the process.
    let guid_keys: &[&str] = if alert {
        &["process_id", "process_guid"]
    } else {
        &["unique_id", "process_id", "process_guid"]
    };
    let split = src.each().find_map(|m| {
        guid_keys.iter().find_map(|k| {
            let s = m.get(*k)?.as_str()?;
            let (g, seg) = split_guid(s)?;
            Some((g.to_ascii_lowercase(), seg.map(str::to_ascii_lowercase)))
        })
    });
    let (process_guid, segment) = match split {
        Some((g, seg)) => (Some(g), seg),
        None => (None, None),
    };
    let segment = segment.or_else(|| {
        process_guid.as_ref()?;
        src.int("segment_id").map(|s| format!("{s:08x}"))
    });
    let endpoint = src.each().find_map(|m| get_text(m, "endpoint"));
    let (endpoint_host, endpoint_sensor) =
        match endpoint.as_deref().and_then(|e| e.rsplit_once('|')) {
            Some((h, s)) => (
                Some(h.to_owned()).filter(|h| !h.is_empty()),
                s.trim().parse::<i64>().ok(),
            ),
            None => (None, None),
        };
    let sensor_id = get_int(doc, "sensor_id")
        .or_else(|| process_guid.as_deref().and_then(guid_sensor_id))
        .or_else(|| top.and_then(|t| get_int(t, "sensor_id")))
        .or(endpoint_sensor);
    let hostname = src.text(&["hostname", "computer_name"]).or(endpoint_host);
    let md5 = src
        .text(&["process_md5", "md5"])
        .map(|m| m.trim().to_ascii_uppercase());

    if process_kind && let Some(guid) = &process_guid {
        let parent = src
            .each()
            .find_map(|m| split_guid(m.get("parent_unique_id")?.as_str()?))
            .map(|(g, _)| g.to_ascii_lowercase());
        processes.push(ProcessFacts {
            guid: guid.clone(),
            rank: Some(FactRank::Observed),
            parent_guid: parent.clone(),
            sensor_id,
            hostname: hostname.clone(),
            pid: src.int("process_pid"),
            path: src.text(&["path", "process_path"]),
            cmdline: src.text(&["cmdline"]),
            md5: md5.clone(),
            username: src.text(&["username"]),
            start_ms: filetime_to_start_ms(guid_create_time(guid)),
            ..ProcessFacts::default()
        });
        if let Some(pg) = parent {
            processes.push(ProcessFacts {
                start_ms: filetime_to_start_ms(guid_create_time(&pg)),
                sensor_id: guid_sensor_id(&pg).or(sensor_id),
                guid: pg,
                rank: Some(FactRank::ParentReference),
                hostname: hostname.clone(),
                pid: src.int("parent_pid"),
                ..ProcessFacts::default()
            });
        }
    }

    targets.push(NotificationTarget {
        process_guid,
        segment,
        sensor_id,
        hostname,
        md5,
    });
}

// ---------------------------------------------------------------------------------------------
// Tolerant field readers

/// A string field, or the first string of a list-valued one; empty strings count as absent.
fn get_text(m: &Map<String, Value>, key: &str) -> Option<String> {
    let s = match m.get(key)? {
        Value::String(s) => s.as_str(),
        Value::Array(a) => a.iter().find_map(Value::as_str)?,
        _ => return None,
    };
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// An integer given as a number (integral float accepted) or a decimal string.
fn get_int(m: &Map<String, Value>, key: &str) -> Option<i64> {
    value_int(m.get(key)?)
}

fn value_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

/// Event time → Unix ms: float/integer seconds, the same as a string, or an ISO-8601 text date.
fn time_ms(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            match s.parse::<f64>() {
                Ok(f) => Some(f),
                Err(_) => return iso8601_ms(s),
            }
        }
        _ => None,
    }?;
    secs.is_finite().then(|| (secs * 1000.0).round() as i64)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fff…][Z|±HH:MM|±HHMM]` → Unix ms (no zone = UTC, as the server writes).
pub(crate) fn iso8601_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &s[i + 1..];
            let (oh, om) = match rest.len() {
                5 if rest.as_bytes()[2] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                4 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                2 => (num(i + 1..i + 3)?, 0),
                _ => return None,
            };
            let o = oh * 60 + om;
            if sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3_600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            normalize_kind("feed.24.ingress.hit.process"),
            ("feed.ingress.hit.process".to_owned(), Some(24))
        );
        assert_eq!(
            normalize_kind("watchlist.12.storage.hit.process"),
            ("watchlist.storage.hit.process".to_owned(), Some(12))
        );
        assert_eq!(
            normalize_kind("watchlist.12.hit.process"),
            ("watchlist.hit.process".to_owned(), Some(12))
        );
        assert_eq!(
            normalize_kind("watchlist.hit.process"),
            ("watchlist.hit.process".to_owned(), None)
        );
        assert_eq!(normalize_kind("feed.7"), ("feed".to_owned(), Some(7)));
        assert_eq!(
            normalize_kind("alert.watchlist.hit.query.binary"),
            ("alert.watchlist.hit.query.binary".to_owned(), None)
        );
        assert_eq!(normalize_kind(""), (String::new(), None));
    }

    #[test]
    fn times() {
        assert_eq!(
            time_ms(&serde_json::json!(1447697423.671)),
            Some(1447697423671)
        );
        assert_eq!(time_ms(&serde_json::json!(1447697423)), Some(1447697423000));
        assert_eq!(
            time_ms(&serde_json::json!("1447697423.5")),
            Some(1447697423500)
        );
        assert_eq!(
            time_ms(&serde_json::json!("2015-11-16T18:19:17.841Z")),
            Some(1447697957841)
        );
        assert_eq!(iso8601_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(iso8601_ms("1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(
            iso8601_ms("2016-07-19T16:29:58.891353Z"),
            Some(1468945798891)
        );
        assert_eq!(iso8601_ms("2000-02-29T00:00:00"), Some(951782400000));
        assert_eq!(iso8601_ms("Aug 9, 2014 5:27:56 PM"), None);
        assert_eq!(iso8601_ms("2015-11-16T18:19:17é"), None);
        assert_eq!(time_ms(&serde_json::json!(null)), None);
        assert_eq!(time_ms(&serde_json::json!("NaN")), None);
    }

    #[test]
    fn ints() {
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"a":"9","b":7,"c":"x","d":3.0,"e":" 12 ","f":"-1","g":1.5,"h":[1]}"#,
        )
        .unwrap();
        assert_eq!(get_int(&m, "a"), Some(9));
        assert_eq!(get_int(&m, "b"), Some(7));
        assert_eq!(get_int(&m, "c"), None);
        assert_eq!(get_int(&m, "d"), Some(3));
        assert_eq!(get_int(&m, "e"), Some(12));
        assert_eq!(get_int(&m, "f"), Some(-1));
        assert_eq!(get_int(&m, "g"), None);
        assert_eq!(get_int(&m, "h"), None);
        assert_eq!(get_int(&m, "zz"), None);
    }

    #[test]
    fn texts() {
        let m: Map<String, Value> =
            serde_json::from_str(r#"{"a":["x","y"],"b":"z","c":"","d":3,"e":[]}"#).unwrap();
        assert_eq!(get_text(&m, "a").as_deref(), Some("x"));
        assert_eq!(get_text(&m, "b").as_deref(), Some("z"));
        assert_eq!(get_text(&m, "c"), None);
        assert_eq!(get_text(&m, "d"), None);
        assert_eq!(get_text(&m, "e"), None);
    }
}
