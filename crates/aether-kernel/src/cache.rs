//! Streaming KV caches: push one position, decode the newest one.
//!
//! A cache holds the keys and values of the positions pushed so far, `[slot][kv_heads][dim]`,
//! plus the landmark means of every complete block of `block_size` positions (maintained
//! incrementally from running block sums). [`KvCacheOf::decode`] computes, for the newest
//! position `i = T − 1` of the `T` pushed so far and each query head `h`
//! (kv head `h / (Hq/Hkv)`):
//!
//! `out_h = Σ_c softmax_c(q_h·k_c / √dim) · v_c`
//!
//! over the candidates `c` of [`SparsePattern::for_each_token`]`(i, T)` and
//! [`SparsePattern::for_each_landmark`]`(i, T)`, evaluated on **absolute** positions, restricted
//! to what the cache still retains. While nothing has been evicted this is exactly row `i` of
//! `sparse_attention(p, q[..T], k[..T], v[..T])`. Shapes: `k_row`, `v_row` are
//! `kv_heads·dim`; `q_row`, `out_row` are `q_heads·dim` with `q_heads` a multiple of `kv_heads`
//! (MHA, GQA, MQA).
//!
//! A non-causal pattern is accepted and gives row `T − 1` of the *bidirectional* attention
//! over the `T` positions pushed so far (for the last row the token candidates coincide with
//! the causal ones; the landmark rule differs: the current block is skipped).
//!
//! Storage: [`KvCache`] stores f32, [`KvCacheF16`] stores IEEE half (keys, values and landmark
//! means); scores, softmax and output always accumulate in f32.
//!
//! Cost per step: O(W + |G| + log T) row operations (plus an O(log T) binary search per
//! candidate once heavy-hitter eviction has left holes). `push` and `decode` never allocate
//! once the decode scratch has been sized (first decode with a pattern, or
//! [`KvCacheOf::reserve_decode`]).
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

use alloc::vec::Vec;
use core::ops::Range;

use half::f16;

use crate::error::{KernelError, Result};
use crate::pattern::SparsePattern;
use crate::simd;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// Storage element of a KV cache (`f32` or `half::f16`); arithmetic is always f32.
pub trait KvElem: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    /// Short name of the storage type ("f32", "f16").
    const NAME: &'static str;
    /// Whether `x` is finite and stays finite once stored.
    fn representable(x: f32) -> bool;
    /// Rounds `src` into `dst` (equal lengths); `hw` allows the x86 F16C instructions
    /// (used only when present; the result is the same either way).
    fn store(src: &[f32], dst: &mut [Self], hw: bool);
    /// `src` as f32: borrowed for f32, converted into `buf` for f16.
    fn load<'a>(src: &'a [Self], buf: &'a mut [f32]) -> &'a [f32];
    /// `src` as f32 without conversion, when the storage is f32.
    fn direct(src: &[Self]) -> Option<&[f32]>;
    /// Converts the rows `src[slots[c]·stride + add..][..dim]` into `dst[c·dim..][..dim]`;
    /// `hw` allows the x86 F16C instructions (used only when present; same result).
    fn gather(src: &[Self], rows: (&[usize], usize, usize), dim: usize, dst: &mut [f32], hw: bool);
}

impl KvElem for f32 {
    const NAME: &'static str = "f32";
    #[inline]
    fn representable(x: f32) -> bool {
        x.is_finite()
    }
    #[inline]
    fn store(src: &[f32], dst: &mut [f32], _: bool) {
        dst.copy_from_slice(src);
    }
    #[inline(always)]
    fn load<'a>(src: &'a [f32], _buf: &'a mut [f32]) -> &'a [f32] {
        src
    }
    #[inline(always)]
    fn direct(src: &[f32]) -> Option<&[f32]> {
        Some(src)
    }
    #[inline]
    fn gather(src: &[f32], rows: (&[usize], usize, usize), d: usize, dst: &mut [f32], _: bool) {
        let (slots, stride, add) = rows;
        for (&s, o) in slots.iter().zip(dst.chunks_exact_mut(d)) {
            o.copy_from_slice(&src[s * stride + add..][..d]);
        }
    }
}

impl KvElem for f16 {
    const NAME: &'static str = "f16";
    #[inline]
    fn representable(x: f32) -> bool {
        // Magnitudes from 65520 up round to infinity; NaN fails the comparison.
        x.abs() < 65520.0
    }
    #[inline]
    fn store(src: &[f32], dst: &mut [f16], hw: bool) {
        simd::f32_to_f16(hw, src, dst);
    }
    #[inline(always)]
    fn load<'a>(src: &'a [f16], buf: &'a mut [f32]) -> &'a [f32] {
        let buf = &mut buf[..src.len()];
        for (b, s) in buf.iter_mut().zip(src) {
            *b = simd::f16_bits_to_f32(s.to_bits());
        }
        buf
    }
    #[inline(always)]
    fn direct(_src: &[f16]) -> Option<&[f32]> {
        None
    }
    #[inline]
    fn gather(src: &[f16], rows: (&[usize], usize, usize), d: usize, dst: &mut [f32], hw: bool) {
        simd::f16_rows_to_f32(hw, src, rows, d, dst);
    }
}

/// What `push` does when the cache is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Refuse: `push` returns [`KernelError::CapacityExceeded`] and changes nothing.
    #[default]
    Error,
    /// Drop the oldest position (ring buffer, O(1) per push).
    SlidingWindow,
    /// H2O: evict the positions with the lowest cumulative attention mass (summed over
    /// query heads at every decode), never the `recent` newest positions nor a global token
    /// a decode has attended (pinned). Evicts `max(1, capacity / 16)` positions at a time.
    HeavyHitter {
        /// Number of newest positions that are never evicted (must be `< capacity`).
        recent: usize,
    },
}

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
    /// Running sums of the block in progress.
    acc_k: Vec<f64>,
    acc_v: Vec<f64>,
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
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| KernelError::Overflow { what })?;
    v.resize(n, T::default());
    Ok(v)
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

/// Read-only view of the slot layout used to map absolute positions to slots.
struct Index<'a> {
    pos: &'a [usize],
    head: usize,
    len: usize,
    cap: usize,
    total: usize,
    contiguous: bool,
}

impl Index<'_> {
    #[inline]
    fn phys(&self, l: usize) -> usize {
        let s = self.head + l;
        if s >= self.cap {
            s - self.cap
        } else {
            s
        }
    }

    /// Physical slot of absolute position `j`, if retained. `hint` is the logical index of
    /// the previous hit (ascending runs such as the local window cost O(1) each).
    #[inline]
    fn find(&self, j: usize, hint: &mut usize) -> Option<usize> {
        if j >= self.total || self.len == 0 {
            return None;
        }
        if self.contiguous {
            let first = self.total - self.len;
            return (j >= first).then(|| self.phys(j - first));
        }
        let next = hint.wrapping_add(1);
        if next < self.len && self.pos[self.phys(next)] == j {
            *hint = next;
            return Some(self.phys(next));
        }
        let (mut lo, mut hi) = (0usize, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.pos[self.phys(mid)] < j {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo < self.len && self.pos[self.phys(lo)] == j {
            *hint = lo;
            Some(self.phys(lo))
        } else {
            None
        }
    }
}

/// Hints the CPU to bring `row` elements of `buf` from `start` into cache (no-op off x86-64).
#[inline(always)]
fn prefetch_row<T>(buf: &[T], start: usize, row: usize) {
    let Some(cells) = buf.get(start..start + row) else {
        return;
    };
    let bytes = core::mem::size_of_val(cells);
    let base = cells.as_ptr().cast::<i8>();
    let mut off = 0;
    while off < bytes {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `base + off` lies inside `cells`; a prefetch is only a hint and never
        // faults or changes architectural state. SSE is part of the x86-64 baseline.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(base.add(off));
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = base;
        off += 64;
    }
}

/// Where candidate `c`'s row starts inside some base slice.
trait RowOffsets: Copy {
    fn off(&self, c: usize) -> usize;
}

/// Rows at `slots[c] · stride + add` (f32 storage read in place).
#[derive(Clone, Copy)]
struct Slotted<'a> {
    slots: &'a [usize],
    stride: usize,
    add: usize,
}

impl RowOffsets for Slotted<'_> {
    #[inline(always)]
    fn off(&self, c: usize) -> usize {
        self.slots[c] * self.stride + self.add
    }
}

/// Rows packed densely at `c · stride + add` (f16 rows converted into scratch).
#[derive(Clone, Copy)]
struct Packed {
    stride: usize,
    add: usize,
}

impl RowOffsets for Packed {
    #[inline(always)]
    fn off(&self, c: usize) -> usize {
        c * self.stride + self.add
    }
}

/// `n` candidate rows of one kv head: row `c` at `x[rows.off(c)..][..dim]` (key rows in the
/// score pass, value rows in the value pass).
#[derive(Clone, Copy)]
struct Group<'a, R> {
    x: &'a [f32],
    rows: R,
    n: usize,
}

/// Max of `s` (`-∞` when empty), vectorised.
#[inline(always)]
fn max_g<I: simd::Isa>(s: &[f32]) -> f32 {
    const L: usize = simd::LANES;
    let mut m = I::splat(f32::NEG_INFINITY);
    let mut c = 0;
    while c + L <= s.len() {
        m = I::max(I::load(&s[c..]), m);
        c += L;
    }
    if c < s.len() {
        let t = I::keep_first(I::load_partial(&s[c..]), s.len() - c, f32::NEG_INFINITY);
        m = I::max(t, m);
    }
    I::reduce_max(m)
}

/// The four horizontal sums of `a`. A level whose vector is one native 512-bit register
/// (alignment 64: AVX-512) has a single shuffle tree for the four sums; elsewhere four
/// direct reductions inline better than the trait's default (which goes through
/// `array::map`, a call that leaves the `#[target_feature]` context). Only speed differs.
#[inline(always)]
fn reduce4<I: simd::Isa>(a: [I::V; 4]) -> [f32; 4] {
    if core::mem::align_of::<I::V>() == 64 {
        I::reduce_add4(a)
    } else {
        [
            I::reduce_add(a[0]),
            I::reduce_add(a[1]),
            I::reduce_add(a[2]),
            I::reduce_add(a[3]),
        ]
    }
}

/// The dot products of one key row `k` (`dim`) with four query rows `q` (`4·dim`): each key
/// tile is loaded once, four accumulators, one [`reduce4`].
#[inline(always)]
fn dot4_k<I: simd::Isa>(k: &[f32], q: &[f32], dim: usize) -> [f32; 4] {
    const L: usize = simd::LANES;
    let d = dim;
    let k = &k[..d];
    let (q0, q1, q2, q3) = (&q[..d], &q[d..2 * d], &q[2 * d..3 * d], &q[3 * d..4 * d]);
    let (mut a0, mut a1, mut a2, mut a3) = (I::zero(), I::zero(), I::zero(), I::zero());
    let mut e = 0;
    while e + L <= d {
        let kv = I::load(&k[e..]);
        a0 = I::fma(I::load(&q0[e..]), kv, a0);
        a1 = I::fma(I::load(&q1[e..]), kv, a1);
        a2 = I::fma(I::load(&q2[e..]), kv, a2);
        a3 = I::fma(I::load(&q3[e..]), kv, a3);
        e += L;
    }
    if e < d {
        let kv = I::load_partial(&k[e..]);
        a0 = I::fma(I::load_partial(&q0[e..]), kv, a0);
        a1 = I::fma(I::load_partial(&q1[e..]), kv, a1);
        a2 = I::fma(I::load_partial(&q2[e..]), kv, a2);
        a3 = I::fma(I::load_partial(&q3[e..]), kv, a3);
    }
    reduce4::<I>([a0, a1, a2, a3])
}

/// Scores of the `H` query rows `q` (`H·dim`) against the key rows of `g`, scaled, written to
/// `s[j·nc + c0 + c]`. With `H = 4` each key row is loaded once for the four heads and the
/// four dot products share one horizontal reduction.
#[inline(always)]
fn scores_g<I: simd::Isa, R: RowOffsets, const H: usize>(
    q: &[f32],
    g: Group<'_, R>,
    dim: usize,
    scale: f32,
    s: &mut [f32],
    nc: usize,
    c0: usize,
) {
    let d = dim;
    for c in 0..g.n {
        let o = g.rows.off(c);
        let kr = &g.x[o..o + d];
        if H == 4 {
            let dots = dot4_k::<I>(kr, q, d);
            for (j, x) in dots.into_iter().enumerate() {
                s[j * nc + c0 + c] = x * scale;
            }
        } else {
            for j in 0..H {
                s[j * nc + c0 + c] = simd::dot_g::<I>(&q[j * d..(j + 1) * d], kr, d) * scale;
            }
        }
    }
}

/// Adds `Σ_c s[j·nc + c0 + c] · v_c[e..e + width]` to the accumulators of head `j` of one
/// column tile (`width` ≤ 2·LANES): each value tile is loaded once for all `H` heads.
#[inline(always)]
fn tile_g<I: simd::Isa, R: RowOffsets, const H: usize>(
    s: &[f32],
    nc: usize,
    c0: usize,
    g: Group<'_, R>,
    e: usize,
    width: usize,
    acc: &mut [(I::V, I::V); H],
) {
    const L: usize = simd::LANES;
    if width == 2 * L {
        for c in 0..g.n {
            let o = g.rows.off(c) + e;
            let (r0, r1) = (I::load(&g.x[o..o + L]), I::load(&g.x[o + L..o + 2 * L]));
            for (j, a) in acc.iter_mut().enumerate() {
                let w = I::splat(s[j * nc + c0 + c]);
                a.0 = I::fma(w, r0, a.0);
                a.1 = I::fma(w, r1, a.1);
            }
        }
    } else {
        for c in 0..g.n {
            let o = g.rows.off(c) + e;
            let r0 = if width == L {
                I::load(&g.x[o..o + L])
            } else {
                I::load_partial(&g.x[o..o + width])
            };
            for (j, a) in acc.iter_mut().enumerate() {
                a.0 = I::fma(I::splat(s[j * nc + c0 + c]), r0, a.0);
            }
        }
    }
}

/// Scores of the `group` query rows `q` (`group·dim`) against the key rows of `g`, scaled,
/// written to `s[h·nc + c0 + c]`: four heads at a time (one load of each key row serves
/// four heads), the remainder one at a time.
#[inline(always)]
fn scores_all<I: simd::Isa, R: RowOffsets>(
    q: &[f32],
    g: Group<'_, R>,
    dim: usize,
    s: &mut [f32],
    nc: usize,
    c0: usize,
) {
    let d = dim;
    let group = q.len() / d;
    let scale = 1.0 / libm::sqrtf(d as f32);
    let mut h = 0;
    while h < group {
        let hc = if group - h >= 4 { 4 } else { 1 };
        let (qh, sh) = (&q[h * d..(h + hc) * d], &mut s[h * nc..(h + hc) * nc]);
        if hc == 4 {
            scores_g::<I, R, 4>(qh, g, d, scale, sh, nc, c0);
        } else {
            scores_g::<I, R, 1>(qh, g, d, scale, sh, nc, c0);
        }
        h += hc;
    }
}

/// Adds `Σ_c s[j·nc + c0 + c] · v_c` over the value rows of `g` to the `H` output rows `o`
/// (`H·dim`), or writes it when `first`. The running sums go through `o` between calls, and
/// every output element sums its candidates in order, so splitting the candidates into
/// consecutive chunks gives bit-identical results.
#[inline(always)]
fn values_g<I: simd::Isa, R: RowOffsets, const H: usize>(
    s: &[f32],
    nc: usize,
    c0: usize,
    g: Group<'_, R>,
    dim: usize,
    o: &mut [f32],
    first: bool,
) {
    const L: usize = simd::LANES;
    let d = dim;
    let mut e = 0;
    while e < d {
        let width = if e + 2 * L <= d {
            2 * L
        } else {
            (d - e).min(L)
        };
        let mut acc = [(I::zero(), I::zero()); H];
        if !first {
            for (j, a) in acc.iter_mut().enumerate() {
                let cur = &o[j * d + e..j * d + e + width];
                if width == 2 * L {
                    *a = (I::load(&cur[..L]), I::load(&cur[L..]));
                } else if width == L {
                    a.0 = I::load(cur);
                } else {
                    a.0 = I::load_partial(cur);
                }
            }
        }
        tile_g::<I, R, H>(s, nc, c0, g, e, width, &mut acc);
        for (j, a) in acc.into_iter().enumerate() {
            let out = &mut o[j * d + e..j * d + e + width];
            if width == 2 * L {
                I::store(&mut out[..L], a.0);
                I::store(&mut out[L..], a.1);
            } else if width == L {
                I::store(out, a.0);
            } else {
                I::store_partial(out, a.0);
            }
        }
        e += width;
    }
}

/// [`values_g`] for all `group` output rows `o` (`group·dim`; weights `s`: `group·nc`), four
/// heads at a time (one load of each value tile serves four heads), the remainder one at a
/// time.
#[inline(always)]
fn values_all<I: simd::Isa, R: RowOffsets>(
    s: &[f32],
    nc: usize,
    c0: usize,
    g: Group<'_, R>,
    dim: usize,
    o: &mut [f32],
    first: bool,
) {
    let d = dim;
    let group = o.len() / d;
    let mut h = 0;
    while h < group {
        let hc = if group - h >= 4 { 4 } else { 1 };
        let (sh, oh) = (&s[h * nc..(h + hc) * nc], &mut o[h * d..(h + hc) * d]);
        if hc == 4 {
            values_g::<I, R, 4>(sh, nc, c0, g, d, oh, first);
        } else {
            values_g::<I, R, 1>(sh, nc, c0, g, d, oh, first);
        }
        h += hc;
    }
}

/// Candidate rows of one kind (tokens or landmarks) in storage `S`: key row `c` at
/// `k[slots[c]·stride + add..][..dim]`, value row at the same offset of `v`.
#[derive(Clone, Copy)]
struct Cands<'a, S> {
    k: &'a [S],
    v: &'a [S],
    slots: &'a [usize],
}

/// Most candidate rows converted to f32 per chunk (f16 storage): the conversion scratch is
/// at most `CONV_ROWS · dim` floats whatever the pattern, and at most a quarter of the
/// capacity's rows (so even a tiny f16 cache stays smaller than the f32 one). Any chunk
/// size gives the same result.
const CONV_ROWS: usize = 32;

/// The arithmetic of one decode step for one kv head and its `group` query heads, generic
/// over the SIMD instruction set so that [`simd::dispatch`] selects the level and everything
/// inlines: a score pass over the token then landmark candidates, a softmax per query head,
/// and a value pass. f32 rows are read in place; f16 rows are converted `conv.len() / dim`
/// (at most `CONV_ROWS`) at a time into `conv` (F16C when `hw`), once per pass.
struct HeadOp<'a, S> {
    toks: Cands<'a, S>,
    lms: Cands<'a, S>,
    /// Row stride of the storage (`kv_heads · dim`).
    stride: usize,
    /// Offset of this kv head inside a row (`kh · dim`).
    add: usize,
    /// `group · dim` query rows of this kv head.
    q: &'a [f32],
    /// `group · dim` output rows.
    out: &'a mut [f32],
    /// `[group head][candidate]` scores, then softmax weights.
    scores: &'a mut [f32],
    dim: usize,
    /// Heavy-hitter mass per slot and the token candidates' slots, when tracked.
    mass: Option<(&'a mut [f32], &'a [usize])>,
    /// Conversion scratch, a whole number (≥ 1) of rows (f16 storage only).
    conv: &'a mut [f32],
    /// Whether the F16C instructions may convert the rows.
    hw: bool,
}

impl<S: KvElem> simd::WithIsa for HeadOp<'_, S> {
    type Output = ();

    #[inline(always)]
    fn run<I: simd::Isa>(self) {
        let d = self.dim;
        let group = self.q.len() / d;
        let (nt, nl) = (self.toks.slots.len(), self.lms.slots.len());
        let nc = nt + nl;
        if nc == 0 {
            // Unreachable through `decode` (the newest position is always retained and
            // always its own candidate); an empty softmax would give zeros.
            self.out.fill(0.0);
            return;
        }
        let (stride, add, hw) = (self.stride, self.add, self.hw);
        let scores = &mut self.scores[..group * nc];
        let conv = self.conv;
        let chunk = (conv.len() / d).max(1);
        let parts = [(self.toks, 0), (self.lms, nt)];
        for (cands, c0) in parts {
            if let Some(k) = S::direct(cands.k) {
                let rows = Slotted {
                    slots: cands.slots,
                    stride,
                    add,
                };
                let g = Group {
                    x: k,
                    rows,
                    n: cands.slots.len(),
                };
                scores_all::<I, _>(self.q, g, d, scores, nc, c0);
            } else {
                for (i, slots) in cands.slots.chunks(chunk).enumerate() {
                    let x = &mut conv[..slots.len() * d];
                    S::gather(cands.k, (slots, stride, add), d, x, hw);
                    let rows = Packed { stride: d, add: 0 };
                    let g = Group {
                        x,
                        rows,
                        n: slots.len(),
                    };
                    scores_all::<I, _>(self.q, g, d, scores, nc, c0 + i * chunk);
                }
            }
        }
        for row in scores.chunks_exact_mut(nc) {
            let m = max_g::<I>(row);
            let z = simd::exp_shift_sum_g::<I>(row, -m);
            simd::scale_g::<I>(1.0 / z, row);
        }
        let mut first = true;
        for (cands, c0) in parts {
            if let Some(v) = S::direct(cands.v) {
                let rows = Slotted {
                    slots: cands.slots,
                    stride,
                    add,
                };
                let g = Group {
                    x: v,
                    rows,
                    n: cands.slots.len(),
                };
                values_all::<I, _>(scores, nc, c0, g, d, self.out, first);
                first = false;
            } else {
                for (i, slots) in cands.slots.chunks(chunk).enumerate() {
                    let x = &mut conv[..slots.len() * d];
                    S::gather(cands.v, (slots, stride, add), d, x, hw);
                    let rows = Packed { stride: d, add: 0 };
                    let g = Group {
                        x,
                        rows,
                        n: slots.len(),
                    };
                    values_all::<I, _>(scores, nc, c0 + i * chunk, g, d, self.out, first);
                    first = false;
                }
            }
        }
        if let Some((mass, slots)) = self.mass {
            for (c, &slot) in slots.iter().enumerate() {
                let w: f32 = (0..group).map(|hh| scores[hh * nc + c]).sum();
                mass[slot] += w;
            }
        }
    }
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
            + (self.acc_k.capacity() + self.acc_v.capacity()) * size_of::<f64>()
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

    /// Appends one position (`k_row`, `v_row`: `kv_heads · dim` each). On a full cache
    /// applies the eviction policy; on any error nothing changes.
    pub fn push(&mut self, k_row: &[f32], v_row: &[f32]) -> Result<()> {
        self.check_valid()?;
        for (what, r) in [("k_row", k_row), ("v_row", v_row)] {
            if r.len() != self.row {
                return Err(KernelError::ShapeMismatch {
                    what,
                    expected: self.row,
                    got: r.len(),
                });
            }
            if let Some(index) = r.iter().position(|&x| !S::representable(x)) {
                return Err(KernelError::NonFinite { what, index });
            }
        }
        let next_total = self.total.checked_add(1).ok_or(KernelError::Overflow {
            what: "position counter",
        })?;
        if self.len == self.capacity {
            match self.policy {
                EvictionPolicy::Error => {
                    return Err(KernelError::CapacityExceeded {
                        capacity: self.capacity,
                    })
                }
                EvictionPolicy::SlidingWindow => {
                    self.head = self.index().phys(1 % self.capacity);
                    self.len -= 1;
                }
                EvictionPolicy::HeavyHitter { recent } => self.evict_heavy(recent)?,
            }
        }
        let slot = self.index().phys(self.len);
        let r = self.row;
        // f16 rows are converted by F16C unless the scalar level is forced.
        let hw = self.level != simd::SimdLevel::Scalar;
        S::store(k_row, &mut self.k[slot * r..(slot + 1) * r], hw);
        S::store(v_row, &mut self.v[slot * r..(slot + 1) * r], hw);
        if !self.pos.is_empty() {
            self.pos[slot] = self.total;
            self.mass[slot] = 0.0;
            self.flags[slot] = 0;
        }
        self.len += 1;
        for (a, &x) in self.acc_k.iter_mut().zip(k_row) {
            *a += f64::from(x);
        }
        for (a, &x) in self.acc_v.iter_mut().zip(v_row) {
            *a += f64::from(x);
        }
        self.acc_n += 1;
        if self.acc_n == self.block_size {
            let ls = self.completed % self.lm_slots;
            let inv = 1.0 / self.acc_n as f64;
            let dst_k = &mut self.lm_k[ls * r..(ls + 1) * r];
            let dst_v = &mut self.lm_v[ls * r..(ls + 1) * r];
            // Convert the means through a tiny f32 buffer, one head at a time.
            let d = self.dim;
            let buf = &mut self.scratch.row;
            for h in 0..self.kv_heads {
                for (b, a) in buf.iter_mut().zip(&self.acc_k[h * d..(h + 1) * d]) {
                    *b = (a * inv) as f32;
                }
                S::store(&buf[..d], &mut dst_k[h * d..(h + 1) * d], hw);
                for (b, a) in buf.iter_mut().zip(&self.acc_v[h * d..(h + 1) * d]) {
                    *b = (a * inv) as f32;
                }
                S::store(&buf[..d], &mut dst_v[h * d..(h + 1) * d], hw);
            }
            self.acc_k.iter_mut().for_each(|a| *a = 0.0);
            self.acc_v.iter_mut().for_each(|a| *a = 0.0);
            self.acc_n = 0;
            self.completed += 1;
        }
        self.total = next_total;
        Ok(())
    }

    /// Heavy-hitter eviction of a batch of unprotected, lowest-mass positions, then an
    /// in-place stable compaction of the ring (O(capacity), once per batch).
    fn evict_heavy(&mut self, recent: usize) -> Result<()> {
        let (head, cap) = (self.head, self.capacity);
        let phys = move |l: usize| (head + l) % cap;
        let unprotected = self.len.saturating_sub(recent);
        self.order.clear();
        for l in 0..unprotected {
            let s = phys(l);
            if self.flags[s] & PINNED == 0 {
                self.order.push(s);
            }
        }
        if self.order.is_empty() {
            return Err(KernelError::CapacityExceeded {
                capacity: self.capacity,
            });
        }
        let batch = (self.capacity / 16).max(1).min(self.order.len());
        let (mass, pos) = (&self.mass, &self.pos);
        self.order.select_nth_unstable_by(batch - 1, |&a, &b| {
            mass[a].total_cmp(&mass[b]).then(pos[a].cmp(&pos[b]))
        });
        for &s in &self.order[..batch] {
            self.flags[s] |= VICTIM;
        }
        let r = self.row;
        let mut w = 0usize;
        for l in 0..self.len {
            let s = phys(l);
            if self.flags[s] & VICTIM != 0 {
                continue;
            }
            if w != l {
                let dst = phys(w);
                self.k.copy_within(s * r..(s + 1) * r, dst * r);
                self.v.copy_within(s * r..(s + 1) * r, dst * r);
                self.pos[dst] = self.pos[s];
                self.mass[dst] = self.mass[s];
                self.flags[dst] = self.flags[s];
            }
            w += 1;
        }
        self.len = w;
        self.contiguous = false;
        Ok(())
    }

    /// Sizes the decode scratch for `pattern` and `q_heads` so that later `decode` calls
    /// with this pattern allocate nothing (the first `decode` does this implicitly).
    pub fn reserve_decode(&mut self, pattern: &SparsePattern, q_heads: usize) -> Result<()> {
        self.check_valid()?;
        if q_heads == 0 || q_heads.checked_rem(self.kv_heads) != Some(0) {
            return Err(KernelError::HeadsNotDivisible {
                q_heads,
                kv_heads: self.kv_heads,
            });
        }
        let group = q_heads / self.kv_heads;
        // Candidates per step: bounded by the pattern and by what the cache can hold.
        let edges = pattern.max_edges_per_query(usize::MAX);
        let tok = edges.min(self.capacity);
        let all = edges.min(self.capacity.saturating_add(self.lm_slots));
        let overflow = KernelError::Overflow {
            what: "decode scratch",
        };
        let cand = all.checked_mul(group).ok_or(overflow.clone())?;
        for (v, n) in [(&mut self.scratch.tok, tok), (&mut self.scratch.lm, all)] {
            if v.capacity() < n {
                let extra = n - v.len();
                v.try_reserve_exact(extra).map_err(|_| overflow.clone())?;
            }
        }
        if S::direct(&[]).is_none() {
            // f16: rows are converted in chunks, so this stays small (see `CONV_ROWS`).
            let rows = CONV_ROWS.min(self.capacity.div_ceil(4)).min(all).max(1);
            let n = rows.checked_mul(self.dim).ok_or(overflow)?;
            ensure_len(&mut self.scratch.conv, n)?;
        }
        ensure_len(&mut self.scratch.scores, cand)
    }

    /// Attends the newest position with `q_row` (`q_heads · dim`) under `pattern`, writing
    /// `out_row` (`q_heads · dim`). See the module docs for the formula and exactness.
    pub fn decode(
        &mut self,
        pattern: &SparsePattern,
        q_row: &[f32],
        out_row: &mut [f32],
    ) -> Result<()> {
        self.check_valid()?;
        pattern.validate()?;
        if pattern.landmarks && pattern.block_size != self.block_size {
            return Err(KernelError::ShapeMismatch {
                what: "pattern.block_size (must equal the cache block_size)",
                expected: self.block_size,
                got: pattern.block_size,
            });
        }
        let d = self.dim;
        if q_row.is_empty() || q_row.len().checked_rem(d) != Some(0) {
            return Err(KernelError::ShapeMismatch {
                what: "q_row (q_heads · dim)",
                expected: (q_row.len() / d).max(1) * d,
                got: q_row.len(),
            });
        }
        let q_heads = q_row.len() / d;
        if q_heads.checked_rem(self.kv_heads) != Some(0) {
            return Err(KernelError::HeadsNotDivisible {
                q_heads,
                kv_heads: self.kv_heads,
            });
        }
        if out_row.len() != q_row.len() {
            return Err(KernelError::ShapeMismatch {
                what: "out_row",
                expected: q_row.len(),
                got: out_row.len(),
            });
        }
        if let Some(index) = q_row.iter().position(|x| !x.is_finite()) {
            return Err(KernelError::NonFinite {
                what: "q_row",
                index,
            });
        }
        if self.len == 0 {
            return Err(KernelError::EmptyCache);
        }
        self.reserve_decode(pattern, q_heads)?;

        let (i, n) = (self.total - 1, self.total);
        let idx = Index {
            pos: &self.pos,
            head: self.head,
            len: self.len,
            cap: self.capacity,
            total: self.total,
            contiguous: self.contiguous,
        };
        let sc = &mut self.scratch;
        sc.tok.clear();
        sc.lm.clear();
        let mut hint = usize::MAX;
        {
            let tok = &mut sc.tok;
            // Candidates older than the local window (log-stride look-back, globals) are
            // cold; the next step's log-stride rows sit one slot later, so fetch those now.
            let near = i.saturating_sub(pattern.window);
            let (k, v, r, cap) = (&self.k, &self.v, self.row, self.capacity);
            let mut take = |j: usize, s: usize| {
                tok.push(s);
                if j < near {
                    let next = if s + 1 == cap { 0 } else { s + 1 };
                    prefetch_row(k, next * r, r);
                    prefetch_row(v, next * r, r);
                }
            };
            if self.contiguous {
                // Retained positions are `[first, total)` at slots `head + (j − first)` mod
                // capacity: an inline subtraction per candidate instead of a lookup.
                let (first, head) = (self.total - self.len, self.head);
                pattern.for_each_token(i, n, |j| {
                    if j >= first {
                        let s = head + (j - first);
                        take(j, if s >= cap { s - cap } else { s });
                    }
                });
            } else {
                pattern.for_each_token(i, n, |j| {
                    if let Some(s) = idx.find(j, &mut hint) {
                        take(j, s);
                    }
                });
            }
        }
        {
            let lm = &mut sc.lm;
            let (lo, hi) = (self.completed.saturating_sub(self.lm_slots), self.completed);
            let slots = self.lm_slots;
            pattern.for_each_landmark(i, n, |b| {
                if b >= lo && b < hi {
                    lm.push(b % slots);
                }
            });
        }

        let track_mass = !self.mass.is_empty();
        let level = self.level;
        let (r, hk) = (self.row, self.kv_heads);
        let group = q_heads / hk;
        let mut mass = if track_mass {
            Some(&mut self.mass[..])
        } else {
            None
        };
        let f16c_ok = S::direct(&[]).is_none() && simd::f16c_available();
        // f16 rows are converted by F16C unless the scalar level is forced.
        let hw = level != simd::SimdLevel::Scalar && f16c_ok;
        for kh in 0..hk {
            let q = &q_row[kh * group * d..(kh + 1) * group * d];
            let out = &mut out_row[kh * group * d..(kh + 1) * group * d];
            let mass = mass.as_deref_mut().map(|m| (m, &sc.tok[..]));
            let op = HeadOp {
                toks: Cands {
                    k: &self.k,
                    v: &self.v,
                    slots: &sc.tok,
                },
                lms: Cands {
                    k: &self.lm_k,
                    v: &self.lm_v,
                    slots: &sc.lm,
                },
                stride: r,
                add: kh * d,
                q,
                out,
                scores: &mut sc.scores,
                dim: d,
                mass,
                conv: &mut sc.conv,
                hw,
            };
            simd::dispatch(level, op);
        }
        if track_mass {
            for &g in &pattern.global_tokens {
                let mut hint = usize::MAX;
                if let Some(s) = idx.find(g, &mut hint) {
                    if !pattern.causal || g <= i {
                        self.flags[s] |= PINNED;
                    }
                }
            }
        }
        Ok(())
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
