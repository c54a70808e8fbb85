//! RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing and proofs:
//! leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right),
//! the left subtree of `n` leaves holds the largest power of two `< n`.

use sha2::{Digest, Sha256};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// Hash of one log entry's data.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Incremental root computation: push leaf hashes in order, read the root
/// of the tree so far at any time (O(log n) memory).
#[derive(Debug, Clone, Default)]
pub struct RootBuilder {
    /// Perfect subtrees, largest first: (leaf count, hash).
    stack: Vec<(u64, Hash)>,
    size: u64,
}

impl RootBuilder {
    /// Append one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut cur = (1u64, leaf);
        while let Some(&(n, h)) = self.stack.last() {
            if n != cur.0 {
                break;
            }
            self.stack.pop();
            cur = (n * 2, node_hash(&h, &cur.1));
        }
        self.stack.push(cur);
        self.size += 1;
    }

    /// Leaves so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root of the tree of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return empty_root();
        };
        for (_, left) in it {
            h = node_hash(left, &h);
        }
        h
    }
}

/// Root of `leaves` (RFC 9162 MTH).
pub fn root(leaves: &[Hash]) -> Hash {
    let mut b = RootBuilder::default();
    leaves.iter().for_each(|l| b.push(*l));
    b.root()
}

fn split(n: usize) -> usize {
    // Largest power of two strictly less than n (n >= 2).
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn subtree(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&subtree(&leaves[..k]), &subtree(&leaves[k..]))
        }
    }
}

/// Inclusion proof PATH(m, D\[n\]) for leaf `index` in the tree of `leaves`.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, m) = (0usize, leaves.len(), index);
    let mut rev = Vec::new();
    while hi - lo > 1 {
        let k = split(hi - lo);
        if m - lo < k {
            rev.push(subtree(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            rev.push(subtree(&leaves[lo..lo + k]));
            lo += k;
        }
    }
    // The path lists siblings from the leaf upwards.
    while let Some(h) = rev.pop() {
        path.push(h);
    }
    Some(path)
}

/// RFC 9162 §2.1.3.2: does `path` prove leaf `leaf` at `index` in a tree
/// of `size` leaves with root `root`?
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && &r == root
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(subtree(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(subtree(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(subtree(&leaves[..k]));
    }
}

/// Consistency proof PROOF(m, D\[n\]) between the first `old` leaves and all
/// of `leaves`.
pub fn consistency_proof(old: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if old == 0 || old > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    if old < leaves.len() {
        subproof(old, leaves, true, &mut out);
    }
    Some(out)
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `old` leaves with
/// root `old_root` is a prefix of the tree of `new` leaves with `new_root`?
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    &fr == old_root && &sr == new_root && s_n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn known_roots() {
        // Empty tree and one leaf per RFC 9162; two leaves by definition.
        assert_eq!(
            crate::canonical::hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            crate::canonical::hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let l = leaves(3);
        assert_eq!(root(&l), node_hash(&node_hash(&l[0], &l[1]), &l[2]));
        assert_eq!(root(&l[..1]), l[0]);
    }

    #[test]
    fn proof_sizes_are_logarithmic() {
        let l = leaves(100_000);
        let p = inclusion_proof(54_321, &l).unwrap();
        assert!(p.len() <= 17, "{}", p.len());
        let c = consistency_proof(70_000, &l).unwrap();
        assert!(c.len() <= 2 * 17, "{}", c.len());
    }

    proptest! {
        #[test]
        fn builder_matches_recursive_definition(n in 0usize..300) {
            let l = leaves(n);
            prop_assert_eq!(root(&l), subtree(&l));
        }

        #[test]
        fn inclusion_proofs_verify_and_tampered_twins_fail(n in 1usize..200, i in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
            let l = leaves(n);
            let m = i.index(n);
            let r = root(&l);
            let p = inclusion_proof(m, &l).unwrap();
            prop_assert!(verify_inclusion(m as u64, n as u64, &l[m], &p, &r));
            prop_assert!(!verify_inclusion(m as u64, n as u64, &leaf_hash(b"x"), &p, &r));
            if n > 1 {
                prop_assert!(!verify_inclusion(((m + 1) % n) as u64, n as u64, &l[m], &p, &r));
                let mut bad = p.clone();
                let j = flip.index(bad.len());
                bad[j][0] ^= 1;
                prop_assert!(!verify_inclusion(m as u64, n as u64, &l[m], &bad, &r));
                let mut short = p.clone();
                short.pop();
                prop_assert!(!verify_inclusion(m as u64, n as u64, &l[m], &short, &r));
            }
        }

        #[test]
        fn consistency_proofs_verify_and_tampered_twins_fail(n in 1usize..200, o in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
            let l = leaves(n);
            let m = o.index(n) + 1;
            let (r1, r2) = (root(&l[..m]), root(&l));
            let p = consistency_proof(m, &l).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &r1, &r2, &p));
            prop_assert!(!verify_consistency(m as u64, n as u64, &leaf_hash(b"x"), &r2, &p));
            if !p.is_empty() {
                let mut bad = p.clone();
                let j = flip.index(bad.len());
                bad[j][0] ^= 1;
                prop_assert!(!verify_consistency(m as u64, n as u64, &r1, &r2, &bad));
            }
            if m < n {
                // A rewritten history is not consistent.
                let mut other = l.clone();
                other[m - 1] = leaf_hash(b"edited");
                prop_assert!(!verify_consistency(m as u64, n as u64, &r1, &root(&other), &p));
            }
        }
    }
}
