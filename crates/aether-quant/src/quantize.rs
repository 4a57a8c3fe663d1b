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

/// LayerNorm epsilon of docs/model.md.
const LN_EPS: f64 = 1e-5;
/// Smallest running standard deviation (docs/model.md step 0).
const RUNNING_NORM_FLOOR: f64 = 1e-3;

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
    /// Per layer: queries.
    pub q: Vec<f32>,
    /// Per layer: keys.
    pub k: Vec<f32>,
    /// Per layer: values.
    pub v: Vec<f32>,
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
        let l = meta.dims.layers;
        Self {
            raw: vec![0.0; meta.dims.input_dim],
            h1: vec![0.0; l],
            q: vec![0.0; l],
            k: vec![0.0; l],
            v: vec![0.0; l],
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
        mx(&mut self.q, &o.q);
        mx(&mut self.k, &o.k);
        mx(&mut self.v, &o.v);
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

fn layer_norm(x: &[f32], g: &[f32], b: &[f32], out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + LN_EPS as f32).sqrt();
    for (((o, xi), gi), bi) in out.iter_mut().zip(x).zip(g).zip(b) {
        *o = (xi - mean) * inv * gi + bi;
    }
}

fn gelu(z: f32) -> f32 {
    0.5 * z * (1.0 + (0.797_884_6 * (z + 0.044_715 * z * z * z)).tanh())
}

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

    /// Logits of one sequence (`n·F` values), recording ranges into `ranges` when given.
    pub fn forward(&self, frames: &[f32], ranges: Option<&mut Ranges>) -> Vec<f32> {
        self.run(frames, ranges, None)
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
        ranges: Option<&mut Ranges>,
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
        let (mut cnt, mut mean, mut m2) = (0u64, vec![0.0f64; f], vec![0.0f64; f]);
        let den: Vec<f64> = (0..dm)
            .map(|i| 10000f64.powf((i & !1) as f64 / dm as f64))
            .collect();
        for t in 0..n {
            let mut u = frames[t * f..(t + 1) * f].to_vec();
            for (mx, v) in loc.raw.iter_mut().zip(&u) {
                *mx = mx.max(v.abs());
            }
            if a.running_norm {
                cnt += 1;
                let nn = cnt as f64;
                for ((x, mu), s2) in u.iter_mut().zip(&mut mean).zip(&mut m2) {
                    let v = f64::from(*x);
                    let delta = v - *mu;
                    *mu += delta / nn;
                    *s2 += delta * (v - *mu);
                    let sd = (*s2 / nn).sqrt().max(RUNNING_NORM_FLOOR);
                    *x = ((v - *mu) / sd) as f32;
                }
            }
            if let (Some(mu), Some(sd)) = (self.get("input.mean"), self.get("input.std")) {
                for ((ui, mi), si) in u.iter_mut().zip(mu).zip(sd) {
                    *ui = (*ui - mi) / si;
                }
            }
            amax(&mut loc.input, &u);
            let row = &mut x[t * dm..(t + 1) * dm];
            match self.get("embed.w") {
                Some(w) => vec_mat(&u, w, self.get("embed.b"), row),
                None => row.copy_from_slice(&u),
            }
            if a.positional == Positional::Sinusoidal {
                for (i, (xi, dn)) in row.iter_mut().zip(&den).enumerate() {
                    let ang = t as f64 / dn;
                    *xi += (if i % 2 == 0 { ang.sin() } else { ang.cos() }) as f32;
                }
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
            amax(&mut loc.q[l], &q);
            amax(&mut loc.k[l], &k);
            amax(&mut loc.v[l], &v);
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
        if let Some(r) = ranges {
            r.merge(&loc);
        }
        logits
    }

    /// Activation ranges over `windows` (each `n·F` values, run as its own sequence).
    pub fn calibrate(&self, windows: &[&[f32]]) -> Ranges {
        let mut r = Ranges::new(&self.meta);
        for w in windows {
            self.forward(w, Some(&mut r));
        }
        r
    }
}

/// Options of [`quantize`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantizeOptions {
    /// Headroom of the residual stream's int16 scale (maximum × this).
    pub residual_headroom: f32,
    /// Headroom of the other int16 points.
    pub headroom: f32,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        Self {
            residual_headroom: 2.0,
            headroom: 1.25,
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
    /// Per layer: queries (i16).
    pub q: Vec<f64>,
    /// Per layer: keys (i8).
    pub k: Vec<f64>,
    /// Per layer: values (i8).
    pub v: Vec<f64>,
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
        let x = scale16(r.residual, o.residual_headroom);
        let l = meta.dims.layers;
        let per = |v: &[f32], on: bool| -> Vec<f64> {
            (0..l)
                .map(|i| if on { scale16(v[i], o.headroom) } else { x })
                .collect()
        };
        let gelu_shift = (0..l)
            .map(|i| {
                let mut s = 0u32;
                while s < MAX_GELU_SHIFT
                    && r.gelu[i] as f64 * 4096.0 * o.headroom as f64 / 2f64.powi(s as i32) > 32767.0
                {
                    s += 1;
                }
                if meta.dims.mlp_hidden > 0 {
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
            q: (0..l).map(|i| scale16(r.q[i], o.headroom)).collect(),
            k: (0..l).map(|i| scale8(r.k[i])).collect(),
            v: (0..l).map(|i| scale8(r.v[i])).collect(),
            h2: per(&r.h2, a.pre_norm && meta.dims.mlp_hidden > 0),
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
    let fr = FloatRef::new(model)?;
    let ranges = fr.calibrate(windows);
    let meta = model.meta;
    let d = &meta.dims;
    for (what, v) in [
        ("input width F", d.input_dim),
        ("model width D", d.d_model),
        ("query width Hq·dh", d.q_heads * d.head_dim),
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
    let s = Scales::from_ranges(&meta, &ranges, opts);
    let qmeta = meta.with_int8(true);
    let get = |name: &str| fr.get(name);
    let mut tensors = Vec::new();
    for spec in qmeta.tensor_specs() {
        let name = spec.name();
        let name = name.as_str();
        let data = match (spec.kind, spec.part) {
            (TensorKind::InputQ, _) => TensorData::I32(input_table(&fr, &ranges, &s)),
            (TensorKind::PosQ, _) => TensorData::I32(pos_table(d.d_model)),
            (TensorKind::Ln1Q, _) => TensorData::I32(ln_table(
                &fr,
                &format!("layers.{}.ln1", spec.layer),
                s.h1[spec.layer],
            )),
            (TensorKind::Ln2Q, _) => TensorData::I32(ln_table(
                &fr,
                &format!("layers.{}.ln2", spec.layer),
                s.h2[spec.layer],
            )),
            (TensorKind::FinalLnQ, _) => TensorData::I32(ln_table(&fr, "final_ln", s.fin)),
            (k, part) => {
                let base = name.strip_suffix(part.suffix()).unwrap_or(name).to_string();
                let w = get(&base).ok_or(QuantError::NotInt8)?;
                let cols = spec_cols(&qmeta, k);
                let (wq, ws) = quantize_weights(w, cols);
                match part {
                    Part::Data => TensorData::I8(wq),
                    Part::Scale => TensorData::F32(ws.iter().map(|&x| x as f32).collect()),
                    Part::Rq => {
                        let (s_in, s_out) = io_scales(&s, k, spec.layer);
                        let bias = bias_of(&fr, &base);
                        TensorData::I32(rq_table(&ws, bias, s_in, s_out))
                    }
                }
            }
        };
        tensors.push(QuantTensor {
            name: name.into(),
            shape: spec.shape.as_slice().to_vec(),
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
    let quant = QuantRecord {
        logit_shift: s.logit_shift,
        ln_eps: (LN_EPS * (d.d_model as f64).powi(2) / (s.x * s.x))
            .round()
            .clamp(1.0, i64::MAX as f64) as u64,
        pe_mult,
        pe_shift,
        layers: (0..l)
            .map(|i| {
                let real = s.q[i] * s.k[i] * log2e * 65536.0 / (d.head_dim as f64).sqrt();
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
                v.extend([s.h1[i], s.q[i], s.k[i], s.v[i], s.h2[i]].map(|x| x as f32));
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
        "int8.scheme".into(),
        "i8 weights per output channel, i16 activations, i8 KV caches (docs/int8.md)".into(),
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

fn spec_cols(meta: &ModelMeta, k: TensorKind) -> usize {
    let d = &meta.dims;
    match k {
        TensorKind::EmbedW | TensorKind::Wo | TensorKind::MlpW2 => d.d_model,
        TensorKind::Wq => d.q_heads * d.head_dim,
        TensorKind::Wk | TensorKind::Wv => d.kv_heads * d.head_dim,
        TensorKind::MlpW1 => d.mlp_hidden,
        _ => d.classes,
    }
}

/// Input and output scale of a matrix's requantisation (`s_in · s_w → s_out`).
fn io_scales(s: &Scales, k: TensorKind, l: usize) -> (f64, f64) {
    match k {
        TensorKind::EmbedW => (s.input, s.x),
        TensorKind::Wq => (s.h1[l], s.q[l]),
        TensorKind::Wk => (s.h1[l], s.k[l]),
        TensorKind::Wv => (s.h1[l], s.v[l]),
        TensorKind::Wo => (s.v[l] / 256.0, s.x),
        TensorKind::MlpW1 => (s.h2[l], 1.0 / 4096.0),
        TensorKind::MlpW2 => (2f64.powi(s.gelu_shift[l] as i32 - 12), s.x),
        _ => (s.fin, 2f64.powi(-(s.logit_shift as i32))),
    }
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

/// Per output column: `scale = max |W[:, o]| / 127` (1 for an all-zero column) and
/// `q = round(W / scale)`.
fn quantize_weights(w: &[f32], cols: usize) -> (Vec<i8>, Vec<f64>) {
    let rows = w.len() / cols.max(1);
    let scales: Vec<f64> = (0..cols)
        .map(|o| {
            let m = (0..rows)
                .map(|i| w[i * cols + o].abs())
                .fold(0.0f32, f32::max) as f64;
            if m > 0.0 {
                m / 127.0
            } else {
                1.0
            }
        })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, &x)| (x as f64 / scales[i % cols]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

fn rq_table(ws: &[f64], bias: Option<&[f32]>, s_in: f64, s_out: f64) -> Vec<i32> {
    let mut t = Vec::with_capacity(3 * ws.len());
    for (o, &sw) in ws.iter().enumerate() {
        let acc_scale = s_in * sw;
        let b = bias.map_or(0.0, |b| b[o] as f64 / acc_scale);
        let (m, s) = quantize_multiplier(acc_scale / s_out);
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
