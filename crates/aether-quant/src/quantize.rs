//! Post-training quantisation (feature `calib`): a float model and calibration windows
//! in, an int8 model (docs/int8.md) and a per-layer error report out.
//!
//! 1. [`FloatRef`] runs the float model (docs/model.md, f32, the arithmetic of
//!    aether-head) over every calibration window and records the largest magnitude at
//!    each activation point ([`Ranges`]).
//! 2. Scales: int16 points get the maximum times a headroom (residual 2×, others 1.25×)
//!    over 32767; the int8 keys and values their maximum over 127; weights per output
//!    channel `max |W[:, o]| / 127`.
//! 3. Every requantisation becomes an i32 multiplier and shift
//!    ([`quantize_multiplier`]), biases are folded into the accumulators, the layer-norm
//!    gains and offsets, the input normalisation, the positional phases, the softmax
//!    exponent and the logit scale become the integer tables of the file.
//! 4. [`error_report`] compares the integer head with the float model, layer by layer.

use std::collections::HashMap;
use std::string::String;
use std::vec::Vec;

use aether_rvne::{
    quant_scale_count, AttentionBackend, LayerQuant, ModelFile, ModelMeta, Part, Pooling,
    Positional, QuantModelFile, QuantRecord, QuantTensor, TensorData, TensorKind, EXP_RANGE,
    MAX_GELU_SHIFT, MAX_LOGIT_SHIFT, SHIFT_RANGE,
};

use crate::error::{QuantError, Result};
use crate::model::{QuantHead, MAX_K};

/// LayerNorm epsilon of docs/model.md, in f64 (`aether_head::math::LN_EPS` is the same
/// decimal value in f32; the integer tables were always derived from the f64 one).
const LN_EPS: f64 = 1e-5;
/// Smallest running standard deviation (docs/model.md step 0; the float head's).
const RUNNING_NORM_FLOOR: f64 = aether_head::RUNNING_NORM_FLOOR;

/// `real ≈ m · 2^−(31 + s)` with `m` an i32 and `s` in −31..=31 (the sign goes to `m`).
/// Zero and non-finite values give `(0, 0)`; values beyond the range saturate.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real == 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let sign = if real < 0.0 { -1 } else { 1 };
    let a = real.abs();
    let mut e = a.log2().floor() as i32 + 1; // a = f·2^e, f in [0.5, 1)
    let mut f = a / 2f64.powi(e);
    if f >= 1.0 {
        f /= 2.0;
        e += 1;
    } else if f < 0.5 {
        f *= 2.0;
        e -= 1;
    }
    let mut m = (f * 2f64.powi(31)).round() as i64;
    if m == 1 << 31 {
        m = 1 << 30;
        e += 1;
    }
    let mut s = -e;
    if s > SHIFT_RANGE.1 {
        s = SHIFT_RANGE.1;
        m = (a * 2f64.powi(31 + s)).round() as i64;
    } else if s < SHIFT_RANGE.0 {
        s = SHIFT_RANGE.0;
        m = i32::MAX as i64;
    }
    ((sign * m) as i32, s)
}

/// The value `(m, s)` stands for.
pub fn multiplier_value(m: i32, s: i32) -> f64 {
    m as f64 * 2f64.powi(-(31 + s))
}

/// Largest magnitude seen at each activation point of the float model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ranges {
    /// Raw input, per feature.
    pub raw: Vec<f32>,
    /// Input stage output (after running and input normalisation).
    pub input: f32,
    /// Residual stream (after the embedding, after every attention and MLP update).
    pub residual: f32,
    /// Per layer: the attention input `h1` (LN1 output).
    pub h1: Vec<f32>,
    /// Per layer, per channel: queries.
    pub q: Vec<Vec<f32>>,
    /// Per layer, per channel: keys.
    pub k: Vec<Vec<f32>>,
    /// Per layer, per channel: values.
    pub v: Vec<Vec<f32>>,
    /// Per layer: the MLP input `h2` (LN2 output).
    pub h2: Vec<f32>,
    /// Per layer: GELU outputs.
    pub gelu: Vec<f32>,
    /// Final rows (final LN output, or the residual).
    pub fin: f32,
    /// Logits.
    pub logits: f32,
    /// Windows observed.
    pub windows: usize,
}

impl Ranges {
    fn new(meta: &ModelMeta) -> Self {
        let d = &meta.dims;
        let l = d.layers;
        let (qw, kw) = (d.q_heads * d.head_dim, d.kv_heads * d.head_dim);
        Self {
            raw: vec![0.0; meta.dims.input_dim],
            h1: vec![0.0; l],
            q: vec![vec![0.0; qw]; l],
            k: vec![vec![0.0; kw]; l],
            v: vec![vec![0.0; kw]; l],
            h2: vec![0.0; l],
            gelu: vec![0.0; l],
            ..Self::default()
        }
    }
}

impl Ranges {
    fn merge(&mut self, o: &Ranges) {
        let mx = |a: &mut [f32], b: &[f32]| a.iter_mut().zip(b).for_each(|(x, y)| *x = x.max(*y));
        mx(&mut self.raw, &o.raw);
        mx(&mut self.h1, &o.h1);
        for l in 0..self.q.len() {
            mx(&mut self.q[l], &o.q[l]);
            mx(&mut self.k[l], &o.k[l]);
            mx(&mut self.v[l], &o.v[l]);
        }
        mx(&mut self.h2, &o.h2);
        mx(&mut self.gelu, &o.gelu);
        self.input = self.input.max(o.input);
        self.residual = self.residual.max(o.residual);
        self.fin = self.fin.max(o.fin);
        self.logits = self.logits.max(o.logits);
        self.windows += 1;
    }
}

fn amax(m: &mut f32, xs: &[f32]) {
    for &x in xs {
        *m = m.max(x.abs());
    }
}

/// Per-channel maxima of rows of width `m.len()`.
fn amax_rows(m: &mut [f32], rows: &[f32]) {
    for row in rows.chunks_exact(m.len().max(1)) {
        for (a, &x) in m.iter_mut().zip(row) {
            *a = a.max(x.abs());
        }
    }
}

/// `Σ xᵀx` over the rows fed to one matrix (the GPTQ Hessian, up to a factor).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gram {
    /// Input width `K`.
    pub k: usize,
    /// `K × K` sums, row-major (upper triangle filled, mirrored on use).
    pub sum: Vec<f64>,
    /// Rows added.
    pub rows: usize,
}

impl Gram {
    fn add(&mut self, x: &[f32]) {
        let k = x.len();
        if self.k == 0 {
            self.k = k;
            self.sum = vec![0.0; k * k];
        }
        for i in 0..k {
            let xi = x[i] as f64;
            if xi == 0.0 {
                continue;
            }
            let row = &mut self.sum[i * k..(i + 1) * k];
            for j in i..k {
                row[j] += xi * x[j] as f64;
            }
        }
        self.rows += 1;
    }

    /// The full symmetric matrix.
    pub fn matrix(&self) -> Vec<f64> {
        let k = self.k;
        let mut m = self.sum.clone();
        for i in 0..k {
            for j in 0..i {
                m[i * k + j] = m[j * k + i];
            }
        }
        m
    }
}

/// What a calibration pass records: activation ranges and, per matrix input, its Gram
/// matrix (keys `input`, `layers.{l}.h1`, `layers.{l}.att`, `layers.{l}.h2`,
/// `layers.{l}.gelu`, `pooled`).
#[derive(Debug, Clone, Default)]
pub struct Observer {
    /// Activation ranges.
    pub ranges: Ranges,
    /// Gram matrices of the matrix inputs.
    pub grams: HashMap<String, Gram>,
}

impl Observer {
    fn rows(&mut self, key: &str, rows: &[f32], width: usize) {
        let g = self.grams.entry(key.to_string()).or_default();
        for r in rows.chunks_exact(width.max(1)) {
            g.add(r);
        }
    }
}

/// The float model of docs/model.md over owned f32 tensors, with the arithmetic of
/// aether-head (f32, f64 running statistics and positional signal), recording
/// activation ranges. Its logits agree with `aether_head::TemporalHead::forward` to float
/// rounding (tested).
#[derive(Debug, Clone)]
pub struct FloatRef {
    meta: ModelMeta,
    t: HashMap<String, Vec<f32>>,
}

/// A float forward's residual after the embedding and after each layer (`[n·D]` each),
/// and its logits.
pub type FloatTrace = (Vec<Vec<f32>>, Vec<f32>);

fn vec_mat(x: &[f32], w: &[f32], b: Option<&[f32]>, out: &mut [f32]) {
    let n = out.len();
    for (o, v) in out.iter_mut().enumerate() {
        *v = b.map_or(0.0, |b| b[o]);
    }
    for (i, xi) in x.iter().enumerate() {
        for (o, v) in out.iter_mut().enumerate() {
            *v += xi * w[i * n + o];
        }
    }
}

// The float head's own primitives, so calibration sees the deployed float activations.
use aether_head::math::{add_positional_with, gelu, layer_norm, positional_steps};

impl FloatRef {
    /// The float reference of `model` (f32 or f16 storage; an int8 model is refused).
    pub fn new(model: &ModelFile) -> Result<Self> {
        model.check_tensors()?;
        let t = model
            .tensors
            .iter()
            .map(|t| (t.name.clone(), t.data.clone()))
            .collect();
        Ok(Self {
            meta: model.meta,
            t,
        })
    }

    /// The model description.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    fn get(&self, name: &str) -> Option<&[f32]> {
        self.t.get(name).map(|v| v.as_slice())
    }

    fn layer(&self, l: usize, s: &str) -> Option<&[f32]> {
        self.get(&format!("layers.{l}.{s}"))
    }

    /// Logits of one sequence (`n·F` values), recording into `obs` when given.
    pub fn forward(&self, frames: &[f32], obs: Option<&mut Observer>) -> Vec<f32> {
        self.run(frames, obs, None)
    }

    /// The residual after the embedding and after each layer, and the logits.
    pub fn trace(&self, frames: &[f32]) -> FloatTrace {
        let mut tr = Vec::new();
        let logits = self.run(frames, None, Some(&mut tr));
        (tr, logits)
    }

    fn run(
        &self,
        frames: &[f32],
        mut obs: Option<&mut Observer>,
        mut trace: Option<&mut Vec<Vec<f32>>>,
    ) -> Vec<f32> {
        let m = &self.meta;
        let d = &m.dims;
        let a = &m.arch;
        let (f, dm) = (d.input_dim, d.d_model);
        let n = frames.len() / f;
        let mut loc = Ranges::new(m);
        // Steps 0–3.
        let mut x = vec![0.0f32; n * dm];
        let mut running = aether_head::RunningNorm::new(f);
        let steps = positional_steps(dm);
        for t in 0..n {
            let mut u = frames[t * f..(t + 1) * f].to_vec();
            for (mx, v) in loc.raw.iter_mut().zip(&u) {
                *mx = mx.max(v.abs());
            }
            if a.running_norm {
                running.apply(&mut u);
            }
            if let (Some(mu), Some(sd)) = (self.get("input.mean"), self.get("input.std")) {
                for ((ui, mi), si) in u.iter_mut().zip(mu).zip(sd) {
                    *ui = (*ui - mi) / si;
                }
            }
            amax(&mut loc.input, &u);
            if let Some(o) = obs.as_deref_mut() {
                o.rows("input", &u, f);
            }
            let row = &mut x[t * dm..(t + 1) * dm];
            match self.get("embed.w") {
                Some(w) => vec_mat(&u, w, self.get("embed.b"), row),
                None => row.copy_from_slice(&u),
            }
            if a.positional == Positional::Sinusoidal {
                add_positional_with(t, &steps, row);
            }
            amax(&mut loc.residual, row);
        }
        if let Some(tr) = trace.as_deref_mut() {
            tr.push(x.clone());
        }
        // Layers.
        let (qw, kw, dh) = (d.q_heads * d.head_dim, d.kv_heads * d.head_dim, d.head_dim);
        let group = d.q_heads / d.kv_heads;
        let pat = aether_kernel::SparsePattern {
            window: m.pattern.window,
            block_size: m.pattern.block_size,
            global_tokens: m.pattern.globals().to_vec(),
            causal: m.pattern.causal,
            log_stride: m.pattern.log_stride,
            landmarks: m.pattern.landmarks,
        };
        for l in 0..d.layers {
            let get = |s: &str| self.layer(l, s);
            let norm = |x: &[f32], which: &str| -> Vec<f32> {
                match (get(&format!("{which}.g")), get(&format!("{which}.b"))) {
                    (Some(g), Some(b)) => {
                        let mut h = vec![0.0; x.len()];
                        layer_norm(x, g, b, &mut h);
                        h
                    }
                    _ => x.to_vec(),
                }
            };
            let mut hs = vec![0.0f32; n * dm];
            let mut q = vec![0.0f32; n * qw];
            let mut k = vec![0.0f32; n * kw];
            let mut v = vec![0.0f32; n * kw];
            for t in 0..n {
                let h = norm(&x[t * dm..(t + 1) * dm], "ln1");
                vec_mat(
                    &h,
                    get("wq").unwrap_or(&[]),
                    get("bq"),
                    &mut q[t * qw..(t + 1) * qw],
                );
                vec_mat(
                    &h,
                    get("wk").unwrap_or(&[]),
                    get("bk"),
                    &mut k[t * kw..(t + 1) * kw],
                );
                vec_mat(
                    &h,
                    get("wv").unwrap_or(&[]),
                    get("bv"),
                    &mut v[t * kw..(t + 1) * kw],
                );
                hs[t * dm..(t + 1) * dm].copy_from_slice(&h);
            }
            amax(&mut loc.h1[l], &hs);
            amax_rows(&mut loc.q[l], &q);
            amax_rows(&mut loc.k[l], &k);
            amax_rows(&mut loc.v[l], &v);
            if let Some(o) = obs.as_deref_mut() {
                o.rows(&format!("layers.{l}.h1"), &hs, dm);
            }
            let sparse = a.attention == AttentionBackend::Sparse;
            let bs = m.pattern.block_size;
            let blocks = if sparse && pat.landmarks {
                n.div_ceil(bs)
            } else {
                0
            };
            let mean_rows = |src: &[f32], b: usize| -> Vec<f32> {
                let (lo, hi) = (b * bs, ((b + 1) * bs).min(n));
                let mut o = vec![0.0f32; kw];
                for t in lo..hi {
                    for (ov, sv) in o.iter_mut().zip(&src[t * kw..(t + 1) * kw]) {
                        *ov += sv;
                    }
                }
                o.iter_mut().for_each(|x| *x /= (hi - lo) as f32);
                o
            };
            let lk: Vec<Vec<f32>> = (0..blocks).map(|b| mean_rows(&k, b)).collect();
            let lv: Vec<Vec<f32>> = (0..blocks).map(|b| mean_rows(&v, b)).collect();
            let scale = 1.0 / (dh as f32).sqrt();
            for t in 0..n {
                let (toks, lms): (Vec<usize>, Vec<usize>) = if sparse {
                    (
                        pat.token_candidates(t, n),
                        if pat.landmarks {
                            pat.landmark_candidates(t, n)
                        } else {
                            vec![]
                        },
                    )
                } else {
                    ((0..if pat.causal { t + 1 } else { n }).collect(), vec![])
                };
                let mut att = vec![0.0f32; qw];
                for hq in 0..d.q_heads {
                    let kh = hq / group;
                    let (lo, hi) = (kh * dh, (kh + 1) * dh);
                    let qh = &q[t * qw + hq * dh..t * qw + (hq + 1) * dh];
                    let keys: Vec<&[f32]> = toks
                        .iter()
                        .map(|&j| &k[j * kw + lo..j * kw + hi])
                        .chain(lms.iter().map(|&b| &lk[b][lo..hi]))
                        .collect();
                    let vals: Vec<&[f32]> = toks
                        .iter()
                        .map(|&j| &v[j * kw + lo..j * kw + hi])
                        .chain(lms.iter().map(|&b| &lv[b][lo..hi]))
                        .collect();
                    let s: Vec<f32> = keys
                        .iter()
                        .map(|kk| qh.iter().zip(*kk).map(|(a, b)| a * b).sum::<f32>() * scale)
                        .collect();
                    let mx = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let p: Vec<f32> = s.iter().map(|x| (x - mx).exp()).collect();
                    let z: f32 = p.iter().sum();
                    let oh = &mut att[hq * dh..(hq + 1) * dh];
                    for (pc, vv) in p.iter().zip(&vals) {
                        for (o, x) in oh.iter_mut().zip(*vv) {
                            *o += pc / z * x;
                        }
                    }
                }
                if let Some(o) = obs.as_deref_mut() {
                    o.rows(&format!("layers.{l}.att"), &att, qw);
                }
                let row = &mut x[t * dm..(t + 1) * dm];
                let mut upd = vec![0.0f32; dm];
                vec_mat(&att, get("wo").unwrap_or(&[]), get("bo"), &mut upd);
                for (xi, ui) in row.iter_mut().zip(&upd) {
                    *xi += ui;
                }
                amax(&mut loc.residual, row);
                if d.mlp_hidden > 0 {
                    let h2 = norm(row, "ln2");
                    amax(&mut loc.h2[l], &h2);
                    let mut hid = vec![0.0f32; d.mlp_hidden];
                    vec_mat(&h2, get("mlp.w1").unwrap_or(&[]), get("mlp.b1"), &mut hid);
                    hid.iter_mut().for_each(|z| *z = gelu(*z));
                    amax(&mut loc.gelu[l], &hid);
                    if let Some(o) = obs.as_deref_mut() {
                        o.rows(&format!("layers.{l}.h2"), &h2, dm);
                        o.rows(&format!("layers.{l}.gelu"), &hid, d.mlp_hidden);
                    }
                    vec_mat(&hid, get("mlp.w2").unwrap_or(&[]), get("mlp.b2"), &mut upd);
                    for (xi, ui) in row.iter_mut().zip(&upd) {
                        *xi += ui;
                    }
                    amax(&mut loc.residual, row);
                }
            }
            if let Some(tr) = trace.as_deref_mut() {
                tr.push(x.clone());
            }
        }
        // Final norm, pooling, classifier.
        let fin = |row: &[f32]| -> Vec<f32> {
            match (self.get("final_ln.g"), self.get("final_ln.b")) {
                (Some(g), Some(b)) => {
                    let mut o = vec![0.0; row.len()];
                    layer_norm(row, g, b, &mut o);
                    o
                }
                _ => row.to_vec(),
            }
        };
        let mut pooled = vec![0.0f32; dm];
        if a.pooling == Pooling::Last {
            pooled = fin(&x[(n - 1) * dm..n * dm]);
            amax(&mut loc.fin, &pooled);
        } else {
            for t in 0..n {
                let f = fin(&x[t * dm..(t + 1) * dm]);
                amax(&mut loc.fin, &f);
                for (p, v) in pooled.iter_mut().zip(&f) {
                    *p += v;
                }
            }
            pooled.iter_mut().for_each(|p| *p /= n as f32);
        }
        let mut logits = vec![0.0f32; d.classes];
        vec_mat(
            &pooled,
            self.get("classifier.w").unwrap_or(&[]),
            self.get("classifier.b"),
            &mut logits,
        );
        amax(&mut loc.logits, &logits);
        if let Some(o) = obs {
            o.rows("pooled", &pooled, dm);
            o.ranges.merge(&loc);
        }
        logits
    }

    /// Activation ranges and input Gram matrices over `windows` (each `n·F` values, run
    /// as its own sequence).
    pub fn calibrate(&self, windows: &[&[f32]]) -> Observer {
        let mut o = Observer {
            ranges: Ranges::new(&self.meta),
            grams: HashMap::new(),
        };
        for w in windows {
            self.forward(w, Some(&mut o));
        }
        o
    }
}

/// Options of [`quantize`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantizeOptions {
    /// Headroom of the residual stream's int16 scale (maximum × this).
    pub residual_headroom: f32,
    /// Headroom of the other int16 points.
    pub headroom: f32,
    /// Round weights with GPTQ (error feedback through the inputs' Gram matrix) instead
    /// of to nearest.
    pub gptq: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self {
            residual_headroom: 2.0,
            headroom: 1.25,
            gptq: true,
        }
    }
}

/// The chosen activation scales (real value per integer unit).
#[derive(Debug, Clone, PartialEq)]
pub struct Scales {
    /// Input stage output (i16).
    pub input: f64,
    /// Residual (i16).
    pub x: f64,
    /// Per layer: attention input (i16; the residual's without pre-norm).
    pub h1: Vec<f64>,
    /// Per layer: the query constant `c`: a query's integer channel `d` is
    /// `q_d · s_k,d / c`, so `q·k = c · Σ q_int·k_int` (the key scales fold into it).
    pub q: Vec<f64>,
    /// Per layer, per channel: keys (i8).
    pub k: Vec<Vec<f64>>,
    /// Per layer, per channel: values (i8).
    pub v: Vec<Vec<f64>>,
    /// Per layer: MLP input (i16).
    pub h2: Vec<f64>,
    /// Per layer: GELU output shift (the `w2` input is Q(12 − shift)).
    pub gelu_shift: Vec<u32>,
    /// Final rows (i16).
    pub fin: f64,
    /// Logits are `q · 2^−logit_shift`.
    pub logit_shift: u32,
}

fn scale16(max: f32, headroom: f32) -> f64 {
    let m = (max as f64 * headroom as f64).max(1e-6);
    m / 32767.0
}

fn scale8(max: f32) -> f64 {
    (max as f64).max(1e-6) / 127.0
}

impl Scales {
    /// Scales from observed ranges.
    pub fn from_ranges(meta: &ModelMeta, r: &Ranges, o: &QuantizeOptions) -> Self {
        let a = &meta.arch;
        let d = &meta.dims;
        let x = scale16(r.residual, o.residual_headroom);
        let l = d.layers;
        let per = |v: &[f32], on: bool| -> Vec<f64> {
            (0..l)
                .map(|i| if on { scale16(v[i], o.headroom) } else { x })
                .collect()
        };
        let k: Vec<Vec<f64>> =
            r.k.iter()
                .map(|c| c.iter().map(|&m| scale8(m)).collect())
                .collect();
        let v: Vec<Vec<f64>> =
            r.v.iter()
                .map(|c| c.iter().map(|&m| scale8(m)).collect())
                .collect();
        let q = (0..l)
            .map(|i| {
                let m = r.q[i]
                    .iter()
                    .enumerate()
                    .map(|(ch, &qm)| qm as f64 * k[i][kv_channel(d, ch)])
                    .fold(0.0f64, f64::max);
                (m * o.headroom as f64).max(1e-12) / 32767.0
            })
            .collect();
        let gelu_shift = (0..l)
            .map(|i| {
                let mut s = 0u32;
                while s < MAX_GELU_SHIFT
                    && r.gelu[i] as f64 * 4096.0 * o.headroom as f64 / 2f64.powi(s as i32) > 32767.0
                {
                    s += 1;
                }
                if d.mlp_hidden > 0 {
                    s
                } else {
                    0
                }
            })
            .collect();
        let mut logit_shift = MAX_LOGIT_SHIFT;
        while logit_shift > 0
            && (r.logits as f64 * 4.0) * 2f64.powi(logit_shift as i32) > 2f64.powi(30)
        {
            logit_shift -= 1;
        }
        Self {
            input: if a.embed {
                scale16(r.input, o.headroom)
            } else {
                x
            },
            x,
            h1: per(&r.h1, a.pre_norm),
            q,
            k,
            v,
            h2: per(&r.h2, a.pre_norm && d.mlp_hidden > 0),
            gelu_shift,
            fin: if a.final_norm {
                scale16(r.fin, o.headroom)
            } else {
                x
            },
            logit_shift,
        }
    }
}

/// The key/value channel a query (or attention output) channel reads.
fn kv_channel(d: &aether_rvne::Dims, ch: usize) -> usize {
    let dh = d.head_dim;
    let group = d.q_heads / d.kv_heads;
    (ch / dh / group) * dh + ch % dh
}

/// A per-layer comparison of the integer head with the float model.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `(point, relative RMS error)`: the residual after the embedding and after each
    /// layer, then the logits (`‖int − float‖ / ‖float‖` over every value).
    pub rows: Vec<(String, f64)>,
    /// Fraction of windows whose argmax agrees.
    pub agreement: f64,
    /// Windows compared.
    pub windows: usize,
}

/// One matrix to quantise: its float weights as the integer path sees them (rows of the
/// output projection scaled by the value channels), the input Gram matrix in the same
/// units, the input scale and the per-output-column output scales.
struct MatJob {
    w: Vec<f64>,
    cols: usize,
    gram: Option<Vec<f64>>,
    s_in: f64,
    s_out: Vec<f64>,
    bias: Option<Vec<f64>>,
}

/// Quantises `model` with activation ranges from `windows`; returns the int8 model and
/// the chosen scales. Refuses an empty calibration set and models beyond [`MAX_K`].
pub fn quantize(
    model: &ModelFile,
    windows: &[&[f32]],
    opts: &QuantizeOptions,
) -> Result<(QuantModelFile, Scales)> {
    if windows.is_empty() {
        return Err(QuantError::Config {
            what: "calibration",
            detail: "no calibration windows",
        });
    }
    let meta = model.meta;
    let d = &meta.dims;
    for (what, v) in [
        ("input width F", d.input_dim),
        ("model width D", d.d_model),
        ("query width Hq·dh", d.q_heads * d.head_dim),
        ("head dimension dh", d.head_dim),
        ("MLP width H", d.mlp_hidden),
    ] {
        if v > MAX_K {
            return Err(QuantError::Unsupported {
                what,
                value: v,
                max: MAX_K,
            });
        }
    }
    let fr = FloatRef::new(model)?;
    let obs = fr.calibrate(windows);
    let s = Scales::from_ranges(&meta, &obs.ranges, opts);
    let qmeta = meta.with_int8(true);
    let mut tensors = Vec::new();
    let mut specs = qmeta.tensor_specs().peekable();
    while let Some(spec) = specs.next() {
        let name = spec.name();
        let name = name.as_str().to_string();
        let shape = |sp: &aether_rvne::TensorSpec| sp.shape.as_slice().to_vec();
        let data = match spec.kind {
            TensorKind::InputQ => TensorData::I32(input_table(&fr, &obs.ranges, &s)),
            TensorKind::PosQ => TensorData::I32(pos_table(d.d_model)),
            TensorKind::Ln1Q => TensorData::I32(ln_table(
                &fr,
                &format!("layers.{}.ln1", spec.layer),
                s.h1[spec.layer],
            )),
            TensorKind::Ln2Q => TensorData::I32(ln_table(
                &fr,
                &format!("layers.{}.ln2", spec.layer),
                s.h2[spec.layer],
            )),
            TensorKind::FinalLnQ => TensorData::I32(ln_table(&fr, "final_ln", s.fin)),
            k => {
                // A matrix: its data, scale and rq come next in canonical order.
                debug_assert_eq!(spec.part, Part::Data);
                let job = mat_job(&fr, &obs, &s, k, spec.layer, &name)?;
                let (q, ws) = quantize_matrix(&job, opts.gptq);
                let rq = rq_table(&ws, job.bias.as_deref(), job.s_in, &job.s_out);
                tensors.push(QuantTensor {
                    name: name.clone(),
                    shape: shape(&spec),
                    data: TensorData::I8(q),
                });
                for (part, data) in [
                    (
                        Part::Scale,
                        TensorData::F32(ws.iter().map(|&x| x as f32).collect()),
                    ),
                    (Part::Rq, TensorData::I32(rq)),
                ] {
                    let sp = specs.next().ok_or(QuantError::NotInt8)?;
                    debug_assert_eq!(sp.part, part);
                    tensors.push(QuantTensor {
                        name: sp.name().as_str().into(),
                        shape: shape(&sp),
                        data,
                    });
                }
                continue;
            }
        };
        tensors.push(QuantTensor {
            name,
            shape: shape(&spec),
            data,
        });
    }
    let l = d.layers;
    let log2e = std::f64::consts::LOG2_E;
    let (pe_mult, pe_shift) = if meta.arch.positional == Positional::Sinusoidal {
        quantize_multiplier(1.0 / (32767.0 * s.x))
    } else {
        (0, 0)
    };
    let maxf = |v: &[f64]| v.iter().cloned().fold(0.0f64, f64::max);
    let quant = QuantRecord {
        logit_shift: s.logit_shift,
        ln_eps: (LN_EPS * (d.d_model as f64).powi(2) / (s.x * s.x))
            .round()
            .clamp(1.0, i64::MAX as f64) as u64,
        pe_mult,
        pe_shift,
        layers: (0..l)
            .map(|i| {
                let real = s.q[i] * log2e * 65536.0 / (d.head_dim as f64).sqrt();
                let (mut m, mut sh) = quantize_multiplier(real);
                if m <= 0 {
                    (m, sh) = (1, SHIFT_RANGE.1);
                }
                LayerQuant {
                    att_mult: m,
                    att_shift: sh,
                    gelu_shift: s.gelu_shift[i],
                }
            })
            .collect(),
        scales: {
            let mut v = vec![s.input as f32, s.x as f32];
            for i in 0..l {
                v.extend(
                    [s.h1[i], s.q[i], maxf(&s.k[i]), maxf(&s.v[i]), s.h2[i]].map(|x| x as f32),
                );
            }
            v.push(s.fin as f32);
            debug_assert_eq!(v.len(), quant_scale_count(l));
            v
        },
    };
    let mut metadata = model.metadata.clone();
    metadata.retain(|(k, _)| !k.starts_with("int8."));
    metadata.push(("int8.calibration_windows".into(), windows.len().to_string()));
    metadata.push((
        "int8.rounding".into(),
        if opts.gptq { "gptq" } else { "nearest" }.into(),
    ));
    let q = QuantModelFile {
        meta: qmeta,
        class_names: model.class_names.clone(),
        feature_names: model.feature_names.clone(),
        metadata,
        quant,
        tensors,
    };
    q.check_tensors()?;
    Ok((q, s))
}

/// The quantisation job of matrix `name` (kind `k`, layer `l`).
fn mat_job(
    fr: &FloatRef,
    obs: &Observer,
    s: &Scales,
    k: TensorKind,
    l: usize,
    name: &str,
) -> Result<MatJob> {
    let d = &fr.meta().dims;
    let w = fr.get(name).ok_or(QuantError::NotInt8)?;
    let mut w: Vec<f64> = w.iter().map(|&x| x as f64).collect();
    let bias = bias_of(fr, name).map(|b| b.iter().map(|&x| x as f64).collect());
    let gram = |key: &str| obs.grams.get(key).filter(|g| g.rows > 0).map(Gram::matrix);
    let (cols, mut g, s_in, s_out) = match k {
        TensorKind::EmbedW => (d.d_model, gram("input"), s.input, vec![s.x; d.d_model]),
        TensorKind::Wq => {
            let qw = d.q_heads * d.head_dim;
            let out = (0..qw).map(|c| s.q[l] / s.k[l][kv_channel(d, c)]).collect();
            (qw, gram(&format!("layers.{l}.h1")), s.h1[l], out)
        }
        TensorKind::Wk => (
            s.k[l].len(),
            gram(&format!("layers.{l}.h1")),
            s.h1[l],
            s.k[l].clone(),
        ),
        TensorKind::Wv => (
            s.v[l].len(),
            gram(&format!("layers.{l}.h1")),
            s.h1[l],
            s.v[l].clone(),
        ),
        TensorKind::Wo => (
            d.d_model,
            gram(&format!("layers.{l}.att")),
            1.0,
            vec![s.x; d.d_model],
        ),
        TensorKind::MlpW1 => (
            d.mlp_hidden,
            gram(&format!("layers.{l}.h2")),
            s.h2[l],
            vec![1.0 / 4096.0; d.mlp_hidden],
        ),
        TensorKind::MlpW2 => (
            d.d_model,
            gram(&format!("layers.{l}.gelu")),
            2f64.powi(s.gelu_shift[l] as i32 - 12),
            vec![s.x; d.d_model],
        ),
        _ => (
            d.classes,
            gram("pooled"),
            s.fin,
            vec![2f64.powi(-(s.logit_shift as i32)); d.classes],
        ),
    };
    if k == TensorKind::Wo {
        // The attention output's integer channel c is att_c · 256 / s_v(c): fold the
        // value scales into Wo's rows (and its inputs' Gram matrix).
        let kk = w.len() / cols;
        let dv: Vec<f64> = (0..kk).map(|c| s.v[l][kv_channel(d, c)] / 256.0).collect();
        for (c, row) in w.chunks_exact_mut(cols).enumerate() {
            row.iter_mut().for_each(|x| *x *= dv[c]);
        }
        if let Some(gm) = g.as_mut() {
            for i in 0..kk {
                for j in 0..kk {
                    gm[i * kk + j] /= dv[i] * dv[j];
                }
            }
        }
    }
    Ok(MatJob {
        w,
        cols,
        gram: g,
        s_in,
        s_out,
        bias,
    })
}

fn bias_of<'a>(fr: &'a FloatRef, matrix: &str) -> Option<&'a [f32]> {
    let name = match matrix {
        "embed.w" => "embed.b".to_string(),
        "classifier.w" => "classifier.b".to_string(),
        m => {
            let (prefix, last) = m.rsplit_once('.')?;
            let b = match last {
                "wq" => "bq",
                "wk" => "bk",
                "wv" => "bv",
                "wo" => "bo",
                "w1" => "b1",
                "w2" => "b2",
                _ => return None,
            };
            format!("{prefix}.{b}")
        }
    };
    fr.get(&name)
}

/// Cholesky factor `L` (lower, `A = L·Lᵀ`) of a symmetric positive definite `n × n`
/// matrix; `None` when it is not.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if sum <= 0.0 {
                    return None;
                }
                l[i * n + i] = sum.sqrt();
            } else {
                l[i * n + j] = sum / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// `A⁻¹` from its Cholesky factor.
fn spd_inverse(l: &[f64], n: usize) -> Vec<f64> {
    // L⁻¹ by forward substitution, then A⁻¹ = L⁻ᵀ L⁻¹.
    let mut li = vec![0.0; n * n];
    for i in 0..n {
        li[i * n + i] = 1.0 / l[i * n + i];
        for j in 0..i {
            let mut sum = 0.0;
            for k in j..i {
                sum += l[i * n + k] * li[k * n + j];
            }
            li[i * n + j] = -sum / l[i * n + i];
        }
    }
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut sum = 0.0;
            for k in i..n {
                sum += li[k * n + i] * li[k * n + j];
            }
            inv[i * n + j] = sum;
            inv[j * n + i] = sum;
        }
    }
    inv
}

/// Per output column: `scale = max |W[:, o]| / 127` (1 for an all-zero column); then the
/// int8 matrix by GPTQ (rows in order, each rounding error spread over the later rows
/// through the upper Cholesky factor of the damped inverse Gram matrix, which minimises
/// `‖X·W − X·Q‖` over the calibration inputs `X`) or round-to-nearest.
fn quantize_matrix(job: &MatJob, gptq: bool) -> (Vec<i8>, Vec<f64>) {
    let cols = job.cols.max(1);
    let rows = job.w.len() / cols;
    let scales: Vec<f64> = (0..cols)
        .map(|o| {
            let m = (0..rows)
                .map(|i| job.w[i * cols + o].abs())
                .fold(0.0f64, f64::max);
            if m > 0.0 {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    let round = |x: f64, s: f64| (x / s).round().clamp(-127.0, 127.0);
    let mut w = job.w.clone();
    let mut q = vec![0i8; w.len()];
    let upper = match (&job.gram, gptq) {
        (Some(g), true) if g.len() == rows * rows => {
            let mut h = g.clone();
            let mean_diag = (0..rows).map(|i| h[i * rows + i]).sum::<f64>() / rows as f64;
            let damp = 0.01 * mean_diag.max(1e-12);
            for i in 0..rows {
                h[i * rows + i] += damp;
            }
            cholesky(&h, rows).and_then(|l| {
                let inv = spd_inverse(&l, rows);
                // upper factor U of inv (inv = Uᵀ·U) = transpose of the lower factor of
                // the reversed matrix; computed directly row by row.
                cholesky_upper(&inv, rows)
            })
        }
        _ => None,
    };
    for i in 0..rows {
        for o in 0..cols {
            let x = w[i * cols + o];
            let qq = round(x, scales[o]);
            q[i * cols + o] = qq as i8;
            if let Some(u) = &upper {
                let err = (x - qq * scales[o]) / u[i * rows + i];
                for j in i + 1..rows {
                    w[j * cols + o] -= err * u[i * rows + j];
                }
            }
        }
    }
    (q, scales)
}

/// Upper Cholesky factor `U` (`A = Uᵀ·U`) of a symmetric positive definite matrix.
fn cholesky_upper(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut u = vec![0.0; n * n];
    for i in 0..n {
        let mut d = a[i * n + i];
        for k in 0..i {
            d -= u[k * n + i] * u[k * n + i];
        }
        if d <= 0.0 {
            return None;
        }
        let di = d.sqrt();
        u[i * n + i] = di;
        for j in i + 1..n {
            let mut sum = a[i * n + j];
            for k in 0..i {
                sum -= u[k * n + i] * u[k * n + j];
            }
            u[i * n + j] = sum / di;
        }
    }
    Some(u)
}

fn rq_table(ws: &[f64], bias: Option<&[f64]>, s_in: f64, s_out: &[f64]) -> Vec<i32> {
    let mut t = Vec::with_capacity(3 * ws.len());
    for (o, &sw) in ws.iter().enumerate() {
        let acc_scale = s_in * sw;
        let b = bias.map_or(0.0, |b| b[o] / acc_scale);
        let (m, s) = quantize_multiplier(acc_scale / s_out[o]);
        t.extend([
            b.round().clamp(-(i32::MAX as f64), i32::MAX as f64) as i32,
            m,
            s,
        ]);
    }
    t
}

fn ln_table(fr: &FloatRef, prefix: &str, s_out: f64) -> Vec<i32> {
    let g = fr.get(&format!("{prefix}.g")).unwrap_or(&[]);
    let b = fr.get(&format!("{prefix}.b")).unwrap_or(&[]);
    let mut t = Vec::with_capacity(3 * g.len());
    for (gi, bi) in g.iter().zip(b) {
        let (m, s) = quantize_multiplier(*gi as f64 / (65536.0 * s_out));
        let off = (*bi as f64 / s_out)
            .round()
            .clamp(-(i32::MAX as f64), i32::MAX as f64);
        t.extend([m, s, off as i32]);
    }
    t
}

fn pos_table(dm: usize) -> Vec<i32> {
    let mut t = Vec::with_capacity(2 * dm);
    for i in 0..dm {
        let omega = 1.0 / 10000f64.powf((i & !1) as f64 / dm as f64);
        let turns = omega / (2.0 * std::f64::consts::PI) * 4294967296.0;
        let om = (turns.round() as u64 % (1u64 << 32)) as u32;
        let phase: u32 = if i % 2 == 0 { 0 } else { 1 << 30 };
        t.extend([om as i32, phase as i32]);
    }
    t
}

fn input_table(fr: &FloatRef, r: &Ranges, s: &Scales) -> Vec<i32> {
    let m = fr.meta();
    let rn = m.arch.running_norm;
    let f = m.dims.input_dim;
    let mean = fr.get("input.mean");
    let std = fr.get("input.std");
    let mut t = Vec::with_capacity(5 * f);
    for c in 0..f {
        let mx = r.raw[c] as f64;
        let target = if rn { 16 } else { 20 };
        let e = if mx > 0.0 {
            (target - mx.log2().ceil() as i32).clamp(EXP_RANGE.0, EXP_RANGE.1)
        } else {
            0
        };
        let (mu, sd) = match (mean, std) {
            (Some(mu), Some(sd)) => (mu[c] as f64, sd[c] as f64),
            _ => (0.0, 1.0),
        };
        // v is u·2^e (or z·2^16 with running norm); u_norm = (u − mu)/sd.
        let unit = if rn { 65536.0 } else { 2f64.powi(e) };
        let (mult, shift) = quantize_multiplier(1.0 / (sd * s.input * unit));
        let offset = (-mu / sd / s.input)
            .round()
            .clamp(-(i32::MAX as f64), i32::MAX as f64) as i32;
        let floor = if rn {
            (RUNNING_NORM_FLOOR * 2f64.powi(e) * 256.0)
                .round()
                .clamp(1.0, i32::MAX as f64) as i32
        } else {
            0
        };
        t.extend([e, mult, shift, offset, floor]);
    }
    t
}

/// Compares the integer head with the float model on `windows`.
pub fn error_report(fr: &FloatRef, q: &QuantHead<'_>, windows: &[&[f32]]) -> Result<Report> {
    let l = fr.meta().dims.layers;
    let sx = q.activation_scales().get(1).copied().unwrap_or(1.0) as f64;
    let mut num = vec![0.0f64; l + 2];
    let mut den = vec![0.0f64; l + 2];
    let mut agree = 0usize;
    for w in windows {
        let (ftr, flog) = fr.trace(w);
        let (itr, ilog) = q.trace(w)?;
        for (p, (fx, ix)) in ftr.iter().zip(&itr).enumerate() {
            for (a, b) in fx.iter().zip(ix) {
                let e = *a as f64 - *b as f64 * sx;
                num[p] += e * e;
                den[p] += (*a as f64) * (*a as f64);
            }
        }
        let mut il = vec![0.0f32; ilog.len()];
        q.logits_to_f32(&ilog, &mut il);
        for (a, b) in flog.iter().zip(&il) {
            num[l + 1] += ((a - b) as f64).powi(2);
            den[l + 1] += (*a as f64).powi(2);
        }
        let am = |v: &[f32]| {
            v.iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &x)| if x > b.1 { (i, x) } else { b },
                )
                .0
        };
        agree += usize::from(am(&flog) == am(&il));
    }
    let mut rows = vec![("residual after embedding".to_string(), 0.0)];
    for i in 0..l {
        rows.push((format!("residual after layer {i}"), 0.0));
    }
    rows.push(("logits".to_string(), 0.0));
    for (i, r) in rows.iter_mut().enumerate() {
        r.1 = if den[i] > 0.0 {
            (num[i] / den[i]).sqrt()
        } else {
            0.0
        };
    }
    Ok(Report {
        rows,
        agreement: agree as f64 / windows.len().max(1) as f64,
        windows: windows.len(),
    })
}
