//! `POST /v1/watch`: the long poll of live updates (`docs/protocol.md`, "Live updates").
//!
//! [`watch`] sends the device's pull cursors and waits until the server names the
//! collections whose log moved past them, or answers with none after the wait. The answer is
//! only a hint: the caller still pulls those collections and verifies every batch as in any
//! sync; a server that lies here can at worst make the device pull early or late.
//!
//! The wait is fitted inside the connection's request timeout ([`wait_ms`]), so a watch that
//! ends with nothing new never looks like a network failure.

use std::time::Duration;

use sealsync_core::CollectionId;
use sealsync_proto::{
    MAX_WATCH_CURSORS, WATCH_WAIT_MAX_MS, WATCH_WAIT_MIN_MS, WatchCursor, WatchRequest,
    WatchResponse,
};

use super::Connection;
use crate::error::ClientError;

/// Time kept free between the end of the server's wait and the request timeout (the round
/// trip, the server's last store read and a slow network).
pub(crate) const TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

/// One collection to watch: its id and the device's pull cursor there (the `after` of its
/// next `GET /v1/batches`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The collection.
    pub(crate) collection: CollectionId,
    /// The last log index the device applied (its pull cursor).
    pub(crate) after: u64,
}

/// The `wait_ms` to send for a wait of `wait` on a connection whose requests time out after
/// `request_timeout`: `wait`, at most [`WATCH_WAIT_MAX_MS`] and at most the request timeout
/// less [`TIMEOUT_MARGIN`], at least [`WATCH_WAIT_MIN_MS`] (the server's floor; never 0, which
/// would ask for the server's default). A request timeout below the floor plus the margin
/// leaves no room for a watch: [`ClientError::InvalidInput`].
pub(crate) fn wait_ms(wait: Duration, request_timeout: Duration) -> Result<u32, ClientError> {
    let room = request_timeout.saturating_sub(TIMEOUT_MARGIN);
    let floor = Duration::from_millis(u64::from(WATCH_WAIT_MIN_MS));
    if room < floor {
        return Err(ClientError::InvalidInput(format!(
            "a request timeout of {} s is too short for a watch (at least {} s)",
            request_timeout.as_secs_f32(),
            (floor + TIMEOUT_MARGIN).as_secs_f32()
        )));
    }
    let ms = wait.min(room).as_millis();
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    Ok(ms.clamp(WATCH_WAIT_MIN_MS, WATCH_WAIT_MAX_MS))
}

/// The collections of an answer, checked against what was asked: each must be a 16-byte id
/// of one of `cursors`, named once (else [`ClientError::Protocol`]).
fn changed(cursors: &[Cursor], answer: WatchResponse) -> Result<Vec<CollectionId>, ClientError> {
    let mut out: Vec<CollectionId> = Vec::with_capacity(answer.changed_collections.len());
    for raw in answer.changed_collections {
        let id = <[u8; 16]>::try_from(raw.as_slice())
            .map(CollectionId)
            .map_err(|_| {
                ClientError::Protocol("watch answer holds an invalid collection id".into())
            })?;
        if !cursors.iter().any(|c| c.collection == id) {
            return Err(ClientError::Protocol(format!(
                "watch answer names collection {id}, which was not watched"
            )));
        }
        if out.contains(&id) {
            return Err(ClientError::Protocol(format!(
                "watch answer names collection {id} twice"
            )));
        }
        out.push(id);
    }
    Ok(out)
}

/// Watches `cursors` for at most `wait` (fitted by [`wait_ms`] into the connection's request
/// timeout): returns the collections whose log has entries past the cursor, at once if some
/// already do, or an empty list when the wait ended with nothing new (or the server is
/// shutting down). An empty `cursors` returns at once without a request; more than
/// [`MAX_WATCH_CURSORS`] is [`ClientError::InvalidInput`]. Server refusals are
/// [`ClientError::Server`] (`busy` when the device already has its maximum of watches open).
pub(crate) async fn watch(
    conn: &mut Connection,
    cursors: Vec<Cursor>,
    wait: Duration,
) -> Result<Vec<CollectionId>, ClientError> {
    if cursors.is_empty() {
        return Ok(Vec::new());
    }
    if cursors.len() > MAX_WATCH_CURSORS {
        return Err(ClientError::InvalidInput(format!(
            "a watch names at most {MAX_WATCH_CURSORS} collections, not {}",
            cursors.len()
        )));
    }
    let request = WatchRequest {
        cursors: cursors
            .iter()
            .map(|c| WatchCursor {
                collection_id: c.collection.0.to_vec(),
                after: c.after,
            })
            .collect(),
        wait_ms: wait_ms(wait, conn.request_timeout)?,
    };
    let answer: WatchResponse = conn.post("/v1/watch", &request).await?;
    changed(&cursors, answer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

    use std::net::SocketAddr;
    use std::path::Path;

    use rustls::ClientConfig;
    use sealsync_core::{BatchDraft, DeviceId, GenesisParams, Hlc, Roster};
    use sealsync_crypto::{KdfParams, KxSecretKey, SigningKey, SymmetricKey};
    use sealsync_proto::{EnrollRequest, EnrollResponse, PushRequest, PushResponse};
    use tokio::time::Instant;

    use super::*;
    use crate::net::{ServerUrl, tls};
    use crate::options::Timeouts;

    const CID: CollectionId = CollectionId([3; 16]);

    #[test]
    fn the_wait_fits_inside_the_request_timeout() {
        let s = Duration::from_secs;
        assert_eq!(wait_ms(s(25), s(60)).unwrap(), 25_000);
        assert_eq!(wait_ms(s(120), s(60)).unwrap(), WATCH_WAIT_MAX_MS);
        assert_eq!(wait_ms(s(25), s(10)).unwrap(), 8_000, "timeout less margin");
        assert_eq!(wait_ms(Duration::ZERO, s(60)).unwrap(), WATCH_WAIT_MIN_MS);
        assert_eq!(wait_ms(s(25), s(3)).unwrap(), WATCH_WAIT_MIN_MS);
        assert!(matches!(
            wait_ms(s(25), Duration::from_millis(2_999)),
            Err(ClientError::InvalidInput(_))
        ));
        // What is sent is what the server applies.
        for t in [3, 10, 31, 60] {
            let ms = wait_ms(s(25), s(t)).unwrap();
            assert_eq!(sealsync_proto::watch_wait_ms(ms), ms);
            assert!(Duration::from_millis(u64::from(ms)) + TIMEOUT_MARGIN <= s(t));
        }
    }

    #[test]
    fn answers_name_only_watched_collections_once() {
        // MS-36 in spirit: what the server says is checked before it is used.
        let cursors = [Cursor {
            collection: CID,
            after: 1,
        }];
        let answer = |ids: Vec<Vec<u8>>| WatchResponse {
            changed_collections: ids,
        };
        assert_eq!(
            changed(&cursors, answer(vec![CID.0.to_vec()])).unwrap(),
            [CID]
        );
        assert!(changed(&cursors, answer(vec![])).unwrap().is_empty());
        for bad in [
            vec![vec![3; 15]],
            vec![vec![4; 16]],
            vec![CID.0.to_vec(), CID.0.to_vec()],
        ] {
            assert!(matches!(
                changed(&cursors, answer(bad)),
                Err(ClientError::Protocol(_))
            ));
        }
    }

    /// A device enrolled by hand into a real server: its signing key and mTLS settings.
    struct Dev {
        sign: SigningKey,
        id: DeviceId,
        config: ClientConfig,
    }

    async fn enroll(data: &Path, url: &ServerUrl, new_account: bool) -> Dev {
        let line =
            sealsync_server::enroll_ticket(data, "acme", Duration::from_secs(600), None).unwrap();
        let bundle = crate::enroll::parse_bundle(&line).unwrap();
        let sign = SigningKey::generate();
        let kx = KxSecretKey::generate();
        let id = DeviceId(sealsync_crypto::device_id(&sign.verifying_key()));
        let tls_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&tls_key)
            .unwrap();
        let mut request = EnrollRequest {
            ticket: bundle.ticket.to_vec(),
            name: "d".into(),
            csr_der: csr.der().to_vec(),
            sign_pk: sign.verifying_key().to_bytes().to_vec(),
            kx_pk: kx.public_key().to_bytes().to_vec(),
            new_account,
            pop_signature: Vec::new(),
        };
        sealsync_core::sign_enroll_request(&sign, &mut request);
        let config = tls::enroll_config(bundle.ca_pin).unwrap();
        let mut conn = Connection::connect(url, config, Timeouts::default())
            .await
            .unwrap();
        let resp: EnrollResponse = conn.post("/v1/enroll", &request).await.unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(tls_key.serialize_der().into());
        let config = tls::mtls_config(&resp.ca_der, &bundle.ca_pin, &resp.cert_der, key).unwrap();
        let dev = Dev { sign, id, config };
        if new_account {
            let recovery = SigningKey::generate();
            let genesis = Roster::make_genesis(GenesisParams {
                account: "acme",
                signing: &dev.sign,
                kx_pk: &kx.public_key(),
                name: "d",
                recovery_pk: &recovery.verifying_key(),
                recovery_salt: &[7; 16],
                recovery_kdf: KdfParams::DEFAULT,
                now_ms: crate::store::now_ms(),
            });
            let mut conn = dev.connect(url).await;
            conn.send(http::Method::POST, "/v1/roster", &genesis)
                .await
                .unwrap();
        }
        dev
    }

    impl Dev {
        async fn connect(&self, url: &ServerUrl) -> Connection {
            let timeouts = Timeouts::new(Duration::from_secs(15), Duration::from_secs(60));
            Connection::connect(url, self.config.clone(), timeouts)
                .await
                .unwrap()
        }

        /// Pushes batch `seq` (after `prev`) to [`CID`]; returns its hash.
        async fn push(&self, conn: &mut Connection, seq: u64, prev: [u8; 32]) -> [u8; 32] {
            let draft = BatchDraft {
                account: "acme".into(),
                collection: CID,
                device: self.id,
                seq,
                prev_hash: prev,
                epoch: 1,
                roster_head: [0; 32],
                mutations: vec![sealsync_proto::Mutation {
                    key: format!("k{seq}"),
                    hlc: Hlc::from_parts(crate::store::now_ms(), 0).0,
                    deleted: false,
                    value: b"v".to_vec(),
                    supersedes: vec![],
                }],
            };
            let batch =
                sealsync_core::seal_batch(draft, &self.sign, &SymmetricKey::generate()).unwrap();
            let request = PushRequest {
                batches: vec![batch.sealed],
            };
            let _: PushResponse = conn.post("/v1/batches", &request).await.unwrap();
            batch.hash
        }
    }

    async fn start_server(dir: &Path) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let data = dir.join("server");
        sealsync_server::init(&data, &format!("https://{addr}")).unwrap();
        let server = sealsync_server::Server::from_listener(&data, listener)
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    #[tokio::test]
    async fn watch_over_a_real_connection() {
        // A real server over real mutual TLS: at once when a log is past the cursor, woken by
        // another device's push, empty after the wait.
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop) = start_server(dir.path()).await;
        let url = ServerUrl::parse(&format!("https://{addr}")).unwrap();
        let data = dir.path().join("server");
        let a = enroll(&data, &url, true).await;
        let b = enroll(&data, &url, false).await;
        let mut a_conn = a.connect(&url).await;
        let h1 = a.push(&mut a_conn, 1, [0; 32]).await;
        let at = |after| {
            vec![Cursor {
                collection: CID,
                after,
            }]
        };

        let mut b_conn = b.connect(&url).await;
        let got = watch(&mut b_conn, at(0), Duration::from_secs(25)).await;
        assert_eq!(got.unwrap(), [CID]);
        assert!(
            watch(&mut b_conn, Vec::new(), Duration::from_secs(25))
                .await
                .unwrap()
                .is_empty()
        );

        let started = Instant::now();
        let quiet = watch(&mut b_conn, at(1), Duration::from_millis(1_000)).await;
        assert!(quiet.unwrap().is_empty());
        assert!(started.elapsed() >= Duration::from_millis(900));

        let started = Instant::now();
        let waiting = tokio::spawn(async move {
            let got = watch(&mut b_conn, at(1), Duration::from_secs(25)).await;
            (got, started.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiting.is_finished(),
            "the watch answered with nothing new"
        );
        a.push(&mut a_conn, 2, h1).await;
        let (got, took) = waiting.await.unwrap();
        assert_eq!(got.unwrap(), [CID]);
        assert!(
            took < Duration::from_secs(20),
            "returned before the 25 s wait: {took:?}"
        );
        let _ = stop.send(());
    }
}
