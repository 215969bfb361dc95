//! The device key store (CD-09): the device's secrets, sealed at rest.
//!
//! `keystore.bin` = header || `seal_random_nonce(wrap_key, aad, secrets)` where the header is
//! `"SSKS" || version 1 || device_id (16) || mode` and, in passphrase mode, `salt (16) ||
//! m_kib || t_cost || p_cost` (u32be). The AAD is `"sealsync/v1/keystore" || lp(header)`, so
//! the sealed secrets cannot be moved to another device's file nor the KDF parameters swapped.
//!
//! The wrapping key is either `Argon2id(passphrase, salt)` (when enrollment was given a
//! passphrase, `OpenOptions::passphrase`; opening then needs the same passphrase) or a random key in `keystore.key`
//! (mode 0600). Files are written atomically: temp file, fsync, rename, fsync of the directory.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use sealsync_core::{AccountKeys, DeviceId};
use sealsync_crypto::{KdfParams, KxSecretKey, SigningKey, SymmetricKey};
use zeroize::Zeroizing;

use crate::error::ClientError;

/// File holding the sealed secrets.
pub const KEYSTORE_FILE: &str = "keystore.bin";
/// File holding the random wrapping key (no-passphrase mode only).
pub const KEYSTORE_KEY_FILE: &str = "keystore.key";

const MAGIC: &[u8; 4] = b"SSKS";
const VERSION: u8 = 1;
const MODE_KEYFILE: u8 = 0;
const MODE_PASSPHRASE: u8 = 1;
const AAD_LABEL: &[u8] = b"sealsync/v1/keystore";

/// Everything secret a device holds. Zeroized on drop (each field is); `Debug` prints no
/// key material.
#[derive(Clone)]
pub struct DeviceSecrets {
    /// Ed25519 key signing batches, descriptors, envelopes and roster entries.
    pub signing: SigningKey,
    /// X25519 key receiving HPKE envelopes.
    pub kx: KxSecretKey,
    /// PKCS#8 DER of the ECDSA P-256 TLS client key.
    pub tls_key_der: Zeroizing<Vec<u8>>,
    /// Key encrypting record values in the local database.
    pub storage_key: SymmetricKey,
    /// The account keys, once this device is trusted.
    pub account_keys: Option<AccountKeys>,
}

impl fmt::Debug for DeviceSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSecrets")
            .field("device_id", &self.device_id())
            .field("account_keys", &self.account_keys.is_some())
            .finish_non_exhaustive()
    }
}

impl DeviceSecrets {
    /// The device id derived from the signing key.
    pub fn device_id(&self) -> DeviceId {
        DeviceId(sealsync_crypto::device_id(&self.signing.verifying_key()))
    }

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(512));
        out.push(VERSION);
        sealsync_crypto::lp(&mut out, &self.signing.to_seed()[..]);
        sealsync_crypto::lp(&mut out, &self.kx.to_bytes()[..]);
        sealsync_crypto::lp(&mut out, &self.tls_key_der);
        sealsync_crypto::lp(&mut out, self.storage_key.expose());
        match &self.account_keys {
            Some(k) => {
                out.push(1);
                sealsync_crypto::lp(&mut out, &k.encode());
            }
            None => out.push(0),
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, ClientError> {
        let bad = || ClientError::KeyStore("key store content is malformed".into());
        let mut r = Reader(bytes);
        if r.byte().ok_or_else(bad)? != VERSION {
            return Err(bad());
        }
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(r.lp()?.try_into().map_err(|_| bad())?);
        let kx: Zeroizing<[u8; 32]> = Zeroizing::new(r.lp()?.try_into().map_err(|_| bad())?);
        let tls_key_der = Zeroizing::new(r.lp()?.to_vec());
        let storage_key = SymmetricKey::from_bytes(r.lp()?).map_err(|_| bad())?;
        let account_keys = match r.byte().ok_or_else(bad)? {
            0 => None,
            1 => Some(AccountKeys::decode(r.lp()?).map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        if !r.0.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            signing: SigningKey::from_seed(&seed),
            kx: KxSecretKey::from_bytes(&kx),
            tls_key_der,
            storage_key,
            account_keys,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }
    fn lp(&mut self) -> Result<&'a [u8], ClientError> {
        let bad = || ClientError::KeyStore("key store content is malformed".into());
        let n = self.u32().ok_or_else(bad)? as usize;
        self.take(n).ok_or_else(bad)
    }
}

/// Where a device's secrets live. The file implementation is [`FileKeyStore`]; an OS keyring
/// or hardware-backed store can implement the same trait.
pub trait KeyStore: fmt::Debug + Send + Sync {
    /// Reads and opens the secrets.
    fn load(&self) -> Result<DeviceSecrets, KeyStoreError>;
    /// Seals and durably replaces the stored secrets.
    fn save(&self, secrets: &DeviceSecrets) -> Result<(), KeyStoreError>;
}

/// Why a [`KeyStore`] could not load or save the secrets (a message for the user; it must
/// hold no secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyStoreError(String);

impl KeyStoreError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<KeyStoreError> for ClientError {
    fn from(e: KeyStoreError) -> Self {
        ClientError::KeyStore(e.0)
    }
}

impl From<ClientError> for KeyStoreError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::KeyStore(m) => Self(m),
            other => Self(other.to_string()),
        }
    }
}

/// How the wrapping key of a new key store is obtained.
#[derive(Clone)]
pub enum Protection {
    /// A random key in `keystore.key` (0600).
    KeyFile,
    /// Argon2id over the passphrase with these parameters.
    Passphrase(Zeroizing<Vec<u8>>, KdfParams),
}

impl fmt::Debug for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyFile => f.write_str("KeyFile"),
            Self::Passphrase(_, p) => write!(f, "Passphrase(.., {p:?})"),
        }
    }
}

/// The key store in files under the replica's home directory.
pub struct FileKeyStore {
    dir: PathBuf,
    header: Vec<u8>,
    wrap_key: SymmetricKey,
}

impl fmt::Debug for FileKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileKeyStore {
    /// Creates a new key store in `dir` for `secrets` (refuses if one exists).
    pub fn create(
        dir: &Path,
        secrets: &DeviceSecrets,
        protection: Protection,
    ) -> Result<Self, KeyStoreError> {
        if dir.join(KEYSTORE_FILE).exists() {
            return Err(KeyStoreError(format!(
                "{} already exists",
                dir.join(KEYSTORE_FILE).display()
            )));
        }
        let mut header = Vec::with_capacity(64);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&secrets.device_id().0);
        let wrap_key = match protection {
            Protection::KeyFile => {
                header.push(MODE_KEYFILE);
                let key = SymmetricKey::generate();
                write_atomic(&dir.join(KEYSTORE_KEY_FILE), key.expose())?;
                key
            }
            Protection::Passphrase(pass, params) => {
                header.push(MODE_PASSPHRASE);
                let salt: [u8; 16] = sealsync_crypto::random_array();
                header.extend_from_slice(&salt);
                for v in [params.m_kib, params.t_cost, params.p_cost] {
                    header.extend_from_slice(&v.to_be_bytes());
                }
                sealsync_crypto::passphrase_key(&pass, &salt, params)
                    .map_err(|e| KeyStoreError(e.to_string()))?
            }
        };
        let store = Self {
            dir: dir.to_path_buf(),
            header,
            wrap_key,
        };
        store.save(secrets)?;
        Ok(store)
    }

    /// Opens the key store in `dir` with an explicit passphrase (if the store needs one).
    pub fn open_with(
        dir: &Path,
        passphrase: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<(Self, DeviceSecrets), crate::OpenError> {
        Ok(Self::open_inner(dir, passphrase)?)
    }

    pub(crate) fn open_inner(
        dir: &Path,
        passphrase: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<(Self, DeviceSecrets), ClientError> {
        let path = dir.join(KEYSTORE_FILE);
        let data = std::fs::read(&path)
            .map_err(|e| ClientError::io(format!("cannot read {}", path.display()), e))?;
        let bad = || ClientError::KeyStore(format!("{} is malformed", path.display()));
        let mut r = Reader(&data);
        if r.take(4) != Some(MAGIC.as_slice()) || r.byte() != Some(VERSION) {
            return Err(bad());
        }
        r.take(16).ok_or_else(bad)?;
        let wrap_key = match r.byte().ok_or_else(bad)? {
            MODE_KEYFILE => {
                let kp = dir.join(KEYSTORE_KEY_FILE);
                let key = Zeroizing::new(std::fs::read(&kp).map_err(|e| {
                    ClientError::io(format!("cannot read the key store key {}", kp.display()), e)
                })?);
                SymmetricKey::from_bytes(&key)
                    .map_err(|_| ClientError::KeyStore(format!("{} is malformed", kp.display())))?
            }
            MODE_PASSPHRASE => {
                let salt = r.take(16).ok_or_else(bad)?.to_vec();
                let m_kib = r.u32().ok_or_else(bad)?;
                let t_cost = r.u32().ok_or_else(bad)?;
                let p_cost = r.u32().ok_or_else(bad)?;
                let params = KdfParams {
                    m_kib,
                    t_cost,
                    p_cost,
                };
                let pass = passphrase.ok_or(ClientError::PassphraseRequired)?;
                sealsync_crypto::passphrase_key(&pass, &salt, params)?
            }
            _ => return Err(bad()),
        };
        let header_len = data.len() - r.0.len();
        let header = data[..header_len].to_vec();
        let aad = aad(&header);
        let plain = sealsync_crypto::open_random_nonce(&wrap_key, &aad, r.0)
            .map_err(|_| ClientError::WrongPassphrase(path.clone()))?;
        let secrets = DeviceSecrets::decode(&plain)?;
        // The header holds at least magic (4) + version (1) + device id (16) + mode (1).
        if secrets.device_id().0[..] != header[5..21] {
            return Err(bad());
        }
        Ok((
            Self {
                dir: dir.to_path_buf(),
                header,
                wrap_key,
            },
            secrets,
        ))
    }
}

fn aad(header: &[u8]) -> Vec<u8> {
    let mut aad = AAD_LABEL.to_vec();
    sealsync_crypto::lp(&mut aad, header);
    aad
}

impl KeyStore for FileKeyStore {
    fn load(&self) -> Result<DeviceSecrets, KeyStoreError> {
        Ok(self.load_inner()?)
    }

    fn save(&self, secrets: &DeviceSecrets) -> Result<(), KeyStoreError> {
        Ok(self.save_inner(secrets)?)
    }
}

impl FileKeyStore {
    fn load_inner(&self) -> Result<DeviceSecrets, ClientError> {
        let path = self.dir.join(KEYSTORE_FILE);
        let data = std::fs::read(&path)
            .map_err(|e| ClientError::io(format!("cannot read {}", path.display()), e))?;
        let body = data
            .strip_prefix(self.header.as_slice())
            .ok_or_else(|| ClientError::KeyStore(format!("{} changed on disk", path.display())))?;
        let plain = sealsync_crypto::open_random_nonce(&self.wrap_key, &aad(&self.header), body)
            .map_err(|_| ClientError::KeyStore(format!("cannot open {}", path.display())))?;
        DeviceSecrets::decode(&plain)
    }

    fn save_inner(&self, secrets: &DeviceSecrets) -> Result<(), ClientError> {
        let plain = secrets.encode();
        let mut data = self.header.clone();
        data.extend_from_slice(&sealsync_crypto::seal_random_nonce(
            &self.wrap_key,
            &aad(&self.header),
            &plain,
        ));
        write_atomic(&self.dir.join(KEYSTORE_FILE), &data)
    }
}

/// Writes `data` to `path` atomically with mode 0600: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ClientError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let ctx = |what: &str| format!("cannot {what} {}", tmp.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&tmp)
        .map_err(|e| ClientError::io(ctx("create"), e))?;
    #[cfg(unix)]
    {
        // An existing temp file keeps its old mode: force 0600.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| ClientError::io(ctx("chmod"), e))?;
    }
    file.write_all(data)
        .map_err(|e| ClientError::io(ctx("write"), e))?;
    file.sync_all()
        .map_err(|e| ClientError::io(ctx("fsync"), e))?;
    drop(file);
    std::fs::rename(&tmp, path)
        .map_err(|e| ClientError::io(format!("cannot rename to {}", path.display()), e))?;
    sync_dir(dir)
}

/// fsyncs a directory so a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ClientError> {
    #[cfg(unix)]
    {
        let d = std::fs::File::open(dir)
            .map_err(|e| ClientError::io(format!("cannot open {}", dir.display()), e))?;
        d.sync_all()
            .map_err(|e| ClientError::io(format!("cannot fsync {}", dir.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> DeviceSecrets {
        DeviceSecrets {
            signing: SigningKey::generate(),
            kx: KxSecretKey::generate(),
            tls_key_der: Zeroizing::new(b"tls-key-der".to_vec()),
            storage_key: SymmetricKey::generate(),
            account_keys: Some(AccountKeys::generate()),
        }
    }

    fn same(a: &DeviceSecrets, b: &DeviceSecrets) {
        assert_eq!(a.signing.to_seed()[..], b.signing.to_seed()[..]);
        assert_eq!(a.kx.to_bytes()[..], b.kx.to_bytes()[..]);
        assert_eq!(a.tls_key_der[..], b.tls_key_der[..]);
        assert_eq!(a.storage_key.expose(), b.storage_key.expose());
        assert_eq!(
            a.account_keys.as_ref().map(|k| k.encode().to_vec()),
            b.account_keys.as_ref().map(|k| k.encode().to_vec())
        );
    }

    #[test]
    fn key_file_round_trip_and_update() {
        // CD-09: secrets sealed at rest, readable back with the key file.
        let dir = tempfile::tempdir().unwrap();
        let mut s = secrets();
        s.account_keys = None;
        let store = FileKeyStore::create(dir.path(), &s, Protection::KeyFile).unwrap();
        let (_, loaded) = FileKeyStore::open_with(dir.path(), None).unwrap();
        same(&s, &loaded);
        s.account_keys = Some(AccountKeys::generate());
        store.save(&s).unwrap();
        same(&s, &store.load().unwrap());
        let (_, reopened) = FileKeyStore::open_with(dir.path(), None).unwrap();
        same(&s, &reopened);
        // The raw file does not contain the signing seed.
        let raw = std::fs::read(dir.path().join(KEYSTORE_FILE)).unwrap();
        let seed = s.signing.to_seed();
        assert!(!raw.windows(32).any(|w| w == &seed[..]));
    }

    #[test]
    fn passphrase_round_trip_and_wrong_passphrase() {
        // CD-09: with a passphrase, the files alone yield nothing.
        let dir = tempfile::tempdir().unwrap();
        let s = secrets();
        let pass = Zeroizing::new(b"correct horse".to_vec());
        FileKeyStore::create(
            dir.path(),
            &s,
            Protection::Passphrase(pass.clone(), KdfParams::DEFAULT),
        )
        .unwrap();
        assert!(!dir.path().join(KEYSTORE_KEY_FILE).exists());
        let (_, loaded) = FileKeyStore::open_with(dir.path(), Some(pass)).unwrap();
        same(&s, &loaded);
        let err = FileKeyStore::open_with(dir.path(), Some(Zeroizing::new(b"wrong".to_vec())))
            .unwrap_err();
        assert!(matches!(err, crate::OpenError::WrongPassphrase(_)), "{err}");
        let err = FileKeyStore::open_with(dir.path(), None).unwrap_err();
        assert!(matches!(err, crate::OpenError::PassphraseRequired), "{err}");
    }

    #[test]
    fn tampered_file_is_refused() {
        // CD-09: a modified key store does not open.
        let dir = tempfile::tempdir().unwrap();
        FileKeyStore::create(dir.path(), &secrets(), Protection::KeyFile).unwrap();
        let path = dir.path().join(KEYSTORE_FILE);
        let mut raw = std::fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert!(FileKeyStore::open_with(dir.path(), None).is_err());
        // Swapping the device id in the header breaks the AAD.
        raw[last] ^= 1;
        raw[6] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert!(FileKeyStore::open_with(dir.path(), None).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn files_are_0600() {
        // CD-09: key material files are readable by the owner only.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        FileKeyStore::create(dir.path(), &secrets(), Protection::KeyFile).unwrap();
        for f in [KEYSTORE_FILE, KEYSTORE_KEY_FILE] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        // CD-09: Debug output carries no key material.
        let s = secrets();
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::create(dir.path(), &s, Protection::KeyFile).unwrap();
        let text = format!(
            "{s:?} {store:?} {:?}",
            Protection::Passphrase(Zeroizing::new(b"hunter2".to_vec()), KdfParams::DEFAULT)
        );
        let seed_hex = hex::encode(&s.signing.to_seed()[..]);
        let storage_hex = hex::encode(s.storage_key.expose());
        assert!(!text.contains(&seed_hex));
        assert!(!text.contains(&storage_hex));
        assert!(!text.contains("hunter2"));
        assert!(!text.contains("tls-key-der"));
    }
}
