//! Integration tests of `sealsync-server` over real TLS on loopback (one test binary).
