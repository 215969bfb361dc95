//! The batch logs in SQLite: push (chain-checked append, one transaction per request) and
//! pull (one indexed range query).
//!
//! Each (account, collection) has one log; indexes start at 1 and have no holes, because an
//! index is only taken inside the writer's transaction. Each (account, collection, device)
//! has a chain row with the author's last sequence number, batch hash and `hlc_max`; the
//! author can read its own row back (`GET /v1/chain`) to resume after a restore.

use std::cell::RefCell;

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};
use sealsync_core::{ChainCheck, ChainState, CollectionId, DeviceId, Hlc, check_chain};

use super::{PullPage, PushItem, PushOutcome, StoreError};

fn known_hash(
    tx: &Transaction<'_>,
    account: &str,
    cid: &[u8; 16],
    dev: &[u8; 16],
    seq: u64,
) -> rusqlite::Result<Option<[u8; 32]>> {
    let Ok(seq) = i64::try_from(seq) else {
        return Ok(None);
    };
    tx.prepare_cached(
        "SELECT hash FROM batches WHERE account = ?1 AND cid = ?2 AND device_id = ?3 AND seq = ?4",
    )?
    .query_row(params![account, cid, dev, seq], |r| r.get(0))
    .optional()
}

/// Appends the request's batches in order; see [`super::Store::push`].
pub(super) fn push(
    tx: &Transaction<'_>,
    account: &str,
    items: &[PushItem],
    now_ms: u64,
) -> Result<Vec<PushOutcome>, StoreError> {
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let v = &item.verified;
        let (cid, dev) = (&v.collection.0, &v.device.0);
        let state = tx
            .prepare_cached(
                "SELECT last_seq, last_hash, last_hlc FROM chains WHERE account = ?1 AND cid = ?2 AND device_id = ?3",
            )?
            .query_row(params![account, cid, dev], |r| {
                Ok(ChainState { last_seq: r.get(0)?, last_hash: r.get(1)?, last_hlc: Hlc(r.get(2)?) })
            })
            .optional()?
            .unwrap_or_default();
        let failure = RefCell::new(None);
        let check = check_chain(&state, v, |seq| {
            known_hash(tx, account, cid, dev, seq).unwrap_or_else(|e| {
                *failure.borrow_mut() = Some(e);
                None
            })
        });
        if let Some(e) = failure.into_inner() {
            return Err(e.into());
        }
        let seq = v.header.seq;
        match check {
            ChainCheck::Next => {
                let log_index: u64 = tx
                    .prepare_cached("SELECT COALESCE(MAX(log_index), 0) + 1 FROM batches WHERE account = ?1 AND cid = ?2")?
                    .query_row(params![account, cid], |r| r.get(0))?;
                tx.prepare_cached(
                    "INSERT INTO batches (account, cid, log_index, device_id, seq, hash, created_ms, bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![account, cid, log_index, dev, seq, v.hash, now_ms, item.bytes])?;
                tx.prepare_cached(
                    "INSERT INTO chains (account, cid, device_id, last_seq, last_hash, last_hlc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (account, cid, device_id) DO UPDATE SET
                        last_seq = excluded.last_seq, last_hash = excluded.last_hash, last_hlc = excluded.last_hlc",
                )?
                .execute(params![account, cid, dev, seq, v.hash, v.header.hlc_max])?;
                out.push(PushOutcome {
                    collection: v.collection,
                    seq,
                    log_index,
                    duplicate: false,
                });
            }
            ChainCheck::Duplicate => {
                let log_index: Option<u64> = tx
                    .prepare_cached(
                        "SELECT log_index FROM batches WHERE account = ?1 AND cid = ?2 AND device_id = ?3 AND seq = ?4",
                    )?
                    .query_row(params![account, cid, dev, seq], |r| r.get(0))
                    .optional()?;
                let log_index =
                    log_index.ok_or(StoreError::Corrupt("duplicate batch without a stored row"))?;
                out.push(PushOutcome {
                    collection: v.collection,
                    seq,
                    log_index,
                    duplicate: true,
                });
            }
            check => return Err(StoreError::Chain { index, check }),
        }
    }
    Ok(out)
}

/// Reads one device's chain head; see [`super::Store::chain_head`].
pub(super) fn chain_head(
    conn: &Connection,
    account: &str,
    collection: CollectionId,
    device: DeviceId,
) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT last_seq, last_hash FROM chains WHERE account = ?1 AND cid = ?2 AND device_id = ?3",
        )?
        .query_row(params![account, collection.0, device.0], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

/// Reads one page of a log; see [`super::Store::pull`].
pub(super) fn pull(
    conn: &Connection,
    account: &str,
    collection: CollectionId,
    after: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<PullPage, StoreError> {
    let mut page = PullPage::default();
    let (Ok(after), Ok(fetch)) = (i64::try_from(after), i64::try_from(limit.saturating_add(1)))
    else {
        return Ok(page);
    };
    if limit == 0 {
        return Ok(page);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT log_index, bytes FROM batches WHERE account = ?1 AND cid = ?2 AND log_index > ?3
         ORDER BY log_index LIMIT ?4",
    )?;
    let mut rows = stmt.query(params![account, collection.0, after, fetch])?;
    let mut total = 0usize;
    while let Some(row) = rows.next()? {
        if page.entries.len() == limit {
            page.more = true;
            break;
        }
        let index: u64 = row.get(0)?;
        let bytes = row
            .get_ref(1)?
            .as_blob()
            .map_err(|_| StoreError::Corrupt("batch bytes are not a blob"))?;
        if !page.entries.is_empty() && total.saturating_add(bytes.len()) > max_bytes {
            page.more = true;
            break;
        }
        total = total.saturating_add(bytes.len());
        page.entries.push((index, bytes.to_vec()));
    }
    Ok(page)
}

/// The last index of each named log; see [`super::Store::log_heads`].
pub(super) fn log_heads(
    conn: &Connection,
    account: &str,
    collections: &[CollectionId],
) -> Result<Vec<u64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(MAX(log_index), 0) FROM batches WHERE account = ?1 AND cid = ?2",
    )?;
    collections
        .iter()
        .map(|c| Ok(stmt.query_row(params![account, c.0], |r| r.get(0))?))
        .collect()
}
