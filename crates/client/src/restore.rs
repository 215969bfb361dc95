//! A device whose home directory was restored from an older backup (or cloned, or rolled
//! back to a snapshot): taking back its own batches from the server (CF-12, CF-19, CD-05).
//!
//! The restored home has forgotten the batches the device sealed after the backup; the
//! server holds them, and other devices may have applied them. At the next sync the device
//! seals its newer edits at seqs the server already holds with other content (fresh salts
//! keep the keys distinct), and the server refuses them (409, equivocation). The chain head
//! the server then reports (`GET /v1/chain`) lies beyond what the device sealed, or has
//! another hash at a seq it sealed, which `rollback::judge_head` calls a fork. Before
//! calling it that, `Core::own_chain_on_server` looks for this device's own batches
//! on the server after the last point both agree on:
//!
//! - it reads the collection's log from the pull cursor (every batch of this device that
//!   it lacks was appended after the backup, so after the cursor it had then; from the
//!   start of the log if not found there) and keeps this device's batches above its last
//!   acknowledged seq whose hash differs from the one it sealed at that seq (or that it
//!   never sealed); the common point is the seq before the first of them;
//! - they must be every seq from there to the server's head, end at the head's hash, and
//!   verify exactly as pulled batches do (`Core::verify_entries`): signed by this
//!   device's own key in the roster (no other key is accepted), same account and
//!   collection, roster head known, chained by `prev_batch_hash` from the hash this device
//!   sealed at the common seq, stamps growing from that batch's, commitment, decryption and
//!   mutation checks.
//!
//! Only then does `store::adopt` take them back (their edits applied like pulled ones:
//! they are this device's own edits lost in the restore) and put the device's newer edits
//! after them, re-stamped, to be sealed at new seqs after the server's head and pushed in
//! the same sync. Anything else (a forged signature, another device's key, a broken or
//! incomplete chain, a head that is not the end of that chain) stays
//! [`ClientError::ServerFork`] and changes nothing.

use std::collections::{BTreeMap, HashMap};

use sealsync_core::{ChainState, CollectionId, DeviceId, batch_hash};
use sealsync_proto::{ChainHead, LogEntry, PullResponse};

use crate::Core;
use crate::error::ClientError;
use crate::net::Connection;
use crate::pull::check_page_indices;
use crate::store::{AdoptedBatch, CollInfo};
use crate::sync::PULL_PAGE_BATCHES;

/// This device's verified batches on the server after the common point, ready to adopt.
#[derive(Debug)]
pub(crate) struct OwnChain {
    /// This device's chain state at the common point.
    pub(crate) common: ChainState,
    /// The batches after it, in seq order, up to the server's head.
    pub(crate) batches: Vec<AdoptedBatch>,
}

impl Core {
    /// Looks for this device's own batches on the server that continue its chain up to
    /// `head` (module documentation). `Ok(Err(why))` when there is no such verified chain:
    /// the head stays a fork. Network failures are errors.
    pub(crate) async fn own_chain_on_server(
        &mut self,
        conn: &mut Connection,
        coll: &CollInfo,
        cid: CollectionId,
        head: &ChainHead,
    ) -> Result<Result<OwnChain, String>, ClientError> {
        let me = self.device_id;
        let floor = self.store.last_acked(coll.id)?;
        if head.last_seq <= floor {
            return Ok(Err(format!(
                "its head is not after this device's last acknowledged batch {floor}"
            )));
        }
        let mut found = BTreeMap::new();
        let mut starts = vec![coll.cursor];
        if coll.cursor > 0 {
            starts.push(0);
        }
        for start in starts {
            if let Err(why) = self
                .scan_own(
                    conn,
                    coll.id,
                    cid,
                    start,
                    (floor, head.last_seq),
                    &mut found,
                )
                .await?
            {
                return Ok(Err(why));
            }
            if found.contains_key(&head.last_seq) && is_contiguous(&found, head.last_seq) {
                break;
            }
        }
        let Some(&first) = found.keys().next() else {
            return Ok(Err(
                "it holds no batch of this device that this device lacks".into(),
            ));
        };
        if !is_contiguous(&found, head.last_seq) || !found.contains_key(&head.last_seq) {
            return Ok(Err(format!(
                "its batches of this device from seq {first} to its head {} are incomplete",
                head.last_seq
            )));
        }
        let common_seq = first - 1;
        if common_seq > self.store.chain(&me, coll.id)?.last_seq {
            return Ok(Err(format!(
                "this device never sealed seq {common_seq}, before its first batch {first}"
            )));
        }
        let entries: Vec<LogEntry> = found.into_values().collect();
        let last_hash = entries
            .last()
            .and_then(|e| e.batch.as_ref())
            .map(batch_hash);
        if last_hash.map(|h| h.to_vec()) != Some(head.last_hash.clone()) {
            return Ok(Err(
                "its head's hash is not that of its last batch of this device".into(),
            ));
        }
        let common = self.store.own_chain_at(coll.id, common_seq)?;
        let verified = match self.verify_entries(
            coll,
            cid,
            &entries,
            &mut HashMap::new(),
            Some(common),
        ) {
            Ok(v) => v,
            Err(ClientError::Batch { check, error, .. }) => {
                return Ok(Err(format!(
                    "its batches of this device after seq {common_seq} fail the {check} check: {error}"
                )));
            }
            Err(e) => return Err(e),
        };
        if verified.len() != entries.len() || verified.iter().any(|b| b.author != me) {
            return Ok(Err(
                "its batches of this device do not form one chain".into()
            ));
        }
        let batches = verified
            .into_iter()
            .zip(entries)
            .map(|(batch, entry)| AdoptedBatch {
                batch,
                bytes: entry
                    .batch
                    .as_ref()
                    .map(sealsync_proto::encode)
                    .unwrap_or_default(),
            })
            .collect();
        Ok(Ok(OwnChain { common, batches }))
    }

    /// Reads the log of `cid` (local collection `coll`) after index `start` and adds to `found` (by seq) this device's
    /// batches with a seq in `(floor, last]` that it did not seal with that hash. Two
    /// different batches for one seq, or an inconsistent page, is `Ok(Err(why))`.
    async fn scan_own(
        &mut self,
        conn: &mut Connection,
        coll: i64,
        cid: CollectionId,
        start: u64,
        (floor, last): (u64, u64),
        found: &mut BTreeMap<u64, LogEntry>,
    ) -> Result<Result<(), String>, ClientError> {
        let me = self.device_id;
        let mut after = start;
        loop {
            let path =
                format!("/v1/batches?collection={cid}&after={after}&limit={PULL_PAGE_BATCHES}");
            let resp: PullResponse = conn.get(&path).await?;
            if let Err(why) = check_page_indices(after, &resp.entries, resp.next) {
                return Ok(Err(format!("it sent an inconsistent page: {why}")));
            }
            let more = resp.more && !resp.entries.is_empty();
            after = resp.next;
            for entry in resp.entries {
                let Some(sealed) = entry.batch.as_ref() else {
                    continue;
                };
                let Ok(header) =
                    sealsync_proto::decode::<sealsync_proto::BatchHeader>(&sealed.header)
                else {
                    continue;
                };
                if DeviceId::from_slice(&header.device_id).ok() != Some(me)
                    || header.seq <= floor
                    || header.seq > last
                {
                    continue;
                }
                let hash = batch_hash(sealed);
                let local = self.store.known_hash(&me, coll, header.seq)?;
                if local == Some(hash) {
                    continue;
                }
                if let Some(other) = found.get(&header.seq)
                    && other.batch.as_ref().map(batch_hash) != Some(hash)
                {
                    return Ok(Err(format!(
                        "it holds two different batches of this device at seq {}",
                        header.seq
                    )));
                }
                found.insert(header.seq, entry);
            }
            if !more {
                return Ok(Ok(()));
            }
        }
    }
}

/// Whether `found` holds every seq from its first key to `last`.
fn is_contiguous(found: &BTreeMap<u64, LogEntry>, last: u64) -> bool {
    match found.keys().next() {
        Some(&first) => first <= last && found.len() as u64 == last - first + 1,
        None => false,
    }
}
