//! Key envelopes: the account keys HPKE-sealed to one roster device, signed by the sender.
//!
//! HPKE info is `"sealsync/v1/envelope" || lp(account) || recipient_device_id ||
//! u32be(epoch) || lp(salt)` with a fresh random salt from the header; the HPKE AAD is the
//! encoded header exactly as sent (nothing is re-encoded), so the encapsulated key, an
//! output of sealing, travels in front of the HPKE ciphertext: `Sealed.ciphertext = enc (32
//! bytes) || HPKE ciphertext`. The Ed25519 signature (`"sealsync/v1/envelope"`) covers the
//! header and that whole ciphertext. A device accepts an envelope only from a roster member,
//! addressed to itself, naming a roster head of its own verified roster at which the sender
//! was already a member (MS-01, MS-12, MS-15).

use sealsync_crypto::{
    KxPublicKey, KxSecretKey, SUITE_V1, SigContext, SigningKey, check_object_salt, device_id,
    hpke_open, hpke_seal, hpke_seal_with_ikm_for_vectors, lp, object_salt,
};
use sealsync_proto::{EnvelopeHeader, Sealed};

use crate::error::EnvelopeError;
use crate::ids::DeviceId;
use crate::keys::AccountKeys;
use crate::roster::{Roster, RosterMember};

/// The `purpose` of an envelope carrying account keys.
pub const PURPOSE_ACCOUNT_KEYS: &str = "account-keys";

/// Largest encoded envelope header accepted.
const MAX_HEADER_BYTES: usize = 4 * 1024;
/// Largest envelope ciphertext accepted (account keys with many epochs fit easily).
const MAX_CIPHERTEXT_BYTES: usize = 256 * 1024;
/// Length of the X25519 HPKE encapsulated key at the start of the ciphertext.
const ENC_LEN: usize = 32;

fn hpke_info(account: &str, recipient: &DeviceId, epoch: u32, salt: &[u8]) -> Vec<u8> {
    let mut info = Vec::with_capacity(20 + 8 + account.len() + 16 + 4 + salt.len());
    info.extend_from_slice(b"sealsync/v1/envelope");
    lp(&mut info, account.as_bytes());
    info.extend_from_slice(&recipient.0);
    info.extend_from_slice(&epoch.to_be_bytes());
    lp(&mut info, salt);
    info
}

/// Seals `keys` to `recipient`'s X25519 key and signs the result as `sender`, naming
/// `roster_head` (a head of the sender's verified roster at which both are members) and a
/// fresh 32-byte salt.
pub fn seal_envelope(
    signing: &SigningKey,
    sender: DeviceId,
    recipient: &RosterMember,
    account: &str,
    roster_head: [u8; 32],
    keys: &AccountKeys,
) -> Result<Sealed, EnvelopeError> {
    let salt = object_salt();
    seal_envelope_with_salt(
        signing,
        sender,
        recipient,
        account,
        roster_head,
        keys,
        &salt,
    )
}

/// [`seal_envelope`] with the salt given (16 to 64 bytes), for test vectors. The HPKE
/// ephemeral key is still fresh, so the output is not deterministic.
pub fn seal_envelope_with_salt(
    signing: &SigningKey,
    sender: DeviceId,
    recipient: &RosterMember,
    account: &str,
    roster_head: [u8; 32],
    keys: &AccountKeys,
    salt: &[u8],
) -> Result<Sealed, EnvelopeError> {
    let seal = |pk: &_, info: &[u8], aad: &[u8], pt: &[u8]| hpke_seal(pk, info, aad, pt);
    seal_envelope_inner(
        signing,
        sender,
        recipient,
        account,
        roster_head,
        keys,
        salt,
        seal,
    )
}

/// [`seal_envelope_with_salt`] with the HPKE ephemeral key derived from `ikm_e` (RFC 9180
/// `DeriveKeyPair`): fully deterministic, for conformance test vectors only (`tools/vectors`).
/// Devices never call this: a reused `ikm_e` reuses the ephemeral key.
#[allow(clippy::too_many_arguments)]
pub fn seal_envelope_for_vectors(
    signing: &SigningKey,
    sender: DeviceId,
    recipient: &RosterMember,
    account: &str,
    roster_head: [u8; 32],
    keys: &AccountKeys,
    salt: &[u8],
    ikm_e: &[u8; 32],
) -> Result<Sealed, EnvelopeError> {
    let seal = |pk: &_, info: &[u8], aad: &[u8], pt: &[u8]| {
        hpke_seal_with_ikm_for_vectors(pk, info, aad, pt, ikm_e)
    };
    seal_envelope_inner(
        signing,
        sender,
        recipient,
        account,
        roster_head,
        keys,
        salt,
        seal,
    )
}

#[allow(clippy::too_many_arguments)]
fn seal_envelope_inner(
    signing: &SigningKey,
    sender: DeviceId,
    recipient: &RosterMember,
    account: &str,
    roster_head: [u8; 32],
    keys: &AccountKeys,
    salt: &[u8],
    hpke: impl FnOnce(
        &KxPublicKey,
        &[u8],
        &[u8],
        &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), sealsync_crypto::CryptoError>,
) -> Result<Sealed, EnvelopeError> {
    if DeviceId(device_id(&signing.verifying_key())) != sender {
        return Err(EnvelopeError::Seal("signing key is not the sender's"));
    }
    check_object_salt(salt).map_err(|_| EnvelopeError::Seal("salt length"))?;
    let epoch = keys.current_epoch();
    let header = EnvelopeHeader {
        suite: SUITE_V1,
        account: account.to_owned(),
        sender_device_id: sender.0.to_vec(),
        recipient_device_id: recipient.device_id.0.to_vec(),
        epoch,
        purpose: PURPOSE_ACCOUNT_KEYS.to_owned(),
        roster_head: roster_head.to_vec(),
        salt: salt.to_vec(),
    };
    let header_bytes = sealsync_proto::encode(&header);
    let info = hpke_info(account, &recipient.device_id, epoch, salt);
    let plaintext = keys.encode();
    let (enc, ct) = hpke(&recipient.kx_pk, &info, &header_bytes, &plaintext)
        .map_err(|_| EnvelopeError::Seal("HPKE refused the recipient key"))?;
    let mut ciphertext = Vec::with_capacity(enc.len() + ct.len());
    ciphertext.extend_from_slice(&enc);
    ciphertext.extend_from_slice(&ct);
    let signature = signing
        .sign(SigContext::Envelope, &header_bytes, &ciphertext)
        .to_vec();
    Ok(Sealed {
        header: header_bytes,
        ciphertext,
        signature,
    })
}

fn decode_header(sealed: &Sealed) -> Result<EnvelopeHeader, EnvelopeError> {
    let header: EnvelopeHeader = sealsync_proto::decode_limited(&sealed.header, MAX_HEADER_BYTES)
        .map_err(|_| EnvelopeError::Malformed("header does not decode"))?;
    if header.suite != SUITE_V1 {
        return Err(EnvelopeError::Suite(header.suite));
    }
    Ok(header)
}

/// Opens an envelope addressed to `me`: suite, purpose, account, salt length, sender in
/// `roster` (MS-15), recipient is `me`, signature over the exact bytes with the sender's
/// roster key (MS-01), roster head an entry of `roster` at which the sender was already a
/// member (MS-12), HPKE open with the received header bytes as AAD, decode; the keys must
/// hold the header's epoch as their current one.
pub fn open_envelope(
    sealed: &Sealed,
    me: DeviceId,
    my_kx: &KxSecretKey,
    roster: &Roster,
) -> Result<AccountKeys, EnvelopeError> {
    if sealed.ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(EnvelopeError::Malformed("ciphertext too large"));
    }
    let header = decode_header(sealed)?;
    if header.purpose != PURPOSE_ACCOUNT_KEYS {
        return Err(EnvelopeError::Purpose);
    }
    if header.account != roster.account() {
        return Err(EnvelopeError::WrongAccount);
    }
    check_object_salt(&header.salt).map_err(|_| EnvelopeError::Malformed("salt length"))?;
    let sender = DeviceId::from_slice(&header.sender_device_id)
        .map_err(|_| EnvelopeError::Malformed("sender id length"))?;
    let recipient = DeviceId::from_slice(&header.recipient_device_id)
        .map_err(|_| EnvelopeError::Malformed("recipient id length"))?;
    let member = roster
        .member(&sender)
        .ok_or(EnvelopeError::NotMember(sender))?;
    if recipient != me {
        return Err(EnvelopeError::WrongRecipient);
    }
    member
        .sign_pk
        .verify(
            SigContext::Envelope,
            &sealed.header,
            &sealed.ciphertext,
            &sealed.signature,
        )
        .map_err(|_| EnvelopeError::Signature)?;
    let head: [u8; 32] = header
        .roster_head
        .as_slice()
        .try_into()
        .map_err(|_| EnvelopeError::Malformed("roster head length"))?;
    match roster.head_seq(&head) {
        Some(seq) if member.seq <= seq => {}
        _ => return Err(EnvelopeError::RosterHead),
    }
    if sealed.ciphertext.len() < ENC_LEN {
        return Err(EnvelopeError::Decrypt);
    }
    let (enc, ct) = sealed.ciphertext.split_at(ENC_LEN);
    let info = hpke_info(&header.account, &recipient, header.epoch, &header.salt);
    let plaintext =
        hpke_open(my_kx, enc, &info, &sealed.header, ct).map_err(|_| EnvelopeError::Decrypt)?;
    let keys = AccountKeys::decode(&plaintext).map_err(EnvelopeError::Keys)?;
    if keys.current_epoch() != header.epoch {
        return Err(EnvelopeError::Keys(crate::error::KeysError::Invalid(
            "epoch differs from the header",
        )));
    }
    Ok(keys)
}

/// Recipient device id named in an envelope header. Unverified: for routing by servers.
pub fn envelope_recipient(sealed: &Sealed) -> Result<DeviceId, EnvelopeError> {
    let header = decode_header(sealed)?;
    DeviceId::from_slice(&header.recipient_device_id)
        .map_err(|_| EnvelopeError::Malformed("recipient id length"))
}

#[cfg(test)]
mod tests {
    use sealsync_crypto::{KdfParams, KxPublicKey};

    use super::*;
    use crate::roster::{GenesisParams, NewMember};
    use crate::testkit::{Dev, dev, resign_header};

    fn roster_of(first: &Dev, others: &[&Dev]) -> Roster {
        let rk = SigningKey::generate();
        let g = Roster::make_genesis(GenesisParams {
            account: "acct",
            signing: &first.sign,
            kx_pk: &first.kx.public_key(),
            name: "first",
            recovery_pk: &rk.verifying_key(),
            recovery_salt: &[7; 16],
            recovery_kdf: KdfParams::FLOOR,
            now_ms: 1,
        });
        let mut r = Roster::from_genesis(&g, "acct").unwrap();
        for d in others {
            let kx: KxPublicKey = d.kx.public_key();
            let m = NewMember {
                device_id: d.id,
                sign_pk: &d.sign.verifying_key(),
                kx_pk: &kx,
                name: "other",
            };
            let e = r.make_add(&first.sign, first.id, m, 2);
            r.apply(&e).unwrap();
        }
        r
    }

    /// `keys` sealed by `from` to the roster member `to`, naming `head` as the roster head.
    fn seal_to(
        from: &Dev,
        to: &Dev,
        roster: &Roster,
        head: [u8; 32],
        keys: &AccountKeys,
    ) -> Sealed {
        seal_envelope(
            &from.sign,
            from.id,
            roster.member(&to.id).unwrap(),
            "acct",
            head,
            keys,
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        let (a, b) = (dev(), dev());
        let roster = roster_of(&a, &[&b]);
        let keys = AccountKeys::generate();
        let env = seal_to(&a, &b, &roster, roster.head_hash(), &keys);
        assert_eq!(envelope_recipient(&env).unwrap(), b.id);
        let got = open_envelope(&env, b.id, &b.kx, &roster).unwrap();
        assert_eq!(got.encode(), keys.encode());
    }

    #[test]
    fn sender_not_in_roster_is_refused() {
        // MS-15: unsolicited keys from a device outside the verified roster are dropped.
        let (a, b, evil) = (dev(), dev(), dev());
        let roster = roster_of(&a, &[&b]);
        let keys = AccountKeys::generate();
        let env = seal_to(&evil, &b, &roster, [0; 32], &keys);
        assert_eq!(
            open_envelope(&env, b.id, &b.kx, &roster).unwrap_err(),
            EnvelopeError::NotMember(evil.id)
        );
    }

    #[test]
    fn wrong_recipient_is_refused() {
        // MS-15: an envelope for another device is not opened.
        let (a, b, c) = (dev(), dev(), dev());
        let roster = roster_of(&a, &[&b, &c]);
        let keys = AccountKeys::generate();
        let env = seal_to(&a, &b, &roster, roster.head_hash(), &keys);
        assert_eq!(
            open_envelope(&env, c.id, &c.kx, &roster).unwrap_err(),
            EnvelopeError::WrongRecipient
        );
        // Even claiming to be `b` without b's key fails to decrypt.
        assert_eq!(
            open_envelope(&env, b.id, &c.kx, &roster).unwrap_err(),
            EnvelopeError::Decrypt
        );
    }

    #[test]
    fn tampered_envelope_is_refused() {
        // MS-01: a wrapped key replaced or altered by the server is refused.
        let (a, b) = (dev(), dev());
        let roster = roster_of(&a, &[&b]);
        let keys = AccountKeys::generate();
        let env = seal_to(&a, &b, &roster, roster.head_hash(), &keys);

        let mut t = env.clone();
        t.ciphertext[0] ^= 1;
        assert_eq!(
            open_envelope(&t, b.id, &b.kx, &roster).unwrap_err(),
            EnvelopeError::Signature
        );

        // The server re-seals its own keys to b under a's header: signature breaks.
        let server_keys = AccountKeys::generate();
        let forged = seal_to(&b, &b, &roster, roster.head_hash(), &server_keys);
        let mut t = env.clone();
        t.ciphertext = forged.ciphertext;
        assert_eq!(
            open_envelope(&t, b.id, &b.kx, &roster).unwrap_err(),
            EnvelopeError::Signature
        );

        let mut t = env.clone();
        t.signature[5] ^= 1;
        assert_eq!(
            open_envelope(&t, b.id, &b.kx, &roster).unwrap_err(),
            EnvelopeError::Signature
        );

        // A header altered and re-signed by a member (another known roster head): HPKE open
        // fails, the AAD being the header.
        let genesis = roster.genesis_hash();
        let t = resign_header(
            &env,
            SigContext::Envelope,
            &a.sign,
            |h: &mut EnvelopeHeader| {
                h.roster_head = genesis.to_vec();
            },
        );
        assert_eq!(
            open_envelope(&t, b.id, &b.kx, &roster).unwrap_err(),
            EnvelopeError::Decrypt
        );

        let t = Sealed {
            header: vec![0xff; 3],
            ..env
        };
        assert!(matches!(
            open_envelope(&t, b.id, &b.kx, &roster),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            envelope_recipient(&t),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn seal_refuses_a_foreign_signing_key() {
        let (a, b) = (dev(), dev());
        let roster = roster_of(&a, &[&b]);
        let r = seal_envelope(
            &b.sign,
            a.id,
            roster.member(&b.id).unwrap(),
            "acct",
            [0; 32],
            &AccountKeys::generate(),
        );
        assert!(matches!(r, Err(EnvelopeError::Seal(_))));
    }

    #[test]
    fn aad_is_the_exact_header_bytes() {
        // Issue 5, "what must work" 7: the AAD is the header as sent, never a re-encoding. A
        // member appends an unknown field to the header bytes and signs again: a decoder that
        // re-encoded the header (dropping the field) would open it; these bytes do not.
        let (a, b) = (dev(), dev());
        let roster = roster_of(&a, &[&b]);
        let env = seal_to(
            &a,
            &b,
            &roster,
            roster.head_hash(),
            &AccountKeys::generate(),
        );
        let mut header = env.header.clone();
        header.extend_from_slice(&[0xf8, 0x06, 0x01]); // field 127, varint 1
        let h: EnvelopeHeader = sealsync_proto::decode(&header).unwrap();
        assert_eq!(sealsync_proto::encode(&h), env.header);
        let signature = a
            .sign
            .sign(SigContext::Envelope, &header, &env.ciphertext)
            .to_vec();
        let t = Sealed {
            header,
            ciphertext: env.ciphertext.clone(),
            signature,
        };
        assert_eq!(
            open_envelope(&t, b.id, &b.kx, &roster).unwrap_err(),
            EnvelopeError::Decrypt
        );
        assert!(open_envelope(&env, b.id, &b.kx, &roster).is_ok());
    }

    #[test]
    fn roster_head_must_be_known_and_sender_a_member_there() {
        // MS-12, MS-15 (issue 5 defect 6): the envelope's roster head is checked against the
        // recipient's verified roster. An unknown head (a roster fork the server shows the
        // sender) is refused, and so is a head from before the sender joined.
        let (a, b, c) = (dev(), dev(), dev());
        let roster = roster_of(&a, &[&b, &c]);
        let keys = AccountKeys::generate();
        let env = seal_to(&a, &c, &roster, [7; 32], &keys);
        assert_eq!(
            open_envelope(&env, c.id, &c.kx, &roster).unwrap_err(),
            EnvelopeError::RosterHead
        );
        // b joined at seq 1; the genesis head (seq 0) predates it.
        let env = seal_to(&b, &c, &roster, roster.genesis_hash(), &keys);
        assert_eq!(
            open_envelope(&env, c.id, &c.kx, &roster).unwrap_err(),
            EnvelopeError::RosterHead
        );
        let env = seal_to(&b, &c, &roster, roster.head_hash(), &keys);
        assert!(open_envelope(&env, c.id, &c.kx, &roster).is_ok());
        // A head of a verified roster that the sender knows but this device does not yet:
        // refused until the device catches up.
        let env = seal_to(&a, &c, &roster, roster.head_hash(), &keys);
        let older = Roster::from_entries(&roster.entries()[..2], "acct").unwrap();
        assert_eq!(
            open_envelope(&env, c.id, &c.kx, &older).unwrap_err(),
            EnvelopeError::RosterHead
        );
    }

    #[test]
    fn fresh_salt_and_salt_checked() {
        // Issue 5 defect 3: every envelope draws a fresh salt, signed in the header; a header
        // without one is refused.
        let (a, b) = (dev(), dev());
        let roster = roster_of(&a, &[&b]);
        let keys = AccountKeys::generate();
        let e1 = seal_to(&a, &b, &roster, roster.head_hash(), &keys);
        let e2 = seal_to(&a, &b, &roster, roster.head_hash(), &keys);
        let h1: EnvelopeHeader = sealsync_proto::decode(&e1.header).unwrap();
        let h2: EnvelopeHeader = sealsync_proto::decode(&e2.header).unwrap();
        assert_eq!(h1.salt.len(), 32);
        assert_ne!(h1.salt, h2.salt);
        let t = resign_header(
            &e1,
            SigContext::Envelope,
            &a.sign,
            |h: &mut EnvelopeHeader| {
                h.salt.truncate(15);
            },
        );
        assert_eq!(
            open_envelope(&t, b.id, &b.kx, &roster).unwrap_err(),
            EnvelopeError::Malformed("salt length")
        );
        let member = roster.member(&b.id).unwrap();
        assert!(matches!(
            seal_envelope_with_salt(&a.sign, a.id, member, "acct", [0; 32], &keys, &[1; 8]),
            Err(EnvelopeError::Seal(_))
        ));
    }
}
