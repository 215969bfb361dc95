//! Collection descriptors: the encrypted, signed record of a collection's name and policy.
//!
//! A descriptor is sealed like a batch (object key label `"collection"`, identity
//! `lp(account) || collection_id || device_id || u64be(hlc) || u32be(epoch)`, a fresh
//! random salt in the signed header). A collection's policy is fixed by the first
//! descriptor pinned for it in the roster (a `COLLECTION` entry carrying the sealed
//! descriptor, see [`crate::roster`]): the roster is signed and hash-chained, so every
//! device sees the same first pin whatever order descriptors arrive in, and neither a
//! backdated descriptor nor a server hiding descriptors can change it (issue 5, defects 4
//! and 5). Any later descriptor of the collection carries no authority.

use sealsync_crypto::{
    CryptoError, ObjectKey, ObjectLabel, SUITE_V1, SigContext, SigningKey, VerifyingKey,
    check_object_salt, device_id, lp, object_salt, sha256, signed_message,
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
/// Largest encoded `Sealed` descriptor accepted (a real one is about 250 bytes).
pub const MAX_DESCRIPTOR_BYTES: usize = 8 * 1024;

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

/// A descriptor header whose signature verified.
#[derive(Clone, Debug)]
pub struct VerifiedDescriptor {
    /// The decoded header (authenticated).
    pub header: CollectionHeader,
    /// Author (from the authenticated header).
    pub device: DeviceId,
    /// Collection (from the authenticated header).
    pub collection: CollectionId,
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

/// `H(signed_message(Collection, header, ciphertext))`: identifies a descriptor (as
/// [`crate::batch_hash`] does a batch).
pub fn descriptor_hash(sealed: &Sealed) -> [u8; 32] {
    sha256(&signed_message(
        SigContext::Collection,
        &sealed.header,
        &sealed.ciphertext,
    ))
}

/// Seals and signs the descriptor of collection `name` under the keys' current epoch, with
/// a fresh 32-byte salt.
pub fn seal_descriptor(
    signing: &SigningKey,
    device: DeviceId,
    account: &str,
    keys: &AccountKeys,
    name: &str,
    policy: Policy,
    hlc: Hlc,
) -> Result<(Descriptor, Sealed), CollectionError> {
    let salt = object_salt();
    seal_descriptor_with_salt(signing, device, account, keys, name, policy, hlc, &salt)
}

/// [`seal_descriptor`] with the salt given (16 to 64 bytes), for test vectors: a salt must
/// never be reused under one collection key and identity.
#[allow(clippy::too_many_arguments)]
pub fn seal_descriptor_with_salt(
    signing: &SigningKey,
    device: DeviceId,
    account: &str,
    keys: &AccountKeys,
    name: &str,
    policy: Policy,
    hlc: Hlc,
    salt: &[u8],
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
        salt,
    )
    .map_err(|_| CollectionError::Seal("salt length"))?;
    let header = CollectionHeader {
        suite: SUITE_V1,
        account: account.to_owned(),
        collection_id: cid.0.to_vec(),
        device_id: device.0.to_vec(),
        key_epoch: epoch,
        hlc: hlc.0,
        key_commitment: key.commitment().to_vec(),
        salt: salt.to_vec(),
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

/// THE descriptor verification path, shared by the server (on post and inside a roster
/// `COLLECTION` entry) and devices: bounded decode, suite, id, commitment and salt lengths
/// (salt 16 to 64 bytes), then the signature over the exact bytes with the key
/// `key_for(author)` returns (`None` => [`CollectionError::NotMember`]).
pub fn verify_descriptor(
    sealed: &Sealed,
    key_for: impl Fn(&DeviceId) -> Option<VerifyingKey>,
) -> Result<VerifiedDescriptor, CollectionError> {
    let (header, collection) = decode_header(sealed)?;
    let device = DeviceId::from_slice(&header.device_id)
        .map_err(|_| CollectionError::Malformed("device id length"))?;
    if header.key_commitment.len() != 32 {
        return Err(CollectionError::Malformed("key commitment length"));
    }
    check_object_salt(&header.salt).map_err(|_| CollectionError::Malformed("salt length"))?;
    let key = key_for(&device).ok_or(CollectionError::NotMember(device))?;
    key.verify(
        SigContext::Collection,
        &sealed.header,
        &sealed.ciphertext,
        &sealed.signature,
    )
    .map_err(|_| CollectionError::Signature)?;
    Ok(VerifiedDescriptor {
        header,
        device,
        collection,
    })
}

/// Opens a descriptor: [`verify_descriptor`] with the author's key from `roster`
/// (MS-23), account, epoch key held, commitment, decrypt, decode; the name must blind to
/// the header's collection id (MS-17).
pub fn open_descriptor(
    sealed: &Sealed,
    roster: &Roster,
    keys: &AccountKeys,
    account: &str,
) -> Result<Descriptor, CollectionError> {
    let v = verify_descriptor(sealed, |d| roster.member(d).map(|m| m.sign_pk))?;
    let (header, cid, device) = (v.header, v.collection, v.device);
    if header.account != account || roster.account() != account {
        return Err(CollectionError::WrongAccount);
    }
    let epoch = header.key_epoch;
    let ck = keys
        .collection_key(account, &cid, epoch)
        .ok_or(CollectionError::UnknownEpoch(epoch))?;
    let hlc = Hlc(header.hlc);
    let key = ObjectKey::derive(
        &ck,
        ObjectLabel::Collection,
        &identity(account, &cid, &device, hlc, epoch),
        &header.salt,
    )
    .map_err(|_| CollectionError::Malformed("salt length"))?;
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

/// The descriptor that fixes collection `cid`: the one pinned in `roster`, opened with
/// `keys`. `Ok(None)` while no pin exists (devices then hold the collection's batches);
/// an error when the pinned descriptor does not open. Every device with this roster gets
/// the same answer, whatever descriptors the server shows it.
pub fn pinned_descriptor(
    roster: &Roster,
    keys: &AccountKeys,
    cid: &CollectionId,
) -> Result<Option<Descriptor>, CollectionError> {
    let Some(pin) = roster.collection_pin(cid) else {
        return Ok(None);
    };
    let d = open_descriptor(&pin.descriptor, roster, keys, roster.account())?;
    if d.id != *cid {
        return Err(CollectionError::NotPinned);
    }
    Ok(Some(d))
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
            recovery_kdf: KdfParams::FLOOR,
            now_ms: 1,
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
    fn fresh_salt_per_seal_and_salt_checked() {
        // Issue 5 defect 3 (key and nonce reuse): two descriptors sealed with every identity
        // field equal (a home restored from a backup) use two keys.
        let (sign, id, roster, keys) = setup();
        let seal = || seal_descriptor(&sign, id, "acct", &keys, "n", Policy::Lww, Hlc(7)).unwrap();
        let (_, a) = seal();
        let (_, b) = seal();
        let ha: CollectionHeader = sealsync_proto::decode(&a.header).unwrap();
        let hb: CollectionHeader = sealsync_proto::decode(&b.header).unwrap();
        assert_eq!(ha.salt.len(), 32);
        assert_ne!(ha.salt, hb.salt);
        assert_ne!(ha.key_commitment, hb.key_commitment);
        // The explicit-salt variant is deterministic (vectors).
        let with = |salt: &[u8]| {
            seal_descriptor_with_salt(&sign, id, "acct", &keys, "n", Policy::Lww, Hlc(7), salt)
        };
        assert_eq!(with(&[9; 16]).unwrap().1, with(&[9; 16]).unwrap().1);
        assert!(matches!(with(&[9; 15]), Err(CollectionError::Seal(_))));
        // A member re-signing the header without a salt, or with a short one: refused by the
        // shared verification path before anything else.
        for salt in [vec![], vec![1; 15]] {
            let t = resign_header(
                &a,
                SigContext::Collection,
                &sign,
                |h: &mut CollectionHeader| h.salt = salt.clone(),
            );
            assert_eq!(
                open_descriptor(&t, &roster, &keys, "acct").unwrap_err(),
                CollectionError::Malformed("salt length")
            );
            assert!(verify_descriptor(&t, |_| Some(sign.verifying_key())).is_err());
        }
        assert_eq!(
            open_descriptor(&a, &roster, &keys, "acct").unwrap().policy,
            Policy::Lww
        );
    }

    #[test]
    fn backdated_descriptor_cannot_change_a_pinned_policy() {
        // CD-12 / MS-22 (issue 5 defect 4): the policy is the pinned first descriptor's. A
        // member that backdates a descriptor with another policy (hlc 1 < 42) cannot pin it,
        // and whatever descriptors a device is shown, the pin decides.
        let (sign, id, mut roster, keys) = setup();
        let (_, first) =
            seal_descriptor(&sign, id, "acct", &keys, "notes", Policy::Manual, Hlc(42)).unwrap();
        let cid = keys.collection_id("acct", "notes");
        assert_eq!(pinned_descriptor(&roster, &keys, &cid).unwrap(), None);
        let pin = roster.make_collection_pin(&sign, id, &first, 10).unwrap();
        roster.apply(&pin).unwrap();
        let (_, backdated) =
            seal_descriptor(&sign, id, "acct", &keys, "notes", Policy::Lww, Hlc(1)).unwrap();
        let second = roster
            .make_collection_pin(&sign, id, &backdated, 11)
            .unwrap();
        assert_eq!(
            roster.apply(&second).unwrap_err(),
            crate::error::RosterError::AlreadyPinned(cid)
        );
        let d = pinned_descriptor(&roster, &keys, &cid).unwrap().unwrap();
        assert_eq!((d.policy, d.hlc), (Policy::Manual, Hlc(42)));
        assert_eq!(
            roster.collection_pin(&cid).unwrap().descriptor_hash,
            descriptor_hash(&first)
        );
        // The backdated one still opens as a descriptor: it is just not the pinned one.
        assert_eq!(
            open_descriptor(&backdated, &roster, &keys, "acct")
                .unwrap()
                .policy,
            Policy::Lww
        );
    }
}
