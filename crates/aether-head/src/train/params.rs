//! The trainable parameter store: one flat `Vec<f32>` laid out tensor by tensor in the
//! order of the docs/model.md table, each tensor named and shaped.
//!
//! Gradients and optimiser moments use the same layout, so AdamW, clipping and the
//! per-window gradient reduction are plain loops over flat vectors.

use std::ops::Range;

use aether_rvne::{Role, TensorKind};

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

/// The ranges of one layer's (or the model's non-layer) tensors while a layout is built.
#[derive(Default)]
struct SlotsOf(Vec<(TensorKind, Range<usize>)>);

impl SlotsOf {
    fn insert(&mut self, k: TensorKind, r: Range<usize>) {
        self.0.push((k, r));
    }

    fn take(&mut self, k: TensorKind) -> Option<Range<usize>> {
        let i = self.0.iter().position(|(x, _)| *x == k)?;
        Some(self.0.swap_remove(i).1)
    }

    fn pair(&mut self, a: TensorKind, b: TensorKind) -> Option<(Range<usize>, Range<usize>)> {
        Some((self.take(a)?, self.take(b)?))
    }

    /// The slots of one layer; the catalogue guarantees the projections exist.
    fn layer(&mut self) -> LayerSlots {
        use TensorKind::*;
        LayerSlots {
            ln1: self.pair(Ln1G, Ln1B),
            wq: self.take(Wq).unwrap_or_default(),
            wk: self.take(Wk).unwrap_or_default(),
            wv: self.take(Wv).unwrap_or_default(),
            wo: self.take(Wo).unwrap_or_default(),
            bq: self.take(Bq),
            bk: self.take(Bk),
            bv: self.take(Bv),
            bo: self.take(Bo),
            ln2: self.pair(Ln2G, Ln2B),
            mlp: (|| {
                Some(MlpSlots {
                    w1: self.take(MlpW1)?,
                    b1: self.take(MlpB1)?,
                    w2: self.take(MlpW2)?,
                    b2: self.take(MlpB2)?,
                })
            })(),
        }
    }
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

impl Layout {
    /// The layout of `arch` (assumed validated): every trainable tensor of the model
    /// catalogue ([`Architecture::tensor_specs`]) in its order, input statistics left out.
    pub fn new(arch: &Architecture) -> Self {
        let mut specs = Vec::new();
        let mut total = 0usize;
        let mut layers: Vec<SlotsOf> = (0..arch.layers).map(|_| SlotsOf::default()).collect();
        let mut top = SlotsOf::default();
        for t in arch.tensor_specs() {
            let kind = match t.role() {
                Role::Weight => ParamKind::Weight,
                Role::Bias => ParamKind::Bias,
                Role::Gain => ParamKind::Gain,
                Role::Statistic | Role::Quant => continue,
            };
            let spec = TensorSpec {
                name: t.name().as_str().into(),
                shape: t.shape.as_slice().to_vec(),
                offset: total,
                kind,
            };
            let r = spec.range();
            total = r.end;
            specs.push(spec);
            let slots = if t.kind.is_layer() {
                &mut layers[t.layer]
            } else {
                &mut top
            };
            slots.insert(t.kind, r);
        }
        let layers = layers.into_iter().map(|mut s| s.layer()).collect();
        Self {
            specs,
            total,
            embed: top.pair(TensorKind::EmbedW, TensorKind::EmbedB),
            layers,
            final_ln: top.pair(TensorKind::FinalLnG, TensorKind::FinalLnB),
            cls_w: top.take(TensorKind::ClassifierW).unwrap_or_default(),
            cls_b: top.take(TensorKind::ClassifierB),
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
