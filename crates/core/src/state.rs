//! State hashes: one leaf per record, an RFC 9162 Merkle tree hash per collection, and a
//! combined root over collections.
//!
//! Two replicas with the same versions compute the same root whatever order the versions
//! arrived in (CF-12); tests and devices compare these roots (MS-27, MS-32).

use sealsync_crypto::{lp, sha256, sha256_parts};

use crate::merge::{Resolved, Version, resolve};
use crate::policy::Policy;

/// `H(0x00 || lp(key) || deleted byte || lp(value) || heads...)`, the record's leaf hash
/// (the `0x00` prefix is RFC 9162's leaf domain separator; heads are 24 bytes each).
pub fn leaf_hash(key: &str, resolved: &Resolved) -> [u8; 32] {
    let mut buf = Vec::with_capacity(
        1 + 4 + key.len() + 1 + 4 + resolved.value.len() + 24 * resolved.heads.len(),
    );
    buf.push(0x00);
    lp(&mut buf, key.as_bytes());
    buf.push(u8::from(resolved.deleted));
    lp(&mut buf, &resolved.value);
    for h in &resolved.heads {
        buf.extend_from_slice(&h.0);
    }
    sha256(&buf)
}

/// RFC 9162 §2.1.1 Merkle tree hash over leaf hashes given in key order: the empty tree is
/// `H("")`, one leaf is itself, and `n > 1` leaves split at the largest power of two `k < n`
/// into `H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`.
pub fn state_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => sha256(b""),
        [one] => *one,
        _ => {
            let k = split_point(leaves.len());
            let (left, right) = leaves.split_at(k);
            sha256_parts(&[&[0x01], &state_root(left), &state_root(right)])
        }
    }
}

/// Largest power of two strictly less than `n` (`n >= 2`).
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// Root over several collections: [`state_root`] of `H(lp(name) || root)`, in name order
/// (the input is sorted here, so its order does not matter).
pub fn combined_root(collections: &[(String, [u8; 32])]) -> [u8; 32] {
    let mut sorted: Vec<&(String, [u8; 32])> = collections.iter().collect();
    sorted.sort();
    let leaves: Vec<[u8; 32]> = sorted
        .into_iter()
        .map(|(name, root)| {
            let mut buf = Vec::with_capacity(4 + name.len() + 32);
            lp(&mut buf, name.as_bytes());
            buf.extend_from_slice(root);
            sha256(&buf)
        })
        .collect();
    state_root(&leaves)
}

/// Convenience: resolves every record (tombstones included, so a hidden delete changes the
/// root: MS-27) and returns the collection's [`state_root`]. Records may come in any order;
/// records with no versions are skipped.
pub fn collection_root<'a, I>(policy: Policy, records: I) -> [u8; 32]
where
    I: IntoIterator<Item = (&'a str, &'a [Version])>,
{
    let mut resolved: Vec<(&str, Resolved)> = records
        .into_iter()
        .filter_map(|(k, vs)| resolve(policy, vs).map(|r| (k, r)))
        .collect();
    resolved.sort_by(|a, b| a.0.cmp(b.0));
    resolved.dedup_by(|later, kept| later.0 == kept.0);
    let leaves: Vec<[u8; 32]> = resolved.iter().map(|(k, r)| leaf_hash(k, r)).collect();
    state_root(&leaves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Hlc;
    use crate::ids::{DeviceId, VersionId};

    fn leaf(i: u8) -> [u8; 32] {
        // Leaf hashes per RFC 9162: H(0x00 || data).
        sha256(&[0x00, i])
    }

    fn node(l: [u8; 32], r: [u8; 32]) -> [u8; 32] {
        let mut buf = vec![0x01];
        buf.extend_from_slice(&l);
        buf.extend_from_slice(&r);
        sha256(&buf)
    }

    #[test]
    fn empty_tree_is_hash_of_empty_string() {
        assert_eq!(
            hex::encode(state_root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn small_trees_match_the_definition() {
        let l: Vec<[u8; 32]> = (0..7).map(leaf).collect();
        assert_eq!(state_root(&l[..1]), l[0]);
        assert_eq!(state_root(&l[..2]), node(l[0], l[1]));
        // 3 leaves: k = 2 -> (0 1) 2
        assert_eq!(state_root(&l[..3]), node(node(l[0], l[1]), l[2]));
        // 7 leaves: k = 4 -> ((0 1)(2 3)) ((4 5) 6)
        let left = node(node(l[0], l[1]), node(l[2], l[3]));
        let right = node(node(l[4], l[5]), l[6]);
        assert_eq!(state_root(&l), node(left, right));
    }

    #[test]
    fn rfc9162_reference_vectors() {
        // The RFC 6962 / 9162 reference test data (certificate-transparency testdata): leaf
        // inputs and the tree heads of the first 1..=8 leaves.
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        let roots = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves: Vec<[u8; 32]> = inputs.iter().map(|d| sha256_parts(&[&[0x00], d])).collect();
        for (n, root) in roots.iter().enumerate() {
            assert_eq!(
                hex::encode(state_root(&leaves[..=n])),
                *root,
                "{} leaves",
                n + 1
            );
        }
    }

    #[test]
    fn split_points() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
    }

    #[test]
    fn leaf_hash_binds_every_field() {
        let id = VersionId::new(Hlc(1), DeviceId([1; 16]));
        let r = Resolved {
            deleted: false,
            value: b"v".to_vec(),
            winner: id,
            heads: vec![id],
        };
        let base = leaf_hash("k", &r);
        assert_ne!(base, leaf_hash("k2", &r));
        assert_ne!(
            base,
            leaf_hash(
                "k",
                &Resolved {
                    value: b"w".to_vec(),
                    ..r.clone()
                }
            )
        );
        assert_ne!(
            base,
            leaf_hash(
                "k",
                &Resolved {
                    deleted: true,
                    ..r.clone()
                }
            )
        );
        let id2 = VersionId::new(Hlc(2), DeviceId([1; 16]));
        assert_ne!(
            base,
            leaf_hash(
                "k",
                &Resolved {
                    heads: vec![id, id2],
                    ..r.clone()
                }
            )
        );
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        let a = leaf_hash(
            "ab",
            &Resolved {
                value: b"c".to_vec(),
                ..r.clone()
            },
        );
        let b = leaf_hash(
            "a",
            &Resolved {
                value: b"bc".to_vec(),
                ..r
            },
        );
        assert_ne!(a, b);
    }

    #[test]
    fn combined_root_is_order_independent() {
        let a = ("a".to_owned(), [1u8; 32]);
        let b = ("b".to_owned(), [2u8; 32]);
        assert_eq!(
            combined_root(&[a.clone(), b.clone()]),
            combined_root(&[b.clone(), a.clone()])
        );
        assert_ne!(
            combined_root(&[a.clone(), b]),
            combined_root(std::slice::from_ref(&a))
        );
        assert_eq!(combined_root(&[]), state_root(&[]));
    }

    #[test]
    fn collection_root_includes_tombstones() {
        let id = VersionId::new(Hlc(1), DeviceId([1; 16]));
        let live = [Version {
            id,
            deleted: false,
            value: b"v".to_vec(),
            supersedes: vec![],
        }];
        let gone = [Version {
            id,
            deleted: true,
            value: vec![],
            supersedes: vec![],
        }];
        let r1 = collection_root(Policy::Lww, [("k", &live[..])]);
        let r2 = collection_root(Policy::Lww, [("k", &gone[..])]);
        let r3 = collection_root(Policy::Lww, std::iter::empty());
        assert_ne!(r1, r2);
        assert_ne!(r2, r3);
        assert_eq!(r3, state_root(&[]));
    }
}
