//! Account keys: the naming key (blinds collection names) and one root key per epoch.
//!
//! Collection keys are derived from the root key of an epoch; object keys from collection
//! keys (see `sealsync_crypto`). The account keys travel only inside HPKE envelopes and the
//! recovery blob, encoded as the protobuf `AccountKeys`.

use std::collections::BTreeMap;
use std::fmt;

use sealsync_crypto::SymmetricKey;
use zeroize::{Zeroize, Zeroizing};

use crate::error::KeysError;
use crate::ids::CollectionId;

/// The account's symmetric keys. Zeroized on drop (each key is a `SymmetricKey`); `Debug`
/// prints only the epochs.
#[derive(Clone)]
pub struct AccountKeys {
    naming: SymmetricKey,
    roots: BTreeMap<u32, SymmetricKey>,
}

impl fmt::Debug for AccountKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountKeys")
            .field("epochs", &self.roots.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AccountKeys {
    /// Fresh random keys with epoch 1.
    pub fn generate() -> Self {
        let mut roots = BTreeMap::new();
        roots.insert(1, SymmetricKey::generate());
        Self {
            naming: SymmetricKey::generate(),
            roots,
        }
    }

    /// The highest epoch (the one new data is written under).
    pub fn current_epoch(&self) -> u32 {
        // `roots` is never empty: `generate` and `decode` guarantee one epoch at least.
        self.roots.keys().next_back().copied().unwrap_or(1)
    }

    /// All epochs held, ascending.
    pub fn epochs(&self) -> impl Iterator<Item = u32> + '_ {
        self.roots.keys().copied()
    }

    /// Starts a new epoch with a fresh root key (key rotation) and returns its number.
    /// Older epochs stay, so old data remains readable.
    pub fn rotate(&mut self) -> u32 {
        let next = self.current_epoch().saturating_add(1);
        self.roots.insert(next, SymmetricKey::generate());
        next
    }

    /// The blinded id of collection `name`.
    pub fn collection_id(&self, account: &str, name: &str) -> CollectionId {
        CollectionId(sealsync_crypto::collection_id(&self.naming, account, name))
    }

    /// The collection key of `cid` at `epoch`; `None` when the epoch is unknown.
    pub fn collection_key(
        &self,
        account: &str,
        cid: &CollectionId,
        epoch: u32,
    ) -> Option<SymmetricKey> {
        let root = self.roots.get(&epoch)?;
        Some(sealsync_crypto::collection_key(
            root, account, &cid.0, epoch,
        ))
    }

    /// Encodes as the protobuf `AccountKeys` (the buffer is zeroized on drop).
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut msg = sealsync_proto::AccountKeys {
            naming_key: self.naming.expose().to_vec(),
            epochs: self
                .roots
                .iter()
                .map(|(e, k)| sealsync_proto::EpochKey {
                    epoch: *e,
                    root_key: k.expose().to_vec(),
                })
                .collect(),
        };
        let out = Zeroizing::new(sealsync_proto::encode(&msg));
        wipe(&mut msg);
        out
    }

    /// Decodes and checks: 32-byte keys, at least one epoch, no epoch 0, no duplicates.
    pub fn decode(bytes: &[u8]) -> Result<Self, KeysError> {
        let mut msg: sealsync_proto::AccountKeys =
            sealsync_proto::decode(bytes).map_err(|_| KeysError::Malformed)?;
        let result = Self::from_message(&msg);
        wipe(&mut msg);
        result
    }

    fn from_message(msg: &sealsync_proto::AccountKeys) -> Result<Self, KeysError> {
        let naming = SymmetricKey::from_bytes(&msg.naming_key)
            .map_err(|_| KeysError::Invalid("naming key length"))?;
        if msg.epochs.is_empty() {
            return Err(KeysError::Invalid("no epoch"));
        }
        let mut roots = BTreeMap::new();
        for ek in &msg.epochs {
            if ek.epoch == 0 {
                return Err(KeysError::Invalid("epoch 0"));
            }
            let key = SymmetricKey::from_bytes(&ek.root_key)
                .map_err(|_| KeysError::Invalid("root key length"))?;
            if roots.insert(ek.epoch, key).is_some() {
                return Err(KeysError::Invalid("duplicate epoch"));
            }
        }
        Ok(Self { naming, roots })
    }
}

/// Zeroizes the key bytes held by a decoded or encoded message.
fn wipe(msg: &mut sealsync_proto::AccountKeys) {
    msg.naming_key.zeroize();
    for ek in &mut msg.epochs {
        ek.root_key.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let mut k = AccountKeys::generate();
        assert_eq!(k.current_epoch(), 1);
        assert_eq!(k.rotate(), 2);
        let back = AccountKeys::decode(&k.encode()).unwrap();
        assert_eq!(back.current_epoch(), 2);
        assert_eq!(back.epochs().collect::<Vec<_>>(), vec![1, 2]);
        let cid = k.collection_id("acct", "notes");
        assert_eq!(back.collection_id("acct", "notes"), cid);
        for e in [1, 2] {
            assert_eq!(
                back.collection_key("acct", &cid, e).unwrap().expose(),
                k.collection_key("acct", &cid, e).unwrap().expose()
            );
        }
        assert!(k.collection_key("acct", &cid, 3).is_none());
        assert_ne!(cid, k.collection_id("other", "notes"));
        assert_ne!(cid, k.collection_id("acct", "notes2"));
    }

    #[test]
    fn debug_prints_no_key_material() {
        let k = AccountKeys::generate();
        let dbg = format!("{k:?}");
        assert_eq!(dbg, "AccountKeys { epochs: [1], .. }");
        assert!(!dbg.contains(&hex::encode(k.naming.expose())));
    }

    #[test]
    fn invalid_encodings_are_refused() {
        // BI-03 / MS-01: malformed or inconsistent key material is refused, never used.
        assert_eq!(
            AccountKeys::decode(&[0xff, 0xff]).unwrap_err(),
            KeysError::Malformed
        );
        let good = |epochs: Vec<sealsync_proto::EpochKey>| sealsync_proto::AccountKeys {
            naming_key: vec![1; 32],
            epochs,
        };
        let ek = |epoch, len| sealsync_proto::EpochKey {
            epoch,
            root_key: vec![2; len],
        };
        let cases = [
            (
                sealsync_proto::AccountKeys {
                    naming_key: vec![1; 31],
                    epochs: vec![ek(1, 32)],
                },
                "naming key length",
            ),
            (good(vec![]), "no epoch"),
            (good(vec![ek(0, 32)]), "epoch 0"),
            (good(vec![ek(1, 16)]), "root key length"),
            (good(vec![ek(1, 32), ek(1, 32)]), "duplicate epoch"),
        ];
        for (msg, why) in cases {
            assert_eq!(
                AccountKeys::decode(&sealsync_proto::encode(&msg)).unwrap_err(),
                KeysError::Invalid(why)
            );
        }
        assert!(
            AccountKeys::decode(&sealsync_proto::encode(&good(vec![ek(3, 32), ek(1, 32)]))).is_ok()
        );
    }
}
