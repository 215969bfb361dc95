//! Account endpoints: status, roster, pending devices, key envelopes, recovery blob.
//!
//! The server keeps each account's roster as received and only appends an entry that
//! passes `crate::roster::check_append` (the next link of the verified chain; genesis only
//! when the account has none, posted by its subject). It cannot forge entries; this check
//! only keeps garbage and forks out of the log it serves. Sending a key envelope and storing the
//! recovery blob need roster membership ([`Member`]); the rest only an active device.

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use sealsync_core::{DeviceId, envelope_recipient, roster_entry_hash};
use sealsync_crypto::SigContext;
use sealsync_proto::{
    EnvelopeHeader, PendingDevice, PendingDevicesResponse, RecoveryBlob, RecoveryHeader,
    RosterEntryBody, RosterOp, RosterResponse, Sealed, SealedList, SignedRosterEntry,
    StatusResponse,
};

use super::enroll::decode_entries;
use super::{
    ApiError, AppState, Caller, Member, SMALL_BODY_LIMIT, check_suite_and_account, decode, proto,
    query_pairs, query_u64, read_body, read_small, sealed_list, verify_caller_signed,
};
use crate::datadir::now_ms;
use crate::pki::sha256;
use crate::roster::{AppendRefusal, check_append, row_subject};
use crate::store::{NewEnvelope, RosterRow};

pub(super) async fn status(Caller(me): Caller) -> Response {
    proto(&StatusResponse {
        device_id: me.device_id.0.to_vec(),
        account: me.account,
        admission: me.state.as_str().to_string(),
        server_time_ms: now_ms(),
    })
}

pub(super) async fn get_roster(
    State(state): State<AppState>,
    Caller(me): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query.as_deref())?;
    let after = query_u64(&pairs, "after")?.unwrap_or(0);
    let rows = state.store.roster(me.account, after).await?;
    Ok(proto(&RosterResponse {
        entries: decode_entries(&rows)?,
    }))
}

pub(super) async fn post_roster(
    State(state): State<AppState>,
    Caller(me): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(&headers, body, SMALL_BODY_LIMIT).await?;
    let entry: SignedRosterEntry = decode(&bytes, SMALL_BODY_LIMIT, "roster entry")?;
    let entry_body: RosterEntryBody = decode(&entry.body, SMALL_BODY_LIMIT, "roster entry body")?;
    if entry_body.account != me.account {
        return Err(ApiError::forbidden("roster entry for another account"));
    }
    let subject = row_subject(&entry_body)
        .ok_or_else(|| ApiError::bad_request("roster entry names no valid device id"))?;
    let hash = roster_entry_hash(&entry);
    let stored = state.store.roster(me.account.clone(), 0).await?;

    // An entry already stored with the same hash is acknowledged again (idempotent retry).
    if let Some(row) = usize::try_from(entry_body.seq)
        .ok()
        .and_then(|i| stored.get(i))
    {
        if row.hash == hash {
            return Ok(proto(&RosterResponse::default()));
        }
        return Err(ApiError::conflict(format!(
            "roster seq {} already taken",
            entry_body.seq
        )));
    }
    let subject_dev = if entry_body.op == RosterOp::Collection as i32 {
        None
    } else {
        state.store.device(subject).await?
    };
    let account = me.account.clone();
    let entries = decode_entries(&stored)?;
    let me_id = me.device_id;
    let now = now_ms();
    let seq = tokio::task::spawn_blocking(move || {
        check_append(
            &entries,
            &entry,
            &entry_body,
            &account,
            me_id,
            subject_dev.as_ref(),
            now,
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("roster task failed: {e}")))?
    .map_err(|r| match r {
        AppendRefusal::Conflict(why) => ApiError::conflict(why),
        AppendRefusal::Forbidden(why) => ApiError::forbidden(why),
        AppendRefusal::Internal(why) => ApiError::internal(why),
    })?;

    state
        .store
        .append_roster(
            me.account.clone(),
            RosterRow {
                seq,
                subject,
                hash,
                entry: bytes.to_vec(),
            },
        )
        .await?;
    tracing::info!(account = %me.account, seq, subject = %subject, "roster entry appended");
    Ok(proto(&RosterResponse::default()))
}

pub(super) async fn pending_devices(
    State(state): State<AppState>,
    Caller(me): Caller,
) -> Result<Response, ApiError> {
    let members: HashSet<DeviceId> = state
        .store
        .roster(me.account.clone(), 0)
        .await?
        .into_iter()
        .map(|r| r.subject)
        .collect();
    let devices = state.store.account_devices(me.account).await?;
    let pending = devices
        .into_iter()
        .filter(|d| {
            d.state == crate::store::AdmissionState::Active && !members.contains(&d.device_id)
        })
        .map(|d| PendingDevice {
            device_id: d.device_id.0.to_vec(),
            name: d.name,
            sign_pk: d.sign_pk.to_vec(),
            kx_pk: d.kx_pk.to_vec(),
            enrolled_ms: d.enrolled_ms,
        })
        .collect();
    Ok(proto(&PendingDevicesResponse { devices: pending }))
}

pub(super) async fn post_envelope(
    State(state): State<AppState>,
    Member(me): Member,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let sealed: Sealed = read_small(&headers, body, "envelope").await?;
    let recipient = envelope_recipient(&sealed)
        .map_err(|_| ApiError::bad_request("envelope header malformed"))?;
    let header: EnvelopeHeader = decode(&sealed.header, SMALL_BODY_LIMIT, "envelope header")?;
    check_suite_and_account(&me, header.suite, &header.account, "envelope")?;
    // CD-07: the sender is the caller, proven by its enrolled key.
    verify_caller_signed(
        &me,
        &header.sender_device_id,
        SigContext::Envelope,
        &sealed,
        "envelope",
        "sender",
    )?;
    // BI-16: only to a device of the same account.
    match state.store.device(recipient).await? {
        Some(d) if d.account == me.account => {}
        _ => {
            return Err(ApiError::not_found(
                "envelope recipient is not a device of this account",
            ));
        }
    }
    let sealed_bytes = sealsync_proto::encode(&sealed);
    state
        .store
        .put_envelope(NewEnvelope {
            account: me.account,
            sender: me.device_id,
            recipient,
            hash: sha256(&sealed_bytes),
            sealed: sealed_bytes,
            created_ms: now_ms(),
        })
        .await?;
    Ok(proto(&SealedList::default()))
}

pub(super) async fn get_envelopes(
    State(state): State<AppState>,
    Caller(me): Caller,
) -> Result<Response, ApiError> {
    let rows = state.store.envelopes_for(me.account, me.device_id).await?;
    sealed_list(&rows, "envelope")
}

pub(super) async fn put_recovery(
    State(state): State<AppState>,
    Member(me): Member,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let blob: RecoveryBlob = read_small(&headers, body, "recovery blob").await?;
    let header: RecoveryHeader = decode(&blob.header, SMALL_BODY_LIMIT, "recovery header")?;
    check_suite_and_account(&me, header.suite, &header.account, "recovery blob")?;
    let genesis = state.store.roster(me.account.clone(), 0).await?;
    match genesis.first() {
        Some(g) if g.hash.as_slice() == header.genesis_hash.as_slice() => {}
        _ => {
            return Err(ApiError::conflict(
                "recovery blob is not bound to this account's genesis",
            ));
        }
    }
    state
        .store
        .put_recovery(me.account, sealsync_proto::encode(&blob), now_ms())
        .await?;
    Ok(proto(&RecoveryBlob::default()))
}

pub(super) async fn get_recovery(
    State(state): State<AppState>,
    Caller(me): Caller,
) -> Result<Response, ApiError> {
    let blob = state
        .store
        .recovery(me.account)
        .await?
        .ok_or_else(|| ApiError::not_found("no recovery blob"))?;
    Ok(super::raw_proto(blob))
}
