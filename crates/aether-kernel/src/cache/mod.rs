//! Streaming KV caches: push one position, decode the newest one in
//! `O(W + |G| + log T)` row operations; while nothing was evicted, exactly row `T − 1` of
//! `sparse_attention` over the positions pushed so far. [`KvCache`] stores f32,
//! [`KvCacheF16`] IEEE half; scores and outputs accumulate in f32. Semantics (absolute
//! positions, non-causal patterns, landmarks): docs/kernel.md; memory and eviction:
//! docs/kvcache.md. `push` and `decode` never allocate once the decode scratch is sized.
//!
//! ```
//! use aether_kernel::{KvCache, SparsePattern};
//! let p = SparsePattern::default();
//! let mut cache = KvCache::new(1024, 1, 4, p.block_size);
//! let mut out = [0.0f32; 8];
//! for t in 0..40 {
//!     let k = [t as f32 * 0.01; 4];
//!     cache.push(&k, &k)?;
//!     cache.decode(&p, &[0.1f32; 8], &mut out)?; // 2 query heads share 1 kv head
//! }
//! assert_eq!(cache.len(), 40);
//! # Ok::<(), aether_kernel::KernelError>(())
//! ```
//!
//! Files: `elem` (the storage element trait, f32 and f16), `evict` (push, eviction
//! policies, the slot index), `decode` (decode and its microkernels); this file holds the
//! cache type, its constructors and accessors.

use alloc::vec::Vec;
use core::ops::Range;

use half::f16;

use crate::error::{KernelError, Result};
use crate::pattern::SparsePattern;
use crate::simd;

mod decode;
mod elem;
mod evict;

pub use elem::KvElem;
pub use evict::EvictionPolicy;
use evict::Index;

const PINNED: u8 = 1;
const VICTIM: u8 = 2;

/// Decode scratch, sized from the pattern bounds, reused across steps.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// Physical slots of the retained token candidates.
    tok: Vec<usize>,
    /// Landmark slots of the retained landmark candidates.
    lm: Vec<usize>,
    /// Scores, then softmax weights: `[group head][candidate]`.
    scores: Vec<f32>,
    /// One row converted to f32 (landmark means in `push`).
    row: Vec<f32>,
    /// A chunk of candidate key or value rows converted to f32, `[row][dim]`, at most
    /// `CONV_ROWS` rows (f16 only).
    conv: Vec<f32>,
}

/// A streaming KV cache storing keys and values as `S` (see the module docs).
///
/// Use the aliases [`KvCache`] (f32) and [`KvCacheF16`] (f16).
#[derive(Debug, Clone)]
pub struct KvCacheOf<S: KvElem> {
    capacity: usize,
    kv_heads: usize,
    dim: usize,
    block_size: usize,
    policy: EvictionPolicy,
    /// Set when the construction arguments were invalid; every push/decode returns it.
    invalid: Option<KernelError>,
    /// `kv_heads · dim`.
    row: usize,
    k: Vec<S>,
    v: Vec<S>,
    /// Absolute position per slot (heavy-hitter policy only; otherwise positions are
    /// contiguous and derived from `total` and `len`).
    pos: Vec<usize>,
    /// Cumulative attention mass per slot (heavy-hitter only).
    mass: Vec<f32>,
    /// `PINNED` / `VICTIM` flags per slot (heavy-hitter only).
    flags: Vec<u8>,
    /// Eviction scratch (heavy-hitter only).
    order: Vec<usize>,
    /// Physical slot of the oldest retained position.
    head: usize,
    /// Retained positions.
    len: usize,
    /// Positions pushed since construction or `reset` (`T`).
    total: usize,
    /// Retained positions are exactly `[total − len, total)`.
    contiguous: bool,
    /// Landmark ring size in blocks.
    lm_slots: usize,
    lm_k: Vec<S>,
    lm_v: Vec<S>,
    /// Complete blocks so far.
    completed: usize,
    /// Running sums of the block in progress (rows scaled by `2^-k ≤ 1 / block_size`).
    acc_k: Vec<f32>,
    acc_v: Vec<f32>,
    acc_n: usize,
    scratch: Scratch,
    /// SIMD level of `push` and `decode` (the detected one unless set).
    level: simd::SimdLevel,
}

/// f32 KV cache: the contract type `KvCache::new(capacity, kv_heads, dim, block_size)`.
pub type KvCache = KvCacheOf<f32>;

/// f16-storage KV cache with f32 accumulation (half the memory of [`KvCache`]).
pub type KvCacheF16 = KvCacheOf<f16>;

/// Allocates `n` default elements, reporting failure instead of aborting.
fn alloc_vec<T: Clone + Default>(n: usize, what: &'static str) -> Result<Vec<T>> {
    crate::fallible::try_filled(n, T::default()).ok_or(KernelError::Overflow { what })
}

/// Grows `v` to hold at least `n` elements (no-op, and no allocation, when it already does).
fn ensure_len<T: Clone + Default>(v: &mut Vec<T>, n: usize) -> Result<()> {
    if v.len() < n {
        v.try_reserve_exact(n - v.len())
            .map_err(|_| KernelError::Overflow {
                what: "decode scratch",
            })?;
        v.resize(n, T::default());
    }
    Ok(())
}

impl<S: KvElem> KvCacheOf<S> {
    /// A cache for `capacity` positions of `kv_heads · dim` keys and values, landmark blocks
    /// of `block_size`, policy [`EvictionPolicy::Error`]. Never fails: invalid arguments
    /// are reported by every `push`/`decode` (use [`Self::try_new`] to see them at once).
    pub fn new(capacity: usize, kv_heads: usize, dim: usize, block_size: usize) -> Self {
        Self::with_policy(capacity, kv_heads, dim, block_size, EvictionPolicy::Error)
    }

    /// Like [`Self::new`] but returns the construction error, if any.
    pub fn try_new(
        capacity: usize,
        kv_heads: usize,
        dim: usize,
        block_size: usize,
    ) -> Result<Self> {
        Self::try_with_policy(capacity, kv_heads, dim, block_size, EvictionPolicy::Error)
    }

    /// Like [`Self::new`] with the given eviction policy for a full cache.
    pub fn with_policy(
        capacity: usize,
        kv_heads: usize,
        dim: usize,
        block_size: usize,
        policy: EvictionPolicy,
    ) -> Self {
        match Self::try_with_policy(capacity, kv_heads, dim, block_size, policy) {
            Ok(c) => c,
            Err(e) => Self::empty(capacity, kv_heads, dim, block_size, policy, Some(e)),
        }
    }

    /// Like [`Self::with_policy`] but returns the construction error, if any.
    pub fn try_with_policy(
        capacity: usize,
        kv_heads: usize,
        dim: usize,
        block_size: usize,
        policy: EvictionPolicy,
    ) -> Result<Self> {
        if capacity == 0 {
            return Err(KernelError::ZeroDim { what: "capacity" });
        }
        if kv_heads == 0 {
            return Err(KernelError::ZeroDim { what: "kv_heads" });
        }
        if dim == 0 {
            return Err(KernelError::ZeroDim { what: "dim" });
        }
        if block_size == 0 {
            return Err(KernelError::BlockSizeZero);
        }
        if let EvictionPolicy::HeavyHitter { recent } = policy {
            if recent >= capacity {
                return Err(KernelError::ShapeMismatch {
                    what: "HeavyHitter.recent (must be below capacity)",
                    expected: capacity - 1,
                    got: recent,
                });
            }
        }
        let row = kv_heads
            .checked_mul(dim)
            .ok_or(KernelError::Overflow { what: "kv row" })?;
        let cells = capacity
            .checked_mul(row)
            .ok_or(KernelError::Overflow { what: "kv cache" })?;
        let lm_slots = capacity / block_size + 2;
        let lm_cells = lm_slots
            .checked_mul(row)
            .ok_or(KernelError::Overflow { what: "landmarks" })?;
        let h2o = matches!(policy, EvictionPolicy::HeavyHitter { .. });
        let per_slot = |n: usize| if h2o { n } else { 0 };
        let mut c = Self::empty(capacity, kv_heads, dim, block_size, policy, None);
        c.row = row;
        c.k = alloc_vec(cells, "kv cache keys")?;
        c.v = alloc_vec(cells, "kv cache values")?;
        c.pos = alloc_vec(per_slot(capacity), "kv cache positions")?;
        c.mass = alloc_vec(per_slot(capacity), "kv cache mass")?;
        c.flags = alloc_vec(per_slot(capacity), "kv cache flags")?;
        c.order = alloc_vec(per_slot(capacity), "kv cache eviction order")?;
        c.order.clear();
        c.lm_slots = lm_slots;
        c.lm_k = alloc_vec(lm_cells, "landmark keys")?;
        c.lm_v = alloc_vec(lm_cells, "landmark values")?;
        c.acc_k = alloc_vec(row, "landmark sums")?;
        c.acc_v = alloc_vec(row, "landmark sums")?;
        c.scratch.row = alloc_vec(dim, "decode scratch")?;
        c.scratch.lm = alloc_vec(lm_slots, "decode scratch")?;
        c.scratch.lm.clear();
        Ok(c)
    }

    fn empty(
        capacity: usize,
        kv_heads: usize,
        dim: usize,
        block_size: usize,
        policy: EvictionPolicy,
        invalid: Option<KernelError>,
    ) -> Self {
        Self {
            capacity,
            kv_heads,
            dim,
            block_size,
            policy,
            invalid,
            row: 0,
            k: Vec::new(),
            v: Vec::new(),
            pos: Vec::new(),
            mass: Vec::new(),
            flags: Vec::new(),
            order: Vec::new(),
            head: 0,
            len: 0,
            total: 0,
            contiguous: true,
            lm_slots: 0,
            lm_k: Vec::new(),
            lm_v: Vec::new(),
            completed: 0,
            acc_k: Vec::new(),
            acc_v: Vec::new(),
            acc_n: 0,
            scratch: Scratch::default(),
            level: simd::SimdLevel::detect(),
        }
    }

    /// This cache with `push` and `decode` at SIMD level `level` (scalar when
    /// unavailable; tests force each path this way); results do not depend on it
    /// beyond float rounding.
    pub fn with_level(mut self, level: simd::SimdLevel) -> Self {
        self.level = level.effective();
        self
    }

    /// The SIMD level `push` and `decode` run at.
    pub fn level(&self) -> simd::SimdLevel {
        self.level
    }

    fn check_valid(&self) -> Result<()> {
        match &self.invalid {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Maximum number of retained positions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of retained positions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions pushed since construction or [`Self::reset`] (the absolute position of the
    /// next push); the newest position is `total() − 1`.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.kv_heads
    }

    /// Per-head dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Landmark block size.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// The eviction policy.
    pub fn policy(&self) -> EvictionPolicy {
        self.policy
    }

    /// Name of the storage element type ("f32" or "f16").
    pub fn storage(&self) -> &'static str {
        S::NAME
    }

    /// The construction error, if the arguments were invalid.
    pub fn construction_error(&self) -> Option<&KernelError> {
        self.invalid.as_ref()
    }

    /// Heap and inline bytes held by the cache (storage, landmarks, bookkeeping, scratch).
    pub fn bytes(&self) -> usize {
        use core::mem::size_of;
        let s = &self.scratch;
        size_of::<Self>()
            + (self.k.capacity() + self.v.capacity() + self.lm_k.capacity() + self.lm_v.capacity())
                * size_of::<S>()
            + (self.pos.capacity() + self.order.capacity() + s.tok.capacity() + s.lm.capacity())
                * size_of::<usize>()
            + (self.mass.capacity() + s.scores.capacity() + s.row.capacity() + s.conv.capacity())
                * size_of::<f32>()
            + self.flags.capacity()
            + (self.acc_k.capacity() + self.acc_v.capacity()) * size_of::<f32>()
    }

    /// Forgets every position (keeps the allocations).
    pub fn reset(&mut self) {
        self.head = 0;
        self.len = 0;
        self.total = 0;
        self.contiguous = true;
        self.completed = 0;
        self.acc_n = 0;
        self.acc_k.iter_mut().for_each(|a| *a = 0.0);
        self.acc_v.iter_mut().for_each(|a| *a = 0.0);
    }

    /// Absolute positions retained, oldest first.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        let first = self.total - self.len;
        (0..self.len).map(move |l| {
            if self.contiguous {
                first + l
            } else {
                self.pos[self.index().phys(l)]
            }
        })
    }

    /// Whether absolute position `j` is retained.
    pub fn contains(&self, j: usize) -> bool {
        let mut hint = usize::MAX;
        self.index().find(j, &mut hint).is_some()
    }

    /// Blocks whose landmark is retained: the newest `capacity / block_size + 2` complete
    /// blocks (kept even after their tokens are evicted; their means stay exact).
    pub fn landmark_blocks(&self) -> Range<usize> {
        self.completed.saturating_sub(self.lm_slots)..self.completed
    }

    /// Cumulative attention mass of absolute position `j` (heavy-hitter policy only).
    pub fn attention_mass(&self, j: usize) -> Option<f32> {
        if self.mass.is_empty() {
            return None;
        }
        let mut hint = usize::MAX;
        self.index().find(j, &mut hint).map(|s| self.mass[s])
    }

    fn index(&self) -> Index<'_> {
        Index {
            pos: &self.pos,
            head: self.head,
            len: self.len,
            cap: self.capacity,
            total: self.total,
            contiguous: self.contiguous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_loader_is_exact_for_every_finite_half() {
        for bits in 0u16..=u16::MAX {
            let h = f16::from_bits(bits);
            if h.is_finite() {
                assert_eq!(
                    simd::f16_bits_to_f32(bits).to_bits(),
                    h.to_f32().to_bits(),
                    "{bits:#x}"
                );
            }
        }
    }

    /// The F16C paths (gather for decode, store for push) are bit-identical to the portable
    /// ones: every finite half, and f32 values around every rounding boundary.
    #[test]
    fn f16c_conversions_equal_the_portable_ones() {
        let halves: Vec<f16> = (0u16..=u16::MAX)
            .map(f16::from_bits)
            .filter(|h| h.is_finite())
            .collect();
        // Rows of odd length 13 (one 8-wide step plus a tail), gathered in reverse order.
        let d = 13;
        let rows = halves.len() / d;
        let slots: Vec<usize> = (0..rows).rev().collect();
        let mut soft = vec![0.0f32; rows * d];
        let mut hard = vec![0.0f32; rows * d];
        f16::gather(&halves, (&slots, d, 0), d, &mut soft, false);
        let hw = simd::f16c_available();
        f16::gather(&halves, (&slots, d, 0), d, &mut hard, hw);
        for (c, &s) in slots.iter().enumerate() {
            for e in 0..d {
                let want = halves[s * d + e].to_f32().to_bits();
                assert_eq!(soft[c * d + e].to_bits(), want);
                assert_eq!(hard[c * d + e].to_bits(), want);
            }
        }
        // Store: each finite half's value, its neighbours one f32 ulp away and the midpoints.
        let mut xs = Vec::new();
        for h in &halves {
            let b = h.to_f32().to_bits();
            for x in [
                b.wrapping_sub(1),
                b,
                b.wrapping_add(1),
                b.wrapping_add(1 << 12),
            ] {
                let x = f32::from_bits(x);
                if f16::representable(x) {
                    xs.push(x);
                }
            }
        }
        let mut got = vec![f16::ZERO; xs.len()];
        f16::store(&xs, &mut got, true);
        for (x, g) in xs.iter().zip(&got) {
            assert_eq!(g.to_bits(), f16::from_f32(*x).to_bits(), "{x:e}");
        }
    }

    #[test]
    fn invalid_construction_is_reported_not_panicked() {
        let cases: [(usize, usize, usize, usize, KernelError); 4] = [
            (0, 1, 4, 2, KernelError::ZeroDim { what: "capacity" }),
            (8, 0, 4, 2, KernelError::ZeroDim { what: "kv_heads" }),
            (8, 1, 0, 2, KernelError::ZeroDim { what: "dim" }),
            (8, 1, 4, 0, KernelError::BlockSizeZero),
        ];
        for (cap, h, d, b, e) in cases {
            assert_eq!(KvCache::try_new(cap, h, d, b).unwrap_err(), e);
            let mut c = KvCache::new(cap, h, d, b);
            assert_eq!(c.construction_error(), Some(&e));
            assert_eq!(c.push(&[0.0; 4], &[0.0; 4]), Err(e.clone()));
            let mut out = [0.0; 4];
            let p = SparsePattern::default();
            assert_eq!(c.decode(&p, &[0.0; 4], &mut out), Err(e));
        }
        assert_eq!(
            KvCache::try_new(usize::MAX, 2, 4, 1).unwrap_err(),
            KernelError::Overflow { what: "kv cache" }
        );
        assert!(
            KvCacheF16::try_with_policy(4, 1, 1, 1, EvictionPolicy::HeavyHitter { recent: 4 })
                .is_err()
        );
    }

    #[test]
    fn shape_and_value_errors_change_nothing() {
        let mut c = KvCacheF16::new(4, 1, 2, 2);
        let p = SparsePattern {
            block_size: 2,
            ..SparsePattern::default()
        };
        let mut out = [0.0f32; 2];
        assert_eq!(
            c.decode(&p, &[0.0; 2], &mut out),
            Err(KernelError::EmptyCache)
        );
        assert!(matches!(
            c.push(&[0.0; 3], &[0.0; 2]),
            Err(KernelError::ShapeMismatch { .. })
        ));
        assert_eq!(
            c.push(&[0.0, 1e6], &[0.0; 2]),
            Err(KernelError::NonFinite {
                what: "k_row",
                index: 1
            })
        );
        assert_eq!(
            c.push(&[0.0; 2], &[f32::NAN, 0.0]),
            Err(KernelError::NonFinite {
                what: "v_row",
                index: 0
            })
        );
        assert!(c.is_empty());
        c.push(&[1.0, 2.0], &[3.0, 4.0]).unwrap();
        assert!(matches!(
            c.decode(&p, &[0.0; 3], &mut out),
            Err(KernelError::ShapeMismatch { .. })
        ));
        assert!(matches!(
            c.decode(&p, &[0.0; 4], &mut out),
            Err(KernelError::ShapeMismatch { .. })
        ));
        let wrong = SparsePattern {
            block_size: 3,
            ..p.clone()
        };
        assert!(matches!(
            c.decode(&wrong, &[0.0; 2], &mut out),
            Err(KernelError::ShapeMismatch { .. })
        ));
        assert_eq!(
            c.decode(&p, &[f32::INFINITY, 0.0], &mut out),
            Err(KernelError::NonFinite {
                what: "q_row",
                index: 0
            })
        );
        c.decode(&p, &[0.5, 0.5], &mut out).unwrap();
        assert_eq!(out, [3.0, 4.0]);
        let mut c2 = KvCache::new(2, 2, 1, 1);
        c2.push(&[0.0; 2], &[0.0; 2]).unwrap();
        let mut o3 = [0.0; 3];
        assert_eq!(
            c2.decode(&p, &[0.0; 3], &mut o3),
            Err(KernelError::ShapeMismatch {
                what: "pattern.block_size (must equal the cache block_size)",
                expected: 1,
                got: 2
            })
        );
    }

    #[test]
    fn error_policy_refuses_when_full_and_reset_empties() {
        let mut c = KvCache::new(3, 1, 1, 2);
        for t in 0..3 {
            c.push(&[t as f32], &[t as f32]).unwrap();
        }
        let before = c.bytes();
        assert_eq!(
            c.push(&[9.0], &[9.0]),
            Err(KernelError::CapacityExceeded { capacity: 3 })
        );
        assert_eq!((c.len(), c.total(), c.bytes()), (3, 3, before));
        assert_eq!(c.positions().collect::<Vec<_>>(), [0, 1, 2]);
        c.reset();
        assert_eq!((c.len(), c.total()), (0, 0));
        assert_eq!(c.landmark_blocks(), 0..0);
        c.push(&[1.0], &[1.0]).unwrap();
        assert_eq!(c.len(), 1);
    }

    /// The streamed landmark means are the whole sequence's `block_means`, bit for bit,
    /// for power-of-two and other block sizes, values of every magnitude included.
    #[test]
    fn landmark_means_equal_the_whole_sequence_block_means() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let m = ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
            m * [1e-3, 1.0, 1e3, 1e30][(seed & 3) as usize]
        };
        for bs in [1, 2, 3, 5, 8, 16, 24] {
            let (heads, dim, n) = (2, 3, 4 * bs + 1);
            let w = heads * dim;
            let k: Vec<f32> = (0..n * w).map(|_| next()).collect();
            let v: Vec<f32> = (0..n * w).map(|_| next()).collect();
            let mut c = KvCache::new(n, heads, dim, bs);
            for t in 0..n {
                c.push(&k[t * w..(t + 1) * w], &v[t * w..(t + 1) * w])
                    .unwrap();
            }
            let blocks = n / bs;
            for (x, lm) in [(&k, &c.lm_k), (&v, &c.lm_v)] {
                let mut want = vec![0.0f32; blocks * w];
                crate::sparse::block_means(
                    simd::SimdLevel::Scalar,
                    x,
                    blocks * bs,
                    w,
                    bs,
                    &mut want,
                );
                for b in 0..blocks {
                    let slot = b % c.lm_slots;
                    let got = &lm[slot * w..(slot + 1) * w];
                    let bits = |r: &[f32]| r.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(got),
                        bits(&want[b * w..(b + 1) * w]),
                        "bs {bs} block {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn sliding_window_ring_keeps_newest() {
        let mut c = KvCache::with_policy(3, 1, 1, 2, EvictionPolicy::SlidingWindow);
        for t in 0..10 {
            c.push(&[t as f32], &[t as f32]).unwrap();
            assert!(c.len() <= 3);
        }
        assert_eq!(c.positions().collect::<Vec<_>>(), [7, 8, 9]);
        assert!(c.contains(8) && !c.contains(6) && !c.contains(10));
        assert_eq!(c.landmark_blocks(), 2..5);
    }
}
