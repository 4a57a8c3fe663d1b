//! The weights of a head, borrowed from a blob when possible (`Cow`), owned otherwise.
//!
//! Shapes follow docs/model.md: every matrix is row-major `[in × out]` and multiplies
//! from the right (`x·W`). [`Weights::from_lookup`] checks every tensor's length and
//! that every value is finite before a model can use it.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use aether_rvne::TensorKind;

use crate::config::HeadConfig;
use crate::error::{HeadError, Result};

/// One weight tensor: a slice borrowed from the blob (zero-copy) or an owned copy.
pub type Param<'a> = Cow<'a, [f32]>;

/// A LayerNorm's gain and bias, `[D]` each.
#[derive(Debug, Clone, PartialEq)]
pub struct Norm<'a> {
    /// Gain `g`.
    pub g: Param<'a>,
    /// Bias `b`.
    pub b: Param<'a>,
}

/// The MLP block of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp<'a> {
    /// `[D × H]`.
    pub w1: Param<'a>,
    /// `[H]`.
    pub b1: Param<'a>,
    /// `[H × D]`.
    pub w2: Param<'a>,
    /// `[D]`.
    pub b2: Param<'a>,
}

/// The weights of one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights<'a> {
    /// Pre-attention LayerNorm (`pre_norm`).
    pub ln1: Option<Norm<'a>>,
    /// `[D × Hq·dh]`.
    pub wq: Param<'a>,
    /// `[D × Hkv·dh]`.
    pub wk: Param<'a>,
    /// `[D × Hkv·dh]`.
    pub wv: Param<'a>,
    /// `[Hq·dh × D]`.
    pub wo: Param<'a>,
    /// `[Hq·dh]` (`biases`).
    pub bq: Option<Param<'a>>,
    /// `[Hkv·dh]` (`biases`).
    pub bk: Option<Param<'a>>,
    /// `[Hkv·dh]` (`biases`).
    pub bv: Option<Param<'a>>,
    /// `[D]` (`biases`).
    pub bo: Option<Param<'a>>,
    /// Pre-MLP LayerNorm (`pre_norm` and an MLP).
    pub ln2: Option<Norm<'a>>,
    /// The MLP (`mlp_hidden > 0`).
    pub mlp: Option<Mlp<'a>>,
}

/// All weights of a head.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights<'a> {
    /// Per-feature `input.mean`, `input.std` (`input_norm`).
    pub input_mean: Option<Param<'a>>,
    /// Per-feature standard deviation (`input_norm`), all positive.
    pub input_std: Option<Param<'a>>,
    /// `embed.w [F × D]` (`embed`).
    pub embed_w: Option<Param<'a>>,
    /// `embed.b [D]` (`embed`).
    pub embed_b: Option<Param<'a>>,
    /// One entry per layer.
    pub layers: Vec<LayerWeights<'a>>,
    /// Final LayerNorm (`final_norm`).
    pub final_ln: Option<Norm<'a>>,
    /// `classifier.w [D × C]`.
    pub classifier_w: Param<'a>,
    /// `classifier.b [C]` (`biases`).
    pub classifier_b: Option<Param<'a>>,
}

fn check<'p>(name: &str, p: Param<'p>, expected: usize) -> Result<Param<'p>> {
    if p.len() != expected {
        return Err(HeadError::TensorShape {
            name: name.into(),
            expected,
            got: p.len(),
        });
    }
    if let Some(index) = p.iter().position(|x| !x.is_finite()) {
        return Err(HeadError::NonFiniteWeight {
            name: name.into(),
            index,
        });
    }
    Ok(p)
}

/// Tensors found while weights are built, by catalogue entry.
struct Found<'a>(Vec<(TensorKind, usize, Param<'a>)>);

/// The allocator refused a small table of `what` (its size is bounded by the config).
fn no_memory(what: &'static str) -> HeadError {
    HeadError::NoMemory { what, bytes: None }
}

impl<'a> Found<'a> {
    fn take(&mut self, kind: TensorKind, layer: usize) -> Option<Param<'a>> {
        let i = self
            .0
            .iter()
            .position(|(k, l, _)| *k == kind && *l == layer)?;
        Some(self.0.swap_remove(i).2)
    }

    fn norm(&mut self, g: TensorKind, b: TensorKind, layer: usize) -> Option<Norm<'a>> {
        Some(Norm {
            g: self.take(g, layer)?,
            b: self.take(b, layer)?,
        })
    }

    /// A tensor the catalogue always lists (its absence was reported while looking up).
    fn required(&mut self, kind: TensorKind, layer: usize) -> Result<Param<'a>> {
        self.take(kind, layer)
            .ok_or_else(|| HeadError::MissingTensor {
                name: kind.suffix().into(),
            })
    }
}

impl<'a> Weights<'a> {
    /// Builds the weights of `cfg` by name: `lookup(name)` returns the tensor named in
    /// docs/model.md, or `None` when absent. Every tensor of the catalogue
    /// ([`HeadConfig::tensor_specs`]) is looked up in order; lengths, finiteness and the
    /// positivity of `input.std` are checked.
    pub fn from_lookup(
        cfg: &HeadConfig,
        mut lookup: impl FnMut(&str) -> Result<Option<Param<'a>>>,
    ) -> Result<Self> {
        cfg.validate()?;
        let mut found = Found(Vec::new());
        found
            .0
            .try_reserve_exact(cfg.tensor_specs().count())
            .map_err(|_| no_memory("the weight table"))?;
        for t in cfg.tensor_specs() {
            let name = t.name();
            let name = name.as_str();
            let expected = t.numel().ok_or_else(|| HeadError::Config {
                what: "dimensions",
                detail: format!("size of {name} overflows"),
            })?;
            let p = lookup(name)?.ok_or_else(|| HeadError::MissingTensor { name: name.into() })?;
            let p = check(name, p, expected)?;
            if t.kind == TensorKind::InputStd {
                if let Some(i) = p.iter().position(|&x| x <= 0.0) {
                    return Err(HeadError::Config {
                        what: "input.std",
                        detail: format!("element {i} is {} (must be positive)", p[i]),
                    });
                }
            }
            found.0.push((t.kind, t.layer, p));
        }
        use TensorKind::*;
        let f = &mut found;
        let mut layers = Vec::new();
        layers
            .try_reserve_exact(cfg.layers)
            .map_err(|_| no_memory("the layer table"))?;
        for l in 0..cfg.layers {
            layers.push(LayerWeights {
                ln1: f.norm(Ln1G, Ln1B, l),
                wq: f.required(Wq, l)?,
                wk: f.required(Wk, l)?,
                wv: f.required(Wv, l)?,
                wo: f.required(Wo, l)?,
                bq: f.take(Bq, l),
                bk: f.take(Bk, l),
                bv: f.take(Bv, l),
                bo: f.take(Bo, l),
                ln2: f.norm(Ln2G, Ln2B, l),
                mlp: (|| {
                    Some(Mlp {
                        w1: f.take(MlpW1, l)?,
                        b1: f.take(MlpB1, l)?,
                        w2: f.take(MlpW2, l)?,
                        b2: f.take(MlpB2, l)?,
                    })
                })(),
            });
        }
        Ok(Weights {
            input_mean: f.take(InputMean, 0),
            input_std: f.take(InputStd, 0),
            embed_w: f.take(EmbedW, 0),
            embed_b: f.take(EmbedB, 0),
            layers,
            final_ln: f.norm(FinalLnG, FinalLnB, 0),
            classifier_w: f.required(ClassifierW, 0)?,
            classifier_b: f.take(ClassifierB, 0),
        })
    }

    /// The tensor of one catalogue entry (`layer` is ignored for non-layer tensors), or
    /// `None` when these weights do not have it.
    pub fn tensor(&self, kind: TensorKind, layer: usize) -> Option<&Param<'a>> {
        use TensorKind::*;
        if kind.is_layer() {
            let lw = self.layers.get(layer)?;
            let mlp = lw.mlp.as_ref();
            return match kind {
                Ln1G => lw.ln1.as_ref().map(|n| &n.g),
                Ln1B => lw.ln1.as_ref().map(|n| &n.b),
                Wq => Some(&lw.wq),
                Wk => Some(&lw.wk),
                Wv => Some(&lw.wv),
                Wo => Some(&lw.wo),
                Bq => lw.bq.as_ref(),
                Bk => lw.bk.as_ref(),
                Bv => lw.bv.as_ref(),
                Bo => lw.bo.as_ref(),
                Ln2G => lw.ln2.as_ref().map(|n| &n.g),
                Ln2B => lw.ln2.as_ref().map(|n| &n.b),
                MlpW1 => mlp.map(|m| &m.w1),
                MlpB1 => mlp.map(|m| &m.b1),
                MlpW2 => mlp.map(|m| &m.w2),
                MlpB2 => mlp.map(|m| &m.b2),
                _ => None,
            };
        }
        match kind {
            InputMean => self.input_mean.as_ref(),
            InputStd => self.input_std.as_ref(),
            EmbedW => self.embed_w.as_ref(),
            EmbedB => self.embed_b.as_ref(),
            FinalLnG => self.final_ln.as_ref().map(|n| &n.g),
            FinalLnB => self.final_ln.as_ref().map(|n| &n.b),
            ClassifierW => Some(&self.classifier_w),
            ClassifierB => self.classifier_b.as_ref(),
            _ => None,
        }
    }

    /// How many tensors these weights hold (no allocation).
    pub fn count(&self) -> usize {
        let pre = TensorKind::FLOAT_PRE
            .into_iter()
            .chain(TensorKind::FLOAT_POST);
        let layer = |l| {
            TensorKind::FLOAT_LAYER
                .into_iter()
                .filter(move |&k| self.tensor(k, l).is_some())
                .count()
        };
        pre.filter(|&k| self.tensor(k, 0).is_some()).count()
            + (0..self.layers.len()).map(layer).sum::<usize>()
    }

    /// Every tensor these weights hold as `(kind, layer, values)`, in canonical order.
    fn params(&self) -> Vec<(TensorKind, usize, &Param<'a>)> {
        let mut out = Vec::new();
        let mut push = |k: TensorKind, l: usize| {
            if let Some(p) = self.tensor(k, l) {
                out.push((k, l, p));
            }
        };
        TensorKind::FLOAT_PRE.into_iter().for_each(|k| push(k, 0));
        for l in 0..self.layers.len() {
            TensorKind::FLOAT_LAYER.into_iter().for_each(|k| push(k, l));
        }
        TensorKind::FLOAT_POST.into_iter().for_each(|k| push(k, 0));
        out
    }

    /// Splits one flat buffer holding every tensor of `cfg` in [`HeadConfig::tensor_specs`]
    /// order (for a v1 config: the v1 weight order). Borrows from `flat`.
    pub fn from_flat(cfg: &HeadConfig, flat: &'a [f32]) -> Result<Self> {
        cfg.validate()?;
        let total = cfg.num_weights().ok_or_else(|| HeadError::Config {
            what: "dimensions",
            detail: "weight count overflows".into(),
        })?;
        if flat.len() != total {
            return Err(HeadError::TensorShape {
                name: "<all weights>".into(),
                expected: total,
                got: flat.len(),
            });
        }
        let mut offsets = Vec::new();
        let mut off = 0usize;
        for (name, n) in cfg.tensor_shapes() {
            let n = n.unwrap_or(0);
            offsets.push((name, off, n));
            off += n;
        }
        Self::from_lookup(cfg, |name| {
            Ok(offsets
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|&(_, o, len)| Cow::Borrowed(&flat[o..o + len])))
        })
    }

    /// Every tensor as `(name, values)` in [`HeadConfig::tensor_specs`] order.
    pub fn named(&self) -> Vec<(String, &[f32])> {
        self.params()
            .into_iter()
            .map(|(k, l, p)| {
                let name = if k.is_layer() {
                    format!("layers.{l}.{}", k.suffix())
                } else {
                    k.suffix().into()
                };
                (name, &p[..])
            })
            .collect()
    }

    /// Bytes of weights this model owns (copied out of the blob); borrowed ones cost nothing.
    pub fn owned_bytes(&self) -> usize {
        self.params()
            .iter()
            .filter(|(_, _, p)| matches!(p, Cow::Owned(_)))
            .map(|(_, _, p)| p.len() * 4)
            .sum()
    }

    /// A copy that owns every tensor (no borrow of the blob).
    pub fn into_owned(self) -> Weights<'static> {
        let o = |p: Param<'a>| -> Param<'static> { Cow::Owned(p.into_owned()) };
        let on = |p: Option<Param<'a>>| p.map(o);
        let nn = |n: Option<Norm<'a>>| {
            n.map(|n| Norm {
                g: o(n.g),
                b: o(n.b),
            })
        };
        Weights {
            input_mean: on(self.input_mean),
            input_std: on(self.input_std),
            embed_w: on(self.embed_w),
            embed_b: on(self.embed_b),
            layers: self
                .layers
                .into_iter()
                .map(|l| LayerWeights {
                    ln1: nn(l.ln1),
                    wq: o(l.wq),
                    wk: o(l.wk),
                    wv: o(l.wv),
                    wo: o(l.wo),
                    bq: on(l.bq),
                    bk: on(l.bk),
                    bv: on(l.bv),
                    bo: on(l.bo),
                    ln2: nn(l.ln2),
                    mlp: l.mlp.map(|m| Mlp {
                        w1: o(m.w1),
                        b1: o(m.b1),
                        w2: o(m.w2),
                        b2: o(m.b2),
                    }),
                })
                .collect(),
            final_ln: nn(self.final_ln),
            classifier_w: o(self.classifier_w),
            classifier_b: on(self.classifier_b),
        }
    }
}
