//! The trainable model: parameters, the training forward (keeping activations) and the
//! full backward of the weighted softmax cross-entropy.
//!
//! Backward, in reverse order of docs/model.md (`g` denotes ∂loss/∂·):
//! * loss `ℓ = −w_y log softmax(z)_y` → `g_z = w_y (softmax(z) − onehot(y))`;
//! * classifier `z = p·Wc + bc` → `g_Wc += pᵀ g_z`, `g_bc += g_z`, `g_p = Wc g_z`;
//! * pooling: mean spreads `g_p / N` to every position, last puts it at `N − 1`;
//! * final / pre norm: layer-norm backward (see `ops`);
//! * MLP `x += GELU(h₂W₁ + b₁)W₂ + b₂`: `g_W₂ += aᵀg`, `g_a = g W₂ᵀ`,
//!   `g_z₁ = g_a ⊙ GELU′(z₁)`, `g_W₁ += h₂ᵀ g_z₁`, `g_h₂ = g_z₁ W₁ᵀ`, residual adds `g`;
//! * attention `x += A·Wo + bo`, `A = attn(hWq, hWk, hWv)`: the kernel's attention
//!   backward (see `attention`, GQA groups sum into their shared kv head), then
//!   `g_h = g_q Wqᵀ + g_k Wkᵀ + g_v Wvᵀ`;
//! * embedding `x = u·We + be (+ pe)`: `g_We += uᵀ g_x`, `g_be += Σ g_x`.

use std::collections::HashMap;

use super::attention::{self, AttnScratch, Heads};
use super::config::Architecture;
use super::error::TrainError;
use super::ops;
use super::params::Layout;
use crate::config::{Pooling, Positional};
use crate::math::RunningNorm;

/// One labelled window: `N × F` frames, row-major, and a class index.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    /// `N × F` values, frame after frame.
    pub frames: &'a [f32],
    /// Class index in `0..classes`.
    pub label: usize,
}

/// A trainable head: architecture, flat parameters (see [`Layout`]) and input statistics.
#[derive(Debug, Clone)]
pub struct Model {
    arch: Architecture,
    layout: Layout,
    params: Vec<f32>,
    input_mean: Vec<f32>,
    input_std: Vec<f32>,
}

/// Activations of one layer kept for the backward.
#[derive(Debug, Default, Clone)]
struct LayerTape {
    x_in: Vec<f32>,
    ln1_xhat: Vec<f32>,
    ln1_rstd: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    a: Vec<f32>,
    x_mid: Vec<f32>,
    ln2_xhat: Vec<f32>,
    ln2_rstd: Vec<f32>,
    h2: Vec<f32>,
    z1: Vec<f32>,
    t1: Vec<f32>,
    g1: Vec<f32>,
}

/// Reusable activations and scratch of one window (allocation-free once warmed up).
#[derive(Debug, Default, Clone)]
pub(crate) struct Workspace {
    n: usize,
    u: Vec<f32>,
    layers: Vec<LayerTape>,
    x_last: Vec<f32>,
    fin_xhat: Vec<f32>,
    fin_rstd: Vec<f32>,
    y: Vec<f32>,
    pooled: Vec<f32>,
    logits: Vec<f32>,
    dx: Vec<f32>,
    dh: Vec<f32>,
    da: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
    dg1: Vec<f32>,
    tmp: Vec<f32>,
    attn: AttnScratch,
}

fn sized(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    v.clear();
    v.resize(len, 0.0);
    v
}

/// Everything that depends only on the architecture and the sequence length.
#[derive(Debug)]
pub(crate) struct SeqPlan {
    /// Positional table `[N, D]` (empty when `positional` is off).
    pe: Vec<f32>,
}

impl SeqPlan {
    pub(crate) fn new(arch: &Architecture, n: usize) -> Self {
        Self {
            pe: if arch.positional == Positional::Sinusoidal {
                ops::positional_table(n, arch.d_model)
            } else {
                Vec::new()
            },
        }
    }
}

/// Sequence plans per length, built up front and shared read-only.
#[derive(Debug, Default)]
pub(crate) struct Plans {
    map: HashMap<usize, SeqPlan>,
}

impl Plans {
    /// Builds the plans for every length in `lens`.
    pub(crate) fn build(arch: &Architecture, lens: impl IntoIterator<Item = usize>) -> Self {
        let mut map = HashMap::new();
        for n in lens {
            map.entry(n).or_insert_with(|| SeqPlan::new(arch, n));
        }
        Self { map }
    }

    /// The plan for length `n` (present by construction).
    pub(crate) fn get(&self, n: usize) -> Option<&SeqPlan> {
        self.map.get(&n)
    }
}

/// `log Σ exp(z)` and the softmax of `z` into `p` (the deployed head's softmax).
pub(crate) use crate::math::softmax;

pub use crate::math::argmax;

impl Model {
    /// A freshly initialised model for `arch` (see [`Layout`] for the scheme), input
    /// statistics mean 0 / std 1 until [`Model::fit_input_norm`].
    pub fn new(arch: Architecture, seed: u64) -> Result<Self, TrainError> {
        arch.validate()?;
        let layout = Layout::new(&arch);
        let params = layout.init(&arch, seed);
        let f = arch.features;
        Ok(Self {
            arch,
            layout,
            params,
            input_mean: vec![0.0; f],
            input_std: vec![1.0; f],
        })
    }

    /// Builds a model from explicit parameters (flat, in [`Layout`] order) and input stats.
    pub fn from_parts(
        arch: Architecture,
        params: Vec<f32>,
        input_mean: Vec<f32>,
        input_std: Vec<f32>,
    ) -> Result<Self, TrainError> {
        arch.validate()?;
        let layout = Layout::new(&arch);
        let checks = [
            ("params", layout.total(), params.len()),
            ("input_mean", arch.features, input_mean.len()),
            ("input_std", arch.features, input_std.len()),
        ];
        for (what, expected, got) in checks {
            if expected != got {
                return Err(TrainError::LengthMismatch {
                    what,
                    expected,
                    got,
                });
            }
        }
        if let Some(i) = params.iter().position(|x| !x.is_finite()) {
            return Err(TrainError::NonFinite {
                what: "params".into(),
                index: i,
            });
        }
        if let Some(i) = input_std.iter().position(|&x| !(x.is_finite() && x > 0.0)) {
            return Err(TrainError::config(
                "input_std",
                format!("element {i} must be finite and positive"),
            ));
        }
        Ok(Self {
            arch,
            layout,
            params,
            input_mean,
            input_std,
        })
    }

    /// The architecture.
    pub fn arch(&self) -> &Architecture {
        &self.arch
    }

    /// The parameter layout (names, shapes, offsets).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// All trainable parameters, flat in [`Layout`] order.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// All trainable parameters, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// The tensor named `name` (docs/model.md names; also `input.mean` / `input.std`).
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        match name {
            "input.mean" => Some(&self.input_mean),
            "input.std" => Some(&self.input_std),
            _ => self.layout.spec(name).map(|s| &self.params[s.range()]),
        }
    }

    /// Per-feature input mean (used when `input_norm` is on).
    pub fn input_mean(&self) -> &[f32] {
        &self.input_mean
    }

    /// Per-feature input std (used when `input_norm` is on).
    pub fn input_std(&self) -> &[f32] {
        &self.input_std
    }

    /// Sets the input statistics to the mean and population std of every frame of
    /// `windows` (after the running standardisation when `running_norm` is on; f64
    /// accumulation); a std below `1e-6·max(1, |mean|)` becomes 1 so a
    /// constant feature maps to 0 instead of dividing by zero.
    pub fn fit_input_norm(&mut self, windows: &[Window]) -> Result<(), TrainError> {
        let f = self.arch.features;
        self.check_windows(windows)?;
        let mut sum = vec![0.0f64; f];
        let mut sq = vec![0.0f64; f];
        let mut count = 0usize;
        let mut buf = Vec::new();
        for w in windows {
            let frames = if self.arch.running_norm {
                buf.clear();
                buf.extend_from_slice(w.frames);
                RunningNorm::sequence(&mut buf, f);
                &buf[..]
            } else {
                w.frames
            };
            for frame in frames.chunks_exact(f) {
                for ((s, q), &x) in sum.iter_mut().zip(sq.iter_mut()).zip(frame) {
                    *s += f64::from(x);
                    *q += f64::from(x) * f64::from(x);
                }
                count += 1;
            }
        }
        if count == 0 {
            return Err(TrainError::Empty);
        }
        for c in 0..f {
            let mean = sum[c] / count as f64;
            let var = (sq[c] / count as f64 - mean * mean).max(0.0);
            let std = var.sqrt();
            self.input_mean[c] = mean as f32;
            self.input_std[c] = if std < 1e-6 * mean.abs().max(1.0) {
                1.0
            } else {
                std as f32
            };
        }
        Ok(())
    }

    /// Checks frames shape, finiteness and labels of `windows`.
    pub fn check_windows(&self, windows: &[Window]) -> Result<(), TrainError> {
        for (i, w) in windows.iter().enumerate() {
            self.check_frames(w.frames, i)?;
            if w.label >= self.arch.classes {
                return Err(TrainError::Label {
                    index: i,
                    label: w.label,
                    classes: self.arch.classes,
                });
            }
        }
        Ok(())
    }

    fn check_frames(&self, frames: &[f32], index: usize) -> Result<usize, TrainError> {
        let f = self.arch.features;
        if frames.is_empty() || !frames.len().is_multiple_of(f) {
            return Err(TrainError::WindowShape {
                index,
                len: frames.len(),
                features: f,
            });
        }
        if let Some(j) = frames.iter().position(|x| !x.is_finite()) {
            return Err(TrainError::NonFinite {
                what: format!("window {index}"),
                index: j,
            });
        }
        Ok(frames.len() / f)
    }

    /// Logits `[C]` of one window of `N × F` frames.
    pub fn logits(&self, frames: &[f32]) -> Result<Vec<f32>, TrainError> {
        let n = self.check_frames(frames, 0)?;
        let plan = SeqPlan::new(&self.arch, n);
        let mut ws = Workspace::default();
        self.forward(frames, &plan, &mut ws);
        Ok(ws.logits)
    }

    /// The embedding (pooled vector, `[D]`) of one window.
    pub fn embedding(&self, frames: &[f32]) -> Result<Vec<f32>, TrainError> {
        let n = self.check_frames(frames, 0)?;
        let plan = SeqPlan::new(&self.arch, n);
        let mut ws = Workspace::default();
        self.forward(frames, &plan, &mut ws);
        Ok(ws.pooled)
    }

    /// Logits of many windows, `[len, C]` flat, computed in parallel (order preserved).
    pub fn logits_batch(&self, windows: &[&[f32]]) -> Result<Vec<f32>, TrainError> {
        self.outputs_batch(windows, false)
    }

    /// Embeddings of many windows, `[len, D]` flat, computed in parallel (order preserved).
    pub fn embeddings_batch(&self, windows: &[&[f32]]) -> Result<Vec<f32>, TrainError> {
        self.outputs_batch(windows, true)
    }

    fn outputs_batch(&self, windows: &[&[f32]], embed: bool) -> Result<Vec<f32>, TrainError> {
        use rayon::prelude::*;
        let mut lens = Vec::with_capacity(windows.len());
        for (i, w) in windows.iter().enumerate() {
            lens.push(self.check_frames(w, i)?);
        }
        let plans = Plans::build(&self.arch, lens.iter().copied());
        let width = if embed {
            self.arch.d_model
        } else {
            self.arch.classes
        };
        let mut out = vec![0.0f32; windows.len() * width];
        out.par_chunks_mut(width)
            .zip(windows.par_iter())
            .zip(lens.par_iter())
            .for_each_init(Workspace::default, |ws, ((o, w), &n)| {
                if let Some(plan) = plans.get(n) {
                    self.forward(w, plan, ws);
                    o.copy_from_slice(if embed { &ws.pooled } else { &ws.logits });
                }
            });
        Ok(out)
    }

    /// Weighted mean cross-entropy of `windows` and its gradient (flat, [`Layout`] order):
    /// `ℓ = Σ w_{y_b} CE_b / Σ w_{y_b}`, `class_weights` `None` meaning all 1. Serial;
    /// the trainer runs the same per-window code in parallel.
    pub fn loss_and_gradient(
        &self,
        windows: &[Window],
        class_weights: Option<&[f32]>,
    ) -> Result<(f32, Vec<f32>), TrainError> {
        self.check_windows(windows)?;
        if windows.is_empty() {
            return Err(TrainError::Empty);
        }
        let weights = self.resolve_weights(class_weights)?;
        let plans = Plans::build(
            &self.arch,
            windows.iter().map(|w| w.frames.len() / self.arch.features),
        );
        let total_w: f32 = windows.iter().map(|w| weights[w.label]).sum();
        let mut grad = vec![0.0f32; self.layout.total()];
        let mut ws = Workspace::default();
        let mut loss = 0.0f64;
        for w in windows {
            let n = w.frames.len() / self.arch.features;
            let plan = plans.get(n).ok_or(TrainError::Empty)?;
            let (l, _) = self.window_step(
                w,
                None,
                weights[w.label] / total_w,
                plan,
                &mut ws,
                &mut grad,
            );
            loss += f64::from(l * weights[w.label]);
        }
        Ok(((loss / f64::from(total_w)) as f32, grad))
    }

    /// Class weights as a vector of `C` (all ones for `None`), validated.
    pub(crate) fn resolve_weights(&self, w: Option<&[f32]>) -> Result<Vec<f32>, TrainError> {
        let c = self.arch.classes;
        match w {
            None => Ok(vec![1.0; c]),
            Some(w) if w.len() != c => Err(TrainError::LengthMismatch {
                what: "class_weights",
                expected: c,
                got: w.len(),
            }),
            Some(w) => {
                if w.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                    return Err(TrainError::config(
                        "class weights",
                        "must be finite and positive",
                    ));
                }
                Ok(w.to_vec())
            }
        }
    }

    /// Forward + backward of one validated window: adds `scale · ∂CE/∂θ` to `grad` and
    /// returns the (unweighted) cross-entropy and the predicted class.
    pub(crate) fn window_step(
        &self,
        w: &Window,
        target: Option<&[f32]>,
        scale: f32,
        plan: &SeqPlan,
        ws: &mut Workspace,
        grad: &mut [f32],
    ) -> (f32, usize) {
        self.forward(w.frames, plan, ws);
        let c = self.arch.classes;
        let mut dz = vec![0.0f32; c];
        let lse = softmax(&ws.logits, &mut dz);
        let pred = argmax(&ws.logits);
        let ce = match target {
            // Soft target y (label smoothing, mixup): CE = lse − Σ y·z, dz = p − y.
            Some(y) => {
                let yz: f32 = y.iter().zip(&ws.logits).map(|(a, b)| a * b).sum();
                dz.iter_mut().zip(y).for_each(|(d, t)| *d -= t);
                lse - yz
            }
            None => {
                dz[w.label] -= 1.0;
                lse - ws.logits[w.label]
            }
        };
        dz.iter_mut().for_each(|x| *x *= scale);
        self.backward(ws, &dz, grad);
        (ce, pred)
    }

    /// Swaps the parameters with `other` (same length), e.g. to evaluate averaged weights.
    pub(crate) fn swap_params(&mut self, other: &mut Vec<f32>) {
        assert_eq!(self.params.len(), other.len(), "parameter count");
        std::mem::swap(&mut self.params, other);
    }

    /// Forward over validated frames, keeping every activation in `ws`.
    pub(crate) fn forward(&self, frames: &[f32], plan: &SeqPlan, ws: &mut Workspace) {
        let a = &self.arch;
        let p = &self.params;
        let (f, d) = (a.features, a.d_model);
        let n = frames.len() / f;
        let hd = Heads {
            hq: a.q_heads,
            hkv: a.kv_heads,
            dh: a.head_dim,
        };
        let (wq, wkv, hid) = (hd.hq * hd.dh, hd.hkv * hd.dh, a.mlp_hidden);
        ws.n = n;
        let u = sized(&mut ws.u, n * f);
        u.copy_from_slice(frames);
        if a.running_norm {
            RunningNorm::sequence(u, f);
        }
        if a.input_norm {
            for row in u.chunks_exact_mut(f) {
                for ((x, &m), &s) in row.iter_mut().zip(&self.input_mean).zip(&self.input_std) {
                    *x = (*x - m) / s;
                }
            }
        }
        ws.layers.resize_with(a.layers, LayerTape::default);
        let mut x = std::mem::take(&mut ws.layers[0].x_in);
        sized(&mut x, n * d);
        match &self.layout.embed {
            Some((w, b)) => {
                ops::matmul(&ws.u, &p[w.clone()], &mut x, n, f, d);
                ops::add_rows(&mut x, &p[b.clone()], d);
            }
            None => x.copy_from_slice(&ws.u),
        }
        if a.positional == Positional::Sinusoidal {
            x.iter_mut().zip(&plan.pe).for_each(|(xv, pv)| *xv += pv);
        }
        ws.layers[0].x_in = x;
        for l in 0..a.layers {
            let s = &self.layout.layers[l];
            let (done, rest) = ws.layers.split_at_mut(l + 1);
            let t = &mut done[l];
            let hsrc: &[f32] = match &s.ln1 {
                Some((g, b)) => {
                    sized(&mut t.ln1_rstd, n);
                    sized(&mut t.ln1_xhat, n * d);
                    let h = sized(&mut t.h, n * d);
                    ops::layer_norm(
                        &t.x_in,
                        &p[g.clone()],
                        &p[b.clone()],
                        &mut t.ln1_xhat,
                        &mut t.ln1_rstd,
                        h,
                        d,
                    );
                    &t.h
                }
                None => &t.x_in,
            };
            sized(&mut t.q, n * wq);
            sized(&mut t.k, n * wkv);
            sized(&mut t.v, n * wkv);
            ops::matmul(hsrc, &p[s.wq.clone()], &mut t.q, n, d, wq);
            ops::matmul(hsrc, &p[s.wk.clone()], &mut t.k, n, d, wkv);
            ops::matmul(hsrc, &p[s.wv.clone()], &mut t.v, n, d, wkv);
            if let (Some(bq), Some(bk), Some(bv)) = (&s.bq, &s.bk, &s.bv) {
                ops::add_rows(&mut t.q, &p[bq.clone()], wq);
                ops::add_rows(&mut t.k, &p[bk.clone()], wkv);
                ops::add_rows(&mut t.v, &p[bv.clone()], wkv);
            }
            attention::forward(
                (a.attention, &a.pattern),
                hd,
                n,
                (&t.q, &t.k, &t.v),
                &mut t.a,
                &mut ws.attn,
            );
            let xm = sized(&mut t.x_mid, n * d);
            xm.copy_from_slice(&t.x_in);
            ops::matmul_acc(&t.a, &p[s.wo.clone()], xm, n, wq, d);
            if let Some(bo) = &s.bo {
                ops::add_rows(xm, &p[bo.clone()], d);
            }
            let mut xo = match rest.first_mut() {
                Some(next) => std::mem::take(&mut next.x_in),
                None => std::mem::take(&mut ws.x_last),
            };
            sized(&mut xo, n * d).copy_from_slice(&t.x_mid);
            if let Some(m) = &s.mlp {
                let h2src: &[f32] = match &s.ln2 {
                    Some((g, b)) => {
                        sized(&mut t.ln2_rstd, n);
                        sized(&mut t.ln2_xhat, n * d);
                        let h2 = sized(&mut t.h2, n * d);
                        ops::layer_norm(
                            &t.x_mid,
                            &p[g.clone()],
                            &p[b.clone()],
                            &mut t.ln2_xhat,
                            &mut t.ln2_rstd,
                            h2,
                            d,
                        );
                        &t.h2
                    }
                    None => &t.x_mid,
                };
                let z1 = sized(&mut t.z1, n * hid);
                ops::matmul(h2src, &p[m.w1.clone()], z1, n, d, hid);
                ops::add_rows(z1, &p[m.b1.clone()], hid);
                let g1 = sized(&mut t.g1, n * hid);
                let t1 = sized(&mut t.t1, n * hid);
                for ((g, th), &z) in g1.iter_mut().zip(t1.iter_mut()).zip(&t.z1) {
                    (*g, *th) = ops::gelu_and_tanh(z);
                }
                ops::matmul_acc(&t.g1, &p[m.w2.clone()], &mut xo, n, hid, d);
                ops::add_rows(&mut xo, &p[m.b2.clone()], d);
            }
            match rest.first_mut() {
                Some(next) => next.x_in = xo,
                None => ws.x_last = xo,
            }
        }
        let y = match &self.layout.final_ln {
            Some((g, b)) => {
                sized(&mut ws.fin_rstd, n);
                sized(&mut ws.fin_xhat, n * d);
                let y = sized(&mut ws.y, n * d);
                ops::layer_norm(
                    &ws.x_last,
                    &p[g.clone()],
                    &p[b.clone()],
                    &mut ws.fin_xhat,
                    &mut ws.fin_rstd,
                    y,
                    d,
                );
                &ws.y
            }
            None => &ws.x_last,
        };
        let pooled = sized(&mut ws.pooled, d);
        match a.pooling {
            Pooling::Mean => {
                for row in y.chunks_exact(d) {
                    aether_kernel::simd::axpy(1.0, row, pooled);
                }
                let inv = 1.0 / n as f32;
                pooled.iter_mut().for_each(|x| *x *= inv);
            }
            Pooling::Last => pooled.copy_from_slice(&y[(n - 1) * d..]),
        }
        let c = a.classes;
        let logits = sized(&mut ws.logits, c);
        ops::matmul(&ws.pooled, &p[self.layout.cls_w.clone()], logits, 1, d, c);
        if let Some(b) = &self.layout.cls_b {
            ops::add_rows(logits, &p[b.clone()], c);
        }
    }

    /// Backward from `dz = ∂ℓ/∂logits` through the activations in `ws`; adds into `grad`.
    fn backward(&self, ws: &mut Workspace, dz: &[f32], grad: &mut [f32]) {
        let a = &self.arch;
        let p = &self.params;
        let lay = &self.layout;
        let (f, d, c, n) = (a.features, a.d_model, a.classes, ws.n);
        let hd = Heads {
            hq: a.q_heads,
            hkv: a.kv_heads,
            dh: a.head_dim,
        };
        let (wq, wkv, hid) = (hd.hq * hd.dh, hd.hkv * hd.dh, a.mlp_hidden);
        // Classifier.
        ops::matmul_tn_acc(&ws.pooled, dz, &mut grad[lay.cls_w.clone()], 1, d, c);
        if let Some(b) = &lay.cls_b {
            aether_kernel::simd::axpy(1.0, dz, &mut grad[b.clone()]);
        }
        let mut dpool = vec![0.0f32; d];
        ops::matmul_nt_acc(dz, &p[lay.cls_w.clone()], &mut dpool, 1, d, c);
        // Pooling into dy (stored in dh for the moment).
        let dy = sized(&mut ws.dh, n * d);
        match a.pooling {
            Pooling::Mean => {
                let inv = 1.0 / n as f32;
                for row in dy.chunks_exact_mut(d) {
                    row.iter_mut().zip(&dpool).for_each(|(r, &g)| *r = g * inv);
                }
            }
            Pooling::Last => dy[(n - 1) * d..].copy_from_slice(&dpool),
        }
        let dx = sized(&mut ws.dx, n * d);
        match &lay.final_ln {
            Some((g, b)) => {
                let tmp = sized(&mut ws.tmp, d);
                let (dg, db) = two_mut(grad, g.clone(), b.clone());
                ops::layer_norm_backward(
                    &ws.dh,
                    &ws.fin_xhat,
                    &ws.fin_rstd,
                    &p[g.clone()],
                    dx,
                    dg,
                    db,
                    tmp,
                    d,
                );
            }
            None => dx.copy_from_slice(&ws.dh),
        }
        for l in (0..a.layers).rev() {
            let s = &lay.layers[l];
            let t = &ws.layers[l];
            // MLP: dx is the gradient of the layer output; it passes to x_mid unchanged
            // plus the MLP branch.
            if let Some(m) = &s.mlp {
                let h2src: &[f32] = if s.ln2.is_some() { &t.h2 } else { &t.x_mid };
                ops::matmul_tn_acc(&t.g1, &ws.dx, &mut grad[m.w2.clone()], n, hid, d);
                ops::col_sum_acc(&ws.dx, &mut grad[m.b2.clone()], d);
                let dg1 = sized(&mut ws.dg1, n * hid);
                ops::matmul_nt_acc(&ws.dx, &p[m.w2.clone()], dg1, n, hid, d);
                for ((g, &z), &th) in dg1.iter_mut().zip(&t.z1).zip(&t.t1) {
                    *g *= ops::gelu_grad_with_tanh(z, th);
                }
                ops::matmul_tn_acc(h2src, &ws.dg1, &mut grad[m.w1.clone()], n, d, hid);
                ops::col_sum_acc(&ws.dg1, &mut grad[m.b1.clone()], hid);
                match &s.ln2 {
                    Some((g, b)) => {
                        let dh2 = sized(&mut ws.dh, n * d);
                        ops::matmul_nt_acc(&ws.dg1, &p[m.w1.clone()], dh2, n, d, hid);
                        let tmp = sized(&mut ws.tmp, d);
                        let (dgg, dbb) = two_mut(grad, g.clone(), b.clone());
                        ops::layer_norm_backward(
                            &ws.dh,
                            &t.ln2_xhat,
                            &t.ln2_rstd,
                            &p[g.clone()],
                            &mut ws.dx,
                            dgg,
                            dbb,
                            tmp,
                            d,
                        );
                    }
                    None => ops::matmul_nt_acc(&ws.dg1, &p[m.w1.clone()], &mut ws.dx, n, d, hid),
                }
            }
            // Attention output projection: x_mid = x_in + a·Wo + bo.
            ops::matmul_tn_acc(&t.a, &ws.dx, &mut grad[s.wo.clone()], n, wq, d);
            if let Some(bo) = &s.bo {
                ops::col_sum_acc(&ws.dx, &mut grad[bo.clone()], d);
            }
            let da = sized(&mut ws.da, n * wq);
            ops::matmul_nt_acc(&ws.dx, &p[s.wo.clone()], da, n, wq, d);
            attention::backward(
                (a.attention, &a.pattern),
                hd,
                n,
                (&t.q, &t.k, &t.v),
                &ws.da,
                &mut ws.dq,
                &mut ws.dk,
                &mut ws.dv,
                &mut ws.attn,
            );
            let (dk, dv) = (&ws.dk[..], &ws.dv[..]);
            let hsrc: &[f32] = if s.ln1.is_some() { &t.h } else { &t.x_in };
            ops::matmul_tn_acc(hsrc, &ws.dq, &mut grad[s.wq.clone()], n, d, wq);
            ops::matmul_tn_acc(hsrc, dk, &mut grad[s.wk.clone()], n, d, wkv);
            ops::matmul_tn_acc(hsrc, dv, &mut grad[s.wv.clone()], n, d, wkv);
            if let (Some(bq), Some(bk), Some(bv)) = (&s.bq, &s.bk, &s.bv) {
                ops::col_sum_acc(&ws.dq, &mut grad[bq.clone()], wq);
                ops::col_sum_acc(dk, &mut grad[bk.clone()], wkv);
                ops::col_sum_acc(dv, &mut grad[bv.clone()], wkv);
            }
            let dh = sized(&mut ws.dh, n * d);
            ops::matmul_nt_acc(&ws.dq, &p[s.wq.clone()], dh, n, d, wq);
            ops::matmul_nt_acc(dk, &p[s.wk.clone()], dh, n, d, wkv);
            ops::matmul_nt_acc(dv, &p[s.wv.clone()], dh, n, d, wkv);
            match &s.ln1 {
                Some((g, b)) => {
                    let tmp = sized(&mut ws.tmp, d);
                    let (dg, db) = two_mut(grad, g.clone(), b.clone());
                    ops::layer_norm_backward(
                        &ws.dh,
                        &t.ln1_xhat,
                        &t.ln1_rstd,
                        &p[g.clone()],
                        &mut ws.dx,
                        dg,
                        db,
                        tmp,
                        d,
                    );
                }
                None => ws.dx.iter_mut().zip(&ws.dh).for_each(|(x, h)| *x += h),
            }
        }
        if let Some((w, b)) = &lay.embed {
            ops::matmul_tn_acc(&ws.u, &ws.dx, &mut grad[w.clone()], n, f, d);
            ops::col_sum_acc(&ws.dx, &mut grad[b.clone()], d);
        }
    }
}

/// Two disjoint mutable sub-slices of `g` (`a` before `b`, as every layout places them).
fn two_mut(
    g: &mut [f32],
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
) -> (&mut [f32], &mut [f32]) {
    let (lo, hi) = g.split_at_mut(b.start);
    (&mut lo[a], &mut hi[..b.end - b.start])
}
