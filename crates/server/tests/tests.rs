//! Integration tests of `sealsync-server`: a real server on loopback with real TLS and a
//! real SQLite file (one test binary; modules by concept).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod admin;
mod api;
mod enroll;
mod kit;
mod pairing;
mod tls;
mod watch;
