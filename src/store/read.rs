//! Read-only queries over a store: row counts, the event time range, and content fingerprints.
//!
//! All functions take any [`Connection`] (usually one from [`super::open_read_only`]) and never
//! write.

use super::{StoreError, conn_path, schema::TABLES, sql_err};
use rusqlite::Connection;
use rusqlite::types::ValueRef;
use std::collections::BTreeMap;
use std::path::Path;

/// Rows per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableCounts {
    pub events: u64,
    pub processes: u64,
    pub binaries: u64,
    pub notifications: u64,
    pub notification_targets: u64,
    pub quarantine: u64,
    pub sensors: u64,
}

/// Run `f` inside one read transaction so what it reads comes from one snapshot: the caller's if
/// it has a transaction open, else a new one.
fn in_snapshot<T>(
    conn: &Connection,
    f: impl FnOnce(&Path) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let path = conn_path(conn);
    if !conn.is_autocommit() {
        return f(&path);
    }
    let err = sql_err(&path);
    let tx = conn.unchecked_transaction().map_err(&err)?;
    let out = f(&path)?;
    tx.finish().map_err(&err)?;
    Ok(out)
}

/// Count the rows of every table, from one snapshot so the numbers are consistent.
pub fn counts(conn: &Connection) -> Result<TableCounts, StoreError> {
    in_snapshot(conn, |path| {
        let err = sql_err(path);
        let count = |table: &str| -> Result<u64, StoreError> {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .map_err(&err)?;
            Ok(n.max(0) as u64)
        };
        Ok(TableCounts {
            // The rows themselves: counting through the `events` view would join every row.
            events: count("event_rows")?,
            processes: count("processes")?,
            binaries: count("binaries")?,
            notifications: count("notifications")?,
            notification_targets: count("notification_targets")?,
            quarantine: count("quarantine")?,
            sensors: count("sensors")?,
        })
    })
}

/// Earliest and latest event time (UTC ms) stored, ignoring events without a time (0); `None` when
/// there are none.
pub fn time_range(conn: &Connection) -> Result<Option<(i64, i64)>, StoreError> {
    let path = conn_path(conn);
    // Two seeks on event_keys rather than one scan.
    let (lo, hi): (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT (SELECT min(timestamp_ms) FROM event_keys WHERE timestamp_ms > 0), \
                    (SELECT max(timestamp_ms) FROM event_keys WHERE timestamp_ms > 0)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql_err(&path))?;
    Ok(lo.zip(hi))
}

/// Columns left out of the fingerprint: row ids, which depend on insertion order, and the times at
/// which cbtrail received something, which depend on when it ran.
const NOT_FINGERPRINTED: [&str; 4] = ["id", "received_ms", "first_seen_ms", "last_seen_ms"];

/// Row count and an order-independent content digest per table, ignoring row ids and reception times:
/// two databases that stored the same records have equal fingerprints.
///
/// The digest of a table is the wrapping sum of the xxh3-128 of every row, each row hashed over its
/// fingerprinted columns in name order (so the physical column order does not matter). Target rows
/// refer to their notification by its content key rather than its row id.
pub fn fingerprint(conn: &Connection) -> Result<BTreeMap<String, (u64, u128)>, StoreError> {
    in_snapshot(conn, |path| fingerprint_tables(conn, path))
}

fn fingerprint_tables(
    conn: &Connection,
    path: &Path,
) -> Result<BTreeMap<String, (u64, u128)>, StoreError> {
    let err = sql_err(path);
    let mut out = BTreeMap::new();
    for table in TABLES {
        let mut columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(&err)?;
        columns.retain(|c| !NOT_FINGERPRINTED.contains(&c.as_str()));
        columns.sort();
        let select: Vec<String> = columns
            .iter()
            .map(|c| {
                if table == "notification_targets" && c == "notification_id" {
                    "(SELECT n.notification_key FROM notifications n \
                      WHERE n.id = notification_targets.notification_id)"
                        .to_string()
                } else {
                    format!("\"{c}\"")
                }
            })
            .collect();
        let sql = format!("SELECT {} FROM {table}", select.join(", "));
        let mut stmt = conn.prepare(&sql).map_err(&err)?;
        let mut rows = stmt.query([]).map_err(&err)?;
        let (mut n, mut sum) = (0u64, 0u128);
        while let Some(row) = rows.next().map_err(&err)? {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for i in 0..columns.len() {
                hash_value(&mut h, row.get_ref(i).map_err(&err)?);
            }
            n += 1;
            sum = sum.wrapping_add(h.digest128());
        }
        out.insert(table.to_string(), (n, sum));
    }
    Ok(out)
}

/// Hash one value with its type, length-prefixed so adjacent columns cannot run together.
fn hash_value(h: &mut xxhash_rust::xxh3::Xxh3, v: ValueRef<'_>) {
    match v {
        ValueRef::Null => h.update(&[0]),
        ValueRef::Integer(i) => {
            h.update(&[1]);
            h.update(&i.to_le_bytes());
        }
        ValueRef::Real(f) => {
            h.update(&[2]);
            h.update(&f.to_bits().to_le_bytes());
        }
        ValueRef::Text(t) => {
            h.update(&[3]);
            h.update(&(t.len() as u64).to_le_bytes());
            h.update(t);
        }
        ValueRef::Blob(b) => {
            h.update(&[4]);
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        }
    }
}
