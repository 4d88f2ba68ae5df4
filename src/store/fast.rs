//! One prepared statement driven through SQLite's C API, for the writer's per-event insert.
//!
//! rusqlite binds every text and blob with `SQLITE_TRANSIENT`, so SQLite copies each value into
//! memory of its own before the statement runs, and goes through a `dyn ToSql` call and a result
//! check per parameter. For the event insert (19 parameters, hundreds of thousands of rows a
//! second) that was about a seventh of the writer's instructions. [`FastStatement::execute`]
//! binds borrowed values with `SQLITE_STATIC` instead, which is sound because the values outlive
//! the call and every binding is cleared before it returns.

use rusqlite::{Connection, ffi};
use std::ffi::{CStr, CString, c_int};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

/// A value to bind.
#[derive(Debug, Clone, Copy)]
pub(super) enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Param<'a> {
        v.map_or(Param::Null, Param::Text)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Param::Null, Param::Int)
    }
}

/// A prepared statement of `conn`, finalized on drop.
pub(super) struct FastStatement<'c> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: *mut ffi::sqlite3,
    _conn: PhantomData<&'c Connection>,
}

impl<'c> FastStatement<'c> {
    pub(super) fn prepare(conn: &'c Connection, sql: &str) -> rusqlite::Result<FastStatement<'c>> {
        let text = CString::new(sql)?;
        // SAFETY: the handle is only used while `conn` is borrowed, on the thread that owns it.
        let db = unsafe { conn.handle() };
        let mut stmt = ptr::null_mut();
        // SAFETY: `db` is an open connection, `text` a NUL-terminated string that outlives the call.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                text.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(error(db, rc));
        }
        let stmt = NonNull::new(stmt).ok_or_else(|| {
            rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_MISUSE),
                Some(format!("no statement in {sql:?}")),
            )
        })?;
        Ok(FastStatement {
            stmt,
            db,
            _conn: PhantomData,
        })
    }

    /// Bind `params` to `?1`, `?2`, … in order, run the statement to completion and return how
    /// many rows it changed.
    pub(super) fn execute(&mut self, params: &[Param<'_>]) -> rusqlite::Result<usize> {
        let st = self.stmt.as_ptr();
        let result = self.bind_and_step(params);
        // SAFETY: `st` is a live statement. Clearing the bindings leaves no pointer into `params`
        // behind once this call returns (and every parameter NULL for the next call, which
        // `bind_and_step` relies on).
        unsafe {
            ffi::sqlite3_reset(st);
            ffi::sqlite3_clear_bindings(st);
        }
        result
    }

    fn bind_and_step(&mut self, params: &[Param<'_>]) -> rusqlite::Result<usize> {
        let st = self.stmt.as_ptr();
        for (i, p) in params.iter().enumerate() {
            let idx = c_int::try_from(i + 1).unwrap_or(c_int::MAX);
            // SAFETY: `st` is a live statement; text and blob pointers stay valid until the
            // bindings are cleared in `execute`, before `params` can go away (SQLITE_STATIC).
            let rc = unsafe {
                match *p {
                    // Every parameter is already NULL here (after preparing, and after the
                    // previous `execute` cleared its bindings), and binding NULL over NULL still
                    // cost SQLite a value release per call: most event columns are NULL for any
                    // one event type.
                    Param::Null => continue,
                    Param::Int(v) => ffi::sqlite3_bind_int64(st, idx, v),
                    Param::Text(s) => ffi::sqlite3_bind_text64(
                        st,
                        idx,
                        s.as_ptr().cast(),
                        s.len() as ffi::sqlite3_uint64,
                        ffi::SQLITE_STATIC(),
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    Param::Blob(b) => ffi::sqlite3_bind_blob64(
                        st,
                        idx,
                        b.as_ptr().cast(),
                        b.len() as ffi::sqlite3_uint64,
                        ffi::SQLITE_STATIC(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(error(self.db, rc));
            }
        }
        // SAFETY: a live statement with its parameters bound.
        let rc = unsafe { ffi::sqlite3_step(st) };
        match rc {
            ffi::SQLITE_DONE => {
                // SAFETY: `db` is the statement's open connection.
                let n = unsafe { ffi::sqlite3_changes64(self.db) };
                Ok(usize::try_from(n).unwrap_or(0))
            }
            ffi::SQLITE_ROW => Err(rusqlite::Error::ExecuteReturnedResults),
            rc => Err(error(self.db, rc)),
        }
    }
}

impl Drop for FastStatement<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared by `prepare` and is finalized exactly once.
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// The connection's error for `rc`, as rusqlite reports it.
fn error(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: `db` is an open connection; the message is copied before any other call on it.
    let (code, message) = unsafe {
        let msg = ffi::sqlite3_errmsg(db);
        let message = (!msg.is_null()).then(|| CStr::from_ptr(msg).to_string_lossy().into_owned());
        (ffi::sqlite3_extended_errcode(db), message)
    };
    // The step's own code is the reliable one; the connection's may be generic.
    let code = if code & 0xff == rc & 0xff { code } else { rc };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_every_kind_and_reports_constraint_errors_like_rusqlite() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c BLOB, d TEXT, UNIQUE (a, b))")
            .unwrap();
        let mut st =
            FastStatement::prepare(&conn, "INSERT INTO t VALUES (?1, ?2, ?3, ?4)").unwrap();
        let text = String::from("héllo");
        let blob = vec![0u8, 1, 2];
        let row = [
            Param::Int(-7),
            Param::Text(&text),
            Param::Blob(&blob),
            Param::Null,
        ];
        assert_eq!(st.execute(&row).unwrap(), 1);
        let got: (i64, String, Vec<u8>, Option<String>) = conn
            .query_row("SELECT a, b, c, d FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(got, (-7, "héllo".into(), vec![0, 1, 2], None));

        let err = st.execute(&row).unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation),
            "{err}"
        );
        assert!(err.to_string().contains("UNIQUE"), "{err}");
        // The statement is usable again after an error.
        let other = [
            Param::Int(8),
            Param::Text(""),
            Param::Blob(&[]),
            Param::Int(1),
        ];
        assert_eq!(st.execute(&other).unwrap(), 1);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_null_after_a_value_is_stored_as_null() {
        // NULL parameters are left unbound (the previous call cleared every binding): a value
        // bound by one call must not reappear in the next, after success or after an error.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER UNIQUE, b TEXT, c BLOB)")
            .unwrap();
        let mut st = FastStatement::prepare(&conn, "INSERT INTO t VALUES (?1, ?2, ?3)").unwrap();
        let full = |a| [Param::Int(a), Param::Text("x"), Param::Blob(&[1])];
        assert_eq!(st.execute(&full(1)).unwrap(), 1);
        assert_eq!(
            st.execute(&[Param::Int(2), Param::Null, Param::Null])
                .unwrap(),
            1
        );
        assert!(st.execute(&full(1)).is_err(), "duplicate");
        assert_eq!(
            st.execute(&[Param::Null, Param::Null, Param::Null])
                .unwrap(),
            1
        );
        type Row = (Option<i64>, Option<String>, Option<Vec<u8>>);
        let rows: Vec<Row> = conn
            .prepare("SELECT a, b, c FROM t ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (Some(1), Some("x".into()), Some(vec![1])),
                (Some(2), None, None),
                (None, None, None),
            ]
        );
    }

    #[test]
    fn a_statement_that_returns_rows_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        let mut st = FastStatement::prepare(&conn, "SELECT ?1").unwrap();
        assert!(matches!(
            st.execute(&[Param::Int(1)]),
            Err(rusqlite::Error::ExecuteReturnedResults)
        ));
        assert!(FastStatement::prepare(&conn, "SELEKT").is_err());
    }
}
