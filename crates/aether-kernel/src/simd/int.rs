//! The integer head's kernels: `acc = x·W` with i16 activations, i8 weights and i32
//! sums ([`matvec_i8`]), attention scores of an i16 query against i8 key rows
//! ([`scores_i8`]) and weighted sums of i8 value rows ([`weighted_i8`]). Integer sums do
//! not depend on the order (the head bounds `|x·w|`, so no sum overflows): every path,
//! portable or Arm DSP, gives the same values.

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

/// Checks that every row `[offs[c] + lo, offs[c] + lo + len)` lies within `rows` (a row
/// outside panics here, as slicing it would); the DSP paths rely on it.
#[inline]
fn check_rows(offs: &[u32], rows: usize, lo: usize, len: usize) {
    if let Some(top) = offs.iter().copied().max() {
        let top = top as usize;
        assert!(
            top + lo + len <= rows,
            "row at offset {top} + {lo} + {len} past {rows}"
        );
    }
}

/// `out[c] = q · rows[offs[c] + lo ..][..q.len()]` for each candidate row `c` (i16
/// query, i8 key rows at element offsets `offs`). Portable: four rows at a time; with
/// the DSP extension: two rows at a time, two dimensions per `smlad`.
#[inline]
pub fn scores_i8(q: &[i16], rows: &[i8], offs: &[u32], lo: usize, out: &mut [i32]) {
    let dh = q.len();
    check_rows(offs, rows.len(), lo, dh);
    let row = |o: u32| &rows[o as usize + lo..o as usize + lo + dh];
    #[cfg(aether_arm_dsp)]
    if (4..=4 * dsp::MAX_QUADS).contains(&dh) {
        // `[q₀, q₂], [q₁, q₃]` per four dimensions, as i16 halves of a word.
        let quads = dh / 4;
        let pack = |m: usize| {
            let h = |t: usize| q[4 * m + t] as u16 as u32;
            (h(0) | (h(2) << 16), h(1) | (h(3) << 16))
        };
        let base = rows[lo..].as_ptr();
        if quads == 8 && !offs.is_empty() {
            // The default head dimension (32): one unrolled pass per row.
            let mut packed = [0u32; 16];
            for m in 0..8 {
                (packed[2 * m], packed[2 * m + 1]) = pack(m);
            }
            let n = offs.len().min(out.len());
            // SAFETY: every row ends within `rows` (`check_rows` above), so 32 bytes are
            // readable at `base + offs[c]`; `out` holds `n` scores.
            unsafe { dsp::scores32(&packed, &offs[..n], base, &mut out[..n]) };
            return;
        }
        let mut packed = [0u32; 2 * dsp::MAX_QUADS];
        for m in 0..quads {
            (packed[2 * m], packed[2 * m + 1]) = pack(m);
        }
        let packed = &packed[..2 * quads];
        for (o, out) in offs.chunks(2).zip(out.chunks_mut(2)) {
            let (o0, o1) = (o[0] as usize, *o.get(1).unwrap_or(&o[0]) as usize);
            // SAFETY: both rows end within `rows` (`check_rows` above), so each has
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
    check_rows(offs, rows.len(), lo, len);
    let row = |o: u32| &rows[o as usize + lo..o as usize + lo + len];
    #[cfg(aether_arm_dsp)]
    if len >= 4 && wts.iter().all(|&x| (0..1 << 15).contains(&x)) {
        let n = offs.len().min(wts.len());
        let quads = len / 4;
        let base = rows[lo..].as_ptr();
        for (o, wt) in offs[..n].chunks(2).zip(wts[..n].chunks(2)) {
            // An odd last candidate pairs with itself at weight 0.
            let (o1, w1) = match (o.get(1), wt.get(1)) {
                (Some(&o1), Some(&w1)) => (o1, w1),
                _ => (o[0], 0),
            };
            let packed = wt[0] as u32 | ((w1 as u32) << 16);
            let (v0, v1) = (
                base.wrapping_add(o[0] as usize),
                base.wrapping_add(o1 as usize),
            );
            // SAFETY: both rows end within `rows` (`check_rows` above): `4·quads ≤ len`
            // bytes from `base + offset`; `acc` holds `4·quads` sums.
            unsafe {
                if quads == 8 {
                    dsp::weighted_pair32(v0, v1, packed, (&mut acc[..32]).try_into().expect("32"))
                } else {
                    dsp::weighted_pair(v0, v1, packed, &mut acc[..4 * quads])
                }
            };
        }
        // The last `len mod 4` dimensions.
        for (&o, &wt) in offs[..n].iter().zip(wts) {
            let r = row(o);
            for (a, &v) in acc[4 * quads..].iter_mut().zip(&r[4 * quads..]) {
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
    /// `acc[d] += lo(w)·v0[d] + hi(w)·v1[d]` for `d < acc.len()` (a multiple of four): the
    /// i16 weights of two candidates in the halves of `w`, their value bytes paired by
    /// `pkhbt`/`pkhtb` and widened by `sxtb16`, one `smlad` per dimension; the sums
    /// stream through memory four at a time (`ldrd`/`strd`).
    ///
    /// # Safety
    /// `acc.len()` is a positive multiple of four, and `acc.len()` bytes are readable
    /// at `v0` and at `v1`.
    #[inline(always)]
    pub(super) unsafe fn weighted_pair(v0: *const i8, v1: *const i8, w: u32, acc: &mut [i32]) {
        let n = acc.len();
        debug_assert!(n > 0 && n.is_multiple_of(4));
        // SAFETY: reads `n` bytes at `v0` and `v1` (the contract; Cortex-M loads unaligned
        // words) and reads and writes the `n` sums of `acc` (i32, so `ldrd`/`strd` are
        // aligned); no stack; the loop runs `n / 4 ≥ 1` times.
        unsafe {
            let ap = acc.as_mut_ptr();
            core::arch::asm!(
                "2:",
                "ldr {x0}, [{p0}], #4",
                "ldr {x1}, [{p1}], #4",
                "pkhbt {t}, {x0}, {x1}, lsl #16",
                "pkhtb {x1}, {x1}, {x0}, asr #16",
                "ldrd {a0}, {a1}, [{acc}]",
                "ldrd {a2}, {a3}, [{acc}, #8]",
                "sxtb16 {x0}, {t}",
                "smlad {a0}, {w}, {x0}, {a0}",
                "sxtb16 {x0}, {t}, ror #8",
                "smlad {a1}, {w}, {x0}, {a1}",
                "sxtb16 {x0}, {x1}",
                "smlad {a2}, {w}, {x0}, {a2}",
                "sxtb16 {x0}, {x1}, ror #8",
                "smlad {a3}, {w}, {x0}, {a3}",
                "strd {a0}, {a1}, [{acc}], #8",
                "strd {a2}, {a3}, [{acc}], #8",
                "cmp {acc}, {end}",
                "bne 2b",
                p0 = inout(reg) v0 => _,
                p1 = inout(reg) v1 => _,
                acc = inout(reg) ap => _,
                end = in(reg) ap.add(n),
                w = in(reg) w,
                x0 = out(reg) _,
                x1 = out(reg) _,
                t = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                options(nostack),
            );
        }
    }

    /// [`weighted_pair`] for 32 dimensions (the default head), unrolled: no loop.
    ///
    /// # Safety
    /// 32 bytes readable at `v0` and at `v1`.
    #[inline(always)]
    pub(super) unsafe fn weighted_pair32(
        v0: *const i8,
        v1: *const i8,
        w: u32,
        acc: &mut [i32; 32],
    ) {
        // Four dimensions: value bytes at offset `v`, sums at byte offsets `a` and `b`.
        macro_rules! quad {
            ($v:literal, $a:literal, $b:literal) => {
                concat!(
                    "ldr {x0}, [{p0}, #",
                    $v,
                    "]\n",
                    "ldr {x1}, [{p1}, #",
                    $v,
                    "]\n",
                    "pkhbt {t}, {x0}, {x1}, lsl #16\n",
                    "pkhtb {x1}, {x1}, {x0}, asr #16\n",
                    "ldrd {a0}, {a1}, [{acc}, #",
                    $a,
                    "]\n",
                    "ldrd {a2}, {a3}, [{acc}, #",
                    $b,
                    "]\n",
                    "sxtb16 {x0}, {t}\n",
                    "smlad {a0}, {w}, {x0}, {a0}\n",
                    "sxtb16 {x0}, {t}, ror #8\n",
                    "smlad {a1}, {w}, {x0}, {a1}\n",
                    "sxtb16 {x0}, {x1}\n",
                    "smlad {a2}, {w}, {x0}, {a2}\n",
                    "sxtb16 {x0}, {x1}, ror #8\n",
                    "smlad {a3}, {w}, {x0}, {a3}\n",
                    "strd {a0}, {a1}, [{acc}, #",
                    $a,
                    "]\n",
                    "strd {a2}, {a3}, [{acc}, #",
                    $b,
                    "]\n",
                )
            };
        }
        // SAFETY: reads 32 bytes at `v0` and `v1` (the contract; unaligned words are
        // fine on Cortex-M), reads and writes the 32 sums of `acc` (`ldrd`/`strd` on i32:
        // aligned); no stack.
        unsafe {
            core::arch::asm!(
                quad!("0", "0", "8"),
                quad!("4", "16", "24"),
                quad!("8", "32", "40"),
                quad!("12", "48", "56"),
                quad!("16", "64", "72"),
                quad!("20", "80", "88"),
                quad!("24", "96", "104"),
                quad!("28", "112", "120"),
                p0 = in(reg) v0,
                p1 = in(reg) v1,
                acc = in(reg) acc.as_mut_ptr(),
                w = in(reg) w,
                x0 = out(reg) _,
                x1 = out(reg) _,
                t = out(reg) _,
                a0 = out(reg) _,
                a1 = out(reg) _,
                a2 = out(reg) _,
                a3 = out(reg) _,
                options(nostack),
            );
        }
    }

    /// `out[c] = q · base[offs[c]..][..32]` for every candidate, the packed query (16
    /// words, `[q₀, q₂], [q₁, q₃]` per four dimensions) against each key row in one
    /// unrolled pass: eight `ldrd`/`ldr` pairs, sixteen `sxtb16`, sixteen `smuad`/`smlad`.
    ///
    /// # Safety
    /// `packed.len() == 16`, `offs.len() == out.len() > 0`, and 32 bytes readable at
    /// `base + offs[c]` for every `c`.
    #[inline(always)]
    pub(super) unsafe fn scores32(packed: &[u32], offs: &[u32], base: *const i8, out: &mut [i32]) {
        debug_assert!(packed.len() == 16 && !offs.is_empty() && offs.len() == out.len());
        // SAFETY: reads the 16 words of `packed` (u32: `ldrd` aligned), the offsets and 32
        // bytes at `base + offs[c]` (the contract), writes `out[c]` (one per offset, the
        // loop runs `offs.len() ≥ 1` times); no stack.
        // Four dimensions at byte offset `k` of the row, packed query words at `q`: the
        // first multiply-add starts the sum (`smuad`), the others accumulate.
        macro_rules! quad {
            ($first:literal, $q:literal, $k:literal) => {
                concat!(
                    "ldrd {qe}, {qo}, [{q}, #",
                    $q,
                    "]\n",
                    "ldr {kw}, [{kp}, #",
                    $k,
                    "]\n",
                    "sxtb16 {t}, {kw}\n",
                    $first,
                    "\n",
                    "sxtb16 {t}, {kw}, ror #8\n",
                    "smlad {a}, {qo}, {t}, {a}\n",
                )
            };
        }
        unsafe {
            let op = offs.as_ptr();
            core::arch::asm!(
                "2:",
                "ldr {kp}, [{offs}], #4",
                "add {kp}, {base}, {kp}",
                quad!("smuad {a}, {qe}, {t}", "0", "0"),
                quad!("smlad {a}, {qe}, {t}, {a}", "8", "4"),
                quad!("smlad {a}, {qe}, {t}, {a}", "16", "8"),
                quad!("smlad {a}, {qe}, {t}, {a}", "24", "12"),
                quad!("smlad {a}, {qe}, {t}, {a}", "32", "16"),
                quad!("smlad {a}, {qe}, {t}, {a}", "40", "20"),
                quad!("smlad {a}, {qe}, {t}, {a}", "48", "24"),
                quad!("smlad {a}, {qe}, {t}, {a}", "56", "28"),
                "str {a}, [{out}], #4",
                "cmp {offs}, {end}",
                "bne 2b",
                offs = inout(reg) op => _,
                end = in(reg) op.add(offs.len()),
                out = inout(reg) out.as_mut_ptr() => _,
                base = in(reg) base,
                q = in(reg) packed.as_ptr(),
                kp = out(reg) _,
                kw = out(reg) _,
                t = out(reg) _,
                qe = out(reg) _,
                qo = out(reg) _,
                a = out(reg) _,
                options(nostack),
            );
        }
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
            /// One pair of rows: `x[i], x[i+1]` against four columns of rows `i`, `i + 1`.
            macro_rules! pair {
                () => {
                    concat!(
                        "ldr {xx}, [{x}], #4\n",
                        "ldr {a}, [{w}]\n",
                        "ldr {b}, [{w}, {n}]\n",
                        "add {w}, {w}, {n}, lsl #1\n",
                        "pkhbt {t}, {a}, {b}, lsl #16\n",
                        "pkhtb {b}, {b}, {a}, asr #16\n",
                        "sxtb16 {a}, {t}\n",
                        "smlad {c0}, {xx}, {a}, {c0}\n",
                        "sxtb16 {a}, {t}, ror #8\n",
                        "smlad {c1}, {xx}, {a}, {c1}\n",
                        "sxtb16 {a}, {b}\n",
                        "smlad {c2}, {xx}, {a}, {c2}\n",
                        "sxtb16 {a}, {b}, ror #8\n",
                        "smlad {c3}, {xx}, {a}, {c3}\n",
                    )
                };
            }
            // SAFETY: reads the `2·pairs` i16 of `x` (a word per pair; Cortex-M loads
            // unaligned words) and four bytes of each of the first `2·pairs` rows of `w`
            // (in bounds by the assert); writes no memory and no stack. An odd pair goes
            // first on its own, then the loop takes two pairs per turn and runs
            // `pairs / 2` times (its end pointer is `x + 4·pairs` bytes), when non-zero.
            unsafe {
                let xp = x.as_ptr();
                core::arch::asm!(
                    "tst {np}, #1",
                    "beq 3f",
                    pair!(),
                    "3:",
                    "cmp {x}, {end}",
                    "beq 4f",
                    "2:",
                    pair!(),
                    pair!(),
                    "cmp {x}, {end}",
                    "bne 2b",
                    "4:",
                    np = in(reg) pairs,
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

    /// A xorshift32 stream from `seed`.
    fn xorshift32(mut s: u32) -> impl FnMut() -> u32 {
        move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        }
    }

    /// Against the plain dot products, head dimensions 1..=13 and 32, 0..=5 candidates.
    #[test]
    fn scores_i8_equal_the_plain_dot_products() {
        let mut next = xorshift32(0x2545_F491u32);
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
        let mut next = xorshift32(0x1234_5679u32);
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
        let mut next = xorshift32(0x9E37_79B9u32);
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
