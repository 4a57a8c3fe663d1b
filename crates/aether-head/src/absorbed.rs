//! Attention from the layer inputs with the key/value projections absorbed, the
//! low-memory path of [`crate::Workspace::compact`] when `D < 2·Hkv·dh`.
//!
//! With `h_j` the layer input of position `j` (`LN1(x_j)` with pre-norm, else `x_j`;
//! `[D]`), `k_j = h_j·Wk + bk` and `v_j = h_j·Wv + bv` (`Wk, Wv [D, Hkv·dh]`). For query
//! head `a` on kv head `g` (columns `g·dh..(g+1)·dh`, written `Wk_g`, `bk_g`, …):
//!
//! ```text
//! q_a·k_j = (Wk_g·q_a)·h_j + q_a·bk_g        the second term is the same for every j
//!                                          and cancels in the softmax
//! Σ_c w_c v_c = (Σ_c w_c h_c)·Wv_g + bv_g   since Σ_c w_c = 1
//! landmark b: mean_{j∈b} k_j = (mean_{j∈b} h_j)·Wk + bk   (likewise for v)
//! ```
//!
//! So a layer needs only the rows `h [N, D]` and their block means `[⌈N/B⌉, D]` instead
//! of `k, v [N, Hkv·dh]` and their block means: per query and head, `q' = Wk_g·q_a`
//! (`D`), scores `q'·h_c / √dh`, the weighted row sum `s = Σ w_c h_c` (`D`) and
//! `out_a = s·Wv_g + bv_g` (`dh`). The same candidates, the same max-subtracted
//! [`fast_exp`] softmax as [`crate::attention::attend_one`]; the results agree with it to
//! float rounding (the order of the sums differs). A query with no candidate gives zeros,
//! like the stored-key path.

use aether_kernel::simd::fast_exp;
use aether_kernel::SparsePattern;

use crate::attention::{candidates, AttnShape};
use crate::config::AttentionBackend;
use crate::math::{axpy, dot};

/// The layer's inputs and the projections absorbed into each query.
pub(crate) struct LayerInputs<'s> {
    /// Layer inputs `h [n, D]`.
    pub h: &'s [f32],
    /// Block means of `h` (`[⌈n/B⌉, D]`; read only for sparse landmarks).
    pub lh: &'s [f32],
    /// `D`.
    pub d: usize,
    /// `Wk [D, Hkv·dh]`.
    pub wk: &'s [f32],
    /// `Wv [D, Hkv·dh]`.
    pub wv: &'s [f32],
    /// `bv [Hkv·dh]`, when the layer has biases.
    pub bv: Option<&'s [f32]>,
}

/// Caller scratch of one absorbed attention call.
pub(crate) struct Scratch<'s> {
    /// Candidate indices (at least `scratch_len`).
    pub idx: &'s mut [usize],
    /// Candidate scores (at least `scratch_len`).
    pub scores: &'s mut [f32],
    /// The absorbed query `q'` (`D`).
    pub qd: &'s mut [f32],
    /// The weighted sum of layer inputs (`D`).
    pub acc: &'s mut [f32],
}

/// Attention output of query `i` of `n` (all heads; `q_row` is `Hq·dh`) into `out`
/// (`Hq·dh`), computed from the layer inputs (see the module docs).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_one_absorbed(
    p: &SparsePattern,
    backend: AttentionBackend,
    shape: AttnShape,
    i: usize,
    n: usize,
    q_row: &[f32],
    src: &LayerInputs<'_>,
    s: &mut Scratch<'_>,
    out: &mut [f32],
) {
    let (ne, ntok) = candidates(p, backend, i, n, 0, 0, s.idx, s.scores.len());
    let (d, dh) = (src.d, shape.head_dim);
    let kw = shape.kv_heads * dh;
    let group = shape.q_heads / shape.kv_heads;
    let scale = 1.0 / libm::sqrtf(dh as f32);
    let row = |c: usize| -> &[f32] {
        let (buf, r) = if c < ntok {
            (src.h, s.idx[c])
        } else {
            (src.lh, s.idx[c])
        };
        &buf[r * d..(r + 1) * d]
    };
    for a in 0..shape.q_heads {
        let g = a / group;
        let (lo, hi) = (g * dh, (g + 1) * dh);
        let oh = &mut out[a * dh..(a + 1) * dh];
        oh.iter_mut().for_each(|o| *o = 0.0);
        if ne == 0 {
            continue;
        }
        let qa = &q_row[a * dh..(a + 1) * dh];
        // q' = Wk_g · q_a: row r of Wk restricted to the kv head's columns.
        for (r, qd) in s.qd.iter_mut().enumerate() {
            *qd = dot(&src.wk[r * kw + lo..r * kw + hi], qa);
        }
        let mut m = f32::NEG_INFINITY;
        for c in 0..ne {
            let sc = dot(s.qd, row(c)) * scale;
            s.scores[c] = sc;
            m = m.max(sc);
        }
        let mut z = 0.0f32;
        for sc in &mut s.scores[..ne] {
            *sc = fast_exp(*sc - m);
            z += *sc;
        }
        let inv = 1.0 / z;
        s.acc.iter_mut().for_each(|v| *v = 0.0);
        for c in 0..ne {
            axpy(s.scores[c] * inv, row(c), s.acc);
        }
        // out_a = acc · Wv_g + bv_g
        for (r, &w) in s.acc.iter().enumerate() {
            axpy(w, &src.wv[r * kw + lo..r * kw + hi], oh);
        }
        if let Some(bv) = src.bv {
            for (o, b) in oh.iter_mut().zip(&bv[lo..hi]) {
                *o += b;
            }
        }
    }
}
