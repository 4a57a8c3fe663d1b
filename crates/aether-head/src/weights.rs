//! The weights of a head, borrowed from a blob when possible (`Cow`), owned otherwise.
//!
//! Shapes follow docs/model.md: every matrix is row-major `[in × out]` and multiplies
//! from the right (`x·W`). [`Weights::from_lookup`] checks every tensor's length and
//! that every value is finite before a model can use it.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

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

impl<'a> Weights<'a> {
    /// Builds the weights of `cfg` by name: `lookup(name)` returns the tensor named in
    /// docs/model.md, or `None` when absent. Lengths and finiteness are checked.
    pub fn from_lookup(
        cfg: &HeadConfig,
        mut lookup: impl FnMut(&str) -> Result<Option<Param<'a>>>,
    ) -> Result<Self> {
        cfg.validate()?;
        let shapes = cfg.tensor_shapes();
        let mut get = |name: String| -> Result<Param<'a>> {
            let expected = shapes
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, c)| *c)
                .ok_or_else(|| HeadError::Config {
                    what: "tensor table",
                    detail: format!("no shape for {name}"),
                })?;
            let p =
                lookup(&name)?.ok_or_else(|| HeadError::MissingTensor { name: name.clone() })?;
            let p = check(&name, p, expected)?;
            Ok(p)
        };
        let norm =
            |get: &mut dyn FnMut(String) -> Result<Param<'a>>, p: &str| -> Result<Norm<'a>> {
                Ok(Norm {
                    g: get(format!("{p}.g"))?,
                    b: get(format!("{p}.b"))?,
                })
            };
        let (input_mean, input_std) = if cfg.input_norm {
            let m = get("input.mean".into())?;
            let s = get("input.std".into())?;
            if let Some(i) = s.iter().position(|&x| x <= 0.0) {
                return Err(HeadError::Config {
                    what: "input.std",
                    detail: format!("element {i} is {} (must be positive)", s[i]),
                });
            }
            (Some(m), Some(s))
        } else {
            (None, None)
        };
        let (embed_w, embed_b) = if cfg.embed {
            (Some(get("embed.w".into())?), Some(get("embed.b".into())?))
        } else {
            (None, None)
        };
        let mut layers = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let ln1 = if cfg.pre_norm {
                Some(norm(&mut get, &format!("layers.{l}.ln1"))?)
            } else {
                None
            };
            let wq = get(format!("layers.{l}.wq"))?;
            let wk = get(format!("layers.{l}.wk"))?;
            let wv = get(format!("layers.{l}.wv"))?;
            let wo = get(format!("layers.{l}.wo"))?;
            let (bq, bk, bv, bo) = if cfg.biases {
                (
                    Some(get(format!("layers.{l}.bq"))?),
                    Some(get(format!("layers.{l}.bk"))?),
                    Some(get(format!("layers.{l}.bv"))?),
                    Some(get(format!("layers.{l}.bo"))?),
                )
            } else {
                (None, None, None, None)
            };
            let (ln2, mlp) = if cfg.mlp_hidden > 0 {
                let ln2 = if cfg.pre_norm {
                    Some(norm(&mut get, &format!("layers.{l}.ln2"))?)
                } else {
                    None
                };
                let mlp = Mlp {
                    w1: get(format!("layers.{l}.mlp.w1"))?,
                    b1: get(format!("layers.{l}.mlp.b1"))?,
                    w2: get(format!("layers.{l}.mlp.w2"))?,
                    b2: get(format!("layers.{l}.mlp.b2"))?,
                };
                (ln2, Some(mlp))
            } else {
                (None, None)
            };
            layers.push(LayerWeights {
                ln1,
                wq,
                wk,
                wv,
                wo,
                bq,
                bk,
                bv,
                bo,
                ln2,
                mlp,
            });
        }
        let final_ln = if cfg.final_norm {
            Some(norm(&mut get, "final_ln")?)
        } else {
            None
        };
        let classifier_w = get("classifier.w".into())?;
        let classifier_b = if cfg.biases {
            Some(get("classifier.b".into())?)
        } else {
            None
        };
        Ok(Weights {
            input_mean,
            input_std,
            embed_w,
            embed_b,
            layers,
            final_ln,
            classifier_w,
            classifier_b,
        })
    }

    /// Splits one flat buffer holding every tensor of `cfg` in [`HeadConfig::tensor_shapes`]
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

    /// Every tensor as `(name, values)` in [`HeadConfig::tensor_shapes`] order.
    pub fn named(&self) -> Vec<(String, &[f32])> {
        let mut out: Vec<(String, &[f32])> = Vec::new();
        if let (Some(m), Some(s)) = (&self.input_mean, &self.input_std) {
            out.push(("input.mean".into(), m));
            out.push(("input.std".into(), s));
        }
        if let (Some(w), Some(b)) = (&self.embed_w, &self.embed_b) {
            out.push(("embed.w".into(), w));
            out.push(("embed.b".into(), b));
        }
        for (l, lw) in self.layers.iter().enumerate() {
            if let Some(n) = &lw.ln1 {
                out.push((format!("layers.{l}.ln1.g"), &n.g));
                out.push((format!("layers.{l}.ln1.b"), &n.b));
            }
            out.push((format!("layers.{l}.wq"), &lw.wq));
            out.push((format!("layers.{l}.wk"), &lw.wk));
            out.push((format!("layers.{l}.wv"), &lw.wv));
            out.push((format!("layers.{l}.wo"), &lw.wo));
            if let (Some(bq), Some(bk), Some(bv), Some(bo)) = (&lw.bq, &lw.bk, &lw.bv, &lw.bo) {
                out.push((format!("layers.{l}.bq"), bq));
                out.push((format!("layers.{l}.bk"), bk));
                out.push((format!("layers.{l}.bv"), bv));
                out.push((format!("layers.{l}.bo"), bo));
            }
            if let Some(m) = &lw.mlp {
                if let Some(n) = &lw.ln2 {
                    out.push((format!("layers.{l}.ln2.g"), &n.g));
                    out.push((format!("layers.{l}.ln2.b"), &n.b));
                }
                out.push((format!("layers.{l}.mlp.w1"), &m.w1));
                out.push((format!("layers.{l}.mlp.b1"), &m.b1));
                out.push((format!("layers.{l}.mlp.w2"), &m.w2));
                out.push((format!("layers.{l}.mlp.b2"), &m.b2));
            }
        }
        if let Some(n) = &self.final_ln {
            out.push(("final_ln.g".into(), &n.g));
            out.push(("final_ln.b".into(), &n.b));
        }
        out.push(("classifier.w".into(), &self.classifier_w));
        if let Some(b) = &self.classifier_b {
            out.push(("classifier.b".into(), b));
        }
        out
    }

    /// Bytes of weights this model owns (copied out of the blob); borrowed ones cost nothing.
    pub fn owned_bytes(&self) -> usize {
        self.named_params()
            .iter()
            .filter(|p| matches!(p, Cow::Owned(_)))
            .map(|p| p.len() * 4)
            .sum()
    }

    fn named_params(&self) -> Vec<&Param<'a>> {
        let mut v: Vec<&Param<'a>> = Vec::new();
        v.extend(self.input_mean.iter());
        v.extend(self.input_std.iter());
        v.extend(self.embed_w.iter());
        v.extend(self.embed_b.iter());
        for lw in &self.layers {
            if let Some(n) = &lw.ln1 {
                v.push(&n.g);
                v.push(&n.b);
            }
            v.extend([&lw.wq, &lw.wk, &lw.wv, &lw.wo]);
            v.extend(lw.bq.iter().chain(&lw.bk).chain(&lw.bv).chain(&lw.bo));
            if let Some(n) = &lw.ln2 {
                v.push(&n.g);
                v.push(&n.b);
            }
            if let Some(m) = &lw.mlp {
                v.extend([&m.w1, &m.b1, &m.w2, &m.b2]);
            }
        }
        if let Some(n) = &self.final_ln {
            v.push(&n.g);
            v.push(&n.b);
        }
        v.push(&self.classifier_w);
        v.extend(self.classifier_b.iter());
        v
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
