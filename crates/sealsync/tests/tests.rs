//! End-to-end tests of Sealsync: a real server on loopback (TLS 1.3, mutual TLS, SQLite
//! files in a temporary directory) driven by real devices, raw protocol clients and the
//! `sealsync` binary itself. No mocked transport anywhere.

mod cli;
mod crash;
mod e2e;
mod kit;
mod refusals;
mod tampering;
