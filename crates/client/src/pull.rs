//! Pulling one collection: pages fetched by cursor (the next one while the current one is
//! checked), every batch verified completely before a page is applied in one transaction
//! (roster key signature, roster head known, log position, chain, epoch, commitment,
//! decryption, mutation checks: CF-06, MS-12, MS-16, MS-23, MS-25, MS-26, MS-31).

use std::collections::{BTreeSet, HashMap};

use sealsync_core::{
    BatchError, BatchHash, ChainCheck, ChainState, CollectionId, DeviceId, Hlc, VersionId,
    check_chain, open_batch, verify_batch,
};
use sealsync_crypto::SymmetricKey;
use sealsync_proto::{LogEntry, PullResponse, Sealed};

use crate::Core;
use crate::error::ClientError;
use crate::net::{Connection, Prefetch};
use crate::store::{CollInfo, PulledBatch, VerifiedPage};
use crate::sync::PULL_PAGE_BATCHES;
use crate::types::{ChangedKey, SyncIssue, SyncReport};

impl Core {
    pub(crate) async fn pull_collection(
        &mut self,
        conn: &mut Connection,
        mut coll: CollInfo,
        own: Option<&BTreeSet<u64>>,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        let Some(cid) = coll.cid else { return Ok(()) };
        // Our own batches just pushed need not travel back: when the next log index is one
        // the server gave to a batch of ours (already in our chain), move past it.
        if let Some(own) = own {
            let start = coll.cursor;
            coll.cursor = skip_own(start, own);
            if coll.cursor != start {
                self.store.set_cursor(coll.id, coll.cursor)?;
            }
        }
        let path_after = |after: u64| {
            format!("/v1/batches?collection={cid}&after={after}&limit={PULL_PAGE_BATCHES}")
        };
        let mut ckeys: HashMap<u32, SymmetricKey> = HashMap::new();
        let mut prefetch: Option<Prefetch<PullResponse>> = None;
        loop {
            let resp: PullResponse = match prefetch.take() {
                Some(p) => p.wait().await?,
                None => conn.get(&path_after(coll.cursor)).await?,
            };
            if resp.next < coll.cursor {
                report.errors.push(SyncIssue {
                    collection: coll.name.clone(),
                    check: crate::check::Check::Cursor,
                    author: None,
                    message: format!(
                        "the server moved the log cursor back from {} to {} (rollback?)",
                        coll.cursor, resp.next
                    ),
                });
                return Ok(());
            }
            if let Err(why) = check_page_indices(coll.cursor, &resp.entries, resp.next) {
                report.errors.push(SyncIssue {
                    collection: coll.name.clone(),
                    check: crate::check::Check::Cursor,
                    author: None,
                    message: format!("the server sent an inconsistent page: {why}"),
                });
                return Ok(());
            }
            let more = resp.more && !resp.entries.is_empty();
            if more {
                // Fetch the next page while this one is verified and applied.
                prefetch = Some(conn.spawn_get(path_after(resp.next)));
            }
            match self.verify_page(&coll, cid, &resp.entries, &mut ckeys) {
                Ok(batches) => {
                    let n = batches.len() as u64;
                    let records: u64 = batches.iter().map(|b| b.mutations.len() as u64).sum();
                    let bytes: u64 = resp
                        .entries
                        .iter()
                        .map(|e| {
                            e.batch
                                .as_ref()
                                .map_or(0, |b| prost::Message::encoded_len(b) as u64)
                        })
                        .sum();
                    // Keys other devices' batches write (this device's own, taken back, are
                    // not changes from elsewhere). Should the apply fail, the whole sync fails
                    // and its report is dropped.
                    let me = self.device_id;
                    report.changed.extend(
                        batches
                            .iter()
                            .filter(|b| b.author != me)
                            .flat_map(|b| b.mutations.iter())
                            .map(|m| ChangedKey {
                                collection: coll.name.clone(),
                                key: m.key.clone(),
                            }),
                    );
                    let page = VerifiedPage {
                        batches,
                        next: resp.next,
                    };
                    let applied = self.store.apply_page(&coll, page)?;
                    report.pulled_batches += n;
                    report.applied_mutations += applied as u64;
                    coll.cursor = resp.next;
                    crate::progress::pulled(&self.progress, n, records, bytes, more);
                    if let Some(c) = &self.commits {
                        // Wakes the change feeds now rather than at the end of the sync.
                        c.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
                Err(ClientError::Batch {
                    check,
                    collection,
                    author,
                    error,
                }) => {
                    tracing::warn!(collection = %collection, %author, check = %check, error = %error, "pulled batch refused");
                    report.errors.push(SyncIssue {
                        collection,
                        check,
                        author: Some(author),
                        message: error,
                    });
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Verifies a whole page; returns the batches to apply (duplicates skipped) or the first
    /// failure as [`ClientError::Batch`].
    pub(crate) fn verify_page(
        &self,
        coll: &CollInfo,
        cid: CollectionId,
        entries: &[LogEntry],
        ckeys: &mut HashMap<u32, SymmetricKey>,
    ) -> Result<Vec<PulledBatch>, ClientError> {
        self.verify_entries(coll, cid, entries, ckeys, None)
    }

    /// [`Core::verify_page`], or with `own_from`, the same checks for batches of this
    /// device's own chain continuing from `own_from` instead of from its stored chain state:
    /// only this device's key in the roster is accepted as a signer (`crate::restore`).
    pub(crate) fn verify_entries(
        &self,
        coll: &CollInfo,
        cid: CollectionId,
        entries: &[LogEntry],
        ckeys: &mut HashMap<u32, SymmetricKey>,
        own_from: Option<ChainState>,
    ) -> Result<Vec<PulledBatch>, ClientError> {
        let fail = |author: String, error: BatchError| ClientError::Batch {
            check: crate::check::Check::of(&error),
            collection: coll.name.clone(),
            author,
            error: error.to_string(),
        };
        let keys = self.account_keys()?;
        let roster = self.trusted_roster()?;
        let mut chains: HashMap<DeviceId, ChainState> = HashMap::new();
        let me = self.device_id;
        if let Some(state) = own_from {
            chains.insert(me, state);
        }
        let signer = |d: &DeviceId| {
            if own_from.is_some() && *d != me {
                return None;
            }
            roster.member(d).map(|m| m.sign_pk)
        };
        let mut page_hashes: HashMap<(DeviceId, u64), BatchHash> = HashMap::new();
        let mut out = Vec::new();
        for entry in entries {
            let sealed = entry.batch.as_ref().ok_or_else(|| {
                fail(
                    String::new(),
                    BatchError::Malformed("log entry without a batch"),
                )
            })?;
            let vh = verify_batch(sealed, signer).map_err(|e| fail(header_author(sealed), e))?;
            let author = vh.device;
            vh.check_log(&self.account, &cid)
                .map_err(|e| fail(author.to_string(), e))?;
            // MS-12: the author's roster head must be an entry of our verified roster. The
            // roster was synced at the start of this sync, so an unknown head means the server
            // showed the author a roster entry it withholds from us (a roster fork).
            vh.check_roster_head(roster)
                .map_err(|e| fail(author.to_string(), e))?;
            let state = match chains.get(&author) {
                Some(s) => *s,
                None => self.store.chain(&author, coll.id)?,
            };
            let check = check_chain(&state, &vh, |seq| {
                page_hashes
                    .get(&(author, seq))
                    .copied()
                    .or_else(|| self.store.known_hash(&author, coll.id, seq).ok().flatten())
            });
            match check {
                // An adopted chain (`own_from`) has no duplicates: every batch is after it.
                ChainCheck::Duplicate if own_from.is_none() => continue,
                ChainCheck::Next => {}
                other => return Err(fail(author.to_string(), BatchError::Chain(other))),
            }
            let epoch = vh.header.key_epoch;
            if let std::collections::hash_map::Entry::Vacant(slot) = ckeys.entry(epoch) {
                let k = keys
                    .collection_key(&self.account, &cid, epoch)
                    .ok_or_else(|| fail(author.to_string(), BatchError::UnknownEpoch(epoch)))?;
                slot.insert(k);
            }
            let ckey = ckeys
                .get(&epoch)
                .ok_or_else(|| fail(author.to_string(), BatchError::UnknownEpoch(epoch)))?;
            let mutations =
                open_batch(&vh, sealed, ckey, &state).map_err(|e| fail(author.to_string(), e))?;
            for m in &mutations {
                if m.supersedes
                    .iter()
                    .any(|s| VersionId::from_slice(s).is_err())
                {
                    return Err(fail(
                        author.to_string(),
                        BatchError::BadMutation("supersedes entry is not a version id".into()),
                    ));
                }
            }
            chains.insert(author, state.advance(&vh));
            page_hashes.insert((author, vh.header.seq), vh.hash);
            out.push(PulledBatch {
                author,
                seq: vh.header.seq,
                hash: vh.hash,
                hlc_max: Hlc(vh.header.hlc_max),
                mutations,
                // This device's own batch (one its restored home forgot): kept in the outbox.
                own_bytes: (author == me).then(|| sealsync_proto::encode(sealed)),
            });
        }
        Ok(out)
    }
}

/// The cursor moved past the log indices the server gave to our own just-pushed batches
/// (`own`) that directly follow `cursor`. Never overflows.
pub(crate) fn skip_own(mut cursor: u64, own: &BTreeSet<u64>) -> u64 {
    while let Some(next) = cursor.checked_add(1)
        && own.contains(&next)
    {
        cursor = next;
    }
    cursor
}

/// Checks the server-chosen indices of a pull page asked for after `cursor` (MS-31): the
/// entries' indices strictly increase above `cursor`, and `next` is the last of them, or
/// `cursor` itself for an empty page. Anything else would move the cursor past batches
/// never received (skipping them for good) or to a bogus value that locks the log.
pub(crate) fn check_page_indices(
    cursor: u64,
    entries: &[LogEntry],
    next: u64,
) -> Result<(), String> {
    let mut last = cursor;
    for e in entries {
        if e.index <= last {
            return Err(format!(
                "log index {} does not follow {last} (cursor {cursor})",
                e.index
            ));
        }
        last = e.index;
    }
    if next != last {
        return Err(format!(
            "next cursor {next} is not the last log index {last} of the page"
        ));
    }
    Ok(())
}

/// Author id claimed by an unverified header, for error reports only.
fn header_author(sealed: &Sealed) -> String {
    sealsync_proto::decode::<sealsync_proto::BatchHeader>(&sealed.header)
        .ok()
        .and_then(|h| DeviceId::from_slice(&h.device_id).ok())
        .map(|d| d.to_string())
        .unwrap_or_else(|| "unknown".into())
}
