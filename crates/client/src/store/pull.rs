//! Applying a verified page of pulled batches: versions, records, chains, cursor and clock in
//! one transaction (CF-06: the cursor moves only when the apply commits). A pulled batch of
//! this device's own chain (one its home, restored from an older backup, forgot) is also
//! kept in the outbox, acknowledged, with its exact bytes (CF-10).

use rusqlite::{OptionalExtension, params};
use sealsync_core::{BatchHash, ChainState, DeviceId, Hlc, VersionId};

use super::records::{NewVersion, apply_versions};
use super::seal::{advance_chain, chain_state};
use super::{CollInfo, Store, corrupt, meta, set_meta_tx};
use crate::error::ClientError;

/// One batch that passed every check.
#[derive(Clone, Debug)]
pub(crate) struct PulledBatch {
    pub(crate) author: DeviceId,
    pub(crate) seq: u64,
    pub(crate) hash: BatchHash,
    pub(crate) hlc_max: Hlc,
    pub(crate) mutations: Vec<sealsync_proto::Mutation>,
    /// For a batch of this device's own chain (which its home, restored from an older
    /// backup, forgot): the exact bytes served, kept in the outbox as acknowledged so they
    /// can be re-sent to a restored server (CF-10).
    pub(crate) own_bytes: Option<Vec<u8>>,
}

/// A fully verified page, ready to apply.
#[derive(Clone, Debug, Default)]
pub(crate) struct VerifiedPage {
    pub(crate) batches: Vec<PulledBatch>,
    /// Cursor to store once applied.
    pub(crate) next: u64,
}

impl Store {
    /// Chain state of `author` in `coll`.
    pub(crate) fn chain(&self, author: &DeviceId, coll: i64) -> Result<ChainState, ClientError> {
        chain_state(&self.conn, author, coll)
    }

    /// Hash of `author`'s applied (or own sealed) batch `seq` in `coll`.
    pub(crate) fn known_hash(
        &self,
        author: &DeviceId,
        coll: i64,
        seq: u64,
    ) -> Result<Option<BatchHash>, ClientError> {
        let h: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT hash FROM chain_hashes WHERE author = ?1 AND coll = ?2 AND seq = ?3",
            )?
            .query_row(params![author.0.as_slice(), coll, seq as i64], |r| r.get(0))
            .optional()?;
        h.map(|h| h.try_into().map_err(|_| corrupt("chain hash")))
            .transpose()
    }

    /// Applies a verified page and advances the cursor, all in one transaction. Returns the
    /// number of new versions.
    pub(crate) fn apply_page(
        &mut self,
        coll: &CollInfo,
        page: VerifiedPage,
    ) -> Result<usize, ClientError> {
        let now = self.time.now();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        super::catch_up_clock(&mut self.clock, &tx)?;
        for b in &page.batches {
            // Remote clocks beyond the drift bound (from trusted time) are not adopted
            // (docs/protocol.md): adopting one would make this device's next batch too far
            // ahead for the server.
            let _ = self.clock.observe(b.hlc_max, now);
        }
        let hlc = self.clock.last();
        let mut versions = Vec::new();
        for b in page.batches {
            advance_chain(&tx, &b.author, coll.id, b.seq, &b.hash, b.hlc_max)?;
            if let Some(bytes) = &b.own_bytes {
                tx.prepare_cached(
                    "INSERT OR IGNORE INTO outbox (coll, seq, bytes, hash, acked) VALUES (?1, ?2, ?3, ?4, 1)",
                )?
                .execute(params![coll.id, b.seq as i64, bytes, b.hash.as_slice()])?;
            }
            push_versions(&mut versions, b.author, b.seq, b.mutations)?;
        }
        let applied = apply_versions(&tx, &self.storage_key, coll, versions)?;
        tx.prepare_cached("UPDATE collections SET cursor = ?1 WHERE id = ?2")?
            .execute(params![page.next as i64, coll.id])?;
        set_meta_tx(&tx, meta::HLC_LAST, Some(&hlc.0.to_be_bytes()))?;
        tx.commit()?;
        Ok(applied)
    }

    /// Moves the cursor without applying anything (past our own batches).
    pub(crate) fn set_cursor(&mut self, coll: i64, cursor: u64) -> Result<(), ClientError> {
        self.conn
            .prepare_cached("UPDATE collections SET cursor = ?1 WHERE id = ?2")?
            .execute(params![cursor as i64, coll])?;
        Ok(())
    }
}

/// Appends the versions that the mutations of `author`'s verified batch `seq` make.
pub(super) fn push_versions(
    versions: &mut Vec<NewVersion>,
    author: DeviceId,
    seq: u64,
    mutations: Vec<sealsync_proto::Mutation>,
) -> Result<(), ClientError> {
    for m in mutations {
        versions.push(NewVersion {
            vid: VersionId::new(Hlc(m.hlc), author),
            deleted: m.deleted,
            value: if m.deleted { Vec::new() } else { m.value },
            supersedes: m
                .supersedes
                .iter()
                .map(|s| VersionId::from_slice(s))
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    ClientError::Protocol("malformed supersedes id in a verified batch".into())
                })?,
            key: m.key,
            batch_seq: Some(seq),
        });
    }
    Ok(())
}
