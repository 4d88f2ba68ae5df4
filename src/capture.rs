//! Capture files on disk → deliveries, for `cbtrail replay` (decode and store them) and
//! `cbtrail publish` (send them to a broker as the CB server would).
//!
//! A capture is laid out as the reference tooling writes it (`export_events.py`,
//! `export_raw_events.py`): `<routing key>/<n>.<json|protobuf>` for `api.events`, and
//! `<n>.zip` + `<n>.txt` (the pika `BasicProperties` dump of the delivery) for
//! `api.rawsensordata`. What each file is follows from its extension:
//!
//! | extension | content type | exchange |
//! |---|---|---|
//! | `.zip` | `application/zip` | `api.rawsensordata` |
//! | `.json` | `application/json` | `api.events` |
//! | `.protobuf`, `.pb`, `.proto` | `application/protobuf` | `api.events` |
//! | anything else | `application/protobuf` (a bare bundle) | `api.rawsensordata` |
//!
//! The routing key defaults to the parent directory's name. A sibling `<n>.txt` supplies the
//! delivery's headers and content type; [`CaptureOverrides`] win over both.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value};

use crate::decode::{
    CONTENT_JSON, CONTENT_PROTOBUF, CONTENT_ZIP, ContentKind, EVENTS_EXCHANGE, RAW_EXCHANGE,
};
use crate::model::{DeliveryMeta, Headers};

/// One capture file, ready to decode or publish.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureFile {
    pub path: PathBuf,
    pub meta: DeliveryMeta,
    pub body: Vec<u8>,
}

/// Command-line overrides applied to every file of a walk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaptureOverrides {
    pub routing_key: Option<String>,
    pub content_type: Option<String>,
    /// Extra AMQP headers (`--header K=V`), added over any read from a properties dump; a value
    /// that parses as an integer is sent as one (see [`header_value`]).
    pub headers: Vec<(String, String)>,
}

impl CaptureOverrides {
    /// Add a `KEY=VALUE` header argument (see [`parse_header_arg`]).
    pub fn add_header_arg(&mut self, arg: &str) -> Result<(), CaptureError> {
        let kv = parse_header_arg(arg)?;
        self.headers.push(kv);
        Ok(())
    }
}

/// Split a `KEY=VALUE` header argument at its first `=`.
pub fn parse_header_arg(arg: &str) -> Result<(String, String), CaptureError> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(CaptureError::HeaderArg {
            arg: arg.to_owned(),
        }),
    }
}

/// A header value from the command line: an integer when it parses as one (`sensorId=7`, as the
/// server sends it), else text (`sensorHostName=WIN-1`).
pub fn header_value(v: &str) -> Value {
    match v.trim().parse::<i64>() {
        Ok(i) => Value::from(i),
        Err(_) => Value::String(v.to_owned()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: cannot parse AMQP properties dump: {message}", path.display())]
    Properties { path: PathBuf, message: String },
    #[error("invalid header argument {arg:?}: expected KEY=VALUE")]
    HeaderArg { arg: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaptureError + '_ {
    move |source| CaptureError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Collect the capture files under `paths` (files or directories, walked recursively) in a stable
/// order: arguments in the order given, directory entries sorted by name with digit runs compared
/// as numbers (`2.json` before `10.json`). Property dumps (`*.txt`), `*.md`, `README*`,
/// `LICENSE*` and dot files are skipped.
pub fn walk(
    paths: &[PathBuf],
    overrides: &CaptureOverrides,
) -> Result<Vec<CaptureFile>, CaptureError> {
    let mut files = Vec::new();
    let mut visited = HashSet::new();
    for p in paths {
        let md = std::fs::metadata(p).map_err(io_err(p))?;
        if md.is_dir() {
            walk_dir(p, &mut visited, &mut files)?;
        } else if !skipped(p) {
            files.push(p.clone());
        }
    }
    files.into_iter().map(|p| load(p, overrides)).collect()
}

fn walk_dir(
    dir: &Path,
    visited: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) -> Result<(), CaptureError> {
    // Symlinked directories are followed, but each real directory is walked once (no loops).
    let real = std::fs::canonicalize(dir).map_err(io_err(dir))?;
    if !visited.insert(real) {
        return Ok(());
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        entries.push(entry.path());
    }
    entries.sort_by(|a, b| natural_cmp(&file_name(a), &file_name(b)));
    for path in entries {
        let md = std::fs::metadata(&path).map_err(io_err(&path))?;
        if md.is_dir() {
            if !file_name(&path).starts_with('.') {
                walk_dir(&path, visited, out)?;
            }
        } else if !skipped(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn skipped(p: &Path) -> bool {
    let name = file_name(p);
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || lower.ends_with(".txt")
        || lower.ends_with(".md")
        || lower.starts_with("readme")
        || lower.starts_with("license")
}

/// Compare names with runs of ASCII digits ordered by value (`2` < `10`), then bytewise.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let dx = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let dy = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (nx, ny) = (&x[..dx], &y[..dy]);
                let tx = trim_zeros(nx);
                let ty = trim_zeros(ny);
                let ord = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[dx..];
                y = &y[dy..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|&&c| c == b'0').count();
    &d[n..]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Zip,
    Json,
    Protobuf,
    Bundle,
}

fn kind_of(path: &Path) -> FileKind {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "zip" => FileKind::Zip,
        "json" => FileKind::Json,
        "protobuf" | "pb" | "proto" => FileKind::Protobuf,
        _ => FileKind::Bundle,
    }
}

fn load(path: PathBuf, overrides: &CaptureOverrides) -> Result<CaptureFile, CaptureError> {
    let body = std::fs::read(&path).map_err(io_err(&path))?;
    let kind = kind_of(&path);

    let mut headers = Headers::new();
    let mut dumped_content_type = None;
    if let Some(props) = sibling_properties(&path) {
        let text = std::fs::read(&props).map_err(io_err(&props))?;
        let text = String::from_utf8_lossy(&text);
        let parsed = parse_properties(&text).map_err(|message| CaptureError::Properties {
            path: props.clone(),
            message,
        })?;
        headers = parsed.headers;
        dumped_content_type = parsed.content_type;
    }
    headers.extend(
        overrides
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), header_value(v))),
    );

    let content_type = overrides
        .content_type
        .clone()
        .or(dumped_content_type)
        .unwrap_or_else(|| {
            match kind {
                FileKind::Zip => CONTENT_ZIP,
                FileKind::Json => CONTENT_JSON,
                FileKind::Protobuf | FileKind::Bundle => CONTENT_PROTOBUF,
            }
            .to_owned()
        });
    let raw_file = matches!(kind, FileKind::Zip | FileKind::Bundle);
    let raw = match ContentKind::parse(Some(&content_type)) {
        Some(ContentKind::Json) => false,
        Some(ContentKind::Zip) => true,
        Some(ContentKind::Protobuf) | None => raw_file,
    };
    let exchange = if raw { RAW_EXCHANGE } else { EVENTS_EXCHANGE }.to_owned();
    let routing_key = overrides
        .routing_key
        .clone()
        .unwrap_or_else(|| path.parent().map(file_name).unwrap_or_default());

    Ok(CaptureFile {
        path,
        meta: DeliveryMeta {
            exchange,
            routing_key,
            content_type: Some(content_type),
            headers,
        },
        body,
    })
}

/// `dir/<n>.txt` for `dir/<n>.<ext>` (the name up to its first dot), when it exists.
fn sibling_properties(path: &Path) -> Option<PathBuf> {
    let name = file_name(path);
    let stem = name.split('.').next().filter(|s| !s.is_empty())?;
    let candidate = path.with_file_name(format!("{stem}.txt"));
    (candidate != path && candidate.is_file()).then_some(candidate)
}

/// What a pika `BasicProperties` dump says about a delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DumpedProperties {
    pub content_type: Option<String>,
    pub headers: Headers,
}

/// Parse a pika `BasicProperties` repr, e.g.
/// `<BasicProperties(['content_type=application/zip', 'delivery_mode=1',
/// "headers={'sensorId': 1L, 'sensorHostName': u'HYPERV-WIN7-X86'}", 'priority=0'])>`.
/// The list and the headers dict are Python 2 literals; only `content_type` and `headers` are kept.
pub fn parse_properties(text: &str) -> Result<DumpedProperties, String> {
    let t = text.trim();
    let inner = t
        .strip_prefix("<BasicProperties(")
        .and_then(|s| s.strip_suffix(")>"))
        .unwrap_or(t);
    let items = match py::parse(inner)? {
        py::Py::List(items) => items,
        other => {
            return Err(format!(
                "expected a list of properties, found {}",
                other.kind()
            ));
        }
    };
    let mut out = DumpedProperties::default();
    for item in items {
        let py::Py::Str(s) = item else {
            return Err(format!(
                "expected a 'name=value' string, found {}",
                item.kind()
            ));
        };
        let Some((name, value)) = s.split_once('=') else {
            return Err(format!("property {s:?} has no '='"));
        };
        match name.trim() {
            "content_type" => out.content_type = Some(value.trim().to_owned()),
            "headers" => match py::parse(value)? {
                py::Py::Dict(pairs) => {
                    for (k, v) in pairs {
                        out.headers.insert(k.key_text(), v.into_json());
                    }
                }
                py::Py::None => {}
                other => return Err(format!("headers is a {}, not a dict", other.kind())),
            },
            _ => {}
        }
    }
    Ok(out)
}

/// A parser for the Python 2 literals pika's repr produces (strings with `u`/`b` prefixes, ints
/// with an `L` suffix, floats, True/False/None, lists, tuples, dicts).
mod py {
    use super::{Map, Number, Value};

    #[derive(Debug, Clone, PartialEq)]
    pub enum Py {
        Str(String),
        Int(i64),
        Float(f64),
        Bool(bool),
        None,
        List(Vec<Py>),
        Dict(Vec<(Py, Py)>),
    }

    impl Py {
        pub fn kind(&self) -> &'static str {
            match self {
                Py::Str(_) => "string",
                Py::Int(_) => "int",
                Py::Float(_) => "float",
                Py::Bool(_) => "bool",
                Py::None => "None",
                Py::List(_) => "list",
                Py::Dict(_) => "dict",
            }
        }

        pub fn key_text(&self) -> String {
            match self {
                Py::Str(s) => s.clone(),
                Py::Int(i) => i.to_string(),
                Py::Float(f) => f.to_string(),
                Py::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
                Py::None => "None".to_owned(),
                other => format!("{other:?}"),
            }
        }

        pub fn into_json(self) -> Value {
            match self {
                Py::Str(s) => Value::String(s),
                Py::Int(i) => Value::from(i),
                Py::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
                Py::Bool(b) => Value::Bool(b),
                Py::None => Value::Null,
                Py::List(items) => Value::Array(items.into_iter().map(Py::into_json).collect()),
                Py::Dict(pairs) => {
                    let mut m = Map::new();
                    for (k, v) in pairs {
                        m.insert(k.key_text(), v.into_json());
                    }
                    Value::Object(m)
                }
            }
        }
    }

    /// Parse one literal that must span the whole input (surrounding whitespace allowed).
    pub fn parse(s: &str) -> Result<Py, String> {
        let mut p = Parser {
            s: s.as_bytes(),
            i: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("unexpected text at byte {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
        depth: u32,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
                self.i += 1;
            }
        }

        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        fn value(&mut self) -> Result<Py, String> {
            self.ws();
            let Some(c) = self.peek() else {
                return Err("unexpected end of input".to_owned());
            };
            match c {
                b'[' => self.seq(b']'),
                b'(' => self.seq(b')'),
                b'{' => self.dict(),
                b'\'' | b'"' => self.string(),
                b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
                _ if c.is_ascii_alphabetic() => {
                    let start = self.i;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                    {
                        self.i += 1;
                    }
                    let word = &self.s[start..self.i];
                    if matches!(self.peek(), Some(b'\'' | b'"'))
                        && word.len() <= 2
                        && word.iter().all(|c| b"uUbBrR".contains(c))
                    {
                        let raw = word.iter().any(|c| matches!(c, b'r' | b'R'));
                        return self.string_body(raw);
                    }
                    match word {
                        b"True" => Ok(Py::Bool(true)),
                        b"False" => Ok(Py::Bool(false)),
                        b"None" => Ok(Py::None),
                        _ => Err(format!(
                            "unknown word {:?} at byte {start}",
                            String::from_utf8_lossy(word)
                        )),
                    }
                }
                _ => Err(format!("unexpected {:?} at byte {}", c as char, self.i)),
            }
        }

        fn enter(&mut self) -> Result<(), String> {
            self.depth += 1;
            if self.depth > 64 {
                return Err("literals nested too deeply".to_owned());
            }
            Ok(())
        }

        fn seq(&mut self, close: u8) -> Result<Py, String> {
            self.enter()?;
            self.i += 1;
            let mut items = Vec::new();
            loop {
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    break;
                }
                items.push(self.value()?);
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(c) if c == close => {}
                    _ => {
                        return Err(format!(
                            "expected ',' or closing bracket at byte {}",
                            self.i
                        ));
                    }
                }
            }
            self.depth -= 1;
            Ok(Py::List(items))
        }

        fn dict(&mut self) -> Result<Py, String> {
            self.enter()?;
            self.i += 1;
            let mut pairs = Vec::new();
            loop {
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    break;
                }
                let k = self.value()?;
                self.ws();
                if self.peek() != Some(b':') {
                    return Err(format!("expected ':' at byte {}", self.i));
                }
                self.i += 1;
                let v = self.value()?;
                pairs.push((k, v));
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {}
                    _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                }
            }
            self.depth -= 1;
            Ok(Py::Dict(pairs))
        }

        fn string(&mut self) -> Result<Py, String> {
            self.string_body(false)
        }

        fn string_body(&mut self, raw: bool) -> Result<Py, String> {
            let start = self.i;
            let Some(quote) = self.peek() else {
                return Err("unexpected end of input".to_owned());
            };
            self.i += 1;
            let mut out: Vec<u8> = Vec::new();
            loop {
                let Some(c) = self.peek() else {
                    return Err(format!("unterminated string starting at byte {start}"));
                };
                self.i += 1;
                if c == quote {
                    break;
                }
                if c != b'\\' || raw {
                    out.push(c);
                    continue;
                }
                let Some(e) = self.peek() else {
                    return Err(format!("unterminated string starting at byte {start}"));
                };
                self.i += 1;
                match e {
                    b'\\' | b'\'' | b'"' => out.push(e),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'0' => out.push(0),
                    b'x' => self.hex_escape(2, &mut out)?,
                    b'u' => self.hex_escape(4, &mut out)?,
                    b'U' => self.hex_escape(8, &mut out)?,
                    _ => {
                        out.push(b'\\');
                        out.push(e);
                    }
                }
            }
            Ok(Py::Str(String::from_utf8_lossy(&out).into_owned()))
        }

        fn hex_escape(&mut self, digits: usize, out: &mut Vec<u8>) -> Result<(), String> {
            let hex = self
                .s
                .get(self.i..self.i + digits)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad \\x/\\u escape at byte {}", self.i))?;
            self.i += digits;
            let ch = char::from_u32(hex).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            Ok(())
        }

        fn number(&mut self) -> Result<Py, String> {
            let start = self.i;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
            {
                self.i += 1;
            }
            let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let digits = text.trim_end_matches(['L', 'l']);
            if let Ok(i) = digits.parse::<i64>() {
                return Ok(Py::Int(i));
            }
            if let Ok(f) = text.parse::<f64>() {
                return Ok(Py::Float(f));
            }
            Err(format!("bad number {text:?} at byte {start}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec![
            "10.json", "2.json", "1.json", "01.json", "a", "b10", "b9", "0.zip",
        ];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            v,
            [
                "0.zip", "01.json", "1.json", "2.json", "10.json", "a", "b9", "b10"
            ]
        );
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
        assert_eq!(
            natural_cmp("99999999999999999999999", "100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn pika_dump() {
        let p = parse_properties(
            "<BasicProperties(['content_type=application/zip', 'delivery_mode=1', \"headers={'sensorId': 1L, \
             'hostId': 0L, 'nodeId': 0, 'sensorHostName': u'HYPERV-WIN7-X86'}\", 'priority=0'])>\n",
        )
        .unwrap();
        assert_eq!(p.content_type.as_deref(), Some("application/zip"));
        assert_eq!(p.headers["sensorId"], Value::from(1));
        assert_eq!(p.headers["hostId"], Value::from(0));
        assert_eq!(p.headers["nodeId"], Value::from(0));
        assert_eq!(p.headers["sensorHostName"], Value::from("HYPERV-WIN7-X86"));
        assert_eq!(p.headers.len(), 4);
    }

    #[test]
    fn pika_dump_escapes_and_types() {
        let p = parse_properties(
            r#"['headers={u"a": u"C:\\\\x\'y", "b": -3, "c": 1.5, "d": True, "e": None, "f": [1, (2,)], "g": {"h": u"\xe9"}}']"#,
        )
        .unwrap();
        assert_eq!(p.content_type, None);
        assert_eq!(p.headers["a"], Value::from("C:\\x'y"));
        assert_eq!(p.headers["b"], Value::from(-3));
        assert_eq!(p.headers["c"], Value::from(1.5));
        assert_eq!(p.headers["d"], Value::Bool(true));
        assert_eq!(p.headers["e"], Value::Null);
        assert_eq!(p.headers["f"], serde_json::json!([1, [2]]));
        assert_eq!(p.headers["g"], serde_json::json!({"h": "é"}));
    }

    #[test]
    fn pika_dump_errors() {
        assert!(parse_properties("<BasicProperties(['headers={'])>").is_err());
        assert!(parse_properties("nonsense").is_err());
        assert!(parse_properties("['no equals sign']").is_err());
        assert!(parse_properties("[1]").is_err());
        assert!(parse_properties(&"[".repeat(100)).is_err());
        assert!(parse_properties("['headers=[1]']").is_err());
        assert!(parse_properties("['headers={\"a\": \"\\x4\"}']").is_err());
    }

    #[test]
    fn header_args() {
        assert_eq!(
            parse_header_arg("sensorId=7").unwrap(),
            ("sensorId".to_owned(), "7".to_owned())
        );
        assert_eq!(
            parse_header_arg("x=a=b").unwrap(),
            ("x".to_owned(), "a=b".to_owned())
        );
        assert!(parse_header_arg("novalue").is_err());
        assert!(parse_header_arg("=1").is_err());
        assert_eq!(header_value("7"), Value::from(7));
        assert_eq!(header_value(" -3 "), Value::from(-3));
        assert_eq!(header_value("WIN-1"), Value::from("WIN-1"));
        assert_eq!(header_value(""), Value::from(""));
    }

    fn write(dir: &Path, name: &str, body: &[u8]) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn walk_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "json/watchlist.12.hit.process/10.json", b"{}");
        write(root, "json/watchlist.12.hit.process/2.json", b"{}");
        write(root, "protobuf/ingress.event.tamper/0.tamper.proto", b"");
        write(root, "zip/0.zip", b"PK");
        write(
            root,
            "zip/0.txt",
            b"<BasicProperties(['content_type=application/zip', \"headers={'sensorId': 3L, 'sensorHostName': u'H'}\"])>",
        );
        write(root, "bundle/bundleone", b"");
        write(root, "README.md", b"x");
        write(root, "LICENSE", b"x");
        write(root, "zip/.hidden", b"x");

        let files = walk(&[root.to_path_buf()], &CaptureOverrides::default()).unwrap();
        let rel: Vec<String> = files
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "bundle/bundleone",
                "json/watchlist.12.hit.process/2.json",
                "json/watchlist.12.hit.process/10.json",
                "protobuf/ingress.event.tamper/0.tamper.proto",
                "zip/0.zip",
            ]
        );
        let bundle = &files[0].meta;
        assert_eq!(bundle.exchange, RAW_EXCHANGE);
        assert_eq!(bundle.content_type.as_deref(), Some(CONTENT_PROTOBUF));
        assert_eq!(bundle.routing_key, "bundle");
        let json = &files[1].meta;
        assert_eq!(json.exchange, EVENTS_EXCHANGE);
        assert_eq!(json.content_type.as_deref(), Some(CONTENT_JSON));
        assert_eq!(json.routing_key, "watchlist.12.hit.process");
        let pb = &files[3].meta;
        assert_eq!(pb.exchange, EVENTS_EXCHANGE);
        assert_eq!(pb.content_type.as_deref(), Some(CONTENT_PROTOBUF));
        assert_eq!(pb.routing_key, "ingress.event.tamper");
        let zip = &files[4].meta;
        assert_eq!(zip.exchange, RAW_EXCHANGE);
        assert_eq!(zip.content_type.as_deref(), Some(CONTENT_ZIP));
        assert_eq!(zip.headers["sensorId"], Value::from(3));
        assert_eq!(zip.headers["sensorHostName"], Value::from("H"));
        assert_eq!(files[4].body, b"PK");
    }

    #[test]
    fn walk_overrides_and_explicit_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "x/1.zip", b"PK");
        write(
            root,
            "x/1.txt",
            b"['content_type=application/zip', \"headers={'sensorId': 1}\"]",
        );
        let mut o = CaptureOverrides {
            routing_key: Some("rk".to_owned()),
            content_type: Some("application/protobuf".to_owned()),
            ..CaptureOverrides::default()
        };
        o.add_header_arg("sensorId=9").unwrap();
        o.add_header_arg("extra=yes").unwrap();
        let files = walk(&[root.join("x/1.zip"), root.join("x/1.txt")], &o).unwrap();
        assert_eq!(files.len(), 1, "the property dump is not a capture file");
        let m = &files[0].meta;
        assert_eq!(m.routing_key, "rk");
        assert_eq!(m.content_type.as_deref(), Some("application/protobuf"));
        assert_eq!(
            m.exchange, RAW_EXCHANGE,
            "a zip file stays on the raw exchange"
        );
        assert_eq!(m.headers["sensorId"], Value::from(9));
        assert_eq!(m.headers["extra"], Value::from("yes"));

        let json = CaptureOverrides {
            content_type: Some("application/json".to_owned()),
            ..CaptureOverrides::default()
        };
        let files = walk(&[root.join("x/1.zip")], &json).unwrap();
        assert_eq!(files[0].meta.exchange, EVENTS_EXCHANGE);
    }

    #[test]
    fn walk_errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = walk(std::slice::from_ref(&missing), &CaptureOverrides::default()).unwrap_err();
        assert!(matches!(&err, CaptureError::Io { path, .. } if *path == missing));
        assert!(err.to_string().contains("nope"), "{err}");

        write(tmp.path(), "z/0.zip", b"PK");
        write(tmp.path(), "z/0.txt", b"<BasicProperties(['headers={'])>");
        let err = walk(&[tmp.path().join("z")], &CaptureOverrides::default()).unwrap_err();
        assert!(matches!(&err, CaptureError::Properties { path, .. } if path.ends_with("0.txt")));
    }

    #[cfg(unix)]
    #[test]
    fn walk_symlink_loop_terminates() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a/1.json", b"{}");
        std::os::unix::fs::symlink(tmp.path().join("a"), tmp.path().join("a/loop")).unwrap();
        let files = walk(&[tmp.path().to_path_buf()], &CaptureOverrides::default()).unwrap();
        assert_eq!(files.len(), 1);
    }
}
