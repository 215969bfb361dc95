//! `sealsync bench --workload merkle`: the cost of the RFC 9162 log structures a device and
//! the server will keep per collection (issue 7): extending a device's frontier leaf by
//! leaf, computing its root, and making and verifying inclusion and consistency proofs, on
//! a log of `--records` leaves (use 1000000 for issue 7's figures).

use std::io::Write as _;
use std::time::Instant;

use sealsync_core::merkle::{self, Frontier};

pub(crate) fn run(leaves: usize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let hashes: Vec<merkle::Hash> = (0..leaves as u64)
        .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
        .collect();
    let t = Instant::now();
    let mut f = Frontier::new();
    for h in &hashes {
        f.push(*h);
    }
    let push = t.elapsed();
    let t = Instant::now();
    let root = f.root();
    let root_time = t.elapsed();
    writeln!(out, "sealsync bench merkle: a log of {leaves} leaves")?;
    writeln!(
        out,
        "frontier push  : {:.1} ns per leaf ({:.3} s in all), {} nodes kept ({} bytes)",
        push.as_nanos() as f64 / leaves as f64,
        push.as_secs_f64(),
        f.nodes().len(),
        f.nodes().len() * 32
    )?;
    writeln!(
        out,
        "frontier root  : {:.1} us",
        root_time.as_nanos() as f64 / 1000.0
    )?;
    let old = (leaves / 2).max(1) as u64;
    let t = Instant::now();
    let proof = merkle::consistency_proof(old, &hashes).unwrap_or_default();
    let make = t.elapsed();
    let old_root = merkle::root(&hashes[..old as usize]);
    let t = Instant::now();
    let rounds = 1000u32;
    let mut ok = true;
    for _ in 0..rounds {
        ok &= merkle::verify_consistency(old, leaves as u64, &old_root, &root, &proof).is_ok();
    }
    let verify = t.elapsed() / rounds;
    writeln!(
        out,
        "consistency    : {old} -> {leaves}: {} hashes ({} bytes), made in {:.3} s from the leaves, verified in {:.1} us{}",
        proof.len(),
        proof.len() * 32,
        make.as_secs_f64(),
        verify.as_nanos() as f64 / 1000.0,
        if ok { "" } else { " (FAILED)" }
    )?;
    let index = (leaves as u64).saturating_sub(1) / 3;
    let inclusion = merkle::inclusion_proof(index, &hashes).unwrap_or_default();
    let t = Instant::now();
    let mut ok = true;
    for _ in 0..rounds {
        ok &= merkle::verify_inclusion(
            &hashes[index as usize],
            index,
            leaves as u64,
            &inclusion,
            &root,
        )
        .is_ok();
    }
    let verify = t.elapsed() / rounds;
    writeln!(
        out,
        "inclusion      : leaf {index}: {} hashes ({} bytes), verified in {:.1} us{}",
        inclusion.len(),
        inclusion.len() * 32,
        verify.as_nanos() as f64 / 1000.0,
        if ok { "" } else { " (FAILED)" }
    )?;
    Ok(())
}
