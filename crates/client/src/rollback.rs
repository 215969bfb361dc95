//! Resuming after the server, or this device's home, was restored from an older backup
//! (CF-10, CF-12, CF-19; groundwork for MS-28).
//!
//! A restored server has lost the last batches this device had pushed and that it had
//! acknowledged, so it refuses the device's next batch with 409 (a gap), forever. The device
//! still has those batches: the outbox keeps the exact sealed bytes of every batch it sent.
//! A restored device home is the other way round: the server holds batches of this device
//! that the restored home forgot, and refuses (409, equivocation) the other batches the
//! device seals at those seqs. When a push is refused with 409,
//! [`Core::recover_rollback`] asks the server for this device's chain head
//! (`GET /v1/chain`) in each collection of the refused request and judges it against what
//! the device itself sealed ([`judge_head`]):
//!
//! - the head is the device's own last batch: the server lost nothing there;
//! - the head is an earlier batch of the device, with the hash the device sealed at that
//!   seq: the server lost the batches after it. They are put back into the outbox
//!   unchanged, so the retried push re-sends identical bytes (devices that already had them
//!   see duplicates, never forks), and the collection's pull cursor goes back to 0 because
//!   the server renumbered its log;
//! - any other head (another hash at a seq the device sealed, or a seq it never sealed) is
//!   what a restored home sees: the device looks for its own batches on the server from the
//!   last point both agree on up to that head and verifies them as pulled batches are
//!   verified (signature by its own key in the roster, chain from its own sealed hash, same
//!   account and collection: `crate::restore`). If they verify, it takes them back (their
//!   edits are applied, its chain moves to the server's head) and its own newer batches,
//!   which the server never took, are dropped and their edits sealed again after the head
//!   and pushed in the same sync (`store::adopt`): nothing is lost on either side.
//!   Otherwise the head is a fork or forgery: [`ClientError::ServerFork`], and nothing
//!   changes.
//!
//! Every collection is judged (and its batches on the server verified) before anything is
//! changed; each collection's change is one transaction.

use sealsync_core::BatchHash;
use sealsync_proto::ChainHead;

use crate::Core;
use crate::error::ClientError;
use crate::net::Connection;
use crate::store::corrupt;

/// What the server's chain head says about this device's chain in one collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeadVerdict {
    /// The server holds everything this device sealed there.
    Current,
    /// The server holds this device's chain only up to `last_seq` (with the right hash):
    /// the batches after it were lost and can be re-sent.
    Behind {
        /// The server's last seq of this device.
        last_seq: u64,
    },
}

/// Judges the server's `head` of this device's chain in `collection` against what the
/// device sealed: `sealed_last` is its last sealed seq, `sealed_hash_at(seq)` the hash it
/// sealed at `seq` (asked only for `1..=sealed_last`). Seq 0 stands for the empty chain,
/// whose hash is 32 zero bytes (the `prev_batch_hash` of seq 1).
pub(crate) fn judge_head(
    collection: &str,
    head: &ChainHead,
    sealed_last: u64,
    sealed_hash_at: impl FnOnce(u64) -> Result<BatchHash, ClientError>,
) -> Result<HeadVerdict, ClientError> {
    let fork = |detail: String| ClientError::ServerFork {
        collection: collection.to_string(),
        detail,
    };
    if head.last_seq > sealed_last {
        return Err(fork(format!(
            "it claims this device's batch {} exists, but this device sealed only {sealed_last}",
            head.last_seq
        )));
    }
    let sealed = if head.last_seq == 0 {
        [0; 32]
    } else {
        sealed_hash_at(head.last_seq)?
    };
    // Hashes of signed public data: no secret to protect with a constant-time compare.
    if head.last_hash.as_slice() != sealed.as_slice() {
        return Err(fork(format!(
            "its batch {} of this device has another hash than the one this device sealed",
            head.last_seq
        )));
    }
    Ok(if head.last_seq == sealed_last {
        HeadVerdict::Current
    } else {
        HeadVerdict::Behind {
            last_seq: head.last_seq,
        }
    })
}

/// What [`Core::recover_rollback`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Batches put back into the outbox for a restored server.
    pub(crate) resent: u64,
    /// This device's own batches taken back from the server (a restored home).
    pub(crate) adopted: u64,
    /// Edits of this device put back as unsent, to be sealed after the adopted batches.
    pub(crate) resealed: u64,
}

impl Recovered {
    /// Whether anything changed, so that the refused push is worth retrying.
    pub(crate) fn changed(&self) -> bool {
        self.resent > 0 || self.adopted > 0
    }
}

impl Core {
    /// After a push refused with 409: judges this device's chain head on the server in
    /// each local collection of `colls`, puts lost batches back into the outbox, or takes
    /// back this device's own batches that its restored home forgot (see the module
    /// documentation). Nothing changed means the refusal was not caused by a restore. A
    /// fork or forgery, or lost batches this device no longer keeps, is an error and
    /// changes nothing.
    pub(crate) async fn recover_rollback(
        &mut self,
        conn: &mut Connection,
        colls: &[i64],
    ) -> Result<Recovered, ClientError> {
        let me = self.device_id;
        let mut plan = Vec::new();
        let mut adopt = Vec::new();
        for coll in self.store.collections()? {
            let Some(cid) = coll.cid else { continue };
            if !colls.contains(&coll.id) {
                continue;
            }
            let head: ChainHead = conn.get(&format!("/v1/chain?collection={cid}")).await?;
            let sealed_last = self.store.chain(&me, coll.id)?.last_seq;
            let verdict = judge_head(&coll.name, &head, sealed_last, |seq| {
                self.store.known_hash(&me, coll.id, seq)?.ok_or_else(|| {
                    corrupt(format!("no hash of own batch {seq} in {:?}", coll.name))
                })
            });
            let verdict = match verdict {
                Err(ClientError::ServerFork { collection, detail }) => {
                    // A restored home, if the server's chain from a common point is ours.
                    match self.own_chain_on_server(conn, &coll, cid, &head).await? {
                        Ok(own) => {
                            tracing::warn!(
                                collection = %coll.name, common_seq = own.common.last_seq,
                                server_seq = head.last_seq, sealed_seq = sealed_last,
                                "the server holds batches of this device that its home forgot (restored from a backup?); taking them back"
                            );
                            adopt.push((coll, own));
                            continue;
                        }
                        Err(why) => {
                            return Err(ClientError::ServerFork {
                                collection,
                                detail: format!("{detail}; {why}"),
                            });
                        }
                    }
                }
                other => other?,
            };
            let HeadVerdict::Behind { last_seq } = verdict else {
                continue;
            };
            if self.store.kept_after(coll.id, last_seq)? != sealed_last - last_seq {
                return Err(ClientError::LostBatches {
                    collection: coll.name,
                    from: last_seq + 1,
                    to: sealed_last,
                });
            }
            tracing::warn!(
                collection = %coll.name, server_seq = last_seq, sealed_seq = sealed_last,
                "the server lost this device's latest batches (restored from a backup?); re-sending them"
            );
            plan.push((coll.id, last_seq));
        }
        let mut done = Recovered {
            resent: self.store.requeue_sent(&plan)?,
            ..Recovered::default()
        };
        for (coll, own) in adopt {
            let adopted = self
                .store
                .adopt_own_batches(&coll, &own.common, own.batches)?;
            done.adopted += adopted.batches;
            done.resealed += adopted.restamped;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(last_seq: u64, hash: [u8; 32]) -> ChainHead {
        ChainHead {
            last_seq,
            last_hash: hash.to_vec(),
        }
    }

    /// Hash this test device "sealed" at `seq`.
    fn sealed(seq: u64) -> Result<BatchHash, ClientError> {
        Ok([seq as u8; 32])
    }

    fn judge(h: &ChainHead, sealed_last: u64) -> Result<HeadVerdict, ClientError> {
        judge_head("notes", h, sealed_last, sealed)
    }

    #[test]
    fn own_heads_are_current_or_behind() {
        // CF-10
        assert_eq!(judge(&head(5, [5; 32]), 5).unwrap(), HeadVerdict::Current);
        assert_eq!(
            judge(&head(3, [3; 32]), 5).unwrap(),
            HeadVerdict::Behind { last_seq: 3 }
        );
        assert_eq!(
            judge(&head(0, [0; 32]), 5).unwrap(),
            HeadVerdict::Behind { last_seq: 0 }
        );
        assert_eq!(judge(&head(0, [0; 32]), 0).unwrap(), HeadVerdict::Current);
    }

    #[test]
    fn foreign_heads_are_forks() {
        // MS-30: another hash at a sealed seq, a seq never sealed, a malformed hash, and a
        // non-zero hash for the empty chain.
        for (h, sealed_last) in [
            (head(3, [9; 32]), 5),
            (head(6, [6; 32]), 5),
            (head(1, [1; 32]), 0),
            (
                ChainHead {
                    last_seq: 3,
                    last_hash: vec![3; 31],
                },
                5,
            ),
            (head(0, [1; 32]), 5),
        ] {
            let err = judge(&h, sealed_last).unwrap_err();
            assert!(
                matches!(&err, ClientError::ServerFork { collection, .. } if collection == "notes"),
                "{h:?}: {err}"
            );
            assert!(err.to_string().contains("forked"), "{err}");
        }
    }
}
