//! `POST /v1/watch`: the long poll of live updates. Any active device of the account may
//! watch (like pull: what it learns is that its account's ciphertext logs grew). The body
//! is bounded like every small endpoint's (BI-01); the watch itself is
//! [`crate::watch::watch`].

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use sealsync_proto::WatchRequest;

use super::{ApiError, AppState, Caller, proto, read_small};

pub(super) async fn watch(
    State(state): State<AppState>,
    Caller(me): Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: WatchRequest = read_small(&headers, body, "watch request").await?;
    let answer = crate::watch::watch(state.store.as_ref(), &state.watch, &me, request).await?;
    Ok(proto(&answer))
}
