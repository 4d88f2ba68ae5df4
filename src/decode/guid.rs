//! Identity and unit conversions shared by the protobuf and JSON decoders: process GUIDs, Windows
//! FILETIME → Unix milliseconds, the sensor's IPv4/IPv6/port byte orders and hash hex.
//!
//! Every rule here is the reference consumer's (`docs/cb-bus.md` §4); the unit tests pin each worked
//! example of that section. These run several times per raw event, so they avoid `format!`.

use std::net::Ipv6Addr;

/// Milliseconds between 1601-01-01 (FILETIME epoch) and 1970-01-01 (Unix epoch).
pub const FILETIME_UNIX_OFFSET_MS: i64 = 11_644_473_600_000;

pub(super) const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Windows FILETIME (100-ns ticks since 1601) → Unix milliseconds. 0 stays 0 ("no time").
pub fn filetime_to_unix_ms(filetime: i64) -> i64 {
    if filetime == 0 {
        0
    } else {
        filetime / 10_000 - FILETIME_UNIX_OFFSET_MS
    }
}

/// Like [`filetime_to_unix_ms`] but `None` for a missing or zero time (process start/end facts).
pub fn filetime_to_start_ms(filetime: Option<i64>) -> Option<i64> {
    match filetime {
        Some(ft) if ft != 0 => Some(filetime_to_unix_ms(ft)),
        _ => None,
    }
}

fn push_hex(out: &mut Vec<u8>, value: u64, digits: u32) {
    for i in (0..digits).rev() {
        out.push(HEX_LOWER[((value >> (i * 4)) & 0xf) as usize]);
    }
}

/// The server's process GUID (`MakeGUID`): `%08x-%04x-%04x-%04x-%04x%08x` of the sensor id, the pid
/// split in halves and the raw FILETIME create time split 16/16/32. Lower-case hex.
pub fn process_guid(sensor_id: i64, pid: i32, create_time: i64) -> String {
    let sensor = sensor_id as u32 as u64;
    let pid = pid as u32 as u64;
    let ct = create_time as u64;
    let mut out = Vec::with_capacity(36);
    push_hex(&mut out, sensor, 8);
    out.push(b'-');
    push_hex(&mut out, pid >> 16, 4);
    out.push(b'-');
    push_hex(&mut out, pid & 0xffff, 4);
    out.push(b'-');
    push_hex(&mut out, ct >> 48, 4);
    out.push(b'-');
    push_hex(&mut out, (ct >> 32) & 0xffff, 4);
    push_hex(&mut out, ct & 0xffff_ffff, 8);
    // Only ASCII hex digits and dashes were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// GUID of a process known by (sensor, pid, create time), or `None` when any part is missing.
pub fn guid_from_parts(
    sensor_id: Option<i64>,
    pid: Option<i32>,
    create_time: Option<i64>,
) -> Option<String> {
    Some(process_guid(sensor_id?, pid?, create_time?))
}

/// True for a bare `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` GUID (hex digits, dashes at 8/13/18/23).
pub fn is_bare_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Split a server GUID as found in JSON (`unique_id`, `process_id`, `parent_unique_id`) into the bare
/// 36-character GUID and the segment suffix. Accepts the bare GUID (36), GUID + `-` + 8 hex digits
/// (45, EDR 5.x) and GUID + `-` + 12 hex digits (49, EDR 6.x+); anything else is `None`.
pub fn split_guid(s: &str) -> Option<(&str, Option<&str>)> {
    let s = s.trim();
    match s.len() {
        36 if is_bare_guid(s) => Some((s, None)),
        45 | 49 => {
            let guid = s.get(..36)?;
            let seg = s.get(36..)?.strip_prefix('-')?;
            (is_bare_guid(guid) && seg.bytes().all(|c| c.is_ascii_hexdigit()))
                .then_some((guid, Some(seg)))
        }
        _ => None,
    }
}

fn hex_field(guid: &str, range: std::ops::Range<usize>) -> Option<u64> {
    u64::from_str_radix(guid.get(range)?, 16).ok()
}

/// Sensor id encoded in the first group of a bare GUID.
pub fn guid_sensor_id(guid: &str) -> Option<i64> {
    if !is_bare_guid(guid) {
        return None;
    }
    hex_field(guid, 0..8).map(|v| v as i64)
}

/// Process create time (raw FILETIME) encoded in the last two groups of a bare GUID.
pub fn guid_create_time(guid: &str) -> Option<i64> {
    if !is_bare_guid(guid) {
        return None;
    }
    let hi = hex_field(guid, 19..23)?;
    let mid = hex_field(guid, 24..28)?;
    let lo = hex_field(guid, 28..36)?;
    Some(((hi << 48) | (mid << 32) | lo) as i64)
}

fn dotted_quad(octets: [u8; 4]) -> String {
    let mut s = String::with_capacity(15);
    for (i, o) in octets.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        push_decimal(&mut s, *o);
    }
    s
}

fn push_decimal(s: &mut String, v: u8) {
    if v >= 100 {
        s.push((b'0' + v / 100) as char);
    }
    if v >= 10 {
        s.push((b'0' + (v / 10) % 10) as char);
    }
    s.push((b'0' + v % 10) as char);
}

/// Protobuf IPv4 (`GetIPv4Address`): the `u32` written little-endian, bytes printed in order.
pub fn ipv4_from_sensor(addr: u32) -> String {
    dotted_quad(addr.to_le_bytes())
}

/// JSON `comms_ip`/`interface_ip` (`GetIPv4AddressSigned`): a signed 32-bit value written big-endian.
/// Accepts the value as `i64` because JSON numbers arrive that way; only the low 32 bits count.
pub fn ipv4_from_json(addr: i64) -> String {
    dotted_quad((addr as u32).to_be_bytes())
}

/// Sensor port (`Ntohs`): the low 16 bits, byte-swapped.
pub fn port_from_sensor(port: u32) -> u16 {
    (port as u16).swap_bytes()
}

/// IPv6 from a `CbIpAddr`: bytes 0..8 are `ipv6High` little-endian, 8..16 `ipv6Low` little-endian,
/// then `%scope` when a scope is given.
pub fn ipv6_from_sensor(high: u64, low: u64, scope: Option<&str>) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.to_le_bytes());
    bytes[8..].copy_from_slice(&low.to_le_bytes());
    let mut s = Ipv6Addr::from(bytes).to_string();
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        s.push('%');
        s.push_str(scope);
    }
    s
}

/// Raw hash bytes → upper-case hex.
pub fn hex_upper(bytes: &[u8]) -> String {
    // Sized up front and filled pairwise from a table of all 256 digit pairs: pushing digit by
    // digit checked the capacity 64 times for every sha256, and splitting nibbles cost more
    // than one two-byte load.
    const PAIRS: [[u8; 2]; 256] = {
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [HEX_UPPER[i >> 4], HEX_UPPER[i & 0xf]];
            i += 1;
        }
        t
    };
    let mut out = vec![0u8; bytes.len() * 2];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&PAIRS[usize::from(b)]);
    }
    // Only ASCII hex digits were pushed.
    String::from_utf8(out).unwrap_or_default()
}

/// Raw hash bytes → upper-case hex, `None` when absent or empty (an empty hash is no hash).
pub fn hash_hex(bytes: Option<&[u8]>) -> Option<String> {
    bytes.filter(|b| !b.is_empty()).map(hex_upper)
}

/// A hash that is already hex text (`CbModuleInfoMsg.md5/sha256`, JSON md5s): trimmed, upper-cased;
/// bytes that are not UTF-8 are hex-encoded instead so nothing is lost.
pub fn text_hash_upper(bytes: &[u8]) -> Option<String> {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            let s = s.trim();
            (!s.is_empty()).then(|| s.to_ascii_uppercase())
        }
        Err(_) => Some(hex_upper(bytes)),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (with padding) of `data`, appended to `out`.
pub fn base64_into(data: &[u8], out: &mut String) {
    for chunk in data.chunks(3) {
        let n = match chunk.len() {
            3 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]),
            2 => u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8,
            _ => u32::from(chunk[0]) << 16,
        };
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_worked_example() {
        // cb-bus.md §4: sensor 1, pid 1972, create 130921710236713495 (0x01D1209A100BC217).
        assert_eq!(
            process_guid(1, 1972, 130921710236713495),
            "00000001-0000-07b4-01d1-209a100bc217"
        );
    }

    #[test]
    fn guid_parent_of_worked_example() {
        // Parent of the same fixture: pid 2804, parent_create_time 130919142851396573 (link_parent).
        assert_eq!(
            process_guid(1, 2804, 130919142851396573),
            "00000001-0000-0af4-01d1-1e444bf4c3dd"
        );
    }

    #[test]
    fn guid_negative_inputs_use_twos_complement() {
        assert_eq!(
            process_guid(-1, -1, -1),
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
        assert_eq!(
            process_guid(0, 0, 0),
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            process_guid(0x1_0000_0007, 0x0001_0002, 0x0102_0304_0506_0708),
            "00000007-0001-0002-0102-030405060708"
        );
    }

    #[test]
    fn guid_parts_missing() {
        assert_eq!(guid_from_parts(None, Some(1), Some(2)), None);
        assert_eq!(guid_from_parts(Some(1), None, Some(2)), None);
        assert_eq!(guid_from_parts(Some(1), Some(1), None), None);
    }

    #[test]
    fn guid_roundtrip_fields() {
        let g = process_guid(7, 4052, 130921710236713495);
        assert_eq!(guid_sensor_id(&g), Some(7));
        assert_eq!(guid_create_time(&g), Some(130921710236713495));
        assert_eq!(guid_sensor_id("not a guid"), None);
    }

    #[test]
    fn filetime_worked_example() {
        let ms = filetime_to_unix_ms(130921710236713495);
        assert_eq!(ms, 1447697423671);
        assert_eq!(ms / 1000, 1447697423);
        assert_eq!(filetime_to_unix_ms(0), 0);
        assert_eq!(filetime_to_start_ms(Some(0)), None);
        assert_eq!(filetime_to_start_ms(None), None);
        // Extremes must not overflow.
        let _ = filetime_to_unix_ms(i64::MIN);
        let _ = filetime_to_unix_ms(i64::MAX);
    }

    #[test]
    fn ipv4_worked_examples() {
        assert_eq!(ipv4_from_sensor(465241111), "23.4.187.27");
        assert_eq!(ipv4_from_sensor(1974188), "172.31.30.0");
        assert_eq!(ipv4_from_sensor(0), "0.0.0.0");
        assert_eq!(ipv4_from_sensor(u32::MAX), "255.255.255.255");
    }

    #[test]
    fn json_ipv4_worked_examples() {
        assert_eq!(ipv4_from_json(-1407246848), "172.31.30.0");
        assert_eq!(ipv4_from_json(917477092), "54.175.150.228");
    }

    #[test]
    fn port_worked_examples() {
        assert_eq!(port_from_sensor(20480), 80);
        assert_eq!(port_from_sensor(51392), 49352);
        // Only the low 16 bits count.
        assert_eq!(port_from_sensor(0x1_5000), 80);
    }

    #[test]
    fn ipv6_byte_order() {
        // 2001:db8::1 → bytes 20 01 0d b8 00.. 01; high holds bytes 0..8 little-endian.
        let high = u64::from_le_bytes([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0]);
        let low = u64::from_le_bytes([0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(ipv6_from_sensor(high, low, None), "2001:db8::1");
        assert_eq!(ipv6_from_sensor(high, low, Some("")), "2001:db8::1");
        let ll = u64::from_le_bytes([0xfe, 0x80, 0, 0, 0, 0, 0, 0]);
        let lo = u64::from_le_bytes([0x02, 0x15, 0x5d, 0xff, 0xfe, 0x01, 0x02, 0x03]);
        assert_eq!(
            ipv6_from_sensor(ll, lo, Some("11")),
            "fe80::215:5dff:fe01:203%11"
        );
    }

    #[test]
    fn hashes() {
        assert_eq!(hex_upper(&[0xd6, 0x02, 0x10, 0x13]), "D6021013");
        assert_eq!(hash_hex(Some(&[])), None);
        assert_eq!(hash_hex(None), None);
        assert_eq!(
            text_hash_upper(b"acf87af3b4b7f0d4c0ece41f2a8fda8e").as_deref(),
            Some("ACF87AF3B4B7F0D4C0ECE41F2A8FDA8E")
        );
        assert_eq!(text_hash_upper(&[0xff, 0x01]).as_deref(), Some("FF01"));
        assert_eq!(text_hash_upper(b"  ").as_deref(), None);
    }

    #[test]
    fn split_guid_lengths() {
        let g = "00000007-0000-0fd4-01d1-209aa22a57ee";
        assert_eq!(split_guid(g), Some((g, None)));
        assert_eq!(
            split_guid("00000007-0000-0fd4-01d1-209aa22a57ee-00000001"),
            Some((g, Some("00000001")))
        );
        assert_eq!(
            split_guid("00000007-0000-0fd4-01d1-209aa22a57ee-000000000001"),
            Some((g, Some("000000000001")))
        );
        assert_eq!(
            split_guid("00000007-0000-0fd4-01d1-209aa22a57ee-0001"),
            None
        );
        assert_eq!(
            split_guid("00000007-0000-0fd4-01d1-209aa22a57eeX00000001"),
            None
        );
        assert_eq!(split_guid("zzzzzzzz-0000-0fd4-01d1-209aa22a57ee"), None);
        assert_eq!(split_guid(""), None);
        // Multi-byte characters at the split point must not panic.
        assert_eq!(
            split_guid("00000007-0000-0fd4-01d1-209aa22a57é-0000001"),
            None
        );
    }
}
