//! Collection descriptors: the encrypted, signed record of a collection's name and policy.
//!
//! The device that first writes to a collection seals a descriptor (object key label
//! `"collection"`, identity `lp(account) || collection_id || device_id || u64be(hlc) ||
//! u32be(epoch)`). If several devices create the same collection offline, every device
//! picks the valid descriptor with the smallest `(hlc, device)`, so all agree on the policy.

use sealsync_crypto::{
    CryptoError, ObjectKey, ObjectLabel, SUITE_V1, SigContext, SigningKey, device_id, lp,
};
use sealsync_proto::{CollectionHeader, CollectionInfo, Sealed};
use zeroize::Zeroizing;

use crate::error::CollectionError;
use crate::hlc::Hlc;
use crate::ids::{CollectionId, DeviceId};
use crate::keys::AccountKeys;
use crate::policy::Policy;
use crate::roster::Roster;

/// Largest encoded descriptor header accepted.
const MAX_HEADER_BYTES: usize = 4 * 1024;
/// Largest descriptor plaintext accepted.
const MAX_INFO_BYTES: usize = 64 * 1024;

/// A verified collection descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Blinded id.
    pub id: CollectionId,
    /// Collection name (blinds to `id`).
    pub name: String,
    /// Merge policy.
    pub policy: Policy,
    /// When it was created.
    pub hlc: Hlc,
    /// Its author.
    pub device: DeviceId,
}

fn identity(account: &str, cid: &CollectionId, device: &DeviceId, hlc: Hlc, epoch: u32) -> Vec<u8> {
    let mut id = Vec::with_capacity(4 + account.len() + 16 + 16 + 8 + 4);
    lp(&mut id, account.as_bytes());
    id.extend_from_slice(&cid.0);
    id.extend_from_slice(&device.0);
    id.extend_from_slice(&hlc.0.to_be_bytes());
    id.extend_from_slice(&epoch.to_be_bytes());
    id
}

/// Seals and signs the descriptor of collection `name` under the keys' current epoch.
pub fn seal_descriptor(
    signing: &SigningKey,
    device: DeviceId,
    account: &str,
    keys: &AccountKeys,
    name: &str,
    policy: Policy,
    hlc: Hlc,
) -> Result<(Descriptor, Sealed), CollectionError> {
    if DeviceId(device_id(&signing.verifying_key())) != device {
        return Err(CollectionError::Seal("signing key is not the device's"));
    }
    let cid = keys.collection_id(account, name);
    let epoch = keys.current_epoch();
    let ck = keys
        .collection_key(account, &cid, epoch)
        .ok_or(CollectionError::Seal("no key for the current epoch"))?;
    let key = ObjectKey::derive(
        &ck,
        ObjectLabel::Collection,
        &identity(account, &cid, &device, hlc, epoch),
    );
    let header = CollectionHeader {
        suite: SUITE_V1,
        account: account.to_owned(),
        collection_id: cid.0.to_vec(),
        device_id: device.0.to_vec(),
        key_epoch: epoch,
        hlc: hlc.0,
        key_commitment: key.commitment().to_vec(),
    };
    let header_bytes = sealsync_proto::encode(&header);
    let info = CollectionInfo {
        name: name.to_owned(),
        policy: policy.as_str().to_owned(),
    };
    let ciphertext = key.seal(&header_bytes, &sealsync_proto::encode(&info));
    let signature = signing
        .sign(SigContext::Collection, &header_bytes, &ciphertext)
        .to_vec();
    let descriptor = Descriptor {
        id: cid,
        name: name.to_owned(),
        policy,
        hlc,
        device,
    };
    Ok((
        descriptor,
        Sealed {
            header: header_bytes,
            ciphertext,
            signature,
        },
    ))
}

fn decode_header(sealed: &Sealed) -> Result<(CollectionHeader, CollectionId), CollectionError> {
    let header: CollectionHeader = sealsync_proto::decode_limited(&sealed.header, MAX_HEADER_BYTES)
        .map_err(|_| CollectionError::Malformed("header does not decode"))?;
    if header.suite != SUITE_V1 {
        return Err(CollectionError::Suite(header.suite));
    }
    let cid = CollectionId::from_slice(&header.collection_id)
        .map_err(|_| CollectionError::Malformed("collection id length"))?;
    Ok((header, cid))
}

/// Opens a descriptor: suite, account, author in `roster` (MS-23), signature over the exact
/// bytes, epoch key held, commitment, decrypt, decode; the name must blind to the header's
/// collection id (MS-17).
pub fn open_descriptor(
    sealed: &Sealed,
    roster: &Roster,
    keys: &AccountKeys,
    account: &str,
) -> Result<Descriptor, CollectionError> {
    let (header, cid) = decode_header(sealed)?;
    if header.account != account || roster.account() != account {
        return Err(CollectionError::WrongAccount);
    }
    let device = DeviceId::from_slice(&header.device_id)
        .map_err(|_| CollectionError::Malformed("device id length"))?;
    let member = roster
        .member(&device)
        .ok_or(CollectionError::NotMember(device))?;
    member
        .sign_pk
        .verify(
            SigContext::Collection,
            &sealed.header,
            &sealed.ciphertext,
            &sealed.signature,
        )
        .map_err(|_| CollectionError::Signature)?;
    let epoch = header.key_epoch;
    let ck = keys
        .collection_key(account, &cid, epoch)
        .ok_or(CollectionError::UnknownEpoch(epoch))?;
    let hlc = Hlc(header.hlc);
    let key = ObjectKey::derive(
        &ck,
        ObjectLabel::Collection,
        &identity(account, &cid, &device, hlc, epoch),
    );
    let plaintext = Zeroizing::new(
        key.open(&header.key_commitment, &sealed.header, &sealed.ciphertext)
            .map_err(|e| match e {
                CryptoError::Commitment => CollectionError::Commitment,
                _ => CollectionError::Decrypt,
            })?,
    );
    let info: CollectionInfo = sealsync_proto::decode_limited(&plaintext, MAX_INFO_BYTES)
        .map_err(|_| CollectionError::Malformed("info does not decode"))?;
    let policy: Policy = info.policy.parse().map_err(|_| CollectionError::Policy)?;
    if keys.collection_id(account, &info.name) != cid {
        return Err(CollectionError::NameMismatch);
    }
    Ok(Descriptor {
        id: cid,
        name: info.name,
        policy,
        hlc,
        device,
    })
}

/// The deterministic winner among valid descriptors of one collection: the smallest
/// `(hlc, device)`. Input order does not matter.
pub fn pick_descriptor(candidates: &[Descriptor]) -> Option<&Descriptor> {
    candidates.iter().min_by(|a, b| {
        (a.hlc, a.device, &a.name, a.policy.as_str()).cmp(&(
            b.hlc,
            b.device,
            &b.name,
            b.policy.as_str(),
        ))
    })
}

/// Collection id named in a descriptor header. Unverified: for servers.
pub fn descriptor_collection_id(sealed: &Sealed) -> Result<CollectionId, CollectionError> {
    decode_header(sealed).map(|(_, cid)| cid)
}

#[cfg(test)]
mod tests {
    use sealsync_crypto::{KdfParams, KxSecretKey};

    use super::*;
    use crate::roster::GenesisParams;
    use crate::testkit::resign_header;

    fn setup() -> (SigningKey, DeviceId, Roster, AccountKeys) {
        let sign = SigningKey::generate();
        let id = DeviceId(device_id(&sign.verifying_key()));
        let g = Roster::make_genesis(GenesisParams {
            account: "acct",
            signing: &sign,
            kx_pk: &KxSecretKey::generate().public_key(),
            name: "first",
            recovery_pk: &SigningKey::generate().verifying_key(),
            recovery_salt: &[1; 16],
            recovery_kdf: KdfParams::DEFAULT,
            now_ms: 0,
        });
        let roster = Roster::from_genesis(&g, "acct").unwrap();
        (sign, id, roster, AccountKeys::generate())
    }

    #[test]
    fn round_trip() {
        let (sign, id, roster, keys) = setup();
        let (d, sealed) =
            seal_descriptor(&sign, id, "acct", &keys, "notes", Policy::Manual, Hlc(42)).unwrap();
        assert_eq!(d.id, keys.collection_id("acct", "notes"));
        assert_eq!(descriptor_collection_id(&sealed).unwrap(), d.id);
        assert_eq!(open_descriptor(&sealed, &roster, &keys, "acct").unwrap(), d);
    }

    #[test]
    fn forged_or_tampered_descriptors_are_refused() {
        let (sign, id, roster, keys) = setup();
        let (_, sealed) =
            seal_descriptor(&sign, id, "acct", &keys, "notes", Policy::Fields, Hlc(42)).unwrap();

        // MS-23: an author outside the roster.
        let evil = SigningKey::generate();
        let evil_id = DeviceId(device_id(&evil.verifying_key()));
        let (_, forged) =
            seal_descriptor(&evil, evil_id, "acct", &keys, "notes", Policy::Lww, Hlc(1)).unwrap();
        assert_eq!(
            open_descriptor(&forged, &roster, &keys, "acct").unwrap_err(),
            CollectionError::NotMember(evil_id)
        );

        // MS-16: altered ciphertext.
        let mut t = sealed.clone();
        t.ciphertext[0] ^= 1;
        assert_eq!(
            open_descriptor(&t, &roster, &keys, "acct").unwrap_err(),
            CollectionError::Signature
        );

        // MS-17: a member re-signs the descriptor under another collection id.
        let t = resign_header(
            &sealed,
            SigContext::Collection,
            &sign,
            |h: &mut CollectionHeader| {
                h.collection_id = keys.collection_id("acct", "other").0.to_vec();
            },
        );
        assert_eq!(
            open_descriptor(&t, &roster, &keys, "acct").unwrap_err(),
            CollectionError::Commitment
        );

        // Other account keys: the commitment check fails before decryption (MS-42).
        let other = AccountKeys::generate();
        assert_eq!(
            open_descriptor(&sealed, &roster, &other, "acct").unwrap_err(),
            CollectionError::Commitment
        );

        // Wrong account and unknown epoch.
        assert_eq!(
            open_descriptor(&sealed, &roster, &keys, "bcct").unwrap_err(),
            CollectionError::WrongAccount
        );
        let t = resign_header(
            &sealed,
            SigContext::Collection,
            &sign,
            |h: &mut CollectionHeader| {
                h.key_epoch = 9;
            },
        );
        assert_eq!(
            open_descriptor(&t, &roster, &keys, "acct").unwrap_err(),
            CollectionError::UnknownEpoch(9)
        );

        // Malformed bytes (BI-03).
        let t = Sealed {
            header: vec![0x0a, 0xff],
            ..sealed
        };
        assert!(matches!(
            open_descriptor(&t, &roster, &keys, "acct"),
            Err(CollectionError::Malformed(_))
        ));
        assert!(matches!(
            descriptor_collection_id(&t),
            Err(CollectionError::Malformed(_))
        ));
    }

    #[test]
    fn pick_descriptor_is_deterministic() {
        let d = |hlc, dev, policy| Descriptor {
            id: CollectionId([1; 16]),
            name: "notes".into(),
            policy,
            hlc: Hlc(hlc),
            device: DeviceId([dev; 16]),
        };
        let cands = vec![
            d(5, 2, Policy::Lww),
            d(5, 1, Policy::Manual),
            d(6, 0, Policy::Fields),
        ];
        let mut rev = cands.clone();
        rev.reverse();
        assert_eq!(pick_descriptor(&cands), Some(&d(5, 1, Policy::Manual)));
        assert_eq!(pick_descriptor(&rev), Some(&d(5, 1, Policy::Manual)));
        for r in 0..3 {
            let mut c = cands.clone();
            c.rotate_left(r);
            assert_eq!(pick_descriptor(&c).unwrap().policy, Policy::Manual);
        }
        assert_eq!(pick_descriptor(&[]), None);
    }
}
