//! The normative sparse attention pattern (DESIGN.md, "The sparse pattern").
//!
//! For a query at position `i` of a sequence of `n`, the pattern names the key
//! positions it attends (local window, global tokens, log-stride look-back) and
//! the blocks whose landmark (mean key / mean value) it attends. Each position
//! and each block is named at most once. Enumeration is allocation-free.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::{KernelError, Result};

/// Configuration of the sparse pattern; see the module docs and DESIGN.md.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparsePattern {
    /// Local window half-width `W`: positions `[i−W, i]` (causal) or `[i−W, i+W]`.
    pub window: usize,
    /// Landmark block size `B` (> 0).
    pub block_size: usize,
    /// Global token positions every query may attend (out-of-range ones are ignored).
    pub global_tokens: Vec<usize>,
    /// Causal: a query never attends a later position.
    pub causal: bool,
    /// Log-stride look-back `i − 1, i − 2, i − 4, …` (and look-ahead when not causal).
    pub log_stride: bool,
    /// Block landmarks: attend the mean key/value of selected blocks.
    pub landmarks: bool,
}

impl Default for SparsePattern {
    /// The AETHER default: W 32, B 16, global token 0, causal, log-stride and landmarks on.
    fn default() -> Self {
        Self {
            window: 32,
            block_size: 16,
            global_tokens: vec![0],
            causal: true,
            log_stride: true,
            landmarks: true,
        }
    }
}

/// Powers of two `1, 2, 4, … < limit`, stopping before overflow.
fn strides(limit: usize) -> impl Iterator<Item = usize> {
    core::iter::successors(Some(1usize), |s| s.checked_mul(2)).take_while(move |&s| s < limit)
}

impl SparsePattern {
    /// Refuses a pattern the kernels cannot run (`block_size == 0`).
    pub fn validate(&self) -> Result<()> {
        if self.block_size == 0 {
            return Err(KernelError::BlockSizeZero);
        }
        Ok(())
    }

    /// Inclusive local-window range `(lo, hi)` of query `i` in a sequence of `n` (requires `i < n`).
    pub fn window_range(&self, i: usize, n: usize) -> (usize, usize) {
        let lo = i.saturating_sub(self.window);
        let hi = if self.causal {
            i
        } else {
            i.saturating_add(self.window).min(n - 1)
        };
        (lo, hi)
    }

    /// Whether global token `g` is attendable from query `i` in a sequence of `n`.
    fn global_ok(&self, g: usize, i: usize, n: usize) -> bool {
        g < n && (!self.causal || g <= i)
    }

    /// Calls `f(j)` for every key position query `i` attends directly, each once.
    ///
    /// Order: the local window ascending, then globals (list order), then log-stride
    /// positions by increasing stride (`i − s` before `i + s`). Nothing when `i >= n`.
    pub fn for_each_token(&self, i: usize, n: usize, mut f: impl FnMut(usize)) {
        if i >= n {
            return;
        }
        let (lo, hi) = self.window_range(i, n);
        for j in lo..=hi {
            f(j);
        }
        let in_window = |j: usize| j >= lo && j <= hi;
        for (gi, &g) in self.global_tokens.iter().enumerate() {
            if self.global_ok(g, i, n) && !in_window(g) && !self.global_tokens[..gi].contains(&g) {
                f(g);
            }
        }
        if self.log_stride {
            // `i − s` is in the window exactly when `s ≤ i − lo`, `i + s` when `s ≤ hi − i`.
            let (back, fwd) = (i - lo, hi - i);
            // Log-stride positions are < n (and <= i when causal), so a position is a
            // usable global exactly when it is in the list; outside `[gmin, gmax]` it is
            // not (one comparison for the usual globals [0], none to make for an empty list).
            let globals = &self.global_tokens[..];
            let gmin = globals.iter().copied().min().unwrap_or(usize::MAX);
            let gmax = globals.iter().copied().max().unwrap_or(0);
            let global = |j: usize| j >= gmin && j <= gmax && globals.contains(&j);
            for s in strides(n) {
                if self.causal && s > i {
                    break;
                }
                if s > back && s <= i && !global(i - s) {
                    f(i - s);
                }
                if !self.causal && s > fwd && i + s < n && !global(i + s) {
                    f(i + s);
                }
            }
        }
    }

    /// Calls `f(b)` for every block whose landmark query `i` attends, each once.
    ///
    /// Block `b` covers tokens `[b·B, min((b+1)·B, n))`. Nothing when landmarks are
    /// off, `block_size == 0` or `i >= n`.
    pub fn for_each_landmark(&self, i: usize, n: usize, mut f: impl FnMut(usize)) {
        let bs = self.block_size;
        if !self.landmarks || bs == 0 || i >= n {
            return;
        }
        let blocks = n.div_ceil(bs);
        let cur = i / bs;
        let avail = if self.causal { (i + 1) / bs } else { blocks };
        if avail == 0 {
            return;
        }
        let pivot = if self.causal {
            avail - 1
        } else {
            cur.min(blocks - 1)
        };
        let lo = pivot.saturating_sub(1);
        let hi = (pivot + 1).min(avail - 1);
        let skip = |b: usize| !self.causal && b == cur;
        for b in lo..=hi {
            if !skip(b) {
                f(b);
            }
        }
        if self.log_stride {
            let local = |b: usize| b >= lo && b <= hi;
            for s in strides(blocks) {
                if pivot >= s && !local(pivot - s) && !skip(pivot - s) {
                    f(pivot - s);
                }
                if !self.causal && pivot + s < blocks && !local(pivot + s) && !skip(pivot + s) {
                    f(pivot + s);
                }
            }
        }
    }

    /// The direct key positions of query `i` (allocating convenience over [`Self::for_each_token`]).
    pub fn token_candidates(&self, i: usize, n: usize) -> Vec<usize> {
        let mut out = Vec::new();
        self.for_each_token(i, n, |j| out.push(j));
        out
    }

    /// The landmark blocks of query `i` (allocating convenience over [`Self::for_each_landmark`]).
    pub fn landmark_candidates(&self, i: usize, n: usize) -> Vec<usize> {
        let mut out = Vec::new();
        self.for_each_landmark(i, n, |b| out.push(b));
        out
    }

    /// Number of candidates (tokens + landmarks) of query `i`.
    pub fn edges_at(&self, i: usize, n: usize) -> usize {
        let mut c = 0usize;
        self.for_each_token(i, n, |_| c += 1);
        self.for_each_landmark(i, n, |_| c += 1);
        c
    }

    /// Total candidates over all `n` queries of one head: the attention's edge count.
    pub fn edges(&self, n: usize) -> usize {
        (0..n).map(|i| self.edges_at(i, n)).sum()
    }

    /// Upper bound on candidates per query for sequences up to `n` (for sizing scratch).
    pub fn max_edges_per_query(&self, n: usize) -> usize {
        let logn = usize::BITS as usize - n.leading_zeros() as usize;
        let win = if self.causal {
            self.window
        } else {
            self.window.saturating_mul(2)
        };
        let mut m = win.saturating_add(1).min(n);
        m = m.saturating_add(self.global_tokens.len().min(n));
        if self.log_stride {
            m = m.saturating_add(if self.causal { logn } else { 2 * logn });
        }
        if self.landmarks {
            m = m
                .saturating_add(3)
                .saturating_add(if self.causal { logn } else { 2 * logn });
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(window: usize, bs: usize, causal: bool) -> SparsePattern {
        SparsePattern {
            window,
            block_size: bs,
            global_tokens: vec![0],
            causal,
            log_stride: true,
            landmarks: true,
        }
    }

    #[test]
    fn default_is_aether() {
        let p = SparsePattern::default();
        assert_eq!(
            (p.window, p.block_size, p.global_tokens.as_slice()),
            (32, 16, &[0usize][..])
        );
        assert!(p.causal && p.log_stride && p.landmarks);
    }

    #[test]
    fn causal_tokens_small_example() {
        // i = 10, W = 2: window 8..=10, global 0, strides 1,2 (in window), 4 -> 6, 8 -> 2.
        let p = pat(2, 4, true);
        assert_eq!(p.token_candidates(10, 16), vec![8, 9, 10, 0, 6, 2]);
        // Landmarks: avail = 11/4 = 2, pivot 1, local [0, 1]; blocks 4: s=1 -> 0 (local), s=2 -> none.
        assert_eq!(p.landmark_candidates(10, 16), vec![0, 1]);
        assert_eq!(p.landmark_candidates(2, 16), Vec::<usize>::new());
    }

    #[test]
    fn bidirectional_example() {
        let p = pat(1, 4, false);
        // i = 5, n = 12: window 4..=6, global 0, strides 1 (in window), 2 -> 3, 7; 4 -> 1, 9; 8 -> none.
        assert_eq!(p.token_candidates(5, 12), vec![4, 5, 6, 0, 3, 7, 1, 9]);
        // blocks 3, cur 1, pivot 1, local [0, 2] skipping 1; s=1: 0 and 2 local; s=2: none.
        assert_eq!(p.landmark_candidates(5, 12), vec![0, 2]);
    }

    #[test]
    fn candidates_are_unique_in_range_and_causal() {
        for causal in [true, false] {
            for n in [0usize, 1, 2, 7, 33, 100] {
                for w in [0usize, 1, 3, 200] {
                    for bs in [1usize, 3, 16, 500] {
                        let mut p = pat(w, bs, causal);
                        p.global_tokens = vec![0, 5, 5, 1000];
                        for i in 0..n {
                            let t = p.token_candidates(i, n);
                            let mut s = t.clone();
                            s.sort_unstable();
                            s.dedup();
                            assert_eq!(s.len(), t.len(), "dup tokens i={i} n={n}");
                            assert!(t.iter().all(|&j| j < n && (!causal || j <= i)));
                            assert!(t.contains(&i));
                            let l = p.landmark_candidates(i, n);
                            let mut s = l.clone();
                            s.sort_unstable();
                            s.dedup();
                            assert_eq!(s.len(), l.len(), "dup blocks");
                            let blocks = n.div_ceil(bs);
                            assert!(l
                                .iter()
                                .all(|&b| b < blocks && (!causal || (b + 1) * bs <= i + 1)));
                            assert!(t.len() + l.len() <= p.max_edges_per_query(n));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn causal_candidates_do_not_depend_on_n() {
        let p = pat(4, 3, true);
        for i in 0..50 {
            assert_eq!(p.token_candidates(i, i + 1), p.token_candidates(i, 80));
            assert_eq!(
                p.landmark_candidates(i, i + 1),
                p.landmark_candidates(i, 80)
            );
        }
    }

    #[test]
    fn edges_grow_subquadratically() {
        let p = SparsePattern {
            window: 16,
            block_size: 32,
            ..SparsePattern::default()
        };
        let e = p.edges(1024) as f64 / 1024.0;
        assert!(e > 16.0 && e < 40.0, "edges/query {e}");
        assert_eq!(p.edges(0), 0);
    }

    #[test]
    fn zero_block_size_is_refused_and_never_panics() {
        let p = SparsePattern {
            block_size: 0,
            ..SparsePattern::default()
        };
        assert_eq!(p.validate(), Err(KernelError::BlockSizeZero));
        assert!(p.landmark_candidates(5, 10).is_empty());
    }

    /// The direct enumeration: window, deduplicated globals, then every stride checked
    /// against the window and the whole global list.
    fn naive_tokens(p: &SparsePattern, i: usize, n: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let (lo, hi) = p.window_range(i, n);
        out.extend(lo..=hi);
        let in_window = |j: usize| j >= lo && j <= hi;
        for (gi, &g) in p.global_tokens.iter().enumerate() {
            if p.global_ok(g, i, n) && !in_window(g) && !p.global_tokens[..gi].contains(&g) {
                out.push(g);
            }
        }
        if p.log_stride {
            let taken = |j: usize| in_window(j) || p.global_tokens.contains(&j);
            let mut s = 1usize;
            while s < n {
                if i >= s && !taken(i - s) {
                    out.push(i - s);
                }
                if !p.causal && i + s < n && !taken(i + s) {
                    out.push(i + s);
                }
                s *= 2;
            }
        }
        out
    }

    #[test]
    fn token_enumeration_equals_the_direct_one() {
        let lists: [&[usize]; 6] = [&[], &[0], &[5], &[0, 3, 40], &[70, 2, 70, 9], &[1, 200]];
        for causal in [true, false] {
            for window in [0usize, 1, 3, 8, 32, 100] {
                for globals in lists {
                    let p = SparsePattern {
                        window,
                        block_size: 4,
                        global_tokens: globals.to_vec(),
                        causal,
                        log_stride: true,
                        landmarks: false,
                    };
                    for n in [1usize, 2, 7, 64, 130] {
                        for i in 0..n {
                            assert_eq!(
                                p.token_candidates(i, n),
                                naive_tokens(&p, i, n),
                                "causal {causal} window {window} globals {globals:?} i {i} n {n}"
                            );
                        }
                    }
                }
            }
        }
    }
}
