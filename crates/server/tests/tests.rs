//! Integration tests of `sealsync-server`: a real server on loopback with real TLS and a
//! real SQLite file (one test binary; modules by concept).

mod admin;
mod api;
mod enroll;
mod kit;
mod tls;
