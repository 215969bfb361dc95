//! Collections and their policies during a sync: pinning the first descriptor in the
//! roster, and adopting the pins of other devices.
//!
//! A collection's policy is fixed by its first descriptor, pinned by a roster `COLLECTION`
//! entry (see `sealsync_core::roster`). For each local collection not yet pinned, a trusted
//! device either finds a pin in its verified roster and adopts that policy (re-resolving its
//! records and reporting the change when it differs), or seals its own descriptor, appends
//! the pin and, if another entry took that roster seq first (409), fetches the roster and
//! tries again. Collections pinned by other devices are created locally from their pinned
//! descriptor. A collection is pushed and pulled only once pinned, so its batches are never
//! applied under a policy other devices do not share (issue 5, defects 4 and 5).
//!
//! Nothing here depends on `/v1/collections`: the server cannot hide a pin without forking
//! the roster, which batches' roster heads expose (MS-12).

use sealsync_core::{Descriptor, pinned_descriptor, seal_descriptor};
use sealsync_proto::RosterResponse;

use crate::Core;
use crate::error::ClientError;
use crate::net::Connection;
use crate::store::CollInfo;
use crate::types::{PolicyChange, SyncIssue, SyncReport};

/// Attempts to append a pin when other entries keep taking the next roster seq.
const PIN_ATTEMPTS: usize = 3;

impl Core {
    /// Pins or adopts the policy of every local collection with an id, then creates the
    /// collections other devices pinned. Issues (a pinned descriptor that does not open)
    /// go to `report`; such a collection stays unpinned, so it is held.
    pub(crate) async fn sync_collections(
        &mut self,
        conn: &mut Connection,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        for coll in self.store.collections()? {
            if coll.pinned || coll.cid.is_none() {
                continue;
            }
            self.pin_or_adopt(conn, coll, report).await?;
        }
        self.adopt_remote_collections(report)
    }

    /// The pinned descriptor of `cid` per the verified roster, or an issue in `report`.
    fn pinned(
        &self,
        coll_name: &str,
        cid: &sealsync_core::CollectionId,
        report: &mut SyncReport,
    ) -> Result<Option<Descriptor>, ClientError> {
        let keys = self.account_keys()?;
        match pinned_descriptor(self.trusted_roster()?, keys, cid) {
            Ok(d) => Ok(d),
            Err(e) => {
                report.errors.push(SyncIssue {
                    collection: coll_name.to_string(),
                    check: crate::types::Check::Descriptor,
                    author: None,
                    message: format!("the collection's pinned descriptor is refused: {e}"),
                });
                Ok(None)
            }
        }
    }

    async fn pin_or_adopt(
        &mut self,
        conn: &mut Connection,
        coll: CollInfo,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        let Some(cid) = coll.cid else { return Ok(()) };
        for _ in 0..PIN_ATTEMPTS {
            if self.trusted_roster()?.collection_pin(&cid).is_some() {
                if let Some(d) = self.pinned(&coll.name, &cid, report)? {
                    self.adopt(&coll, &d, report)?;
                }
                return Ok(());
            }
            let keys = self.account_keys()?;
            let (_, sealed) = seal_descriptor(
                &self.secrets.signing,
                self.device_id,
                &self.account,
                keys,
                &coll.name,
                coll.policy,
                coll.created_hlc,
            )
            .map_err(|e| {
                ClientError::Protocol(format!("cannot seal descriptor of {:?}: {e}", coll.name))
            })?;
            let entry = self
                .trusted_roster()?
                .make_collection_pin(
                    &self.secrets.signing,
                    self.device_id,
                    &sealed,
                    self.store.time.now(),
                )
                .map_err(|e| ClientError::Roster(e.to_string()))?;
            let mut next = self.trusted_roster()?.clone();
            next.apply(&entry)
                .map_err(|e| ClientError::Roster(e.to_string()))?;
            match conn.post::<RosterResponse>("/v1/roster", &entry).await {
                Ok(_) => {
                    self.adopt_roster(next)?;
                    self.store.pin_collection(&coll, coll.policy)?;
                    return Ok(());
                }
                // Another entry took this seq (maybe another device's pin of this very
                // collection): fetch the roster and look again.
                Err(ClientError::Server { status: 409, .. }) => self.sync_roster(conn).await?,
                Err(e) => return Err(e),
            }
        }
        // Still unpinned: the collection stays held (not pushed, not pulled); say why.
        report.errors.push(SyncIssue {
            collection: coll.name.clone(),
            check: crate::types::Check::Pin,
            author: None,
            message: "the server refused to record this collection in the roster; its changes stay local until a later sync succeeds".into(),
        });
        Ok(())
    }

    /// Fixes `coll` to the pinned descriptor `d`, reporting a policy change.
    fn adopt(
        &mut self,
        coll: &CollInfo,
        d: &Descriptor,
        report: &mut SyncReport,
    ) -> Result<(), ClientError> {
        if coll.policy != d.policy {
            tracing::warn!(collection = %coll.name, from = %coll.policy, to = %d.policy, "collection policy replaced by the pinned one");
            report.policy_changes.push(PolicyChange {
                collection: coll.name.clone(),
                from: coll.policy.as_str().to_string(),
                to: d.policy.as_str().to_string(),
            });
        }
        self.store.pin_collection(coll, d.policy)?;
        Ok(())
    }

    /// Creates locally, pinned, the collections pinned in the roster that this device does
    /// not have yet.
    fn adopt_remote_collections(&mut self, report: &mut SyncReport) -> Result<(), ClientError> {
        let known: std::collections::BTreeSet<_> = self
            .store
            .collections()?
            .into_iter()
            .filter_map(|c| c.cid)
            .collect();
        let missing: Vec<_> = self
            .trusted_roster()?
            .collection_pins()
            .map(|(cid, _)| *cid)
            .filter(|cid| !known.contains(cid))
            .collect();
        for cid in missing {
            let Some(d) = self.pinned(&cid.to_string(), &cid, report)? else {
                continue;
            };
            match self.store.collection(&d.name)? {
                // A local collection of that name whose id is not yet assigned cannot exist
                // on a trusted device; one with an id was handled above.
                Some(_) => {}
                None => {
                    self.store
                        .create_collection(&d.name, d.policy, Some(d.id), true)?;
                }
            }
        }
        Ok(())
    }
}
