//! Pairing mailboxes: the server relays the SPAKE2 messages of a pairing between a roster
//! member (the approver) and a new device of the same account (`docs/protocol.md`,
//! "Pairing").
//!
//! The server cannot learn the code or forge a confirmation; these checks only keep each
//! mailbox to its two devices and enforce one reply per attempt (one online guess of the
//! code per attempt). A new start by the same approver replaces the attempt; another
//! approver's start waits until it ends.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use sealsync_core::DeviceId;
use sealsync_crypto::pake::PAKE_MESSAGE_BYTES;
use sealsync_proto::{
    PairingAbort, PairingConfirm, PairingDone, PairingMailbox, PairingReply, PairingStart,
};

use super::{ApiError, AppState, Caller, Member, decode, proto, query_pairs, read_body};
use crate::datadir::now_ms;
use crate::store::{AdmissionState, NewPairing, PairingRow};

/// Body limit of the pairing endpoints (their messages are a few hundred bytes).
const PAIRING_BODY_LIMIT: usize = 8 * 1024;
/// Longest time an attempt stays open.
pub(crate) const MAX_PAIRING_TTL_MS: u64 = 60 * 60 * 1000;
/// Shortest time an attempt stays open.
const MIN_PAIRING_TTL_MS: u64 = 10 * 1000;

fn id16(bytes: &[u8], what: &'static str) -> Result<[u8; 16], ApiError> {
    bytes
        .try_into()
        .map_err(|_| ApiError::bad_request(format!("{what} has the wrong length")))
}

fn device_field(bytes: &[u8]) -> Result<DeviceId, ApiError> {
    Ok(DeviceId(id16(bytes, "device id")?))
}

async fn body<M: prost::Message + Default>(
    headers: &HeaderMap,
    body: Body,
    what: &'static str,
) -> Result<(Vec<u8>, M), ApiError> {
    let bytes = read_body(headers, body, PAIRING_BODY_LIMIT).await?;
    let msg = decode(&bytes, PAIRING_BODY_LIMIT, what)?;
    Ok((bytes.to_vec(), msg))
}

fn stored<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, ApiError> {
    sealsync_proto::decode(bytes)
        .map_err(|_| ApiError::internal("stored pairing message does not decode"))
}

fn mailbox(row: Option<PairingRow>) -> Result<Response, ApiError> {
    let Some(row) = row else {
        return Ok(proto(&PairingMailbox::default()));
    };
    Ok(proto(&PairingMailbox {
        start: Some(stored::<PairingStart>(&row.start)?),
        reply: row
            .reply
            .as_deref()
            .map(stored::<PairingReply>)
            .transpose()?,
        confirm: row
            .confirm
            .as_deref()
            .map(stored::<PairingConfirm>)
            .transpose()?,
        aborted: row.aborted,
        done: row.done.as_deref().map(stored::<PairingDone>).transpose()?,
    }))
}

/// `POST /v1/pairing/start`: a roster member opens an attempt for a device of its account.
pub(super) async fn start(
    State(state): State<AppState>,
    Member(me): Member,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let (bytes, msg): (_, PairingStart) = body(&headers, raw, "pairing start").await?;
    let attempt_id = id16(&msg.attempt_id, "attempt id")?;
    let device = device_field(&msg.device_id)?;
    if msg.approver_id != me.device_id.0 {
        return Err(ApiError::forbidden("pairing start names another approver"));
    }
    if msg.approver_sign_pk != me.sign_pk || msg.approver_kx_pk != me.kx_pk {
        return Err(ApiError::bad_request(
            "approver keys differ from the enrolled keys",
        ));
    }
    if msg.pake_msg.len() != PAKE_MESSAGE_BYTES {
        return Err(ApiError::bad_request("PAKE message has the wrong length"));
    }
    if device == me.device_id {
        return Err(ApiError::bad_request("a device cannot pair with itself"));
    }
    // BI-16: only a device of the same account, still admitted.
    match state.store.device(device).await? {
        Some(d) if d.account == me.account && d.state == AdmissionState::Active => {}
        _ => {
            return Err(ApiError::not_found(
                "pairing target is not an active device of this account",
            ));
        }
    }
    let now = now_ms();
    let ttl = msg.ttl_ms.clamp(MIN_PAIRING_TTL_MS, MAX_PAIRING_TTL_MS);
    state
        .store
        .pairing_start(NewPairing {
            account: me.account.clone(),
            device,
            attempt_id,
            approver: me.device_id,
            start: bytes,
            created_ms: now,
            expires_ms: now.saturating_add(ttl),
        })
        .await?;
    tracing::info!(account = %me.account, approver = %me.device_id, device = %device, "pairing started");
    Ok(proto(&PairingMailbox::default()))
}

/// `GET /v1/pairing[?device=HEX]`: the caller's own mailbox (new device), or that of
/// device HEX for the approver of its current attempt.
pub(super) async fn get(
    State(state): State<AppState>,
    Caller(me): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let now = now_ms();
    match pairs.iter().find(|(k, _)| *k == "device") {
        None => mailbox(state.store.pairing(me.account, me.device_id, now).await?),
        Some((_, hex)) => {
            let device: DeviceId = hex
                .parse()
                .map_err(|_| ApiError::bad_request("device is not 32 hex digits"))?;
            let row = state
                .store
                .pairing(me.account, device, now)
                .await?
                .filter(|r| r.approver == me.device_id);
            mailbox(row)
        }
    }
}

/// `POST /v1/pairing/reply`: the new device's one answer to the current attempt.
pub(super) async fn reply(
    State(state): State<AppState>,
    Caller(me): Caller,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let (bytes, msg): (_, PairingReply) = body(&headers, raw, "pairing reply").await?;
    let attempt_id = id16(&msg.attempt_id, "attempt id")?;
    if msg.sign_pk != me.sign_pk || msg.kx_pk != me.kx_pk {
        return Err(ApiError::bad_request(
            "pairing reply keys differ from the enrolled keys",
        ));
    }
    if msg.pake_msg.len() != PAKE_MESSAGE_BYTES || msg.mac.len() != 32 {
        return Err(ApiError::bad_request(
            "pairing reply fields have the wrong length",
        ));
    }
    state
        .store
        .pairing_reply(
            me.account.clone(),
            me.device_id,
            attempt_id,
            bytes,
            now_ms(),
        )
        .await?;
    tracing::info!(account = %me.account, device = %me.device_id, "pairing reply stored");
    Ok(proto(&PairingMailbox::default()))
}

/// `POST /v1/pairing/confirm`: the approver's confirmation of an answered attempt.
pub(super) async fn confirm(
    State(state): State<AppState>,
    Member(me): Member,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let (bytes, msg): (_, PairingConfirm) = body(&headers, raw, "pairing confirmation").await?;
    let attempt_id = id16(&msg.attempt_id, "attempt id")?;
    let device = device_field(&msg.device_id)?;
    if msg.genesis_hash.len() != 32 || msg.roster_head.len() != 32 || msg.mac.len() != 32 {
        return Err(ApiError::bad_request(
            "pairing confirmation fields have the wrong length",
        ));
    }
    state
        .store
        .pairing_confirm(
            me.account.clone(),
            device,
            attempt_id,
            me.device_id,
            bytes,
            now_ms(),
        )
        .await?;
    tracing::info!(account = %me.account, approver = %me.device_id, device = %device, "pairing confirmed");
    Ok(proto(&PairingMailbox::default()))
}

/// `POST /v1/pairing/done`: the new device, now trusted, tells its approver so (under a
/// MAC the server cannot make).
pub(super) async fn done(
    State(state): State<AppState>,
    Caller(me): Caller,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let (bytes, msg): (_, PairingDone) = body(&headers, raw, "pairing done").await?;
    let attempt_id = id16(&msg.attempt_id, "attempt id")?;
    if msg.mac.len() != 32 {
        return Err(ApiError::bad_request(
            "pairing done MAC has the wrong length",
        ));
    }
    state
        .store
        .pairing_done(
            me.account.clone(),
            me.device_id,
            attempt_id,
            bytes,
            now_ms(),
        )
        .await?;
    tracing::info!(account = %me.account, device = %me.device_id, "pairing done");
    Ok(proto(&PairingMailbox::default()))
}

/// `POST /v1/pairing/abort`: either side ends the attempt; its code is spent.
pub(super) async fn abort(
    State(state): State<AppState>,
    Caller(me): Caller,
    headers: HeaderMap,
    raw: Body,
) -> Result<Response, ApiError> {
    let (_, msg): (_, PairingAbort) = body(&headers, raw, "pairing abort").await?;
    let attempt_id = id16(&msg.attempt_id, "attempt id")?;
    let device = device_field(&msg.device_id)?;
    if device != me.device_id {
        let row = state
            .store
            .pairing(me.account.clone(), device, now_ms())
            .await?;
        if row.is_none_or(|r| r.approver != me.device_id) {
            return Err(ApiError::not_found("no pairing attempt of this caller"));
        }
    }
    state
        .store
        .pairing_abort(me.account.clone(), device, attempt_id)
        .await?;
    tracing::info!(account = %me.account, by = %me.device_id, device = %device, "pairing aborted");
    Ok(proto(&PairingMailbox::default()))
}
