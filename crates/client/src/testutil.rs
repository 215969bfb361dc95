//! Test helpers: an enrolled-looking replica made without a server.

use std::path::Path;

use sealsync_core::{AccountKeys, GenesisParams, Roster};
use sealsync_crypto::{KdfParams, KxSecretKey, RecoverySecret, SigningKey, SymmetricKey};
use sealsync_proto::EnrollResponse;
use zeroize::Zeroizing;

use crate::Replica;
use crate::enroll::{Bundle, Setup};
use crate::keystore::DeviceSecrets;
use crate::net::ServerUrl;
use crate::types::DeviceState;

/// A trusted first device of account "acme" in `home`, as enrollment would leave it.
pub(crate) fn offline_replica(home: &Path) -> Replica {
    let secrets = DeviceSecrets {
        signing: SigningKey::generate(),
        kx: KxSecretKey::generate(),
        tls_key_der: Zeroizing::new(vec![1, 2, 3]),
        storage_key: SymmetricKey::generate(),
        account_keys: Some(AccountKeys::generate()),
    };
    let rk = sealsync_crypto::derive_recovery_keys(
        &RecoverySecret::generate(),
        &[7; 16],
        KdfParams::DEFAULT,
    )
    .unwrap();
    let genesis = Roster::make_genesis(GenesisParams {
        account: "acme",
        signing: &secrets.signing,
        kx_pk: &secrets.kx.public_key(),
        name: "test",
        recovery_pk: &rk.signing.verifying_key(),
        recovery_salt: &[7; 16],
        recovery_kdf: KdfParams::DEFAULT,
        now_ms: 1,
    });
    let roster = Roster::from_genesis(&genesis, "acme").unwrap();
    let ca_der = b"not a real CA".to_vec();
    let bundle = Bundle {
        url: "https://127.0.0.1:1".into(),
        server: ServerUrl::parse("https://127.0.0.1:1").unwrap(),
        ca_pin: sealsync_crypto::sha256(&ca_der),
        ticket: Zeroizing::new(vec![9; 32]),
        account: "acme".into(),
    };
    let resp = EnrollResponse {
        device_id: secrets.device_id().0.to_vec(),
        account: "acme".into(),
        cert_der: vec![4, 5, 6],
        ca_der,
        roster: vec![],
        server_time_ms: 0,
    };
    std::fs::create_dir_all(home).unwrap();
    let setup = Setup {
        home,
        bundle: &bundle,
        name: "test",
        resp: &resp,
        clock_offset: None,
    };
    setup
        .persist(&secrets, Some(&roster), DeviceState::Trusted, &[])
        .unwrap()
}
