//! Row-level building blocks shared by the full forward, the stream and training.
//!
//! Every function works on one position (one row) so the full forward and the
//! streaming path run the same arithmetic in the same order.
//! - [`vec_mat`]: `out[o] = Σᵢ x[i]·W[i, o] (+ b[o])`, `W` row-major `[in, out]`.
//! - [`layer_norm`]: `(x − mean) / sqrt(var + 1e-5) · g + b` (population variance).
//! - [`gelu`]: `0.5 z (1 + tanh(√(2/π)(z + 0.044715 z³)))`.
//! - [`add_positional`]: `x[2c] += sin(t / 10000^(2c/D))`, `x[2c+1] += cos(…)`, in
//!   fixed-point phase and f32 ([`sin_cos_turns`]).
//! - [`RunningNorm`]: causal running standardisation `(u_t − m_t) / max(s_t, floor)`.

use alloc::vec;
use alloc::vec::Vec;

/// LayerNorm epsilon (docs/model.md).
pub const LN_EPS: f32 = 1e-5;

/// Smallest running standard deviation [`RunningNorm`] divides by (docs/model.md step 0).
pub const RUNNING_NORM_FLOOR: f64 = 1e-3;

/// Causal running standardisation of input features (docs/model.md step 0): for frame
/// `t` (0-based since the last [`RunningNorm::reset`]) and feature `c`,
/// `u_t[c] ← (u_t[c] − m_t[c]) / max(s_t[c], RUNNING_NORM_FLOOR)` where `m_t`, `s_t` are the
/// mean and population std of frames `0..=t`, kept with Welford's update in f64. Frame
/// `t`'s output depends only on frames `0..=t`, so a stream and a full forward over any
/// prefix see the same values bit for bit. `F` = 0 makes it a no-op holder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunningNorm {
    count: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl RunningNorm {
    /// A fresh state for `features` features.
    pub fn new(features: usize) -> Self {
        Self {
            count: 0,
            mean: vec![0.0; features],
            m2: vec![0.0; features],
        }
    }

    /// [`RunningNorm::new`] with its buffers allocated fallibly.
    pub fn try_new(features: usize) -> crate::error::Result<Self> {
        Ok(Self {
            count: 0,
            mean: crate::error::try_vec(features, 0.0, "running-norm means")?,
            m2: crate::error::try_vec(features, 0.0, "running-norm moments")?,
        })
    }

    /// Features this state tracks.
    pub fn features(&self) -> usize {
        self.mean.len()
    }

    /// Frames seen since the last reset.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Forgets every frame (the next one is frame 0 again).
    pub fn reset(&mut self) {
        self.count = 0;
        self.mean.iter_mut().for_each(|m| *m = 0.0);
        self.m2.iter_mut().for_each(|m| *m = 0.0);
    }

    /// Bytes of its buffers.
    pub fn bytes(&self) -> usize {
        Self::bytes_for(self.features())
    }

    /// Bytes of the buffers of a state for `features` features (features are bounded by
    /// a model's tensors, so this cannot overflow).
    pub fn bytes_for(features: usize) -> usize {
        features.saturating_mul(2 * core::mem::size_of::<f64>())
    }

    /// Adds frame `u` (length [`RunningNorm::features`]) to the statistics and replaces it
    /// by its standardised value.
    pub fn apply(&mut self, u: &mut [f32]) {
        self.count += 1;
        let n = self.count as f64;
        for ((x, m), m2) in u.iter_mut().zip(&mut self.mean).zip(&mut self.m2) {
            let v = f64::from(*x);
            let delta = v - *m;
            *m += delta / n;
            *m2 += delta * (v - *m);
            let sd = libm::sqrt(*m2 / n).max(RUNNING_NORM_FLOOR);
            *x = ((v - *m) / sd) as f32;
        }
    }

    /// Standardises a whole sequence (`N·F` values, row-major) from a fresh state.
    pub fn sequence(frames: &mut [f32], features: usize) {
        if features == 0 {
            return;
        }
        let mut rn = Self::new(features);
        for row in frames.chunks_exact_mut(features) {
            rn.apply(row);
        }
    }
}

/// `Σ a[i]·b[i]` over the common length, eight independent accumulators.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `y[i] += alpha · x[i]` over the common length.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `out = x·W (+ bias)` and `out += x·W (+ bias)` for one row: the kernel's dispatched
/// matrix routines (every SIMD level gives the same bits).
pub use aether_kernel::simd::{vec_mat, vec_mat_add};

/// Index of the largest logit (the first on ties; 0 for an empty slice): the class
/// every front end (training, evaluation, `classify`, the service, Python) reports.
pub fn argmax(z: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// The mean and reciprocal standard deviation `1/sqrt(var + LN_EPS)` (population
/// variance) of one row: the statistics of every layer norm, in training and inference.
#[inline]
pub fn layer_norm_stats(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / libm::sqrtf(var + LN_EPS))
}

/// LayerNorm of one row into `out` (same length as `x`): `((x − mean)·rstd)·g + b`.
pub fn layer_norm(x: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) {
    let (mean, inv) = layer_norm_stats(x);
    for (((o, xi), gi), bi) in out.iter_mut().zip(x).zip(g).zip(b) {
        *o = (xi - mean) * inv * gi + bi;
    }
}

/// LayerNorm of one row in place.
pub fn layer_norm_in_place(x: &mut [f32], g: &[f32], b: &[f32]) {
    let (mean, inv) = layer_norm_stats(x);
    for ((xi, gi), bi) in x.iter_mut().zip(g).zip(b) {
        *xi = (*xi - mean) * inv * gi + bi;
    }
}

/// √(2/π), the GELU constant.
pub const GELU_C: f32 = 0.797_884_6;
/// The cubic coefficient of the GELU tanh approximation.
pub const GELU_A: f32 = 0.044_715;

/// `tanh(u) = 1 − 2/(e^{2u} + 1)` through the kernel's fast exp (relative error of `e^x`
/// ≤ 2⁻²¹; saturates cleanly to ±1): the one tanh of training and inference.
#[inline]
pub fn tanh_fast(u: f32) -> f32 {
    1.0 - 2.0 / (aether_kernel::simd::fast_exp(2.0 * u) + 1.0)
}

/// `GELU(z)` and `t = tanh(√(2/π)(z + 0.044715 z³))` (training keeps `t` for the backward).
#[inline]
pub fn gelu_and_tanh(z: f32) -> (f32, f32) {
    let t = tanh_fast(GELU_C * (z + GELU_A * z * z * z));
    (0.5 * z * (1.0 + t), t)
}

/// `GELU(z) = 0.5 z (1 + tanh(√(2/π)(z + 0.044715 z³)))`, the same function in training
/// and inference (docs/model.md).
#[inline]
pub fn gelu(z: f32) -> f32 {
    gelu_and_tanh(z).0
}

/// Adds the sinusoidal positional signal of position `t` to the row `x` (width `D`).
///
/// `x[2c] += sin(2π·φ)`, `x[2c+1] += cos(2π·φ)` with the phase `φ = t·ω_c mod 1` in
/// 64-bit fixed point (`ω_c ≈ 1 / (2π·10000^(2c/D))` turns per position, see
/// [`positional_steps`]) and sine/cosine in f32 ([`sin_cos_turns`]): integer and f32
/// operations only, so every platform gets the same bits, and a microcontroller without
/// double-precision hardware pays no software f64 (this was a fifth of a Cortex-M4F
/// streaming push). Within 2·10⁻⁷ of the f64 formula for `t` below 2²⁴ (46 hours at
/// 100 frames/s) and 10⁻⁶ below 2³² (tested).
pub fn add_positional(t: usize, x: &mut [f32]) {
    let steps = positional_steps(x.len());
    add_positional_with(t, &steps, x);
}

/// The phase steps `round(2⁶⁴ / (2π·10000^(2⌊i/2⌋/D)))` of [`add_positional`] for width
/// `d`, in 2⁻⁶⁴ turns per position (computed once per model).
pub fn positional_steps(d: usize) -> Vec<u64> {
    let mut steps = vec![0; d];
    positional_steps_into(&mut steps);
    steps
}

/// [`positional_steps`] into `steps` (its length is `d`).
pub fn positional_steps_into(steps: &mut [u64]) {
    let df = steps.len() as f64;
    for (i, s) in steps.iter_mut().enumerate() {
        let den = libm::pow(10000.0, (i & !1) as f64 / df);
        // < 2⁶¹·⁴ (den ≥ 1), so the float-to-integer conversion is exact after rounding.
        *s = libm::round(TURNS_64 / (core::f64::consts::TAU * den)) as u64;
    }
}

/// 2⁶⁴, one turn in the phase units of [`positional_steps`].
const TURNS_64: f64 = 18_446_744_073_709_551_616.0;

/// `(sin 2πφ, cos 2πφ)` for the phase `φ = phase / 2⁶⁴` turns, in f32.
///
/// The phase is reduced exactly to the nearest quarter turn `k` and a residual of at most
/// an eighth of a turn (`|r| ≤ π/4`), whose top 32 bits become the f32 angle; sine and
/// cosine of `r` are the minimax polynomials of Cephes' `sinf`/`cosf` (error ≈ 1 ulp on
/// `[−π/4, π/4]`), then rotated by `k` quarter turns. Within 2·10⁻⁷ of the exact values.
#[inline]
pub fn sin_cos_turns(phase: u64) -> (f32, f32) {
    const QUARTER: u32 = 62;
    let k = (phase.wrapping_add(1 << (QUARTER - 1)) >> QUARTER) as u32;
    let r = phase.wrapping_sub((k as u64) << QUARTER) as i64;
    // `r` in [−2⁶¹, 2⁶¹): its top 32 bits times 2π/2³² is the angle in radians.
    let x = ((r >> 32) as i32) as f32 * (core::f32::consts::TAU / 4_294_967_296.0);
    let z = x * x;
    let s = ((-1.951_529_6e-4 * z + 8.332_161e-3) * z - 1.666_665_5e-1) * z * x + x;
    let c = ((2.443_315_7e-5 * z - 1.388_731_6e-3) * z + 4.166_664_6e-2) * z * z - 0.5 * z + 1.0;
    match k & 3 {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// [`add_positional`] with precomputed [`positional_steps`] (same bits).
pub fn add_positional_with(t: usize, steps: &[u64], x: &mut [f32]) {
    let t = t as u64;
    for (xs, ws) in x.chunks_mut(2).zip(steps.chunks(2)) {
        let (s, c) = sin_cos_turns(t.wrapping_mul(ws[0]));
        xs[0] += s;
        if let Some(x1) = xs.get_mut(1) {
            *x1 += c;
        }
    }
}

/// `(u − mean) / std` per feature, in place.
pub fn normalise_input(u: &mut [f32], mean: &[f32], std: &[f32]) {
    for ((ui, m), s) in u.iter_mut().zip(mean).zip(std) {
        *ui = (*ui - m) / s;
    }
}

/// Numerically stable softmax of `logits` into `out`; returns `log Σ exp(logits)`
/// (training's cross-entropy uses it, inference ignores it).
pub fn softmax(logits: &[f32], out: &mut [f32]) -> f32 {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut z = 0.0f32;
    for (o, &l) in out.iter_mut().zip(logits) {
        *o = libm::expf(l - m);
        z += *o;
    }
    for o in out.iter_mut() {
        *o /= z;
    }
    m + libm::logf(z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_largest() {
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[0.5, 2.0, -1.0, 2.0]), 1);
        assert_eq!(argmax(&[-3.0, -2.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }

    #[test]
    fn dot_matches_naive_on_odd_lengths() {
        for n in [0usize, 1, 7, 8, 9, 33] {
            let a: alloc::vec::Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: alloc::vec::Vec<f32> = (0..n).map(|i| 1.0 - i as f32 * 0.25).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn vec_mat_is_row_major_x_times_w() {
        // x = [1, 2], W = [[1, 2, 3], [4, 5, 6]] -> [9, 12, 15]
        let mut out = [0.0f32; 3];
        vec_mat(&[1.0, 2.0], &[1., 2., 3., 4., 5., 6.], None, &mut out);
        assert_eq!(out, [9.0, 12.0, 15.0]);
        vec_mat(
            &[1.0, 2.0],
            &[1., 2., 3., 4., 5., 6.],
            Some(&[1., 1., 1.]),
            &mut out,
        );
        assert_eq!(out, [10.0, 13.0, 16.0]);
        vec_mat_add(&[1.0, 0.0], &[1., 2., 3., 4., 5., 6.], None, &mut out);
        assert_eq!(out, [11.0, 15.0, 19.0]);
    }

    #[test]
    fn dispatched_vec_mat_equals_portable_body_bit_for_bit() {
        for (n_in, n_out) in [(1usize, 1usize), (3, 5), (16, 128), (17, 33), (128, 16)] {
            let x: alloc::vec::Vec<f32> = (0..n_in).map(|i| (i as f32 * 0.37).sin()).collect();
            let w: alloc::vec::Vec<f32> =
                (0..n_in * n_out).map(|i| (i as f32 * 0.11).cos()).collect();
            let b: alloc::vec::Vec<f32> = (0..n_out).map(|i| i as f32 * 0.01).collect();
            for acc in [false, true] {
                let mut fast = alloc::vec![0.5f32; n_out];
                let mut slow = fast.clone();
                if acc {
                    vec_mat_add(&x, &w, Some(&b), &mut fast);
                } else {
                    vec_mat(&x, &w, Some(&b), &mut fast);
                }
                let scalar = aether_kernel::SimdLevel::Scalar;
                aether_kernel::simd::linalg::vec_mat_at(scalar, &x, &w, Some(&b), &mut slow, acc);
                assert_eq!(fast, slow);
            }
        }
    }

    #[test]
    fn layer_norm_zero_mean_unit_var() {
        let x = [1.0f32, 2.0, 3.0, 6.0];
        let mut o = [0.0; 4];
        layer_norm(&x, &[1.0; 4], &[0.0; 4], &mut o);
        let m: f32 = o.iter().sum::<f32>() / 4.0;
        let v: f32 = o.iter().map(|x| x * x).sum::<f32>() / 4.0;
        assert!(m.abs() < 1e-6 && (v - 1.0).abs() < 1e-4);
        let mut y = x;
        layer_norm_in_place(&mut y, &[1.0; 4], &[0.0; 4]);
        assert_eq!(y, o);
    }

    #[test]
    fn running_norm_matches_a_two_pass_prefix_formula() {
        let f = 3;
        let frames: Vec<f32> = (0..40)
            .map(|i| ((i * 7919 % 97) as f32 * 0.37).sin() * 3.0 + (i % 3) as f32 * 100.0)
            .collect();
        let mut got = frames.clone();
        RunningNorm::sequence(&mut got, f);
        for t in 0..frames.len() / f {
            for c in 0..f {
                let xs: Vec<f64> = (0..=t).map(|s| f64::from(frames[s * f + c])).collect();
                let m = xs.iter().sum::<f64>() / xs.len() as f64;
                let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64;
                let want = (xs[t] - m) / var.sqrt().max(RUNNING_NORM_FLOOR);
                let g = f64::from(got[t * f + c]);
                assert!(
                    (g - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "t {t} c {c}: {g} vs {want}"
                );
            }
        }
        // frame 0 is always 0; a constant feature stays 0 (floor, no NaN)
        assert!(got[..f].iter().all(|&v| v == 0.0));
        let mut flat = vec![5.0f32; 12];
        RunningNorm::sequence(&mut flat, 2);
        assert!(flat.iter().all(|&v| v == 0.0));
        // reset restarts the statistics
        let mut rn = RunningNorm::new(f);
        let mut a = frames[..f].to_vec();
        rn.apply(&mut a);
        let mut b = frames[f..2 * f].to_vec();
        rn.apply(&mut b);
        rn.reset();
        assert_eq!(rn.count(), 0);
        let mut c = frames[f..2 * f].to_vec();
        rn.apply(&mut c);
        assert!(c.iter().all(|&v| v == 0.0));
        assert_eq!(rn.bytes(), 2 * f * 8);
    }

    /// The f64 formula the fixed-point positional signal approximates.
    fn positional_f64(t: u64, i: usize, d: usize) -> f64 {
        let angle = t as f64 / libm::pow(10000.0, (i & !1) as f64 / d as f64);
        if i.is_multiple_of(2) {
            libm::sin(angle)
        } else {
            libm::cos(angle)
        }
    }

    #[test]
    fn positional_is_close_to_the_f64_formula() {
        let mut worst = 0.0f64;
        for d in [1, 2, 5, 16, 32, 64, 128] {
            let steps = positional_steps(d);
            let ts = (0..3000u64).chain([65_535, 1 << 20, 123_456_789, (1 << 32) - 1]);
            for t in ts {
                let mut x = vec![0.0f32; d];
                add_positional_with(t as usize, &steps, &mut x);
                for (i, v) in x.iter().enumerate() {
                    let e = (*v as f64 - positional_f64(t, i, d)).abs();
                    // Far out, the f64 rounding of the step (and of `t / den`) shows.
                    let bound = if t < 1 << 24 { 2e-7 } else { 1e-6 };
                    worst = worst.max(e);
                    assert!(e <= bound, "d {d} t {t} channel {i}: {v} ({e:e})");
                }
            }
        }
        assert!(worst > 0.0);
    }

    #[test]
    fn sin_cos_turns_quadrants_and_bounds() {
        assert_eq!(sin_cos_turns(0), (0.0, 1.0));
        let q = 1u64 << 62;
        // Exact at the quarter turns (`-0.0 == 0.0`).
        for (k, want) in [(1u64, (1.0f32, 0.0f32)), (2, (0.0, -1.0)), (3, (-1.0, 0.0))] {
            assert_eq!(sin_cos_turns(k * q), want, "quarter {k}");
        }
        // Every phase, including the wrap-around, gives values within [−1, 1].
        let mut p = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            p = p.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let (s, c) = sin_cos_turns(p);
            assert!(s.abs() <= 1.0 && c.abs() <= 1.0, "{p:x}: {s} {c}");
            let a = p as f64 / TURNS_64 * core::f64::consts::TAU;
            assert!(
                (s as f64 - libm::sin(a)).abs() <= 2e-7 && (c as f64 - libm::cos(a)).abs() <= 2e-7
            );
        }
    }

    #[test]
    fn positional_bits_are_pinned() {
        // The model's numerics: a change here changes every model's outputs.
        let mut x = [0.0f32; 8];
        add_positional(1000, &mut x);
        let bits: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        let want = [
            1062448736, 1058011155, 3204555054, 1063043310, 3205186808, 3210136932, 1062693540,
            1057640768,
        ];
        assert_eq!(bits, want, "{x:?}");
    }

    #[test]
    fn gelu_and_positional_values() {
        assert_eq!(gelu(0.0), 0.0);
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
        assert!((gelu(-1.0) + 0.158_808).abs() < 1e-5);
        let mut x = [0.0f32; 4];
        add_positional(0, &mut x);
        assert_eq!(x, [0.0, 1.0, 0.0, 1.0]);
        let mut x = [0.0f32; 4];
        add_positional(3, &mut x);
        // c = 0: sin(3), cos(3); c = 1: 3 / 10000^(2/4) = 0.03.
        assert!((x[0] - 3f32.sin()).abs() < 1e-6 && (x[1] - 3f32.cos()).abs() < 1e-6);
        assert!((x[2] - 0.03f32.sin()).abs() < 1e-6 && (x[3] - 0.03f32.cos()).abs() < 1e-6);
    }
}
