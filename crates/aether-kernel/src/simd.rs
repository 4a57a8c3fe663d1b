//! Vector primitives used by every kernel: dot, axpy, scale, exp, fast exp.
//!
//! One portable generic body per operation, written against the 16-lane vector
//! trait [`Isa`]; three implementations plug into it:
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
//! microcontrollers). [`force_level`] pins a level (tests and benchmarks force
//! each path this way) and [`runs`] counts how often each level ran a kernel, so
//! a test can fail when an available path never ran.
//!
//! Fast exp ([`fast_exp`], used by the softmax of every kernel): Cephes-style
//! range reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`, a degree-5 polynomial for
//! `eʳ` and `2ⁿ` built in the exponent bits. **Error bound: relative error
//! ≤ [`FAST_EXP_MAX_REL_ERR`] (= 2⁻²¹ ≈ 4.8e-7, about 4 ulp) for
//! `x ∈ [-87.3, 88]`**; `x < -87.3` (including `-∞`) gives exactly `0`; `x > 88`
//! is clamped to `e⁸⁸`. Tests sweep the whole range against f64 `exp`.

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

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

    fn index(self) -> usize {
        self.code() as usize - 1
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
static FORCED: AtomicU8 = AtomicU8::new(0);
static RUNS: [AtomicUsize; 3] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];

#[cfg(all(feature = "std", target_arch = "x86_64"))]
fn detect_raw() -> SimdLevel {
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
fn detect_raw() -> SimdLevel {
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

/// Pins every kernel to `level` (`None` restores automatic detection).
///
/// Returns `false` and changes nothing when `level` is not available here.
/// Process-wide: tests that force levels should not run concurrently with
/// tests that assume the automatic one.
pub fn force_level(level: Option<SimdLevel>) -> bool {
    match level {
        None => {
            FORCED.store(0, Ordering::Relaxed);
            true
        }
        Some(l) if l.is_available() => {
            FORCED.store(l.code(), Ordering::Relaxed);
            true
        }
        Some(_) => false,
    }
}

/// The level kernels use now: the forced one, else the detected one.
pub fn active_level() -> SimdLevel {
    match FORCED.load(Ordering::Relaxed) {
        0 => SimdLevel::detect(),
        c => SimdLevel::from_code(c),
    }
}

/// How many kernel calls (attention calls, slice primitives) ran at `level` so far.
pub fn runs(level: SimdLevel) -> usize {
    RUNS[level.index()].load(Ordering::Relaxed)
}

/// The active level, counted as one run (called once per kernel call).
pub(crate) fn select_level() -> SimdLevel {
    let l = active_level();
    RUNS[l.index()].fetch_add(1, Ordering::Relaxed);
    l
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
}

/// Portable scalar implementation (the reference path).
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

/// Scalar fast exp, the same algorithm as the vector paths (error bound in the module docs).
#[inline(always)]
// max/min on purpose: unlike `clamp`, they never panic and map a NaN input to a bound.
#[allow(clippy::manual_clamp)]
pub fn fast_exp(x: f32) -> f32 {
    let xc = x.max(EXP_LO).min(EXP_HI);
    let t = xc * LOG2E + 0.5;
    let mut fi = t as i32;
    if (fi as f32) > t {
        fi -= 1;
    }
    let fx = fi as f32;
    let r = xc - fx * LN2_HI - fx * LN2_LO;
    let mut y = P0;
    y = y * r + P1;
    y = y * r + P2;
    y = y * r + P3;
    y = y * r + P4;
    y = y * r + P5;
    let y = y * r * r + r + 1.0;
    let pow2 = f32::from_bits(((fi + 127) as u32) << 23);
    if x < EXP_LO {
        0.0
    } else {
        y * pow2
    }
}

impl Isa for Scalar {
    type V = [f32; LANES];
    #[inline(always)]
    fn zero() -> Self::V {
        [0.0; LANES]
    }
    #[inline(always)]
    fn splat(x: f32) -> Self::V {
        [x; LANES]
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self::V {
        let mut v = [0.0; LANES];
        v.copy_from_slice(&s[..LANES]);
        v
    }
    #[inline(always)]
    fn load_partial(s: &[f32]) -> Self::V {
        let mut v = [0.0; LANES];
        let n = s.len().min(LANES);
        v[..n].copy_from_slice(&s[..n]);
        v
    }
    #[inline(always)]
    fn store(s: &mut [f32], v: Self::V) {
        s[..LANES].copy_from_slice(&v);
    }
    #[inline(always)]
    fn store_partial(s: &mut [f32], v: Self::V) {
        let n = s.len().min(LANES);
        s[..n].copy_from_slice(&v[..n]);
    }
    #[inline(always)]
    fn add(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn mul(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        core::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn max(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| if a[i] > b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn min(a: Self::V, b: Self::V) -> Self::V {
        core::array::from_fn(|i| if a[i] < b[i] { a[i] } else { b[i] })
    }
    #[inline(always)]
    fn reduce_add(a: Self::V) -> f32 {
        // Pairwise, like the vector paths' tree reduction.
        let mut w = a;
        let mut len = LANES;
        while len > 1 {
            len /= 2;
            for i in 0..len {
                w[i] += w[i + len];
            }
        }
        w[0]
    }
    #[inline(always)]
    fn reduce_max(a: Self::V) -> f32 {
        a.iter()
            .copied()
            .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m })
    }
    #[inline(always)]
    fn keep_first(a: Self::V, count: usize, fill: f32) -> Self::V {
        core::array::from_fn(|i| if i < count { a[i] } else { fill })
    }
    #[inline(always)]
    fn exp(x: Self::V) -> Self::V {
        core::array::from_fn(|i| fast_exp(x[i]))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{transpose16, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use core::arch::x86_64::*;

    /// AVX-512F implementation.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512;

    /// AVX2 + FMA implementation (16 lanes as two 8-lane halves).
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2;

    impl Isa for Avx512 {
        type V = __m512;
        #[inline(always)]
        fn zero() -> __m512 {
            // SAFETY: only reached inside `run_avx512`, which requires AVX-512F (detected).
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        fn splat(x: f32) -> __m512 {
            // SAFETY: as in `zero`.
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        fn load(s: &[f32]) -> __m512 {
            let s = &s[..LANES];
            // SAFETY: `s` holds 16 floats (sliced above); AVX-512F as in `zero`.
            unsafe { _mm512_loadu_ps(s.as_ptr()) }
        }
        #[inline(always)]
        fn load_partial(s: &[f32]) -> __m512 {
            let n = s.len().min(LANES);
            let m: __mmask16 = ((1u32 << n) - 1) as u16;
            // SAFETY: the mask enables exactly the first `n <= s.len()` lanes, so no
            // byte outside `s` is read (masked lanes do not fault); AVX-512F as in `zero`.
            unsafe { _mm512_maskz_loadu_ps(m, s.as_ptr()) }
        }
        #[inline(always)]
        fn store(s: &mut [f32], v: __m512) {
            let s = &mut s[..LANES];
            // SAFETY: `s` holds 16 floats; AVX-512F as in `zero`.
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
        }
        #[inline(always)]
        fn store_partial(s: &mut [f32], v: __m512) {
            let n = s.len().min(LANES);
            let m: __mmask16 = ((1u32 << n) - 1) as u16;
            // SAFETY: only the first `n <= s.len()` lanes are written; AVX-512F as in `zero`.
            unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr(), m, v) }
        }
        #[inline(always)]
        fn add(a: __m512, b: __m512) -> __m512 {
            // SAFETY: as in `zero`.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        fn mul(a: __m512, b: __m512) -> __m512 {
            // SAFETY: as in `zero`.
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: as in `zero`.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        fn max(a: __m512, b: __m512) -> __m512 {
            // SAFETY: as in `zero`. vmaxps returns the second operand when either is NaN.
            unsafe { _mm512_max_ps(a, b) }
        }
        #[inline(always)]
        fn min(a: __m512, b: __m512) -> __m512 {
            // SAFETY: as in `zero`.
            unsafe { _mm512_min_ps(a, b) }
        }
        #[inline(always)]
        fn reduce_add(a: __m512) -> f32 {
            // SAFETY: as in `zero`.
            unsafe {
                let lo = _mm512_castps512_ps256(a);
                let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
                let s8 = _mm256_add_ps(lo, hi);
                let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
                let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
                _mm_cvtss_f32(s1)
            }
        }
        #[inline(always)]
        fn reduce_add4(a: [__m512; 4]) -> [f32; 4] {
            // SAFETY: as in `zero`.
            unsafe {
                let [a, b, c, d] = a;
                // Quarters: [a.q0+a.q2, a.q1+a.q3, b.q0+b.q2, b.q1+b.q3], same for c, d.
                let ab = _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                    _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
                );
                let cd = _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b01_00_01_00>(c, d),
                    _mm512_shuffle_f32x4::<0b11_10_11_10>(c, d),
                );
                // Quarter k now holds four partial sums of input k.
                let s = _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b10_00_10_00>(ab, cd),
                    _mm512_shuffle_f32x4::<0b11_01_11_01>(ab, cd),
                );
                let t = _mm512_add_ps(s, _mm512_permute_ps::<0b10_11_00_01>(s));
                let t = _mm512_add_ps(t, _mm512_permute_ps::<0b01_00_11_10>(t));
                let mut out = [0.0f32; LANES];
                _mm512_storeu_ps(out.as_mut_ptr(), t);
                [out[0], out[4], out[8], out[12]]
            }
        }
        #[inline(always)]
        fn reduce_max(a: __m512) -> f32 {
            // SAFETY: as in `zero`.
            unsafe { _mm512_reduce_max_ps(a) }
        }
        #[inline(always)]
        fn keep_first(a: __m512, count: usize, fill: f32) -> __m512 {
            let n = count.min(LANES);
            let m: __mmask16 = ((1u32 << n) - 1) as u16;
            // SAFETY: as in `zero`.
            unsafe { _mm512_mask_blend_ps(m, _mm512_set1_ps(fill), a) }
        }
        #[inline(always)]
        fn exp(x: __m512) -> __m512 {
            // SAFETY: as in `zero`; same algorithm as `fast_exp`.
            unsafe {
                let lo = _mm512_set1_ps(EXP_LO);
                let xc = _mm512_min_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(EXP_HI));
                let (y, fx) = Avx512::exp_poly(xc);
                let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(
                    _mm512_cvttps_epi32(fx),
                    _mm512_set1_epi32(127),
                ));
                let res = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
                let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, lo);
                _mm512_mask_blend_ps(under, res, _mm512_setzero_ps())
            }
        }
    }

    impl Avx512 {
        /// The shared core of [`Isa::exp`] and [`Avx512::exp_scalef`] for a clamped `xc`:
        /// `fx = ⌊xc·log₂e + ½⌋`, `r = xc − fx·ln 2` (two-part constant) and the degree-7
        /// polynomial `y ≈ e^r`, so `e^xc ≈ y · 2^fx`.
        #[inline(always)]
        fn exp_poly(xc: __m512) -> (__m512, __m512) {
            // SAFETY: as in `zero` (only reached where AVX-512F is enabled).
            unsafe {
                let t = _mm512_fmadd_ps(xc, _mm512_set1_ps(LOG2E), _mm512_set1_ps(0.5));
                let fx = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(t);
                let r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(LN2_HI), xc);
                let r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(LN2_LO), r);
                let mut y = _mm512_set1_ps(P0);
                y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P1));
                y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P2));
                y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P3));
                y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P4));
                y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(P5));
                let r2 = _mm512_mul_ps(r, r);
                y = _mm512_fmadd_ps(y, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
                (y, fx)
            }
        }

        /// [`Isa::exp`] for `x ≤ 88` (`x < −87.3`, `−∞` and NaN give 0): the same
        /// reduction and polynomial, the power of two applied by `vscalefps` (four
        /// instructions fewer); bit-identical to [`Isa::exp`] on `[−87.3, 88]`.
        /// Used by the dense tile kernel, whose inputs are `≤ 8`.
        #[inline(always)]
        pub(crate) fn exp_scalef(x: __m512) -> __m512 {
            // SAFETY: as in `zero` (only called where AVX-512F is enabled).
            unsafe {
                let lo = _mm512_set1_ps(EXP_LO);
                let (y, fx) = Avx512::exp_poly(_mm512_max_ps(x, lo));
                let keep = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, lo);
                _mm512_maskz_scalef_ps(keep, y, fx)
            }
        }
    }

    /// Transposes a 16 × 16 block held as 16 rows: `out[c]` = column `c` of the rows `r`
    /// (unpack, in-lane shuffles, then 128-bit lane shuffles). Used by the sparse and
    /// dense tile kernels.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(crate) fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        let mut t = [_mm512_setzero_ps(); 16];
        for k in 0..8 {
            t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
            t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
        }
        // Per 128-bit lane q: u[4g + m] holds column 4q + m of rows 4g .. 4g + 4.
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
            u[4 * g] = _mm512_shuffle_ps::<0x44>(a, c);
            u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
            u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(b, d);
            u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
        }
        for h in 0..2 {
            for m in 0..4 {
                let (a, b) = (u[8 * h + m], u[8 * h + 4 + m]);
                t[8 * h + m] = _mm512_shuffle_f32x4::<0x88>(a, b);
                t[8 * h + 4 + m] = _mm512_shuffle_f32x4::<0xDD>(a, b);
            }
        }
        let mut o = [_mm512_setzero_ps(); 16];
        for m in 0..8 {
            o[m] = _mm512_shuffle_f32x4::<0x88>(t[m], t[8 + m]);
            o[8 + m] = _mm512_shuffle_f32x4::<0xDD>(t[m], t[8 + m]);
        }
        o
    }

    impl Avx2 {
        #[inline(always)]
        fn mask8(count: usize) -> __m256 {
            // SAFETY: only reached inside `run_avx2`, which requires AVX2 + FMA (detected).
            unsafe {
                let iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let c = _mm256_set1_epi32(count.min(8) as i32);
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(c, iota))
            }
        }

        #[inline(always)]
        fn exp8(x: __m256) -> __m256 {
            // SAFETY: as in `mask8`; same algorithm as `fast_exp`.
            unsafe {
                let lo = _mm256_set1_ps(EXP_LO);
                let xc = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(EXP_HI));
                let t = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), _mm256_set1_ps(0.5));
                let fx = _mm256_floor_ps(t);
                let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_HI), xc);
                let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(LN2_LO), r);
                let mut y = _mm256_set1_ps(P0);
                y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P1));
                y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P2));
                y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P3));
                y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P4));
                y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(P5));
                let r2 = _mm256_mul_ps(r, r);
                y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
                let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
                    _mm256_cvttps_epi32(fx),
                    _mm256_set1_epi32(127),
                ));
                let res = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
                let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
                _mm256_andnot_ps(under, res)
            }
        }
    }

    impl Isa for Avx2 {
        type V = (__m256, __m256);
        #[inline(always)]
        fn zero() -> Self::V {
            // SAFETY: as in `Avx2::mask8`.
            unsafe { (_mm256_setzero_ps(), _mm256_setzero_ps()) }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self::V {
            // SAFETY: as in `Avx2::mask8`.
            unsafe { (_mm256_set1_ps(x), _mm256_set1_ps(x)) }
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self::V {
            let s = &s[..LANES];
            // SAFETY: `s` holds 16 floats; AVX2 as in `Avx2::mask8`.
            unsafe {
                (
                    _mm256_loadu_ps(s.as_ptr()),
                    _mm256_loadu_ps(s.as_ptr().add(8)),
                )
            }
        }
        #[inline(always)]
        fn load_partial(s: &[f32]) -> Self::V {
            let mut buf = [0.0f32; LANES];
            let n = s.len().min(LANES);
            buf[..n].copy_from_slice(&s[..n]);
            Self::load(&buf)
        }
        #[inline(always)]
        fn store(s: &mut [f32], v: Self::V) {
            let s = &mut s[..LANES];
            // SAFETY: `s` holds 16 floats; AVX2 as in `Avx2::mask8`.
            unsafe {
                _mm256_storeu_ps(s.as_mut_ptr(), v.0);
                _mm256_storeu_ps(s.as_mut_ptr().add(8), v.1);
            }
        }
        #[inline(always)]
        fn store_partial(s: &mut [f32], v: Self::V) {
            let mut buf = [0.0f32; LANES];
            Self::store(&mut buf, v);
            let n = s.len().min(LANES);
            s[..n].copy_from_slice(&buf[..n]);
        }
        #[inline(always)]
        fn add(a: Self::V, b: Self::V) -> Self::V {
            // SAFETY: as in `Avx2::mask8`.
            unsafe { (_mm256_add_ps(a.0, b.0), _mm256_add_ps(a.1, b.1)) }
        }
        #[inline(always)]
        fn mul(a: Self::V, b: Self::V) -> Self::V {
            // SAFETY: as in `Avx2::mask8`.
            unsafe { (_mm256_mul_ps(a.0, b.0), _mm256_mul_ps(a.1, b.1)) }
        }
        #[inline(always)]
        fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
            // SAFETY: as in `Avx2::mask8` (FMA detected with AVX2).
            unsafe {
                (
                    _mm256_fmadd_ps(a.0, b.0, c.0),
                    _mm256_fmadd_ps(a.1, b.1, c.1),
                )
            }
        }
        #[inline(always)]
        fn max(a: Self::V, b: Self::V) -> Self::V {
            // SAFETY: as in `Avx2::mask8`.
            unsafe { (_mm256_max_ps(a.0, b.0), _mm256_max_ps(a.1, b.1)) }
        }
        #[inline(always)]
        fn min(a: Self::V, b: Self::V) -> Self::V {
            // SAFETY: as in `Avx2::mask8`.
            unsafe { (_mm256_min_ps(a.0, b.0), _mm256_min_ps(a.1, b.1)) }
        }
        #[inline(always)]
        fn reduce_add(a: Self::V) -> f32 {
            // SAFETY: as in `Avx2::mask8`.
            unsafe {
                let s8 = _mm256_add_ps(a.0, a.1);
                let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
                let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
                let s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
                _mm_cvtss_f32(s1)
            }
        }
        #[inline(always)]
        fn reduce_max(a: Self::V) -> f32 {
            // SAFETY: as in `Avx2::mask8`.
            unsafe {
                let s8 = _mm256_max_ps(a.0, a.1);
                let s4 = _mm_max_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
                let s2 = _mm_max_ps(s4, _mm_movehl_ps(s4, s4));
                let s1 = _mm_max_ss(s2, _mm_shuffle_ps(s2, s2, 1));
                _mm_cvtss_f32(s1)
            }
        }
        #[inline(always)]
        fn keep_first(a: Self::V, count: usize, fill: f32) -> Self::V {
            let m0 = Self::mask8(count);
            let m1 = Self::mask8(count.saturating_sub(8));
            // SAFETY: as in `Avx2::mask8`.
            unsafe {
                let f = _mm256_set1_ps(fill);
                (_mm256_blendv_ps(f, a.0, m0), _mm256_blendv_ps(f, a.1, m1))
            }
        }
        #[inline(always)]
        fn exp(x: Self::V) -> Self::V {
            (Self::exp8(x.0), Self::exp8(x.1))
        }
    }

    /// Runs `w` with the AVX-512 body.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(crate) unsafe fn run_avx512<W: WithIsa>(w: W) -> W::Output {
        w.run::<Avx512>()
    }

    /// Runs `w` with the AVX2+FMA body.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn run_avx2<W: WithIsa>(w: W) -> W::Output {
        w.run::<Avx2>()
    }
}

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
            return unsafe { x86::run_avx512(w) };
        }
        if level >= SimdLevel::Avx2Fma && best >= SimdLevel::Avx2Fma {
            // SAFETY: AVX2 and FMA were detected (or compiled in) above.
            return unsafe { x86::run_avx2(w) };
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

/// `Σ a[i]·b[i]` over the common length, at the active level.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dot_at(active_level(), a, b)
}

/// `y[i] += alpha · x[i]` over the common length, at the active level.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    axpy_at(active_level(), alpha, x, y)
}

/// `y[i] *= alpha`, at the active level.
#[inline]
pub fn scale(alpha: f32, y: &mut [f32]) {
    scale_at(active_level(), alpha, y)
}

/// `e^x`, correctly rounded to within libm's accuracy (use [`fast_exp`] in hot loops).
#[inline]
pub fn exp(x: f32) -> f32 {
    libm::expf(x)
}

/// `x[i] = fast_exp(x[i] − m)` in place, returning `Σ x[i]` (softmax numerator), at the active level.
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
        assert!(!force_level(None) || active_level() == SimdLevel::detect());
    }
}
