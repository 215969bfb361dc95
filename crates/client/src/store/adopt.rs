//! Taking back this device's own batches from the server after its home directory was
//! restored from an older backup (or cloned, or rolled back to a snapshot).
//!
//! The restored device has forgotten the batches it sealed after the backup, while the
//! server (and other devices) hold them; it may since have sealed other batches at those
//! seqs, which the server refuses. Once the sync engine has verified the server's batches
//! of this device's chain after the last point both agree on (`crate::restore`),
//! [`Store::adopt_own_batches`] takes them back and puts this device's newer edits on top,
//! in one transaction:
//!
//! 1. this device's outbox batches after the common seq (never accepted by the server: they
//!    are not acknowledged) are dropped, and their versions become unsent again;
//! 2. an unsent version that is exactly a version of an adopted batch (the same id, key,
//!    value, tombstone flag and `supersedes`: an edit made before the backup, sealed before
//!    the restore by the lost home) is marked as sent in that batch;
//! 3. every other unsent version of this device in the collection gets a fresh stamp above every stamp that
//!    stays, adopted ones included (the rules of `store::restamp`: nobody else has seen these
//!    ids). So they can be sealed after the adopted batches (a chain's stamps only grow), a
//!    version id never names two edits, and each of them still wins over what it beat;
//! 4. the adopted batches are applied like pulled ones, their exact bytes kept in the outbox
//!    as acknowledged (so they can be re-sent to a restored server, CF-10), and this device's
//!    chain moves to the server's head.
//!
//! Nothing the user wrote is lost: the lost edits come back from the server, the newer ones
//! are sealed again (new seqs after the server's head, fresh salts) by the next seal.

use rusqlite::{OptionalExtension, params};
use sealsync_core::{ChainState, Hlc, HlcClock, VersionId};

use super::pull::push_versions;
use super::records::{apply_versions, decode_ids, value_aad};
use super::restamp::{plan_restamp, run_restamp};
use super::seal::advance_chain;
use super::{CollInfo, PulledBatch, Store, corrupt};
use crate::error::ClientError;

/// One verified batch of this device's chain, with the exact bytes the server holds.
#[derive(Clone, Debug)]
pub(crate) struct AdoptedBatch {
    pub(crate) batch: PulledBatch,
    /// The encoded `Sealed`, as served.
    pub(crate) bytes: Vec<u8>,
}

/// What [`Store::adopt_own_batches`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Adopted {
    /// Batches taken back from the server.
    pub(crate) batches: u64,
    /// Local batches dropped (never accepted by the server).
    pub(crate) dropped: u64,
    /// Unsent versions given fresh stamps, to be sealed after the adopted batches.
    pub(crate) restamped: u64,
}

impl Store {
    /// This device's chain state at its own sealed batch `seq` in `coll` (seq 0: the empty
    /// chain), from its kept hash and the batch's `hlc_max`.
    pub(crate) fn own_chain_at(&self, coll: i64, seq: u64) -> Result<ChainState, ClientError> {
        if seq == 0 {
            return Ok(ChainState::default());
        }
        let me = self.device;
        let hash = self
            .known_hash(&me, coll, seq)?
            .ok_or_else(|| corrupt(format!("no hash of own batch {seq}")))?;
        let kept: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT bytes FROM outbox WHERE coll = ?1 AND seq = ?2")?
            .query_row(params![coll, seq as i64], |r| r.get(0))
            .optional()?;
        let last_hlc = match kept {
            Some(bytes) => {
                let sealed: sealsync_proto::Sealed =
                    sealsync_proto::decode(&bytes).map_err(|_| corrupt("outbox batch"))?;
                let header: sealsync_proto::BatchHeader = sealsync_proto::decode(&sealed.header)
                    .map_err(|_| corrupt("outbox batch header"))?;
                Hlc(header.hlc_max)
            }
            // Rows acknowledged by older versions were deleted: `hlc_max` is the stamp of
            // the batch's last (highest) mutation.
            None => {
                let last: Option<Vec<u8>> = self
                    .conn
                    .prepare_cached(
                        "SELECT MAX(vid) FROM versions WHERE coll = ?1 AND origin = ?2 AND batch_seq = ?3",
                    )?
                    .query_row(params![coll, me.0.as_slice(), seq as i64], |r| r.get(0))?;
                last.map(|v| VersionId::from_slice(&v).map(|v| v.hlc()))
                    .transpose()
                    .map_err(|_| corrupt("version id"))?
                    .unwrap_or_default()
            }
        };
        Ok(ChainState {
            last_seq: seq,
            last_hash: hash,
            last_hlc,
        })
    }

    /// Takes back `batches` (this device's, verified as the continuation of its chain at
    /// `common`, in seq order) and puts its newer edits on top (module documentation). One
    /// transaction; refused with nothing changed if an outbox batch after `common` was
    /// acknowledged or the chain at `common` changed since it was verified.
    pub(crate) fn adopt_own_batches(
        &mut self,
        coll: &CollInfo,
        common: &ChainState,
        batches: Vec<AdoptedBatch>,
    ) -> Result<Adopted, ClientError> {
        let me = self.device;
        let after = common.last_seq as i64;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let acked: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM outbox WHERE coll = ?1 AND seq > ?2 AND acked = 1",
            )?
            .query_row(params![coll.id, after], |r| r.get(0))?;
        let hash_at_common: Option<Vec<u8>> = tx
            .prepare_cached(
                "SELECT hash FROM chain_hashes WHERE author = ?1 AND coll = ?2 AND seq = ?3",
            )?
            .query_row(params![me.0.as_slice(), coll.id, after], |r| r.get(0))
            .optional()?;
        let unchanged = match hash_at_common {
            Some(h) => h.as_slice() == common.last_hash.as_slice(),
            None => common.last_seq == 0,
        };
        if acked > 0 || !unchanged {
            return Err(ClientError::ServerFork {
                collection: coll.name.clone(),
                detail: format!(
                    "this device's own batches after seq {after} changed while they were checked"
                ),
            });
        }
        // 1. Drop the local batches the server never took.
        let dropped = tx
            .prepare_cached("DELETE FROM outbox WHERE coll = ?1 AND seq > ?2")?
            .execute(params![coll.id, after])? as u64;
        tx.prepare_cached(
            "UPDATE versions SET batch_seq = NULL WHERE coll = ?1 AND origin = ?2 AND batch_seq > ?3",
        )?
        .execute(params![coll.id, me.0.as_slice(), after])?;
        tx.prepare_cached("DELETE FROM chain_hashes WHERE author = ?1 AND coll = ?2 AND seq > ?3")?
            .execute(params![me.0.as_slice(), coll.id, after])?;
        // 2. Unsent versions that are exactly an adopted version belong to its batch.
        {
            let mut find = tx.prepare_cached(
                "SELECT id, deleted, value, supersedes FROM versions
                 WHERE coll = ?1 AND key = ?2 AND vid = ?3 AND batch_seq IS NULL",
            )?;
            let mut mark = tx.prepare_cached("UPDATE versions SET batch_seq = ?1 WHERE id = ?2")?;
            for b in &batches {
                for m in &b.batch.mutations {
                    let vid = VersionId::new(Hlc(m.hlc), me);
                    let row: Option<(i64, bool, Vec<u8>, Vec<u8>)> = find
                        .query_row(params![coll.id, m.key, vid.0.as_slice()], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .optional()?;
                    let Some((id, deleted, sealed, supersedes)) = row else {
                        continue;
                    };
                    let value = sealsync_crypto::open_random_nonce(
                        &self.storage_key,
                        &value_aad(&coll.name, &m.key, &vid),
                        &sealed,
                    )
                    .map_err(|_| corrupt(format!("value of {:?} does not decrypt", m.key)))?;
                    let same_supersedes = decode_ids(&supersedes)?
                        .iter()
                        .map(|v| v.0.to_vec())
                        .eq(m.supersedes.iter().cloned());
                    let same_value = m.deleted || value.as_slice() == m.value.as_slice();
                    if deleted == m.deleted && same_value && same_supersedes {
                        mark.execute(params![b.batch.seq as i64, id])?;
                    }
                }
            }
        }
        // 3. Everything else unsent goes after the adopted batches.
        let adopted_max = batches
            .iter()
            .map(|b| b.batch.hlc_max)
            .max()
            .unwrap_or_default();
        let plan = plan_restamp(&tx, &me, &[], Some(coll.id))?;
        let start = plan.floor.max(plan.stored).max(adopted_max);
        let now = self.time.now();
        let (restamped, last) = run_restamp(&tx, &self.storage_key, &me, plan, start, now)?;
        // 4. Apply the adopted batches and keep their bytes.
        let n = batches.len() as u64;
        let mut versions = Vec::new();
        {
            let mut keep = tx.prepare_cached(
                "INSERT INTO outbox (coll, seq, bytes, hash, acked) VALUES (?1, ?2, ?3, ?4, 1)",
            )?;
            for AdoptedBatch { batch: b, bytes } in batches {
                advance_chain(&tx, &me, coll.id, b.seq, &b.hash, b.hlc_max)?;
                keep.execute(params![coll.id, b.seq as i64, bytes, b.hash.as_slice()])?;
                push_versions(&mut versions, me, b.seq, b.mutations)?;
            }
        }
        apply_versions(&tx, &self.storage_key, coll, versions)?;
        tx.commit()?;
        self.clock = HlcClock::new(last);
        Ok(Adopted {
            batches: n,
            dropped,
            restamped: restamped as u64,
        })
    }
}
