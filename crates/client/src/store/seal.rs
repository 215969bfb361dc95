//! Sealing unsent local versions into outbox batches, and the outbox itself.
//!
//! A batch is sealed once: its exact bytes, sequence number and hash are stored in the
//! outbox in the same transaction that marks its versions as sent and advances this device's
//! chain. A retried push therefore resends identical bytes, which the server acknowledges as a
//! duplicate (NA-08, CF-05). Acknowledged batches stay in the outbox, marked `acked`, so that
//! the same bytes can be re-sent to a server restored from an older backup (CF-10).

use rusqlite::{OptionalExtension, params};
use sealsync_core::{
    AccountKeys, BatchDraft, BatchHash, ChainState, CollectionId, DeviceId, Hlc, VersionId,
    seal_batch,
};
use sealsync_crypto::SigningKey;
use sealsync_proto::Message;

use super::records::decode_ids;
use super::{Store, corrupt};
use crate::error::ClientError;

/// Largest plaintext (sum of encoded mutations) this device puts in one batch.
pub(crate) const BATCH_PLAINTEXT_BYTES: usize = 1024 * 1024;
/// Most mutations this device puts in one batch.
pub(crate) const BATCH_MUTATIONS: usize = sealsync_core::MAX_BATCH_MUTATIONS;
/// Batches sealed per transaction.
const BATCHES_PER_TX: usize = 8;

/// What sealing needs beyond the store.
pub(crate) struct SealContext<'a> {
    pub(crate) account: &'a str,
    pub(crate) keys: &'a AccountKeys,
    pub(crate) signing: &'a SigningKey,
    pub(crate) roster_head: [u8; 32],
}

/// One sealed batch (waiting for the server's acknowledgement, when read by
/// [`Store::outbox`]).
#[derive(Clone, Debug)]
pub(crate) struct OutboxEntry {
    pub(crate) coll: i64,
    pub(crate) cid: CollectionId,
    pub(crate) seq: u64,
    /// The batch hash the outbox row holds (an acknowledgement must name it).
    pub(crate) hash: BatchHash,
    pub(crate) bytes: Vec<u8>,
    /// Mutations in the batch (0 if sealed by an older version).
    pub(crate) records: u64,
}

/// Reads the chain state of `author` in local collection `coll`.
pub(crate) fn chain_state(
    conn: &rusqlite::Connection,
    author: &DeviceId,
    coll: i64,
) -> Result<ChainState, ClientError> {
    let row: Option<(i64, Vec<u8>, i64)> = conn
        .prepare_cached(
            "SELECT last_seq, last_hash, last_hlc FROM chains WHERE author = ?1 AND coll = ?2",
        )?
        .query_row(params![author.0.as_slice(), coll], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(match row {
        None => ChainState::default(),
        Some((seq, hash, hlc)) => ChainState {
            last_seq: seq as u64,
            last_hash: hash.try_into().map_err(|_| corrupt("chain hash"))?,
            last_hlc: Hlc(hlc as u64),
        },
    })
}

/// Records that `author`'s batch `seq` with `hash` is applied (or sealed, for our own).
pub(crate) fn advance_chain(
    conn: &rusqlite::Connection,
    author: &DeviceId,
    coll: i64,
    seq: u64,
    hash: &BatchHash,
    hlc_max: Hlc,
) -> Result<(), ClientError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO chains (author, coll, last_seq, last_hash, last_hlc) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![author.0.as_slice(), coll, seq as i64, hash.as_slice(), hlc_max.0 as i64])?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO chain_hashes (author, coll, seq, hash) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        author.0.as_slice(),
        coll,
        seq as i64,
        hash.as_slice()
    ])?;
    Ok(())
}

impl Store {
    /// Seals every unsent local version of collections with a known id into outbox batches
    /// (≤ 1 MiB of plaintext and ≤ 4096 mutations each). Returns the number of batches made.
    pub(crate) fn seal_pending(&mut self, ctx: &SealContext<'_>) -> Result<usize, ClientError> {
        let mut made = 0;
        for coll in self.collections()? {
            let Some(cid) = coll.cid else { continue };
            let epoch = ctx.keys.current_epoch();
            let ckey = ctx
                .keys
                .collection_key(ctx.account, &cid, epoch)
                .ok_or_else(|| corrupt("account keys lack their current epoch"))?;
            loop {
                let n = self.seal_some(ctx, coll.id, &coll.name, cid, epoch, &ckey)?;
                made += n;
                if n < BATCHES_PER_TX {
                    break;
                }
            }
        }
        Ok(made)
    }

    /// Seals up to [`BATCHES_PER_TX`] batches of one collection in one transaction.
    fn seal_some(
        &mut self,
        ctx: &SealContext<'_>,
        coll: i64,
        name: &str,
        cid: CollectionId,
        epoch: u32,
        ckey: &sealsync_crypto::SymmetricKey,
    ) -> Result<usize, ClientError> {
        let me = self.device;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut chain = chain_state(&tx, &me, coll)?;
        let mut made = 0;
        {
            let mut select = tx.prepare_cached(
                "SELECT id, key, vid, deleted, value, supersedes FROM versions
                 WHERE coll = ?1 AND batch_seq IS NULL ORDER BY id LIMIT ?2",
            )?;
            let mut mark = tx.prepare_cached(
                "UPDATE versions SET batch_seq = ?1 WHERE coll = ?2 AND batch_seq IS NULL AND id <= ?3",
            )?;
            let mut outbox = tx.prepare_cached(
                "INSERT INTO outbox (coll, seq, bytes, hash, records) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            while made < BATCHES_PER_TX {
                let mut mutations = Vec::new();
                let mut bytes = 0usize;
                let mut last_row = 0i64;
                {
                    let mut rows = select.query(params![coll, BATCH_MUTATIONS as i64])?;
                    while let Some(r) = rows.next()? {
                        let key: String = r.get(1)?;
                        let vid = VersionId::from_slice(&r.get::<_, Vec<u8>>(2)?)
                            .map_err(|_| corrupt("version id"))?;
                        let sealed: Vec<u8> = r.get(4)?;
                        let value = sealsync_crypto::open_random_nonce(
                            &self.storage_key,
                            &super::records::value_aad(name, &key, &vid),
                            &sealed,
                        )
                        .map_err(|_| {
                            corrupt(format!("value of {key:?} in {name:?} does not decrypt"))
                        })?;
                        let m = sealsync_proto::Mutation {
                            key,
                            hlc: vid.hlc().0,
                            deleted: r.get(3)?,
                            value: value.to_vec(),
                            supersedes: decode_ids(&r.get::<_, Vec<u8>>(5)?)?
                                .into_iter()
                                .map(|v| v.0.to_vec())
                                .collect(),
                        };
                        let size = m.encoded_len() + 8;
                        if !mutations.is_empty() && bytes + size > BATCH_PLAINTEXT_BYTES {
                            break;
                        }
                        bytes += size;
                        last_row = r.get(0)?;
                        mutations.push(m);
                    }
                }
                if mutations.is_empty() {
                    break;
                }
                let seq = chain.last_seq + 1;
                let records = mutations.len() as i64;
                let draft = BatchDraft {
                    account: ctx.account.to_string(),
                    collection: cid,
                    device: me,
                    seq,
                    prev_hash: chain.last_hash,
                    epoch,
                    roster_head: ctx.roster_head,
                    mutations,
                };
                let sealed =
                    seal_batch(draft, ctx.signing, ckey).map_err(|error| ClientError::Batch {
                        check: crate::types::Check::of(&error),
                        collection: name.to_string(),
                        author: me.to_string(),
                        error: error.to_string(),
                    })?;
                let encoded = sealsync_proto::encode(&sealed.sealed);
                outbox.execute(params![
                    coll,
                    seq as i64,
                    encoded,
                    sealed.hash.as_slice(),
                    records
                ])?;
                mark.execute(params![seq as i64, coll, last_row])?;
                let hlc_max = Hlc(sealed.header.hlc_max);
                advance_chain(&tx, &me, coll, seq, &sealed.hash, hlc_max)?;
                chain = ChainState {
                    last_seq: seq,
                    last_hash: sealed.hash,
                    last_hlc: hlc_max,
                };
                made += 1;
            }
        }
        tx.commit()?;
        Ok(made)
    }

    /// Unacknowledged outbox entries in (collection, seq) order.
    pub(crate) fn outbox(&self) -> Result<Vec<OutboxEntry>, ClientError> {
        let mut st = self.conn.prepare_cached(
            "SELECT o.coll, c.cid, o.seq, o.bytes, o.hash, o.records FROM outbox o JOIN collections c ON c.id = o.coll
             WHERE o.acked = 0 ORDER BY o.coll, o.seq",
        )?;
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let cid: Option<Vec<u8>> = r.get(1)?;
            let cid = cid
                .and_then(|c| CollectionId::from_slice(&c).ok())
                .ok_or_else(|| corrupt("outbox batch of a collection without id"))?;
            out.push(OutboxEntry {
                coll: r.get(0)?,
                cid,
                seq: r.get::<_, i64>(2)? as u64,
                bytes: r.get(3)?,
                hash: r
                    .get::<_, Vec<u8>>(4)?
                    .try_into()
                    .map_err(|_| corrupt("outbox hash"))?,
                records: r.get::<_, i64>(5)? as u64,
            });
        }
        Ok(out)
    }

    /// Marks outbox entries acknowledged, each only while its row still holds the batch
    /// with the hash that was sent (a row re-sealed since, by another handle, stays
    /// unacknowledged and is pushed later); their bytes are kept (see the module docs of
    /// `store`). Returns the number of rows marked.
    pub(crate) fn ack_outbox(
        &mut self,
        acked: &[(i64, u64, BatchHash)],
    ) -> Result<usize, ClientError> {
        let tx = self.conn.transaction()?;
        let mut marked = 0;
        {
            let mut st = tx.prepare_cached(
                "UPDATE outbox SET acked = 1 WHERE coll = ?1 AND seq = ?2 AND hash = ?3",
            )?;
            for (coll, seq, hash) in acked {
                marked += st.execute(params![coll, *seq as i64, hash.as_slice()])?;
            }
        }
        tx.commit()?;
        Ok(marked)
    }

    /// Unacknowledged outbox batches of one collection.
    pub(crate) fn outbox_count(&self, coll: i64) -> Result<u64, ClientError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE coll = ?1 AND acked = 0")?
            .query_row([coll], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Sealed batches kept (acknowledged or not) in `coll` with a seq above `after`.
    pub(crate) fn kept_after(&self, coll: i64, after: u64) -> Result<u64, ClientError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE coll = ?1 AND seq > ?2")?
            .query_row(params![coll, after as i64], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// After a server restore: for each `(coll, after)`, puts the acknowledged batches with a
    /// seq above `after` back in the outbox (unacknowledged) and, if there were any, moves the
    /// collection's pull cursor back to 0, all in one transaction. The next push re-sends their exact bytes;
    /// the next pull re-reads the restored log, whose indices the server renumbered, and
    /// skips what was already applied. Returns the number of batches put back.
    pub(crate) fn requeue_sent(&mut self, plan: &[(i64, u64)]) -> Result<u64, ClientError> {
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut requeue = tx.prepare_cached(
                "UPDATE outbox SET acked = 0 WHERE coll = ?1 AND seq > ?2 AND acked = 1",
            )?;
            let mut rewind =
                tx.prepare_cached("UPDATE collections SET cursor = 0 WHERE id = ?1")?;
            for (coll, after) in plan {
                let put_back = requeue.execute(params![coll, *after as i64])? as u64;
                if put_back > 0 {
                    rewind.execute([coll])?;
                }
                n += put_back;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Whether the collection has local versions not yet sealed.
    pub(crate) fn has_unsent(&self, coll: i64) -> Result<bool, ClientError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM versions WHERE coll = ?1 AND batch_seq IS NULL LIMIT 1")?
            .query_row([coll], |_| Ok(()))
            .optional()?
            .is_some())
    }
}
