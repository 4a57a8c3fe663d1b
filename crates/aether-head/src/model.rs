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

use crate::attention::{attend_one, block_means, scratch_len, AttnShape, SeqKv};
use crate::config::{Backend, HeadConfig, Pooling, Positional};
use crate::error::{HeadError, Result};
use crate::math::{
    add_positional, gelu, layer_norm, layer_norm_in_place, normalise_input, vec_mat, vec_mat_add,
};
use crate::weights::{LayerWeights, Weights};

/// A temporal head: configuration plus weights (borrowed from a blob or owned).
#[derive(Debug, Clone, PartialEq)]
pub struct TemporalHead<'a> {
    cfg: HeadConfig,
    weights: Weights<'a>,
}

/// Checks `frames` (`n·F` values, row-major) and returns `n`; refuses a partial frame
/// and NaN/Inf with the frame and feature index.
pub fn check_frames(frames: &[f32], features: usize) -> Result<usize> {
    if features == 0 || frames.len() % features != 0 {
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
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(crate) dims: [usize; 7],
    pub(crate) max_len: usize,
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
}

fn dims(cfg: &HeadConfig) -> [usize; 7] {
    [
        cfg.features,
        cfg.d_model,
        cfg.q_width(),
        cfg.kv_width(),
        cfg.mlp_hidden,
        cfg.classes,
        cfg.pattern.block_size,
    ]
}

fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or_else(|| HeadError::Config {
        what: "max_len",
        detail: "workspace size overflows".into(),
    })
}

impl Workspace {
    /// Buffers for `head` on sequences of up to `max_len` frames (either backend).
    pub fn new(head: &TemporalHead<'_>, max_len: usize) -> Result<Self> {
        let c = &head.cfg;
        let max_len = max_len.max(1);
        let blocks = max_len.div_ceil(c.pattern.block_size);
        let sl = scratch_len(&c.pattern, Backend::Sparse, max_len).max(scratch_len(
            &c.pattern,
            Backend::Dense,
            max_len,
        ));
        Ok(Self {
            dims: dims(c),
            max_len,
            x: vec![0.0; mul(max_len, c.d_model)?],
            q: vec![0.0; mul(max_len, c.q_width())?],
            k: vec![0.0; mul(max_len, c.kv_width())?],
            v: vec![0.0; mul(max_len, c.kv_width())?],
            lk: vec![0.0; mul(blocks, c.kv_width())?],
            lv: vec![0.0; mul(blocks, c.kv_width())?],
            u: vec![0.0; c.features],
            h: vec![0.0; c.d_model],
            att: vec![0.0; c.q_width()],
            hid: vec![0.0; c.mlp_hidden],
            idx: vec![0; sl],
            scores: vec![0.0; sl],
            pooled: vec![0.0; c.d_model],
        })
    }

    /// Longest sequence this workspace accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes of all buffers (the forward's working set beyond the weights).
    pub fn bytes(&self) -> usize {
        let f = self.x.len()
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
            + self.pooled.len();
        f * 4 + self.idx.len() * core::mem::size_of::<usize>()
    }
}

impl<'a> TemporalHead<'a> {
    /// A head from a configuration and matching weights (every tensor's length is checked).
    pub fn new(cfg: HeadConfig, weights: Weights<'a>) -> Result<Self> {
        cfg.validate()?;
        let want = cfg.tensor_shapes();
        let got = weights.named();
        for (name, n) in &want {
            let n = n.unwrap_or(0);
            match got.iter().find(|(g, _)| g == name) {
                None => return Err(HeadError::MissingTensor { name: name.clone() }),
                Some((_, s)) if s.len() != n => {
                    return Err(HeadError::TensorShape {
                        name: name.clone(),
                        expected: n,
                        got: s.len(),
                    })
                }
                Some(_) => {}
            }
        }
        if got.len() != want.len() || weights.layers.len() != cfg.layers {
            return Err(HeadError::Config {
                what: "weights",
                detail: alloc::format!(
                    "{} tensors given, the config names {}",
                    got.len(),
                    want.len()
                ),
            });
        }
        Ok(Self { cfg, weights })
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
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.cfg.backend = backend;
        self
    }

    /// Switches the attention backend in place.
    pub fn set_backend(&mut self, backend: Backend) {
        self.cfg.backend = backend;
    }

    /// A copy that owns all its weights.
    pub fn into_owned(self) -> TemporalHead<'static> {
        TemporalHead {
            cfg: self.cfg,
            weights: self.weights.into_owned(),
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

    /// Working-set bytes of a [`Workspace`] for sequences up to `max_len` (without weights).
    pub fn workspace_bytes(&self, max_len: usize) -> Result<usize> {
        Ok(Workspace::new(self, max_len)?.bytes())
    }

    /// Step 1–3 for one frame: `x = embed(norm(frame)) + pe(t)`; `u` is `F` scratch.
    pub fn embed_row(&self, t: usize, frame: &[f32], u: &mut [f32], x: &mut [f32]) {
        let w = &self.weights;
        u.copy_from_slice(frame);
        if let (Some(m), Some(s)) = (&w.input_mean, &w.input_std) {
            normalise_input(u, m, s);
        }
        match &w.embed_w {
            Some(ew) => vec_mat(u, ew, w.embed_b.as_deref(), x),
            None => x.copy_from_slice(u),
        }
        if self.cfg.positional == Positional::Sinusoidal {
            add_positional(t, x);
        }
    }

    /// One row's `q, k, v` for layer `lw`: `h = LN1(x)`, `q = h·Wq + bq`, …; `h` is `D` scratch.
    pub fn project_row(
        &self,
        lw: &LayerWeights<'_>,
        x: &[f32],
        h: &mut [f32],
        q: &mut [f32],
        k: &mut [f32],
        v: &mut [f32],
    ) {
        let hin: &[f32] = match &lw.ln1 {
            Some(n) => {
                layer_norm(x, &n.g, &n.b, h);
                h
            }
            None => x,
        };
        vec_mat(hin, &lw.wq, lw.bq.as_deref(), q);
        vec_mat(hin, &lw.wk, lw.bk.as_deref(), k);
        vec_mat(hin, &lw.wv, lw.bv.as_deref(), v);
    }

    /// One row after attention: `x += att·Wo + bo`, then the MLP block when present.
    pub fn finish_row(
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
    pub fn final_row(&self, x: &mut [f32]) {
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
        self.check_ws(ws, n)?;
        let lw = self
            .weights
            .layers
            .get(l)
            .ok_or_else(|| HeadError::Config {
                what: "layer",
                detail: alloc::format!("{l} >= {}", self.cfg.layers),
            })?;
        let (d, qw, kw) = (self.cfg.d_model, self.cfg.q_width(), self.cfg.kv_width());
        for t in 0..n {
            self.project_row(
                lw,
                &ws.x[t * d..(t + 1) * d],
                &mut ws.h,
                &mut ws.q[t * qw..(t + 1) * qw],
                &mut ws.k[t * kw..(t + 1) * kw],
                &mut ws.v[t * kw..(t + 1) * kw],
            );
        }
        let p = &self.cfg.pattern;
        let sparse_landmarks = self.cfg.backend == Backend::Sparse && p.landmarks;
        if sparse_landmarks {
            block_means(&ws.k[..n * kw], n, kw, p.block_size, &mut ws.lk);
            block_means(&ws.v[..n * kw], n, kw, p.block_size, &mut ws.lv);
        }
        let shape = self.attn_shape();
        for t in 0..n {
            let src = SeqKv {
                k: &ws.k,
                v: &ws.v,
                lk: &ws.lk,
                lv: &ws.lv,
                width: kw,
            };
            attend_one(
                p,
                self.cfg.backend,
                shape,
                t,
                n,
                0,
                0,
                &ws.q[t * qw..(t + 1) * qw],
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
        Ok(())
    }

    fn check_ws(&self, ws: &Workspace, n: usize) -> Result<()> {
        if ws.dims != dims(&self.cfg)
            || ws.idx.len() < scratch_len(&self.cfg.pattern, self.cfg.backend, ws.max_len)
        {
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
        for t in 0..n {
            self.embed_row(
                t,
                &frames[t * f..(t + 1) * f],
                &mut ws.u,
                &mut ws.x[t * d..(t + 1) * d],
            );
        }
        for l in 0..self.cfg.layers {
            self.layer_forward(l, n, ws)?;
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
        if logits.len() != self.cfg.classes {
            return Err(HeadError::OutputLen {
                what: "logits",
                expected: self.cfg.classes,
                got: logits.len(),
            });
        }
        let mut pooled = core::mem::take(&mut ws.pooled);
        let r = self.embed_into(frames, ws, &mut pooled);
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
