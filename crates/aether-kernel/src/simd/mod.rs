//! The SIMD door: vector primitives used by every kernel (dot, axpy, scale, exp, fast
//! exp), the matrix routines of the head and trainer ([`linalg`]), the f16 conversion of
//! the f16 cache and the AVX-512 tile kernels of sparse and dense attention.
//!
//! One portable generic body per operation, written against the crate-private 16-lane
//! vector trait `Isa`; three implementations plug into it:
//!
//! | level | vector | chosen when |
//! |---|---|---|
//! | [`SimdLevel::Avx512`] | one `__m512` | x86-64 with AVX-512F (+AVX2, FMA) |
//! | [`SimdLevel::Avx2Fma`] | two `__m256` | x86-64 with AVX2 and FMA |
//! | [`SimdLevel::Scalar`] | `[f32; 16]` | everywhere (the reference path) |
//!
//! With `std` the level is detected at run time (`is_x86_feature_detected!`), so
//! one binary serves every x86-64 machine; without `std` it is fixed at compile
//! time by `cfg!(target_feature = …)` (the portable scalar body on
//! microcontrollers). Under `std`, `AETHER_SIMD=scalar` (or `avx2+fma`) caps the
//! detected level for the whole process (read once, at the first detection): the way
//! to pin a binary to the portable path, e.g. to reproduce a microcontroller's bits on
//! the host; an unknown name is ignored. A call runs at the level of the [`Exec`]
//! passed down to it (the plain calls: [`Exec::detect`]); tests force each path with an
//! explicit `Exec` and check the [`Ran`] report, so no process-wide switch exists.
//!
//! Every intrinsic and every feature check of the crate lives in this module, one
//! file per instruction set (`scalar`, `x86_avx2`, `x86_avx512` with the sparse and
//! dense tile kernels, `x86_f16c`); the kernels call the safe functions it exports.
//!
//! Fast exp ([`fast_exp`], used by the softmax of every kernel): Cephes-style
//! range reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`, a degree-5 polynomial for
//! `eʳ` and `2ⁿ` built in the exponent bits. **Error bound: relative error
//! ≤ [`FAST_EXP_MAX_REL_ERR`] (= 2⁻²¹ ≈ 4.8e-7, about 4 ulp) for
//! `x ∈ [-87.3, 88]`**; `x < -87.3` (including `-∞`) gives exactly `0`; `x > 88`
//! is clamped to `e⁸⁸`. Tests sweep the whole range against f64 `exp`.

use core::sync::atomic::{AtomicU8, Ordering};

/// A SIMD instruction-set level a kernel can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    /// Portable scalar code (16-lane arrays); always available.
    Scalar,
    /// x86-64 AVX2 + FMA (two 256-bit registers per 16-lane vector).
    Avx2Fma,
    /// x86-64 AVX-512F (one 512-bit register per 16-lane vector).
    Avx512,
}

impl SimdLevel {
    /// Every level, slowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Scalar, SimdLevel::Avx2Fma, SimdLevel::Avx512];

    /// The best level this machine supports (cached after the first call).
    pub fn detect() -> SimdLevel {
        match DETECTED.load(Ordering::Relaxed) {
            0 => {
                let l = detect_raw();
                DETECTED.store(l.code(), Ordering::Relaxed);
                l
            }
            c => SimdLevel::from_code(c),
        }
    }

    /// Whether this level can run on this machine.
    pub fn is_available(self) -> bool {
        self <= SimdLevel::detect()
    }

    /// Short name: `scalar`, `avx2+fma`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2Fma => "avx2+fma",
            SimdLevel::Avx512 => "avx512",
        }
    }

    fn code(self) -> u8 {
        match self {
            SimdLevel::Scalar => 1,
            SimdLevel::Avx2Fma => 2,
            SimdLevel::Avx512 => 3,
        }
    }

    fn from_code(c: u8) -> SimdLevel {
        match c {
            3 => SimdLevel::Avx512,
            2 => SimdLevel::Avx2Fma,
            _ => SimdLevel::Scalar,
        }
    }
}

impl PartialOrd for SimdLevel {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SimdLevel {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.code().cmp(&other.code())
    }
}

static DETECTED: AtomicU8 = AtomicU8::new(0);

/// The best level of this CPU, capped by `AETHER_SIMD` when set (std only).
#[cfg(feature = "std")]
fn detect_raw() -> SimdLevel {
    let cpu = detect_cpu();
    match std::env::var("AETHER_SIMD") {
        Ok(cap) => SimdLevel::ALL
            .into_iter()
            .find(|l| l.name() == cap)
            .map_or(cpu, |l| cpu.min(l)),
        Err(_) => cpu,
    }
}

#[cfg(not(feature = "std"))]
fn detect_raw() -> SimdLevel {
    detect_cpu()
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
fn detect_cpu() -> SimdLevel {
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
    if avx2 && std::is_x86_feature_detected!("avx512f") {
        SimdLevel::Avx512
    } else if avx2 {
        SimdLevel::Avx2Fma
    } else {
        SimdLevel::Scalar
    }
}

#[cfg(not(all(feature = "std", target_arch = "x86_64")))]
fn detect_cpu() -> SimdLevel {
    if cfg!(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "avx2",
        target_feature = "fma"
    )) {
        SimdLevel::Avx512
    } else if cfg!(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    )) {
        SimdLevel::Avx2Fma
    } else {
        SimdLevel::Scalar
    }
}

/// The level the plain kernel calls run at: the detected one.
pub fn active_level() -> SimdLevel {
    SimdLevel::detect()
}

impl SimdLevel {
    /// The level a kernel asked for `self` really runs at: `self`, or the best
    /// available level below it (scalar at worst).
    pub fn effective(self) -> SimdLevel {
        self.min(SimdLevel::detect())
    }
}

/// How a kernel call runs: its SIMD level and which tile kernels it may use.
///
/// A value passed down the call, never a process-wide switch: tests force a path
/// per call and run in parallel. The plain kernels use [`Exec::detect`]; the
/// `*_with` variants take one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exec {
    /// SIMD level (an unavailable level falls back, see [`SimdLevel::effective`]).
    pub level: SimdLevel,
    /// Whether causal sparse attention may run the AVX-512 query-tile kernel.
    pub query_tiles: bool,
    /// Whether dense attention may run the AVX-512 tile kernel.
    pub dense_tiles: bool,
}

impl Exec {
    /// The detected level with every tile kernel allowed (what the plain calls use).
    pub fn detect() -> Exec {
        Exec::at(SimdLevel::detect())
    }

    /// `level` with every tile kernel allowed.
    pub const fn at(level: SimdLevel) -> Exec {
        Exec {
            level,
            query_tiles: true,
            dense_tiles: true,
        }
    }

    /// This `Exec` with the sparse query-tile kernel allowed or not.
    pub const fn with_query_tiles(self, on: bool) -> Exec {
        Exec {
            query_tiles: on,
            ..self
        }
    }

    /// This `Exec` with the dense tile kernel allowed or not.
    pub const fn with_dense_tiles(self, on: bool) -> Exec {
        Exec {
            dense_tiles: on,
            ..self
        }
    }
}

impl Default for Exec {
    fn default() -> Exec {
        Exec::detect()
    }
}

/// What one kernel call ran on (returned by the `*_into_with` calls, so a test can
/// prove that a path ran without global counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ran {
    /// The SIMD level the call ran at.
    pub level: SimdLevel,
    /// Whether (some of) its rows ran on an AVX-512 tile kernel.
    pub tiles: bool,
}

/// Hints the CPU to bring `row` elements of `buf` from `start` into cache (no-op off x86-64).
#[inline(always)]
pub(crate) fn prefetch_row<T>(buf: &[T], start: usize, row: usize) {
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

/// Views an f32 scratch region as u32 values (candidate indices of the sparse kernel).
pub(crate) fn as_u32(s: &mut [f32]) -> &mut [u32] {
    // SAFETY: f32 and u32 have the same size and alignment and every bit pattern is
    // valid for both; the new slice covers exactly the memory of `s` and borrows it.
    unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u32>(), s.len()) }
}

/// Lanes of the portable vector type.
pub const LANES: usize = 16;

/// Guaranteed bound of [`fast_exp`]'s relative error on `[-87.3, 88]` (2⁻²¹).
pub const FAST_EXP_MAX_REL_ERR: f32 = 1.0 / 2_097_152.0;

const EXP_LO: f32 = -87.3;
const EXP_HI: f32 = 88.0;
const LOG2E: f32 = core::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P0: f32 = 1.987_569_1e-4;
const P1: f32 = 1.398_199_9e-3;
const P2: f32 = 8.333_452e-3;
const P3: f32 = 4.166_579_6e-2;
const P4: f32 = 0.166_666_65;
const P5: f32 = 0.5;

/// A 16-lane f32 vector instruction set; the kernels are generic over it.
///
/// Every method is `#[inline(always)]` so the bodies compile inside the
/// `#[target_feature]` entry points of [`dispatch`]. Slices passed to
/// `load`/`store` must hold at least [`LANES`] values (checked).
pub(crate) trait Isa: Copy {
    /// The 16-lane vector.
    type V: Copy;
    fn zero() -> Self::V;
    fn splat(x: f32) -> Self::V;
    fn load(s: &[f32]) -> Self::V;
    /// Loads `min(s.len(), 16)` values, zero-filling the rest.
    fn load_partial(s: &[f32]) -> Self::V;
    fn store(s: &mut [f32], v: Self::V);
    /// Stores the first `min(s.len(), 16)` lanes.
    fn store_partial(s: &mut [f32], v: Self::V);
    fn add(a: Self::V, b: Self::V) -> Self::V;
    fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c`.
    fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Lane max; NaN lanes of `a` give `b`.
    fn max(a: Self::V, b: Self::V) -> Self::V;
    /// Lane min; NaN lanes of `a` give `b`.
    fn min(a: Self::V, b: Self::V) -> Self::V;
    fn reduce_add(a: Self::V) -> f32;
    /// The four horizontal sums of `a` (one shuffle tree where the ISA allows it).
    #[inline(always)]
    fn reduce_add4(a: [Self::V; 4]) -> [f32; 4] {
        a.map(Self::reduce_add)
    }
    fn reduce_max(a: Self::V) -> f32;
    /// Lanes `>= count` replaced by `fill`.
    fn keep_first(a: Self::V, count: usize, fill: f32) -> Self::V;
    /// Fast exp with the bound of the module docs.
    fn exp(x: Self::V) -> Self::V;
    /// Whether the matrix kernels of [`linalg`] fuse `a·b + c` (`mul_add`) at this level.
    const FUSED: bool;
    /// Whether this is the portable [`Scalar`] level, whose decode loops are arranged for
    /// scalar registers (same operations per element, so the same bits).
    const SCALAR: bool = false;
}

mod f16;
pub mod int;
pub mod linalg;
mod scalar;
pub(crate) use f16::{f16_bits_to_f32, f16_rows_to_f32, f16c_available, f32_to_f16};
pub use int::{matvec_i8, scores_i8, weighted_i8};
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
pub(crate) use linalg::arm_vfp;
pub use linalg::{add_rows, col_sum_acc, gemm_acc, gemm_tn_acc, vec_mat, vec_mat_add};
pub use scalar::fast_exp;
pub(crate) use scalar::Scalar;

#[cfg(target_arch = "x86_64")]
mod x86_avx2;
#[cfg(target_arch = "x86_64")]
mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_f16c;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_avx512::{dense_tile, sparse_tile, transpose16, Avx512, Avx512Token};

/// Off x86-64 no tile kernel exists: the token that would unlock one cannot be made.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug)]
pub(crate) enum Avx512Token {}

/// A computation generic over the instruction set (the dispatch point's argument).
pub(crate) trait WithIsa {
    type Output;
    /// The generic body; implementations must be `#[inline(always)]`.
    fn run<I: Isa>(self) -> Self::Output;
}

/// Runs `w` at `level` (falls back to scalar if `level` is unavailable).
#[inline]
pub(crate) fn dispatch<W: WithIsa>(level: SimdLevel, w: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        let best = SimdLevel::detect();
        if level == SimdLevel::Avx512 && best >= SimdLevel::Avx512 {
            // SAFETY: AVX-512F, AVX2 and FMA were detected (or compiled in) above.
            return unsafe { x86_avx512::run_avx512(w) };
        }
        if level >= SimdLevel::Avx2Fma && best >= SimdLevel::Avx2Fma {
            // SAFETY: AVX2 and FMA were detected (or compiled in) above.
            return unsafe { x86_avx2::run_avx2(w) };
        }
    }
    let _ = level;
    w.run::<Scalar>()
}

/// `Σ a[i]·b[i]` over the first `len` values (generic body).
#[inline(always)]
pub(crate) fn dot_g<I: Isa>(a: &[f32], b: &[f32], len: usize) -> f32 {
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc0 = I::zero();
    let mut acc1 = I::zero();
    let mut c = 0;
    while c + 2 * LANES <= len {
        acc0 = I::fma(I::load(&a[c..]), I::load(&b[c..]), acc0);
        acc1 = I::fma(I::load(&a[c + LANES..]), I::load(&b[c + LANES..]), acc1);
        c += 2 * LANES;
    }
    if c + LANES <= len {
        acc0 = I::fma(I::load(&a[c..]), I::load(&b[c..]), acc0);
        c += LANES;
    }
    if c < len {
        acc1 = I::fma(I::load_partial(&a[c..]), I::load_partial(&b[c..]), acc1);
    }
    I::reduce_add(I::add(acc0, acc1))
}

/// Four dot products of `q` with `rows[r]` over the first `len` values (generic body).
#[inline(always)]
pub(crate) fn dot4_g<I: Isa>(q: &[f32], rows: [&[f32]; 4], len: usize) -> [f32; 4] {
    let q = &q[..len];
    let rows = rows.map(|r| &r[..len]);
    let mut acc = [I::zero(); 4];
    let mut c = 0;
    while c + LANES <= len {
        let qv = I::load(&q[c..]);
        for (a, r) in acc.iter_mut().zip(&rows) {
            *a = I::fma(qv, I::load(&r[c..]), *a);
        }
        c += LANES;
    }
    if c < len {
        let qv = I::load_partial(&q[c..]);
        for (a, r) in acc.iter_mut().zip(&rows) {
            *a = I::fma(qv, I::load_partial(&r[c..]), *a);
        }
    }
    I::reduce_add4(acc)
}

/// `y[i] += alpha·x[i]` over the first `len` values (generic body).
#[inline(always)]
pub(crate) fn axpy_g<I: Isa>(alpha: f32, x: &[f32], y: &mut [f32], len: usize) {
    let (x, y) = (&x[..len], &mut y[..len]);
    let a = I::splat(alpha);
    let mut c = 0;
    while c + LANES <= len {
        let r = I::fma(a, I::load(&x[c..]), I::load(&y[c..]));
        I::store(&mut y[c..], r);
        c += LANES;
    }
    if c < len {
        let r = I::fma(a, I::load_partial(&x[c..]), I::load_partial(&y[c..]));
        I::store_partial(&mut y[c..], r);
    }
}

/// `y[i] *= alpha` (generic body).
#[inline(always)]
pub(crate) fn scale_g<I: Isa>(alpha: f32, y: &mut [f32]) {
    let len = y.len();
    let a = I::splat(alpha);
    let mut c = 0;
    while c + LANES <= len {
        let r = I::mul(a, I::load(&y[c..]));
        I::store(&mut y[c..], r);
        c += LANES;
    }
    if c < len {
        let r = I::mul(a, I::load_partial(&y[c..]));
        I::store_partial(&mut y[c..], r);
    }
}

/// `x[i] = fast_exp(x[i] + shift)`, returning the sum (generic body).
#[inline(always)]
pub(crate) fn exp_shift_sum_g<I: Isa>(x: &mut [f32], shift: f32) -> f32 {
    let len = x.len();
    let mv = I::splat(shift);
    let mut acc = I::zero();
    let mut c = 0;
    while c + LANES <= len {
        let e = I::exp(I::add(I::load(&x[c..]), mv));
        I::store(&mut x[c..], e);
        acc = I::add(acc, e);
        c += LANES;
    }
    if c < len {
        let e = I::exp(I::add(I::load_partial(&x[c..]), mv));
        let e = I::keep_first(e, len - c, 0.0);
        I::store_partial(&mut x[c..], e);
        acc = I::add(acc, e);
    }
    I::reduce_add(acc)
}

struct DotOp<'a>(&'a [f32], &'a [f32]);
impl WithIsa for DotOp<'_> {
    type Output = f32;
    #[inline(always)]
    fn run<I: Isa>(self) -> f32 {
        let len = self.0.len().min(self.1.len());
        dot_g::<I>(self.0, self.1, len)
    }
}

struct AxpyOp<'a>(f32, &'a [f32], &'a mut [f32]);
impl WithIsa for AxpyOp<'_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let len = self.1.len().min(self.2.len());
        axpy_g::<I>(self.0, self.1, self.2, len)
    }
}

struct ScaleOp<'a>(f32, &'a mut [f32]);
impl WithIsa for ScaleOp<'_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        scale_g::<I>(self.0, self.1)
    }
}

struct ExpOp<'a>(&'a mut [f32], f32);
impl WithIsa for ExpOp<'_> {
    type Output = f32;
    #[inline(always)]
    fn run<I: Isa>(self) -> f32 {
        exp_shift_sum_g::<I>(self.0, -self.1)
    }
}

/// `Σ a[i]·b[i]` over the common length, at the detected level.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_at(active_level(), a, b)
}

/// `y[i] += alpha · x[i]` over the common length, at the detected level.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    axpy_at(active_level(), alpha, x, y)
}

/// `y[i] *= alpha`, at the detected level.
#[inline]
pub fn scale(alpha: f32, y: &mut [f32]) {
    scale_at(active_level(), alpha, y)
}

/// `e^x`, correctly rounded to within libm's accuracy (use [`fast_exp`] in hot loops).
#[inline]
pub fn exp(x: f32) -> f32 {
    libm::expf(x)
}

/// `x[i] = fast_exp(x[i] − m)` in place, returning `Σ x[i]` (softmax numerator), at the detected level.
#[inline]
pub fn exp_sub_sum(x: &mut [f32], m: f32) -> f32 {
    exp_sub_sum_at(active_level(), x, m)
}

/// [`dot`] at an explicit level (scalar when unavailable).
pub fn dot_at(level: SimdLevel, a: &[f32], b: &[f32]) -> f32 {
    dispatch(level, DotOp(a, b))
}

/// [`axpy`] at an explicit level (scalar when unavailable).
pub fn axpy_at(level: SimdLevel, alpha: f32, x: &[f32], y: &mut [f32]) {
    dispatch(level, AxpyOp(alpha, x, y))
}

/// [`scale`] at an explicit level (scalar when unavailable).
pub fn scale_at(level: SimdLevel, alpha: f32, y: &mut [f32]) {
    dispatch(level, ScaleOp(alpha, y))
}

/// [`exp_sub_sum`] at an explicit level (scalar when unavailable).
pub fn exp_sub_sum_at(level: SimdLevel, x: &mut [f32], m: f32) -> f32 {
    dispatch(level, ExpOp(x, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_special_values() {
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(fast_exp(-100.0), 0.0);
        assert!((fast_exp(0.0) - 1.0).abs() <= 1e-7);
        assert!(fast_exp(88.0).is_finite());
        assert!(fast_exp(1000.0).is_finite());
    }

    #[test]
    fn fast_exp_scalar_within_bound() {
        let mut worst = 0.0f64;
        let mut x = -87.3f32;
        while x <= 88.0 {
            let e = f64::from(x).exp();
            let rel = ((f64::from(fast_exp(x)) - e) / e).abs();
            worst = worst.max(rel);
            x += 0.0007;
        }
        assert!(worst <= f64::from(FAST_EXP_MAX_REL_ERR), "worst {worst}");
    }

    #[test]
    fn levels_are_ordered_and_scalar_always_available() {
        assert!(SimdLevel::Scalar < SimdLevel::Avx2Fma && SimdLevel::Avx2Fma < SimdLevel::Avx512);
        assert!(SimdLevel::Scalar.is_available());
        assert_eq!(active_level(), SimdLevel::detect());
        assert_eq!(SimdLevel::Avx512.effective(), SimdLevel::detect());
    }
}
