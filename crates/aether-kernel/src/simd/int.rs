//! The integer head's kernels: `acc = x·W` with i16 activations, i8 weights and i32
//! sums ([`matvec_i8`]), and attention scores of an i16 query against i8 key rows
//! ([`scores_i8`]). Integer sums do not depend on the order (the head bounds `|x·w|` so no sum
//! overflows), so every path gives the same values.

/// `acc[o] = Σᵢ x[i]·w[i·n + o]`, `n = acc.len()`, over the first `x.len()` rows.
///
/// Portable: blocks of 8 output columns in registers over all rows. On Arm cores with
/// the DSP extension (Cortex-M4/M7): blocks of 4 columns, two rows per `smlad`.
#[inline]
pub fn matvec_i8(x: &[i16], w: &[i8], acc: &mut [i32]) {
    let n = acc.len();
    if n == 0 {
        return;
    }
    let rows = x.len().min(w.len() / n);
    let x = &x[..rows];
    let mut c = 0;
    // (Without rows `w` may be shorter than `c`: the portable loops below zero `acc`.)
    #[cfg(aether_arm_dsp)]
    while rows > 0 && c + 4 <= n {
        let mut a = [0i32; 4];
        dsp::block4(x, &w[c..], n, &mut a);
        acc[c..c + 4].copy_from_slice(&a);
        c += 4;
    }
    while c + 8 <= n {
        let mut a = [0i32; 8];
        for (xi, row) in x.iter().zip(w.chunks_exact(n)) {
            let xi = *xi as i32;
            for (aj, wj) in a.iter_mut().zip(&row[c..c + 8]) {
                *aj += xi * *wj as i32;
            }
        }
        acc[c..c + 8].copy_from_slice(&a);
        c += 8;
    }
    if c < n {
        let tail = &mut acc[c..];
        tail.iter_mut().for_each(|a| *a = 0);
        for (xi, row) in x.iter().zip(w.chunks_exact(n)) {
            let xi = *xi as i32;
            for (aj, wj) in tail.iter_mut().zip(&row[c..]) {
                *aj += xi * *wj as i32;
            }
        }
    }
}

/// The end of the furthest row, `max(offs) + lo + len` (0 without rows), checked to lie
/// within `rows` (a row outside panics here, as slicing it would).
#[inline]
fn rows_reach(offs: &[u32], rows: usize, lo: usize, len: usize) -> usize {
    let Some(top) = offs.iter().copied().max() else {
        return 0;
    };
    let top = top as usize;
    let reach = top + lo + len;
    assert!(
        reach <= rows,
        "row at offset {top} + {lo} + {len} past {rows}"
    );
    reach
}

/// `out[c] = q · rows[offs[c] + lo ..][..q.len()]` for each candidate row `c` (i16
/// query, i8 key rows at element offsets `offs`). Portable: four rows at a time; with
/// the DSP extension: two rows at a time, two dimensions per `smlad`.
#[inline]
pub fn scores_i8(q: &[i16], rows: &[i8], offs: &[u32], lo: usize, out: &mut [i32]) {
    let dh = q.len();
    rows_reach(offs, rows.len(), lo, dh);
    let row = |o: u32| &rows[o as usize + lo..o as usize + lo + dh];
    #[cfg(aether_arm_dsp)]
    if (4..=4 * dsp::MAX_QUADS).contains(&dh) {
        // `[q₀, q₂], [q₁, q₃]` per four dimensions, as i16 halves of a word.
        let quads = dh / 4;
        let mut packed = [0u32; 2 * dsp::MAX_QUADS];
        for (m, p) in packed.chunks_exact_mut(2).take(quads).enumerate() {
            let h = |t: usize| q[4 * m + t] as u16 as u32;
            p[0] = h(0) | (h(2) << 16);
            p[1] = h(1) | (h(3) << 16);
        }
        let packed = &packed[..2 * quads];
        let base = rows[lo..].as_ptr();
        for (o, out) in offs.chunks(2).zip(out.chunks_mut(2)) {
            let (o0, o1) = (o[0] as usize, *o.get(1).unwrap_or(&o[0]) as usize);
            // SAFETY: both rows end within `rows` (`rows_reach` above), so each has
            // `4·quads ≤ dh` bytes from `base + offset`.
            let (a0, a1) = unsafe { dsp::dot2(packed, base.add(o0), base.add(o1)) };
            out[0] = a0;
            if let Some(x) = out.get_mut(1) {
                *x = a1;
            }
        }
        if 4 * quads < dh {
            for (&o, x) in offs.iter().zip(out.iter_mut()) {
                let r = row(o);
                *x += (4 * quads..dh)
                    .map(|t| q[t] as i32 * r[t] as i32)
                    .sum::<i32>();
            }
        }
        return;
    }
    let mut ic = offs.chunks_exact(4);
    let mut oc = out.chunks_exact_mut(4);
    for (ix, o) in (&mut ic).zip(&mut oc) {
        let (r0, r1, r2, r3) = (row(ix[0]), row(ix[1]), row(ix[2]), row(ix[3]));
        let mut a = [0i32; 4];
        // Four dimensions per step: one pointer update per row per four loads.
        let chunks = q
            .chunks_exact(4)
            .zip(r0.chunks_exact(4))
            .zip(r1.chunks_exact(4))
            .zip(r2.chunks_exact(4))
            .zip(r3.chunks_exact(4));
        for ((((qq, k0), k1), k2), k3) in chunks {
            for t in 0..4 {
                let qd = qq[t] as i32;
                a[0] += qd * k0[t] as i32;
                a[1] += qd * k1[t] as i32;
                a[2] += qd * k2[t] as i32;
                a[3] += qd * k3[t] as i32;
            }
        }
        let tail = dh / 4 * 4;
        for t in tail..dh {
            let qd = q[t] as i32;
            a[0] += qd * r0[t] as i32;
            a[1] += qd * r1[t] as i32;
            a[2] += qd * r2[t] as i32;
            a[3] += qd * r3[t] as i32;
        }
        o.copy_from_slice(&a);
    }
    for (&j, o) in ic.remainder().iter().zip(oc.into_remainder()) {
        let mut a = 0i32;
        for (&qd, &k) in q.iter().zip(row(j)) {
            a += qd as i32 * k as i32;
        }
        *o = a;
    }
}

/// `acc[d] += Σ_c wts[c] · rows[offs[c] + lo + d]` for `d < acc.len()` (attention weights
/// times i8 value rows at element offsets `offs`). Portable: four rows at a time; with
/// the DSP extension and weights in `0..2¹⁵`: two rows per `smlad`, four dimensions in
/// registers.
#[inline]
pub fn weighted_i8(wts: &[i32], rows: &[i8], offs: &[u32], lo: usize, acc: &mut [i32]) {
    let len = acc.len();
    rows_reach(offs, rows.len(), lo, len);
    let row = |o: u32| &rows[o as usize + lo..o as usize + lo + len];
    #[cfg(aether_arm_dsp)]
    if len >= 4 && wts.iter().all(|&x| (0..1 << 15).contains(&x)) {
        let n = offs.len().min(wts.len());
        let pairs = n / 2;
        let quads = len / 4;
        if pairs > 0 {
            for qd in 0..quads {
                let a: &mut [i32; 4] = (&mut acc[4 * qd..4 * qd + 4]).try_into().expect("4");
                // SAFETY: `2·pairs ≤ n` offsets and weights, all weights below 2¹⁵;
                // every row ends within `rows` (`rows_reach` above), so the four bytes at
                // `lo + 4·qd` past each offset are in bounds.
                unsafe {
                    dsp::weighted4(
                        &offs[..2 * pairs],
                        &wts[..2 * pairs],
                        rows[lo + 4 * qd..].as_ptr(),
                        a,
                    )
                };
            }
        }
        // The dimensions past the last group of four for the pairs, and the odd
        // candidate's whole row.
        let done = if pairs > 0 { 4 * quads } else { 0 };
        for (c, (&o, &wt)) in offs[..n].iter().zip(wts).enumerate() {
            let r = row(o);
            let from = if c < 2 * pairs { done } else { 0 };
            for (a, &v) in acc[from..].iter_mut().zip(&r[from..]) {
                *a += wt * v as i32;
            }
        }
        return;
    }
    let mut ic = offs.chunks_exact(4);
    let mut wc = wts.chunks_exact(4);
    for (ix, ws) in (&mut ic).zip(&mut wc) {
        let (r0, r1, r2, r3) = (row(ix[0]), row(ix[1]), row(ix[2]), row(ix[3]));
        let (w0, w1, w2, w3) = (ws[0], ws[1], ws[2], ws[3]);
        let chunks = acc
            .chunks_exact_mut(4)
            .zip(r0.chunks_exact(4))
            .zip(r1.chunks_exact(4))
            .zip(r2.chunks_exact(4))
            .zip(r3.chunks_exact(4));
        for ((((a, v0), v1), v2), v3) in chunks {
            for t in 0..4 {
                a[t] +=
                    w0 * v0[t] as i32 + w1 * v1[t] as i32 + w2 * v2[t] as i32 + w3 * v3[t] as i32;
            }
        }
        for t in len / 4 * 4..len {
            acc[t] += w0 * r0[t] as i32 + w1 * r1[t] as i32 + w2 * r2[t] as i32 + w3 * r3[t] as i32;
        }
    }
    for (&j, &wt) in ic.remainder().iter().zip(wc.remainder()) {
        for (a, &v) in acc.iter_mut().zip(row(j)) {
            *a += wt * v as i32;
        }
    }
}

/// ARMv7E-M DSP kernels (`cfg(aether_arm_dsp)`, set by the build script).
#[cfg(aether_arm_dsp)]
mod dsp {
    /// `acc[t] += Σ_c wts[c]·base[offs[c] + t]` for `t < 4`, two candidates per step:
    /// their weights packed into the halves of one word (`pkhbt`), their value bytes
    /// paired by `pkhbt`/`pkhtb` and widened by `sxtb16`, one `smlad` per dimension.
    ///
    /// # Safety
    /// `offs.len() == wts.len()`, even and non-zero; every weight in `0..2¹⁵`; the four
    /// bytes at `base + offs[c]` readable for every `c`.
    #[inline(always)]
    pub(super) unsafe fn weighted4(offs: &[u32], wts: &[i32], base: *const i8, acc: &mut [i32; 4]) {
        let n = offs.len();
        debug_assert!(n > 0 && n.is_multiple_of(2) && wts.len() == n);
        let [mut a0, mut a1, mut a2, mut a3] = *acc;
        // SAFETY: reads the `n` offsets and weights (the loop runs `n / 2 ≥ 1` times, the
        // end pointer is `wts + n`) and four bytes at `base + offs[c]` (the contract);
        // writes no memory and no stack.
        unsafe {
            let wp = wts.as_ptr();
            core::arch::asm!(
                "2:",
                "ldrd {o0}, {o1}, [{offs}], #8",
                "ldr {o0}, [{base}, {o0}]",
                "ldr {o1}, [{base}, {o1}]",
                "ldrd {w}, {t}, [{wts}], #8",
                "pkhbt {w}, {w}, {t}, lsl #16",
                "pkhbt {t}, {o0}, {o1}, lsl #16",
                "pkhtb {o1}, {o1}, {o0}, asr #16",
                "sxtb16 {o0}, {t}",
                "smlad {a0}, {w}, {o0}, {a0}",
                "sxtb16 {o0}, {t}, ror #8",
                "smlad {a1}, {w}, {o0}, {a1}",
                "sxtb16 {o0}, {o1}",
                "smlad {a2}, {w}, {o0}, {a2}",
                "sxtb16 {o0}, {o1}, ror #8",
                "smlad {a3}, {w}, {o0}, {a3}",
                "cmp {wts}, {end}",
                "bne 2b",
                offs = inout(reg) offs.as_ptr() => _,
                wts = inout(reg) wp => _,
                end = in(reg) wp.add(n),
                base = in(reg) base,
                o0 = out(reg) _,
                o1 = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                a2 = inout(reg) a2,
                a3 = inout(reg) a3,
                options(nostack, readonly),
            );
        }
        *acc = [a0, a1, a2, a3];
    }

    /// Most groups of four query dimensions [`dot2`] takes (head dimension ≤ 128).
    pub(super) const MAX_QUADS: usize = 32;

    /// The dot products of the packed query (`[q₀, q₂], [q₁, q₃]` per four dimensions)
    /// with the first `2·packed.len()` bytes at `k0` and at `k1`.
    ///
    /// # Safety
    /// `packed` is non-empty and even, and `2·packed.len()` bytes are readable at `k0`
    /// and at `k1`.
    #[inline(always)]
    pub(super) unsafe fn dot2(packed: &[u32], k0: *const i8, k1: *const i8) -> (i32, i32) {
        let quads = packed.len() / 2;
        debug_assert!(quads > 0);
        let (mut a0, mut a1) = (0i32, 0i32);
        // SAFETY: reads the `2·quads` words of `packed` (u32, so `ldrd` is aligned) and
        // `4·quads` bytes at `k0` and `k1` (the contract; Cortex-M loads unaligned
        // words); writes no memory and no stack; runs `quads ≥ 1` times.
        unsafe {
            let qp = packed.as_ptr();
            core::arch::asm!(
                "2:",
                "ldrd {qe}, {qo}, [{q}], #8",
                "ldr {k}, [{k0}], #4",
                "sxtb16 {t}, {k}",
                "smlad {a0}, {qe}, {t}, {a0}",
                "sxtb16 {t}, {k}, ror #8",
                "smlad {a0}, {qo}, {t}, {a0}",
                "ldr {k}, [{k1}], #4",
                "sxtb16 {t}, {k}",
                "smlad {a1}, {qe}, {t}, {a1}",
                "sxtb16 {t}, {k}, ror #8",
                "smlad {a1}, {qo}, {t}, {a1}",
                "cmp {q}, {end}",
                "bne 2b",
                q = inout(reg) qp => _,
                end = in(reg) qp.add(2 * quads),
                k0 = inout(reg) k0 => _,
                k1 = inout(reg) k1 => _,
                qe = out(reg) _,
                qo = out(reg) _,
                k = out(reg) _,
                t = out(reg) _,
                a0 = inout(reg) a0,
                a1 = inout(reg) a1,
                options(nostack, readonly),
            );
        }
        (a0, a1)
    }

    /// `acc[k] += Σᵢ x[i]·w[i·n + k]` for `k < 4`, `i < x.len()`: per pair of rows one
    /// word of each weight row, `pkhbt`/`pkhtb` pair the rows' bytes, `sxtb16` widens
    /// them to i16 halves, and one `smlad` adds both rows' products to a column.
    #[inline(always)]
    pub(super) fn block4(x: &[i16], w: &[i8], n: usize, acc: &mut [i32; 4]) {
        let pairs = x.len() / 2;
        if pairs > 0 {
            // The asm reads w[i·n..][..4] for i < 2·pairs: check the last row.
            assert!(n >= 4 && (2 * pairs - 1) * n + 4 <= w.len());
            let [mut c0, mut c1, mut c2, mut c3] = *acc;
            // SAFETY: reads the `2·pairs` i16 of `x` (a word per pair; Cortex-M loads
            // unaligned words) and four bytes of each of the first `2·pairs` rows of `w`
            // (in bounds by the assert); writes no memory and no stack; the loop runs
            // `pairs ≥ 1` times (the end pointer is `x + 4·pairs` bytes).
            unsafe {
                let xp = x.as_ptr();
                core::arch::asm!(
                    "2:",
                    "ldr {xx}, [{x}], #4",
                    "ldr {a}, [{w}]",
                    "ldr {b}, [{w}, {n}]",
                    "add {w}, {w}, {n}, lsl #1",
                    "pkhbt {t}, {a}, {b}, lsl #16",
                    "pkhtb {b}, {b}, {a}, asr #16",
                    "sxtb16 {a}, {t}",
                    "smlad {c0}, {xx}, {a}, {c0}",
                    "sxtb16 {a}, {t}, ror #8",
                    "smlad {c1}, {xx}, {a}, {c1}",
                    "sxtb16 {a}, {b}",
                    "smlad {c2}, {xx}, {a}, {c2}",
                    "sxtb16 {a}, {b}, ror #8",
                    "smlad {c3}, {xx}, {a}, {c3}",
                    "cmp {x}, {end}",
                    "bne 2b",
                    x = inout(reg) xp => _,
                    end = in(reg) xp.add(2 * pairs),
                    w = inout(reg) w.as_ptr() => _,
                    n = in(reg) n,
                    xx = out(reg) _,
                    a = out(reg) _,
                    b = out(reg) _,
                    t = out(reg) _,
                    c0 = inout(reg) c0,
                    c1 = inout(reg) c1,
                    c2 = inout(reg) c2,
                    c3 = inout(reg) c3,
                    options(nostack, readonly),
                );
            }
            *acc = [c0, c1, c2, c3];
        }
        if x.len() % 2 == 1 {
            let i = x.len() - 1;
            let xi = x[i] as i32;
            for (k, a) in acc.iter_mut().enumerate() {
                *a += xi * w[i * n + k] as i32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// Against the plain dot products, head dimensions 1..=13 and 32, 0..=5 candidates.
    #[test]
    fn scores_i8_equal_the_plain_dot_products() {
        let mut s = 0x2545_F491u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for dh in (1..14).chain([32]) {
            for nc in 0..6 {
                let (w, lo) = (dh + 3, 2);
                let n_rows = 7;
                let q: Vec<i16> = (0..dh).map(|_| next() as i16).collect();
                let rows: Vec<i8> = (0..n_rows * w).map(|_| next() as i8).collect();
                let idx: Vec<u32> = (0..nc).map(|_| next() % n_rows as u32).collect();
                let offs: Vec<u32> = idx.iter().map(|&j| j * w as u32).collect();
                let mut out = vec![0; nc];
                scores_i8(&q, &rows, &offs, lo, &mut out);
                for (c, o) in out.iter().enumerate() {
                    let r = &rows[idx[c] as usize * w + lo..];
                    let want: i64 = (0..dh).map(|t| q[t] as i64 * r[t] as i64).sum();
                    assert_eq!(*o as i64, want, "dh {dh} candidates {nc} c {c}");
                }
            }
        }
    }

    /// Against the plain weighted sum: widths 1..=13 and 32, 0..=70 candidates (more than
    /// one chunk of the DSP path), weights up to 2¹⁵ (which the DSP path leaves to the
    /// portable one).
    #[test]
    fn weighted_i8_equals_the_plain_sum() {
        let mut s = 0x1234_5679u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for len in (1..14).chain([32]) {
            for nc in (0..8).chain([65, 70]) {
                let (w, lo, n_rows) = (len + 5, 3, 9);
                let rows: Vec<i8> = (0..n_rows * w).map(|_| next() as i8).collect();
                let idx: Vec<u32> = (0..nc).map(|_| next() % n_rows as u32).collect();
                let top = if nc == 3 { 1 << 15 } else { (1 << 15) - 1 };
                let wts: Vec<i32> = (0..nc).map(|_| (next() % (top + 1)) as i32).collect();
                let mut acc: Vec<i32> = (0..len).map(|d| d as i32 - 2).collect();
                let want: Vec<i64> = (0..len)
                    .map(|d| {
                        let s: i64 = (0..nc)
                            .map(|c| wts[c] as i64 * rows[idx[c] as usize * w + lo + d] as i64)
                            .sum();
                        acc[d] as i64 + s
                    })
                    .collect();
                let offs: Vec<u32> = idx.iter().map(|&j| j * w as u32).collect();
                weighted_i8(&wts, &rows, &offs, lo, &mut acc);
                let got: Vec<i64> = acc.iter().map(|&a| a as i64).collect();
                assert_eq!(got, want, "len {len} candidates {nc}");
            }
        }
    }

    /// Against the textbook triple loop, every shape up to 9 rows × 13 columns.
    #[test]
    fn matvec_i8_equals_the_plain_sum() {
        let mut s = 0x9E37_79B9u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for rows in 0..10 {
            for n in 1..14 {
                let x: Vec<i16> = (0..rows).map(|_| next() as i16).collect();
                let w: Vec<i8> = (0..rows * n).map(|_| next() as i8).collect();
                let mut acc = vec![7; n];
                matvec_i8(&x, &w, &mut acc);
                for (o, a) in acc.iter().enumerate() {
                    let want: i64 = (0..rows).map(|i| x[i] as i64 * w[i * n + o] as i64).sum();
                    assert_eq!(*a as i64, want, "rows {rows} n {n} column {o}");
                }
            }
        }
    }
}
