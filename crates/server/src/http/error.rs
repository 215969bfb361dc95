//! Error responses: a generic `ErrorResponse { code, error_id, message }` for the client, the
//! details in the server log under the same fresh random `error_id`.
//!
//! Details are written by the handlers and name the failed check only; they never contain
//! payloads, tickets, keys or record data. Each line is written inside the connection's span,
//! which names the peer address and, on mutual TLS, the device id. Refusals (4xx) are
//! something any peer can cause at will, so their lines are rate limited: at most
//! [`REFUSAL_LOG_BURST`] per second, the next line written counting the ones dropped
//! (`suppressed`). Server faults (5xx) are always written.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use sealsync_proto::ErrorResponse;

use crate::lograte::LogLimit;
use crate::store::StoreError;

/// Refusal lines written per second at most.
pub(crate) const REFUSAL_LOG_BURST: u32 = 20;

/// The limit of refusal lines.
static REFUSAL_LOG: LogLimit = LogLimit::new(REFUSAL_LOG_BURST, std::time::Duration::from_secs(1));

/// A refused or failed request.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Cow<'static, str>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
        }
    }

    /// 400: malformed or invalid input.
    pub(crate) fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// 400 with code `clock_ahead`: a batch's `hlc_max` is beyond the drift bound (CD-08).
    pub(crate) fn clock_ahead(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "clock_ahead", detail)
    }

    /// 401: no valid credential (unknown device, certificate not the one issued, bad ticket).
    pub(crate) fn unauthorized(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 403: authenticated, but not allowed (inactive device, not a roster member, another
    /// account's or device's data).
    pub(crate) fn forbidden(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    /// 404: no such resource (for this caller).
    pub(crate) fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 405: the path exists but not with this method.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        )
    }

    /// 408: the request body did not arrive in time.
    pub(crate) fn timeout(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "timeout", detail)
    }

    /// 409: conflicts with stored state (chain gap or fork, roster not extended, exists).
    pub(crate) fn conflict(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// 413: the body is above the endpoint's limit (BI-01).
    pub(crate) fn too_large(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", detail)
    }

    /// 503: the server is at a capacity limit; retry later.
    pub(crate) fn busy(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", detail)
    }

    /// 500: a server fault.
    pub(crate) fn internal(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// The HTTP status.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    fn message(&self) -> &'static str {
        match self.code {
            "bad_request" => "the request is malformed or invalid",
            "clock_ahead" => "the batch clock is too far ahead of the server clock",
            "unauthorized" => "authentication failed",
            "forbidden" => "not allowed",
            "not_found" => "not found",
            "method_not_allowed" => "method not allowed",
            "timeout" => "the request timed out",
            "conflict" => "the request conflicts with stored state",
            "too_large" => "the request is too large",
            "busy" => "the server is busy; retry later",
            _ => "internal error",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TicketInvalid => {
                ApiError::unauthorized("enrollment ticket unknown, expired or used")
            }
            StoreError::DeviceExists => ApiError::conflict("device already enrolled"),
            StoreError::Conflict(what) => ApiError::conflict(what),
            StoreError::Chain { index, check } => {
                ApiError::conflict(format!("batch {index}: chain check {check:?}"))
            }
            other => ApiError::internal(format!("storage: {other}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error_id = uuid::Uuid::new_v4().simple().to_string();
        if self.status.is_server_error() {
            tracing::error!(error_id = %error_id, status = self.status.as_u16(), code = self.code, detail = %self.detail, "request failed");
        } else if let Some(suppressed) = REFUSAL_LOG.allow() {
            tracing::warn!(error_id = %error_id, status = self.status.as_u16(), code = self.code, detail = %self.detail, suppressed, "request refused");
        }
        let body = ErrorResponse {
            code: self.code.to_string(),
            error_id,
            message: self.message().to_string(),
        };
        (
            self.status,
            [(http::header::CONTENT_TYPE, sealsync_proto::CONTENT_TYPE)],
            sealsync_proto::encode(&body),
        )
            .into_response()
    }
}
