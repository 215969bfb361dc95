//! End-to-end tests of Sealsync: a real server on loopback (TLS 1.3, mutual TLS, SQLite
//! files in a temporary directory) driven by real devices, raw protocol clients and the
//! `sealsync` binary itself. No mocked transport anywhere.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod cli;
mod cli_kit;
mod cli_query;
mod cli_ux;
mod cli_watch;
mod clock;
mod crash;
mod e2e;
mod flood;
mod handles;
mod kit;
mod pairing;
mod pairing_done;
mod queries;
mod refusals;
mod restored_home;
mod rollback;
mod server_cli;
mod tampering;
mod ux;
