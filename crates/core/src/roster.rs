//! The device roster: a hash chain of signed entries listing the account's devices.
//!
//! Entry 0 is the genesis, self-signed by the first device, carrying the recovery public
//! key, salt and KDF parameters. Each later entry has the next seq, chains to the previous
//! entry's hash, names the roster's current key epoch, has a plausible creation time, and is
//! signed by a current member, or (for `ADD` only) by the recovery key. A device trusts one
//! genesis and accepts only entries extending that chain (MS-10, MS-11, MS-12). Signatures
//! use the `"sealsync/v1/roster"` context over the exact body bytes.
//!
//! Ops after the genesis: `ADD` admits a device; `COLLECTION` pins a collection's first
//! descriptor (signed by the entry's signer, carried whole), which fixes the collection's
//! policy for good: a second `COLLECTION` entry for the same collection id is refused.

use std::collections::BTreeMap;

use sealsync_crypto::{
    KdfParams, KxPublicKey, SUITE_V1, SigContext, SigningKey, VerifyingKey, device_id, lp, sha256,
};
use sealsync_proto::{RosterEntryBody, RosterOp, Sealed, SignedRosterEntry};

use crate::collection::{MAX_DESCRIPTOR_BYTES, descriptor_hash, verify_descriptor};
use crate::error::{CollectionError, RosterError};
use crate::ids::{CollectionId, DeviceId};

/// Largest encoded roster entry body accepted.
const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// Longest device name, in bytes.
pub const MAX_DEVICE_NAME_BYTES: usize = 256;
/// Accepted recovery salt lengths, in bytes.
const SALT_LEN: std::ops::RangeInclusive<usize> = 16..=64;
/// How far an entry's `created_ms` may lie before the previous entry's: device clocks
/// differ (a device not yet synced with the server's time signs with its own clock), but
/// not by a day.
pub const ROSTER_CLOCK_TOLERANCE_MS: u64 = 24 * 60 * 60 * 1000;
/// Latest `created_ms` accepted at all (year 3000): anything later cannot be right. The
/// server also refuses an entry created beyond its own clock plus the drift bound.
pub const MAX_ROSTER_CREATED_MS: u64 = 32_503_680_000_000;

/// A collection pinned by a `COLLECTION` entry: its first descriptor.
#[derive(Clone, Debug)]
pub struct CollectionPin {
    /// Seq of the pinning entry.
    pub seq: u64,
    /// The device that signed the entry and the descriptor.
    pub author: DeviceId,
    /// The pinned descriptor, as sealed by its author.
    pub descriptor: Sealed,
    /// [`descriptor_hash`] of `descriptor`.
    pub descriptor_hash: [u8; 32],
}

/// One device of the roster.
#[derive(Clone, Debug)]
pub struct RosterMember {
    /// `H("sealsync/v1/device-id" || sign_pk)[..16]`.
    pub device_id: DeviceId,
    /// Ed25519 key that signs its batches, descriptors, envelopes and roster entries.
    pub sign_pk: VerifyingKey,
    /// X25519 key that receives envelopes.
    pub kx_pk: KxPublicKey,
    /// Name chosen at enrollment.
    pub name: String,
    /// Seq of the entry that added it.
    pub seq: u64,
}

/// A verified roster.
#[derive(Clone, Debug)]
pub struct Roster {
    account: String,
    epoch: u32,
    entries: Vec<SignedRosterEntry>,
    hashes: Vec<[u8; 32]>,
    members: BTreeMap<DeviceId, RosterMember>,
    pins: BTreeMap<CollectionId, CollectionPin>,
    last_created_ms: u64,
    recovery_pk: VerifyingKey,
    recovery_salt: Vec<u8>,
    recovery_kdf: KdfParams,
}

/// Inputs of [`Roster::make_genesis`].
#[derive(Debug)]
pub struct GenesisParams<'a> {
    /// Account name.
    pub account: &'a str,
    /// The first device's signing key (it signs its own genesis).
    pub signing: &'a SigningKey,
    /// The first device's key-exchange public key.
    pub kx_pk: &'a KxPublicKey,
    /// The first device's name.
    pub name: &'a str,
    /// Public key derived from the recovery secret.
    pub recovery_pk: &'a VerifyingKey,
    /// Argon2id salt for the recovery secret (16 random bytes).
    pub recovery_salt: &'a [u8],
    /// Argon2id parameters for the recovery secret (at least the floor: MS-06).
    pub recovery_kdf: KdfParams,
    /// Creation time.
    pub now_ms: u64,
}

/// The device an `ADD` entry admits.
#[derive(Debug)]
pub struct NewMember<'a> {
    /// Its device id (must be the hash of `sign_pk`).
    pub device_id: DeviceId,
    /// Its signing key.
    pub sign_pk: &'a VerifyingKey,
    /// Its key-exchange key.
    pub kx_pk: &'a KxPublicKey,
    /// Its name.
    pub name: &'a str,
}

/// `H("sealsync/v1/roster-entry" || lp(body) || signature)`.
pub fn roster_entry_hash(e: &SignedRosterEntry) -> [u8; 32] {
    let mut buf = Vec::with_capacity(24 + 4 + e.body.len() + e.signature.len());
    buf.extend_from_slice(b"sealsync/v1/roster-entry");
    lp(&mut buf, &e.body);
    buf.extend_from_slice(&e.signature);
    sha256(&buf)
}

fn sign_entry(signing: &SigningKey, body: &RosterEntryBody) -> SignedRosterEntry {
    let body = sealsync_proto::encode(body);
    let signature = signing.sign(SigContext::Roster, &body, &[]).to_vec();
    SignedRosterEntry { body, signature }
}

fn decode_body(e: &SignedRosterEntry, account: &str) -> Result<RosterEntryBody, RosterError> {
    let body: RosterEntryBody = sealsync_proto::decode_limited(&e.body, MAX_ENTRY_BYTES)
        .map_err(|_| RosterError::Malformed("body does not decode"))?;
    if body.suite != SUITE_V1 {
        return Err(RosterError::Suite(body.suite));
    }
    if body.account != account {
        return Err(RosterError::WrongAccount);
    }
    Ok(body)
}

fn verify_entry(key: &VerifyingKey, e: &SignedRosterEntry) -> Result<(), RosterError> {
    key.verify(SigContext::Roster, &e.body, &[], &e.signature)
        .map_err(|_| RosterError::Signature)
}

fn subject(b: &RosterEntryBody) -> Result<RosterMember, RosterError> {
    let device_id = DeviceId::from_slice(&b.subject_device_id)
        .map_err(|_| RosterError::Malformed("subject id length"))?;
    let sign_pk = VerifyingKey::from_bytes(&b.subject_sign_pk).map_err(|_| RosterError::BadKey)?;
    let kx_pk = KxPublicKey::from_bytes(&b.subject_kx_pk).map_err(|_| RosterError::BadKey)?;
    if DeviceId(sealsync_crypto::device_id(&sign_pk)) != device_id {
        return Err(RosterError::DeviceIdMismatch);
    }
    if b.subject_name.len() > MAX_DEVICE_NAME_BYTES {
        return Err(RosterError::Malformed("device name too long"));
    }
    Ok(RosterMember {
        device_id,
        sign_pk,
        kx_pk,
        name: b.subject_name.clone(),
        seq: b.seq,
    })
}

/// The unsigned `ADD` body for `m` as the next entry of `roster`, naming no signer.
fn member_body(roster: &Roster, m: &NewMember<'_>, now_ms: u64) -> RosterEntryBody {
    RosterEntryBody {
        suite: SUITE_V1,
        account: roster.account.clone(),
        seq: roster.len(),
        prev_hash: roster.head_hash().to_vec(),
        op: RosterOp::Add as i32,
        subject_device_id: m.device_id.0.to_vec(),
        subject_sign_pk: m.sign_pk.to_bytes().to_vec(),
        subject_kx_pk: m.kx_pk.to_bytes().to_vec(),
        subject_name: m.name.to_owned(),
        signer_device_id: Vec::new(),
        recovery_pk: Vec::new(),
        recovery_salt: Vec::new(),
        recovery_kdf: None,
        epoch: roster.epoch,
        created_ms: now_ms,
        collection_id: Vec::new(),
        descriptor: Vec::new(),
    }
}

/// Refuses a `created_ms` that cannot be right: zero, after [`MAX_ROSTER_CREATED_MS`], or
/// more than [`ROSTER_CLOCK_TOLERANCE_MS`] before the previous entry's (BI-19).
fn check_created(created_ms: u64, previous_ms: u64) -> Result<(), RosterError> {
    if created_ms == 0
        || created_ms > MAX_ROSTER_CREATED_MS
        || created_ms.saturating_add(ROSTER_CLOCK_TOLERANCE_MS) < previous_ms
    {
        return Err(RosterError::CreatedAt(created_ms));
    }
    Ok(())
}

impl Roster {
    /// Builds and signs the genesis entry (seq 0) of a new account.
    pub fn make_genesis(p: GenesisParams<'_>) -> SignedRosterEntry {
        let vk = p.signing.verifying_key();
        let id = device_id(&vk).to_vec();
        let body = RosterEntryBody {
            suite: SUITE_V1,
            account: p.account.to_owned(),
            seq: 0,
            prev_hash: vec![0; 32],
            op: RosterOp::Genesis as i32,
            subject_device_id: id.clone(),
            subject_sign_pk: vk.to_bytes().to_vec(),
            subject_kx_pk: p.kx_pk.to_bytes().to_vec(),
            subject_name: p.name.to_owned(),
            signer_device_id: id,
            recovery_pk: p.recovery_pk.to_bytes().to_vec(),
            recovery_salt: p.recovery_salt.to_vec(),
            recovery_kdf: Some(sealsync_proto::KdfParams {
                m_kib: p.recovery_kdf.m_kib,
                t_cost: p.recovery_kdf.t_cost,
                p_cost: p.recovery_kdf.p_cost,
            }),
            epoch: 1,
            created_ms: p.now_ms,
            collection_id: Vec::new(),
            descriptor: Vec::new(),
        };
        sign_entry(p.signing, &body)
    }

    /// Verifies a genesis: decodes, suite, account, seq 0, op GENESIS, zero prev hash,
    /// self-signed by its subject, valid keys, recovery salt length and KDF params at least
    /// the floor (MS-06).
    pub fn from_genesis(entry: &SignedRosterEntry, account: &str) -> Result<Roster, RosterError> {
        let b = decode_body(entry, account)?;
        if b.op != RosterOp::Genesis as i32 {
            return Err(RosterError::NotGenesis("op is not GENESIS"));
        }
        if b.seq != 0 {
            return Err(RosterError::NotGenesis("seq is not 0"));
        }
        if b.prev_hash != [0u8; 32] {
            return Err(RosterError::NotGenesis("prev hash is not zero"));
        }
        if !b.collection_id.is_empty() || !b.descriptor.is_empty() {
            return Err(RosterError::Malformed("collection field in a genesis"));
        }
        check_created(b.created_ms, 0)?;
        let first = subject(&b)?;
        if b.signer_device_id != b.subject_device_id {
            return Err(RosterError::NotGenesis("not self-signed"));
        }
        verify_entry(&first.sign_pk, entry)?;
        let recovery_pk =
            VerifyingKey::from_bytes(&b.recovery_pk).map_err(|_| RosterError::BadKey)?;
        if !SALT_LEN.contains(&b.recovery_salt.len()) {
            return Err(RosterError::KdfParams);
        }
        let kdf = b.recovery_kdf.ok_or(RosterError::KdfParams)?;
        let recovery_kdf = KdfParams {
            m_kib: kdf.m_kib,
            t_cost: kdf.t_cost,
            p_cost: kdf.p_cost,
        };
        recovery_kdf.check().map_err(|_| RosterError::KdfParams)?;
        let hash = roster_entry_hash(entry);
        let mut members = BTreeMap::new();
        members.insert(first.device_id, first);
        Ok(Roster {
            account: account.to_owned(),
            epoch: b.epoch,
            entries: vec![entry.clone()],
            hashes: vec![hash],
            members,
            pins: BTreeMap::new(),
            last_created_ms: b.created_ms,
            recovery_pk,
            recovery_salt: b.recovery_salt,
            recovery_kdf,
        })
    }

    /// Verifies a whole stored roster: `entries[0]` is the genesis, the rest extend it.
    pub fn from_entries(
        entries: &[SignedRosterEntry],
        account: &str,
    ) -> Result<Roster, RosterError> {
        let (genesis, rest) = entries
            .split_first()
            .ok_or(RosterError::NotGenesis("no entries"))?;
        let mut roster = Roster::from_genesis(genesis, account)?;
        roster.extend(rest)?;
        Ok(roster)
    }

    /// Applies the next entry: suite, account, seq = next, prev hash = head, no genesis-only
    /// field, `epoch` = the roster's current epoch, `created_ms` plausible
    /// ([`ROSTER_CLOCK_TOLERANCE_MS`], [`MAX_ROSTER_CREATED_MS`]), then by op:
    /// - `ADD`: signed by a current member (or by the recovery key, `signer_device_id`
    ///   empty), valid subject keys, subject not already a member;
    /// - `COLLECTION`: signed by a current member, no subject, a 16-byte `collection_id` not
    ///   pinned yet, and a descriptor of that collection and account signed by the same
    ///   member (checked by [`verify_descriptor`]).
    ///
    /// On error the roster is unchanged.
    pub fn apply(&mut self, entry: &SignedRosterEntry) -> Result<(), RosterError> {
        let b = decode_body(entry, &self.account)?;
        let next = self.len();
        if b.seq != next {
            return Err(RosterError::Seq {
                expected: next,
                got: b.seq,
            });
        }
        if b.prev_hash.as_slice() != self.head_hash().as_slice() {
            return Err(RosterError::PrevHash { seq: b.seq });
        }
        if !b.recovery_pk.is_empty() || !b.recovery_salt.is_empty() || b.recovery_kdf.is_some() {
            return Err(RosterError::Malformed(
                "genesis-only field in a later entry",
            ));
        }
        if b.epoch != self.epoch {
            return Err(RosterError::Epoch {
                expected: self.epoch,
                got: b.epoch,
            });
        }
        check_created(b.created_ms, self.last_created_ms)?;
        if b.op == RosterOp::Add as i32 {
            self.apply_add(entry, &b)?;
        } else if b.op == RosterOp::Collection as i32 {
            self.apply_collection(entry, &b)?;
        } else {
            return Err(RosterError::Op(b.op));
        }
        self.entries.push(entry.clone());
        self.hashes.push(roster_entry_hash(entry));
        self.last_created_ms = b.created_ms;
        Ok(())
    }

    /// The `ADD` part of [`Roster::apply`]: admits the subject.
    fn apply_add(
        &mut self,
        entry: &SignedRosterEntry,
        b: &RosterEntryBody,
    ) -> Result<(), RosterError> {
        if !b.collection_id.is_empty() || !b.descriptor.is_empty() {
            return Err(RosterError::Malformed("collection field in an ADD entry"));
        }
        let signer_key = if b.signer_device_id.is_empty() {
            self.recovery_pk
        } else {
            self.member_key(&b.signer_device_id)?.1
        };
        verify_entry(&signer_key, entry)?;
        let new = subject(b)?;
        if self.members.contains_key(&new.device_id) {
            return Err(RosterError::AlreadyMember(new.device_id));
        }
        self.members.insert(new.device_id, new);
        Ok(())
    }

    /// The `COLLECTION` part of [`Roster::apply`]: pins the collection's first descriptor.
    fn apply_collection(
        &mut self,
        entry: &SignedRosterEntry,
        b: &RosterEntryBody,
    ) -> Result<(), RosterError> {
        if !b.subject_device_id.is_empty()
            || !b.subject_sign_pk.is_empty()
            || !b.subject_kx_pk.is_empty()
            || !b.subject_name.is_empty()
        {
            return Err(RosterError::Malformed(
                "subject field in a COLLECTION entry",
            ));
        }
        if b.signer_device_id.is_empty() {
            // The recovery key admits devices only.
            return Err(RosterError::Op(b.op));
        }
        let (signer, signer_key) = self.member_key(&b.signer_device_id)?;
        verify_entry(&signer_key, entry)?;
        let cid = CollectionId::from_slice(&b.collection_id)
            .map_err(|_| RosterError::Malformed("collection id length"))?;
        let descriptor: Sealed =
            sealsync_proto::decode_limited(&b.descriptor, MAX_DESCRIPTOR_BYTES).map_err(|_| {
                RosterError::Descriptor(CollectionError::Malformed("does not decode"))
            })?;
        let v = verify_descriptor(&descriptor, |d| (*d == signer).then_some(signer_key))
            .map_err(RosterError::Descriptor)?;
        if v.header.account != self.account {
            return Err(RosterError::Descriptor(CollectionError::WrongAccount));
        }
        if v.collection != cid {
            return Err(RosterError::Malformed("descriptor of another collection"));
        }
        if self.pins.contains_key(&cid) {
            return Err(RosterError::AlreadyPinned(cid));
        }
        let descriptor_hash = descriptor_hash(&descriptor);
        self.pins.insert(
            cid,
            CollectionPin {
                seq: b.seq,
                author: signer,
                descriptor,
                descriptor_hash,
            },
        );
        Ok(())
    }

    /// The current member named by `id_bytes`, with its signing key.
    fn member_key(&self, id_bytes: &[u8]) -> Result<(DeviceId, VerifyingKey), RosterError> {
        let id = DeviceId::from_slice(id_bytes)
            .map_err(|_| RosterError::Malformed("signer id length"))?;
        let m = self.members.get(&id).ok_or(RosterError::NotMember(id))?;
        Ok((id, m.sign_pk))
    }

    /// Applies `entries` in order, skipping ones already applied (same seq and same hash);
    /// a different entry at an applied seq is [`RosterError::Fork`]. All or nothing: on any
    /// error the roster is unchanged. Returns how many entries were newly applied.
    pub fn extend(&mut self, entries: &[SignedRosterEntry]) -> Result<usize, RosterError> {
        let mut work = self.clone();
        let mut applied = 0;
        for e in entries {
            let seq = decode_body(e, &self.account)?.seq;
            match usize::try_from(seq).ok().and_then(|i| work.hashes.get(i)) {
                Some(known) if *known == roster_entry_hash(e) => continue,
                Some(_) => return Err(RosterError::Fork { seq }),
                None => {
                    work.apply(e)?;
                    applied += 1;
                }
            }
        }
        *self = work;
        Ok(applied)
    }

    /// Builds and signs an `ADD` entry for `m`, signed by the member `signer_id`.
    pub fn make_add(
        &self,
        signer: &SigningKey,
        signer_id: DeviceId,
        m: NewMember<'_>,
        now_ms: u64,
    ) -> SignedRosterEntry {
        let mut body = member_body(self, &m, now_ms);
        body.signer_device_id = signer_id.0.to_vec();
        sign_entry(signer, &body)
    }

    /// Builds and signs a `COLLECTION` entry pinning `descriptor` (sealed by `signer_id`) as
    /// its collection's first descriptor. Whether the collection is already pinned is
    /// checked by [`Roster::apply`]; [`RosterError::Descriptor`] when the descriptor does
    /// not decode.
    pub fn make_collection_pin(
        &self,
        signer: &SigningKey,
        signer_id: DeviceId,
        descriptor: &Sealed,
        now_ms: u64,
    ) -> Result<SignedRosterEntry, RosterError> {
        let cid = crate::collection::descriptor_collection_id(descriptor)
            .map_err(RosterError::Descriptor)?;
        let body = RosterEntryBody {
            suite: SUITE_V1,
            account: self.account.clone(),
            seq: self.len(),
            prev_hash: self.head_hash().to_vec(),
            op: RosterOp::Collection as i32,
            signer_device_id: signer_id.0.to_vec(),
            epoch: self.epoch,
            created_ms: now_ms,
            collection_id: cid.0.to_vec(),
            descriptor: sealsync_proto::encode(descriptor),
            ..RosterEntryBody::default()
        };
        Ok(sign_entry(signer, &body))
    }

    /// The pin of collection `cid`, if a `COLLECTION` entry fixed it.
    pub fn collection_pin(&self, cid: &CollectionId) -> Option<&CollectionPin> {
        self.pins.get(cid)
    }

    /// All pinned collections, in id order.
    pub fn collection_pins(&self) -> impl Iterator<Item = (&CollectionId, &CollectionPin)> {
        self.pins.iter()
    }

    /// The current key epoch (the one `ADD` and `COLLECTION` entries must name).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// `created_ms` of the newest entry.
    pub fn last_created_ms(&self) -> u64 {
        self.last_created_ms
    }

    /// Builds and signs an `ADD` entry for `m`, signed by the recovery key.
    pub fn make_add_by_recovery(
        &self,
        recovery: &SigningKey,
        m: NewMember<'_>,
        now_ms: u64,
    ) -> SignedRosterEntry {
        sign_entry(recovery, &member_body(self, &m, now_ms))
    }

    /// The member with this id.
    pub fn member(&self, id: &DeviceId) -> Option<&RosterMember> {
        self.members.get(id)
    }

    /// All members, in device id order.
    pub fn members(&self) -> impl Iterator<Item = &RosterMember> {
        self.members.values()
    }

    /// Hash of entry 0; confirmed to a new device by the pairing MAC (MS-10).
    pub fn genesis_hash(&self) -> [u8; 32] {
        self.hashes.first().copied().unwrap_or_default()
    }

    /// Hash of the newest entry.
    pub fn head_hash(&self) -> [u8; 32] {
        self.hashes.last().copied().unwrap_or_default()
    }

    /// Whether `head` is the hash of one of the verified entries, genesis included: a batch
    /// header's `roster_head` must be one, else its author saw a roster entry this roster
    /// lacks (MS-12).
    pub fn contains_head(&self, head: &[u8; 32]) -> bool {
        self.hashes.contains(head)
    }

    /// The seq of the entry whose hash is `head`, if it is one of the verified entries.
    pub fn head_seq(&self, head: &[u8; 32]) -> Option<u64> {
        self.hashes.iter().position(|h| h == head).map(|i| i as u64)
    }

    /// Number of entries applied (= the next seq).
    pub fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Always false: a roster holds at least its genesis.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The verified entries, genesis first (to persist and re-verify with
    /// [`Roster::from_entries`]).
    pub fn entries(&self) -> &[SignedRosterEntry] {
        &self.entries
    }

    /// Account name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Argon2id salt of the recovery secret.
    pub fn recovery_salt(&self) -> &[u8] {
        &self.recovery_salt
    }

    /// Argon2id parameters of the recovery secret (checked against the floor).
    pub fn recovery_kdf(&self) -> KdfParams {
        self.recovery_kdf
    }

    /// Public key of the recovery secret.
    pub fn recovery_pk(&self) -> &VerifyingKey {
        &self.recovery_pk
    }
}

#[cfg(test)]
mod tests;
