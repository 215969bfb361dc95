//! Un-wedging a device whose clock ran fast (NA-10, CD-08): before sealing and pushing,
//! edits the server has not accepted and that are stamped beyond what the server takes are
//! re-stamped from trusted time and sealed afresh. The rules (which batches may be unsealed,
//! how the HLC may move back) are in `store::restamp`.

use sealsync_proto::ChainHead;

use crate::Core;
use crate::error::ClientError;
use crate::net::Connection;
use crate::rollback::{HeadVerdict, judge_head};
use crate::store::corrupt;
use crate::types::{SyncIssue, SyncReport};

impl Core {
    /// Runs after the server's clock was learned in this sync. Cheap when nothing is wrong:
    /// one meta read (the stored HLC is within the stamp limit).
    pub(crate) async fn repair_future_stamps(
        &mut self,
        conn: &mut Connection,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        let Some(limit) = self.store.time.stamp_limit() else {
            return Ok(());
        };
        if self.store.stored_hlc()? <= limit {
            return Ok(());
        }
        let me = self.device_id;
        for (coll_id, first_future) in self.store.future_outbox(limit)? {
            let Some(coll) = self
                .store
                .collections()?
                .into_iter()
                .find(|c| c.id == coll_id)
            else {
                continue;
            };
            let Some(cid) = coll.cid else { continue };
            // Which of these batches does the server hold? Its head of this device's chain
            // must be a point of that chain (else a fork: nothing is unsealed).
            let head: ChainHead = conn.get(&format!("/v1/chain?collection={cid}")).await?;
            let sealed_last = self.store.chain(&me, coll.id)?.last_seq;
            let verdict = judge_head(&coll.name, &head, sealed_last, |seq| {
                self.store.known_hash(&me, coll.id, seq)?.ok_or_else(|| {
                    corrupt(format!("no hash of own batch {seq} in {:?}", coll.name))
                })
            });
            let server_last = match verdict {
                Ok(HeadVerdict::Current) => sealed_last,
                Ok(HeadVerdict::Behind { last_seq }) => last_seq,
                Err(e) => {
                    report.errors.push(SyncIssue {
                        collection: coll.name.clone(),
                        check: crate::types::Check::Clock,
                        author: None,
                        message: format!("edits stamped in the future were not re-stamped: {e}"),
                    });
                    continue;
                }
            };
            // Batches the server holds were accepted (their acknowledgement was lost): they
            // keep their stamps.
            let acked = self.store.last_acked(coll.id)?;
            if server_last > acked {
                self.store.ack_through(coll.id, server_last)?;
            }
            let from = server_last.max(acked) + 1;
            if first_future < from {
                continue;
            }
            let n = self.store.unseal_from(coll.id, from)?;
            tracing::warn!(
                collection = %coll.name, from_seq = from, batches = n,
                "batches stamped by a fast clock are re-stamped and sealed again"
            );
        }
        let now = self.store.time.now();
        let n = self.store.restamp_future(limit, now)?;
        if n > 0 {
            tracing::warn!(
                versions = n,
                "edits stamped by a fast clock were re-stamped from trusted time"
            );
            report.restamped_versions += n as u64;
        }
        Ok(())
    }
}
