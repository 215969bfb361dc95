//! Versions and the materialised record view: the single apply path (local edits and pulled
//! batches alike), reads, history, conflicts and state roots.
//!
//! Merging goes through `sealsync_core::resolve`. For `lww` the record is updated with an
//! upsert that keeps the larger version id; the stored leaf is `leaf_hash(key,
//! resolve(Lww, [v]))` of the winning version, which is exactly what resolving the full set
//! gives (max id wins, heads = [winner]). `fields` and `manual` re-resolve every version of
//! each touched key.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, Transaction, params};
use sealsync_core::{Policy, Resolved, Version, VersionId, leaf_hash, resolve, state_root};
use sealsync_crypto::SymmetricKey;

use super::index::Indexer;
use super::{CollInfo, Store, corrupt};
use crate::error::ClientError;

/// A version to insert.
#[derive(Clone, Debug)]
pub(crate) struct NewVersion {
    pub(crate) key: String,
    pub(crate) vid: VersionId,
    pub(crate) deleted: bool,
    pub(crate) value: Vec<u8>,
    pub(crate) supersedes: Vec<VersionId>,
    /// Batch seq for pulled versions; `None` for a local edit (unsent).
    pub(crate) batch_seq: Option<u64>,
}

/// One stored version, decrypted.
#[derive(Clone, Debug)]
pub(crate) struct StoredVersion {
    pub(crate) version: Version,
    pub(crate) synced: bool,
}

/// AAD binding a stored value to its collection, key and version.
pub(crate) fn value_aad(coll: &str, key: &str, vid: &VersionId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + coll.len() + key.len() + 24);
    aad.extend_from_slice(b"sealsync/v1/local-value");
    sealsync_crypto::lp(&mut aad, coll.as_bytes());
    sealsync_crypto::lp(&mut aad, key.as_bytes());
    aad.extend_from_slice(&vid.0);
    aad
}

fn merged_aad(coll: &str, key: &str, winner: &VersionId) -> Vec<u8> {
    let mut aad = value_aad(coll, key, winner);
    aad.extend_from_slice(b"/merged");
    aad
}

pub(crate) fn encode_ids(ids: &[VersionId]) -> Vec<u8> {
    ids.iter().flat_map(|v| v.0).collect()
}

pub(crate) fn decode_ids(bytes: &[u8]) -> Result<Vec<VersionId>, ClientError> {
    if !bytes.len().is_multiple_of(24) {
        return Err(corrupt("version id list"));
    }
    bytes
        .chunks_exact(24)
        .map(|c| VersionId::from_slice(c).map_err(|_| corrupt("version id")))
        .collect()
}

fn vid_of(bytes: &[u8]) -> Result<VersionId, ClientError> {
    VersionId::from_slice(bytes).map_err(|_| corrupt("version id"))
}

/// Inserts `versions` into `coll` and updates the records they touch, and their index
/// terms. Returns the number of versions that were new. The caller commits.
pub(crate) fn apply_versions(
    tx: &Transaction<'_>,
    key: &SymmetricKey,
    coll: &CollInfo,
    versions: Vec<NewVersion>,
) -> Result<usize, ClientError> {
    apply_versions_with(tx, key, coll, versions, &Indexer::load(tx, key, coll)?)
}

/// [`apply_versions`] with the collection's indexes already read in this transaction.
pub(crate) fn apply_versions_with(
    tx: &Transaction<'_>,
    key: &SymmetricKey,
    coll: &CollInfo,
    versions: Vec<NewVersion>,
    indexer: &Indexer,
) -> Result<usize, ClientError> {
    let mut inserted = 0;
    let mut touched = BTreeSet::new();
    let mut ins = tx.prepare_cached(
        "INSERT OR IGNORE INTO versions (coll, key, vid, deleted, value, supersedes, origin, batch_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    let mut upsert = tx.prepare_cached(
        "INSERT INTO records (coll, key, winner, deleted, heads, leaf, merged)
         VALUES (?1, ?2, ?3, ?4, ?3, ?5, NULL)
         ON CONFLICT (coll, key) DO UPDATE SET winner = excluded.winner, deleted = excluded.deleted,
           heads = excluded.heads, leaf = excluded.leaf, merged = NULL
         WHERE excluded.winner > records.winner",
    )?;
    for v in versions {
        let sealed = sealsync_crypto::seal_random_nonce(
            key,
            &value_aad(&coll.name, &v.key, &v.vid),
            &v.value,
        );
        let n = ins.execute(params![
            coll.id,
            v.key,
            v.vid.0.as_slice(),
            v.deleted,
            sealed,
            encode_ids(&v.supersedes),
            v.vid.device().0.as_slice(),
            v.batch_seq.map(|s| s as i64),
        ])?;
        if n == 0 {
            continue;
        }
        inserted += 1;
        if coll.policy == Policy::Lww {
            let version = Version {
                id: v.vid,
                deleted: v.deleted,
                value: v.value,
                supersedes: v.supersedes,
            };
            // Invariant: resolve of a non-empty slice is Some.
            let Some(r) = resolve(Policy::Lww, std::slice::from_ref(&version)) else {
                continue;
            };
            let leaf = leaf_hash(&v.key, &r);
            let changed = upsert.execute(params![
                coll.id,
                v.key,
                r.winner.0.as_slice(),
                r.deleted,
                leaf.as_slice()
            ])?;
            if changed > 0 {
                indexer.update(tx, coll, &v.key, (!r.deleted).then_some(r.value.as_slice()))?;
            }
        } else {
            touched.insert(v.key);
        }
    }
    for k in touched {
        recompute_with(tx, key, coll, &k, indexer)?;
    }
    Ok(inserted)
}

/// Loads and decrypts every version of one record, in id order.
pub(crate) fn load_versions(
    tx: &rusqlite::Connection,
    key: &SymmetricKey,
    coll: &CollInfo,
    rkey: &str,
) -> Result<Vec<StoredVersion>, ClientError> {
    let mut st = tx.prepare_cached(
        "SELECT vid, deleted, value, supersedes, batch_seq IS NOT NULL FROM versions
         WHERE coll = ?1 AND key = ?2 ORDER BY vid",
    )?;
    let mut rows = st.query(params![coll.id, rkey])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let vid = vid_of(&r.get::<_, Vec<u8>>(0)?)?;
        let sealed: Vec<u8> = r.get(2)?;
        let value =
            sealsync_crypto::open_random_nonce(key, &value_aad(&coll.name, rkey, &vid), &sealed)
                .map_err(|_| {
                    corrupt(format!(
                        "value of {rkey:?} in {:?} does not decrypt",
                        coll.name
                    ))
                })?;
        out.push(StoredVersion {
            version: Version {
                id: vid,
                deleted: r.get(1)?,
                value: value.to_vec(),
                supersedes: decode_ids(&r.get::<_, Vec<u8>>(3)?)?,
            },
            synced: r.get(4)?,
        });
    }
    Ok(out)
}

/// Re-resolves one record from all its versions and writes the record row and its index
/// terms.
pub(crate) fn recompute_record(
    tx: &rusqlite::Connection,
    key: &SymmetricKey,
    coll: &CollInfo,
    rkey: &str,
) -> Result<(), ClientError> {
    recompute_with(tx, key, coll, rkey, &Indexer::load(tx, key, coll)?)
}

/// [`recompute_record`] with the collection's indexes already loaded. The one place, with
/// the `lww` upsert of [`apply_versions`], where a record row is written or removed.
fn recompute_with(
    tx: &rusqlite::Connection,
    key: &SymmetricKey,
    coll: &CollInfo,
    rkey: &str,
    indexer: &Indexer,
) -> Result<(), ClientError> {
    let versions: Vec<Version> = load_versions(tx, key, coll, rkey)?
        .into_iter()
        .map(|s| s.version)
        .collect();
    let Some(r) = resolve(coll.policy, &versions) else {
        tx.prepare_cached("DELETE FROM records WHERE coll = ?1 AND key = ?2")?
            .execute(params![coll.id, rkey])?;
        return indexer.update(tx, coll, rkey, None);
    };
    write_record(tx, key, coll, rkey, &r)?;
    indexer.update(tx, coll, rkey, (!r.deleted).then_some(r.value.as_slice()))
}

fn write_record(
    tx: &rusqlite::Connection,
    key: &SymmetricKey,
    coll: &CollInfo,
    rkey: &str,
    r: &Resolved,
) -> Result<(), ClientError> {
    let leaf = leaf_hash(rkey, r);
    let merged = (coll.policy == Policy::Fields && !r.deleted).then(|| {
        sealsync_crypto::seal_random_nonce(key, &merged_aad(&coll.name, rkey, &r.winner), &r.value)
    });
    tx.prepare_cached(
        "INSERT OR REPLACE INTO records (coll, key, winner, deleted, heads, leaf, merged)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        coll.id,
        rkey,
        r.winner.0.as_slice(),
        r.deleted,
        encode_ids(&r.heads),
        leaf.as_slice(),
        merged
    ])?;
    Ok(())
}

/// The record row of `rkey`, if any version exists.
pub(crate) fn record_row(
    conn: &rusqlite::Connection,
    coll: &CollInfo,
    rkey: &str,
) -> Result<Option<RecordRow>, ClientError> {
    let row: Option<(bool, Vec<u8>)> = conn
        .prepare_cached("SELECT deleted, heads FROM records WHERE coll = ?1 AND key = ?2")?
        .query_row(params![coll.id, rkey], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(deleted, heads)| {
        Ok(RecordRow {
            deleted,
            heads: decode_ids(&heads)?,
        })
    })
    .transpose()
}

/// Decrypts the live value of record `rkey` from its row: the merged value (`fields`) if
/// any, else the winning version's `value`.
/// A live record from a row `(key, winner, merged, value)` (the columns scans, index builds
/// and `find` select), decrypted.
pub(super) fn open_row(
    key: &SymmetricKey,
    coll: &CollInfo,
    row: &rusqlite::Row<'_>,
) -> Result<(String, Vec<u8>), ClientError> {
    let rkey: String = row.get(0)?;
    let value = open_sealed(
        key,
        coll,
        &rkey,
        &row.get::<_, Vec<u8>>(1)?,
        row.get(2)?,
        row.get(3)?,
    )?;
    Ok((rkey, value))
}

pub(super) fn open_sealed(
    key: &SymmetricKey,
    coll: &CollInfo,
    rkey: &str,
    winner: &[u8],
    merged: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
) -> Result<Vec<u8>, ClientError> {
    let winner = vid_of(winner)?;
    let (aad, sealed) = match (merged, value) {
        (Some(m), _) => (merged_aad(&coll.name, rkey, &winner), m),
        (None, Some(v)) => (value_aad(&coll.name, rkey, &winner), v),
        (None, None) => return Err(corrupt(format!("record {rkey:?} has no winning version"))),
    };
    let plain = sealsync_crypto::open_random_nonce(key, &aad, &sealed).map_err(|_| {
        corrupt(format!(
            "value of {rkey:?} in {:?} does not decrypt",
            coll.name
        ))
    })?;
    Ok(plain.to_vec())
}

/// The live value of `rkey` on `conn` (inside a transaction: as it sees it), `None` when
/// absent or deleted.
pub(crate) fn value_of(
    conn: &rusqlite::Connection,
    key: &SymmetricKey,
    coll: &CollInfo,
    rkey: &str,
) -> Result<Option<Vec<u8>>, ClientError> {
    type Row = (bool, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT r.deleted, r.winner, r.merged, v.value FROM records r
             LEFT JOIN versions v ON v.coll = r.coll AND v.key = r.key AND v.vid = r.winner
             WHERE r.coll = ?1 AND r.key = ?2",
        )?
        .query_row(params![coll.id, rkey], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    match row {
        None | Some((true, ..)) => Ok(None),
        Some((false, winner, merged, value)) => {
            open_sealed(key, coll, rkey, &winner, merged, value).map(Some)
        }
    }
}

/// Current state of one record row.
#[derive(Clone, Debug)]
pub(crate) struct RecordRow {
    pub(crate) deleted: bool,
    pub(crate) heads: Vec<VersionId>,
}

impl Store {
    /// Whether the collection has any record (tombstones included).
    pub(crate) fn has_records(&self, coll: &CollInfo) -> Result<bool, ClientError> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM records WHERE coll = ?1 LIMIT 1")?
            .query_row([coll.id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn open_value(
        &self,
        coll: &CollInfo,
        rkey: &str,
        winner: &[u8],
        merged: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, ClientError> {
        open_sealed(&self.storage_key, coll, rkey, winner, merged, value)
    }

    /// The live value of `rkey`, `None` when absent or deleted.
    pub(crate) fn get(&self, coll: &CollInfo, rkey: &str) -> Result<Option<Vec<u8>>, ClientError> {
        value_of(&self.conn, &self.storage_key, coll, rkey)
    }

    /// Live records in key order.
    pub(crate) fn list(&self, coll: &CollInfo) -> Result<Vec<(String, Vec<u8>)>, ClientError> {
        let mut st = self.conn.prepare_cached(
            "SELECT r.key, r.winner, r.merged, v.value FROM records r
             LEFT JOIN versions v ON v.coll = r.coll AND v.key = r.key AND v.vid = r.winner
             WHERE r.coll = ?1 AND r.deleted = 0 ORDER BY r.key",
        )?;
        let mut rows = st.query([coll.id])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let k: String = r.get(0)?;
            let value =
                self.open_value(coll, &k, &r.get::<_, Vec<u8>>(1)?, r.get(2)?, r.get(3)?)?;
            out.push((k, value));
        }
        Ok(out)
    }

    /// Every version of `rkey` (decrypted), in id order.
    pub(crate) fn versions(
        &self,
        coll: &CollInfo,
        rkey: &str,
    ) -> Result<Vec<StoredVersion>, ClientError> {
        load_versions(&self.conn, &self.storage_key, coll, rkey)
    }

    /// Keys whose record has more than one head (manual conflicts), in key order.
    pub(crate) fn conflicted_keys(
        &self,
        coll: &CollInfo,
    ) -> Result<Vec<(String, Vec<VersionId>)>, ClientError> {
        let mut st = self.conn.prepare_cached(
            "SELECT key, heads FROM records WHERE coll = ?1 AND length(heads) > 24 ORDER BY key",
        )?;
        let mut rows = st.query([coll.id])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            out.push((r.get(0)?, decode_ids(&r.get::<_, Vec<u8>>(1)?)?));
        }
        Ok(out)
    }

    /// Number of live records.
    pub(crate) fn live_count(&self, coll: &CollInfo) -> Result<u64, ClientError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM records WHERE coll = ?1 AND deleted = 0")?
            .query_row([coll.id], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// The collection's state root over all records (tombstones included) in key order.
    pub(crate) fn collection_root(&self, coll: &CollInfo) -> Result<[u8; 32], ClientError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT leaf FROM records WHERE coll = ?1 ORDER BY key")?;
        let mut rows = st.query([coll.id])?;
        let mut leaves = Vec::new();
        while let Some(r) = rows.next()? {
            let leaf: Vec<u8> = r.get(0)?;
            leaves.push(<[u8; 32]>::try_from(leaf.as_slice()).map_err(|_| corrupt("leaf hash"))?);
        }
        Ok(state_root(&leaves))
    }

    /// Changes a collection's policy and re-resolves all its records in one transaction.
    pub(crate) fn change_policy(
        &mut self,
        coll: &CollInfo,
        policy: Policy,
    ) -> Result<CollInfo, ClientError> {
        let mut updated = coll.clone();
        updated.policy = policy;
        let tx = self.conn.transaction()?;
        tx.prepare_cached("UPDATE collections SET policy = ?1 WHERE id = ?2")?
            .execute(params![policy.as_str(), coll.id])?;
        let keys: Vec<String> = {
            let mut st = tx.prepare_cached("SELECT DISTINCT key FROM versions WHERE coll = ?1")?;
            let rows = st.query_map([coll.id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for k in keys {
            recompute_record(&tx, &self.storage_key, &updated, &k)?;
        }
        tx.commit()?;
        Ok(updated)
    }
}
