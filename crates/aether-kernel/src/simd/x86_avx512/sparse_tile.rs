//! Query-tile kernel for causal sparse attention on AVX-512 (x86-64 only).
//!
//! Same math and the same candidate sets as the row kernel of the parent module;
//! only the data layout differs. Sixteen consecutive queries `q0 .. q0+16` of one
//! head sit in the sixteen lanes of a vector (`Qᵀ`: `d` vectors, lane `i` = query
//! `q0 + i`), and every candidate becomes a **step** shared by the lanes:
//!
//! - *diagonal* step, offset `o`: lane `i` attends key `q0 + i − o` (the window
//!   offsets `0..=W` and the log-stride offsets `s > W`). With keys and values
//!   transposed per kv head into 64-byte-aligned planes `Kᵀ[c][PAD + j]`, the
//!   sixteen keys of a step are one contiguous vector per dimension `c`: for the
//!   window built from the two aligned vectors around `q0` with one `valignd`, for
//!   log-stride offsets (multiples of 16 when `W ≥ 15`) an aligned load;
//! - *broadcast* step: every lane attends the same row (a global token, or a
//!   landmark block mean), its component `c` broadcast to all lanes.
//!
//! Each step carries a 16-bit lane mask: the lanes whose candidate set (exactly
//! [`SparsePattern::for_each_token`] ∪ [`SparsePattern::for_each_landmark`]) holds
//! it. Scores are `Σ_c Qᵀ[c] · key_c` (vertical FMAs, no horizontal reduction),
//! scaled and clamped as in the row kernel, masked lanes set to `−∞`; one softmax
//! per lane over all steps (max, fast exp, normalised weights), then
//! `outᵀ[c] += p · value_c` with masked FMAs (a lane never touches a value it does
//! not attend, so a non-finite value reaches only the queries that attend it) and
//! a transpose back to rows.
//!
//! Covered: causal patterns with `W ≤ 32`, `d` a multiple of 16 up to
//! [`MAX_DIM`], full tiles of 16 queries. The parent runs everything else (tails,
//! bidirectional, wide windows, other dims or SIMD levels, and a tile whose step
//! list would overflow the fixed capacities) on the row kernel.

use core::arch::x86_64::*;

use super::Avx512Token;
use crate::pattern::SparsePattern;
use crate::simd::{transpose16, Avx512, Isa, WithIsa};
use crate::sparse::{Ctx, Planes, SparseRows};

/// Queries per tile (lanes of one AVX-512 vector).
pub(crate) const TILE: usize = 16;
/// Widest window the tile covers.
const MAX_W: usize = 32;
/// Zero columns in front of every plane row (diagonal loads of the first tiles and
/// the window's aligned vectors reach back that far).
const PAD: usize = MAX_W;
/// Largest head dimension the tile covers.
pub(crate) const MAX_DIM: usize = 128;
/// Capacity of diagonal steps per tile (window `W + 1 ≤ 33` plus log-stride offsets).
const MAX_DIAG: usize = 64;
/// Half the capacity of the broadcast list (global tokens, then landmarks) per tile.
const MAX_BC: usize = 48;
/// Most steps of one tile.
const MAX_STEPS: usize = MAX_DIAG + 2 * MAX_BC;

/// Whether the tile kernel covers pattern `p` at length `n` and head dim `d`.
pub(crate) fn supports(p: &SparsePattern, n: usize, d: usize) -> bool {
    p.causal && p.window <= MAX_W && n >= TILE && d > 0 && d.is_multiple_of(16) && d <= MAX_DIM
}

/// Row length of a transposed plane: `PAD` zero columns, then `n` rounded up to tiles.
pub(crate) fn plane_row(n: usize) -> usize {
    PAD + n.div_ceil(TILE) * TILE
}

/// One step: a diagonal offset or a row index, and the lanes that attend it.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Step {
    /// Diagonal offset `o` (key `q0 + i − o`), token row, or landmark block.
    pub(crate) key: u32,
    /// Bit `i` set when lane `i` attends this step.
    pub(crate) mask: u16,
}

/// A fixed-capacity step list.
#[derive(Clone, Copy)]
pub(crate) struct Steps<const C: usize> {
    pub(crate) s: [Step; C],
    pub(crate) len: usize,
}

impl<const C: usize> Steps<C> {
    pub(crate) fn new() -> Self {
        Steps {
            s: [Step::default(); C],
            len: 0,
        }
    }

    /// Appends a step whose key is not in the list yet; `false` when full.
    fn push(&mut self, key: usize, bits: u16) -> bool {
        let Ok(key) = u32::try_from(key) else {
            return false;
        };
        match self.s.get_mut(self.len) {
            Some(st) => {
                *st = Step { key, mask: bits };
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// ORs `bits` into the step with `key` among the steps from `from` on (appending
    /// it); `false` when full.
    fn add_from(&mut self, from: usize, key: usize, bits: u16) -> bool {
        let Ok(key) = u32::try_from(key) else {
            return false;
        };
        if let Some(st) = self.s[from..self.len].iter_mut().find(|st| st.key == key) {
            st.mask |= bits;
            return true;
        }
        match self.s.get_mut(self.len) {
            Some(st) => {
                *st = Step { key, mask: bits };
                self.len += 1;
                true
            }
            None => false,
        }
    }

    pub(crate) fn as_slice(&self) -> &[Step] {
        &self.s[..self.len]
    }
}

/// The steps of the tile of queries `q0 .. q0 + 16` (shared by all heads).
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    /// Window offsets `0..=W` first, then log-stride offsets.
    pub(crate) diag: Steps<MAX_DIAG>,
    /// Broadcast steps: global tokens outside the window (rows of `k`, `v`), then
    /// landmark blocks (rows of the block means).
    pub(crate) bc: Steps<{ 2 * MAX_BC }>,
    /// How many of `bc` are tokens.
    pub(crate) ntok: usize,
}

impl Plan {
    /// An empty plan (filled by [`plan`]).
    pub(crate) fn new() -> Self {
        Plan {
            diag: Steps::new(),
            bc: Steps::new(),
            ntok: 0,
        }
    }

    /// The token steps and the landmark steps.
    pub(crate) fn tok_lm(&self) -> (&[Step], &[Step]) {
        self.bc.as_slice().split_at(self.ntok)
    }
}

/// Lanes `i` of the tile at `q0` with `q0 + i ≥ first`.
fn lanes_from(first: usize, q0: usize) -> u16 {
    match first.saturating_sub(q0) {
        f if f >= TILE => 0,
        f => (0xFFFF_u32 << f) as u16,
    }
}

/// Builds the plan of the tile at `q0` (`q0 + 16 ≤ n`, causal `p`, `W ≤ 32`) into `pl`;
/// `false` when a step list would overflow (the caller then runs those rows on the
/// row kernel).
///
/// Query `i` attends (causal, the token rules of [`SparsePattern::for_each_token`]):
/// window offsets `t ≤ min(i, W)`; a global `g` (first occurrence, `g < n`) outside
/// the window, i.e. `i ≥ g + W + 1`; log-stride `i − s` for `W < s ≤ i`, `s < n`,
/// unless `i − s` is a listed global (then it came in as that global). Landmarks come
/// from [`SparsePattern::for_each_landmark`], once per run of lanes with the same
/// complete-block count `(i + 1) / B` (the causal landmark set depends on nothing
/// else). A test checks every lane's sets against the pattern's enumeration.
pub(crate) fn plan(p: &SparsePattern, n: usize, q0: usize, pl: &mut Plan) -> bool {
    pl.diag.len = 0;
    pl.bc.len = 0;
    let w = p.window;
    for t in 0..=w {
        let bits = lanes_from(t, q0);
        if bits != 0 && !pl.diag.push(t, bits) {
            return false;
        }
    }
    let g = &p.global_tokens[..];
    for (gi, &gj) in g.iter().enumerate() {
        if gj >= n || g[..gi].contains(&gj) {
            continue;
        }
        let bits = lanes_from(gj + w + 1, q0);
        if bits != 0 && !pl.bc.push(gj, bits) {
            return false;
        }
    }
    if p.log_stride {
        let mut s = 1usize;
        // Lanes attend i − s only for s ≤ i ≤ q0 + 15.
        while s < n && s < q0 + TILE {
            if s > w {
                let mut bits = lanes_from(s, q0);
                for &gj in g {
                    match gj.checked_add(s).and_then(|x| x.checked_sub(q0)) {
                        Some(l) if l < TILE => bits &= !(1 << l),
                        _ => {}
                    }
                }
                if bits != 0 && !pl.diag.push(s, bits) {
                    return false;
                }
            }
            match s.checked_mul(2) {
                Some(x) => s = x,
                None => break,
            }
        }
    }
    let ntok = pl.bc.len;
    pl.ntok = ntok;
    if p.landmarks {
        let bs = p.block_size;
        let mut lane = 0;
        while lane < TILE {
            // Lanes first..end share avail = (q0 + lane + 1) / B: up to the lane before
            // q0 + lane + 1 reaches the next multiple of B.
            let avail = (q0 + lane + 1) / bs;
            let first = lane;
            let end = ((avail + 1) * bs - 1 - q0).min(TILE);
            let bits = ((0xFFFF_u32 << first) & !(0xFFFF_u32 << end)) as u16;
            lane = end;
            let mut ok = true;
            p.for_each_landmark(q0 + first, n, |b| ok &= pl.bc.add_from(ntok, b, bits));
            if !ok {
                return false;
            }
        }
    }
    true
}

/// Loads 16 floats at `s[o..o + 16]` (bounds-checked).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn load(s: &[f32], o: usize) -> __m512 {
    let s = &s[o..o + 16];
    // SAFETY: `s` holds exactly 16 floats (sliced above); AVX-512F is enabled on this fn.
    unsafe { _mm512_loadu_ps(s.as_ptr()) }
}

/// Stores 16 floats to `s[o..o + 16]` (bounds-checked).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn store(s: &mut [f32], o: usize, v: __m512) {
    let s = &mut s[o..o + 16];
    // SAFETY: `s` holds exactly 16 floats (sliced above); AVX-512F is enabled on this fn.
    unsafe { _mm512_storeu_ps(s.as_mut_ptr(), v) }
}

/// Writes the transposed plane of kv head `kh` of `x` (`[n][hk][d]`) into `plane`:
/// `plane[c·row + PAD + j] = x[j][kh][c]`, zero in the pad and past `n`.
///
/// `d` is a multiple of 16; `plane` holds at least `d · plane_row(n)` floats.
/// [`transpose_head_avx512`] behind the token that proves its CPU features.
#[cfg_attr(not(feature = "rayon"), allow(dead_code))]
pub(crate) fn transpose_head(
    _: Avx512Token,
    x: &[f32],
    n: usize,
    hk: usize,
    kh: usize,
    d: usize,
    plane: &mut [f32],
) {
    // SAFETY: an `Avx512Token` exists only where AVX-512F, AVX2 and FMA were detected.
    unsafe { transpose_head_avx512(x, n, hk, kh, d, plane) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn transpose_head_avx512(x: &[f32], n: usize, hk: usize, kh: usize, d: usize, plane: &mut [f32]) {
    let row = plane_row(n);
    let zero = _mm512_setzero_ps();
    for c in 0..d {
        for z in (0..PAD).step_by(16) {
            store(plane, c * row + z, zero);
        }
    }
    let stride = hk * d;
    for j0 in (0..n).step_by(TILE) {
        let rows = (n - j0).min(TILE);
        for c0 in (0..d).step_by(16) {
            let first = (j0 * hk + kh) * d + c0;
            let r: [__m512; 16] = if rows == TILE {
                // One bounds check for the 16 rows, so they stay in registers.
                let xs = &x[first..first + 15 * stride + 16];
                core::array::from_fn(|jj| load(xs, jj * stride))
            } else {
                core::array::from_fn(|jj| {
                    if jj < rows {
                        load(x, first + jj * stride)
                    } else {
                        zero
                    }
                })
            };
            let t = transpose16(r);
            let ps = &mut plane[c0 * row + PAD + j0..(c0 + 15) * row + PAD + j0 + 16];
            for (cc, tv) in t.iter().enumerate() {
                store(ps, cc * row, *tv);
            }
        }
    }
}

/// Per-head state of one tile: `Qᵀ`, the step scores / weights.
struct Work {
    qt: [__m512; MAX_DIM],
    s: [__m512; MAX_STEPS],
}

/// Runs the tile kernel on query rows `rows` (start and length multiples of 16;
/// `out` holds exactly those rows), kv head by kv head (with [`Planes::One`] its
/// key and value planes are transposed right before its tiles, so one pair is live
/// at a time). A tile whose plan does not fit runs on the row kernel (at the
/// AVX-512 level, all heads at once) instead, using `idx` and `scores`.
/// [`run_avx512`] behind the token that proves its CPU features.
pub(crate) fn run(
    _: Avx512Token,
    ctx: Ctx<'_>,
    pl: Planes<'_>,
    idx: &mut [u32],
    scores: &mut [f32],
    out: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    // SAFETY: an `Avx512Token` exists only where AVX-512F, AVX2 and FMA were detected.
    unsafe { run_avx512(ctx, pl, idx, scores, out, rows) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
fn run_avx512(
    ctx: Ctx<'_>,
    mut planes: Planes<'_>,
    idx: &mut [u32],
    scores: &mut [f32],
    out: &mut [f32],
    rows: core::ops::Range<usize>,
) {
    let (n, hq, hk, d) = (ctx.n, ctx.hq, ctx.hk, ctx.d);
    let (row, group) = (plane_row(n), hq / hk);
    let zero = _mm512_setzero_ps();
    let mut w = Work {
        qt: [zero; MAX_DIM],
        s: [zero; MAX_STEPS],
    };
    let mut pl = Plan::new();
    let r0 = rows.start;
    for kh in 0..hk {
        let len = d * row;
        let kv: &[f32] = match &mut planes {
            Planes::All(a) => &a[2 * kh * len..2 * (kh + 1) * len],
            Planes::One(buf) => {
                let (bk, bv) = buf.split_at_mut(len);
                transpose_head_avx512(ctx.k, n, hk, kh, d, bk);
                transpose_head_avx512(ctx.v, n, hk, kh, d, bv);
                &buf[..2 * len]
            }
        };
        let (kt, vt) = kv.split_at(len);
        for q0 in rows.clone().step_by(TILE) {
            let o0 = (q0 - r0) * hq * d;
            let tile_out = &mut out[o0..o0 + TILE * hq * d];
            if plan(ctx.p, n, q0, &mut pl) {
                for h in kh * group..(kh + 1) * group {
                    head(&ctx, (kt, vt), &pl, q0, h, &mut w, tile_out);
                }
            } else if kh == 0 {
                // The plan depends on q0 only: it fails for every kv head, and the
                // row kernel computes all heads of these rows once.
                SparseRows {
                    ctx,
                    idx: &mut *idx,
                    scores: &mut *scores,
                    out: tile_out,
                    rows: q0..q0 + TILE,
                }
                .run::<Avx512>();
            }
        }
    }
}

/// Calls `$f::<N>($args)` with the const `N = $n` (`1..=8`).
macro_rules! with_len8 {
    ($n:expr, $f:ident($($a:expr),*)) => {
        match $n {
            1 => $f::<1>($($a),*),
            2 => $f::<2>($($a),*),
            3 => $f::<3>($($a),*),
            4 => $f::<4>($($a),*),
            5 => $f::<5>($($a),*),
            6 => $f::<6>($($a),*),
            7 => $f::<7>($($a),*),
            _ => $f::<8>($($a),*),
        }
    };
}

/// Calls `$f::<N>($args)` with the const `N = $n` (`1..=17`; larger values use 17,
/// which [`supports`] rules out).
macro_rules! with_len {
    ($n:expr, $f:ident($($a:expr),*)) => {
        match $n {
            1 => $f::<1>($($a),*),
            2 => $f::<2>($($a),*),
            3 => $f::<3>($($a),*),
            4 => $f::<4>($($a),*),
            5 => $f::<5>($($a),*),
            6 => $f::<6>($($a),*),
            7 => $f::<7>($($a),*),
            8 => $f::<8>($($a),*),
            9 => $f::<9>($($a),*),
            10 => $f::<10>($($a),*),
            11 => $f::<11>($($a),*),
            12 => $f::<12>($($a),*),
            13 => $f::<13>($($a),*),
            14 => $f::<14>($($a),*),
            15 => $f::<15>($($a),*),
            16 => $f::<16>($($a),*),
            _ => $f::<17>($($a),*),
        }
    };
}

/// One head `h` of the tile at `q0`; writes rows `0..16` of `tile_out` (head `h`).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn head(
    ctx: &Ctx<'_>,
    (kt, vt): (&[f32], &[f32]),
    pl: &Plan,
    q0: usize,
    h: usize,
    w: &mut Work,
    tile_out: &mut [f32],
) {
    let (n, hq, hk, d) = (ctx.n, ctx.hq, ctx.hk, ctx.d);
    let kh = h / (hq / hk);
    let row = plane_row(n);
    let zero = _mm512_setzero_ps();
    // Qᵀ: 16 query rows, 16 columns at a time, transposed.
    for c0 in (0..d).step_by(16) {
        let mut r = [zero; 16];
        for (i, rv) in r.iter_mut().enumerate() {
            *rv = load(ctx.q, ((q0 + i) * hq + h) * d + c0);
        }
        w.qt[c0..c0 + 16].copy_from_slice(&transpose16(r));
    }
    let qt = &w.qt[..d];
    let (tok, lm) = pl.tok_lm();
    let (nd, nt, nl) = (pl.diag.len, tok.len(), lm.len());
    let ns = nd + nt + nl;
    // Column of lane 0 in the plane rows: PAD + q0 − o (≥ PAD − 15 since o ≤ q0 + 15).
    let col0 = PAD + q0;
    let hd = kh * d;
    let hkd = hk * d;
    let diag = pl.diag.as_slice();
    // From q0 ≥ W on, the plan's first W + 1 diagonal steps are the window offsets
    // 0..=W with every lane set: contiguous runs, unmasked, of at most 17 offsets
    // (0..=16, or 0..16 and 16..=W), each from the two aligned vectors before and
    // after its first column.
    let nw = if q0 >= ctx.p.window {
        ctx.p.window + 1
    } else {
        0
    };
    let runs = if nw <= 17 {
        [(0, nw), (0, 0)]
    } else {
        [(0, 16), (16, nw - 16)]
    };
    let gdiag = &diag[nw..];
    let scale = _mm512_set1_ps(ctx.scale);
    let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
    {
        let (sw, rest) = w.s[..ns].split_at_mut(nw);
        let (sd, rest) = rest.split_at_mut(nd - nw);
        let sb = rest;
        if nw > 0 {
            for (t0, cnt) in runs.into_iter().filter(|r| r.1 > 0) {
                let out = &mut sw[t0..t0 + cnt];
                with_len!(cnt, win_scores(qt, kt, row, col0 - t0, out));
            }
            for x in sw.iter_mut() {
                *x = finish_score(*x, scale, 0xFFFF);
                m = _mm512_max_ps(*x, m);
            }
        }
        for (ch, oc) in gdiag.chunks(8).zip(sd.chunks_mut(8)) {
            let cols: [usize; 8] =
                core::array::from_fn(|u| col0 - ch[u.min(ch.len() - 1)].key as usize);
            let mut acc = [zero; 8];
            with_len8!(ch.len(), diag_n(qt, kt, row, &cols, &mut acc));
            finish_chunk(&acc, ch, oc, &mut m, scale);
        }
        // Token then landmark rows in one list, 8 at a time.
        for (ci, (ch, oc)) in pl.bc.as_slice().chunks(8).zip(sb.chunks_mut(8)).enumerate() {
            let mut rows = [core::ptr::null::<f32>(); 8];
            for (u, (r, st)) in rows.iter_mut().zip(ch).enumerate() {
                let src = if ci * 8 + u < nt { ctx.k } else { ctx.lm_k };
                *r = src[st.key as usize * hkd + hd..][..d].as_ptr();
            }
            let mut acc = [zero; 8];
            // SAFETY: the first `ch.len()` entries of `rows` were just taken from slices
            // of `d = qt.len()` floats.
            unsafe { with_len8!(ch.len(), bcast_n(qt, &rows, &mut acc)) };
            finish_chunk(&acc, ch, oc, &mut m, scale);
        }
    }
    // Softmax over all steps, per lane; masked lanes hold −∞ and get weight 0.
    let mut sum = zero;
    for s in w.s[..ns].iter_mut() {
        let e = Avx512::exp(_mm512_sub_ps(*s, m));
        sum = _mm512_add_ps(sum, e);
        *s = e;
    }
    let inv = _mm512_div_ps(_mm512_set1_ps(1.0), sum);
    for s in w.s[..ns].iter_mut() {
        *s = _mm512_mul_ps(*s, inv);
    }
    let (pw, rest) = w.s[..ns].split_at(nw);
    let (pd, rest) = rest.split_at(nd - nw);
    let (pt, plm) = rest.split_at(nt);
    for c0 in (0..d).step_by(16) {
        let mut acc = [zero; 16];
        for (t0, cnt) in runs.into_iter().filter(|r| r.1 > 0) {
            let p = &pw[t0..t0 + cnt];
            with_len!(cnt, win_values(&mut acc, p, vt, row, c0, col0 - t0));
        }
        diag_values(&mut acc, pd, gdiag, vt, row, c0, col0);
        bcast_values(&mut acc, pt, tok, ctx.v, hkd, hd + c0);
        bcast_values(&mut acc, plm, lm, ctx.lm_v, hkd, hd + c0);
        let o = transpose16(acc);
        for (i, ov) in o.iter().enumerate() {
            store(tile_out, (i * hq + h) * d + c0, *ov);
        }
    }
}

/// A raw score vector scaled, clamped to `±f32::MAX` (NaN → `−f32::MAX`; `max`
/// first, as in the row kernel) and set to `−∞` on the lanes outside `mask`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn finish_score(a: __m512, scale: __m512, mask: u16) -> __m512 {
    let x = _mm512_max_ps(_mm512_mul_ps(a, scale), _mm512_set1_ps(-f32::MAX));
    let x = _mm512_min_ps(x, _mm512_set1_ps(f32::MAX));
    _mm512_mask_blend_ps(mask, _mm512_set1_ps(f32::NEG_INFINITY), x)
}

/// Finishes a chunk of raw scores ([`finish_score`] with each step's mask) into
/// `out`, folding them into the running lane max `m`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn finish_chunk(
    acc: &[__m512; 8],
    steps: &[Step],
    out: &mut [__m512],
    m: &mut __m512,
    scale: __m512,
) {
    for ((o, a), st) in out.iter_mut().zip(acc).zip(steps) {
        let x = finish_score(*a, scale, st.mask);
        *m = _mm512_max_ps(x, *m);
        *o = x;
    }
}

/// Calls `$f!(t, x)` for every window offset `t < N` (`N ≤ 17`, a const in scope),
/// `x` = lanes `col0 − t ..` of a plane row built from its two aligned vectors
/// `$a = [col0 − 16 ..)` and `$b = [col0 ..)` with one `valignd` (no load splits a
/// cache line). Expanded in full so every shift is an immediate.
macro_rules! for_window {
    ($a:expr, $b:expr, $f:ident) => {{
        let (a, b) = ($a, $b);
        $f!(0, _mm512_castsi512_ps(b));
        for_window!(@s a, b, $f, 1 15, 2 14, 3 13, 4 12, 5 11, 6 10, 7 9, 8 8,
            9 7, 10 6, 11 5, 12 4, 13 3, 14 2, 15 1);
        if N > 16 {
            $f!(16, _mm512_castsi512_ps(a));
        }
    }};
    (@s $a:ident, $b:ident, $f:ident, $($t:literal $imm:literal),*) => {
        $(
            if N > $t {
                $f!($t, _mm512_castsi512_ps(_mm512_alignr_epi32::<$imm>($b, $a)));
            }
        )*
    };
}

/// The two vectors `[o − 16 ..)` and `[o ..)` of `x` as integers (`16 ≤ o`, `o + 16 ≤ x.len()`).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn pair(x: &[f32], o: usize) -> (__m512i, __m512i) {
    let s = &x[o - 16..o + 16];
    // SAFETY: `s` holds 32 floats (sliced above); AVX-512F is enabled on this fn.
    let (a, b) = unsafe {
        (
            _mm512_loadu_ps(s.as_ptr()),
            _mm512_loadu_ps(s.as_ptr().add(16)),
        )
    };
    (_mm512_castps_si512(a), _mm512_castps_si512(b))
}

/// Window scores: `out[t] = Σ_c Qᵀ[c] · Kᵀ[c][col0 − t ..]` for `t < N ≤ 17`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn win_scores<const N: usize>(
    qt: &[__m512],
    kt: &[f32],
    row: usize,
    col0: usize,
    out: &mut [__m512],
) {
    let mut acc = [_mm512_setzero_ps(); 17];
    for (c, &qc) in qt.iter().enumerate() {
        let (a, b) = pair(kt, c * row + col0);
        macro_rules! step {
            ($t:literal, $x:expr) => {
                acc[$t] = _mm512_fmadd_ps(qc, $x, acc[$t])
            };
        }
        for_window!(a, b, step);
    }
    out[..N].copy_from_slice(&acc[..N]);
}

/// Window values: `acc[cc] += Σ_{t<N} p[t] · Vᵀ[c0 + cc][col0 − t ..]` (all lanes attend).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn win_values<const N: usize>(
    acc: &mut [__m512; 16],
    p: &[__m512],
    vt: &[f32],
    row: usize,
    c0: usize,
    col0: usize,
) {
    let zero = _mm512_setzero_ps();
    let pr: [__m512; 17] = core::array::from_fn(|t| if t < N { p[t] } else { zero });
    for (cc, acv) in acc.iter_mut().enumerate() {
        let (a, b) = pair(vt, (c0 + cc) * row + col0);
        let mut ab = [*acv, zero];
        macro_rules! step {
            ($t:literal, $x:expr) => {
                ab[$t % 2] = _mm512_fmadd_ps(pr[$t], $x, ab[$t % 2])
            };
        }
        for_window!(a, b, step);
        *acv = _mm512_add_ps(ab[0], ab[1]);
    }
}

/// `out[u] = Σ_c Qᵀ[c] · Kᵀ[c][cols[u] ..]` for the first `N` steps.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn diag_n<const N: usize>(
    qt: &[__m512],
    kt: &[f32],
    row: usize,
    cols: &[usize; 8],
    out: &mut [__m512; 8],
) {
    // Every load reads kt[c·row + cols[u] .. + 16] with c < qt.len().
    assert!(cols[..N].iter().all(|&c| c + 16 <= row) && qt.len() * row <= kt.len());
    let base = kt.as_ptr();
    let mut acc = [_mm512_setzero_ps(); N];
    for (c, &qc) in qt.iter().enumerate() {
        for (a, &cu) in acc.iter_mut().zip(cols) {
            // SAFETY: c < qt.len() and cu + 16 ≤ row (asserted), so
            // c·row + cu + 16 ≤ qt.len()·row ≤ kt.len().
            let k = unsafe { _mm512_loadu_ps(base.add(c * row + cu)) };
            *a = _mm512_fmadd_ps(qc, k, *a);
        }
    }
    out[..N].copy_from_slice(&acc);
}

/// `out[u] = Σ_c Qᵀ[c] · rows[u][c]` (broadcast keys) for the first `N` steps.
///
/// # Safety
/// `rows[u]` for `u < N` must be valid for reading `qt.len()` floats.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn bcast_n<const N: usize>(qt: &[__m512], rows: &[*const f32], out: &mut [__m512; 8]) {
    let r: [*const f32; N] = core::array::from_fn(|u| rows[u]);
    let mut acc = [_mm512_setzero_ps(); N];
    for (c, &qc) in qt.iter().enumerate() {
        for (a, &ru) in acc.iter_mut().zip(&r) {
            // SAFETY: c < qt.len() and `ru` is valid for qt.len() reads (the caller's contract).
            let x = unsafe { *ru.add(c) };
            *a = _mm512_fmadd_ps(qc, _mm512_set1_ps(x), *a);
        }
    }
    out[..N].copy_from_slice(&acc);
}

/// `acc[cc] += p[u] · Vᵀ[c0 + cc][col0 − key(u) ..]` on the lanes of step `u`'s mask.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn diag_values(
    acc: &mut [__m512; 16],
    p: &[__m512],
    steps: &[Step],
    vt: &[f32],
    row: usize,
    c0: usize,
    col0: usize,
) {
    // A local copy stays in registers (a bounds-check panic could otherwise observe
    // `acc` half-updated, which forces a store after every FMA).
    let mut ac = *acc;
    for (&pu, st) in p.iter().zip(steps) {
        let o = c0 * row + col0 - st.key as usize;
        // Reads vt[o + cc·row .. + 16] for cc < 16.
        let v = &vt[o..o + 15 * row + 16];
        let base = v.as_ptr();
        for (cc, a) in ac.iter_mut().enumerate() {
            // SAFETY: cc·row + 16 ≤ 15·row + 16 = v.len() for cc < 16.
            let x = unsafe { _mm512_loadu_ps(base.add(cc * row)) };
            *a = _mm512_mask3_fmadd_ps(pu, x, *a, st.mask);
        }
    }
    *acc = ac;
}

/// `acc[cc] += p[u] · rows[key(u)·hkd + off + cc]` on the lanes of step `u`'s mask.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn bcast_values(
    acc: &mut [__m512; 16],
    p: &[__m512],
    steps: &[Step],
    rows: &[f32],
    hkd: usize,
    off: usize,
) {
    let mut ac = *acc; // in registers, as in `diag_values`
    for (&pu, st) in p.iter().zip(steps) {
        let o = st.key as usize * hkd + off;
        let r = &rows[o..o + 16];
        for (a, &x) in ac.iter_mut().zip(r) {
            *a = _mm512_mask3_fmadd_ps(pu, _mm512_set1_ps(x), *a, st.mask);
        }
    }
    *acc = ac;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    /// The token and landmark sets lane `lane` of `pl` attends (sorted).
    fn lane_sets(pl: &Plan, q0: usize, lane: usize) -> (Vec<usize>, Vec<usize>) {
        let on = |st: &&Step| st.mask & (1 << lane) != 0;
        let mut tok: Vec<usize> = pl
            .diag
            .as_slice()
            .iter()
            .filter(on)
            .map(|st| q0 + lane - st.key as usize)
            .chain(pl.tok_lm().0.iter().filter(on).map(|st| st.key as usize))
            .collect();
        let mut lm: Vec<usize> = pl
            .tok_lm()
            .1
            .iter()
            .filter(on)
            .map(|st| st.key as usize)
            .collect();
        tok.sort_unstable();
        lm.sort_unstable();
        (tok, lm)
    }

    #[test]
    fn plan_lanes_attend_exactly_the_pattern() {
        let mut plans = 0;
        for n in [16usize, 17, 31, 64, 100, 300, 1030] {
            for w in [0usize, 1, 5, 15, 16, 17, 31, 32] {
                for bs in [1usize, 3, 16, 32, 50] {
                    for globals in [vec![], vec![0], vec![3, 3, 0, 500, 7, 64, usize::MAX, 33]] {
                        for (log_stride, landmarks) in [(true, true), (false, true), (true, false)]
                        {
                            let p = SparsePattern {
                                window: w,
                                block_size: bs,
                                global_tokens: globals.clone(),
                                causal: true,
                                log_stride,
                                landmarks,
                            };
                            assert!(supports(&p, n, 32));
                            for q0 in (0..=n - TILE).step_by(TILE) {
                                let mut pl = Plan::new();
                                if !plan(&p, n, q0, &mut pl) {
                                    // Only tiny blocks may overflow the landmark list.
                                    assert!(bs < 4, "n={n} q0={q0} {p:?}");
                                    continue;
                                };
                                plans += 1;
                                for lane in 0..TILE {
                                    let i = q0 + lane;
                                    let (tok, lm) = lane_sets(&pl, q0, lane);
                                    let mut want = p.token_candidates(i, n);
                                    want.sort_unstable();
                                    let mut want_lm = p.landmark_candidates(i, n);
                                    want_lm.sort_unstable();
                                    assert_eq!(tok, want, "i={i} n={n} {p:?}");
                                    assert_eq!(lm, want_lm, "i={i} n={n} {p:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(plans > 1000);
    }

    #[test]
    fn too_many_globals_overflow_the_plan() {
        // 150 distinct globals: once they are all outside the window, the broadcast
        // list (capacity 96) overflows and the tile goes to the row kernel
        // (tests/tiles.rs checks the outputs of such a call).
        let p = SparsePattern {
            window: 8,
            block_size: 4,
            global_tokens: (0..300).step_by(2).collect(),
            ..SparsePattern::default()
        };
        let mut pl = Plan::new();
        assert!(plan(&p, 400, 0, &mut pl));
        assert!(!plan(&p, 400, 304, &mut pl));
    }

    #[test]
    fn unsupported_shapes_are_refused() {
        let p = SparsePattern {
            window: 16,
            ..SparsePattern::default()
        };
        assert!(supports(&p, 16, 16) && supports(&p, 1024, 128));
        assert!(!supports(&p, 15, 32));
        assert!(!supports(&p, 64, 33) && !supports(&p, 64, 144) && !supports(&p, 64, 0));
        let wide = SparsePattern {
            window: 33,
            ..p.clone()
        };
        let bidi = SparsePattern { causal: false, ..p };
        assert!(!supports(&wide, 64, 32) && !supports(&bidi, 64, 32));
    }

    #[test]
    fn transposes_match_scalar() {
        let Some(tok) = Avx512Token::new() else {
            return;
        };
        let (n, hk, d) = (37usize, 3usize, 32usize);
        let x: Vec<f32> = (0..n * hk * d).map(|i| i as f32 * 0.5 - 7.0).collect();
        let row = plane_row(n);
        let mut planes = vec![f32::NAN; hk * d * row];
        for kh in 0..hk {
            transpose_head(tok, &x, n, hk, kh, d, &mut planes[kh * d * row..]);
        }
        for kh in 0..hk {
            for c in 0..d {
                for col in 0..row {
                    let got = planes[(kh * d + c) * row + col];
                    let want = if (PAD..PAD + n).contains(&col) {
                        x[((col - PAD) * hk + kh) * d + c]
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "kh={kh} c={c} col={col}");
                }
            }
        }
    }
}
