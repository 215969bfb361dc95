//! Re-stamping edits that a fast device clock stamped in the future (NA-10, CD-08).
//!
//! A device whose clock ran fast stamps its edits in the future; the server refuses any batch
//! whose `hlc_max` is beyond its drift bound (`clock_ahead`), so without repair those edits,
//! and every later one (the HLC never goes back), would be refused forever. At each sync,
//! once the server's clock is known again, the sync engine:
//!
//! 1. finds this device's unacknowledged outbox batches holding a version stamped after the
//!    *stamp limit* (trusted server time plus half the drift bound: [`Store::future_outbox`]);
//! 2. asks the server for this device's chain head there and unseals only the batches the
//!    server does not hold ([`Store::unseal_from`]): their versions become unsent again and
//!    this device's chain goes back to the last batch the server holds;
//! 3. re-stamps every unsent version stamped after the limit from trusted time
//!    ([`Store::restamp_future`]); sealing then seals them afresh (new batch, new salt).
//!
//! The HLC rule. Version ids are `(hlc, device)` and must never repeat; and a device's later
//! edit of a key must beat its earlier one. Both hold if every new stamp is above the
//! *floor*: the highest stamp of every version that keeps its stamp, i.e. everything except
//! the versions being re-stamped (those the server may hold, acknowledged or not, and every
//! version pulled from other devices). Versions that never left the device can take new
//! stamps: nobody has seen their ids. So the re-stamped versions get fresh ticks above the
//! floor, in their original order (so each keeps beating what it beat before), and the
//! stored HLC is then *lowered* to the last of them. That is the only place the HLC moves
//! back: it moves back over stamps that no longer exist anywhere. Acknowledged batches keep
//! their stamps (other devices may have them), so an acknowledged stamp bounds the floor; an
//! acknowledged stamp is within the server's drift bound, so the floor is never far ahead.
//!
//! A server that claims it holds fewer batches than it does could make this device re-seal a
//! seq it had already accepted (a second batch for one seq, which other devices report as
//! equivocation: CD-05). It gains nothing it could not get by refusing pushes; honest
//! servers never hold a batch beyond their drift bound.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{OptionalExtension, params};
use sealsync_core::{Hlc, HlcClock, VersionId};

use super::records::{decode_ids, encode_ids, recompute_record, value_aad};
use super::{Store, corrupt, meta, set_meta_tx};
use crate::error::ClientError;

/// The smallest version id blob greater than every version stamped at or before `limit`.
fn vid_bound(limit: Hlc) -> Vec<u8> {
    let mut b = limit.0.to_be_bytes().to_vec();
    b.extend_from_slice(&[0xff; 16]);
    b
}

fn hlc_of_vid(bytes: &[u8]) -> Result<Hlc, ClientError> {
    VersionId::from_slice(bytes)
        .map(|v| v.hlc())
        .map_err(|_| corrupt("version id"))
}

impl Store {
    /// The last HLC stored (issued or observed by any handle on this replica).
    pub(crate) fn stored_hlc(&self) -> Result<Hlc, ClientError> {
        self.meta_blob(meta::HLC_LAST)?
            .map(|b| {
                b.try_into()
                    .map(|b| Hlc(u64::from_be_bytes(b)))
                    .map_err(|_| corrupt("bad hlc"))
            })
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Per local collection, the lowest seq of this device's unacknowledged outbox batches
    /// that hold a version stamped after `limit`.
    pub(crate) fn future_outbox(&self, limit: Hlc) -> Result<Vec<(i64, u64)>, ClientError> {
        let mut st = self.conn.prepare_cached(
            "SELECT o.coll, MIN(o.seq) FROM outbox o
             JOIN versions v ON v.coll = o.coll AND v.batch_seq = o.seq AND v.origin = ?1
             WHERE o.acked = 0 AND v.vid > ?2 GROUP BY o.coll ORDER BY o.coll",
        )?;
        let rows = st.query_map(params![self.device.0.as_slice(), vid_bound(limit)], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Highest acknowledged seq of this device's batches in `coll` (0 if none).
    pub(crate) fn last_acked(&self, coll: i64) -> Result<u64, ClientError> {
        let n: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(seq) FROM outbox WHERE coll = ?1 AND acked = 1")?
            .query_row([coll], |r| r.get(0))?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Marks this device's outbox batches of `coll` up to `seq` acknowledged (the server
    /// says it holds them: an acknowledgement that was lost).
    pub(crate) fn ack_through(&mut self, coll: i64, seq: u64) -> Result<(), ClientError> {
        self.conn
            .prepare_cached("UPDATE outbox SET acked = 1 WHERE coll = ?1 AND seq <= ?2")?
            .execute(params![coll, seq as i64])?;
        Ok(())
    }

    /// Unseals this device's batches of `coll` from seq `from` on, in one transaction: their
    /// outbox rows go, their versions become unsent, and this device's chain goes back to
    /// seq `from - 1`. Refused (nothing changed) if any of them was acknowledged: the server
    /// and other devices may hold it. Returns the number of batches unsealed.
    pub(crate) fn unseal_from(&mut self, coll: i64, from: u64) -> Result<u64, ClientError> {
        let me = self.device.0;
        let from = from.max(1);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let acked: i64 = tx
            .prepare_cached(
                "SELECT count(*) FROM outbox WHERE coll = ?1 AND seq >= ?2 AND acked = 1",
            )?
            .query_row(params![coll, from as i64], |r| r.get(0))?;
        if acked > 0 {
            return Err(corrupt("asked to unseal a batch the server acknowledged"));
        }
        let n = tx
            .prepare_cached("DELETE FROM outbox WHERE coll = ?1 AND seq >= ?2")?
            .execute(params![coll, from as i64])? as u64;
        tx.prepare_cached(
            "UPDATE versions SET batch_seq = NULL WHERE coll = ?1 AND origin = ?2 AND batch_seq >= ?3",
        )?
        .execute(params![coll, me.as_slice(), from as i64])?;
        tx.prepare_cached(
            "DELETE FROM chain_hashes WHERE author = ?1 AND coll = ?2 AND seq >= ?3",
        )?
        .execute(params![me.as_slice(), coll, from as i64])?;
        let prev = from - 1;
        if prev == 0 {
            tx.prepare_cached("DELETE FROM chains WHERE author = ?1 AND coll = ?2")?
                .execute(params![me.as_slice(), coll])?;
        } else {
            let hash: Vec<u8> = tx
                .prepare_cached(
                    "SELECT hash FROM chain_hashes WHERE author = ?1 AND coll = ?2 AND seq = ?3",
                )?
                .query_row(params![me.as_slice(), coll, prev as i64], |r| r.get(0))
                .optional()?
                .ok_or_else(|| corrupt(format!("no hash of own batch {prev}")))?;
            // `hlc_max` of a batch is the stamp of its last (highest) mutation.
            let last: Option<Vec<u8>> = tx
                .prepare_cached(
                    "SELECT MAX(vid) FROM versions WHERE coll = ?1 AND origin = ?2 AND batch_seq = ?3",
                )?
                .query_row(params![coll, me.as_slice(), prev as i64], |r| r.get(0))?;
            let last_hlc = last
                .map(|v| hlc_of_vid(&v))
                .transpose()?
                .unwrap_or_default();
            tx.prepare_cached(
                "INSERT OR REPLACE INTO chains (author, coll, last_seq, last_hash, last_hlc) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![me.as_slice(), coll, prev as i64, hash, last_hlc.0 as i64])?;
        }
        tx.commit()?;
        Ok(n)
    }

    /// Re-stamps, from trusted time `now_ms`, every unsent version of this device stamped
    /// after `limit`, and lowers the stored HLC to the last new stamp (see the module
    /// documentation for why this is safe). Values are re-sealed at rest under their new
    /// ids; records and `supersedes` lists that named an old id are updated. One
    /// transaction. Returns the number of versions re-stamped.
    pub(crate) fn restamp_future(&mut self, limit: Hlc, now_ms: u64) -> Result<usize, ClientError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let plan = plan_restamp(&tx, &self.device, &vid_bound(limit), None)?;
        if plan.future.is_empty() && plan.stored <= limit.max(plan.floor) {
            return Ok(0);
        }
        let floor = plan.floor;
        let (n, last) = run_restamp(&tx, &self.storage_key, &self.device, plan, floor, now_ms)?;
        tx.commit()?;
        self.clock = HlcClock::new(last);
        Ok(n)
    }
}

/// One version to re-stamp: (row id, collection, key, old id, sealed value).
type RestampRow = (i64, i64, String, Vec<u8>, Vec<u8>);

/// Versions to re-stamp, read inside the caller's IMMEDIATE transaction.
pub(super) struct RestampPlan {
    colls: BTreeMap<i64, super::CollInfo>,
    /// (row id, collection, key, old id, sealed value), in old-stamp order.
    future: Vec<RestampRow>,
    /// The highest stamp of every version that keeps its stamp (module docs).
    pub(super) floor: Hlc,
    /// The stored HLC.
    pub(super) stored: Hlc,
}

/// Selects this device's unsent versions whose id is above `bound` (all of them for an
/// empty `bound`: every id is above the empty blob), in local collection `only` if given.
pub(super) fn plan_restamp(
    tx: &rusqlite::Transaction<'_>,
    me: &sealsync_core::DeviceId,
    bound: &[u8],
    only: Option<i64>,
) -> Result<RestampPlan, ClientError> {
    let colls: BTreeMap<i64, super::CollInfo> = {
        let mut st = tx.prepare_cached(
            "SELECT id, name, policy, cid, pinned, cursor, created_hlc FROM collections",
        )?;
        let rows = st.query_map([], super::row_to_coll)?;
        rows.map(|r| r?.map(|c| (c.id, c)))
            .collect::<Result<_, _>>()?
    };
    let future = {
        let mut st = tx.prepare_cached(
            "SELECT id, coll, key, vid, value FROM versions
             WHERE batch_seq IS NULL AND origin = ?1 AND vid > ?2 AND (?3 IS NULL OR coll = ?3)
             ORDER BY vid",
        )?;
        let rows = st.query_map(params![me.0.as_slice(), bound, only], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let floor: Option<Vec<u8>> = tx
        .prepare_cached(
            "SELECT MAX(vid) FROM versions
             WHERE NOT (batch_seq IS NULL AND origin = ?1 AND vid > ?2 AND (?3 IS NULL OR coll = ?3))",
        )?
        .query_row(params![me.0.as_slice(), bound, only], |r| r.get(0))?;
    let floor = floor
        .map(|v| hlc_of_vid(&v))
        .transpose()?
        .unwrap_or_default();
    let stored = {
        let b: Option<Vec<u8>> = tx
            .prepare_cached("SELECT v FROM meta WHERE k = ?1")?
            .query_row([meta::HLC_LAST], |r| r.get(0))
            .optional()?;
        b.map(|b| {
            b.try_into()
                .map(|b| Hlc(u64::from_be_bytes(b)))
                .map_err(|_| corrupt("bad hlc"))
        })
        .transpose()?
        .unwrap_or_default()
    };
    Ok(RestampPlan {
        colls,
        future,
        floor,
        stored,
    })
}

/// Gives the planned versions fresh ticks above `start` (in their old order), re-seals their
/// values at rest, renames them in `supersedes` lists, recomputes their records and stores
/// the last new stamp as the HLC. Returns the number re-stamped and that last stamp (`start`
/// when there was none).
pub(super) fn run_restamp(
    tx: &rusqlite::Transaction<'_>,
    storage_key: &sealsync_crypto::SymmetricKey,
    me: &sealsync_core::DeviceId,
    plan: RestampPlan,
    start: Hlc,
    now_ms: u64,
) -> Result<(usize, Hlc), ClientError> {
    let RestampPlan { colls, future, .. } = plan;
    let mut clock = HlcClock::new(start);
    let mut renamed: BTreeMap<VersionId, VersionId> = BTreeMap::new();
    let mut touched: BTreeSet<(i64, String)> = BTreeSet::new();
    let mut updates = Vec::with_capacity(future.len());
    for (id, coll, key, old, sealed) in future {
        let info = colls
            .get(&coll)
            .ok_or_else(|| corrupt("version of an unknown collection"))?;
        let old = VersionId::from_slice(&old).map_err(|_| corrupt("version id"))?;
        let value = sealsync_crypto::open_random_nonce(
            storage_key,
            &value_aad(&info.name, &key, &old),
            &sealed,
        )
        .map_err(|_| {
            corrupt(format!(
                "value of {key:?} in {:?} does not decrypt",
                info.name
            ))
        })?;
        let new = VersionId::new(clock.tick(now_ms), *me);
        let resealed = sealsync_crypto::seal_random_nonce(
            storage_key,
            &value_aad(&info.name, &key, &new),
            &value,
        );
        renamed.insert(old, new);
        touched.insert((coll, key));
        updates.push((id, new, resealed));
    }
    {
        // Two passes, so a new id never meets an old one still in place (UNIQUE).
        let mut park = tx.prepare_cached("UPDATE versions SET vid = x'00' || vid WHERE id = ?1")?;
        for (id, ..) in &updates {
            park.execute([id])?;
        }
        let mut set =
            tx.prepare_cached("UPDATE versions SET vid = ?1, value = ?2 WHERE id = ?3")?;
        for (id, new, resealed) in &updates {
            set.execute(params![new.0.as_slice(), resealed, id])?;
        }
    }
    if !renamed.is_empty() {
        // Only versions that never left this device can name a re-stamped id.
        let lists: Vec<(i64, Vec<u8>)> = {
            let mut st = tx.prepare_cached(
                "SELECT id, supersedes FROM versions
                 WHERE batch_seq IS NULL AND origin = ?1 AND length(supersedes) > 0",
            )?;
            let rows = st.query_map([me.0.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut set = tx.prepare_cached("UPDATE versions SET supersedes = ?1 WHERE id = ?2")?;
        for (id, list) in lists {
            let ids = decode_ids(&list)?;
            if ids.iter().any(|v| renamed.contains_key(v)) {
                let ids: Vec<VersionId> =
                    ids.iter().map(|v| *renamed.get(v).unwrap_or(v)).collect();
                set.execute(params![encode_ids(&ids), id])?;
            }
        }
    }
    for (coll, key) in &touched {
        if let Some(info) = colls.get(coll) {
            recompute_record(tx, storage_key, info, key)?;
        }
    }
    let last = clock.last();
    set_meta_tx(tx, meta::HLC_LAST, Some(&last.0.to_be_bytes()))?;
    Ok((updates.len(), last))
}
