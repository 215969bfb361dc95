//! The recovery blob: the account keys sealed under a key derived from the recovery secret.
//!
//! The object key is `ObjectKey::derive(blob_key, "recovery", lp(account) || genesis_hash,
//! salt)` with a fresh random salt carried in the `RecoveryHeader`, next to the key
//! commitment; AES-256-GCM with the all-zero nonce (the key is unique per blob), the AAD is
//! the encoded `RecoveryHeader` exactly as stored. The header binds the account and the
//! roster genesis hash, so a blob cannot be replayed into another account or another
//! (substituted) roster (MS-09, MS-10), and a re-sealed blob never reuses a key.

use sealsync_crypto::{
    ObjectKey, ObjectLabel, RecoveryKeys, SUITE_V1, check_object_salt, lp, object_salt,
};
use sealsync_proto::{RecoveryBlob, RecoveryHeader};

use crate::error::RecoveryError;
use crate::keys::AccountKeys;

/// Largest encoded recovery header accepted.
const MAX_HEADER_BYTES: usize = 4 * 1024;

fn identity(account: &str, genesis_hash: &[u8; 32]) -> Vec<u8> {
    let mut id = Vec::with_capacity(4 + account.len() + 32);
    lp(&mut id, account.as_bytes());
    id.extend_from_slice(genesis_hash);
    id
}

/// Seals `keys` for recovery, bound to `account` and `genesis_hash`, with a fresh 32-byte
/// salt.
pub fn seal_recovery_blob(
    keys: &AccountKeys,
    rk: &RecoveryKeys,
    account: &str,
    genesis_hash: [u8; 32],
) -> RecoveryBlob {
    let salt = object_salt();
    // Invariant: a 32-byte salt is within the accepted 16..=64 bytes.
    seal_recovery_blob_with_salt(keys, rk, account, genesis_hash, &salt)
        .expect("32-byte salt accepted")
}

/// [`seal_recovery_blob`] with the salt given (16 to 64 bytes, else
/// [`RecoveryError::Malformed`]), for test vectors.
pub fn seal_recovery_blob_with_salt(
    keys: &AccountKeys,
    rk: &RecoveryKeys,
    account: &str,
    genesis_hash: [u8; 32],
    salt: &[u8],
) -> Result<RecoveryBlob, RecoveryError> {
    let key = ObjectKey::derive(
        &rk.blob_key,
        ObjectLabel::Recovery,
        &identity(account, &genesis_hash),
        salt,
    )
    .map_err(|_| RecoveryError::Malformed)?;
    let header = sealsync_proto::encode(&RecoveryHeader {
        suite: SUITE_V1,
        account: account.to_owned(),
        genesis_hash: genesis_hash.to_vec(),
        salt: salt.to_vec(),
        key_commitment: key.commitment().to_vec(),
    });
    let ciphertext = key.seal(&header, &keys.encode());
    Ok(RecoveryBlob { header, ciphertext })
}

/// Opens the blob: suite, account and genesis must match, salt 16 to 64 bytes; then the
/// commitment and decryption (one uniform error for a wrong secret or an altered blob) and
/// decodes the keys.
pub fn open_recovery_blob(
    blob: &RecoveryBlob,
    rk: &RecoveryKeys,
    account: &str,
    genesis_hash: [u8; 32],
) -> Result<AccountKeys, RecoveryError> {
    let header: RecoveryHeader = sealsync_proto::decode_limited(&blob.header, MAX_HEADER_BYTES)
        .map_err(|_| RecoveryError::Malformed)?;
    if header.suite != SUITE_V1 {
        return Err(RecoveryError::Suite(header.suite));
    }
    if header.account != account {
        return Err(RecoveryError::WrongAccount);
    }
    if header.genesis_hash.as_slice() != genesis_hash.as_slice() {
        return Err(RecoveryError::WrongGenesis);
    }
    check_object_salt(&header.salt).map_err(|_| RecoveryError::Malformed)?;
    let key = ObjectKey::derive(
        &rk.blob_key,
        ObjectLabel::Recovery,
        &identity(account, &genesis_hash),
        &header.salt,
    )
    .map_err(|_| RecoveryError::Malformed)?;
    // A wrong secret fails the commitment; report it as the same uniform error (MS-05).
    let plaintext = zeroize::Zeroizing::new(
        key.open(&header.key_commitment, &blob.header, &blob.ciphertext)
            .map_err(|_| RecoveryError::Decrypt)?,
    );
    AccountKeys::decode(&plaintext).map_err(RecoveryError::Keys)
}

#[cfg(test)]
mod tests {
    use sealsync_crypto::{KdfParams, RecoverySecret, derive_recovery_keys};

    use super::*;

    #[test]
    fn recovery_blob_round_trip_and_refusals() {
        // One Argon2id derivation per secret (tens of ms each at the floor parameters).
        let secret = RecoverySecret::generate();
        let salt = [3u8; 16];
        let rk = derive_recovery_keys(&secret, &salt, KdfParams::FLOOR).unwrap();
        let keys = AccountKeys::generate();
        let genesis = [5u8; 32];
        let blob = seal_recovery_blob(&keys, &rk, "acct", genesis);
        assert_eq!(
            open_recovery_blob(&blob, &rk, "acct", genesis)
                .unwrap()
                .encode(),
            keys.encode()
        );

        // The same secret typed back (display -> parse) derives the same keys.
        let again = RecoverySecret::parse(&secret.display()).unwrap();
        let rk2 = derive_recovery_keys(&again, &salt, KdfParams::FLOOR).unwrap();
        assert!(open_recovery_blob(&blob, &rk2, "acct", genesis).is_ok());

        // Wrong secret: one uniform decryption error (MS-05).
        let wrong =
            derive_recovery_keys(&RecoverySecret::generate(), &salt, KdfParams::FLOOR).unwrap();
        assert_eq!(
            open_recovery_blob(&blob, &wrong, "acct", genesis).unwrap_err(),
            RecoveryError::Decrypt
        );

        // Bound to account and genesis (MS-10).
        assert_eq!(
            open_recovery_blob(&blob, &rk, "other", genesis).unwrap_err(),
            RecoveryError::WrongAccount
        );
        assert_eq!(
            open_recovery_blob(&blob, &rk, "acct", [6; 32]).unwrap_err(),
            RecoveryError::WrongGenesis
        );

        // A header rewritten to another genesis no longer authenticates (MS-16).
        let mut t = blob.clone();
        let mut h: RecoveryHeader = sealsync_proto::decode(&blob.header).unwrap();
        h.genesis_hash = vec![6; 32];
        t.header = sealsync_proto::encode(&h);
        assert_eq!(
            open_recovery_blob(&t, &rk, "acct", [6; 32]).unwrap_err(),
            RecoveryError::Decrypt
        );
        let mut t = blob.clone();
        let last = t.ciphertext.len() - 1;
        t.ciphertext[last] ^= 1;
        assert_eq!(
            open_recovery_blob(&t, &rk, "acct", genesis).unwrap_err(),
            RecoveryError::Decrypt
        );

        // Malformed header and unknown suite.
        let t = RecoveryBlob {
            header: vec![0xff],
            ciphertext: blob.ciphertext.clone(),
        };
        assert_eq!(
            open_recovery_blob(&t, &rk, "acct", genesis).unwrap_err(),
            RecoveryError::Malformed
        );
        let t = RecoveryBlob {
            header: sealsync_proto::encode(&RecoveryHeader {
                suite: 2,
                account: "acct".into(),
                genesis_hash: genesis.to_vec(),
                ..RecoveryHeader::default()
            }),
            ciphertext: blob.ciphertext,
        };
        assert_eq!(
            open_recovery_blob(&t, &rk, "acct", genesis).unwrap_err(),
            RecoveryError::Suite(2)
        );
    }
}
