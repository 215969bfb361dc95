//! RFC 6962/9162 test vectors (the Certificate Transparency reference implementation's
//! eight leaves) and exhaustive checks of proofs over small trees, tampered proofs
//! included.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use super::*;

/// The reference implementation's leaf inputs.
fn inputs() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap())
    .collect()
}

/// Roots of the trees over the first 1 to 8 of those leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaves(n: usize) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

#[test]
fn roots_match_the_reference_vectors() {
    let ls: Vec<Hash> = inputs().iter().map(|d| leaf_hash(d)).collect();
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let mut f = Frontier::new();
    for (i, want) in ROOTS.iter().enumerate() {
        assert_eq!(hex::encode(root(&ls[..=i])), *want, "size {}", i + 1);
        f.push(ls[i]);
        assert_eq!(hex::encode(f.root()), *want, "frontier at size {}", i + 1);
    }
}

#[test]
fn the_frontier_equals_the_full_tree_and_round_trips() {
    let ls = leaves(300);
    let mut f = Frontier::new();
    assert_eq!(f.root(), empty_root());
    for i in 0..ls.len() {
        f.push(ls[i]);
        assert_eq!(f.size(), i as u64 + 1);
        assert_eq!(f.root(), root(&ls[..=i]), "size {}", i + 1);
        let back = Frontier::from_parts(f.size(), f.nodes().to_vec()).unwrap();
        assert_eq!(back, f);
    }
    assert_eq!(
        Frontier::from_parts(3, vec![[0; 32]]),
        Err(ProofError::Length)
    );
}

#[test]
fn every_inclusion_proof_verifies_and_no_tampered_one_does() {
    for n in 1..=40usize {
        let ls = leaves(n);
        let r = root(&ls);
        for m in 0..n {
            let proof = inclusion_proof(m as u64, &ls).unwrap();
            verify_inclusion(&ls[m], m as u64, n as u64, &proof, &r).unwrap();
            // Another leaf, another index, another size, another root: refused.
            let other = leaf_hash(b"not in the log");
            assert!(verify_inclusion(&other, m as u64, n as u64, &proof, &r).is_err());
            if n > 1 {
                let wrong = (m + 1) % n;
                assert!(verify_inclusion(&ls[m], wrong as u64, n as u64, &proof, &r).is_err());
            }
            // (The size alone is not bound by the hashes: the same path can fit a larger
            // tree with other leaves. The signed tree head binds size and root together.)
            assert!(verify_inclusion(&ls[m], m as u64, n as u64, &proof, &[7; 32]).is_err());
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][0] ^= 1;
                assert!(verify_inclusion(&ls[m], m as u64, n as u64, &bad, &r).is_err());
            }
            let mut longer = proof.clone();
            longer.push([0; 32]);
            assert_eq!(
                verify_inclusion(&ls[m], m as u64, n as u64, &longer, &r),
                Err(ProofError::Length)
            );
            if !proof.is_empty() {
                assert!(verify_inclusion(&ls[m], m as u64, n as u64, &proof[1..], &r).is_err());
            }
        }
        assert_eq!(inclusion_proof(n as u64, &ls), Err(ProofError::OutOfRange));
    }
}

#[test]
fn every_consistency_proof_verifies_and_no_tampered_one_does() {
    let all = leaves(40);
    for n in 1..=all.len() {
        let new = root(&all[..n]);
        for m in 0..=n {
            let old = root(&all[..m]);
            let proof = consistency_proof(m as u64, &all[..n]).unwrap();
            verify_consistency(m as u64, n as u64, &old, &new, &proof).unwrap();
            if m == 0 || m == n {
                assert!(proof.is_empty());
                continue;
            }
            // A fork: another old tree of the same size is not a prefix.
            assert!(verify_consistency(m as u64, n as u64, &[9; 32], &new, &proof).is_err());
            assert!(verify_consistency(m as u64, n as u64, &old, &[9; 32], &proof).is_err());
            // The proof for other sizes does not fit these (the new size alone is not bound
            // by the hashes, as for inclusion: the signed heads bind it).
            if m > 1 {
                assert!(verify_consistency(m as u64 - 1, n as u64, &old, &new, &proof).is_err());
            }
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][31] ^= 0x80;
                assert!(verify_consistency(m as u64, n as u64, &old, &new, &bad).is_err());
            }
            let mut longer = proof.clone();
            longer.push([0; 32]);
            assert!(verify_consistency(m as u64, n as u64, &old, &new, &longer).is_err());
            assert!(verify_consistency(m as u64, n as u64, &old, &new, &proof[1..]).is_err());
        }
    }
}

#[test]
fn sizes_out_of_order_are_refused() {
    let ls = leaves(8);
    let r = root(&ls);
    // MS-28: a smaller tree is never "consistent" with a larger one it claims to extend.
    assert_eq!(
        verify_consistency(8, 4, &r, &root(&ls[..4]), &[]),
        Err(ProofError::OutOfRange)
    );
    assert_eq!(consistency_proof(9, &ls), Err(ProofError::OutOfRange));
    assert_eq!(
        verify_consistency(5, 5, &r, &root(&ls[..5]), &[]),
        Err(ProofError::Mismatch)
    );
    assert_eq!(
        verify_consistency(0, 5, &empty_root(), &r, &[[0; 32]]),
        Err(ProofError::Length)
    );
    assert_eq!(
        verify_inclusion(&ls[0], 8, 8, &[], &r),
        Err(ProofError::OutOfRange)
    );
}
