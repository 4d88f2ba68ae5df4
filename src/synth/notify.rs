//! JSON notifications of the server on `api.events`, in the shapes of the captured ones:
//! watchlist, feed and alert hits on processes, and binary notifications.

use super::binary::Meta;
use super::catalog::Profile;
use super::clock::{iso_ms, iso_us};
use super::host::Host;
use super::process::Counts;
use super::text::hex;
use serde_json::{Map, Value, json};

/// The server publishing the notifications.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub cb_version: &'static str,
    pub name: &'static str,
    /// EDR 6+ segment ids (12 hex digits, a millisecond time) instead of 5.x `00000001`.
    pub long_segments: bool,
}

impl Server {
    pub(crate) fn segment(&self, start_ms: i64) -> (u64, String) {
        if self.long_segments {
            let seg = start_ms as u64 & 0xffff_ffff_ffff;
            (seg, format!("{seg:012x}"))
        } else {
            (1, "00000001".to_string())
        }
    }
}

/// Everything a process notification says about its process.
pub(crate) struct ProcDoc<'a> {
    pub host: &'a Host,
    pub guid: String,
    pub pid: i32,
    pub path: &'a str,
    pub name: &'a str,
    pub cmdline: &'a str,
    pub username: &'a str,
    pub md5: [u8; 16],
    pub profile: Profile,
    pub parent_guid: String,
    pub parent_pid: i32,
    pub parent_name: String,
    pub parent_md5: Option<[u8; 16]>,
    pub parent_legacy: i64,
    /// Parent's start, UTC ms (its segment id on EDR 6+).
    pub parent_start_ms: i64,
    pub counts: Counts,
    pub start_ms: i64,
    pub last_ms: i64,
}

/// A network indicator: (DNS name or "", remote ip, remote port, local port, udp).
pub(crate) type NetIoc = (&'static str, [u8; 4], u16, u16, bool);

fn dotted(ip: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", ip[0], ip[1], ip[2], ip[3])
}

/// `comms_ip`/`interface_ip` as the server writes them in watchlist hits: the address read as
/// a big-endian signed 32-bit integer.
pub(crate) fn ip_int(ip: [u8; 4]) -> i32 {
    i32::from_be_bytes(ip)
}

fn ts(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn host_type(host: &Host) -> &'static str {
    if host.os.is_server() {
        "server"
    } else {
        "workstation"
    }
}

/// Watchlists of the estate, by what they look for.
pub(crate) fn watchlist_for(profile: Profile) -> (i64, &'static str) {
    match profile {
        Profile::Script | Profile::Console | Profile::Tool => (17, "Suspicious command line tools"),
        Profile::Office | Profile::Mail => (23, "Office apps spawning children"),
        Profile::Browser | Profile::Chat => (11, "Chrome"),
        Profile::Installer | Profile::Updater => (2, "Non-System Filemods to system32"),
        _ => (31, "Unsigned or rare processes"),
    }
}

const PARENT_MD5_UNKNOWN: &str = "000000000000000000000000000000";

impl ProcDoc<'_> {
    fn unique_id(&self, server: &Server) -> (u64, String) {
        let (seg, text) = server.segment(self.start_ms);
        (seg, format!("{}-{text}", self.guid))
    }

    fn parent_unique_id(&self, server: &Server) -> String {
        format!(
            "{}-{}",
            self.parent_guid,
            server.segment(self.parent_start_ms).1
        )
    }

    fn parent_md5_text(&self) -> String {
        self.parent_md5
            .map(|m| hex(&m, false))
            .unwrap_or_else(|| PARENT_MD5_UNKNOWN.to_string())
    }

    /// The fields every process doc of the Solr core carries.
    fn core(&self, server: &Server) -> Map<String, Value> {
        let (_, unique_id) = self.unique_id(server);
        let c = &self.counts;
        let mut m = Map::new();
        m.insert("process_md5".into(), json!(hex(&self.md5, false)));
        m.insert("modload_count".into(), json!(c.modload));
        m.insert(
            "parent_unique_id".into(),
            json!(self.parent_unique_id(server)),
        );
        m.insert("cmdline".into(), json!(self.cmdline));
        m.insert("filemod_count".into(), json!(c.filemod));
        m.insert("parent_name".into(), json!(self.parent_name));
        m.insert("last_update".into(), json!(iso_ms(self.last_ms)));
        m.insert("start".into(), json!(iso_ms(self.start_ms)));
        m.insert("regmod_count".into(), json!(c.regmod));
        m.insert("process_pid".into(), json!(self.pid));
        m.insert("username".into(), json!(self.username));
        m.insert("process_name".into(), json!(self.name));
        m.insert("path".into(), json!(self.path));
        m.insert("netconn_count".into(), json!(c.netconn));
        m.insert("parent_pid".into(), json!(self.parent_pid));
        m.insert("crossproc_count".into(), json!(c.crossproc));
        m.insert("host_type".into(), json!(host_type(self.host)));
        m.insert("os_type".into(), json!("windows"));
        m.insert("childproc_count".into(), json!(c.childproc));
        m.insert("unique_id".into(), json!(unique_id));
        m
    }

    fn highlight(&self) -> String {
        format!("PREPREPRE{}POSTPOSTPOST", self.name)
    }
}

/// `watchlist.hit.process`: a saved search matched the process.
pub(crate) fn watchlist_hit(d: &ProcDoc<'_>, server: &Server, now_ms: i64) -> (String, Value) {
    let (wl_id, wl_name) = watchlist_for(d.profile);
    let (seg, unique_id) = d.unique_id(server);
    let mut doc = d.core(server);
    doc.insert("sensor_id".into(), json!(d.host.sensor_id));
    doc.insert("id".into(), json!(d.guid));
    doc.insert("parent_md5".into(), json!(d.parent_md5_text()));
    doc.insert("group".into(), json!(d.host.group));
    doc.insert("hostname".into(), json!(d.host.name));
    doc.insert("comms_ip".into(), json!(ip_int(d.host.comms_ip)));
    doc.insert("interface_ip".into(), json!(ip_int(d.host.ip)));
    doc.insert("segment_id".into(), json!(seg));
    let body = json!({
        "server_name": server.name,
        "docs": [Value::Object(doc)],
        "event_timestamp": ts(now_ms),
        "watchlist_id": wl_id,
        "highlights": [{"name": d.highlight(), "ids": [unique_id.clone(), unique_id]}],
        "cb_version": server.cb_version,
        "watchlist_name": wl_name,
    });
    ("watchlist.hit.process".to_string(), body)
}

/// `watchlist.storage.hit.process`: the same search run over stored data.
pub(crate) fn watchlist_storage_hit(
    d: &ProcDoc<'_>,
    server: &Server,
    now_ms: i64,
) -> (String, Value) {
    let (wl_id, wl_name) = watchlist_for(d.profile);
    let mut doc = d.core(server);
    doc.insert(
        format!("watchlist_{wl_id}"),
        json!(iso_us(now_ms, (now_ms % 997) as u32)),
    );
    doc.insert("parent_id".into(), json!(d.parent_legacy));
    let body = json!({
        "process_id": d.guid,
        "watchlist_id": wl_id,
        "watchlist_name": wl_name,
        "cb_version": server.cb_version,
        "server_name": server.name,
        "docs": [Value::Object(doc)],
        "highlights": [],
        "event_timestamp": ts(now_ms),
    });
    ("watchlist.storage.hit.process".to_string(), body)
}

/// `alert.watchlist.hit.query.process`: the alert a watchlist hit raised. Every value is a
/// string, as the captured alerts have them.
pub(crate) fn alert_hit(
    d: &ProcDoc<'_>,
    server: &Server,
    now_ms: i64,
    alert_id: String,
) -> (String, Value) {
    let (wl_id, wl_name) = watchlist_for(d.profile);
    let (seg, _) = d.unique_id(server);
    let c = &d.counts;
    let body = json!({
        "event_timestamp": ts(now_ms),
        "modload_count": c.modload.to_string(),
        "interface_ip": dotted(d.host.ip),
        "watchlist_name": wl_name,
        "feed_id": "-1",
        "netconn_count": c.netconn.to_string(),
        "os_type": "windows",
        "unique_id": alert_id,
        "comms_ip": dotted(d.host.comms_ip),
        "watchlist_id": wl_id.to_string(),
        "username": d.username,
        "process_id": d.guid,
        "ioc_type": "query",
        "feed_name": "My Watchlists",
        "sensor_criticality": if d.host.os.is_server() { "3.0" } else { "1.0" },
        "filemod_count": c.filemod.to_string(),
        "alert_type": "watchlist.hit.query.process",
        "regmod_count": c.regmod.to_string(),
        "feed_rating": "3.0",
        "crossproc_count": c.crossproc.to_string(),
        "status": "Unresolved",
        "process_name": d.name,
        "hostname": d.host.name,
        "report_score": "75",
        "sensor_id": d.host.sensor_id.to_string(),
        "ioc_confidence": "0.5",
        "childproc_count": c.childproc.to_string(),
        "segment_id": seg.to_string(),
        "process_path": d.path,
        "md5": hex(&d.md5, false),
        "ioc_attr": json!({"highlights": [d.highlight()]}).to_string(),
        "alert_severity": if d.host.os.is_server() { "60.75" } else { "40.5" },
        "created_time": iso_us(now_ms, (now_ms % 991) as u32),
        "group": d.host.group,
    });
    ("alert.watchlist.hit.query.process".to_string(), body)
}

/// `feed.<id>.ingress.hit.process`: a threat feed indicator matched while the event came in.
pub(crate) fn feed_ingress_hit(
    d: &ProcDoc<'_>,
    server: &Server,
    now_ms: i64,
    net: Option<NetIoc>,
    report_seq: u64,
) -> (String, Value) {
    let (feed_id, feed_name, ioc_type, ioc_value, ioc_attr) = match net {
        Some((name, remote, port, local_port, udp)) => {
            let mut attr = json!({
                "local_ip": dotted(d.host.ip),
                "protocol": if udp { "UDP" } else { "TCP" },
                "remote_ip": dotted(remote),
                "port": port,
                "local_port": local_port,
                "remote_port": port,
                "direction": "Outbound",
            });
            if name.is_empty() {
                (28, "abusech", "ipv4", dotted(remote), attr)
            } else {
                attr["dns_name"] = json!(name);
                (
                    24,
                    "threatconnectintegration",
                    "dns",
                    name.to_string(),
                    attr,
                )
            }
        }
        None => (33, "wildfire", "md5", hex(&d.md5, false), json!({})),
    };
    let body = json!({
        "process_id": d.guid,
        "os_type": "Windows",
        "report_id": format!("{}", 17_000_000 + report_seq),
        "report_score": 100,
        "ioc_type": ioc_type,
        "ioc_value": ioc_value,
        "ioc_attr": ioc_attr,
        "hostname": d.host.name,
        "group": d.host.group,
        "sensor_id": d.host.sensor_id,
        "cb_version": server.cb_version,
        "server_name": server.name,
        "from_feed_search": false,
        "feed_id": feed_id,
        "feed_name": feed_name,
        "event_timestamp": ts(now_ms),
    });
    (format!("feed.{feed_id}.ingress.hit.process"), body)
}

/// `feed.query.hit.process`: a query report of a feed matched stored process data.
pub(crate) fn feed_query_hit(d: &ProcDoc<'_>, server: &Server, now_ms: i64) -> (String, Value) {
    let (seg, _) = d.unique_id(server);
    let mut doc = d.core(server);
    doc.insert("parent_md5".into(), json!(d.parent_md5_text()));
    doc.insert("emet_count".into(), json!(0));
    doc.insert("processblock_count".into(), json!(0));
    let query = format!(
        "{{\"index_type\": \"events\", \"search_query\": \"cb.urlver=1&q=process_name%3A{}\"}}",
        d.name
    );
    let body = json!({
        "process_id": d.guid,
        "sensor_id": d.host.sensor_id,
        "group": d.host.group,
        "segment_id": seg,
        "docs": [Value::Object(doc)],
        "hostname": d.host.name,
        "report_score": 50,
        "event_timestamp": ts(now_ms),
        "feed_name": "sans-hunting-queries",
        "feed_id": 71,
        "ioc_value": query,
        "ioc_attrs": {"highlights": [d.highlight()]},
        "comms_ip": "",
        "ioc_type": "query",
        "interface_ip": "",
        "report_id": format!("hunt-{}", d.name.trim_end_matches(".exe")),
    });
    ("feed.query.hit.process".to_string(), body)
}

/// What a binary notification says about the file.
pub(crate) struct BinDoc<'a> {
    pub host: &'a Host,
    pub md5: [u8; 16],
    pub path: &'a str,
    pub meta: &'a Meta,
    pub first_seen_ms: i64,
}

pub(crate) fn binaryinfo_observed(b: &BinDoc<'_>, now_ms: i64) -> (String, Value) {
    let body = json!({
        "md5": hex(&b.md5, true),
        "scores": {},
        "watchlists": {},
        "event_timestamp": ts(now_ms),
    });
    ("binaryinfo.observed".to_string(), body)
}

pub(crate) fn binaryinfo_host_observed(b: &BinDoc<'_>, now_ms: i64) -> (String, Value) {
    let body = json!({
        "hostname": b.host.name,
        "sensor_id": b.host.sensor_id,
        "md5": hex(&b.md5, true),
        "scores": {},
        "watchlists": {},
        "event_timestamp": ts(now_ms),
    });
    ("binaryinfo.host.observed".to_string(), body)
}

pub(crate) fn binaryinfo_group_observed(b: &BinDoc<'_>, now_ms: i64) -> (String, Value) {
    let body = json!({
        "group": b.host.group,
        "md5": hex(&b.md5, true),
        "scores": {},
        "watchlists": {},
        "event_timestamp": ts(now_ms),
    });
    ("binaryinfo.group.observed".to_string(), body)
}

pub(crate) fn binarystore_file_added(b: &BinDoc<'_>, now_ms: i64) -> (String, Value) {
    let md5 = hex(&b.md5, true);
    let body = json!({
        "md5": md5,
        "size": b.meta.size,
        "compressed_size": b.meta.size * 45 / 100,
        "node_id": 0,
        "file_path": format!("/var/cb/data/modulestore/{}/{}/{md5}.zip", &md5[..3], &md5[3..6]),
        "event_timestamp": ts(now_ms),
    });
    ("binarystore.file.added".to_string(), body)
}

/// `watchlist.storage.hit.binary`: the "newly loaded modules" search found the binary.
pub(crate) fn watchlist_storage_hit_binary(
    b: &BinDoc<'_>,
    server: &Server,
    now_ms: i64,
) -> (String, Value) {
    let m = b.meta;
    let md5 = hex(&b.md5, true);
    let added = iso_ms(b.first_seen_ms);
    let mut doc = json!({
        "file_version": m.file_version,
        "product_name": m.product,
        "is_executable_image": m.exe,
        "digsig_result": if m.publisher.is_some() { "Signed" } else { "Unsigned" },
        "observed_filename": b.path,
        "cb_version": 510,
        "os_type": "Windows",
        "orig_mod_len": m.size,
        "company_name": m.company,
        "server_added_timestamp": added,
        "last_seen": added,
        "internal_name": m.original_name,
        "copied_mod_len": m.size,
        "product_version": m.product_version,
        "digsig_result_code": if m.publisher.is_some() { "0" } else { "2148204800" },
        "file_desc": m.desc,
        "endpoint": format!("{}|{}", b.host.name, b.host.sensor_id),
        "legal_copyright": m.copyright,
        "original_filename": m.original_name,
        "host_count": 1,
        "watchlist_3": iso_us(now_ms, (now_ms % 983) as u32),
        "is_64bit": m.x64,
        "md5": md5,
        "group": b.host.group,
    });
    if let Some(publisher) = m.publisher {
        doc["digsig_publisher"] = json!(publisher);
        doc["digsig_sign_time"] = json!(iso_ms(m.sign_ms - m.sign_ms % 60_000));
    }
    if let Some((program, issuer, subject)) = m.embedded_sig {
        doc["digsig_issuer"] = json!(issuer);
        doc["digsig_subject"] = json!(subject);
        doc["digsig_prog_name"] = json!(program);
    }
    let body = json!({
        "md5": md5,
        "watchlist_id": 3,
        "watchlist_name": "Newly Loaded Modules",
        "cb_version": server.cb_version,
        "server_name": server.name,
        "docs": [doc],
        "highlights": [],
        "event_timestamp": ts(now_ms),
    });
    ("watchlist.storage.hit.binary".to_string(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ints_match_the_documented_fixture_values() {
        // docs/cb-bus.md §4: -1407246848 → 172.31.30.0, 917477092 → 54.175.150.228.
        assert_eq!(ip_int([172, 31, 30, 0]), -1_407_246_848);
        assert_eq!(ip_int([54, 175, 150, 228]), 917_477_092);
    }

    #[test]
    fn segments() {
        let old = Server {
            cb_version: "5.3",
            name: "cb",
            long_segments: false,
        };
        assert_eq!(old.segment(1_709_539_200_000), (1, "00000001".to_string()));
        let new = Server {
            cb_version: "7.7",
            name: "cb",
            long_segments: true,
        };
        let (_, s) = new.segment(1_709_539_200_000);
        assert_eq!(s.len(), 12);
    }
}
