//! The replica's local SQLite database (`replica.db`, WAL, `synchronous=FULL`).
//!
//! Tables:
//! - `meta`: device id, account, name, server URL, CA and client certificates, state,
//!   trusted genesis hash, last HLC, offset to the server's clock, pending setup uploads;
//! - `roster`: the verified roster entries (re-verified from genesis at open);
//! - `collections`: by local name, with policy, blinded id once keys are known, `pinned`
//!   (the policy is the one the roster pins for the collection: only then are its batches
//!   pushed and pulled) and pull cursor;
//! - `versions`: every version ever seen, value sealed with the local storage key
//!   (AAD = `lp(collection) || lp(key) || version id`), `batch_seq` NULL while unsent;
//! - `records`: the materialised view (winner, tombstone flag, heads, leaf hash; merged
//!   value only for `fields`);
//! - `chains`/`chain_hashes`: per author and collection, the applied chain and the hash of
//!   every applied batch (the device's own sealed batches included);
//! - `indexes`/`index_terms`: JSON field indexes, terms keyed by HMAC, no plaintext field
//!   values (`index`, maintained by the apply path in `records`);
//! - `outbox`: every batch this device sealed, with its exact bytes and hash; `acked` once
//!   the server acknowledged that very batch (matched by hash), or for batches of its own
//!   taken back from the server after its home was restored (`adopt`); `records` is the
//!   number of mutations a sealed batch holds (for sync progress; 0 in rows sealed by an
//!   older version). Acknowledged batches are kept so that they can be re-sent byte for byte
//!   to a server restored from an older backup (CF-10). They are the device's own ciphertext;
//!   a later compaction can drop those below a verified log head.
//!
//! Every change is one transaction, committed before the call returns (CF-01, CF-06).

mod adopt;
pub(crate) mod changes;
mod index;
mod pull;
mod records;
mod restamp;
mod scan;
mod seal;
mod write;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use sealsync_core::{CollectionId, DeviceId, Hlc, HlcClock, Policy};
use sealsync_crypto::SymmetricKey;

use crate::clock::DeviceClock;
use crate::error::ClientError;

pub(crate) use adopt::AdoptedBatch;
pub(crate) use pull::{PulledBatch, VerifiedPage};
pub(crate) use seal::SealContext;
pub(crate) use write::WriteTxn;

/// Database file name inside the replica's home directory.
pub(crate) const DB_FILE: &str = "replica.db";

const SCHEMA: &str = r"
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS roster (seq INTEGER PRIMARY KEY, entry BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    policy TEXT NOT NULL,
    cid BLOB UNIQUE,
    pinned INTEGER NOT NULL DEFAULT 0,
    cursor INTEGER NOT NULL DEFAULT 0,
    created_hlc INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY,
    coll INTEGER NOT NULL,
    key TEXT NOT NULL,
    vid BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL,
    supersedes BLOB NOT NULL,
    origin BLOB NOT NULL,
    batch_seq INTEGER,
    UNIQUE (coll, key, vid)
);
CREATE INDEX IF NOT EXISTS versions_unsent ON versions (coll, id) WHERE batch_seq IS NULL;
CREATE TABLE IF NOT EXISTS records (
    coll INTEGER NOT NULL,
    key TEXT NOT NULL,
    winner BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    heads BLOB NOT NULL,
    leaf BLOB NOT NULL,
    merged BLOB,
    PRIMARY KEY (coll, key)
);
CREATE TABLE IF NOT EXISTS chains (
    author BLOB NOT NULL,
    coll INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_hash BLOB NOT NULL,
    last_hlc INTEGER NOT NULL,
    PRIMARY KEY (author, coll)
);
CREATE TABLE IF NOT EXISTS chain_hashes (
    author BLOB NOT NULL,
    coll INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (author, coll, seq)
);
CREATE TABLE IF NOT EXISTS outbox (
    coll INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    hash BLOB NOT NULL,
    acked INTEGER NOT NULL DEFAULT 0,
    records INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (coll, seq)
);
";

/// Brings a database made by an earlier version up to [`SCHEMA`]; run after it, each step
/// idempotent. Outbox rows of such a database are all unacknowledged (acknowledged ones
/// used to be deleted), which is what the `acked` default says.
const UPGRADES: &[(&str, &str)] = &[
    (
        "SELECT 1 FROM pragma_table_info('outbox') WHERE name = 'acked'",
        "ALTER TABLE outbox ADD COLUMN acked INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "SELECT 1 FROM pragma_table_info('outbox') WHERE name = 'records'",
        "ALTER TABLE outbox ADD COLUMN records INTEGER NOT NULL DEFAULT 0",
    ),
    (
        "SELECT 1 FROM pragma_table_info('collections') WHERE name = 'pinned'",
        "ALTER TABLE collections ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0",
    ),
];

/// Indexes over columns that [`UPGRADES`] may have added.
const INDEXES: &str =
    "CREATE INDEX IF NOT EXISTS outbox_unacked ON outbox (coll, seq) WHERE acked = 0;";

/// Keys of the `meta` table.
pub(crate) mod meta {
    /// 16-byte device id.
    pub(crate) const DEVICE_ID: &str = "device_id";
    /// Account name.
    pub(crate) const ACCOUNT: &str = "account";
    /// Device name.
    pub(crate) const NAME: &str = "name";
    /// Server URL.
    pub(crate) const SERVER_URL: &str = "server_url";
    /// CA certificate DER.
    pub(crate) const CA_DER: &str = "ca_der";
    /// SHA-256 pin of the CA from the bundle.
    pub(crate) const CA_PIN: &str = "ca_pin";
    /// Client certificate DER.
    pub(crate) const CERT_DER: &str = "cert_der";
    /// "pending" | "trusted".
    pub(crate) const STATE: &str = "state";
    /// Hash of the trusted genesis entry.
    pub(crate) const GENESIS_HASH: &str = "genesis_hash";
    /// Last HLC issued or observed (u64be).
    pub(crate) const HLC_LAST: &str = "hlc_last";
    /// Offset of the server's clock to the local clock, `server − local` in ms (i64be).
    pub(crate) const CLOCK_OFFSET: &str = "clock_offset";
    /// First device: genesis not yet acknowledged by the server (present = pending).
    pub(crate) const UPLOAD_GENESIS: &str = "upload_genesis";
    /// First device: encoded RecoveryBlob not yet uploaded (present = pending).
    pub(crate) const UPLOAD_RECOVERY: &str = "upload_recovery";
    /// When the last sync that reached the end finished (u64be ms, local clock).
    pub(crate) const LAST_SYNC: &str = "last_sync";
    /// The last sync failure or first refusal, one line of text (absent = none since).
    pub(crate) const LAST_ERROR: &str = "last_error";
    /// When [`LAST_ERROR`] happened (u64be ms, local clock).
    pub(crate) const LAST_ERROR_AT: &str = "last_error_at";
    /// Pending device: genesis, roster head and approver confirmed by a pairing MAC, not yet
    /// completed (present = a sync finishes the pairing).
    pub(crate) const PAIRING_CONFIRMED: &str = "pairing_confirmed";
}

/// One local collection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CollInfo {
    /// Local row id.
    pub(crate) id: i64,
    /// Name (local, never sent in the clear).
    pub(crate) name: String,
    /// Merge policy.
    pub(crate) policy: Policy,
    /// Blinded id, once the account keys are known.
    pub(crate) cid: Option<CollectionId>,
    /// The policy is the one pinned in the roster (ours or another device's descriptor).
    pub(crate) pinned: bool,
    /// Pull cursor (server log index).
    pub(crate) cursor: u64,
    /// HLC at local creation (goes into our descriptor).
    pub(crate) created_hlc: Hlc,
}

/// The local store: database plus the key for values at rest and the device's clock.
pub(crate) struct Store {
    conn: Connection,
    storage_key: SymmetricKey,
    device: DeviceId,
    clock: HlcClock,
    /// Wall clock for HLC ticks and drift checks (trusted time, see `crate::clock`).
    pub(crate) time: DeviceClock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch from the system clock (for timestamps that are not
/// HLC values: those use [`Store::time`]).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn corrupt(what: impl Into<String>) -> ClientError {
    ClientError::Corrupt(what.into())
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub(crate) fn open(
        path: &Path,
        storage_key: SymmetricKey,
        device: DeviceId,
    ) -> Result<Self, ClientError> {
        #[cfg(unix)]
        if !path.exists() {
            // Create the file 0600 first: SQLite gives its -wal and -shm files the database
            // file's mode.
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| ClientError::io(format!("cannot create {}", path.display()), e))?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "cache_size", -32_768)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(index::SCHEMA)?;
        for (present, upgrade) in UPGRADES {
            if !conn.prepare(present)?.exists([])? {
                conn.execute_batch(upgrade)?;
            }
        }
        conn.execute_batch(INDEXES)?;
        conn.set_prepared_statement_cache_capacity(64);
        let mut store = Self {
            conn,
            storage_key,
            device,
            clock: HlcClock::default(),
            time: DeviceClock::default(),
        };
        if let Some(stored) = store.meta_blob(meta::DEVICE_ID)?
            && stored != device.0
        {
            return Err(corrupt(
                "the database belongs to another device than the key store",
            ));
        }
        let last = store
            .meta_blob(meta::HLC_LAST)?
            .map(|b| {
                b.try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt("bad hlc"))
            })
            .transpose()?
            .unwrap_or(0);
        store.clock = HlcClock::new(Hlc(last));
        store.time.offset_ms = store
            .meta_blob(meta::CLOCK_OFFSET)?
            .map(|b| {
                b.try_into()
                    .map(i64::from_be_bytes)
                    .map_err(|_| corrupt("bad clock offset"))
            })
            .transpose()?;
        Ok(store)
    }

    /// Stores the offset of the server's clock (`server − local`, ms) and uses it from now
    /// on for HLC ticks.
    pub(crate) fn set_clock_offset(&mut self, offset_ms: i64) -> Result<(), ClientError> {
        self.set_meta(&[(meta::CLOCK_OFFSET, Some(&offset_ms.to_be_bytes()))])?;
        self.time.offset_ms = Some(offset_ms);
        Ok(())
    }

    /// Re-reads the offset to the server's clock, which another handle may have learned.
    pub(crate) fn reload_clock_offset(&mut self) -> Result<(), ClientError> {
        self.time.offset_ms = self
            .meta_blob(meta::CLOCK_OFFSET)?
            .map(|b| {
                b.try_into()
                    .map(i64::from_be_bytes)
                    .map_err(|_| corrupt("bad clock offset"))
            })
            .transpose()?;
        Ok(())
    }

    /// Reads one meta value.
    pub(crate) fn meta_blob(&self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self
            .conn
            .prepare_cached("SELECT v FROM meta WHERE k = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    /// Reads one meta value as text.
    pub(crate) fn meta_text(&self, key: &str) -> Result<Option<String>, ClientError> {
        self.meta_blob(key)?
            .map(|b| String::from_utf8(b).map_err(|_| corrupt(format!("meta {key} is not text"))))
            .transpose()
    }

    /// Reads a required meta value.
    pub(crate) fn meta_required(&self, key: &str) -> Result<Vec<u8>, ClientError> {
        self.meta_blob(key)?
            .ok_or_else(|| corrupt(format!("missing {key}")))
    }

    /// Writes several meta values in one transaction (`None` deletes).
    pub(crate) fn set_meta(&mut self, values: &[(&str, Option<&[u8]>)]) -> Result<(), ClientError> {
        let tx = self.conn.transaction()?;
        for (k, v) in values {
            set_meta_tx(&tx, k, *v)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Reads a u64be meta value.
    pub(crate) fn meta_u64(&self, key: &str) -> Result<Option<u64>, ClientError> {
        self.meta_blob(key)?
            .map(|b| {
                b.try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt(format!("meta {key} is not a number")))
            })
            .transpose()
    }

    /// Number of stored roster entries.
    pub(crate) fn roster_len(&self) -> Result<u64, ClientError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM roster")?
            .query_row([], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Whether some collection has no blinded id yet.
    pub(crate) fn has_collection_without_id(&self) -> Result<bool, ClientError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM collections WHERE cid IS NULL LIMIT 1")?
            .query_row([], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The verified roster entries stored locally, in seq order.
    pub(crate) fn roster_entries(&self) -> Result<Vec<Vec<u8>>, ClientError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT entry FROM roster ORDER BY seq")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores roster entries (already verified by the caller) and meta changes in one
    /// transaction.
    pub(crate) fn store_roster(
        &mut self,
        entries: &[(u64, Vec<u8>)],
        values: &[(&str, Option<&[u8]>)],
    ) -> Result<(), ClientError> {
        let tx = self.conn.transaction()?;
        {
            let mut st =
                tx.prepare_cached("INSERT OR REPLACE INTO roster (seq, entry) VALUES (?1, ?2)")?;
            for (seq, e) in entries {
                st.execute(params![*seq as i64, e])?;
            }
        }
        for (k, v) in values {
            set_meta_tx(&tx, k, *v)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// All local collections, by name.
    pub(crate) fn collections(&self) -> Result<Vec<CollInfo>, ClientError> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, name, policy, cid, pinned, cursor, created_hlc FROM collections ORDER BY name",
        )?;
        let rows = st.query_map([], row_to_coll)?;
        rows.map(|r| r?).collect()
    }

    /// One collection by name.
    pub(crate) fn collection(&self, name: &str) -> Result<Option<CollInfo>, ClientError> {
        write::collection_by_name(&self.conn, name)
    }

    /// The collection by name, or [`ClientError::InvalidInput`] naming it.
    #[cfg(test)]
    pub(crate) fn collection_required(&self, name: &str) -> Result<CollInfo, ClientError> {
        self.collection(name)?.ok_or_else(|| {
            ClientError::InvalidInput(format!("no collection named {}", crate::types::echo(name)))
        })
    }

    /// Creates a collection (validating the name); `cid` when the account keys are known,
    /// `pinned` when its policy comes from the roster's pin.
    pub(crate) fn create_collection(
        &mut self,
        name: &str,
        policy: Policy,
        cid: Option<CollectionId>,
        pinned: bool,
    ) -> Result<CollInfo, ClientError> {
        let mut tx = self.begin_write()?;
        let coll = tx.create_collection(name, policy, cid, pinned)?;
        tx.commit()?;
        Ok(coll)
    }

    /// Sets the blinded ids of collections that have none yet.
    pub(crate) fn assign_collection_ids(
        &mut self,
        id_of: impl Fn(&str) -> CollectionId,
    ) -> Result<(), ClientError> {
        let missing: Vec<CollInfo> = self
            .collections()?
            .into_iter()
            .filter(|c| c.cid.is_none())
            .collect();
        let tx = self.conn.transaction()?;
        for c in missing {
            tx.prepare_cached("UPDATE collections SET cid = ?1 WHERE id = ?2")?
                .execute(params![id_of(&c.name).0.to_vec(), c.id])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Fixes a collection to the roster's pinned `policy`: re-resolves its records if the
    /// local policy differs, then marks it pinned. Idempotent (a crash in between is
    /// repaired by the next sync).
    pub(crate) fn pin_collection(
        &mut self,
        coll: &CollInfo,
        policy: Policy,
    ) -> Result<CollInfo, ClientError> {
        let mut coll = coll.clone();
        if coll.policy != policy {
            coll = self.change_policy(&coll, policy)?;
        }
        self.conn
            .prepare_cached("UPDATE collections SET pinned = 1 WHERE id = ?1")?
            .execute([coll.id])?;
        coll.pinned = true;
        Ok(coll)
    }
}

fn row_to_coll(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<CollInfo, ClientError>> {
    let policy: String = r.get(2)?;
    let cid: Option<Vec<u8>> = r.get(3)?;
    let cursor: i64 = r.get(5)?;
    let id: i64 = r.get(0)?;
    let name: String = r.get(1)?;
    let pushed: bool = r.get(4)?;
    let created: i64 = r.get(6)?;
    Ok((|| {
        Ok(CollInfo {
            id,
            name,
            policy: policy.parse().map_err(|_| corrupt("unknown policy"))?,
            cid: cid
                .map(|c| CollectionId::from_slice(&c).map_err(|_| corrupt("bad collection id")))
                .transpose()?,
            pinned: pushed,
            cursor: cursor as u64,
            created_hlc: Hlc(created as u64),
        })
    })())
}

/// Sets `clock` to the last HLC stored in the database, read inside the caller's IMMEDIATE
/// transaction: another handle on this replica (another process, e.g. a `put` while a `sync`
/// runs) may have issued or observed later values since this one loaded it, and an HLC must
/// never be issued twice (it makes the version id). The stored value is the truth even when
/// it is lower than this handle's: every tick is stored in the transaction that uses it, and
/// only re-stamping lowers it (`restamp`), over stamps that no longer exist.
pub(crate) fn catch_up_clock(clock: &mut HlcClock, conn: &Connection) -> Result<(), ClientError> {
    let stored: Option<Vec<u8>> = conn
        .prepare_cached("SELECT v FROM meta WHERE k = ?1")?
        .query_row([meta::HLC_LAST], |r| r.get(0))
        .optional()?;
    if let Some(b) = stored {
        let stored = Hlc(u64::from_be_bytes(
            b.try_into().map_err(|_| corrupt("bad hlc"))?,
        ));
        *clock = HlcClock::new(stored);
    }
    Ok(())
}

pub(crate) fn set_meta_tx(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    v: Option<&[u8]>,
) -> Result<(), ClientError> {
    match v {
        Some(v) => tx
            .prepare_cached("INSERT OR REPLACE INTO meta (k, v) VALUES (?1, ?2)")?
            .execute(params![key, v])?,
        None => tx
            .prepare_cached("DELETE FROM meta WHERE k = ?1")?
            .execute([key])?,
    };
    Ok(())
}

/// Maximum length of a collection name in bytes.
pub(crate) const MAX_COLLECTION_NAME: usize = 256;

/// Collection names: 1..=256 bytes of UTF-8 without control characters.
pub(crate) fn validate_collection_name(name: &str) -> Result<(), ClientError> {
    if name.is_empty() || name.len() > MAX_COLLECTION_NAME || name.chars().any(char::is_control) {
        return Err(ClientError::InvalidInput(format!(
            "invalid collection name {}: use 1 to {MAX_COLLECTION_NAME} bytes without control characters",
            crate::types::echo(name)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
