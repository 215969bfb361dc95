//! TLS: two rustls server configurations on one listener, chosen per connection by ALPN.
//!
//! Both are TLS 1.3 only (NA-07) on the explicit aws-lc-rs provider, with 0-RTT off
//! (NA-13). A client offering `h2` gets the device configuration, which requires a client
//! certificate chaining to our CA (NA-01, NA-02; never `allow_unauthenticated`). A client
//! offering only `sealsync-enroll` gets the enrollment configuration: no client
//! authentication, no session resumption, and the HTTP layer serves only `POST /v1/enroll`
//! on it. Any other offer is dropped. The certificate chain sent is `[server, CA]`, so an
//! enrolling device can pin the CA from the chain.

use std::sync::Arc;

use rustls::server::{ClientHello, NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sealsync_proto::{ALPN_ENROLL, ALPN_H2};

use crate::ServerError;

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
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
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

    /// Picks the configuration for a ClientHello: `h2` offered → device (mutual TLS);
    /// else `sealsync-enroll` offered → enrollment; else `None` (the connection is dropped).
    pub(crate) fn choose(&self, hello: &ClientHello<'_>) -> Option<(Mode, Arc<ServerConfig>)> {
        let offered: Vec<&[u8]> = hello.alpn()?.collect();
        if offered.contains(&ALPN_H2) {
            Some((Mode::Device, Arc::clone(&self.device)))
        } else if offered.contains(&ALPN_ENROLL) {
            Some((Mode::Enroll, Arc::clone(&self.enroll)))
        } else {
            None
        }
    }
}
