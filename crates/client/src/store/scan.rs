//! Key scans: prefix, range, order and limit run in SQLite over the `records (coll, key)`
//! primary key, and only the returned rows are decrypted (see `crate::query` for why the
//! clear keys allow this).

use std::ops::Bound;

use rusqlite::types::Value;

use super::records::open_row;
use super::{CollInfo, Store};
use crate::error::ClientError;
use crate::query::{ScanOptions, prefix_end};

impl Store {
    /// Live records of `coll` selected by `opts`, in key order (descending if
    /// `opts.reverse`), at most `opts.limit` of them.
    pub(crate) fn scan(
        &self,
        coll: &CollInfo,
        opts: &ScanOptions,
    ) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        if opts.limit == Some(0) {
            return Ok(Vec::new());
        }
        let (sql, args) = scan_query(coll.id, opts);
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let (k, value) = open_row(&self.storage_key, coll, r)?;
            out.push((k, value));
        }
        Ok(out)
    }
}

/// The SQL of a scan of local collection `coll` and its arguments: only the conditions
/// `opts` asks for, so that SQLite searches the `records (coll, key)` key range.
pub(super) fn scan_query(coll: i64, opts: &ScanOptions) -> (String, Vec<Value>) {
    let mut sql = String::from(
        "SELECT r.key, r.winner, r.merged, v.value FROM records r
             LEFT JOIN versions v ON v.coll = r.coll AND v.key = r.key AND v.vid = r.winner
             WHERE r.coll = ?1 AND r.deleted = 0",
    );
    let mut args: Vec<Value> = vec![Value::Integer(coll)];
    let mut bound = |op: &str, key: &str| {
        args.push(Value::Text(key.to_string()));
        sql.push_str(&format!(" AND r.key {op} ?{}", args.len()));
    };
    if let Some(p) = &opts.prefix {
        bound(">=", p);
        if let Some(end) = prefix_end(p) {
            bound("<", &end);
        }
    }
    match &opts.start {
        Bound::Included(s) => bound(">=", s),
        Bound::Excluded(s) => bound(">", s),
        Bound::Unbounded => {}
    }
    match &opts.end {
        Bound::Included(e) => bound("<=", e),
        Bound::Excluded(e) => bound("<", e),
        Bound::Unbounded => {}
    }
    sql.push_str(if opts.reverse {
        " ORDER BY r.key DESC"
    } else {
        " ORDER BY r.key"
    });
    if let Some(n) = opts.limit {
        args.push(Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", args.len()));
    }
    (sql, args)
}
