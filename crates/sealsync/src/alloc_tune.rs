//! Start-up tuning of glibc's allocator for the `sealsync` process, in safe code.
//!
//! glibc serves blocks above its mmap threshold (128 KiB at start) with fresh mappings and
//! returns them on free. It raises that threshold, and the heap trim threshold to twice it,
//! when a mapped block of at most 32 MiB is freed. Sync moves multi-MiB buffers (8 MiB push
//! requests, sealed batches, pull pages); without a raised threshold each is mapped,
//! page-faulted in and unmapped again. Argon2id at the default 64 MiB (enrollment, a
//! passphrase-protected key store) is too large to raise it, while the older 19 MiB default
//! did: measured with `sealsync bench`, page faults per synced record went from 0.7 to 1.8.
//!
//! So the process frees one 20 MiB mapped block at start (never touched, so no page is
//! faulted in): the thresholds become 20 MiB and 40 MiB, as the old default left them. Two
//! system calls; with another allocator it is a harmless allocation.

/// Size of the block freed at start: above every transient sync buffer, under glibc's
/// 32 MiB ceiling for the dynamic threshold.
const WARM_BLOCK_BYTES: usize = 20 * 1024 * 1024;

/// Raises glibc's dynamic mmap and trim thresholds (see the module documentation).
pub(crate) fn tune() {
    let block: Vec<u8> = Vec::with_capacity(WARM_BLOCK_BYTES);
    // Keep the compiler from eliding the allocation: the point is the free.
    drop(std::hint::black_box(block));
}
