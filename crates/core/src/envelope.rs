//! Key envelopes: the account keys HPKE-sealed to one roster device, signed by the sender.
//!
//! HPKE info is `"sealsync/v1/envelope" || lp(account) || recipient_device_id ||
//! u32be(epoch)`; the HPKE AAD is the encoded header with `encapsulated_key` empty (that
//! field is an output of the seal); the Ed25519 signature (`"sealsync/v1/envelope"`) covers
//! the full header and the ciphertext. A device accepts an envelope only from a roster member
//! and addressed to itself (MS-01, MS-15).

use sealsync_crypto::{
    KxSecretKey, SUITE_V1, SigContext, SigningKey, device_id, hpke_open, hpke_seal, lp,
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

fn hpke_info(account: &str, recipient: &DeviceId, epoch: u32) -> Vec<u8> {
    let mut info = Vec::with_capacity(20 + 4 + account.len() + 16 + 4);
    info.extend_from_slice(b"sealsync/v1/envelope");
    lp(&mut info, account.as_bytes());
    info.extend_from_slice(&recipient.0);
    info.extend_from_slice(&epoch.to_be_bytes());
    info
}

/// HPKE AAD: the header with `encapsulated_key` cleared, encoded.
fn hpke_aad(header: &EnvelopeHeader) -> Vec<u8> {
    let mut h = header.clone();
    h.encapsulated_key.clear();
    sealsync_proto::encode(&h)
}

/// Seals `keys` to `recipient`'s X25519 key and signs the result as `sender`.
pub fn seal_envelope(
    signing: &SigningKey,
    sender: DeviceId,
    recipient: &RosterMember,
    account: &str,
    roster_head: [u8; 32],
    keys: &AccountKeys,
) -> Result<Sealed, EnvelopeError> {
    if DeviceId(device_id(&signing.verifying_key())) != sender {
        return Err(EnvelopeError::Seal("signing key is not the sender's"));
    }
    let epoch = keys.current_epoch();
    let mut header = EnvelopeHeader {
        suite: SUITE_V1,
        account: account.to_owned(),
        sender_device_id: sender.0.to_vec(),
        recipient_device_id: recipient.device_id.0.to_vec(),
        epoch,
        purpose: PURPOSE_ACCOUNT_KEYS.to_owned(),
        roster_head: roster_head.to_vec(),
        encapsulated_key: Vec::new(),
    };
    let aad = hpke_aad(&header);
    let info = hpke_info(account, &recipient.device_id, epoch);
    let plaintext = keys.encode();
    let (enc, ciphertext) = hpke_seal(&recipient.kx_pk, &info, &aad, &plaintext)
        .map_err(|_| EnvelopeError::Seal("HPKE refused the recipient key"))?;
    header.encapsulated_key = enc;
    let header_bytes = sealsync_proto::encode(&header);
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

/// Opens an envelope addressed to `me`: suite, purpose, account, sender in `roster`
/// (MS-15), recipient is `me`, signature over the exact bytes with the sender's roster key
/// (MS-01), HPKE open, decode; the keys must hold the header's epoch as their current one.
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
    let info = hpke_info(&header.account, &recipient, header.epoch);
    let plaintext = hpke_open(
        my_kx,
        &header.encapsulated_key,
        &info,
        &hpke_aad(&header),
        &sealed.ciphertext,
    )
    .map_err(|_| EnvelopeError::Decrypt)?;
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
            recovery_kdf: KdfParams::DEFAULT,
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
        let env = seal_to(&a, &b, &roster, [0; 32], &keys);
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
        let env = seal_to(&a, &b, &roster, [0; 32], &keys);

        let mut t = env.clone();
        t.ciphertext[0] ^= 1;
        assert_eq!(
            open_envelope(&t, b.id, &b.kx, &roster).unwrap_err(),
            EnvelopeError::Signature
        );

        // The server re-seals its own keys to b under a's header: signature breaks.
        let server_keys = AccountKeys::generate();
        let forged = seal_to(&b, &b, &roster, [0; 32], &server_keys);
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

        // A header altered and re-signed by a member (e.g. epoch changed): HPKE open fails.
        let t = resign_header(
            &env,
            SigContext::Envelope,
            &a.sign,
            |h: &mut EnvelopeHeader| {
                h.roster_head = vec![9; 32];
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
}
