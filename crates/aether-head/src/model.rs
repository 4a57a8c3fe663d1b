//! [`TemporalHead`]: the forward pass of docs/model.md over one sequence `u[N, F]`.
//!
//! ```text
//! x[t] = embed(norm(u[t])) + pe(t)                        [N, D]
//! per layer: h = LN1(x); q,k,v = h·W(+b); x += attn(q,k,v)·Wo(+bo)
//!            x += GELU(LN2(x)·W1 + b1)·W2 + b2              (when mlp_hidden > 0)
//! x = LN_final(x); pooled = mean_t x[t] | x[N−1]          [D]
//! logits = pooled·Wc (+ bc)                                [C]
//! ```
//! [`TemporalHead::forward_into`] runs with no allocation given a [`Workspace`].

use alloc::vec;
use alloc::vec::Vec;

use aether_kernel::{
    dense_attention_into, dense_scratch_len, sparse_attention_into, sparse_scratch_len, TensorMut,
    TensorRef,
};

use crate::absorbed::{attend_one_absorbed, LayerInputs, Scratch};
use crate::attention::{attend_one, block_means, scratch_len, AttnShape, SeqKv};
use crate::config::{AttentionBackend, HeadConfig, Pooling, Positional};
use crate::error::{try_vec, HeadError, Result};
use crate::math::{
    add_positional_with, gelu, layer_norm, layer_norm_in_place, normalise_input,
    positional_steps_into, vec_mat, vec_mat_add, RunningNorm,
};
use crate::weights::{LayerWeights, Weights};

/// A temporal head: configuration plus weights (borrowed from a blob or owned).
#[derive(Debug, Clone, PartialEq)]
pub struct TemporalHead<'a> {
    cfg: HeadConfig,
    weights: Weights<'a>,
    /// Divisors of the positional signal (empty without one).
    pe_steps: Vec<u64>,
}

/// Checks `frames` (`n·F` values, row-major) and returns `n`; refuses a partial frame
/// and NaN/Inf with the frame and feature index.
pub fn check_frames(frames: &[f32], features: usize) -> Result<usize> {
    if features == 0 || !frames.len().is_multiple_of(features) {
        return Err(HeadError::FrameWidth {
            expected: features,
            got: frames.len(),
        });
    }
    if let Some(i) = frames.iter().position(|x| !x.is_finite()) {
        return Err(HeadError::NonFiniteInput {
            frame: i / features,
            feature: i % features,
        });
    }
    Ok(frames.len() / features)
}

/// Preallocated buffers for [`TemporalHead::forward_into`] on sequences up to `max_len`.
///
/// Two layouts: [`Workspace::new`] stores every position's queries and attention output
/// and runs the kernel's SIMD attention over the whole sequence (fastest);
/// [`Workspace::compact`] projects each query row when it is needed and attends one
/// position at a time (smallest; for microcontrollers). The compact layout keeps per
/// position whichever is narrower: the layer inputs `h [N, D]` (next to `x [N, D]`) with
/// `Wk`/`Wv` absorbed into each query when `D < 2·Hkv·dh`
/// ([`Workspace::is_absorbed`], the AETHER default head), else `k, v [N, Hkv·dh]`.
/// All layouts give the same logits to float rounding.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(crate) dims: [usize; 9],
    pub(crate) max_len: usize,
    pub(crate) compact: bool,
    pub(crate) absorbed: bool,
    pub(crate) hx: Vec<f32>,
    pub(crate) lh: Vec<f32>,
    pub(crate) qd: Vec<f32>,
    pub(crate) acc: Vec<f32>,
    pub(crate) qa: Vec<f32>,
    pub(crate) oa: Vec<f32>,
    pub(crate) ks: Vec<f32>,
    pub(crate) x: Vec<f32>,
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) lk: Vec<f32>,
    pub(crate) lv: Vec<f32>,
    pub(crate) u: Vec<f32>,
    pub(crate) h: Vec<f32>,
    pub(crate) att: Vec<f32>,
    pub(crate) hid: Vec<f32>,
    pub(crate) idx: Vec<usize>,
    pub(crate) scores: Vec<f32>,
    pub(crate) pooled: Vec<f32>,
    pub(crate) rn: RunningNorm,
}

fn dims(cfg: &HeadConfig) -> [usize; 9] {
    [
        cfg.features,
        cfg.d_model,
        cfg.q_width(),
        cfg.kv_width(),
        cfg.mlp_hidden,
        cfg.classes,
        cfg.pattern.block_size,
        usize::from(cfg.pattern.landmarks),
        usize::from(cfg.running_norm),
    ]
}

fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(overflow)
}

/// The lengths of a workspace's buffers, decided once: [`Workspace::build`] allocates
/// them and [`Workspace::new_bytes`] / [`Workspace::compact_bytes`] report their sum.
struct Plan<'c> {
    cfg: &'c HeadConfig,
    max_len: usize,
    absorbed: bool,
    /// Layer inputs `h [N, D]` and their block means (absorbed compact layout).
    hx: usize,
    lh: usize,
    /// One absorbed query row and its accumulator.
    row: usize,
    /// Whole-sequence queries and attention outputs (kernel layout).
    qa: usize,
    /// The kernel's attention scratch.
    ks: usize,
    x: usize,
    /// Keys and values, each.
    kv: usize,
    /// Landmark block means of keys and values, each.
    lm: usize,
    /// Row-wise candidate list and scores.
    sl: usize,
    /// Features of the running standardisation (0 when off).
    rn: usize,
}

impl<'c> Plan<'c> {
    fn of(c: &'c HeadConfig, max_len: usize, compact: bool) -> Result<Self> {
        let max_len = max_len.max(1);
        // Landmark means are only kept when the pattern attends landmarks.
        let blocks = if c.pattern.landmarks {
            max_len.div_ceil(c.pattern.block_size)
        } else {
            0
        };
        let absorbed = compact && Workspace::compact_absorbs(c);
        let kw = if absorbed { 0 } else { c.kv_width() };
        let (hx, lh, row) = if absorbed {
            (mul(max_len, c.d_model)?, mul(blocks, c.d_model)?, c.d_model)
        } else {
            (0, 0, 0)
        };
        let (sl, lm, qa, ks) =
            if compact {
                let sl = scratch_len(&c.pattern, AttentionBackend::Sparse, max_len)
                    .max(scratch_len(&c.pattern, AttentionBackend::Dense, max_len));
                (sl, mul(blocks, kw)?, 0, 0)
            } else {
                let sk = sparse_scratch_len(&c.pattern, max_len, c.kv_heads, c.head_dim)
                    .map_err(|e| HeadError::kernel("sizing the attention scratch", e))?;
                let dk = dense_scratch_len(max_len, c.kv_heads, c.head_dim)
                    .map_err(|e| HeadError::kernel("sizing the attention scratch", e))?;
                (0, 0, mul(max_len, c.q_width())?, sk.max(dk))
            };
        Ok(Self {
            cfg: c,
            max_len,
            absorbed,
            hx,
            lh,
            row,
            qa,
            ks,
            x: mul(max_len, c.d_model)?,
            kv: mul(max_len, kw)?,
            lm,
            sl,
            rn: if c.running_norm { c.features } else { 0 },
        })
    }

    /// The sum of every buffer's bytes (what [`Workspace::bytes`] reports once built).
    fn bytes(&self) -> Result<usize> {
        let c = self.cfg;
        let floats = [
            self.hx,
            self.lh,
            2 * self.row,
            2 * self.qa,
            self.ks,
            self.x,
            c.q_width(),
            2 * self.kv,
            2 * self.lm,
            c.features,
            c.d_model,
            c.q_width(),
            c.mlp_hidden,
            self.sl,
            c.d_model,
        ];
        let f = floats
            .iter()
            .try_fold(0usize, |acc, &n| acc.checked_add(n))
            .ok_or_else(overflow)?;
        let idx = mul(self.sl, core::mem::size_of::<usize>())?;
        mul(f, 4)?
            .checked_add(idx)
            .and_then(|b| b.checked_add(RunningNorm::bytes_for(self.rn)))
            .ok_or_else(overflow)
    }
}

fn overflow() -> HeadError {
    HeadError::Config {
        what: "max_len",
        detail: "workspace size overflows".into(),
    }
}

impl Workspace {
    /// Buffers for `head` on sequences of up to `max_len` frames, kernel (SIMD) attention.
    pub fn new(head: &TemporalHead<'_>, max_len: usize) -> Result<Self> {
        Self::build(head, max_len, false)
    }

    /// The smallest buffers for `head` on sequences of up to `max_len` frames (row-wise
    /// attention; see the type docs).
    pub fn compact(head: &TemporalHead<'_>, max_len: usize) -> Result<Self> {
        Self::build(head, max_len, true)
    }

    /// Whether [`Workspace::compact`] for a head with config `cfg` keeps the layer
    /// inputs and absorbs `Wk`/`Wv` into the queries: when `D < 2·Hkv·dh`, i.e. the
    /// inputs `[N, D]` take fewer bytes than the keys and values `[N, 2·Hkv·dh]`.
    pub fn compact_absorbs(cfg: &HeadConfig) -> bool {
        cfg.d_model < 2 * cfg.kv_width()
    }

    /// Bytes [`Workspace::new`] allocates for `head` at `max_len` (equal to its
    /// [`Workspace::bytes`]), computed without allocating.
    pub fn new_bytes(head: &TemporalHead<'_>, max_len: usize) -> Result<usize> {
        Plan::of(&head.cfg, max_len, false)?.bytes()
    }

    /// Bytes [`Workspace::compact`] allocates for `head` at `max_len` (equal to its
    /// [`Workspace::bytes`]), computed without allocating: what a node must have free.
    pub fn compact_bytes(head: &TemporalHead<'_>, max_len: usize) -> Result<usize> {
        Plan::of(&head.cfg, max_len, true)?.bytes()
    }

    fn build(head: &TemporalHead<'_>, max_len: usize, compact: bool) -> Result<Self> {
        let c = &head.cfg;
        let p = Plan::of(c, max_len, compact)?;
        Ok(Self {
            dims: dims(c),
            max_len: p.max_len,
            compact,
            absorbed: p.absorbed,
            hx: try_vec(p.hx, 0.0, "workspace hx")?,
            lh: try_vec(p.lh, 0.0, "workspace lh")?,
            qd: try_vec(p.row, 0.0, "workspace qd")?,
            acc: try_vec(p.row, 0.0, "workspace acc")?,
            qa: try_vec(p.qa, 0.0, "workspace qa")?,
            oa: try_vec(p.qa, 0.0, "workspace oa")?,
            ks: try_vec(p.ks, 0.0, "workspace ks")?,
            x: try_vec(p.x, 0.0, "workspace x")?,
            q: try_vec(c.q_width(), 0.0, "workspace q")?,
            k: try_vec(p.kv, 0.0, "workspace k")?,
            v: try_vec(p.kv, 0.0, "workspace v")?,
            lk: try_vec(p.lm, 0.0, "workspace lk")?,
            lv: try_vec(p.lm, 0.0, "workspace lv")?,
            u: try_vec(c.features, 0.0, "workspace u")?,
            h: try_vec(c.d_model, 0.0, "workspace h")?,
            att: try_vec(c.q_width(), 0.0, "workspace att")?,
            hid: try_vec(c.mlp_hidden, 0.0, "workspace hid")?,
            idx: try_vec(p.sl, 0, "workspace idx")?,
            scores: try_vec(p.sl, 0.0, "workspace scores")?,
            pooled: try_vec(c.d_model, 0.0, "workspace pooled")?,
            rn: RunningNorm::try_new(p.rn)?,
        })
    }

    /// Whether this is the low-memory row-wise layout.
    pub fn is_compact(&self) -> bool {
        self.compact
    }

    /// Whether this compact workspace attends from the layer inputs with `Wk`/`Wv`
    /// absorbed into the queries (see [`Workspace::compact_absorbs`]).
    pub fn is_absorbed(&self) -> bool {
        self.absorbed
    }

    /// Longest sequence this workspace accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes of all buffers (the forward's working set beyond the weights).
    pub fn bytes(&self) -> usize {
        let f = self.x.len()
            + self.qa.len()
            + self.oa.len()
            + self.ks.len()
            + self.q.len()
            + self.k.len()
            + self.v.len()
            + self.lk.len()
            + self.lv.len()
            + self.u.len()
            + self.h.len()
            + self.att.len()
            + self.hid.len()
            + self.scores.len()
            + self.pooled.len()
            + self.hx.len()
            + self.lh.len()
            + self.qd.len()
            + self.acc.len();
        f * 4 + self.idx.len() * core::mem::size_of::<usize>() + self.rn.bytes()
    }
}

/// The positional phase steps of a sinusoidal head (empty otherwise), allocated fallibly.
fn pe_steps(cfg: &HeadConfig) -> Result<Vec<u64>> {
    if cfg.positional != Positional::Sinusoidal {
        return Ok(Vec::new());
    }
    let mut steps = try_vec(cfg.d_model, 0, "positional steps")?;
    positional_steps_into(&mut steps);
    Ok(steps)
}

impl<'a> TemporalHead<'a> {
    /// A head from a configuration and matching weights (every tensor's length is checked).
    pub fn new(cfg: HeadConfig, weights: Weights<'a>) -> Result<Self> {
        cfg.validate()?;
        // Every tensor of the catalogue present with its length, and nothing more.
        let mut want = 0usize;
        for spec in cfg.tensor_specs() {
            want += 1;
            let n = spec.numel().unwrap_or(0);
            match weights.tensor(spec.kind, spec.layer) {
                None => {
                    return Err(HeadError::MissingTensor {
                        name: spec.name().as_str().into(),
                    })
                }
                Some(s) if s.len() != n => {
                    return Err(HeadError::TensorShape {
                        name: spec.name().as_str().into(),
                        expected: n,
                        got: s.len(),
                    })
                }
                Some(_) => {}
            }
        }
        let got = weights.count();
        if got != want || weights.layers.len() != cfg.layers {
            return Err(HeadError::Config {
                what: "weights",
                detail: alloc::format!("{got} tensors given, the config names {want}"),
            });
        }
        let pe_steps = pe_steps(&cfg)?;
        Ok(Self {
            cfg,
            weights,
            pe_steps,
        })
    }

    /// A v1-style head from one flat buffer in the v1 weight order (borrowed).
    pub fn from_flat(cfg: HeadConfig, flat: &'a [f32]) -> Result<Self> {
        let w = Weights::from_flat(&cfg, flat)?;
        Self::new(cfg, w)
    }

    /// The configuration.
    pub fn config(&self) -> &HeadConfig {
        &self.cfg
    }

    /// The weights.
    pub fn weights(&self) -> &Weights<'a> {
        &self.weights
    }

    /// Mutable weights (training); shapes must stay as the config says.
    pub fn weights_mut(&mut self) -> &mut Weights<'a> {
        &mut self.weights
    }

    /// Splits into configuration and weights.
    pub fn into_parts(self) -> (HeadConfig, Weights<'a>) {
        (self.cfg, self.weights)
    }

    /// The same head with another attention backend (a dense override gives dense attention).
    pub fn with_backend(mut self, backend: AttentionBackend) -> Self {
        self.cfg.attention = backend;
        self
    }

    /// Switches the attention backend in place.
    pub fn set_backend(&mut self, backend: AttentionBackend) {
        self.cfg.attention = backend;
    }

    /// A copy that owns all its weights.
    pub fn into_owned(self) -> TemporalHead<'static> {
        TemporalHead {
            cfg: self.cfg,
            weights: self.weights.into_owned(),
            pe_steps: self.pe_steps,
        }
    }

    /// Bytes of weights the head holds itself (borrowed ones are free).
    pub fn owned_weight_bytes(&self) -> usize {
        self.weights.owned_bytes()
    }

    /// Bytes of weights in total (borrowed or owned).
    pub fn weight_bytes(&self) -> usize {
        self.weights.named().iter().map(|(_, s)| s.len() * 4).sum()
    }

    /// Working-set bytes of a [`Workspace::new`] for sequences up to `max_len` (without weights).
    pub fn workspace_bytes(&self, max_len: usize) -> Result<usize> {
        Ok(Workspace::new(self, max_len)?.bytes())
    }

    /// Working-set bytes of a [`Workspace::compact`] for sequences up to `max_len`
    /// (computed, nothing allocated: [`Workspace::compact_bytes`]).
    pub fn compact_workspace_bytes(&self, max_len: usize) -> Result<usize> {
        Workspace::compact_bytes(self, max_len)
    }

    /// Step 0–3 for one frame: `x = embed(norm(running(frame))) + pe(t)`; `u` is `F`
    /// scratch; `rn` carries the running statistics of frames `0..t` (used only with
    /// `running_norm`; reset it at the start of a sequence).
    pub(crate) fn embed_row(
        &self,
        t: usize,
        frame: &[f32],
        rn: &mut RunningNorm,
        u: &mut [f32],
        x: &mut [f32],
    ) {
        let w = &self.weights;
        u.copy_from_slice(frame);
        if self.cfg.running_norm {
            rn.apply(u);
        }
        if let (Some(m), Some(s)) = (&w.input_mean, &w.input_std) {
            normalise_input(u, m, s);
        }
        match &w.embed_w {
            Some(ew) => vec_mat(u, ew, w.embed_b.as_deref(), x),
            None => x.copy_from_slice(u),
        }
        if self.cfg.positional == Positional::Sinusoidal {
            add_positional_with(t, &self.pe_steps, x);
        }
    }

    /// One row's `q, k, v` for layer `lw`: `h = LN1(x)`, `q = h·Wq + bq`, …; `h` is `D` scratch.
    pub(crate) fn project_row(
        &self,
        lw: &LayerWeights<'_>,
        x: &[f32],
        h: &mut [f32],
        q: &mut [f32],
        k: &mut [f32],
        v: &mut [f32],
    ) {
        let hin = Self::ln1(lw, x, h);
        vec_mat(hin, &lw.wq, lw.bq.as_deref(), q);
        vec_mat(hin, &lw.wk, lw.bk.as_deref(), k);
        vec_mat(hin, &lw.wv, lw.bv.as_deref(), v);
    }

    /// One row's `q` only (see [`TemporalHead::project_row`]).
    pub(crate) fn project_q_row(
        &self,
        lw: &LayerWeights<'_>,
        x: &[f32],
        h: &mut [f32],
        q: &mut [f32],
    ) {
        let hin = Self::ln1(lw, x, h);
        vec_mat(hin, &lw.wq, lw.bq.as_deref(), q);
    }

    /// One row's `k, v` only (see [`TemporalHead::project_row`]).
    pub(crate) fn project_kv_row(
        &self,
        lw: &LayerWeights<'_>,
        x: &[f32],
        h: &mut [f32],
        k: &mut [f32],
        v: &mut [f32],
    ) {
        let hin = Self::ln1(lw, x, h);
        vec_mat(hin, &lw.wk, lw.bk.as_deref(), k);
        vec_mat(hin, &lw.wv, lw.bv.as_deref(), v);
    }

    fn ln1<'h>(lw: &LayerWeights<'_>, x: &'h [f32], h: &'h mut [f32]) -> &'h [f32] {
        match &lw.ln1 {
            Some(n) => {
                layer_norm(x, &n.g, &n.b, h);
                h
            }
            None => x,
        }
    }

    /// One row after attention: `x += att·Wo + bo`, then the MLP block when present.
    pub(crate) fn finish_row(
        &self,
        lw: &LayerWeights<'_>,
        att: &[f32],
        x: &mut [f32],
        h: &mut [f32],
        hid: &mut [f32],
    ) {
        vec_mat_add(att, &lw.wo, lw.bo.as_deref(), x);
        if let Some(m) = &lw.mlp {
            match &lw.ln2 {
                Some(n) => layer_norm(x, &n.g, &n.b, h),
                None => h.copy_from_slice(x),
            }
            vec_mat(h, &m.w1, Some(&m.b1), hid);
            hid.iter_mut().for_each(|z| *z = gelu(*z));
            vec_mat_add(hid, &m.w2, Some(&m.b2), x);
        }
    }

    /// Step 5 for one row: the final LayerNorm when configured.
    pub(crate) fn final_row(&self, x: &mut [f32]) {
        if let Some(n) = &self.weights.final_ln {
            layer_norm_in_place(x, &n.g, &n.b);
        }
    }

    /// Step 7: `logits = pooled·Wc (+ bc)`.
    pub fn classify_pooled(&self, pooled: &[f32], logits: &mut [f32]) {
        vec_mat(
            pooled,
            &self.weights.classifier_w,
            self.weights.classifier_b.as_deref(),
            logits,
        );
    }

    pub(crate) fn attn_shape(&self) -> AttnShape {
        AttnShape {
            q_heads: self.cfg.q_heads,
            kv_heads: self.cfg.kv_heads,
            head_dim: self.cfg.head_dim,
        }
    }

    /// Layer `l` over the first `n` rows of `ws.x` (`[n, D]`, already embedded), in place.
    pub fn layer_forward(&self, l: usize, n: usize, ws: &mut Workspace) -> Result<()> {
        self.layer_impl::<true>(l, n, ws)
    }

    /// The layer; with `KERNEL = false` only the compact paths are compiled in (a
    /// non-compact workspace is refused), so firmware need not link the kernel's
    /// whole-sequence attention.
    fn layer_impl<const KERNEL: bool>(&self, l: usize, n: usize, ws: &mut Workspace) -> Result<()> {
        self.check_ws(ws, n)?;
        let lw = self
            .weights
            .layers
            .get(l)
            .ok_or_else(|| HeadError::Config {
                what: "layer",
                detail: alloc::format!("{l} >= {}", self.cfg.layers),
            })?;
        if ws.absorbed {
            self.layer_absorbed(lw, n, ws);
            Ok(())
        } else if ws.compact {
            self.layer_rowwise(lw, n, ws);
            Ok(())
        } else if KERNEL {
            self.layer_kernel(lw, n, ws)
        } else {
            Err(HeadError::WorkspaceMismatch)
        }
    }

    /// The whole-sequence layer: project every row, one kernel attention call, finish rows.
    fn layer_kernel(&self, lw: &LayerWeights<'_>, n: usize, ws: &mut Workspace) -> Result<()> {
        let c = &self.cfg;
        let (d, qw, kw) = (c.d_model, c.q_width(), c.kv_width());
        for t in 0..n {
            self.project_row(
                lw,
                &ws.x[t * d..(t + 1) * d],
                &mut ws.h,
                &mut ws.qa[t * qw..(t + 1) * qw],
                &mut ws.k[t * kw..(t + 1) * kw],
                &mut ws.v[t * kw..(t + 1) * kw],
            );
        }
        // Borrowed views of the first n rows of the workspace buffers (a short buffer,
        // impossible with a checked workspace, is the kernel's shape error).
        let (dh, ql, kl) = (c.head_dim, n * qw, n * kw);
        let r = (|| {
            let q = TensorRef::new(ws.qa.get(..ql).unwrap_or(&[]), n, c.q_heads, dh)?;
            let k = TensorRef::new(ws.k.get(..kl).unwrap_or(&[]), n, c.kv_heads, dh)?;
            let v = TensorRef::new(ws.v.get(..kl).unwrap_or(&[]), n, c.kv_heads, dh)?;
            let out = TensorMut::new(ws.oa.get_mut(..ql).unwrap_or(&mut []), n, c.q_heads, dh)?;
            match c.attention {
                AttentionBackend::Sparse => {
                    sparse_attention_into(&c.pattern, q, k, v, out, &mut ws.ks)
                }
                AttentionBackend::Dense => {
                    dense_attention_into(q, k, v, c.pattern.causal, out, &mut ws.ks)
                }
            }
        })();
        r.map_err(|e| HeadError::kernel("layer attention", e))?;
        for t in 0..n {
            self.finish_row(
                lw,
                &ws.oa[t * qw..(t + 1) * qw],
                &mut ws.x[t * d..(t + 1) * d],
                &mut ws.h,
                &mut ws.hid,
            );
        }
        Ok(())
    }

    /// The low-memory layer: keys/values first, then per row its query, attention, finish.
    fn layer_rowwise(&self, lw: &LayerWeights<'_>, n: usize, ws: &mut Workspace) {
        let (d, kw) = (self.cfg.d_model, self.cfg.kv_width());
        // Keys and values of every position first (they read x before this layer
        // updates it); queries are projected per row in the second pass, where x[t]
        // is still unchanged when row t is reached, so q needs one row of storage.
        for t in 0..n {
            self.project_kv_row(
                lw,
                &ws.x[t * d..(t + 1) * d],
                &mut ws.h,
                &mut ws.k[t * kw..(t + 1) * kw],
                &mut ws.v[t * kw..(t + 1) * kw],
            );
        }
        let p = &self.cfg.pattern;
        let sparse_landmarks = self.cfg.attention == AttentionBackend::Sparse && p.landmarks;
        if sparse_landmarks {
            block_means(&ws.k[..n * kw], n, kw, p.block_size, &mut ws.lk);
            block_means(&ws.v[..n * kw], n, kw, p.block_size, &mut ws.lv);
        }
        let shape = self.attn_shape();
        for t in 0..n {
            self.project_q_row(lw, &ws.x[t * d..(t + 1) * d], &mut ws.h, &mut ws.q);
            let src = SeqKv {
                k: &ws.k,
                v: &ws.v,
                lk: &ws.lk,
                lv: &ws.lv,
                width: kw,
            };
            attend_one(
                p,
                self.cfg.attention,
                shape,
                t,
                n,
                0,
                0,
                &ws.q,
                &src,
                &mut ws.idx,
                &mut ws.scores,
                &mut ws.att,
            );
            self.finish_row(
                lw,
                &ws.att,
                &mut ws.x[t * d..(t + 1) * d],
                &mut ws.h,
                &mut ws.hid,
            );
        }
    }

    /// The absorbed low-memory layer (see [`crate::absorbed`]): the layer inputs
    /// `h = LN1(x)` of every position first, then per row its query, attention from `h`
    /// and the finish, which updates `x[t]` only (`h` stays the layer's input).
    fn layer_absorbed(&self, lw: &LayerWeights<'_>, n: usize, ws: &mut Workspace) {
        let d = self.cfg.d_model;
        for (x, h) in ws.x[..n * d]
            .chunks_exact(d)
            .zip(ws.hx[..n * d].chunks_exact_mut(d))
        {
            match &lw.ln1 {
                Some(nm) => layer_norm(x, &nm.g, &nm.b, h),
                None => h.copy_from_slice(x),
            }
        }
        let p = &self.cfg.pattern;
        if self.cfg.attention == AttentionBackend::Sparse && p.landmarks {
            block_means(&ws.hx[..n * d], n, d, p.block_size, &mut ws.lh);
        }
        let shape = self.attn_shape();
        for t in 0..n {
            let src = LayerInputs {
                h: &ws.hx,
                lh: &ws.lh,
                d,
                wk: &lw.wk,
                wv: &lw.wv,
                bv: lw.bv.as_deref(),
            };
            vec_mat(
                &ws.hx[t * d..(t + 1) * d],
                &lw.wq,
                lw.bq.as_deref(),
                &mut ws.q,
            );
            let mut scratch = Scratch {
                idx: &mut ws.idx,
                scores: &mut ws.scores,
                qd: &mut ws.qd,
                acc: &mut ws.acc,
            };
            attend_one_absorbed(
                p,
                self.cfg.attention,
                shape,
                t,
                n,
                &ws.q,
                &src,
                &mut scratch,
                &mut ws.att,
            );
            self.finish_row(
                lw,
                &ws.att,
                &mut ws.x[t * d..(t + 1) * d],
                &mut ws.h,
                &mut ws.hid,
            );
        }
    }

    fn check_ws(&self, ws: &Workspace, n: usize) -> Result<()> {
        let scratch_ok = if ws.compact {
            ws.idx.len() >= scratch_len(&self.cfg.pattern, self.cfg.attention, ws.max_len)
        } else {
            let c = &self.cfg;
            let need = match c.attention {
                AttentionBackend::Sparse => {
                    sparse_scratch_len(&c.pattern, ws.max_len, c.kv_heads, c.head_dim)
                }
                AttentionBackend::Dense => dense_scratch_len(ws.max_len, c.kv_heads, c.head_dim),
            };
            need.is_ok_and(|need| ws.ks.len() >= need)
        };
        if ws.dims != dims(&self.cfg) || !scratch_ok {
            return Err(HeadError::WorkspaceMismatch);
        }
        if n > ws.max_len {
            return Err(HeadError::TooLong {
                max: ws.max_len,
                got: n,
            });
        }
        Ok(())
    }

    /// The pooled vector (step 6) of `frames` (`N·F` values) into `out` (`D`); no allocation.
    pub fn embed_into(&self, frames: &[f32], ws: &mut Workspace, out: &mut [f32]) -> Result<()> {
        self.embed_impl::<true>(frames, ws, out)
    }

    fn embed_impl<const KERNEL: bool>(
        &self,
        frames: &[f32],
        ws: &mut Workspace,
        out: &mut [f32],
    ) -> Result<()> {
        if !KERNEL && !ws.compact {
            return Err(HeadError::WorkspaceMismatch);
        }
        let n = check_frames(frames, self.cfg.features)?;
        if n == 0 {
            return Err(HeadError::EmptySequence);
        }
        self.check_ws(ws, n)?;
        let d = self.cfg.d_model;
        if out.len() != d {
            return Err(HeadError::OutputLen {
                what: "embedding",
                expected: d,
                got: out.len(),
            });
        }
        let f = self.cfg.features;
        ws.rn.reset();
        for t in 0..n {
            self.embed_row(
                t,
                &frames[t * f..(t + 1) * f],
                &mut ws.rn,
                &mut ws.u,
                &mut ws.x[t * d..(t + 1) * d],
            );
        }
        for l in 0..self.cfg.layers {
            self.layer_impl::<KERNEL>(l, n, ws)?;
        }
        match self.cfg.pooling {
            Pooling::Mean => {
                out.iter_mut().for_each(|o| *o = 0.0);
                for t in 0..n {
                    let row = &mut ws.x[t * d..(t + 1) * d];
                    self.final_row(row);
                    for (o, r) in out.iter_mut().zip(row.iter()) {
                        *o += r;
                    }
                }
                let inv = n as f32;
                out.iter_mut().for_each(|o| *o /= inv);
            }
            Pooling::Last => {
                let row = &mut ws.x[(n - 1) * d..n * d];
                self.final_row(row);
                out.copy_from_slice(row);
            }
        }
        if out.iter().any(|x| !x.is_finite()) {
            return Err(HeadError::NumericOverflow);
        }
        Ok(())
    }

    /// Logits (`C`) of `frames` (`N·F` values, row-major) into `logits`; no allocation.
    pub fn forward_into(
        &self,
        frames: &[f32],
        ws: &mut Workspace,
        logits: &mut [f32],
    ) -> Result<()> {
        self.forward_impl::<true>(frames, ws, logits)
    }

    /// [`TemporalHead::forward_into`] for a [`Workspace::compact`] only (another workspace
    /// is [`HeadError::WorkspaceMismatch`]): the same logits, without linking the
    /// kernel's whole-sequence SIMD attention (about 120 KB of firmware code).
    pub fn forward_compact_into(
        &self,
        frames: &[f32],
        ws: &mut Workspace,
        logits: &mut [f32],
    ) -> Result<()> {
        self.forward_impl::<false>(frames, ws, logits)
    }

    fn forward_impl<const KERNEL: bool>(
        &self,
        frames: &[f32],
        ws: &mut Workspace,
        logits: &mut [f32],
    ) -> Result<()> {
        if logits.len() != self.cfg.classes {
            return Err(HeadError::OutputLen {
                what: "logits",
                expected: self.cfg.classes,
                got: logits.len(),
            });
        }
        let mut pooled = core::mem::take(&mut ws.pooled);
        let r = self.embed_impl::<KERNEL>(frames, ws, &mut pooled);
        if r.is_ok() {
            self.classify_pooled(&pooled, logits);
        }
        ws.pooled = pooled;
        r?;
        if logits.iter().any(|x| !x.is_finite()) {
            return Err(HeadError::NumericOverflow);
        }
        Ok(())
    }

    /// Logits of one sequence (`N·F` values, row-major).
    pub fn forward(&self, frames: &[f32]) -> Result<Vec<f32>> {
        let n = check_frames(frames, self.cfg.features)?;
        let mut ws = Workspace::new(self, n)?;
        let mut logits = vec![0.0; self.cfg.classes];
        self.forward_into(frames, &mut ws, &mut logits)?;
        Ok(logits)
    }

    /// The pooled embedding (`D`) of one sequence.
    pub fn embed(&self, frames: &[f32]) -> Result<Vec<f32>> {
        let n = check_frames(frames, self.cfg.features)?;
        let mut ws = Workspace::new(self, n)?;
        let mut out = vec![0.0; self.cfg.d_model];
        self.embed_into(frames, &mut ws, &mut out)?;
        Ok(out)
    }

    /// Logits of each sequence of a batch (sequences may differ in length); one workspace.
    pub fn forward_batch(&self, batch: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let f = self.cfg.features;
        let longest = batch.iter().map(|s| s.len() / f).max().unwrap_or(0);
        let mut ws = Workspace::new(self, longest)?;
        batch
            .iter()
            .map(|s| {
                let mut logits = vec![0.0; self.cfg.classes];
                self.forward_into(s, &mut ws, &mut logits)?;
                Ok(logits)
            })
            .collect()
    }

    /// Whether every weight is borrowed from the blob (no copy was needed).
    pub fn is_zero_copy(&self) -> bool {
        self.owned_weight_bytes() == 0
    }
}
