//! Data endpoints: collection descriptors, batch push, batch pull and the caller's chain
//! head.
//!
//! Writing (push, descriptor) needs roster membership ([`Member`], checked before the body
//! is read): every roster device refuses a batch whose author is outside its verified
//! roster, and a refused batch is refused whole, so a stored batch of an admitted but
//! unapproved device would stall that collection's pull for every member (MS-11, CD-12).
//! Reading (pull, descriptors, chain head) needs only an active device of the account: what
//! it serves is ciphertext and metadata.
//!
//! Push checks, in order, before anything is stored: membership, body size (BI-01), decode,
//! then per batch `sealsync_core::verify_batch` with the caller's enrolled key only (so a
//! batch naming another author is refused, CD-07), account, drift bound (CD-08); then one
//! storage transaction applies the chain checks (gap BI-07, fork/equivocation BI-08,
//! duplicate NA-08/CF-05). Pull serves only the caller's account's logs (BI-16) in pages
//! capped at [`MAX_PULL_ENTRIES`] entries and about [`MAX_PULL_BYTES`] (BI-17).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use sealsync_core::{
    BatchError, ChainCheck, CollectionError, CollectionId, Hlc, verify_batch, verify_descriptor,
    within_drift,
};
use sealsync_proto::{
    ChainHead, MAX_MESSAGE_BYTES, PushRequest, PushResponse, PushResult, Sealed, SealedList,
};

use super::{
    ApiError, AppState, Caller, Member, caller_key, check_suite_and_account, decode, proto,
    query_pairs, query_u64, raw_proto, read_body, read_small, sealed_list,
};
use crate::datadir::now_ms;
use crate::pki::sha256;
use crate::store::{NewCollection, PushItem, StoreError};

/// Most entries in one pull page.
pub(crate) const MAX_PULL_ENTRIES: usize = 1000;
/// How long a push waits for a free slot before answering 503.
const PUSH_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Batch bytes in one pull page, past its first entry.
pub(crate) const MAX_PULL_BYTES: usize = 8 * 1024 * 1024;

pub(super) async fn post_collection(
    State(state): State<AppState>,
    Member(me): Member,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sealed: Sealed = read_small(&headers, body, "descriptor").await?;
    // The shared descriptor verification path (salt included), with the caller's enrolled
    // key only: another author is refused (CD-07).
    let key = caller_key(&me)?;
    let verified = verify_descriptor(&sealed, |id| (*id == me.device_id).then_some(key)).map_err(
        |e| match e {
            CollectionError::NotMember(_) => {
                ApiError::forbidden("descriptor author is not the caller")
            }
            CollectionError::Signature => ApiError::bad_request("descriptor signature invalid"),
            _ => ApiError::bad_request("descriptor header malformed"),
        },
    )?;
    check_suite_and_account(
        &me,
        verified.header.suite,
        &verified.header.account,
        "descriptor",
    )?;
    let collection = verified.collection;
    let sealed_bytes = sealsync_proto::encode(&sealed);
    state
        .store
        .put_collection(NewCollection {
            account: me.account,
            collection,
            device: me.device_id,
            hash: sha256(&sealed_bytes),
            sealed: sealed_bytes,
            created_ms: now_ms(),
        })
        .await?;
    Ok(proto(&SealedList::default()))
}

pub(super) async fn get_collections(
    State(state): State<AppState>,
    Caller(me): Caller,
) -> Result<Response, ApiError> {
    let rows = state.store.collections(me.account).await?;
    sealed_list(&rows, "descriptor")
}

/// Verifies every batch of a push request (CPU work, run on a blocking thread).
fn verify_push(
    request: PushRequest,
    me: &crate::store::DeviceRecord,
    now: u64,
) -> Result<Vec<PushItem>, ApiError> {
    let key = caller_key(me)?;
    let mut items = Vec::with_capacity(request.batches.len());
    for (i, sealed) in request.batches.into_iter().enumerate() {
        // CD-07: only the caller's own key is offered, so another author is UnknownDevice.
        let verified = verify_batch(&sealed, |id| (*id == me.device_id).then_some(key)).map_err(
            |e| match e {
                BatchError::UnknownDevice(_) => {
                    ApiError::forbidden(format!("batch {i}: author is not the caller"))
                }
                BatchError::TooLarge { .. } => ApiError::too_large(format!("batch {i}: too large")),
                e => ApiError::bad_request(format!("batch {i}: {} check failed", e.check())),
            },
        )?;
        if verified.header.account != me.account {
            return Err(ApiError::forbidden(format!("batch {i}: another account")));
        }
        if !within_drift(Hlc(verified.header.hlc_max), now) {
            // CD-08
            return Err(ApiError::clock_ahead(format!(
                "batch {i}: hlc_max beyond the drift bound"
            )));
        }
        items.push(PushItem {
            verified,
            bytes: sealsync_proto::encode(&sealed),
        });
    }
    Ok(items)
}

pub(super) async fn push(
    State(state): State<AppState>,
    Member(me): Member,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let slots = std::sync::Arc::clone(&state.push_slots);
    let _slot = tokio::time::timeout(PUSH_SLOT_WAIT, slots.acquire_owned())
        .await
        .map_err(|_| ApiError::busy("no push slot free"))?
        .map_err(|_| ApiError::internal("push slots closed"))?;
    let bytes = read_body(&headers, body, MAX_MESSAGE_BYTES).await?;
    let request: PushRequest = decode(&bytes, MAX_MESSAGE_BYTES, "push request")?;
    drop(bytes);
    let now = now_ms();
    let caller = me.clone();
    let items = tokio::task::spawn_blocking(move || verify_push(request, &caller, now))
        .await
        .map_err(|e| ApiError::internal(format!("verification task failed: {e}")))??;
    let described: Vec<(CollectionId, u64)> = items
        .iter()
        .map(|i| (i.verified.collection, i.verified.header.seq))
        .collect();
    let outcomes = match state.store.push(me.account.clone(), items, now).await {
        Ok(o) => o,
        Err(StoreError::Chain { index, check }) => {
            let (collection, seq) = described
                .get(index)
                .copied()
                .unwrap_or((CollectionId([0; 16]), 0));
            if let ChainCheck::Fork { .. } = check {
                // BI-08, CD-05: two different batches for one (device, collection, seq).
                tracing::warn!(
                    device = %me.device_id, account = %me.account, collection = %collection, seq,
                    "equivocation: a different batch for a stored sequence number was refused"
                );
            }
            return Err(ApiError::conflict(format!(
                "batch {index} (collection {collection}, seq {seq}) refused: {check:?}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    // Committed: wake the account's watches.
    state.watch.pushed(&me.account, &outcomes);
    let results = outcomes
        .into_iter()
        .map(|o| PushResult {
            collection_id: o.collection.0.to_vec(),
            seq: o.seq,
            log_index: o.log_index,
            duplicate: o.duplicate,
        })
        .collect();
    Ok(proto(&PushResponse { results }))
}

/// The required `collection=HEX` query parameter.
fn query_collection(pairs: &[(&str, &str)]) -> Result<CollectionId, ApiError> {
    pairs
        .iter()
        .find(|(k, _)| *k == "collection")
        .map(|(_, v)| *v)
        .ok_or_else(|| ApiError::bad_request("missing collection"))?
        .parse()
        .map_err(|_| ApiError::bad_request("invalid collection id"))
}

/// `GET /v1/chain?collection=HEX`: the caller's own chain head in that collection of its
/// account (the one the push check compares against), so that a device can re-send what a
/// server restored from an older backup lost (CF-10). Only the caller's own chain is served.
pub(super) async fn chain_head(
    State(state): State<AppState>,
    Caller(me): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let collection = query_collection(&pairs)?;
    let head = state
        .store
        .chain_head(me.account, collection, me.device_id)
        .await?;
    let (last_seq, last_hash) = head.unwrap_or((0, [0; 32]));
    Ok(proto(&ChainHead {
        last_seq,
        last_hash: last_hash.to_vec(),
    }))
}

pub(super) async fn pull(
    State(state): State<AppState>,
    Caller(me): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let collection = query_collection(&pairs)?;
    let after = query_u64(&pairs, "after")?.unwrap_or(0);
    let limit = query_u64(&pairs, "limit")?
        .map_or(MAX_PULL_ENTRIES, |l| {
            usize::try_from(l).unwrap_or(MAX_PULL_ENTRIES)
        })
        .clamp(1, MAX_PULL_ENTRIES);
    let page = state
        .store
        .pull(me.account, collection, after, limit, MAX_PULL_BYTES)
        .await?;
    let next = page.entries.last().map_or(after, |(i, _)| *i);
    Ok(raw_proto(encode_pull(&page.entries, next, page.more)))
}

/// Encodes a `PullResponse` around stored `Sealed` bytes without decoding them:
/// `entries` (field 1) are `LogEntry { index = 1, batch = 2 }`, then `next` (2), `more` (3).
pub(crate) fn encode_pull(entries: &[(u64, Vec<u8>)], next: u64, more: bool) -> Vec<u8> {
    let payload: usize = entries.iter().map(|(_, b)| b.len() + 24).sum();
    let mut buf = Vec::with_capacity(payload + 16);
    for (index, batch) in entries {
        let batch_len = batch.len() as u64;
        let mut entry_len = 0u64;
        if *index != 0 {
            entry_len += 1 + encoded_len_varint(*index) as u64;
        }
        entry_len += 1 + encoded_len_varint(batch_len) as u64 + batch_len;
        encode_key(1, WireType::LengthDelimited, &mut buf);
        encode_varint(entry_len, &mut buf);
        if *index != 0 {
            encode_key(1, WireType::Varint, &mut buf);
            encode_varint(*index, &mut buf);
        }
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(batch_len, &mut buf);
        buf.extend_from_slice(batch);
    }
    if next != 0 {
        encode_key(2, WireType::Varint, &mut buf);
        encode_varint(next, &mut buf);
    }
    if more {
        encode_key(3, WireType::Varint, &mut buf);
        encode_varint(1, &mut buf);
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealsync_proto::{LogEntry, PullResponse};

    #[test]
    fn encode_pull_matches_prost() {
        let a = Sealed {
            header: vec![1, 2, 3],
            ciphertext: vec![9; 300],
            signature: vec![5; 64],
        };
        let b = Sealed {
            header: vec![7],
            ciphertext: vec![],
            signature: vec![6; 64],
        };
        let entries = vec![
            (1u64, sealsync_proto::encode(&a)),
            (70000u64, sealsync_proto::encode(&b)),
        ];
        let bytes = encode_pull(&entries, 70000, true);
        let expected = PullResponse {
            entries: vec![
                LogEntry {
                    index: 1,
                    batch: Some(a),
                },
                LogEntry {
                    index: 70000,
                    batch: Some(b),
                },
            ],
            next: 70000,
            more: true,
        };
        assert_eq!(bytes, sealsync_proto::encode(&expected));
        assert_eq!(
            sealsync_proto::decode::<PullResponse>(&bytes).unwrap(),
            expected
        );
        assert_eq!(encode_pull(&[], 0, false), Vec::<u8>::new());
    }
}
