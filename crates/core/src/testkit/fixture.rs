//! Shared fixture for the batch tamper tests: two known devices, real keys, and helpers
//! that re-sign or re-seal altered headers the way an attacker holding a key would.

use sealsync_crypto::{ObjectKey, ObjectLabel, SigContext, SigningKey, SymmetricKey, VerifyingKey};
use sealsync_proto::{BatchHeader, Mutation, MutationList, Sealed};

use super::{ACCOUNT, device_key, id_of};
use crate::batch::{
    BatchDraft, ChainState, SealedBatch, batch_identity, open_batch_with_keys, seal_batch,
};
use crate::error::BatchError;
use crate::ids::{CollectionId, DeviceId};
use crate::keys::AccountKeys;
use crate::verify::{VerifiedHeader, verify_batch};

/// An edit applied to a batch header.
pub(super) type HeaderEdit = dyn Fn(&mut BatchHeader);

pub(super) struct Fx {
    pub(super) keys: AccountKeys,
    pub(super) cid: CollectionId,
    pub(super) ck: SymmetricKey,
    pub(super) a: SigningKey,
    pub(super) a_id: DeviceId,
    pub(super) b: SigningKey,
    pub(super) b_id: DeviceId,
}

pub(super) fn fx() -> Fx {
    let keys = AccountKeys::generate();
    let cid = keys.collection_id(ACCOUNT, "things");
    let ck = keys.collection_key(ACCOUNT, &cid, 1).unwrap();
    let (a, b) = (device_key(0), device_key(1));
    Fx {
        a_id: id_of(&a),
        b_id: id_of(&b),
        keys,
        cid,
        ck,
        a,
        b,
    }
}

impl Fx {
    pub(super) fn key_for(&self) -> impl Fn(&DeviceId) -> Option<VerifyingKey> + '_ {
        move |d| {
            if *d == self.a_id {
                Some(self.a.verifying_key())
            } else if *d == self.b_id {
                Some(self.b.verifying_key())
            } else {
                None
            }
        }
    }

    pub(super) fn draft(&self, seq: u64, prev: [u8; 32], hlcs: &[u64]) -> BatchDraft {
        BatchDraft {
            account: ACCOUNT.into(),
            collection: self.cid,
            device: self.a_id,
            seq,
            prev_hash: prev,
            epoch: 1,
            roster_head: [4; 32],
            mutations: muts(hlcs),
        }
    }

    pub(super) fn seal(&self, seq: u64, prev: [u8; 32], hlcs: &[u64]) -> SealedBatch {
        seal_batch(self.draft(seq, prev, hlcs), &self.a, &self.ck).unwrap()
    }

    pub(super) fn verify(&self, s: &Sealed) -> Result<VerifiedHeader, BatchError> {
        verify_batch(s, self.key_for())
    }

    /// Verify, then open against a fresh chain.
    pub(super) fn verify_open(&self, s: &Sealed) -> Result<Vec<Mutation>, BatchError> {
        let v = self.verify(s)?;
        open_batch_with_keys(&v, s, &self.keys, &ChainState::default())
    }
}

pub(super) fn muts(hlcs: &[u64]) -> Vec<Mutation> {
    hlcs.iter()
        .map(|h| Mutation {
            key: format!("k{h}"),
            hlc: *h,
            deleted: false,
            value: b"v".to_vec(),
            supersedes: vec![],
        })
        .collect()
}

/// Signs `header` + `ciphertext` as given (a header moved onto another ciphertext).
pub(super) fn resign(header: &BatchHeader, ciphertext: Vec<u8>, signer: &SigningKey) -> Sealed {
    let header = sealsync_proto::encode(header);
    let signature = signer
        .sign(SigContext::Batch, &header, &ciphertext)
        .to_vec();
    Sealed {
        header,
        ciphertext,
        signature,
    }
}

/// Encrypts `plaintext` under the key derived for `header` (fixing the commitment), as a
/// device holding the collection key would, and signs it.
pub(super) fn reseal(
    header: &BatchHeader,
    plaintext: &[u8],
    ck: &SymmetricKey,
    signer: &SigningKey,
) -> Sealed {
    let mut h = header.clone();
    let id = batch_identity(
        &h.account,
        &h.collection_id,
        &h.device_id,
        h.seq,
        h.key_epoch,
    );
    let key = ObjectKey::derive(ck, ObjectLabel::Batch, &id, &h.salt).unwrap();
    h.key_commitment = key.commitment().to_vec();
    let hb = sealsync_proto::encode(&h);
    let ciphertext = key.seal(&hb, plaintext);
    let signature = signer.sign(SigContext::Batch, &hb, &ciphertext).to_vec();
    Sealed {
        header: hb,
        ciphertext,
        signature,
    }
}

pub(super) fn plain(hlcs: &[u64]) -> Vec<u8> {
    sealsync_proto::encode(&MutationList {
        mutations: muts(hlcs),
    })
}
