//! Pairing a new device with a trusted one (sans-IO): the transcripts both key-confirmation
//! MACs bind, and the two state machines, [`Approver`] and [`Joiner`], that turn the
//! messages relayed by the server into a verified result. The client does only the I/O.
//!
//! The order (MS-10, MS-11, MS-15):
//! 1. The approver (a trusted device) makes a random [`PairingCode`], starts SPAKE2 as side
//!    A and sends a `PairingStart` (its id and public keys, its PAKE message).
//! 2. The new device, given the code by the user, answers with a `PairingReply`: its PAKE
//!    message, its public keys and name, and `MAC_B` over transcript B.
//! 3. The approver checks that the reply's signing key hashes to the device id the user
//!    typed and that `MAC_B` verifies; only then ([`Approver::on_reply`] returns the device's
//!    keys) does it sign the `ADD` entry and seal the account keys. It then sends a
//!    `PairingConfirm` with the genesis hash, the roster head after the `ADD` and `MAC_A`
//!    over transcript A.
//! 4. The new device accepts the genesis and roster head only from a `PairingConfirm` whose
//!    `MAC_A` verifies ([`Joiner::on_confirm`]).
//! 5. Once it is trusted (the roster and key envelope the server serves match what was
//!    confirmed), the new device sends a `PairingDone` with `MAC_D` over transcript D. The
//!    approver reports the pairing finished only when `MAC_D` verifies
//!    ([`ApprovedDevice::verify_done`]): the server cannot claim that a device joined.
//!
//! Transcript B is
//! `"sealsync/v1/pairing/transcript-b" || 0x00 || lp(account) || attempt_id(16) ||
//! approver_id(16) || approver_sign_pk(32) || approver_kx_pk(32) || device_id(16) ||
//! device_sign_pk(32) || device_kx_pk(32) || lp(device_name) || lp(pake_msg_a) ||
//! lp(pake_msg_b)` and transcript A is
//! `"sealsync/v1/pairing/transcript-a" || 0x00 || lp(transcript_b) || genesis_hash(32) ||
//! roster_head(32)`, and transcript D is `"sealsync/v1/pairing/transcript-d" || 0x00 ||
//! lp(transcript_a)`, where `lp(x) = u32be(len(x)) || x`. `MAC_B` and `MAC_D` are both
//! under the new device's key `mac_b`; their labels keep the two inputs apart.

use sealsync_crypto::pake::{PairingKeys, PakeSide, PakeState, pake_start};
use sealsync_crypto::{KxPublicKey, PairingCode, VerifyingKey, device_id, lp};
use sealsync_proto::{PairingConfirm, PairingDone, PairingReply, PairingStart};

use crate::ids::DeviceId;
use crate::roster::MAX_DEVICE_NAME_BYTES;

/// Context label of transcript B.
const TRANSCRIPT_B: &[u8] = b"sealsync/v1/pairing/transcript-b";
/// Context label of transcript A.
const TRANSCRIPT_A: &[u8] = b"sealsync/v1/pairing/transcript-a";
/// Context label of transcript D.
const TRANSCRIPT_D: &[u8] = b"sealsync/v1/pairing/transcript-d";

/// Why a pairing step was refused.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// A key-confirmation MAC did not verify: the code typed differs from the code shown,
    /// or the server altered a message of the exchange.
    #[error("the pairing code does not match, or a pairing message was altered")]
    WrongCode,
    /// A message names other devices or another attempt than this pairing's.
    #[error("pairing message for another device or attempt: {0}")]
    Mismatch(&'static str),
    /// A field is malformed (length, key encoding, name).
    #[error("malformed pairing message: {0}")]
    Malformed(&'static str),
}

/// A device's identity and public keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKeys {
    /// `device_id(sign_pk)`.
    pub device_id: DeviceId,
    /// Ed25519 signing key.
    pub sign_pk: VerifyingKey,
    /// X25519 key-exchange key.
    pub kx_pk: KxPublicKey,
}

impl DeviceKeys {
    /// The keys with the device id derived from `sign_pk`.
    pub fn new(sign_pk: VerifyingKey, kx_pk: KxPublicKey) -> Self {
        Self {
            device_id: DeviceId(device_id(&sign_pk)),
            sign_pk,
            kx_pk,
        }
    }

    /// Parses keys as sent; `claimed_id` must be `device_id(sign_pk)`.
    fn parse(claimed_id: &[u8], sign_pk: &[u8], kx_pk: &[u8]) -> Result<Self, PairingError> {
        let sign_pk = VerifyingKey::from_bytes(sign_pk)
            .map_err(|_| PairingError::Malformed("signing key"))?;
        let kx_pk =
            KxPublicKey::from_bytes(kx_pk).map_err(|_| PairingError::Malformed("exchange key"))?;
        let keys = Self::new(sign_pk, kx_pk);
        if claimed_id != keys.device_id.0.as_slice() {
            return Err(PairingError::Mismatch(
                "the signing key does not belong to the named device",
            ));
        }
        Ok(keys)
    }
}

/// Everything transcript B binds.
#[derive(Debug)]
pub struct TranscriptInputs<'a> {
    /// Account name.
    pub account: &'a str,
    /// The attempt's 16-byte id.
    pub attempt_id: &'a [u8; 16],
    /// The approver.
    pub approver: &'a DeviceKeys,
    /// The new device.
    pub device: &'a DeviceKeys,
    /// The new device's name (it enters the `ADD` entry).
    pub device_name: &'a str,
    /// SPAKE2 message of side A.
    pub pake_msg_a: &'a [u8],
    /// SPAKE2 message of side B.
    pub pake_msg_b: &'a [u8],
}

/// Transcript B (see the module documentation).
pub fn transcript_b(t: &TranscriptInputs<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(320 + t.account.len() + t.device_name.len());
    out.extend_from_slice(TRANSCRIPT_B);
    out.push(0);
    lp(&mut out, t.account.as_bytes());
    out.extend_from_slice(t.attempt_id);
    for d in [t.approver, t.device] {
        out.extend_from_slice(&d.device_id.0);
        out.extend_from_slice(&d.sign_pk.to_bytes());
        out.extend_from_slice(&d.kx_pk.to_bytes());
    }
    lp(&mut out, t.device_name.as_bytes());
    lp(&mut out, t.pake_msg_a);
    lp(&mut out, t.pake_msg_b);
    out
}

/// Transcript A: transcript B plus the genesis hash and the roster head it confirms.
pub fn transcript_a(
    transcript_b: &[u8],
    genesis_hash: &[u8; 32],
    roster_head: &[u8; 32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(TRANSCRIPT_A.len() + 5 + transcript_b.len() + 64);
    out.extend_from_slice(TRANSCRIPT_A);
    out.push(0);
    lp(&mut out, transcript_b);
    out.extend_from_slice(genesis_hash);
    out.extend_from_slice(roster_head);
    out
}

/// Transcript D: what the new device's `PairingDone` confirms, transcript A (the genesis
/// and head it now trusts, under everything transcript B binds).
pub fn transcript_d(transcript_a: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(TRANSCRIPT_D.len() + 5 + transcript_a.len());
    out.extend_from_slice(TRANSCRIPT_D);
    out.push(0);
    lp(&mut out, transcript_a);
    out
}

fn array16(b: &[u8], what: &'static str) -> Result<[u8; 16], PairingError> {
    b.try_into().map_err(|_| PairingError::Malformed(what))
}

fn array32(b: &[u8], what: &'static str) -> Result<[u8; 32], PairingError> {
    b.try_into().map_err(|_| PairingError::Malformed(what))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_DEVICE_NAME_BYTES && !name.chars().any(char::is_control)
}

/// The approving side of one attempt, waiting for the new device's reply.
#[derive(Debug)]
pub struct Approver {
    account: String,
    attempt_id: [u8; 16],
    me: DeviceKeys,
    target: DeviceId,
    pake: PakeState,
    msg_a: Vec<u8>,
}

/// The new device as the approver verified it (its `MAC_B` passed).
#[derive(Debug)]
pub struct ApprovedDevice {
    /// Its keys, proven by `MAC_B` to be the ones the device holding the code sent.
    pub keys: DeviceKeys,
    /// Its name.
    pub name: String,
    attempt_id: [u8; 16],
    transcript_b: Vec<u8>,
    macs: PairingKeys,
}

impl Approver {
    /// Starts an attempt for `target`, the device id the user typed. `seed` drives the
    /// SPAKE2 scalar (fresh OS randomness outside of test vectors).
    pub fn start(
        code: &PairingCode,
        account: &str,
        attempt_id: [u8; 16],
        me: DeviceKeys,
        target: DeviceId,
        ttl_ms: u64,
        seed: &[u8; 32],
    ) -> (Self, PairingStart) {
        let (pake, msg_a) = pake_start(PakeSide::Approver, code, &me.device_id.0, &target.0, seed);
        let start = PairingStart {
            attempt_id: attempt_id.to_vec(),
            device_id: target.0.to_vec(),
            approver_id: me.device_id.0.to_vec(),
            approver_sign_pk: me.sign_pk.to_bytes().to_vec(),
            approver_kx_pk: me.kx_pk.to_bytes().to_vec(),
            pake_msg: msg_a.clone(),
            ttl_ms,
        };
        let approver = Self {
            account: account.to_owned(),
            attempt_id,
            me,
            target,
            pake,
            msg_a,
        };
        (approver, start)
    }

    /// The attempt's id.
    pub fn attempt_id(&self) -> [u8; 16] {
        self.attempt_id
    }

    /// Checks the reply: same attempt, a signing key that hashes to the typed device id,
    /// valid keys and name, and `MAC_B` over transcript B. Consumes the state: one reply per
    /// attempt, whatever its outcome (a wrong code spends the attempt).
    pub fn on_reply(self, reply: &PairingReply) -> Result<ApprovedDevice, PairingError> {
        if reply.attempt_id != self.attempt_id {
            return Err(PairingError::Mismatch("reply to another attempt"));
        }
        let keys = DeviceKeys::parse(&self.target.0, &reply.sign_pk, &reply.kx_pk)?;
        if !valid_name(&reply.name) {
            return Err(PairingError::Malformed("device name"));
        }
        let macs = self
            .pake
            .finish(&reply.pake_msg)
            .map_err(|_| PairingError::Malformed("PAKE message"))?;
        let transcript_b = transcript_b(&TranscriptInputs {
            account: &self.account,
            attempt_id: &self.attempt_id,
            approver: &self.me,
            device: &keys,
            device_name: &reply.name,
            pake_msg_a: &self.msg_a,
            pake_msg_b: &reply.pake_msg,
        });
        macs.verify_b(&transcript_b, &reply.mac)
            .map_err(|_| PairingError::WrongCode)?;
        Ok(ApprovedDevice {
            keys,
            name: reply.name.clone(),
            attempt_id: self.attempt_id,
            transcript_b,
            macs,
        })
    }
}

impl ApprovedDevice {
    /// Checks the new device's `PairingDone` for the confirmation of `genesis_hash` and
    /// `roster_head`: same attempt and `MAC_D` over transcript D. A failure means the
    /// message did not come from the device that holds the code (or was altered).
    pub fn verify_done(
        &self,
        genesis_hash: &[u8; 32],
        roster_head: &[u8; 32],
        done: &PairingDone,
    ) -> Result<(), PairingError> {
        if done.attempt_id != self.attempt_id {
            return Err(PairingError::Mismatch("done message of another attempt"));
        }
        let t = transcript_d(&transcript_a(&self.transcript_b, genesis_hash, roster_head));
        self.macs
            .verify_b(&t, &done.mac)
            .map_err(|_| PairingError::Mismatch("done message with a wrong MAC"))
    }

    /// The confirmation for the device: the genesis and the roster head after its `ADD`,
    /// under `MAC_A`.
    pub fn confirm(&self, genesis_hash: &[u8; 32], roster_head: &[u8; 32]) -> PairingConfirm {
        let t = transcript_a(&self.transcript_b, genesis_hash, roster_head);
        PairingConfirm {
            attempt_id: self.attempt_id.to_vec(),
            genesis_hash: genesis_hash.to_vec(),
            roster_head: roster_head.to_vec(),
            mac: self.macs.mac_a(&t).to_vec(),
            device_id: self.keys.device_id.0.to_vec(),
        }
    }
}

/// The new device's side of one attempt, waiting for the approver's confirmation.
#[derive(Debug)]
pub struct Joiner {
    attempt_id: [u8; 16],
    approver: DeviceKeys,
    transcript_b: Vec<u8>,
    macs: PairingKeys,
}

/// What the new device learns from a verified confirmation: the only genesis and roster
/// head it may trust (MS-10, MS-11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmed {
    /// Hash of the account's genesis entry.
    pub genesis_hash: [u8; 32],
    /// Roster head after the `ADD` of this device.
    pub roster_head: [u8; 32],
    /// The approver, which must be a member of that roster with these keys.
    pub approver: DeviceKeys,
    /// The message to send once this device is trusted (`MAC_D` over transcript D).
    pub done: PairingDone,
}

impl Joiner {
    /// Answers `start` with the code the user typed: checks the start is for `me` and that
    /// the approver's id is the hash of its signing key, runs SPAKE2 side B and computes
    /// `MAC_B`. `seed` drives the SPAKE2 scalar.
    pub fn on_start(
        code: &PairingCode,
        account: &str,
        me: &DeviceKeys,
        my_name: &str,
        start: &PairingStart,
        seed: &[u8; 32],
    ) -> Result<(Self, PairingReply), PairingError> {
        if start.device_id != me.device_id.0 {
            return Err(PairingError::Mismatch("pairing started for another device"));
        }
        let attempt_id = array16(&start.attempt_id, "attempt id")?;
        let approver = DeviceKeys::parse(
            &start.approver_id,
            &start.approver_sign_pk,
            &start.approver_kx_pk,
        )?;
        if approver.device_id == me.device_id {
            return Err(PairingError::Mismatch("the approver is this device"));
        }
        let (pake, msg_b) = pake_start(
            PakeSide::Device,
            code,
            &approver.device_id.0,
            &me.device_id.0,
            seed,
        );
        let macs = pake
            .finish(&start.pake_msg)
            .map_err(|_| PairingError::Malformed("PAKE message"))?;
        let transcript_b = transcript_b(&TranscriptInputs {
            account,
            attempt_id: &attempt_id,
            approver: &approver,
            device: me,
            device_name: my_name,
            pake_msg_a: &start.pake_msg,
            pake_msg_b: &msg_b,
        });
        let reply = PairingReply {
            attempt_id: attempt_id.to_vec(),
            pake_msg: msg_b,
            sign_pk: me.sign_pk.to_bytes().to_vec(),
            kx_pk: me.kx_pk.to_bytes().to_vec(),
            name: my_name.to_owned(),
            mac: macs.mac_b(&transcript_b).to_vec(),
        };
        let joiner = Self {
            attempt_id,
            approver,
            transcript_b,
            macs,
        };
        Ok((joiner, reply))
    }

    /// The attempt's id.
    pub fn attempt_id(&self) -> [u8; 16] {
        self.attempt_id
    }

    /// Verifies `MAC_A` over transcript A with the confirmed genesis and roster head.
    /// Consumes the state: a failed confirmation spends the attempt.
    pub fn on_confirm(self, confirm: &PairingConfirm) -> Result<Confirmed, PairingError> {
        if confirm.attempt_id != self.attempt_id {
            return Err(PairingError::Mismatch("confirmation of another attempt"));
        }
        let genesis_hash = array32(&confirm.genesis_hash, "genesis hash")?;
        let roster_head = array32(&confirm.roster_head, "roster head")?;
        let t = transcript_a(&self.transcript_b, &genesis_hash, &roster_head);
        self.macs
            .verify_a(&t, &confirm.mac)
            .map_err(|_| PairingError::WrongCode)?;
        let done = PairingDone {
            attempt_id: self.attempt_id.to_vec(),
            mac: self.macs.mac_b(&transcript_d(&t)).to_vec(),
        };
        Ok(Confirmed {
            genesis_hash,
            roster_head,
            approver: self.approver,
            done,
        })
    }
}

/// Inputs of [`pairing_vector`]: everything a pairing depends on, randomness included.
#[derive(Debug)]
pub struct VectorInputs<'a> {
    /// The code.
    pub code: &'a PairingCode,
    /// Account name.
    pub account: &'a str,
    /// Attempt id.
    pub attempt_id: [u8; 16],
    /// The approver's keys.
    pub approver: &'a DeviceKeys,
    /// The new device's keys.
    pub device: &'a DeviceKeys,
    /// The new device's name.
    pub device_name: &'a str,
    /// Seed of the approver's SPAKE2 scalar.
    pub seed_a: [u8; 32],
    /// Seed of the new device's SPAKE2 scalar.
    pub seed_b: [u8; 32],
    /// Confirmed genesis hash.
    pub genesis_hash: [u8; 32],
    /// Confirmed roster head.
    pub roster_head: [u8; 32],
}

/// Every intermediate value and output of one honest pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorOutputs {
    /// SPAKE2 message of side A.
    pub pake_msg_a: Vec<u8>,
    /// SPAKE2 message of side B.
    pub pake_msg_b: Vec<u8>,
    /// Transcript B.
    pub transcript_b: Vec<u8>,
    /// `MAC_B`.
    pub mac_b: Vec<u8>,
    /// Transcript A.
    pub transcript_a: Vec<u8>,
    /// `MAC_A`.
    pub mac_a: Vec<u8>,
    /// Transcript D.
    pub transcript_d: Vec<u8>,
    /// `MAC_D`.
    pub mac_d: Vec<u8>,
}

/// Runs one honest pairing deterministically (for conformance vectors): both state
/// machines, with the given seeds, and returns the messages, transcripts and MACs.
pub fn pairing_vector(v: &VectorInputs<'_>) -> Result<VectorOutputs, PairingError> {
    let (approver, start) = Approver::start(
        v.code,
        v.account,
        v.attempt_id,
        v.approver.clone(),
        v.device.device_id,
        0,
        &v.seed_a,
    );
    let (joiner, reply) = Joiner::on_start(
        v.code,
        v.account,
        v.device,
        v.device_name,
        &start,
        &v.seed_b,
    )?;
    let approved = approver.on_reply(&reply)?;
    let confirm = approved.confirm(&v.genesis_hash, &v.roster_head);
    let transcript_a = transcript_a(&approved.transcript_b, &v.genesis_hash, &v.roster_head);
    let confirmed = joiner.on_confirm(&confirm)?;
    approved.verify_done(&v.genesis_hash, &v.roster_head, &confirmed.done)?;
    let transcript_d = transcript_d(&transcript_a);
    Ok(VectorOutputs {
        pake_msg_a: start.pake_msg,
        pake_msg_b: reply.pake_msg,
        transcript_b: approved.transcript_b,
        mac_b: reply.mac,
        transcript_a,
        mac_a: confirm.mac,
        transcript_d,
        mac_d: confirmed.done.mac,
    })
}

#[cfg(test)]
mod tests;
