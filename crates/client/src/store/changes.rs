//! The change log read by change feeds and sync reports: the `versions` table itself.
//!
//! Versions are never deleted and their rowids are assigned inside write transactions,
//! which SQLite runs one at a time (across connections and processes), so rowid order is
//! commit order. A rowid is therefore a durable cursor over every version this replica
//! ever stored, local and pulled, with no extra write on the hot path.

use rusqlite::{Connection, params};
use sealsync_core::VersionId;

use super::{Store, corrupt};
use crate::error::ClientError;

/// One stored version, as a change feed reports it.
#[derive(Clone, Debug)]
pub(crate) struct LoggedChange {
    /// Rowid of the version: the change's position in commit order.
    pub(crate) seq: u64,
    pub(crate) collection: String,
    pub(crate) key: String,
    pub(crate) version: VersionId,
    pub(crate) deleted: bool,
}

/// The last position of the log (0 when empty).
pub(crate) fn last_seq(conn: &Connection) -> Result<u64, ClientError> {
    let n: Option<i64> = conn
        .prepare_cached("SELECT MAX(id) FROM versions")?
        .query_row([], |r| r.get(0))?;
    Ok(n.unwrap_or(0) as u64)
}

/// Up to `limit` changes after `after`, in commit order.
pub(crate) fn changes_after(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<LoggedChange>, ClientError> {
    let mut st = conn.prepare_cached(
        "SELECT v.id, c.name, v.key, v.vid, v.deleted FROM versions v
         JOIN collections c ON c.id = v.coll
         WHERE v.id > ?1 ORDER BY v.id LIMIT ?2",
    )?;
    let mut rows = st.query(params![after as i64, limit as i64])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let vid: Vec<u8> = r.get(3)?;
        out.push(LoggedChange {
            seq: r.get::<_, i64>(0)? as u64,
            collection: r.get(1)?,
            key: r.get(2)?,
            version: VersionId::from_slice(&vid).map_err(|_| corrupt("version id"))?,
            deleted: r.get(4)?,
        });
    }
    Ok(out)
}

impl Store {
    /// The last position of the change log.
    pub(crate) fn last_change_seq(&self) -> Result<u64, ClientError> {
        last_seq(&self.conn)
    }
}

/// Opens a read-only connection for a change feed's poller.
pub(crate) fn open_reader(path: &std::path::Path) -> Result<Connection, ClientError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl Store {
    /// The newest version not yet sealed into a batch (0 if none): the sync driver syncs
    /// when it grows, whoever wrote it.
    pub(crate) fn last_unsent_seq(&self) -> Result<u64, ClientError> {
        let n: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(id) FROM versions WHERE batch_seq IS NULL")?
            .query_row([], |r| r.get(0))?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Batches sealed and not yet acknowledged by the server, plus edits not yet sealed
    /// (each becomes part of a batch at the next sync).
    pub(crate) fn pending_work(&self) -> Result<(u64, u64), ClientError> {
        let batches: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE acked = 0")?
            .query_row([], |r| r.get(0))?;
        let edits: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM versions WHERE batch_seq IS NULL")?
            .query_row([], |r| r.get(0))?;
        Ok((batches as u64, edits as u64))
    }
}
