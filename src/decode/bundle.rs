//! Raw sensor deliveries (`api.rawsensordata`): a zip archive whose every member is a bundle, or a
//! bare bundle (what servers before 5.2.0 P4 sent). A bundle is a concatenation of records
//! `[u32 little-endian length][CbEventMsg bytes]`.
//!
//! Damage is contained to the smallest unit that can be isolated: a record that fails to decode is
//! quarantined alone and the next record is decoded; a framing error stops its member (the rest
//! cannot be re-synchronised) and quarantines the whole delivery body; a member that cannot be
//! read is quarantined while the other members are still decoded. A delivery never yields nothing.

use std::io::{Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use zip::ZipArchive;

use super::protobuf::{HeaderEnv, InDelivery, decode_in_delivery};
use crate::model::{DeliveryMeta, QuarantineReason, Quarantined, Record};

/// Largest member we inflate. Real members are a few KiB; a member claiming more is a zip bomb or
/// garbage and is quarantined instead of exhausting memory.
pub const MAX_MEMBER_BYTES: u64 = 256 * 1024 * 1024;
/// Largest total we inflate from one archive; members past it are quarantined unread.
pub const MAX_ARCHIVE_BYTES: u64 = 1024 * 1024 * 1024;

/// Local file header signature, and the end-of-central-directory signature an empty zip starts with.
const ZIP_LOCAL: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY: &[u8] = b"PK\x05\x06";

/// Does the body claim to be a zip archive?
pub fn looks_like_zip(body: &[u8]) -> bool {
    body.starts_with(ZIP_LOCAL) || body.starts_with(ZIP_EMPTY)
}

/// Decode a raw delivery: zip when it carries a zip signature, else a bare bundle.
pub(crate) fn decode_raw(meta: &DeliveryMeta, body: &[u8], env: &HeaderEnv, out: &mut Vec<Record>) {
    if looks_like_zip(body) {
        decode_zip(meta, body, env, out);
    } else {
        let before = out.len();
        decode_bundle(meta, body, "bare bundle", body, env, out);
        if out.len() == before {
            out.push(quarantine(
                meta,
                QuarantineReason::BadFraming,
                "bare bundle: empty body, no records".to_owned(),
                body,
            ));
        }
    }
}

fn quarantine(meta: &DeliveryMeta, reason: QuarantineReason, error: String, body: &[u8]) -> Record {
    Record::Quarantined(Box::new(Quarantined::new(
        meta,
        reason,
        error,
        body.to_vec(),
    )))
}

/// One zip member: its name and its inflated bytes, or why they could not be read.
struct Member {
    name: String,
    data: Result<Vec<u8>, String>,
}

/// Open the archive and inflate every file member. Runs under `catch_unwind`: the zip parser is
/// third-party code fed hostile bytes, and a bug there must cost one delivery, not the daemon.
fn read_zip(body: &[u8]) -> Result<Vec<Member>, String> {
    let mut archive =
        ZipArchive::new(Cursor::new(body)).map_err(|e| format!("zip archive unreadable: {e}"))?;
    let mut members = Vec::with_capacity(archive.len().min(1024));
    let mut total = 0u64;
    for i in 0..archive.len() {
        if total > MAX_ARCHIVE_BYTES {
            members.push(Member {
                name: format!("#{i} and after"),
                data: Err(format!(
                    "not read: the archive inflates to more than {MAX_ARCHIVE_BYTES} bytes"
                )),
            });
            break;
        }
        let mut file = match archive.by_index(i) {
            Ok(f) => f,
            Err(e) => {
                members.push(Member {
                    name: format!("#{i}"),
                    data: Err(format!("cannot open: {e}")),
                });
                continue;
            }
        };
        if file.is_dir() {
            continue;
        }
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        let mut data = Vec::with_capacity(file.size().min(16 * 1024 * 1024) as usize);
        let data = match (&mut file)
            .take(MAX_MEMBER_BYTES + 1)
            .read_to_end(&mut data)
        {
            Err(e) => Err(format!("read failed: {e}")),
            Ok(_) if data.len() as u64 > MAX_MEMBER_BYTES => {
                Err(format!("inflates to more than {MAX_MEMBER_BYTES} bytes"))
            }
            Ok(_) => Ok(data),
        };
        total += data.as_ref().map_or(0, |d| d.len() as u64);
        members.push(Member { name, data });
    }
    Ok(members)
}

fn decode_zip(meta: &DeliveryMeta, body: &[u8], env: &HeaderEnv, out: &mut Vec<Record>) {
    let members = match catch_unwind(AssertUnwindSafe(|| read_zip(body))) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            out.push(quarantine(meta, QuarantineReason::BadZip, e, body));
            return;
        }
        Err(_) => {
            out.push(quarantine(
                meta,
                QuarantineReason::BadZip,
                "zip reader panicked on this archive".to_owned(),
                body,
            ));
            return;
        }
    };
    let before = out.len();
    for m in &members {
        let label = format!("zip member {:?}", m.name);
        match &m.data {
            Ok(data) => decode_bundle(meta, body, &label, data, env, out),
            Err(e) => out.push(quarantine(
                meta,
                QuarantineReason::BadZip,
                format!("{label}: {e}"),
                body,
            )),
        }
    }
    if out.len() == before {
        let what = if members.is_empty() {
            "zip archive has no file members"
        } else {
            "zip archive members hold no records"
        };
        out.push(quarantine(
            meta,
            QuarantineReason::BadZip,
            what.to_owned(),
            body,
        ));
    }
}

/// Decode the records of one bundle (`data`, a zip member or the whole body). `whole` is the
/// delivery body, kept in framing quarantines so the delivery can be re-examined as received.
fn decode_bundle(
    meta: &DeliveryMeta,
    whole: &[u8],
    label: &str,
    data: &[u8],
    env: &HeaderEnv,
    out: &mut Vec<Record>,
) {
    let mut offset = 0usize;
    let mut index = 0usize;
    let mut state = InDelivery::default();
    while offset < data.len() {
        let rest = &data[offset..];
        let Some((prefix, payload)) = rest.split_first_chunk::<4>() else {
            out.push(quarantine(
                meta,
                QuarantineReason::BadFraming,
                format!(
                    "{label}: {} trailing bytes at offset {offset} are too short for a record \
                     length prefix ({index} records before it)",
                    rest.len()
                ),
                whole,
            ));
            return;
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        let Some(record) = payload.get(..len) else {
            out.push(quarantine(
                meta,
                QuarantineReason::BadFraming,
                format!(
                    "{label}: record {index} at offset {offset} declares {len} bytes but only {} \
                     remain ({index} records before it)",
                    payload.len()
                ),
                whole,
            ));
            return;
        };
        match decode_in_delivery(record, env, &mut state) {
            Ok(r) => out.push(r),
            Err(e) => out.push(quarantine(
                meta,
                QuarantineReason::BadProtobuf,
                format!("{label}: record {index} at offset {offset} ({len} bytes): {e}"),
                record,
            )),
        }
        offset += 4 + len;
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use prost::Message;
    use zip::write::SimpleFileOptions;

    use super::*;
    use crate::decode::{RAW_EXCHANGE, decode};
    use crate::model::{EventType, QuarantineReason};
    use crate::proto::{CbEventMsg, CbHeaderMsg, CbRegModMsg};

    fn meta(content_type: &str) -> DeliveryMeta {
        let mut m = DeliveryMeta {
            exchange: RAW_EXCHANGE.to_owned(),
            routing_key: String::new(),
            content_type: Some(content_type.to_owned()),
            ..DeliveryMeta::default()
        };
        m.headers.insert("sensorId".into(), 4.into());
        m.headers.insert("sensorHostName".into(), "HOST".into());
        m
    }

    fn record(i: i64) -> Vec<u8> {
        CbEventMsg {
            header: CbHeaderMsg {
                version: 4,
                timestamp: Some(130921710236713495 + i),
                process_pid: Some(100),
                process_create_time: Some(130921710236713495),
                ..CbHeaderMsg::default()
            },
            regmod: Some(CbRegModMsg {
                action: Some(1),
                ..CbRegModMsg::default()
            }),
            ..CbEventMsg::default()
        }
        .encode_to_vec()
    }

    fn frame(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            out.extend_from_slice(&(r.len() as u32).to_le_bytes());
            out.extend_from_slice(r);
        }
        out
    }

    fn zip(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in members {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn quarantines(recs: &[Record]) -> Vec<&Quarantined> {
        recs.iter()
            .filter_map(|r| match r {
                Record::Quarantined(q) => Some(&**q),
                _ => None,
            })
            .collect()
    }

    fn events(recs: &[Record]) -> usize {
        recs.iter()
            .filter(|r| matches!(r, Record::Event(_)))
            .count()
    }

    #[test]
    fn bare_bundle_with_a_bad_record_keeps_the_others() {
        let garbage = vec![0xff, 0xff, 0xff];
        let body = frame(&[record(1), garbage.clone(), record(2)]);
        let recs = decode(&meta("application/protobuf"), &body);
        assert_eq!(recs.len(), 3);
        assert_eq!(events(&recs), 2);
        let q = quarantines(&recs);
        assert_eq!(q[0].reason, QuarantineReason::BadProtobuf);
        assert_eq!(q[0].body, garbage, "only the bad record's bytes");
        assert!(q[0].error.contains("record 1 at offset"), "{}", q[0].error);
        // Zip bundles carry no env: identity comes from the AMQP headers.
        let Record::Event(e) = &recs[0] else { panic!() };
        assert_eq!(e.sensor_id, Some(4));
        assert_eq!(e.hostname.as_deref(), Some("HOST"));
        assert_eq!(e.event_type, Some(EventType::Regmod));
    }

    #[test]
    fn overrun_and_trailing_bytes_are_framing_errors() {
        let mut body = frame(&[record(1), record(2)]);
        let good = body.len();
        body.extend_from_slice(&1000u32.to_le_bytes());
        body.extend_from_slice(b"short");
        let recs = decode(&meta("application/zip"), &body);
        assert_eq!(events(&recs), 2);
        let q = quarantines(&recs);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].reason, QuarantineReason::BadFraming);
        assert_eq!(q[0].body, body, "the whole delivery body");
        assert!(
            q[0].error.contains(&format!("offset {good}")),
            "{}",
            q[0].error
        );
        assert!(q[0].error.contains("bare bundle"), "{}", q[0].error);

        let mut body = frame(&[record(1)]);
        body.extend_from_slice(&[1, 2]);
        let recs = decode(&meta("application/protobuf"), &body);
        assert_eq!(events(&recs), 1);
        let q = quarantines(&recs);
        assert_eq!(q[0].reason, QuarantineReason::BadFraming);
        assert!(q[0].error.contains("2 trailing bytes"), "{}", q[0].error);
    }

    #[test]
    fn observed_facts_once_per_delivery_and_again_when_they_change() {
        let mut changed = CbEventMsg::decode(record(3).as_slice()).unwrap();
        changed.header.process_path = Some("c:\\now\\known.exe".to_owned());
        let body = frame(&[record(1), record(2), changed.encode_to_vec(), record(4)]);
        let facts = |recs: &[Record]| -> Vec<usize> {
            recs.iter()
                .map(|r| match r {
                    Record::Event(e) => e.processes.len(),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let recs = decode(&meta("application/protobuf"), &body);
        // Same process all along: told once, again when its path becomes known, and again when
        // the fourth event's header differs from what was last told.
        assert_eq!(facts(&recs), [1, 0, 1, 1]);
        let Record::Event(e) = &recs[2] else { panic!() };
        assert_eq!(e.processes[0].path.as_deref(), Some("c:\\now\\known.exe"));
        // The events that matched the facts told share their tag; a change starts a new one.
        let tag = |i: usize| match &recs[i] {
            Record::Event(e) => e.segment_tag,
            other => panic!("{other:?}"),
        };
        assert!(tag(0).same_columns(tag(1)));
        assert!(!tag(1).same_columns(tag(2)));
        assert!(!tag(2).same_columns(tag(3)));
        // Every delivery (a redelivery too) carries the facts itself.
        assert_eq!(
            facts(&decode(&meta("application/protobuf"), &body)),
            [1, 0, 1, 1]
        );
    }

    #[test]
    fn zero_length_record_is_quarantined() {
        let body = frame(&[Vec::new()]);
        let recs = decode(&meta("application/protobuf"), &body);
        let q = quarantines(&recs);
        assert_eq!(recs.len(), 1);
        assert_eq!(q[0].reason, QuarantineReason::BadProtobuf);
        assert!(q[0].body.is_empty());
    }

    #[test]
    fn empty_bodies_are_quarantined() {
        for ct in ["application/protobuf", "application/zip"] {
            let recs = decode(&meta(ct), b"");
            let q = quarantines(&recs);
            assert_eq!(recs.len(), 1, "{ct}");
            assert_eq!(q[0].reason, QuarantineReason::BadFraming, "{ct}");
        }
    }

    #[test]
    fn zip_members_are_bundles() {
        let a = frame(&[record(1), record(2)]);
        let b = frame(&[record(3)]);
        let body = zip(&[("EventLog_1.log", &a), ("EventLog_2.log", &b)]);
        assert!(looks_like_zip(&body));
        let recs = decode(&meta("application/zip"), &body);
        assert_eq!(events(&recs), 3);
        assert!(quarantines(&recs).is_empty());
        // The same bytes announced as protobuf on the raw exchange are also opened as a zip.
        assert_eq!(decode(&meta("application/protobuf"), &body), recs);
    }

    #[test]
    fn bad_member_is_quarantined_and_others_kept() {
        let a = frame(&[record(1)]);
        let b = frame(&[record(2)]);
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, data) in [("good", &a), ("bad", &b)] {
            w.start_file(name, stored).unwrap();
            w.write_all(data).unwrap();
        }
        let mut body = w.finish().unwrap().into_inner();
        // Flip a byte inside the second member's stored data: its CRC check must fail.
        let local = body
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == b"PK\x03\x04")
            .map(|(i, _)| i)
            .nth(1)
            .unwrap();
        let name_len = u16::from_le_bytes([body[local + 26], body[local + 27]]) as usize;
        let extra_len = u16::from_le_bytes([body[local + 28], body[local + 29]]) as usize;
        body[local + 30 + name_len + extra_len + 6] ^= 0xff;
        let recs = decode(&meta("application/zip"), &body);
        let q = quarantines(&recs);
        assert_eq!(q.len(), 1, "{q:?}");
        assert_eq!(q[0].reason, QuarantineReason::BadZip);
        assert_eq!(q[0].body, body, "the whole delivery body");
        assert!(q[0].error.contains("\"bad\""), "{}", q[0].error);
        assert_eq!(events(&recs), 1, "the good member still decodes");
    }

    #[test]
    fn broken_and_empty_zips() {
        let a = frame(&[record(1)]);
        let body = zip(&[("m", &a)]);
        let truncated = &body[..body.len() / 2];
        let recs = decode(&meta("application/zip"), truncated);
        let q = quarantines(&recs);
        assert_eq!(recs.len(), 1);
        assert_eq!(q[0].reason, QuarantineReason::BadZip);
        assert_eq!(q[0].body, truncated);

        let empty = zip(&[]);
        assert!(looks_like_zip(&empty));
        let recs = decode(&meta("application/zip"), &empty);
        let q = quarantines(&recs);
        assert_eq!(recs.len(), 1);
        assert_eq!(q[0].reason, QuarantineReason::BadZip);
        assert!(q[0].error.contains("no file members"), "{}", q[0].error);

        let hollow = zip(&[("m", b"")]);
        let recs = decode(&meta("application/zip"), &hollow);
        let q = quarantines(&recs);
        assert_eq!(recs.len(), 1);
        assert!(q[0].error.contains("hold no records"), "{}", q[0].error);
    }

    #[test]
    fn framing_error_names_the_member() {
        let mut a = frame(&[record(1)]);
        a.extend_from_slice(&[9]);
        let body = zip(&[("EventLog_x.log", &a)]);
        let recs = decode(&meta("application/zip"), &body);
        let q = quarantines(&recs);
        assert_eq!(events(&recs), 1);
        assert_eq!(q[0].reason, QuarantineReason::BadFraming);
        assert!(q[0].error.contains("EventLog_x.log"), "{}", q[0].error);
        assert_eq!(q[0].body, body);
    }
}
