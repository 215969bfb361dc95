//! Sealsync wire messages, version 1.
//!
//! The schema lives in `proto/sealsync.proto`; `generated.rs` is generated from it once by
//! `tools/protogen` (a pure-Rust protobuf compiler, so builds need no `protoc`) and committed.
//! This crate adds the bounded [`decode`] every receiver must use and the protocol constants
//! shared by client and server. It does no I/O.
#![forbid(unsafe_code)]

#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    missing_debug_implementations
)]
mod generated {
    include!("generated.rs");
}

pub use generated::*;
pub use prost::Message;

/// Content type of every request and response body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// ALPN protocol id of the enrollment listener mode: the server accepts a TLS handshake
/// without a client certificate only when the client offers this protocol, and then
/// serves nothing but `POST /v1/enroll`.
pub const ALPN_ENROLL: &[u8] = b"sealsync-enroll";

/// ALPN protocol id of the normal (mutual TLS) mode.
pub const ALPN_H2: &[u8] = b"h2";

/// Largest message any Sealsync endpoint decodes (16 MiB). Request bodies above it are
/// refused before they are buffered.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Most cursors one `WatchRequest` may name (`POST /v1/watch`); more are refused (400).
pub const MAX_WATCH_CURSORS: usize = 1024;

/// The wait of a `WatchRequest` whose `wait_ms` is 0.
pub const WATCH_WAIT_DEFAULT_MS: u32 = 25_000;

/// Shortest wait of a watch: a smaller `wait_ms` (other than 0) is raised to it.
pub const WATCH_WAIT_MIN_MS: u32 = 1_000;

/// Longest wait of a watch: a larger `wait_ms` is lowered to it.
pub const WATCH_WAIT_MAX_MS: u32 = 30_000;

/// Watches one device may have open at once; the server refuses one more (503 `busy`).
pub const MAX_WATCHES_PER_DEVICE: usize = 4;

/// The wait, in milliseconds, that the server applies to a `WatchRequest.wait_ms`:
/// [`WATCH_WAIT_DEFAULT_MS`] for 0, else clamped to
/// [`WATCH_WAIT_MIN_MS`]`..=`[`WATCH_WAIT_MAX_MS`].
pub fn watch_wait_ms(requested: u32) -> u32 {
    if requested == 0 {
        WATCH_WAIT_DEFAULT_MS
    } else {
        requested.clamp(WATCH_WAIT_MIN_MS, WATCH_WAIT_MAX_MS)
    }
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than the caller's limit.
    #[error("message of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Bytes offered.
        len: usize,
        /// Limit in force.
        limit: usize,
    },
    /// The bytes are not a valid protobuf encoding of the expected message.
    #[error("malformed message: {0}")]
    Malformed(#[from] prost::DecodeError),
}

/// Decodes `bytes` as `M`, refusing input larger than [`MAX_MESSAGE_BYTES`].
///
/// prost bounds recursion depth (100) and never allocates more than the input length for
/// a length-delimited field, so garbage input yields an error, never a panic.
pub fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, DecodeError> {
    decode_limited(bytes, MAX_MESSAGE_BYTES)
}

/// Like [`decode`], with an explicit size limit.
pub fn decode_limited<M: Message + Default>(bytes: &[u8], limit: usize) -> Result<M, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    Ok(M::decode(bytes)?)
}

/// Encodes `message` to a new buffer.
pub fn encode<M: Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}
