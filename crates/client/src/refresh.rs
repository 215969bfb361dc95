//! Several handles on one home: each operation starts from the stored state.
//!
//! An app may hold two [`Core`]s on one home (a UI handle beside a sync task), and the CLI
//! may run while the app does. What a handle keeps in memory (device state, account keys,
//! roster, clock offset; the HLC is re-read inside every writing transaction by
//! `store::catch_up_clock`) can be changed by another handle at any time. So every operation
//! that depends on it calls [`Core::refresh`] first, which re-reads it from the store and
//! the key store. It is cheap when nothing changed: a few meta reads, a row count and a
//! `stat` of the key store file; the key store is decrypted again only when its file changed
//! or the stored state says trusted while this handle holds no account keys.
//!
//! Syncs are also serialized across handles and processes (`crate::sync_lock`): their
//! seal, push and acknowledgement steps span network calls, which no transaction can.
//!
//! It also heals a store left by an older version, where a collection created through a
//! handle opened while pending never got its blinded id: once trusted, every collection
//! without one gets it.

use std::path::Path;

use crate::Core;
use crate::error::ClientError;
use crate::keystore::KEYSTORE_FILE;
use crate::replica::roster_from_entries;
use crate::store::{corrupt, meta};
use crate::types::DeviceState;

/// Length and modification time of the key store file, if readable.
pub(crate) fn keystore_stamp(home: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(home.join(KEYSTORE_FILE)).ok()?;
    Some((m.len(), m.modified().ok()?))
}

impl Core {
    /// Re-reads the device state, account keys, roster and clock offset that another
    /// handle on this home may have changed (module documentation).
    pub(crate) fn refresh(&mut self) -> Result<(), ClientError> {
        let state = self
            .store
            .meta_text(meta::STATE)?
            .and_then(|s| DeviceState::parse(&s))
            .ok_or_else(|| corrupt("unknown state"))?;
        self.store.reload_clock_offset()?;
        match state {
            // A pending device trusts no roster (see `crate::pairing`).
            DeviceState::Pending => self.roster = None,
            DeviceState::Trusted => {
                let stale = match &self.roster {
                    Some(r) => self.store.roster_len()? != r.len(),
                    None => true,
                };
                if stale {
                    let genesis_hash: [u8; 32] = self
                        .store
                        .meta_required(meta::GENESIS_HASH)?
                        .try_into()
                        .map_err(|_| corrupt("genesis hash"))?;
                    let roster = roster_from_entries(&self.store.roster_entries()?, &self.account)?;
                    if roster.genesis_hash() != genesis_hash {
                        return Err(corrupt(
                            "stored roster does not start at the trusted genesis",
                        ));
                    }
                    self.roster = Some(roster);
                }
            }
        }
        let stamp = keystore_stamp(&self.home);
        let keys_missing = state == DeviceState::Trusted && self.secrets.account_keys.is_none();
        if keys_missing || stamp != self.keystore_stamp {
            let secrets = self.keystore.load()?;
            if secrets.device_id() != self.device_id {
                return Err(corrupt("the key store now belongs to another device"));
            }
            self.secrets = secrets;
            self.keystore_stamp = stamp;
        }
        if state == DeviceState::Trusted && self.secrets.account_keys.is_none() {
            return Err(corrupt("trusted device without account keys"));
        }
        self.state = state;
        if state == DeviceState::Trusted && self.store.has_collection_without_id()? {
            let account = self.account.clone();
            if let Some(k) = self.secrets.account_keys.as_ref() {
                self.store
                    .assign_collection_ids(|name| k.collection_id(&account, name))?;
            }
        }
        Ok(())
    }
}
