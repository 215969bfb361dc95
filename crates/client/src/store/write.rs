//! Local writes: one IMMEDIATE SQLite transaction that may create collections and write
//! versions in any number of them, committed at once or not at all.
//!
//! Every local write goes through a [`WriteTxn`]: a single `put` or `delete` is a write
//! transaction with one version, `Replica::transaction` one with many (`crate::txn`). The
//! transaction takes SQLite's write lock when it begins (`BEGIN IMMEDIATE`), re-reads the
//! last HLC stored by any handle (`catch_up_clock`) and stores the last one it issued in the
//! same commit. Versions go through the single apply path, [`apply_versions`], as unsent
//! local versions (`batch_seq` NULL), so sealing sees a transaction whole or not at all
//! (it runs in a transaction of its own, `seal`). Dropping a [`WriteTxn`] without
//! [`WriteTxn::commit`] (an error, a panic) rolls it back; a process killed before the
//! commit leaves nothing either: SQLite's WAL discards frames of uncommitted transactions.
//!
//! Each operation runs inside a savepoint ([`WriteTxn::atomically`]), so an operation that
//! fails part-way is undone alone and the transaction stays usable. If SQLite itself ended
//! the transaction after an error (it may on a full disk or I/O error), the transaction is
//! marked broken: later operations and the commit fail with
//! [`ClientError::TransactionAborted`], never writing outside a transaction.

use rusqlite::{OptionalExtension, params};
use sealsync_core::{CollectionId, DeviceId, HlcClock, Policy, VersionId};
use sealsync_crypto::SymmetricKey;

use super::index::Indexer;
use super::records::{NewVersion, RecordRow, apply_versions_with, record_row, value_of};
use super::{
    CollInfo, Store, catch_up_clock, meta, row_to_coll, set_meta_tx, validate_collection_name,
};
use crate::clock::DeviceClock;
use crate::error::ClientError;

/// An open local write transaction on the store (module documentation).
pub(crate) struct WriteTxn<'a> {
    tx: rusqlite::Transaction<'a>,
    storage_key: &'a SymmetricKey,
    clock: &'a mut HlcClock,
    time: &'a DeviceClock,
    device: DeviceId,
    /// Why the transaction can no longer commit (SQLite ended it after an error).
    broken: Option<String>,
    /// The indexes of each collection written, read once per transaction (no index can be
    /// created while it holds the write lock).
    indexers: std::collections::HashMap<i64, Indexer>,
}

impl Store {
    /// Begins a local write transaction (takes SQLite's write lock, waiting for another
    /// writer up to the busy timeout).
    pub(crate) fn begin_write(&mut self) -> Result<WriteTxn<'_>, ClientError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        catch_up_clock(&mut self.clock, &tx)?;
        Ok(WriteTxn {
            tx,
            storage_key: &self.storage_key,
            clock: &mut self.clock,
            time: &self.time,
            device: self.device,
            broken: None,
            indexers: std::collections::HashMap::new(),
        })
    }
}

impl WriteTxn<'_> {
    /// Runs one operation inside a savepoint: on error its writes are undone, the
    /// transaction's earlier writes stay, and it can go on (module documentation).
    pub(crate) fn atomically<R>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<R, ClientError>,
    ) -> Result<R, ClientError> {
        self.usable()?;
        self.tx
            .prepare_cached("SAVEPOINT sealsync_op")?
            .execute([])?;
        match op(self) {
            Ok(out) => {
                self.end_savepoint("RELEASE sealsync_op")?;
                Ok(out)
            }
            Err(e) => {
                if self.tx.is_autocommit() {
                    self.broken = Some(e.to_string());
                } else {
                    self.end_savepoint("ROLLBACK TO sealsync_op")?;
                    self.end_savepoint("RELEASE sealsync_op")?;
                }
                Err(e)
            }
        }
    }

    fn end_savepoint(&mut self, sql: &str) -> Result<(), ClientError> {
        if let Err(e) = self
            .tx
            .prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
        {
            self.broken = Some(e.to_string());
            return Err(e.into());
        }
        Ok(())
    }

    /// Fails if SQLite ended the transaction after an error.
    fn usable(&self) -> Result<(), ClientError> {
        match &self.broken {
            Some(why) => Err(ClientError::TransactionAborted(why.clone())),
            None if self.tx.is_autocommit() => Err(ClientError::TransactionAborted(
                "the database ended the transaction".into(),
            )),
            None => Ok(()),
        }
    }

    /// One collection by name, as this transaction sees it.
    pub(crate) fn collection(&self, name: &str) -> Result<Option<CollInfo>, ClientError> {
        self.usable()?;
        collection_by_name(&self.tx, name)
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
        self.usable()?;
        validate_collection_name(name)?;
        let hlc = self.clock.tick(self.time.now());
        self.tx
            .prepare_cached(
                "INSERT INTO collections (name, policy, cid, pinned, created_hlc) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                name,
                policy.as_str(),
                cid.map(|c| c.0.to_vec()),
                pinned,
                hlc.0 as i64
            ])?;
        collection_by_name(&self.tx, name)?
            .ok_or_else(|| ClientError::Internal(format!("collection {name:?} not created")))
    }

    /// Writes one local version of `rkey` (a put, or a delete when `deleted`) stamped with
    /// a fresh HLC. `supersede_heads`: the version supersedes the record's current heads
    /// (the manual policy and resolutions).
    pub(crate) fn write(
        &mut self,
        coll: &CollInfo,
        rkey: &str,
        deleted: bool,
        value: &[u8],
        supersede_heads: bool,
    ) -> Result<VersionId, ClientError> {
        self.usable()?;
        let supersedes = if supersede_heads {
            record_row(&self.tx, coll, rkey)?
                .map(|r| r.heads)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let vid = VersionId::new(self.clock.tick(self.time.now()), self.device);
        if !self.indexers.contains_key(&coll.id) {
            let loaded = Indexer::load(&self.tx, self.storage_key, coll)?;
            self.indexers.insert(coll.id, loaded);
        }
        let indexer = &self.indexers[&coll.id];
        apply_versions_with(
            &self.tx,
            self.storage_key,
            coll,
            vec![NewVersion {
                key: rkey.to_string(),
                vid,
                deleted,
                value: if deleted { Vec::new() } else { value.to_vec() },
                supersedes,
                batch_seq: None,
            }],
            indexer,
        )?;
        Ok(vid)
    }

    /// The record row of `rkey` as this transaction sees it, if any version exists.
    pub(crate) fn record(
        &self,
        coll: &CollInfo,
        rkey: &str,
    ) -> Result<Option<RecordRow>, ClientError> {
        self.usable()?;
        record_row(&self.tx, coll, rkey)
    }

    /// The live value of `rkey` as this transaction sees it (its own writes included).
    pub(crate) fn get(&self, coll: &CollInfo, rkey: &str) -> Result<Option<Vec<u8>>, ClientError> {
        self.usable()?;
        value_of(&self.tx, self.storage_key, coll, rkey)
    }

    /// Stores the last HLC issued and commits.
    pub(crate) fn commit(self) -> Result<(), ClientError> {
        self.usable()?;
        set_meta_tx(
            &self.tx,
            meta::HLC_LAST,
            Some(&self.clock.last().0.to_be_bytes()),
        )?;
        self.tx.commit()?;
        Ok(())
    }
}

/// One collection by name.
pub(super) fn collection_by_name(
    conn: &rusqlite::Connection,
    name: &str,
) -> Result<Option<CollInfo>, ClientError> {
    let mut st = conn.prepare_cached(
        "SELECT id, name, policy, cid, pinned, cursor, created_hlc FROM collections WHERE name = ?1",
    )?;
    st.query_row([name], row_to_coll).optional()?.transpose()
}
