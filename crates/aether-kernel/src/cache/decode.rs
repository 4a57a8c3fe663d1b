//! `decode`: the candidates of the newest position, scores, softmax and weighted values,
//! with the score and value microkernels generic over the SIMD instruction set.

use super::*;

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
    if I::SCALAR && H == 4 {
        return scores4_scalar(q, g, d, scale, s, nc, c0);
    }
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

/// [`scores_g`] with four heads at the [`simd::Scalar`] level: for each head the 16 lane
/// sums of [`dot4_k`] (lane `l` sums `q[e + l]·k[e + l]` over the chunks `e` it covers)
/// and the pairwise reduction of `Scalar::reduce_add`, one head at a time so the lanes
/// fit scalar registers (the generic loop keeps 64 lanes live and spills them).
///
/// The same products and sums in the same order as the generic loop, except that a lane
/// starts from its first product rather than from `0 + product`: the two differ only in
/// the sign of an exactly zero lane, which can change only the sign of an exactly zero
/// score, and `exp(±0 − m)` is the same, so no output bit changes (and this is what the
/// scalar level computes on every platform, host and node alike).
#[inline(always)]
fn scores4_scalar<R: RowOffsets>(
    q: &[f32],
    g: Group<'_, R>,
    d: usize,
    scale: f32,
    s: &mut [f32],
    nc: usize,
    c0: usize,
) {
    const L: usize = simd::LANES;
    for c in 0..g.n {
        let o = g.rows.off(c);
        let kr = &g.x[o..o + d];
        for j in 0..4 {
            let qj = &q[j * d..(j + 1) * d];
            #[cfg(all(target_arch = "arm", target_abi = "eabihf"))]
            if d.is_multiple_of(L) {
                s[j * nc + c0 + c] = simd::arm_vfp::dot16_lanes(qj, kr) * scale;
                continue;
            }
            // Constant lane indices only, so `w` stays in registers.
            let mut w = [0.0f32; L];
            let mut e = 0;
            if d >= L {
                let (qc, kc) = (&qj[..L], &kr[..L]);
                for l in 0..L {
                    w[l] = qc[l] * kc[l];
                }
                e = L;
            }
            while e + L <= d {
                let (qc, kc) = (&qj[e..e + L], &kr[e..e + L]);
                for l in 0..L {
                    w[l] += qc[l] * kc[l];
                }
                e += L;
            }
            if e < d {
                let (qc, kc) = (&qj[e..], &kr[e..]);
                for l in 0..L {
                    if l < qc.len() {
                        w[l] += qc[l] * kc[l];
                    }
                }
            }
            let mut len = L;
            while len > 1 {
                len /= 2;
                for i in 0..len {
                    w[i] += w[i + len];
                }
            }
            s[j * nc + c0 + c] = w[0] * scale;
        }
    }
}

/// [`values_g`] at the [`simd::Scalar`] level: output tiles of `T` columns × `H` heads
/// accumulate in scalar registers over all candidates (the generic loop's `2·LANES × H`
/// accumulators do not fit and go through memory). Each output element still adds
/// `w·v` candidate by candidate from the same start, so the bits are those of the
/// generic loop.
#[inline(always)]
fn values_scalar<R: RowOffsets, const H: usize, const T: usize>(
    s: &[f32],
    nc: usize,
    c0: usize,
    g: Group<'_, R>,
    d: usize,
    o: &mut [f32],
    first: bool,
) {
    // Each head's weights of these candidates, sliced once (no bounds check per use).
    let mut wr = [&s[..0]; H];
    for (j, r) in wr.iter_mut().enumerate() {
        *r = &s[j * nc + c0..j * nc + c0 + g.n];
    }
    let mut e = 0;
    while e + T <= d {
        let mut acc = [[0.0f32; T]; H];
        if !first {
            for (j, a) in acc.iter_mut().enumerate() {
                a.copy_from_slice(&o[j * d + e..j * d + e + T]);
            }
        }
        for c in 0..g.n {
            let off = g.rows.off(c) + e;
            let v: &[f32; T] = g.x[off..off + T].try_into().expect("T values");
            for (a, w) in acc.iter_mut().zip(&wr) {
                let w = w[c];
                for l in 0..T {
                    a[l] += w * v[l];
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            o[j * d + e..j * d + e + T].copy_from_slice(a);
        }
        e += T;
    }
    // The last `d mod T` columns one at a time.
    while e < d {
        let mut acc = [0.0f32; H];
        if !first {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = o[j * d + e];
            }
        }
        for c in 0..g.n {
            let v = g.x[g.rows.off(c) + e];
            for (a, w) in acc.iter_mut().zip(&wr) {
                *a += w[c] * v;
            }
        }
        for (j, a) in acc.iter().enumerate() {
            o[j * d + e] = *a;
        }
        e += 1;
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
    if I::SCALAR {
        if H == 4 {
            return values_scalar::<R, H, 4>(s, nc, c0, g, d, o, first);
        }
        return values_scalar::<R, H, 16>(s, nc, c0, g, d, o, first);
    }
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
                    simd::prefetch_row(k, next * r, r);
                    simd::prefetch_row(v, next * r, r);
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
