//! Row-major matrix kernels for the head's inference and the trainer, behind the same
//! dispatch as the attention kernels (one level choice per call of a whole routine).
//!
//! * [`vec_mat`] / [`vec_mat_add`]: `out (+)= x·W (+ bias)` for one row, `W[in × out]`;
//! * [`gemm_acc`]: `C[m,n] += A[m,k]·B[k,n]` in i-k-j order (one axpy per `A` element);
//! * [`gemm_tn_acc`]: `dW[k,n] += Aᵀ·G` for `A[m,k]`, `G[m,n]` (weight gradients);
//! * [`add_rows`], [`col_sum_acc`]: bias add and bias gradient.
//!
//! Bits: `vec_mat*`, `add_rows` and `col_sum_acc` never fuse (`a·b + c` as a multiply and
//! an add), so every level gives the same bits. `gemm_*` fuse (`mul_add`) exactly when
//! they run at an AVX2+FMA or AVX-512 level and multiply-then-add on the scalar level,
//! in the same order either way: results are reproducible per level, as before.

use super::{dispatch, Isa, SimdLevel, WithIsa};

/// The one portable body of [`vec_mat`] / [`vec_mat_add`].
#[inline(always)]
fn vec_mat_body(x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32], accumulate: bool) {
    let n_out = out.len();
    if !accumulate {
        out.iter_mut().for_each(|o| *o = 0.0);
    }
    if let Some(b) = bias {
        for (o, bi) in out.iter_mut().zip(b) {
            *o += bi;
        }
    }
    if n_out == 0 {
        return;
    }
    let rows = x.len().min(w.len() / n_out);
    // Blocks of 16 output columns stay in registers across all rows (rows ascending, as
    // in the plain loop, so the bits do not depend on the blocking).
    let mut c = 0;
    while c + 16 <= n_out {
        let mut acc = [0.0f32; 16];
        acc.copy_from_slice(&out[c..c + 16]);
        // (Without rows there is nothing to add, and `w` may be shorter than `c`.)
        #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
        if rows > 0 {
            arm_vfp::block16(&x[..rows], &w[c..], n_out, &mut acc);
        }
        #[cfg(not(all(target_arch = "arm", target_abi = "eabihf")))]
        for (i, xi) in x[..rows].iter().enumerate() {
            let wr = &w[i * n_out + c..i * n_out + c + 16];
            for k in 0..16 {
                acc[k] += *xi * wr[k];
            }
        }
        out[c..c + 16].copy_from_slice(&acc);
        c += 16;
    }
    for (o, col) in out[c..].iter_mut().zip(c..n_out) {
        for (i, xi) in x[..rows].iter().enumerate() {
            *o += *xi * w[i * n_out + col];
        }
    }
}

/// The 16-column block of [`vec_mat_body`] on hard-float ARM (Cortex-M4F and kin).
///
/// LLVM loads each weight with its own `vldr`; here one `vldmia` loads eight, so a row of
/// the block costs 38 instructions instead of 53. The arithmetic is the portable loop's,
/// operation for operation: `acc[k] += x[i]·w[i][k]` as a `vmul` then a `vadd` (never
/// fused), rows in ascending order, so the bits are those of every other level.
#[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
pub(crate) mod arm_vfp {
    /// `acc[k] += Σ_i x[i]·w[i·n_out + k]` for `k < 16`, `i < x.len()`.
    #[inline(always)]
    pub(super) fn block16(x: &[f32], w: &[f32], n_out: usize, acc: &mut [f32; 16]) {
        let rows = x.len();
        if rows == 0 {
            return;
        }
        // The asm reads w[i·n_out .. i·n_out + 16] for every i < rows: check the last.
        assert!(n_out >= 16 && (rows - 1) * n_out + 16 <= w.len());
        let step = (n_out - 8) * 4;
        // SAFETY: reads `x[..rows]` and, per row `i`, `w[i·n_out..][..16]` (in bounds by the
        // assert above); reads and writes the 16 floats of `acc`. It touches no other memory
        // and no stack, declares every VFP register it writes, and leaves `rows ≥ 1`, so the
        // count-down loop ends after exactly `rows` iterations.
        unsafe {
            core::arch::asm!(
            "vldmia {acc}, {{s16-s31}}",
            "2:",
            "vldmia {x}!, {{s0}}",
            "vldmia {w}!, {{s8-s15}}",
            "vmul.f32 s8, s0, s8",
            "vmul.f32 s9, s0, s9",
            "vmul.f32 s10, s0, s10",
            "vmul.f32 s11, s0, s11",
            "vmul.f32 s12, s0, s12",
            "vmul.f32 s13, s0, s13",
            "vmul.f32 s14, s0, s14",
            "vmul.f32 s15, s0, s15",
            "vadd.f32 s16, s16, s8",
            "vadd.f32 s17, s17, s9",
            "vadd.f32 s18, s18, s10",
            "vadd.f32 s19, s19, s11",
            "vadd.f32 s20, s20, s12",
            "vadd.f32 s21, s21, s13",
            "vadd.f32 s22, s22, s14",
            "vadd.f32 s23, s23, s15",
            "vldmia {w}, {{s8-s15}}",
            "add {w}, {w}, {step}",
            "vmul.f32 s8, s0, s8",
            "vmul.f32 s9, s0, s9",
            "vmul.f32 s10, s0, s10",
            "vmul.f32 s11, s0, s11",
            "vmul.f32 s12, s0, s12",
            "vmul.f32 s13, s0, s13",
            "vmul.f32 s14, s0, s14",
            "vmul.f32 s15, s0, s15",
            "vadd.f32 s24, s24, s8",
            "vadd.f32 s25, s25, s9",
            "vadd.f32 s26, s26, s10",
            "vadd.f32 s27, s27, s11",
            "vadd.f32 s28, s28, s12",
            "vadd.f32 s29, s29, s13",
            "vadd.f32 s30, s30, s14",
            "vadd.f32 s31, s31, s15",
            "subs {n}, {n}, #1",
            "bne 2b",
            "vstmia {acc}, {{s16-s31}}",
            acc = in(reg) acc.as_mut_ptr(),
            x = inout(reg) x.as_ptr() => _,
            w = inout(reg) w.as_ptr() => _,
            n = inout(reg) rows => _,
            step = in(reg) step,
            out("s0") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s16") _, out("s17") _, out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _, out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _, out("s30") _, out("s31") _,
            options(nostack),
            );
        }
    }

    /// The dot product of `q` and `k` (equal lengths, a positive multiple of 16) in the
    /// order of the portable 16-lane loop: lane `l` sums `q[e + l]·k[e + l]` over the
    /// chunks `e` (starting from the first product), then the pairwise tree of
    /// `Scalar::reduce_add`. Two `vldmia` per eight lanes instead of sixteen `vldr`.
    #[inline(always)]
    pub(crate) fn dot16_lanes(q: &[f32], k: &[f32]) -> f32 {
        let n = q.len();
        assert!(n >= 16 && n.is_multiple_of(16) && k.len() == n);
        let more = n / 16 - 1;
        let mut sum = 0.0f32;
        // SAFETY: reads the `n` floats of `q` and of `k` (16 per chunk, `n / 16` chunks:
        // the first before the loop, `more` in it, entered only when `more > 0`); writes
        // only `sum`, no stack, and declares every VFP register it writes (a VFP register
        // cannot be an asm operand without the unstable `vfp2` feature, hence the store).
        unsafe {
            core::arch::asm!(
            "vldmia {q}!, {{s0-s7}}",
            "vldmia {k}!, {{s8-s15}}",
            "vmul.f32 s16, s0, s8",
            "vmul.f32 s17, s1, s9",
            "vmul.f32 s18, s2, s10",
            "vmul.f32 s19, s3, s11",
            "vmul.f32 s20, s4, s12",
            "vmul.f32 s21, s5, s13",
            "vmul.f32 s22, s6, s14",
            "vmul.f32 s23, s7, s15",
            "vldmia {q}!, {{s0-s7}}",
            "vldmia {k}!, {{s8-s15}}",
            "vmul.f32 s24, s0, s8",
            "vmul.f32 s25, s1, s9",
            "vmul.f32 s26, s2, s10",
            "vmul.f32 s27, s3, s11",
            "vmul.f32 s28, s4, s12",
            "vmul.f32 s29, s5, s13",
            "vmul.f32 s30, s6, s14",
            "vmul.f32 s31, s7, s15",
            "cmp {m}, #0",
            "beq 3f",
            "2:",
            "vldmia {q}!, {{s0-s7}}",
            "vldmia {k}!, {{s8-s15}}",
            "vmul.f32 s0, s0, s8",
            "vmul.f32 s1, s1, s9",
            "vmul.f32 s2, s2, s10",
            "vmul.f32 s3, s3, s11",
            "vmul.f32 s4, s4, s12",
            "vmul.f32 s5, s5, s13",
            "vmul.f32 s6, s6, s14",
            "vmul.f32 s7, s7, s15",
            "vadd.f32 s16, s16, s0",
            "vadd.f32 s17, s17, s1",
            "vadd.f32 s18, s18, s2",
            "vadd.f32 s19, s19, s3",
            "vadd.f32 s20, s20, s4",
            "vadd.f32 s21, s21, s5",
            "vadd.f32 s22, s22, s6",
            "vadd.f32 s23, s23, s7",
            "vldmia {q}!, {{s0-s7}}",
            "vldmia {k}!, {{s8-s15}}",
            "vmul.f32 s0, s0, s8",
            "vmul.f32 s1, s1, s9",
            "vmul.f32 s2, s2, s10",
            "vmul.f32 s3, s3, s11",
            "vmul.f32 s4, s4, s12",
            "vmul.f32 s5, s5, s13",
            "vmul.f32 s6, s6, s14",
            "vmul.f32 s7, s7, s15",
            "vadd.f32 s24, s24, s0",
            "vadd.f32 s25, s25, s1",
            "vadd.f32 s26, s26, s2",
            "vadd.f32 s27, s27, s3",
            "vadd.f32 s28, s28, s4",
            "vadd.f32 s29, s29, s5",
            "vadd.f32 s30, s30, s6",
            "vadd.f32 s31, s31, s7",
            "subs {m}, {m}, #1",
            "bne 2b",
            "3:",
            "vadd.f32 s16, s16, s24",
            "vadd.f32 s17, s17, s25",
            "vadd.f32 s18, s18, s26",
            "vadd.f32 s19, s19, s27",
            "vadd.f32 s20, s20, s28",
            "vadd.f32 s21, s21, s29",
            "vadd.f32 s22, s22, s30",
            "vadd.f32 s23, s23, s31",
            "vadd.f32 s16, s16, s20",
            "vadd.f32 s17, s17, s21",
            "vadd.f32 s18, s18, s22",
            "vadd.f32 s19, s19, s23",
            "vadd.f32 s16, s16, s18",
            "vadd.f32 s17, s17, s19",
            "vadd.f32 s16, s16, s17",
            "vstr s16, [{dst}]",
            dst = in(reg) &mut sum,
            q = inout(reg) q.as_ptr() => _,
            k = inout(reg) k.as_ptr() => _,
            m = inout(reg) more => _,
            out("s16") _,
            out("s0") _, out("s1") _, out("s2") _, out("s3") _, out("s4") _, out("s5") _, out("s6") _, out("s7") _, out("s8") _, out("s9") _, out("s10") _, out("s11") _, out("s12") _, out("s13") _, out("s14") _, out("s15") _, out("s17") _, out("s18") _, out("s19") _, out("s20") _, out("s21") _, out("s22") _, out("s23") _, out("s24") _, out("s25") _, out("s26") _, out("s27") _, out("s28") _, out("s29") _, out("s30") _, out("s31") _,
            options(nostack),
            );
        }
        sum
    }
}

/// `x·a + acc` rounded once (`mul_add` with `std`, libm's `fmaf` without: both exact).
#[inline(always)]
fn fused(x: f32, a: f32, acc: f32) -> f32 {
    #[cfg(feature = "std")]
    {
        x.mul_add(a, acc)
    }
    #[cfg(not(feature = "std"))]
    {
        libm::fmaf(x, a, acc)
    }
}

/// `acc[l] += x[l]·a` for a fixed-width tile (kept in registers by the caller's loop);
/// fused when `fma`.
#[inline(always)]
fn fma_tile<const T: usize>(fma: bool, acc: &mut [f32; T], x: &[f32], a: f32) {
    let x: &[f32; T] = x[..T].try_into().expect("tile slice has T values");
    for l in 0..T {
        acc[l] = if fma {
            fused(x[l], a, acc[l])
        } else {
            acc[l] + x[l] * a
        };
    }
}

/// `out[j..j+T] += Σ_t coef(t)·row(t)[j..j+T]` for every tile of `T` columns from `j`,
/// returning the first column not covered. The tile accumulates in registers.
#[inline(always)]
fn tiles<const T: usize>(
    fma: bool,
    out: &mut [f32],
    mut j: usize,
    terms: usize,
    coef: impl Fn(usize) -> f32,
    row: impl Fn(usize) -> usize,
    src: &[f32],
) -> usize {
    while j + T <= out.len() {
        let mut acc = [0.0f32; T];
        acc.copy_from_slice(&out[j..j + T]);
        for t in 0..terms {
            let o = row(t) + j;
            fma_tile::<T>(fma, &mut acc, &src[o..o + T], coef(t));
        }
        out[j..j + T].copy_from_slice(&acc);
        j += T;
    }
    j
}

/// `out[n] += Σ_t coef(t)·src[row(t) ..][..n]` with 32- and 8-wide register tiles.
#[inline(always)]
fn combine_rows(
    fma: bool,
    out: &mut [f32],
    terms: usize,
    coef: impl Fn(usize) -> f32 + Copy,
    row: impl Fn(usize) -> usize + Copy,
    src: &[f32],
) {
    let j = tiles::<32>(fma, out, 0, terms, coef, row, src);
    let j = tiles::<8>(fma, out, j, terms, coef, row, src);
    let j = tiles::<1>(fma, out, j, terms, coef, row, src);
    debug_assert_eq!(j, out.len());
}

struct VecMat<'a> {
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    out: &'a mut [f32],
    accumulate: bool,
}

impl WithIsa for VecMat<'_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        vec_mat_body(self.x, self.w, self.bias, self.out, self.accumulate)
    }
}

/// `a`, `b`, `c` and the shape `(m, k, n)` of one matrix routine.
struct Gemm<'a> {
    a: &'a [f32],
    b: &'a [f32],
    c: &'a mut [f32],
    m: usize,
    k: usize,
    n: usize,
    /// `c += aᵀ·b` (`a[m,k]`, `b[m,n]`, `c[k,n]`) instead of `c += a·b`.
    transpose_a: bool,
}

impl WithIsa for Gemm<'_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let Gemm {
            a,
            b,
            c,
            m,
            k,
            n,
            transpose_a,
        } = self;
        if n == 0 {
            return;
        }
        if transpose_a {
            for (kk, crow) in c.chunks_exact_mut(n).enumerate().take(k) {
                combine_rows(I::FUSED, crow, m, |i| a[i * k + kk], |i| i * n, b);
            }
        } else if k > 0 {
            for (arow, crow) in a.chunks_exact(k).zip(c.chunks_exact_mut(n)).take(m) {
                combine_rows(I::FUSED, crow, k, |t| arow[t], |t| t * n, b);
            }
        }
    }
}

struct AddRows<'a>(&'a mut [f32], &'a [f32], usize);

impl WithIsa for AddRows<'_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let AddRows(x, b, n) = self;
        if n == 0 {
            return;
        }
        for row in x.chunks_exact_mut(n) {
            row.iter_mut().zip(b).for_each(|(r, &bv)| *r += bv);
        }
    }
}

struct ColSum<'a>(&'a [f32], &'a mut [f32], usize);

impl WithIsa for ColSum<'_> {
    type Output = ();
    #[inline(always)]
    fn run<I: Isa>(self) {
        let ColSum(g, db, n) = self;
        if n == 0 {
            return;
        }
        for row in g.chunks_exact(n) {
            db.iter_mut().zip(row).for_each(|(d, &r)| *d += r);
        }
    }
}

/// `out = x·W (+ bias)` for one row: `x[in]`, `W[in × out]` row-major, `out[out]`.
///
/// Uses the first `min(x.len(), W.len() / out.len())` rows of `W`. The same bits at
/// every level (no fused multiply-add).
#[inline]
pub fn vec_mat(x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    vec_mat_at(SimdLevel::detect(), x, w, bias, out, false)
}

/// `out += x·W (+ bias)` for one row (residual update); see [`vec_mat`].
#[inline]
pub fn vec_mat_add(x: &[f32], w: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
    vec_mat_at(SimdLevel::detect(), x, w, bias, out, true)
}

/// [`vec_mat`] (or, with `accumulate`, [`vec_mat_add`]) at an explicit level.
///
/// Always inlined off x86-64: each call site of the head then folds `accumulate` and
/// `bias` into its own copy of the loop, as when the body lived in the head (measured on
/// riscv32imafc: out of line, a streaming push cost 7.5 % more instructions). On x86-64
/// the dispatch to the AVX paths stays out of line (inlined there, `aether bench`'s head
/// forward measured 11–18 % slower).
#[cfg_attr(not(target_arch = "x86_64"), inline(always))]
pub fn vec_mat_at(
    level: SimdLevel,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    accumulate: bool,
) {
    dispatch(
        level,
        VecMat {
            x,
            w,
            bias,
            out,
            accumulate,
        },
    )
}

/// `c += a·b` with `a[m,k]`, `b[k,n]`, `c[m,n]` (each row of `c` in register tiles).
pub fn gemm_acc(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    gemm_acc_at(SimdLevel::detect(), a, b, c, m, k, n)
}

/// [`gemm_acc`] at an explicit level (fused multiply-add above scalar).
pub fn gemm_acc_at(
    level: SimdLevel,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    let transpose_a = false;
    dispatch(
        level,
        Gemm {
            a,
            b,
            c,
            m,
            k,
            n,
            transpose_a,
        },
    )
}

/// `dw += aᵀ·g` with `a[m,k]`, `g[m,n]`, `dw[k,n]` (each row of `dw` in register tiles).
pub fn gemm_tn_acc(a: &[f32], g: &[f32], dw: &mut [f32], m: usize, k: usize, n: usize) {
    gemm_tn_acc_at(SimdLevel::detect(), a, g, dw, m, k, n)
}

/// [`gemm_tn_acc`] at an explicit level (fused multiply-add above scalar).
pub fn gemm_tn_acc_at(
    level: SimdLevel,
    a: &[f32],
    g: &[f32],
    dw: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    let transpose_a = true;
    dispatch(
        level,
        Gemm {
            a,
            b: g,
            c: dw,
            m,
            k,
            n,
            transpose_a,
        },
    )
}

/// Adds `b[n]` to every row of `x[m,n]`.
pub fn add_rows(x: &mut [f32], b: &[f32], n: usize) {
    dispatch(SimdLevel::detect(), AddRows(x, b, n))
}

/// `db += Σ_rows g` for `g[m,n]`.
pub fn col_sum_acc(g: &[f32], db: &mut [f32], n: usize) {
    dispatch(SimdLevel::detect(), ColSum(g, db, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn seq(len: usize, s: f32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7 + 3) % 11) as f32 * s - 0.4)
            .collect()
    }

    #[test]
    fn every_level_matches_the_plain_loops() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (4, 33, 41), (2, 9, 70), (0, 3, 4)] {
            let (a, b) = (seq(m * k, 0.13), seq(k * n, 0.07));
            for level in SimdLevel::ALL {
                let fma = level.effective() > SimdLevel::Scalar;
                let mut c = seq(m * n, 0.01);
                let mut want = c.clone();
                for i in 0..m {
                    for t in 0..k {
                        for j in 0..n {
                            let (x, y) = (b[t * n + j], a[i * k + t]);
                            let w = &mut want[i * n + j];
                            *w = if fma { fused(x, y, *w) } else { *w + x * y };
                        }
                    }
                }
                gemm_acc_at(level, &a, &b, &mut c, m, k, n);
                assert_eq!(c, want, "gemm {level:?} {m}x{k}x{n}");
                let g = seq(m * n, 0.05);
                let mut dw = seq(k * n, 0.02);
                let mut want = dw.clone();
                for t in 0..k {
                    for i in 0..m {
                        for j in 0..n {
                            let (x, y) = (g[i * n + j], a[i * k + t]);
                            let w = &mut want[t * n + j];
                            *w = if fma { fused(x, y, *w) } else { *w + x * y };
                        }
                    }
                }
                gemm_tn_acc_at(level, &a, &g, &mut dw, m, k, n);
                assert_eq!(dw, want, "gemm_tn {level:?} {m}x{k}x{n}");
                let x = seq(k, 0.3);
                let mut out = vec![0.0; n];
                vec_mat_at(level, &x, &b, Some(&seq(n, 0.1)), &mut out, false);
                let mut plain = vec![0.0; n];
                vec_mat_at(
                    SimdLevel::Scalar,
                    &x,
                    &b,
                    Some(&seq(n, 0.1)),
                    &mut plain,
                    false,
                );
                assert_eq!(out, plain, "vec_mat {level:?}");
            }
        }
    }
}
