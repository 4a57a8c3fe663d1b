//! The trainable parameter store: one flat `Vec<f32>` laid out tensor by tensor in the
//! order of the docs/model.md table, each tensor named and shaped.
//!
//! Gradients and optimiser moments use the same layout, so AdamW, clipping and the
//! per-window gradient reduction are plain loops over flat vectors.

use std::ops::Range;

use super::config::Architecture;
use super::rng::Rng;

/// What a tensor is, for initialisation and weight decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A weight matrix (decayed by AdamW).
    Weight,
    /// A bias or layer-norm shift (not decayed, initialised to 0).
    Bias,
    /// A layer-norm gain (not decayed, initialised to 1).
    Gain,
}

/// One named tensor of the flat parameter vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// docs/model.md name, e.g. `layers.0.wq`.
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Offset into the flat vector.
    pub offset: usize,
    /// Kind (initialisation and decay).
    pub kind: ParamKind,
}

impl TensorSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its range in the flat vector.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Offsets of one layer's tensors (`None` when the option is off).
#[derive(Debug, Clone)]
pub(crate) struct LayerSlots {
    pub ln1: Option<(Range<usize>, Range<usize>)>,
    pub wq: Range<usize>,
    pub wk: Range<usize>,
    pub wv: Range<usize>,
    pub wo: Range<usize>,
    pub bq: Option<Range<usize>>,
    pub bk: Option<Range<usize>>,
    pub bv: Option<Range<usize>>,
    pub bo: Option<Range<usize>>,
    pub ln2: Option<(Range<usize>, Range<usize>)>,
    pub mlp: Option<MlpSlots>,
}

/// Offsets of one layer's MLP.
#[derive(Debug, Clone)]
pub(crate) struct MlpSlots {
    pub w1: Range<usize>,
    pub b1: Range<usize>,
    pub w2: Range<usize>,
    pub b2: Range<usize>,
}

/// The layout of every trainable tensor of an architecture.
#[derive(Debug, Clone)]
pub struct Layout {
    specs: Vec<TensorSpec>,
    total: usize,
    pub(crate) embed: Option<(Range<usize>, Range<usize>)>,
    pub(crate) layers: Vec<LayerSlots>,
    pub(crate) final_ln: Option<(Range<usize>, Range<usize>)>,
    pub(crate) cls_w: Range<usize>,
    pub(crate) cls_b: Option<Range<usize>>,
}

struct Builder {
    specs: Vec<TensorSpec>,
    total: usize,
}

impl Builder {
    fn add(&mut self, name: String, shape: &[usize], kind: ParamKind) -> Range<usize> {
        let spec = TensorSpec {
            name,
            shape: shape.to_vec(),
            offset: self.total,
            kind,
        };
        let r = spec.range();
        self.total = r.end;
        self.specs.push(spec);
        r
    }

    fn ln(&mut self, prefix: &str, d: usize) -> (Range<usize>, Range<usize>) {
        (
            self.add(format!("{prefix}.g"), &[d], ParamKind::Gain),
            self.add(format!("{prefix}.b"), &[d], ParamKind::Bias),
        )
    }
}

impl Layout {
    /// The layout of `arch` (assumed validated), in docs/model.md table order.
    pub fn new(arch: &Architecture) -> Self {
        let (f, d, h) = (arch.features, arch.d_model, arch.mlp_hidden);
        let (wq, wkv) = (arch.q_heads * arch.head_dim, arch.kv_heads * arch.head_dim);
        let mut b = Builder {
            specs: Vec::new(),
            total: 0,
        };
        let embed = arch.embed.then(|| {
            (
                b.add("embed.w".into(), &[f, d], ParamKind::Weight),
                b.add("embed.b".into(), &[d], ParamKind::Bias),
            )
        });
        let mut layers = Vec::with_capacity(arch.layers);
        for l in 0..arch.layers {
            let p = format!("layers.{l}");
            let ln1 = arch.pre_norm.then(|| b.ln(&format!("{p}.ln1"), d));
            let wqr = b.add(format!("{p}.wq"), &[d, wq], ParamKind::Weight);
            let wkr = b.add(format!("{p}.wk"), &[d, wkv], ParamKind::Weight);
            let wvr = b.add(format!("{p}.wv"), &[d, wkv], ParamKind::Weight);
            let wor = b.add(format!("{p}.wo"), &[wq, d], ParamKind::Weight);
            let bias = |b: &mut Builder, n: &str, len| {
                arch.biases
                    .then(|| b.add(format!("{p}.{n}"), &[len], ParamKind::Bias))
            };
            let bq = bias(&mut b, "bq", wq);
            let bk = bias(&mut b, "bk", wkv);
            let bv = bias(&mut b, "bv", wkv);
            let bo = bias(&mut b, "bo", d);
            let ln2 = (arch.pre_norm && h > 0).then(|| b.ln(&format!("{p}.ln2"), d));
            let mlp = (h > 0).then(|| MlpSlots {
                w1: b.add(format!("{p}.mlp.w1"), &[d, h], ParamKind::Weight),
                b1: b.add(format!("{p}.mlp.b1"), &[h], ParamKind::Bias),
                w2: b.add(format!("{p}.mlp.w2"), &[h, d], ParamKind::Weight),
                b2: b.add(format!("{p}.mlp.b2"), &[d], ParamKind::Bias),
            });
            layers.push(LayerSlots {
                ln1,
                wq: wqr,
                wk: wkr,
                wv: wvr,
                wo: wor,
                bq,
                bk,
                bv,
                bo,
                ln2,
                mlp,
            });
        }
        let final_ln = arch.final_norm.then(|| b.ln("final_ln", d));
        let cls_w = b.add("classifier.w".into(), &[d, arch.classes], ParamKind::Weight);
        let cls_b = arch
            .biases
            .then(|| b.add("classifier.b".into(), &[arch.classes], ParamKind::Bias));
        Self {
            specs: b.specs,
            total: b.total,
            embed,
            layers,
            final_ln,
            cls_w,
            cls_b,
        }
    }

    /// Every trainable tensor, in docs/model.md table order.
    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// Total number of trainable scalars.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The spec named `name`.
    pub fn spec(&self, name: &str) -> Option<&TensorSpec> {
        self.specs.iter().find(|s| s.name == name)
    }

    /// Deterministic initialisation for `seed`: Xavier-uniform projections (`wo`, `mlp.w2`
    /// scaled by `1/√(2L)`), He-normal `mlp.w1`, classifier Xavier·0.1, biases 0, gains 1.
    pub(crate) fn init(&self, arch: &Architecture, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed ^ 0xA37E_4E5D_0000_0001);
        let mut out = vec![0.0f32; self.total];
        let depth = (2.0 * arch.layers as f64).sqrt();
        for s in &self.specs {
            let dst = &mut out[s.range()];
            match s.kind {
                ParamKind::Bias => {}
                ParamKind::Gain => dst.iter_mut().for_each(|x| *x = 1.0),
                ParamKind::Weight => {
                    let (fan_in, fan_out) = (s.shape[0] as f64, s.shape[1] as f64);
                    let xavier = (6.0 / (fan_in + fan_out)).sqrt();
                    let leaf = s.name.rsplit('.').next().unwrap_or("");
                    if leaf == "w1" {
                        let std = (2.0 / fan_in).sqrt();
                        dst.iter_mut()
                            .for_each(|x| *x = (rng.normal() * std) as f32);
                        continue;
                    }
                    let limit = match leaf {
                        "wo" | "w2" => xavier / depth,
                        _ if s.name == "classifier.w" => xavier * 0.1,
                        _ => xavier,
                    };
                    dst.iter_mut()
                        .for_each(|x| *x = ((rng.uniform() * 2.0 - 1.0) * limit) as f32);
                }
            }
        }
        out
    }
}
