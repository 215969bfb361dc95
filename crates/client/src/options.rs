//! How a replica is opened or enrolled: passphrase, key store and network timeouts. The
//! library reads no environment variable; the `sealsync` CLI fills these options from
//! `SEALSYNC_PASSPHRASE`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::keystore::KeyStore;

/// Network timeouts of a replica's connections.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus the TLS handshake (default 15 s).
    pub connect: Duration,
    /// One request, from sending it to the last byte of its response (default 60 s). A
    /// long-poll for live updates waits at most 30 s on the server, within this bound.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(15),
            request: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    /// Both timeouts.
    pub fn new(connect: Duration, request: Duration) -> Self {
        Self { connect, request }
    }
}

/// Options of [`crate::Replica::open_with`]: everything `open` needs besides the home
/// directory. The default opens a key store protected by a key file, with default timeouts.
#[non_exhaustive]
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Passphrase of the key store, when it was created with one (zeroized on drop).
    pub passphrase: Option<Zeroizing<String>>,
    /// Where the device's secrets live, instead of the files in the home directory (an OS
    /// keyring, a hardware-backed store). The same store must be given at every open.
    pub key_store: Option<Arc<dyn KeyStore>>,
    /// Network timeouts.
    pub timeouts: Timeouts,
}

impl fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenOptions")
            .field("passphrase", &self.passphrase.as_ref().map(|_| ".."))
            .field("key_store", &self.key_store)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl OpenOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens (or creates, at enrollment) a key store protected by `passphrase`.
    pub fn passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(Zeroizing::new(passphrase.into()));
        self
    }

    /// Keeps the device's secrets in `store` instead of the home directory's files.
    pub fn key_store(mut self, store: Arc<dyn KeyStore>) -> Self {
        self.key_store = Some(store);
        self
    }

    /// Sets the network timeouts.
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The passphrase as the key store's KDF takes it.
    pub(crate) fn passphrase_bytes(&self) -> Option<Zeroizing<Vec<u8>>> {
        self.passphrase
            .as_ref()
            .filter(|p| !p.is_empty())
            .map(|p| Zeroizing::new(p.as_bytes().to_vec()))
    }
}
