//! The HTTP API (axum routers) and what every handler shares: state, caller identity,
//! bounded body reading, protobuf responses, query parsing.
//!
//! Two routers: [`enroll_router`] for connections that negotiated `sealsync-enroll` (only
//! `POST /v1/enroll` and `POST /v1/enroll/preview`), [`device_router`] for mutual-TLS connections. On the latter, the TLS
//! layer puts a [`PeerIdentity`] (device id from the certificate CN, SHA-256 of the
//! certificate) in each request's extensions; the [`Caller`] extractor looks the device up
//! on every request and requires it to be active and the certificate to be the one issued.

mod account;
mod batches;
mod enroll;
mod error;
mod pairing;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, header};
use http_body_util::BodyExt as _;
use sealsync_core::DeviceId;
use sealsync_crypto::{SUITE_V1, SigContext, VerifyingKey};
use sealsync_proto::{Sealed, SealedList};
use subtle::ConstantTimeEq as _;

pub(crate) use error::ApiError;

use crate::pki::CertAuthority;
use crate::store::{AdmissionState, DeviceRecord, Store};

/// Body limit of every endpoint except `POST /v1/batches`.
pub(crate) const SMALL_BODY_LIMIT: usize = 1024 * 1024;
/// Time allowed for a request body to arrive (NA-14).
const BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// Shared state of the handlers.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    /// Storage backend.
    pub(crate) store: Arc<dyn Store>,
    /// The CA, for issuing device certificates at enrollment.
    pub(crate) ca: Arc<CertAuthority>,
    /// Push requests buffered at once, server-wide: bounds the memory that large bodies
    /// can take ([`PUSH_SLOTS`] × `MAX_MESSAGE_BYTES`, plus decoding copies).
    pub(crate) push_slots: Arc<tokio::sync::Semaphore>,
    /// Wakes `POST /v1/watch` long polls when a push commits.
    pub(crate) watch: Arc<crate::watch::WatchHub>,
}

/// Concurrent push requests (each up to `MAX_MESSAGE_BYTES`).
pub(crate) const PUSH_SLOTS: usize = 16;

impl AppState {
    /// State over a store and a CA.
    pub(crate) fn new(store: Arc<dyn Store>, ca: Arc<CertAuthority>) -> Self {
        AppState {
            store,
            ca,
            push_slots: Arc::new(tokio::sync::Semaphore::new(PUSH_SLOTS)),
            watch: Arc::default(),
        }
    }
}

/// Who is at the other end of a mutual-TLS connection, from its verified certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    /// Device id from the certificate's common name.
    pub(crate) device_id: DeviceId,
    /// SHA-256 of the certificate DER.
    pub(crate) cert_fp: [u8; 32],
}

/// An authenticated, active device (checked on every request).
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) DeviceRecord);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(peer) = parts.extensions.get::<PeerIdentity>().copied() else {
            return Err(ApiError::unauthorized("no client certificate identity"));
        };
        let Some(device) = state.store.device(peer.device_id).await? else {
            return Err(ApiError::unauthorized(format!(
                "unknown device {}",
                peer.device_id
            )));
        };
        if !bool::from(device.cert_fp.ct_eq(&peer.cert_fp)) {
            return Err(ApiError::unauthorized(format!(
                "device {}: certificate is not the one issued",
                peer.device_id
            )));
        }
        if device.state != AdmissionState::Active {
            return Err(ApiError::forbidden(format!(
                "device {} is {}",
                peer.device_id,
                device.state.as_str()
            )));
        }
        Ok(Caller(device))
    }
}

/// A [`Caller`] that is also in its account's roster.
#[derive(Debug, Clone)]
pub(crate) struct Member(pub(crate) DeviceRecord);

impl FromRequestParts<AppState> for Member {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(device) = Caller::from_request_parts(parts, state).await?;
        if !state
            .store
            .is_roster_member(device.account.clone(), device.device_id)
            .await?
        {
            return Err(ApiError::forbidden(format!(
                "device {} is not in the roster",
                device.device_id
            )));
        }
        Ok(Member(device))
    }
}

/// Reads a request body of at most `limit` bytes: a declared `Content-Length` above the
/// limit is refused before anything is read, and the stream is cut at the limit (BI-01).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    if let Some(value) = headers.get(header::CONTENT_LENGTH) {
        let declared = value
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| ApiError::bad_request("invalid content-length"))?;
        if declared > limit as u64 {
            return Err(ApiError::too_large(format!(
                "declared body of {declared} bytes, limit {limit}"
            )));
        }
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(ApiError::timeout("request body not received in time")),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(format!(
                "body above the limit of {limit} bytes"
            )))
        }
        Ok(Err(e)) => Err(ApiError::bad_request(format!("body read failed: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Decodes a protobuf body with the endpoint's limit.
pub(crate) fn decode<M: prost::Message + Default>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<M, ApiError> {
    sealsync_proto::decode_limited(bytes, limit).map_err(|e| match e {
        sealsync_proto::DecodeError::TooLarge { .. } => ApiError::too_large(what),
        sealsync_proto::DecodeError::Malformed(_) => {
            ApiError::bad_request(format!("malformed {what}"))
        }
    })
}

/// Reads a body of at most [`SMALL_BODY_LIMIT`] bytes and decodes it (`what` names it in
/// refusals).
pub(crate) async fn read_small<M: prost::Message + Default>(
    headers: &HeaderMap,
    body: Body,
    what: &'static str,
) -> Result<M, ApiError> {
    let bytes = read_body(headers, body, SMALL_BODY_LIMIT).await?;
    decode(&bytes, SMALL_BODY_LIMIT, what)
}

/// The caller's enrolled signing key.
pub(crate) fn caller_key(device: &DeviceRecord) -> Result<VerifyingKey, ApiError> {
    VerifyingKey::from_bytes(&device.sign_pk)
        .map_err(|_| ApiError::internal("stored signing key is invalid"))
}

/// Checks the suite and account named in the header of a posted object (`what` names it
/// in refusals): an unknown suite is a 400, another account than the caller's a 403.
pub(crate) fn check_suite_and_account(
    me: &DeviceRecord,
    suite: u32,
    account: &str,
    what: &'static str,
) -> Result<(), ApiError> {
    if suite != SUITE_V1 {
        return Err(ApiError::bad_request(format!("{what} suite unknown")));
    }
    if account != me.account {
        return Err(ApiError::forbidden(format!("{what} for another account")));
    }
    Ok(())
}

/// CD-07: a sealed object is stored only as posted by its author. The `author` its header
/// names must be the caller (else 403, "`what` `role` is not the caller"), and the signature
/// must verify under the caller's enrolled key in context `ctx` (else 400).
pub(crate) fn verify_caller_signed(
    me: &DeviceRecord,
    author: &[u8],
    ctx: SigContext,
    sealed: &Sealed,
    what: &'static str,
    role: &'static str,
) -> Result<(), ApiError> {
    if author != me.device_id.0.as_slice() {
        return Err(ApiError::forbidden(format!(
            "{what} {role} is not the caller"
        )));
    }
    caller_key(me)?
        .verify(ctx, &sealed.header, &sealed.ciphertext, &sealed.signature)
        .map_err(|_| ApiError::bad_request(format!("{what} signature invalid")))
}

/// A `SealedList` response of stored encoded `Sealed` objects (`what` names them if one
/// does not decode).
pub(crate) fn sealed_list(rows: &[Vec<u8>], what: &'static str) -> Result<Response, ApiError> {
    let items = rows
        .iter()
        .map(|b| {
            sealsync_proto::decode::<Sealed>(b)
                .map_err(|_| ApiError::internal(format!("stored {what} does not decode")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(proto(&SealedList { items }))
}

/// A 200 response with a protobuf body.
pub(crate) fn proto<M: prost::Message>(message: &M) -> Response {
    raw_proto(message.encode_to_vec())
}

/// A 200 response with already encoded protobuf bytes.
pub(crate) fn raw_proto(bytes: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, sealsync_proto::CONTENT_TYPE)],
        bytes,
    )
        .into_response()
}

/// Parses `a=1&b=x` into pairs; a repeated name is refused. No percent-decoding: every
/// Sealsync parameter is a number or hex.
pub(crate) fn query_pairs(query: Option<&str>) -> Result<Vec<(&str, &str)>, ApiError> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        if pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(ApiError::bad_request("repeated query parameter"));
        }
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// An optional `u64` query parameter.
pub(crate) fn query_u64(pairs: &[(&str, &str)], name: &str) -> Result<Option<u64>, ApiError> {
    match pairs.iter().find(|(k, _)| *k == name) {
        None => Ok(None),
        Some((_, v)) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request("invalid number in query")),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// Unknown paths on the device API: the caller is still checked first (every request).
async fn device_not_found(_caller: Caller) -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// Wrong method on the device API, after the caller check.
async fn device_method_not_allowed(_caller: Caller) -> ApiError {
    ApiError::method_not_allowed()
}

/// Router for `sealsync-enroll` connections: only `POST /v1/enroll` and its preview.
pub(crate) fn enroll_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/enroll/preview", post(enroll::preview))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Router for mutual-TLS connections: the device API.
pub(crate) fn device_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(account::status))
        .route(
            "/v1/roster",
            get(account::get_roster).post(account::post_roster),
        )
        .route("/v1/devices/pending", get(account::pending_devices))
        .route(
            "/v1/envelopes",
            get(account::get_envelopes).post(account::post_envelope),
        )
        .route(
            "/v1/recovery",
            get(account::get_recovery).put(account::put_recovery),
        )
        .route(
            "/v1/collections",
            get(batches::get_collections).post(batches::post_collection),
        )
        .route("/v1/batches", get(batches::pull).post(batches::push))
        .route("/v1/chain", get(batches::chain_head))
        .route("/v1/watch", post(watch::watch))
        .route("/v1/pairing", get(pairing::get))
        .route("/v1/pairing/start", post(pairing::start))
        .route("/v1/pairing/reply", post(pairing::reply))
        .route("/v1/pairing/confirm", post(pairing::confirm))
        .route("/v1/pairing/done", post(pairing::done))
        .route("/v1/pairing/abort", post(pairing::abort))
        .fallback(device_not_found)
        .method_not_allowed_fallback(device_method_not_allowed)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_refuse_repeats_and_parse_numbers() {
        let p = query_pairs(Some("collection=ab&after=5&limit=")).unwrap();
        assert_eq!(query_u64(&p, "after").unwrap(), Some(5));
        assert_eq!(query_u64(&p, "missing").unwrap(), None);
        assert!(query_u64(&p, "limit").is_err());
        assert!(query_pairs(Some("after=1&after=2")).is_err());
        assert!(query_pairs(None).unwrap().is_empty());
    }

    #[tokio::test]
    async fn body_limit_refuses_declared_and_streamed_excess() {
        // BI-01: limit-1 and limit pass, limit+1 is refused both by declaration and by stream.
        let limit = 16;
        for (len, ok) in [(limit - 1, true), (limit, true), (limit + 1, false)] {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_LENGTH, len.to_string().parse().unwrap());
            let r = read_body(&headers, Body::from(vec![7u8; len]), limit).await;
            assert_eq!(r.is_ok(), ok, "declared {len}");
            if !ok {
                assert_eq!(r.unwrap_err().status(), http::StatusCode::PAYLOAD_TOO_LARGE);
            }
            let r = read_body(&HeaderMap::new(), Body::from(vec![7u8; len]), limit).await;
            assert_eq!(r.is_ok(), ok, "streamed {len}");
            if !ok {
                assert_eq!(r.unwrap_err().status(), http::StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
    }
}
