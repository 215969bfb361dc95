//! The SQLite backend of [`Store`].
//!
//! One file in WAL mode with `synchronous=FULL` (every acknowledged write is on disk,
//! CF-10). Writes go through one writer connection behind a mutex, each operation one
//! `BEGIN IMMEDIATE` transaction; reads use a small pool of reader connections, which WAL
//! lets run alongside the writer. Every blocking call runs on `spawn_blocking` when used
//! through the [`Store`] trait; the inherent `*_blocking` methods are for the CLI paths
//! (`init`, `enroll_ticket`) that run outside the server.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, Row, Transaction, params};
use sealsync_core::{CollectionId, DeviceId};

use super::{
    AdmissionState, DeviceRecord, NewCollection, NewDevice, NewEnvelope, NewPairing, NewTicket,
    PairingRow, PullPage, PushItem, PushOutcome, RosterRow, Store, StoreError, StoreFuture,
    Written, log, pairing, schema,
};

/// Reader connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;

/// SQLite implementation of [`Store`]. Cheap to clone (shared connections).
#[derive(Clone)]
pub struct SqliteStore {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    path: PathBuf,
    pub(super) writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // journal_mode returns a row; query it rather than execute.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(
            "cannot switch the database to WAL mode",
        ));
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        schema::migrate(&mut writer)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Runs `f` on a blocking thread with the shared state.
    fn run<T, F>(&self, f: F) -> StoreFuture<'static, T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&inner))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
        })
    }

    /// Stores a ticket without a runtime (used by `enroll_ticket`).
    pub fn insert_ticket_blocking(&self, ticket: &NewTicket) -> Result<(), StoreError> {
        self.inner.insert_ticket(ticket)
    }

    /// One stored batch for display by operators: `(account, collection, device, seq,
    /// log index, encoded Sealed)`, the most recent one.
    pub fn sample_batch_blocking(&self) -> Result<Option<SampleBatch>, StoreError> {
        self.inner.read(|c| {
            c.query_row(
                "SELECT account, cid, device_id, seq, log_index, bytes FROM batches ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(SampleBatch {
                        account: r.get(0)?,
                        collection: CollectionId(r.get(1)?),
                        device: DeviceId(r.get(2)?),
                        seq: r.get(3)?,
                        log_index: r.get(4)?,
                        sealed: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(StoreError::from)
        })
    }
}

/// A stored batch as [`SqliteStore::sample_batch_blocking`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleBatch {
    /// Account.
    pub account: String,
    /// Blinded collection id.
    pub collection: CollectionId,
    /// Author.
    pub device: DeviceId,
    /// Author's sequence number.
    pub seq: u64,
    /// Position in the log.
    pub log_index: u64,
    /// The encoded `Sealed`.
    pub sealed: Vec<u8>,
}

fn device_row(r: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let state: String = r.get(6)?;
    Ok(DeviceRecord {
        device_id: DeviceId(r.get(0)?),
        account: r.get(1)?,
        name: r.get(2)?,
        sign_pk: r.get(3)?,
        kx_pk: r.get(4)?,
        cert_fp: r.get(5)?,
        state: AdmissionState::parse(&state),
        enrolled_ms: r.get(7)?,
    })
}

const DEVICE_COLUMNS: &str =
    "device_id, account, name, sign_pk, kx_pk, cert_fp, state, enrolled_ms";

impl Inner {
    /// Runs `f` in one IMMEDIATE transaction on the writer; commits on `Ok`, rolls back on `Err`.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` on a pooled reader connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                c.execute_batch("PRAGMA query_only = ON")?;
                c
            }
        };
        let out = f(&conn);
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        out
    }

    fn insert_ticket(&self, t: &NewTicket) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tickets (hash, account, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![t.hash, t.account, t.created_ms, t.expires_ms],
            )?;
            Ok(())
        })
    }

    fn enroll(
        &self,
        ticket_hash: [u8; 32],
        now_ms: u64,
        d: &NewDevice,
    ) -> Result<String, StoreError> {
        self.write(|tx| {
            let ticket: Option<(String, u64, Option<u64>)> = tx
                .query_row("SELECT account, expires_ms, used_ms FROM tickets WHERE hash = ?1", [ticket_hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
            let Some((account, expires_ms, used_ms)) = ticket else {
                return Err(StoreError::TicketInvalid);
            };
            if used_ms.is_some() || now_ms >= expires_ms {
                return Err(StoreError::TicketInvalid);
            }
            let exists: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = ?1)", [d.device_id.0], |r| r.get(0))?;
            if exists {
                return Err(StoreError::DeviceExists);
            }
            if d.founds_account {
                // MS-09: checked here, not only before the certificate is issued, so that
                // two founders enrolling at once cannot both succeed.
                let taken: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM roster WHERE account = ?1)
                         OR EXISTS (SELECT 1 FROM devices WHERE account = ?1 AND state = ?2)",
                    params![account, AdmissionState::Active.as_str()],
                    |r| r.get(0),
                )?;
                if taken {
                    return Err(StoreError::Conflict("new account requested but the account has devices"));
                }
            }
            let marked = tx.execute(
                "UPDATE tickets SET used_ms = ?1, used_by = ?2 WHERE hash = ?3 AND used_ms IS NULL",
                params![now_ms, d.device_id.0, ticket_hash],
            )?;
            if marked != 1 {
                return Err(StoreError::TicketInvalid);
            }
            tx.execute(
                "INSERT INTO devices (device_id, account, name, sign_pk, kx_pk, cert_fp, state, enrolled_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    d.device_id.0,
                    account,
                    d.name,
                    d.sign_pk,
                    d.kx_pk,
                    d.cert_fp,
                    AdmissionState::Active.as_str(),
                    d.enrolled_ms
                ],
            )?;
            Ok(account)
        })
    }

    fn device(&self, id: DeviceId) -> Result<Option<DeviceRecord>, StoreError> {
        self.read(|c| {
            let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1");
            Ok(c.prepare_cached(&sql)?
                .query_row([id.0], device_row)
                .optional()?)
        })
    }

    fn account_devices(&self, account: &str) -> Result<Vec<DeviceRecord>, StoreError> {
        self.read(|c| {
            let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE account = ?1 ORDER BY enrolled_ms, device_id");
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map([account], device_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn roster(&self, account: &str, from_seq: u64) -> Result<Vec<RosterRow>, StoreError> {
        let Ok(from) = i64::try_from(from_seq) else {
            return Ok(Vec::new());
        };
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, subject, hash, entry FROM roster WHERE account = ?1 AND seq >= ?2 ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![account, from], |r| {
                Ok(RosterRow { seq: r.get(0)?, subject: DeviceId(r.get(1)?), hash: r.get(2)?, entry: r.get(3)? })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn append_roster(&self, account: &str, row: &RosterRow) -> Result<(), StoreError> {
        self.write(|tx| {
            let count: u64 = tx.query_row("SELECT count(*) FROM roster WHERE account = ?1", [account], |r| r.get(0))?;
            if count != row.seq {
                return Err(StoreError::Conflict("roster entry is not the next one"));
            }
            tx.execute(
                "INSERT INTO roster (account, seq, subject, hash, entry) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![account, row.seq, row.subject.0, row.hash, row.entry],
            )?;
            Ok(())
        })
    }

    fn is_roster_member(&self, account: &str, device: DeviceId) -> Result<bool, StoreError> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM roster WHERE account = ?1 AND subject = ?2)",
            )?
            .query_row(params![account, device.0], |r| r.get(0))?)
        })
    }

    fn put_envelope(&self, e: &NewEnvelope) -> Result<Written, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO envelopes (account, recipient, sender, hash, sealed, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![e.account, e.recipient.0, e.sender.0, e.hash, e.sealed, e.created_ms],
            )?;
            Ok(if n == 1 { Written::Created } else { Written::Unchanged })
        })
    }

    fn envelopes_for(
        &self,
        account: &str,
        recipient: DeviceId,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT sealed FROM envelopes WHERE account = ?1 AND recipient = ?2 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![account, recipient.0], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn put_recovery(&self, account: &str, blob: &[u8], now_ms: u64) -> Result<Written, StoreError> {
        self.write(|tx| {
            let existing: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT blob FROM recovery WHERE account = ?1",
                    [account],
                    |r| r.get(0),
                )
                .optional()?;
            match existing {
                Some(b) if b == blob => Ok(Written::Unchanged),
                Some(_) => Err(StoreError::Conflict("recovery blob already stored")),
                None => {
                    tx.execute(
                        "INSERT INTO recovery (account, blob, created_ms) VALUES (?1, ?2, ?3)",
                        params![account, blob, now_ms],
                    )?;
                    Ok(Written::Created)
                }
            }
        })
    }

    fn recovery(&self, account: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT blob FROM recovery WHERE account = ?1",
                [account],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    fn put_collection(&self, n: &NewCollection) -> Result<Written, StoreError> {
        self.write(|tx| {
            let existing: Option<[u8; 32]> = tx
                .query_row(
                    "SELECT hash FROM collections WHERE account = ?1 AND cid = ?2 AND device_id = ?3",
                    params![n.account, n.collection.0, n.device.0],
                    |r| r.get(0),
                )
                .optional()?;
            match existing {
                Some(h) if h == n.hash => Ok(Written::Unchanged),
                Some(_) => Err(StoreError::Conflict("another descriptor from this device")),
                None => {
                    tx.execute(
                        "INSERT INTO collections (account, cid, device_id, hash, descriptor, created_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![n.account, n.collection.0, n.device.0, n.hash, n.sealed, n.created_ms],
                    )?;
                    Ok(Written::Created)
                }
            }
        })
    }

    fn collections(&self, account: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT descriptor FROM collections WHERE account = ?1 ORDER BY cid, device_id",
            )?;
            let rows = stmt.query_map([account], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

impl Store for SqliteStore {
    fn insert_ticket(&self, ticket: NewTicket) -> StoreFuture<'_, ()> {
        self.run(move |db| db.insert_ticket(&ticket))
    }

    fn enroll(
        &self,
        ticket_hash: [u8; 32],
        now_ms: u64,
        device: NewDevice,
    ) -> StoreFuture<'_, String> {
        self.run(move |db| db.enroll(ticket_hash, now_ms, &device))
    }

    fn device(&self, id: DeviceId) -> StoreFuture<'_, Option<DeviceRecord>> {
        self.run(move |db| db.device(id))
    }

    fn account_devices(&self, account: String) -> StoreFuture<'_, Vec<DeviceRecord>> {
        self.run(move |db| db.account_devices(&account))
    }

    fn roster(&self, account: String, from_seq: u64) -> StoreFuture<'_, Vec<RosterRow>> {
        self.run(move |db| db.roster(&account, from_seq))
    }

    fn append_roster(&self, account: String, row: RosterRow) -> StoreFuture<'_, ()> {
        self.run(move |db| db.append_roster(&account, &row))
    }

    fn is_roster_member(&self, account: String, device: DeviceId) -> StoreFuture<'_, bool> {
        self.run(move |db| db.is_roster_member(&account, device))
    }

    fn put_envelope(&self, envelope: NewEnvelope) -> StoreFuture<'_, Written> {
        self.run(move |db| db.put_envelope(&envelope))
    }

    fn envelopes_for(&self, account: String, recipient: DeviceId) -> StoreFuture<'_, Vec<Vec<u8>>> {
        self.run(move |db| db.envelopes_for(&account, recipient))
    }

    fn put_recovery(
        &self,
        account: String,
        blob: Vec<u8>,
        now_ms: u64,
    ) -> StoreFuture<'_, Written> {
        self.run(move |db| db.put_recovery(&account, &blob, now_ms))
    }

    fn recovery(&self, account: String) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.run(move |db| db.recovery(&account))
    }

    fn put_collection(&self, collection: NewCollection) -> StoreFuture<'_, Written> {
        self.run(move |db| db.put_collection(&collection))
    }

    fn collections(&self, account: String) -> StoreFuture<'_, Vec<Vec<u8>>> {
        self.run(move |db| db.collections(&account))
    }

    fn push(
        &self,
        account: String,
        batches: Vec<PushItem>,
        now_ms: u64,
    ) -> StoreFuture<'_, Vec<PushOutcome>> {
        self.run(move |db| db.write(|tx| log::push(tx, &account, &batches, now_ms)))
    }

    fn chain_head(
        &self,
        account: String,
        collection: CollectionId,
        device: DeviceId,
    ) -> StoreFuture<'_, Option<(u64, [u8; 32])>> {
        self.run(move |db| db.read(|c| log::chain_head(c, &account, collection, device)))
    }

    fn pull(
        &self,
        account: String,
        collection: CollectionId,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> StoreFuture<'_, PullPage> {
        self.run(move |db| db.read(|c| log::pull(c, &account, collection, after, limit, max_bytes)))
    }

    fn log_heads(
        &self,
        account: String,
        collections: Vec<CollectionId>,
    ) -> StoreFuture<'_, Vec<u64>> {
        self.run(move |db| db.read(|c| log::log_heads(c, &account, &collections)))
    }

    fn ticket_account(&self, ticket_hash: [u8; 32], now_ms: u64) -> StoreFuture<'_, String> {
        self.run(move |db| db.read(|c| pairing::ticket_account(c, ticket_hash, now_ms)))
    }

    fn pairing_start(&self, p: NewPairing) -> StoreFuture<'_, ()> {
        self.run(move |db| db.write(|tx| pairing::start(tx, &p)))
    }

    fn pairing(
        &self,
        account: String,
        device: DeviceId,
        now_ms: u64,
    ) -> StoreFuture<'_, Option<PairingRow>> {
        self.run(move |db| db.read(|c| pairing::get(c, &account, device, now_ms)))
    }

    fn pairing_reply(
        &self,
        account: String,
        device: DeviceId,
        attempt_id: [u8; 16],
        reply: Vec<u8>,
        now_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            db.write(|tx| pairing::reply(tx, &account, device, attempt_id, &reply, now_ms))
        })
    }

    fn pairing_confirm(
        &self,
        account: String,
        device: DeviceId,
        attempt_id: [u8; 16],
        approver: DeviceId,
        confirm: Vec<u8>,
        now_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            db.write(|tx| {
                pairing::confirm(tx, &account, device, attempt_id, approver, &confirm, now_ms)
            })
        })
    }

    fn pairing_done(
        &self,
        account: String,
        device: DeviceId,
        attempt_id: [u8; 16],
        done: Vec<u8>,
        now_ms: u64,
    ) -> StoreFuture<'_, ()> {
        self.run(move |db| {
            db.write(|tx| pairing::done(tx, &account, device, attempt_id, &done, now_ms))
        })
    }

    fn pairing_abort(
        &self,
        account: String,
        device: DeviceId,
        attempt_id: [u8; 16],
    ) -> StoreFuture<'_, ()> {
        self.run(move |db| db.write(|tx| pairing::abort(tx, &account, device, attempt_id)))
    }
}
