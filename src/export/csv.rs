//! Per-process event CSV (RFC 4180: comma separated, CRLF line ends, fields holding a comma, quote,
//! CR or LF double-quoted with quotes doubled), UTF-8.
//!
//! Columns, the CBC Process Event Exporter's five plus the GUID it lacked:
//!
//! | column | content |
//! |---|---|
//! | `event_timestamp` | event time, ISO-8601 UTC with milliseconds (`2015-11-16T18:14:28.819Z`); empty when the sensor sent none |
//! | `event_type` | `procstart`, `childproc`, `filemod`, `regmod`, `modload`, `netconn`, `crossproc`, … |
//! | `event_description` | one readable sentence (`Last wrote c:\x.dll md5=…`, `Outbound tcp 10.0.0.5:49352 -> 23.4.187.27:80 (example.com)`) |
//! | `summary` | the attributes chosen by the summary spec, `name=value` (see [`super::summary`]) |
//! | `details` | the whole stored event as one JSON object: its typed columns (not the row id) plus `details` |
//! | `process_guid` | the acting process |
//!
//! Rows are oldest first (ties in database order), every event of the process, no cap.

use super::EventRow;
use super::summary::SummarySpec;
use std::io::{self, Write};

/// The header line's fields.
pub const COLUMNS: [&str; 6] = [
    "event_timestamp",
    "event_type",
    "event_description",
    "summary",
    "details",
    "process_guid",
];

/// Write one RFC 4180 record.
pub fn write_record<W: Write + ?Sized>(w: &mut W, fields: &[&str]) -> io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        if f.contains([',', '"', '\r', '\n']) {
            w.write_all(b"\"")?;
            w.write_all(f.replace('"', "\"\"").as_bytes())?;
            w.write_all(b"\"")?;
        } else {
            w.write_all(f.as_bytes())?;
        }
    }
    w.write_all(b"\r\n")
}

/// Write the header.
pub fn write_header<W: Write + ?Sized>(w: &mut W) -> io::Result<()> {
    write_record(w, &COLUMNS)
}

/// Write one event row.
pub fn write_event<W: Write + ?Sized>(
    w: &mut W,
    e: &EventRow,
    spec: &SummarySpec,
) -> io::Result<()> {
    let ts = if e.timestamp_ms == 0 {
        String::new()
    } else {
        super::iso8601_ms(e.timestamp_ms)
    };
    let description = describe(e);
    let summary = spec.summarize(e);
    let details = e.to_json().to_string();
    write_record(
        w,
        &[
            &ts,
            &e.event_type,
            &description,
            &summary,
            &details,
            e.process_guid.as_deref().unwrap_or(""),
        ],
    )
}

fn filemod_verb(action: &str) -> &str {
    match action {
        "create" => "Created",
        "write" => "First wrote",
        "delete" => "Deleted",
        "lastwrite" => "Last wrote",
        "open" => "Opened",
        other => other,
    }
}

fn regmod_verb(action: &str) -> &str {
    match action {
        "createkey" => "Created key",
        "writeval" => "Wrote value",
        "delkey" => "Deleted key",
        "delval" => "Deleted value",
        other => other,
    }
}

fn endpoint(ip: Option<&str>, port: Option<i64>) -> String {
    match (ip, port) {
        (Some(ip), Some(p)) if ip.contains(':') => format!("[{ip}]:{p}"),
        (Some(ip), Some(p)) => format!("{ip}:{p}"),
        (Some(ip), None) => ip.to_string(),
        (None, Some(p)) => format!("?:{p}"),
        (None, None) => "?".to_string(),
    }
}

/// One readable sentence for an event, from its typed columns.
pub fn describe(e: &EventRow) -> String {
    fn s(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|x| !x.is_empty())
    }
    let path = s(&e.path).unwrap_or("");
    let action = s(&e.action).unwrap_or("");
    let mut out = match e.event_type.as_str() {
        "procstart" => format!(
            "Process started: {}",
            s(&e.command_line).or(s(&e.process_path)).unwrap_or(path)
        ),
        "procend" => format!(
            "Process ended: {}",
            s(&e.process_path).or(s(&e.path)).unwrap_or("")
        ),
        "childproc" => {
            let verb = match action {
                "end" | "ended" | "terminated" | "exit" => "ended",
                "" | "start" | "started" | "created" => "started",
                other => other,
            };
            let mut t = format!("Child process {verb}: {path}");
            if let Some(c) = s(&e.command_line) {
                t.push_str(&format!(" ({c})"));
            }
            if let Some(g) = s(&e.target_guid) {
                t.push_str(&format!(" | {g}"));
            }
            t
        }
        "filemod" => format!("{} {path}", filemod_verb(action)),
        "regmod" => format!("{} {path}", regmod_verb(action)),
        "modload" => format!("Loaded {path}"),
        "netconn" | "netconnblocked" | "netconnblockedv2" => {
            let local = endpoint(s(&e.local_ip), e.local_port);
            let remote = endpoint(s(&e.remote_ip), e.remote_port);
            let inbound = s(&e.direction) == Some("inbound");
            let mut t = format!(
                "{}{} {} {}",
                if e.event_type == "netconn" {
                    ""
                } else {
                    "Blocked "
                },
                if inbound { "Inbound" } else { "Outbound" },
                s(&e.protocol).unwrap_or("?"),
                if inbound {
                    format!("{remote} -> {local}")
                } else {
                    format!("{local} -> {remote}")
                }
            );
            if let Some(d) = s(&e.domain) {
                t.push_str(&format!(" ({d})"));
            }
            t
        }
        "crossproc" | "remotethread" => {
            let mut t = format!(
                "{} {path}",
                if action.is_empty() {
                    "Cross-process"
                } else {
                    action
                }
            );
            if let Some(g) = s(&e.target_guid) {
                t.push_str(&format!(" | {g}"));
            }
            t
        }
        "processblock" => format!("Blocked process {path}"),
        "scriptexe" | "fbscriptexe" => {
            format!("Script executed: {}", s(&e.command_line).unwrap_or(path))
        }
        "tamper" => format!("Tamper alert: {action}"),
        other => {
            let parts: Vec<&str> = [Some(action), Some(path), s(&e.command_line)]
                .into_iter()
                .flatten()
                .filter(|x| !x.is_empty())
                .collect();
            if parts.is_empty() {
                other.to_string()
            } else {
                format!("{other}: {}", parts.join(" "))
            }
        }
    };
    if matches!(e.event_type.as_str(), "filemod" | "modload")
        && let Some(m) = s(&e.md5)
    {
        out.push_str(&format!(" md5={m}"));
    }
    crate::tree::one_line(out.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4180_quoting() {
        let mut v = Vec::new();
        write_record(&mut v, &["a", "b,c", "d\"e", "f\ng", ""]).unwrap();
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "a,\"b,c\",\"d\"\"e\",\"f\ng\",\r\n"
        );
    }

    #[test]
    fn descriptions() {
        let e = EventRow {
            event_type: "netconn".into(),
            direction: Some("inbound".into()),
            protocol: Some("tcp".into()),
            local_ip: Some("10.0.0.5".into()),
            local_port: Some(445),
            remote_ip: Some("10.0.0.9".into()),
            remote_port: Some(50000),
            ..EventRow::default()
        };
        assert_eq!(describe(&e), "Inbound tcp 10.0.0.9:50000 -> 10.0.0.5:445");
        let f = EventRow {
            event_type: "filemod".into(),
            action: Some("lastwrite".into()),
            path: Some("c:\\x.dll".into()),
            md5: Some("AB".into()),
            ..EventRow::default()
        };
        assert_eq!(describe(&f), "Last wrote c:\\x.dll md5=AB");
        let u = EventRow {
            event_type: "emet".into(),
            action: Some("blocked".into()),
            ..EventRow::default()
        };
        assert_eq!(describe(&u), "emet: blocked");
    }
}
