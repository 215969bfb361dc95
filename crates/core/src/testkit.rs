//! Test-only in-memory model of devices and replicas.
