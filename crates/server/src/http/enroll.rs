//! `POST /v1/enroll`: a device redeems a one-time ticket for a client certificate.
//!
//! Served only on `sealsync-enroll` connections (no client certificate). In order: the
//! ticket must be known, unexpired and unused (any ticket problem is one generic 401,
//! BI-13); the request's keys are validated (BI-06, BI-20) and the device id recomputed
//! from `sign_pk` (the device cannot choose it); the request must carry a proof of
//! possession (an Ed25519 signature by `sign_pk` over the ticket hash and every field) and
//! a self-signed CSR; `new_account` must match whether the account has a roster (MS-09).
//! Only then is a certificate issued, and one storage transaction consumes the ticket and
//! inserts the device (single use). `POST /v1/enroll/preview` returns the genesis for a
//! valid ticket without spending it.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use sealsync_core::{DeviceId, verify_enroll_request};
use sealsync_crypto::{KxPublicKey, VerifyingKey};
use sealsync_proto::{
    EnrollPreview, EnrollPreviewRequest, EnrollRequest, EnrollResponse, SignedRosterEntry,
};

use super::{ApiError, AppState, proto, read_small};
use crate::datadir::now_ms;
use crate::pki::sha256;
use crate::store::NewDevice;

/// Longest device name accepted, in bytes: the roster's limit, so a name the server
/// accepts at enrollment can always be written into the ADD entry.
pub(crate) const MAX_NAME_BYTES: usize = sealsync_core::MAX_DEVICE_NAME_BYTES;

/// Checks a display name: 1 to [`MAX_NAME_BYTES`] bytes, no control characters (BI-10).
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_BYTES && !name.chars().any(char::is_control)
}

/// Decodes stored roster entries for a response.
pub(crate) fn decode_entries(
    rows: &[crate::store::RosterRow],
) -> Result<Vec<SignedRosterEntry>, ApiError> {
    rows.iter()
        .map(|r| {
            sealsync_proto::decode(&r.entry)
                .map_err(|_| ApiError::internal("stored roster entry does not decode"))
        })
        .collect()
}

/// Checks a CSR's self-signature (x509-parser) before anything is issued from it.
fn csr_self_signed(csr_der: &[u8]) -> bool {
    use x509_parser::prelude::FromDer as _;
    match x509_parser::certification_request::X509CertificationRequest::from_der(csr_der) {
        Ok((rest, csr)) => rest.is_empty() && csr.verify_signature().is_ok(),
        Err(_) => false,
    }
}

/// The ticket's account if it is unexpired and unused (BI-13: one generic 401 otherwise).
async fn ticket_account(state: &AppState, ticket: &[u8]) -> Result<String, ApiError> {
    if ticket.len() != 32 {
        // BI-13: same answer as an unknown ticket.
        return Err(ApiError::unauthorized(
            "enrollment ticket has the wrong length",
        ));
    }
    Ok(state.store.ticket_account(sha256(ticket), now_ms()).await?)
}

pub(super) async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: EnrollRequest = read_small(&headers, body, "enroll request").await?;
    // 1. The ticket, before anything else (nothing is issued for an unusable ticket).
    let account = ticket_account(&state, &req.ticket).await?;
    if !valid_name(&req.name) {
        return Err(ApiError::bad_request("invalid device name"));
    }
    let sign_pk = VerifyingKey::from_bytes(&req.sign_pk)
        .map_err(|_| ApiError::bad_request("invalid signing key"))?;
    let kx_pk = KxPublicKey::from_bytes(&req.kx_pk)
        .map_err(|_| ApiError::bad_request("invalid key-exchange key"))?;
    let device_id = DeviceId(sealsync_crypto::device_id(&sign_pk));
    // 2. Proof of possession: the signing key signed the whole request, and the CSR is
    //    signed by its own key.
    if !verify_enroll_request(&sign_pk, &req) {
        return Err(ApiError::bad_request(
            "enrollment proof of possession does not verify",
        ));
    }
    let csr = req.csr_der.clone();
    if !tokio::task::spawn_blocking(move || csr_self_signed(&csr))
        .await
        .map_err(|e| ApiError::internal(format!("CSR check task failed: {e}")))?
    {
        return Err(ApiError::bad_request(
            "certificate request signature invalid",
        ));
    }
    // 3. No silent new account (MS-09): the device says whether it founds the account, and
    //    a mismatch is refused before the ticket is spent.
    let has_roster = !state.store.roster(account.clone(), 0).await?.is_empty();
    if has_roster == req.new_account {
        return Err(ApiError::conflict(if has_roster {
            "new account requested but the account has devices"
        } else {
            "existing account expected but the account has no devices"
        }));
    }

    // 4. The certificate, then one transaction that spends the ticket and adds the device.
    let ca = std::sync::Arc::clone(&state.ca);
    let csr = req.csr_der;
    let cn = device_id.to_string();
    let cert_der = tokio::task::spawn_blocking(move || ca.issue_device_cert(&csr, &cn))
        .await
        .map_err(|e| ApiError::internal(format!("certificate task failed: {e}")))?
        .map_err(|e| ApiError::bad_request(format!("certificate request refused: {e}")))?;

    let now = now_ms();
    let device = NewDevice {
        device_id,
        name: req.name,
        sign_pk: sign_pk.to_bytes(),
        kx_pk: kx_pk.to_bytes(),
        cert_fp: sha256(&cert_der),
        enrolled_ms: now,
        founds_account: req.new_account,
    };
    let account = state.store.enroll(sha256(&req.ticket), now, device).await?;
    let rows = state.store.roster(account.clone(), 0).await?;
    tracing::info!(device = %device_id, account = %account, "device enrolled");
    Ok(proto(&EnrollResponse {
        device_id: device_id.0.to_vec(),
        account,
        cert_der,
        ca_der: state.ca.ca_der().to_vec(),
        roster: decode_entries(&rows)?,
        server_time_ms: now,
    }))
}

/// `POST /v1/enroll/preview`: the account and its genesis for a valid ticket, which stays
/// unspent (a device joining by recovery checks its secret against the genesis first).
pub(super) async fn preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: EnrollPreviewRequest = read_small(&headers, body, "enroll preview").await?;
    let account = ticket_account(&state, &req.ticket).await?;
    let rows = state.store.roster(account.clone(), 0).await?;
    let genesis = decode_entries(rows.get(..1).unwrap_or_default())?;
    Ok(proto(&EnrollPreview {
        account,
        roster: genesis,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_printable() {
        // BI-10
        assert!(valid_name("alice-laptop"));
        assert!(valid_name("Ålice's phone ☎"));
        assert!(!valid_name(""));
        assert!(!valid_name("a\nb"));
        assert!(!valid_name("nul\0"));
        assert!(!valid_name(&"x".repeat(MAX_NAME_BYTES + 1)));
        assert!(valid_name(&"x".repeat(MAX_NAME_BYTES)));
    }
}
