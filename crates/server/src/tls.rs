//! TLS: two rustls server configurations on one listener, chosen per connection by ALPN.
//!
//! Both are TLS 1.3 only (NA-07) on the explicit aws-lc-rs provider, with 0-RTT off
//! (NA-13) and the key-exchange groups pinned to [`KX_GROUPS`]: the post-quantum hybrid
//! X25519MLKEM768 first, X25519 as the only fallback. A client offering `sealsync-enroll`
//! and not `h2` gets the enrollment configuration: no client authentication, no session
//! resumption, and the HTTP layer serves only `POST /v1/enroll` on it. Every other client
//! (offering `h2`, another protocol, or no ALPN at all) gets the device configuration,
//! which requires a client certificate chaining to our CA (NA-01, NA-02; never
//! `allow_unauthenticated`): a TLS scanner without ALPN thus sees a normal TLS 1.3
//! handshake up to the certificate request, and an unknown protocol gets the standard
//! `no_application_protocol` alert, never a bare EOF. The certificate chain sent is
//! `[server, CA]`, so an enrolling device can pin the CA from the chain.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs};
use rustls::server::{ClientHello, NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sealsync_proto::{ALPN_ENROLL, ALPN_H2};

use crate::ServerError;

/// The key-exchange groups the server accepts. X25519MLKEM768 (the hybrid of X25519 and
/// ML-KEM-768) protects recorded traffic against a later quantum computer; X25519 stays as
/// a fallback for TLS 1.3 clients of other implementations that lack ML-KEM. Among these,
/// rustls follows the client's preference order, and the Sealsync client prefers the
/// hybrid. The fallback cannot be forced on a client that offers the hybrid first: TLS 1.3
/// signs the whole handshake transcript, so a network attacker who strips the hybrid from
/// a ClientHello breaks the handshake. The NIST curves are not accepted.
pub(crate) static KX_GROUPS: &[&dyn SupportedKxGroup] = &[
    aws_lc_rs::kx_group::X25519MLKEM768,
    aws_lc_rs::kx_group::X25519,
];

/// The aws-lc-rs provider with the key-exchange groups pinned to [`KX_GROUPS`].
fn provider() -> CryptoProvider {
    CryptoProvider {
        kx_groups: KX_GROUPS.to_vec(),
        ..aws_lc_rs::default_provider()
    }
}

/// Which API a connection may use, decided by ALPN at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Mutual TLS with a device certificate: the device API.
    Device,
    /// Server-authenticated TLS only: nothing but `POST /v1/enroll`.
    Enroll,
}

/// The two server configurations.
#[derive(Debug, Clone)]
pub(crate) struct TlsConfigs {
    device: Arc<ServerConfig>,
    enroll: Arc<ServerConfig>,
}

impl TlsConfigs {
    /// Builds both configurations from the PEM files' contents.
    pub(crate) fn from_pem(
        server_pem: &[u8],
        server_key_pem: &[u8],
        ca_pem: &[u8],
    ) -> Result<Self, ServerError> {
        let pem_err = |what: &str, e: rustls_pki_types::pem::Error| {
            ServerError::Pki(format!("cannot read {what}: {e}"))
        };
        let server = CertificateDer::from_pem_slice(server_pem)
            .map_err(|e| pem_err("server certificate", e))?;
        let ca =
            CertificateDer::from_pem_slice(ca_pem).map_err(|e| pem_err("CA certificate", e))?;
        let key =
            PrivateKeyDer::from_pem_slice(server_key_pem).map_err(|e| pem_err("server key", e))?;
        Self::new(server, key, ca)
    }

    /// Builds both configurations.
    pub(crate) fn new(
        server_cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        ca: CertificateDer<'static>,
    ) -> Result<Self, ServerError> {
        let provider = Arc::new(provider());
        let chain = vec![server_cert, ca.clone()];

        let mut roots = RootCertStore::empty();
        roots.add(ca)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .build()
                .map_err(|e| ServerError::Pki(format!("client verifier: {e}")))?;
        let mut device = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        device.alpn_protocols = vec![ALPN_H2.to_vec()];
        device.max_early_data_size = 0;
        device.send_half_rtt_data = false;

        let mut enroll = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        enroll.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
        enroll.max_early_data_size = 0;
        enroll.send_half_rtt_data = false;
        enroll.session_storage = Arc::new(NoServerSessionStorage {});
        enroll.send_tls13_tickets = 0;

        Ok(TlsConfigs {
            device: Arc::new(device),
            enroll: Arc::new(enroll),
        })
    }

    /// Picks the configuration for a ClientHello: `sealsync-enroll` offered without `h2` →
    /// enrollment; anything else → device (mutual TLS; rustls refuses an offer without `h2`
    /// that names other protocols with the `no_application_protocol` alert).
    pub(crate) fn choose(&self, hello: &ClientHello<'_>) -> (Mode, Arc<ServerConfig>) {
        let offered: Vec<&[u8]> = hello.alpn().map(Iterator::collect).unwrap_or_default();
        if offered.contains(&ALPN_ENROLL) && !offered.contains(&ALPN_H2) {
            (Mode::Enroll, Arc::clone(&self.enroll))
        } else {
            (Mode::Device, Arc::clone(&self.device))
        }
    }
}
