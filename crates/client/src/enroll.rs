//! Enrollment: bundle parsing, device keys, `POST /v1/enroll` (with proof of possession of
//! the signing key), and the three outcomes: first device of a new account (only when asked
//! for: no silent new account, MS-09), pending device (which keeps nothing of the server's
//! roster: it learns the genesis by pairing), recovery with the recovery secret (checked
//! against the genesis from `POST /v1/enroll/preview` before the ticket is spent).
//!
//! The first device persists everything (keys, genesis, sealed recovery blob) before it
//! uploads the genesis and the blob; if an upload fails for a network reason the next
//! `sync` retries it, so the account is never left with a genesis whose keys were lost.

use std::path::Path;

use base64::Engine as _;
use sealsync_core::{AccountKeys, DeviceId, GenesisParams, NewMember, Roster, sign_enroll_request};
use sealsync_crypto::{KdfParams, KxSecretKey, RecoverySecret, SigningKey, SymmetricKey};
use sealsync_proto::{
    EnrollPreview, EnrollPreviewRequest, EnrollRequest, EnrollResponse, EnrollmentBundle,
    RecoveryBlob, RosterResponse,
};
use zeroize::Zeroizing;

use crate::Core;
use crate::clock::clock_offset;
use crate::error::ClientError;
use crate::keystore::{DeviceSecrets, FileKeyStore, KEYSTORE_FILE, KEYSTORE_KEY_FILE, Protection};
use crate::net::{Connection, ServerUrl, tls};
use crate::options::{OpenOptions, Timeouts};
use crate::store::{DB_FILE, Store, meta, now_ms};
use crate::types::{DeviceState, EnrollOptions};

/// Prefix of the one-line enrollment bundle.
pub(crate) const BUNDLE_PREFIX: &str = "sealsync-enroll:";

/// A parsed and checked enrollment bundle.
#[derive(Clone)]
pub(crate) struct Bundle {
    pub(crate) url: String,
    pub(crate) server: ServerUrl,
    pub(crate) ca_pin: [u8; 32],
    pub(crate) ticket: Zeroizing<Vec<u8>>,
    pub(crate) account: String,
}

/// Parses `sealsync-enroll:` + base64url-nopad(`EnrollmentBundle`).
pub(crate) fn parse_bundle(text: &str) -> Result<Bundle, ClientError> {
    let text = text.trim();
    let b64 = text
        .strip_prefix(BUNDLE_PREFIX)
        .ok_or_else(|| ClientError::Bundle(format!("it must start with {BUNDLE_PREFIX:?}")))?;
    let b64 = b64.trim().trim_end_matches('=');
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| ClientError::Bundle("not valid base64url".into()))?;
    let b: EnrollmentBundle = sealsync_proto::decode_limited(&raw, 64 * 1024)
        .map_err(|_| ClientError::Bundle("does not decode".into()))?;
    let ca_pin: [u8; 32] = b
        .ca_pin
        .as_slice()
        .try_into()
        .map_err(|_| ClientError::Bundle("CA pin must be 32 bytes".into()))?;
    if b.ticket.is_empty() || b.ticket.len() > 1024 {
        return Err(ClientError::Bundle("missing ticket".into()));
    }
    if b.account.is_empty() {
        return Err(ClientError::Bundle("missing account".into()));
    }
    let server = ServerUrl::parse(&b.url).map_err(|e| ClientError::Bundle(e.to_string()))?;
    Ok(Bundle {
        url: b.url,
        server,
        ca_pin,
        ticket: Zeroizing::new(b.ticket),
        account: b.account,
    })
}

fn make_tls_key(device: DeviceId) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), ClientError> {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| ClientError::Tls(format!("cannot make the TLS key: {e}")))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| ClientError::Tls(format!("CSR parameters: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, device.to_string());
    let csr = params
        .serialize_request(&kp)
        .map_err(|e| ClientError::Tls(format!("cannot make the CSR: {e}")))?;
    Ok((Zeroizing::new(kp.serialize_der()), csr.der().to_vec()))
}

/// What enrollment made, before it is wrapped in a [`crate::Replica`].
pub(crate) struct EnrolledCore {
    pub(crate) core: Core,
    pub(crate) device_id: DeviceId,
    pub(crate) state: DeviceState,
    pub(crate) recovery_secret: Option<Zeroizing<String>>,
}

impl Core {
    /// Enrolls this device into the account named by `bundle` (from `sealsync admin
    /// enroll`), creating the replica in `home`. See [`Enrolled`] for the outcomes.
    pub(crate) async fn enroll(
        home: &Path,
        bundle: &str,
        opts: EnrollOptions,
    ) -> Result<EnrolledCore, ClientError> {
        for f in [DB_FILE, KEYSTORE_FILE, KEYSTORE_KEY_FILE] {
            if home.join(f).exists() {
                return Err(ClientError::AlreadyEnrolled(home.to_path_buf()));
            }
        }
        if opts.open.passphrase.as_ref().is_some_and(|p| p.is_empty()) {
            // An empty passphrase protects nothing: refuse it rather than fall back to a
            // key file without saying so (before the ticket is spent).
            return Err(ClientError::InvalidInput(
                "the key store passphrase is empty: give a passphrase, or none to protect the key store with a key file".into(),
            ));
        }
        let bundle = parse_bundle(bundle)?;
        let name = opts.name.trim().to_string();
        if name.is_empty()
            || name.len() > sealsync_core::MAX_DEVICE_NAME_BYTES
            || name.chars().any(char::is_control)
        {
            return Err(ClientError::InvalidInput(format!(
                "device name must be 1 to {} bytes without control characters",
                sealsync_core::MAX_DEVICE_NAME_BYTES
            )));
        }
        let recovery = opts
            .recovery
            .as_deref()
            .map(|s| {
                RecoverySecret::parse(s).map_err(|_| {
                    ClientError::Recovery(
                        "the recovery secret is not well formed (XXXX-XXXX-...-XXXX)".into(),
                    )
                })
            })
            .transpose()?;
        if recovery.is_some() && opts.new_account {
            return Err(ClientError::InvalidInput(
                "a recovery secret joins an existing account; it cannot found a new one".into(),
            ));
        }
        // Recovery: the secret must derive the genesis recovery key (MS-09), checked before
        // the ticket is spent, so a wrong secret leaves nothing behind.
        let recovery = match recovery {
            Some(secret) => {
                Some(check_recovery_secret(&bundle, &secret, opts.open.timeouts).await?)
            }
            None => None,
        };
        create_home(home)?;

        let signing = SigningKey::generate();
        let kx = KxSecretKey::generate();
        let device_id = DeviceId(sealsync_crypto::device_id(&signing.verifying_key()));
        let (tls_key_der, csr_der) = make_tls_key(device_id)?;
        let mut secrets = DeviceSecrets {
            signing,
            kx,
            tls_key_der,
            storage_key: SymmetricKey::generate(),
            account_keys: None,
        };

        let mut conn = Connection::connect(
            &bundle.server,
            tls::enroll_config(bundle.ca_pin)?,
            opts.open.timeouts,
        )
        .await?;
        let mut request = EnrollRequest {
            ticket: bundle.ticket.to_vec(),
            name: name.clone(),
            csr_der,
            sign_pk: secrets.signing.verifying_key().to_bytes().to_vec(),
            kx_pk: secrets.kx.public_key().to_bytes().to_vec(),
            new_account: opts.new_account,
            pop_signature: Vec::new(),
        };
        sign_enroll_request(&secrets.signing, &mut request);
        let sent = now_ms();
        let resp: EnrollResponse = match conn.post("/v1/enroll", &request).await {
            Ok(r) => r,
            Err(e) => return Err(enroll_refusal(e, &bundle, opts.new_account)),
        };
        let received = now_ms();
        drop(conn);
        check_response(&resp, &bundle, device_id)?;

        let base = Setup {
            home,
            bundle: &bundle,
            name: &name,
            resp: &resp,
            clock_offset: (resp.server_time_ms != 0)
                .then(|| clock_offset(resp.server_time_ms, sent, received)),
            open: &opts.open,
        };
        // No silent new account (MS-09): the server's word that the account is empty, or
        // not, must agree with what the user asked for.
        match (resp.roster.is_empty(), opts.new_account) {
            (true, true) => return first_device(base, secrets).await,
            (true, false) => {
                return Err(ClientError::NoSuchAccount {
                    account: bundle.account.clone(),
                });
            }
            (false, true) => {
                return Err(ClientError::AccountExists {
                    account: bundle.account.clone(),
                });
            }
            (false, false) => {}
        }
        let Some((rk, previewed_genesis)) = recovery else {
            // Pending: nothing of the server's roster is kept or trusted; the genesis comes
            // from the pairing confirmation (`crate::pairing`).
            let replica = base.persist(&secrets, None, DeviceState::Pending, &[])?;
            return Ok(EnrolledCore {
                core: replica,
                device_id,
                state: DeviceState::Pending,
                recovery_secret: None,
            });
        };
        let mut roster = Roster::from_genesis(&resp.roster[0], &bundle.account)
            .map_err(|e| ClientError::Roster(format!("the account's genesis is invalid: {e}")))?;
        if roster.genesis_hash() != previewed_genesis {
            return Err(ClientError::Roster(
                "the server answered the enrollment with another genesis than it showed before"
                    .into(),
            ));
        }
        roster
            .extend(&resp.roster[1..])
            .map_err(|e| ClientError::Roster(e.to_string()))?;
        // The device is known to the server now: talk mutual TLS.
        let pin = bundle.ca_pin;
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(secrets.tls_key_der.to_vec().into());
        let config = tls::mtls_config(&resp.ca_der, &pin, &resp.cert_der, key)?;
        let mut conn = Connection::connect(&bundle.server, config, opts.open.timeouts).await?;
        let blob: RecoveryBlob = conn.get("/v1/recovery").await?;
        let keys = sealsync_core::open_recovery_blob(
            &blob,
            &rk,
            &bundle.account,
            roster.genesis_hash(),
        )
        .map_err(|e| ClientError::Recovery(format!("the recovery blob does not open: {e}")))?;
        let entry = roster.make_add_by_recovery(
            &rk.signing,
            NewMember {
                device_id,
                sign_pk: &secrets.signing.verifying_key(),
                kx_pk: &secrets.kx.public_key(),
                name: &name,
            },
            crate::clock::trusted_now(now_ms(), base.clock_offset),
        );
        roster
            .apply(&entry)
            .map_err(|e| ClientError::Roster(format!("cannot add this device by recovery: {e}")))?;
        let _: RosterResponse = conn.post("/v1/roster", &entry).await?;
        secrets.account_keys = Some(keys);
        let replica = base.persist(&secrets, Some(&roster), DeviceState::Trusted, &[])?;
        Ok(EnrolledCore {
            core: replica,
            device_id,
            state: DeviceState::Trusted,
            recovery_secret: None,
        })
    }
}

/// A refused `POST /v1/enroll` in the user's terms: 401 is the ticket, 409 the account
/// state the server reported against `new_account`.
fn enroll_refusal(e: ClientError, bundle: &Bundle, new_account: bool) -> ClientError {
    match e {
        ClientError::Server { status: 401, .. } => ClientError::TicketRefused,
        ClientError::Server { status: 409, .. } if new_account => ClientError::AccountExists {
            account: bundle.account.clone(),
        },
        ClientError::Server { status: 409, .. } => ClientError::NoSuchAccount {
            account: bundle.account.clone(),
        },
        other => other,
    }
}

/// Fetches the account's genesis for the bundle's ticket without spending it and checks that
/// `secret` derives its recovery key. Returns the recovery keys and the genesis hash.
async fn check_recovery_secret(
    bundle: &Bundle,
    secret: &RecoverySecret,
    timeouts: Timeouts,
) -> Result<(sealsync_crypto::RecoveryKeys, [u8; 32]), ClientError> {
    let config = tls::enroll_config(bundle.ca_pin)?;
    let mut conn = Connection::connect(&bundle.server, config, timeouts).await?;
    let preview: EnrollPreview = conn
        .post(
            "/v1/enroll/preview",
            &EnrollPreviewRequest {
                ticket: bundle.ticket.to_vec(),
            },
        )
        .await
        .map_err(|e| enroll_refusal(e, bundle, false))?;
    drop(conn);
    if preview.account != bundle.account {
        return Err(ClientError::Protocol(
            "enrollment preview answered for another account".into(),
        ));
    }
    let genesis = preview
        .roster
        .first()
        .ok_or_else(|| ClientError::NoSuchAccount {
            account: bundle.account.clone(),
        })?;
    let roster = Roster::from_genesis(genesis, &bundle.account)
        .map_err(|e| ClientError::Roster(format!("the account's genesis is invalid: {e}")))?;
    let rk = sealsync_crypto::derive_recovery_keys(
        secret,
        roster.recovery_salt(),
        roster.recovery_kdf(),
    )
    .map_err(|e| {
        ClientError::Recovery(format!(
            "the account's recovery parameters are refused: {e}"
        ))
    })?;
    if rk.signing.verifying_key() != *roster.recovery_pk() {
        return Err(ClientError::WrongRecoverySecret);
    }
    Ok((rk, roster.genesis_hash()))
}

fn create_home(home: &Path) -> Result<(), ClientError> {
    std::fs::create_dir_all(home)
        .map_err(|e| ClientError::io(format!("cannot create {}", home.display()), e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| ClientError::io(format!("cannot restrict {}", home.display()), e))?;
    }
    Ok(())
}

fn check_response(
    resp: &EnrollResponse,
    bundle: &Bundle,
    device_id: DeviceId,
) -> Result<(), ClientError> {
    if resp.device_id != device_id.0 {
        return Err(ClientError::Protocol(
            "enrollment answered for another device id".into(),
        ));
    }
    if resp.account != bundle.account {
        return Err(ClientError::Protocol(
            "enrollment answered for another account".into(),
        ));
    }
    if sealsync_crypto::sha256(&resp.ca_der) != bundle.ca_pin {
        return Err(ClientError::Tls(
            "the CA certificate sent at enrollment does not match the bundle's pin".into(),
        ));
    }
    if resp.cert_der.is_empty() {
        return Err(ClientError::Protocol(
            "enrollment returned no client certificate".into(),
        ));
    }
    Ok(())
}

/// What every enrollment outcome persists.
pub(crate) struct Setup<'a> {
    pub(crate) home: &'a Path,
    pub(crate) bundle: &'a Bundle,
    pub(crate) name: &'a str,
    pub(crate) resp: &'a EnrollResponse,
    /// Offset of the server's clock learned at enrollment (`server − local`, ms).
    pub(crate) clock_offset: Option<i64>,
    /// Key store and timeouts of the new replica.
    pub(crate) open: &'a OpenOptions,
}

impl Setup<'_> {
    /// Writes the key store, then the database (all meta and roster in one transaction),
    /// then reopens the replica from disk.
    pub(crate) fn persist(
        &self,
        secrets: &DeviceSecrets,
        roster: Option<&Roster>,
        state: DeviceState,
        extra: &[(&str, Option<&[u8]>)],
    ) -> Result<Core, ClientError> {
        match (&self.open.key_store, self.open.passphrase_bytes()) {
            (Some(ks), _) => ks.save(secrets)?,
            (None, Some(pass)) => {
                FileKeyStore::create(
                    self.home,
                    secrets,
                    Protection::Passphrase(pass, KdfParams::DEFAULT),
                )?;
            }
            (None, None) => {
                FileKeyStore::create(self.home, secrets, Protection::KeyFile)?;
            }
        }
        let device = secrets.device_id();
        let mut store = Store::open(
            &self.home.join(DB_FILE),
            secrets.storage_key.clone(),
            device,
        )?;
        let entries: Vec<(u64, Vec<u8>)> = roster
            .map(|r| r.entries())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, e)| (i as u64, sealsync_proto::encode(e)))
            .collect();
        let genesis = roster.map(Roster::genesis_hash);
        let pin = self.bundle.ca_pin;
        let mut values: Vec<(&str, Option<&[u8]>)> = vec![
            (meta::ACCOUNT, Some(self.bundle.account.as_bytes())),
            (meta::NAME, Some(self.name.as_bytes())),
            (meta::SERVER_URL, Some(self.bundle.url.as_bytes())),
            (meta::CA_DER, Some(&self.resp.ca_der)),
            (meta::CA_PIN, Some(&pin)),
            (meta::CERT_DER, Some(&self.resp.cert_der)),
            (meta::STATE, Some(state.as_str().as_bytes())),
            (meta::GENESIS_HASH, genesis.as_ref().map(|g| g.as_slice())),
        ];
        let offset = self.clock_offset.map(i64::to_be_bytes);
        if let Some(offset) = &offset {
            values.push((meta::CLOCK_OFFSET, Some(offset)));
        }
        values.extend_from_slice(extra);
        // Written last in the same transaction: its presence marks a complete enrollment.
        values.push((meta::DEVICE_ID, Some(&device.0)));
        store.store_roster(&entries, &values)?;
        drop(store);
        Core::open(self.home, self.open)
    }
}

/// First device of the account: account keys, recovery secret, genesis, recovery blob.
async fn first_device(
    base: Setup<'_>,
    mut secrets: DeviceSecrets,
) -> Result<EnrolledCore, ClientError> {
    let account = base.bundle.account.as_str();
    let keys = AccountKeys::generate();
    let secret = RecoverySecret::generate();
    let salt: [u8; 16] = sealsync_crypto::random_array();
    let rk = sealsync_crypto::derive_recovery_keys(&secret, &salt, KdfParams::DEFAULT)?;
    let genesis = Roster::make_genesis(GenesisParams {
        account,
        signing: &secrets.signing,
        kx_pk: &secrets.kx.public_key(),
        name: base.name,
        recovery_pk: &rk.signing.verifying_key(),
        recovery_salt: &salt,
        recovery_kdf: KdfParams::DEFAULT,
        // Trusted time: a genesis stamped by a fast clock would hold back every later entry.
        now_ms: crate::clock::trusted_now(now_ms(), base.clock_offset),
    });
    let roster = Roster::from_genesis(&genesis, account)
        .map_err(|e| ClientError::Roster(format!("own genesis does not verify: {e}")))?;
    let blob = sealsync_core::seal_recovery_blob(&keys, &rk, account, roster.genesis_hash());
    let blob_bytes = sealsync_proto::encode(&blob);
    secrets.account_keys = Some(keys);
    let device_id = secrets.device_id();
    let mut replica = base.persist(
        &secrets,
        Some(&roster),
        DeviceState::Trusted,
        &[
            (meta::UPLOAD_GENESIS, Some(&[1u8])),
            (meta::UPLOAD_RECOVERY, Some(&blob_bytes)),
        ],
    )?;
    let uploaded = async {
        let mut conn = replica.connect().await?;
        replica.finish_setup_uploads(&mut conn).await
    }
    .await;
    let genesis_refused = replica.store.meta_blob(meta::UPLOAD_GENESIS)?.is_some();
    match uploaded {
        Ok(()) => {}
        Err(e @ ClientError::Server { .. }) if genesis_refused => {
            // The server refused the genesis (e.g. another first device won the race): this
            // replica does not own the account. Remove it so the directory can be reused.
            drop(replica);
            for f in [DB_FILE, KEYSTORE_FILE, KEYSTORE_KEY_FILE] {
                let _ = std::fs::remove_file(base.home.join(f));
            }
            for f in ["replica.db-wal", "replica.db-shm"] {
                let _ = std::fs::remove_file(base.home.join(f));
            }
            return Err(e);
        }
        Err(e) => {
            tracing::warn!(error = %e, "genesis or recovery upload failed; the next sync retries it");
        }
    }
    Ok(EnrolledCore {
        core: replica,
        device_id,
        state: DeviceState::Trusted,
        recovery_secret: Some(secret.display()),
    })
}
