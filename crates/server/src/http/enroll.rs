//! `POST /v1/enroll`: a device redeems a one-time ticket for a client certificate.
//!
//! Served only on `sealsync-enroll` connections (no client certificate). The request's keys
//! are validated (BI-06, BI-20), the device id is recomputed from `sign_pk` (the device
//! cannot choose it), a certificate is issued from the CSR, and then one storage
//! transaction consumes the ticket and inserts the device (single use, BI-13). Any ticket
//! problem is one generic 401.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use sealsync_core::DeviceId;
use sealsync_crypto::{KxPublicKey, VerifyingKey};
use sealsync_proto::{EnrollRequest, EnrollResponse, SignedRosterEntry};

use super::{ApiError, AppState, proto, read_small};
use crate::datadir::now_ms;
use crate::pki::sha256;
use crate::store::NewDevice;

/// Longest device name accepted, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 128;

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

pub(super) async fn enroll(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let req: EnrollRequest = read_small(&headers, body, "enroll request").await?;
    if req.ticket.len() != 32 {
        // BI-13: same answer as an unknown ticket.
        return Err(ApiError::unauthorized(
            "enrollment ticket has the wrong length",
        ));
    }
    if !valid_name(&req.name) {
        return Err(ApiError::bad_request("invalid device name"));
    }
    let sign_pk = VerifyingKey::from_bytes(&req.sign_pk)
        .map_err(|_| ApiError::bad_request("invalid signing key"))?;
    let kx_pk = KxPublicKey::from_bytes(&req.kx_pk)
        .map_err(|_| ApiError::bad_request("invalid key-exchange key"))?;
    let device_id = DeviceId(sealsync_crypto::device_id(&sign_pk));

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
