//! Test helpers: enrolled-looking replicas made without a server (one device, or several
//! trusted devices of one account).

use std::path::Path;

use sealsync_core::{AccountKeys, GenesisParams, NewMember, Roster};
use sealsync_crypto::{KdfParams, KxSecretKey, RecoverySecret, SigningKey, SymmetricKey};
use sealsync_proto::EnrollResponse;
use zeroize::Zeroizing;

use crate::Core;
use crate::enroll::{Bundle, Setup};
use crate::keystore::DeviceSecrets;
use crate::net::ServerUrl;
use crate::types::DeviceState;

/// Fresh device secrets holding `account_keys`.
fn secrets(account_keys: Option<AccountKeys>) -> DeviceSecrets {
    DeviceSecrets {
        signing: SigningKey::generate(),
        kx: KxSecretKey::generate(),
        tls_key_der: Zeroizing::new(vec![1, 2, 3]),
        storage_key: SymmetricKey::generate(),
        account_keys,
    }
}

/// Writes `secrets` and `roster` into `home` as a trusted device of account "acme" would be
/// left by enrollment, and opens it.
fn persist(home: &Path, secrets: &DeviceSecrets, roster: &Roster, name: &str) -> Core {
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
        name,
        resp: &resp,
        clock_offset: None,
        open: &Default::default(),
    };
    setup
        .persist(secrets, Some(roster), DeviceState::Trusted, &[])
        .unwrap()
}

/// A trusted first device of account "acme" in `home`, as enrollment would leave it.
pub(crate) fn offline_replica(home: &Path) -> Core {
    let secrets = secrets(Some(AccountKeys::generate()));
    let rk = sealsync_crypto::derive_recovery_keys(
        &RecoverySecret::generate(),
        &[7; 16],
        KdfParams::FLOOR,
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
    persist(home, &secrets, &roster, "test")
}

/// `n` trusted devices of one account "acme", in `root/dev0` .. `root/dev{n-1}`: the same
/// account keys, and one roster (genesis by device 0, then an `ADD` of each other device
/// signed by device 0) stored on every device. The recovery key is a random key here, not
/// one derived from a secret (no test using this helper recovers), which saves an Argon2id
/// run per account.
pub(crate) fn offline_account(root: &Path, n: usize) -> Vec<Core> {
    assert!(n >= 1);
    let keys = AccountKeys::generate();
    let devices: Vec<DeviceSecrets> = (0..n).map(|_| secrets(Some(keys.clone()))).collect();
    let recovery = SigningKey::generate();
    let first = &devices[0];
    let genesis = Roster::make_genesis(GenesisParams {
        account: "acme",
        signing: &first.signing,
        kx_pk: &first.kx.public_key(),
        name: "dev0",
        recovery_pk: &recovery.verifying_key(),
        recovery_salt: &[7; 16],
        recovery_kdf: KdfParams::DEFAULT,
        now_ms: 1,
    });
    let mut roster = Roster::from_genesis(&genesis, "acme").unwrap();
    for (i, d) in devices.iter().enumerate().skip(1) {
        let name = format!("dev{i}");
        let add = roster.make_add(
            &first.signing,
            first.device_id(),
            NewMember {
                device_id: d.device_id(),
                sign_pk: &d.signing.verifying_key(),
                kx_pk: &d.kx.public_key(),
                name: &name,
            },
            1 + i as u64,
        );
        roster.apply(&add).unwrap();
    }
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            persist(
                &root.join(format!("dev{i}")),
                d,
                &roster,
                &format!("dev{i}"),
            )
        })
        .collect()
}
