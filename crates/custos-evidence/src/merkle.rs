//! RFC 6962 (and RFC 9162 §2.1) Merkle trees over the audit log's event digests.
//!
//! A leaf is one event's digest (the 32 bytes `audit verify` checks); its hash is
//! `SHA-256(0x00 || digest)`, an inner node's `SHA-256(0x01 || left || right)`, and the tree of
//! `n` leaves splits at the largest power of two below `n`. The empty tree's root is
//! `SHA-256("")`. Proofs are the audit paths of RFC 6962 §2.1.1 and §2.1.2, checked with the
//! algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.

use std::ops::Range;

use sha2::{Digest as _, Sha256};

/// A node or root hash.
pub type Hash = [u8; 32];

/// The hash of leaf `digest`.
pub fn leaf_hash(digest: &[u8; 32]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(digest);
    h.finalize().into()
}

fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split_u64(n: u64) -> u64 {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// [`split_u64`] for a slice's length.
fn split(n: usize) -> usize {
    split_u64(n as u64) as usize
}

/// The root of the tree over `leaves` (leaf hashes, in order): MTH of RFC 6962.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            let (left, right) = leaves.split_at(k);
            node(&root(left), &root(right))
        }
    }
}

/// The audit path of leaf `index` in the tree over `leaves`, leaf side first; `None` when
/// `index` is not a leaf.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    let size = u64::try_from(leaves.len()).ok()?;
    let ranges = inclusion_ranges(u64::try_from(index).ok()?, size)?;
    roots_of(leaves, &ranges)
}

/// The leaf ranges whose subtree roots make the audit path of leaf `index` in a tree of `size`
/// leaves, in proof order; `None` when `index` is not a leaf. A prover streams the leaves once
/// through a [`RangeRoots`] over them, holding O(log n) hashes instead of the whole tree.
pub fn inclusion_ranges(index: u64, size: u64) -> Option<Vec<Range<u64>>> {
    if index >= size {
        return None;
    }
    let mut ranges = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    // Walk down from the root, then emit leaf side first.
    while hi - lo > 1 {
        let k = split_u64(hi - lo);
        if index - lo < k {
            ranges.push(lo + k..hi);
            hi = lo + k;
        } else {
            ranges.push(lo..lo + k);
            lo += k;
        }
    }
    ranges.reverse();
    Some(ranges)
}

/// Whether `path` proves leaf hash `leaf` at `index` in the tree of `size` leaves whose root is
/// `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, path: &[Hash], root: &Hash) -> bool {
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
            r = node(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// The consistency proof between the first `old` leaves and all of `leaves` (RFC 6962
/// §2.1.2); `None` unless `0 < old <= leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], old: usize) -> Option<Vec<Hash>> {
    let ranges = consistency_ranges(u64::try_from(old).ok()?, u64::try_from(leaves.len()).ok()?)?;
    roots_of(leaves, &ranges)
}

/// The leaf ranges whose subtree roots make the consistency proof between trees of `old` and
/// `new` leaves, in proof order (RFC 6962 §2.1.2 SUBPROOF); `None` unless `0 < old <= new`.
pub fn consistency_ranges(old: u64, new: u64) -> Option<Vec<Range<u64>>> {
    if old == 0 || old > new {
        return None;
    }
    let mut ranges = Vec::new();
    let (mut m, mut lo, mut hi, mut whole) = (old, 0u64, new, true);
    while m != hi - lo {
        let k = split_u64(hi - lo);
        if m <= k {
            ranges.push(lo + k..hi);
            hi = lo + k;
        } else {
            ranges.push(lo..lo + k);
            m -= k;
            lo += k;
            whole = false;
        }
    }
    if !whole {
        ranges.push(lo..hi);
    }
    ranges.reverse();
    Some(ranges)
}

/// The roots of `ranges` of `leaves`, in the ranges' order; `None` when one is out of bounds.
fn roots_of(leaves: &[Hash], ranges: &[Range<u64>]) -> Option<Vec<Hash>> {
    ranges
        .iter()
        .map(|r| {
            let (lo, hi) = (usize::try_from(r.start).ok()?, usize::try_from(r.end).ok()?);
            leaves.get(lo..hi).map(root)
        })
        .collect()
}

/// The roots of disjoint leaf ranges, computed from the leaves streamed in order: memory is one
/// [`Frontier`] and one hash a range, whatever the tree's size.
#[derive(Debug)]
pub struct RangeRoots {
    /// (range, its place in the caller's order), sorted by start.
    sorted: Vec<(Range<u64>, usize)>,
    roots: Vec<Option<Hash>>,
    next: usize,
    current: Frontier,
    seen: u64,
}

impl RangeRoots {
    /// `ranges` must not overlap (those of [`inclusion_ranges`] and [`consistency_ranges`] do not).
    pub fn new(ranges: &[Range<u64>]) -> Self {
        let mut sorted: Vec<(Range<u64>, usize)> = ranges.iter().cloned().zip(0..).collect();
        sorted.sort_by_key(|(r, _)| r.start);
        Self { roots: vec![None; sorted.len()], sorted, next: 0, current: Frontier::new(), seen: 0 }
    }

    /// Takes the next leaf hash of the tree (leaf `seen`, counting from 0).
    pub fn push(&mut self, leaf: Hash) {
        let at = self.seen;
        self.seen += 1;
        let Some((range, place)) = self.sorted.get(self.next) else { return };
        if !range.contains(&at) {
            return;
        }
        self.current.push(leaf);
        if at + 1 == range.end {
            if let Some(slot) = self.roots.get_mut(*place) {
                *slot = Some(self.current.root());
            }
            self.current = Frontier::new();
            self.next += 1;
        }
    }

    /// Leaves pushed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The roots in the order the ranges were given; `None` when a range was not streamed whole.
    pub fn finish(self) -> Option<Vec<Hash>> {
        self.roots.into_iter().collect()
    }
}

/// Whether `proof` shows the tree of `old` leaves with root `old_root` is a prefix of the tree
/// of `new` leaves with root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node(c, &f_r);
            s_r = node(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && f_r == *old_root && s_r == *new_root
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest first. Appending
/// and the root cost O(log n) and it holds at most 64 hashes, so a gateway keeps one for a log
/// of any length.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, root of a perfect subtree of 2^height leaves), heights strictly decreasing.
    peaks: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leaves it holds.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends leaf hash `leaf`.
    pub fn push(&mut self, leaf: Hash) {
        let mut carry = (0u32, leaf);
        while let Some(&(height, left)) = self.peaks.last() {
            if height != carry.0 {
                break;
            }
            self.peaks.pop();
            carry = (height + 1, node(&left, &carry.1));
        }
        self.peaks.push(carry);
        self.size += 1;
    }

    /// The root of the tree so far: the peaks folded from the right (RFC 6962's split at the
    /// largest power of two is exactly the largest peak).
    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(&(_, last)) = peaks.next() else { return Sha256::digest([]).into() };
        peaks.fold(last, |right, (_, left)| node(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&Sha256::digest(i.to_be_bytes()).into())).collect()
    }

    #[test]
    fn the_empty_and_small_trees_are_rfc_6962s() {
        assert_eq!(hex::encode(root(&[])), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        let l = leaves(3);
        assert_eq!(root(&l[..1]), l[0]);
        assert_eq!(root(&l), node(&node(&l[0], &l[1]), &l[2]), "three leaves split 2 + 1");
        // The leaf prefix keeps a leaf from passing for an inner node.
        let plain: Hash = Sha256::digest([0u8; 32]).into();
        assert_ne!(leaf_hash(&[0; 32]), plain);
    }

    #[test]
    fn the_frontier_has_the_trees_root_at_every_size() {
        let l = leaves(300);
        let mut f = Frontier::new();
        assert_eq!(f.root(), root(&[]));
        for (n, leaf) in l.iter().enumerate() {
            f.push(*leaf);
            assert_eq!((f.size(), f.root()), (n as u64 + 1, root(&l[..=n])), "size {}", n + 1);
            assert!(f.peaks.len() <= 9);
        }
    }

    proptest! {
        #[test]
        fn every_leaf_is_proved_and_no_other(n in 1usize..70, pick in 0usize..70) {
            let l = leaves(n);
            let r = root(&l);
            let i = pick % n;
            let path = inclusion_proof(&l, i).unwrap();
            prop_assert!(verify_inclusion(&l[i], i as u64, n as u64, &path, &r));
            let other = (i + 1) % n;
            if other != i {
                prop_assert!(!verify_inclusion(&l[other], i as u64, n as u64, &path, &r));
            }
            prop_assert!(!verify_inclusion(&l[i], n as u64, n as u64, &path, &r), "an index past the tree");
            if let Some((first, _)) = path.split_first() {
                let mut bent = path.clone();
                bent[0] = node(first, first);
                prop_assert!(!verify_inclusion(&l[i], i as u64, n as u64, &bent, &r));
            }
        }

        #[test]
        fn a_prefix_is_consistent_and_a_rewritten_one_is_not(n in 1usize..70, m in 1usize..70) {
            let l = leaves(n);
            let m = (m % n) + 1;
            let proof = consistency_proof(&l, m).unwrap();
            prop_assert!(verify_consistency(m as u64, n as u64, &root(&l[..m]), &root(&l), &proof));
            // The old tree's last leaf rewritten: the old root no longer follows.
            let mut rewritten = l.clone();
            rewritten[m - 1] = leaf_hash(&[7; 32]);
            prop_assert!(!verify_consistency(m as u64, n as u64, &root(&rewritten[..m]), &root(&l), &proof));
            if m < n {
                // Truncated to m and grown again differently: not the same history.
                let mut other = l[..m].to_vec();
                other.extend(leaves(n + 5)[m + 5..].iter().take(n - m));
                prop_assert!(!verify_consistency(m as u64, n as u64, &root(&l[..m]), &root(&other), &proof));
            }
        }

        #[test]
        fn streamed_range_roots_are_the_proofs(n in 1usize..70, pick in 0usize..70) {
            let l = leaves(n);
            let i = pick % n;
            let (size, at) = (n as u64, i as u64);
            let inclusion = inclusion_ranges(at, size).unwrap();
            let consistency = consistency_ranges(at + 1, size).unwrap();
            let (mut a, mut b) = (RangeRoots::new(&inclusion), RangeRoots::new(&consistency));
            for leaf in &l {
                a.push(*leaf);
                b.push(*leaf);
            }
            prop_assert_eq!(a.finish().unwrap(), inclusion_proof(&l, i).unwrap());
            prop_assert_eq!(b.finish().unwrap(), consistency_proof(&l, i + 1).unwrap());
            // A stream that stops short of a range's end leaves it open: no proof (the last leaf
            // is in some range unless it is the proved leaf itself).
            let mut short = RangeRoots::new(&inclusion);
            for leaf in &l[..n - 1] {
                short.push(*leaf);
            }
            prop_assert!(i == n - 1 || short.finish().is_none());
        }
    }
}
