//! The recovery blob: the account keys sealed under a key derived from the recovery secret.
//!
//! AES-256-GCM with a random nonce under `RecoveryKeys::blob_key`; the AAD is the encoded
//! `RecoveryHeader`, which binds the account and the roster genesis hash, so a blob cannot
//! be replayed into another account or another (substituted) roster (MS-09, MS-10).

use sealsync_crypto::{RecoveryKeys, SUITE_V1, open_random_nonce, seal_random_nonce};
use sealsync_proto::{RecoveryBlob, RecoveryHeader};

use crate::error::RecoveryError;
use crate::keys::AccountKeys;

/// Largest encoded recovery header accepted.
const MAX_HEADER_BYTES: usize = 4 * 1024;

/// Seals `keys` for recovery, bound to `account` and `genesis_hash`.
pub fn seal_recovery_blob(
    keys: &AccountKeys,
    rk: &RecoveryKeys,
    account: &str,
    genesis_hash: [u8; 32],
) -> RecoveryBlob {
    let header = sealsync_proto::encode(&RecoveryHeader {
        suite: SUITE_V1,
        account: account.to_owned(),
        genesis_hash: genesis_hash.to_vec(),
    });
    let ciphertext = seal_random_nonce(&rk.blob_key, &header, &keys.encode());
    RecoveryBlob { header, ciphertext }
}

/// Opens the blob: suite, account and genesis must match; then decrypts (one uniform error
/// for a wrong secret or an altered blob) and decodes the keys.
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
    let plaintext = open_random_nonce(&rk.blob_key, &blob.header, &blob.ciphertext)
        .map_err(|_| RecoveryError::Decrypt)?;
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
        let rk = derive_recovery_keys(&secret, &salt, KdfParams::DEFAULT).unwrap();
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
        let rk2 = derive_recovery_keys(&again, &salt, KdfParams::DEFAULT).unwrap();
        assert!(open_recovery_blob(&blob, &rk2, "acct", genesis).is_ok());

        // Wrong secret: one uniform decryption error (MS-05).
        let wrong =
            derive_recovery_keys(&RecoverySecret::generate(), &salt, KdfParams::DEFAULT).unwrap();
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
        t.header = sealsync_proto::encode(&RecoveryHeader {
            suite: SUITE_V1,
            account: "acct".into(),
            genesis_hash: vec![6; 32],
        });
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
            }),
            ciphertext: blob.ciphertext,
        };
        assert_eq!(
            open_recovery_blob(&t, &rk, "acct", genesis).unwrap_err(),
            RecoveryError::Suite(2)
        );
    }
}
