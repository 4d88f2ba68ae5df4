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

use super::protobuf::{HeaderEnv, decode_message};
use crate::model::{DeliveryMeta, QuarantineReason, Quarantined, Record};

/// Largest member we inflate. Real members are a few KiB; a member claiming more is a zip bomb or
/// garbage and is quarantined instead of exhausting memory.
pub const MAX_MEMBER_BYTES: u64 = 256 * 1024 * 1024;

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
    let mut members = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
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
        match decode_message(record, env) {
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
