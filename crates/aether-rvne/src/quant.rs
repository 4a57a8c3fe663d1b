//! The quantisation parameters of an int8 model (v2 feature bit 10, docs/int8.md): the
//! QUANT metadata record and the value ranges of the integer tables.
//!
//! The record holds the model-wide and per-layer integer constants of the integer path
//! and, for documentation and dequantisation only, the activation scales. Layout
//! (little-endian, `L` layers, `44 + 32·L` bytes):
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | scheme u8 = 1 (i8 weights, i16 activations, i8 KV caches) |
//! | 1 | 3 | reserved, 0 |
//! | 4 | 4 | `logit_shift` u32 in 0..=30: a logit is `q · 2^−logit_shift` |
//! | 8 | 8 | `ln_eps` u64 ≥ 1: layer-norm epsilon in centred units² |
//! | 16 | 4 | `pe_mult` i32 (not `i32::MIN`) |
//! | 20 | 4 | `pe_shift` i32 in −31..=31 (both 0 without a positional signal) |
//! | 24 | 4 | `n_layers` u32 = `L` |
//! | 28 | 12·L | per layer: `att_mult` i32 in 1..=2³¹−1, `att_shift` i32 in −31..=31, `gelu_shift` u32 in 0..=15 (0 without an MLP) |
//! | 28 + 12·L | 4 | `n_scales` u32 = `3 + 5·L` |
//! | 32 + 12·L | 4·n_scales | activation scales f32 (finite, > 0): `s_in, s_x`, per layer `s_h1, s_q, s_k, s_v, s_h2`, then `s_f` |

use crate::error::{Error, Result};
use crate::meta::{ModelMeta, Part, Positional, TensorKind, TensorSpec};
use crate::name::Name;

/// The one quantisation scheme this reader knows (i8 weights with per-output-channel
/// scales, i16 activations, i8 KV caches, i32 accumulators).
pub const QUANT_SCHEME: u8 = 1;

/// Largest `logit_shift`.
pub const MAX_LOGIT_SHIFT: u32 = 30;
/// Largest `gelu_shift`.
pub const MAX_GELU_SHIFT: u32 = 15;
/// Range of every requantisation shift (`31 + shift` is the right shift, 0..=62).
pub const SHIFT_RANGE: (i32, i32) = (-31, 31);
/// Range of the input stage's power-of-two pre-scale exponent.
pub const EXP_RANGE: (i32, i32) = (-126, 126);

/// Bytes of a QUANT record for `layers` layers.
pub const fn quant_record_len(layers: usize) -> usize {
    44 + 32 * layers
}

/// Activation scales the record lists for `layers` layers.
pub const fn quant_scale_count(layers: usize) -> usize {
    3 + 5 * layers
}

fn rd_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn rd_i32(b: &[u8], at: usize) -> i32 {
    rd_u32(b, at) as i32
}

/// The integer constants of one layer (QUANT record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerQuant {
    /// Multiplier from a score difference to the exponent in Q16 log2 units.
    pub att_mult: i32,
    /// Its shift (the right shift is `31 + att_shift`).
    pub att_shift: i32,
    /// Right shift from the GELU output (Q10) to the `mlp.w2` input.
    pub gelu_shift: u32,
}

/// A validated QUANT record, borrowed from the blob.
#[derive(Debug, Clone, Copy)]
pub struct QuantView<'a> {
    bytes: &'a [u8],
    layers: usize,
}

impl<'a> QuantView<'a> {
    /// Validates `payload` as the QUANT record of `meta` (see the module docs).
    pub fn parse(payload: &'a [u8], meta: &ModelMeta) -> Result<Self> {
        let l = meta.dims.layers;
        let expected = quant_record_len(l);
        if payload.len() != expected {
            return Err(Error::RecordLength {
                record: "QUANT",
                expected,
                got: payload.len(),
            });
        }
        if payload[0] != QUANT_SCHEME {
            return Err(Error::UnknownQuantScheme { got: payload[0] });
        }
        if payload[1..4] != [0, 0, 0] {
            return Err(Error::ReservedNotZero {
                field: "QUANT reserved bytes",
                got: u32::from_le_bytes([payload[1], payload[2], payload[3], 0]),
            });
        }
        let q = Self {
            bytes: payload,
            layers: l,
        };
        let param = |field: &'static str, got: i64, min: i64, max: i64| -> Result<()> {
            if got < min || got > max {
                return Err(Error::QuantParam {
                    field,
                    got,
                    min,
                    max,
                });
            }
            Ok(())
        };
        param(
            "logit_shift",
            q.logit_shift() as i64,
            0,
            MAX_LOGIT_SHIFT as i64,
        )?;
        param(
            "ln_eps",
            q.ln_eps().min(i64::MAX as u64) as i64,
            1,
            i64::MAX,
        )?;
        let positional = meta.arch.positional == Positional::Sinusoidal;
        let (pm, ps) = if positional {
            (-(i32::MAX as i64), i32::MAX as i64)
        } else {
            (0, 0)
        };
        param("pe_mult", q.pe_mult() as i64, pm, ps)?;
        let (smin, smax) = if positional {
            (SHIFT_RANGE.0 as i64, SHIFT_RANGE.1 as i64)
        } else {
            (0, 0)
        };
        param("pe_shift", q.pe_shift() as i64, smin, smax)?;
        param("n_layers", rd_u32(payload, 24) as i64, l as i64, l as i64)?;
        let gmax = if meta.dims.mlp_hidden > 0 {
            MAX_GELU_SHIFT as i64
        } else {
            0
        };
        for i in 0..l {
            let lq = q.layer(i);
            param("att_mult", lq.att_mult as i64, 1, i32::MAX as i64)?;
            param(
                "att_shift",
                lq.att_shift as i64,
                SHIFT_RANGE.0 as i64,
                SHIFT_RANGE.1 as i64,
            )?;
            param("gelu_shift", lq.gelu_shift as i64, 0, gmax)?;
        }
        let n = quant_scale_count(l) as i64;
        param("n_scales", rd_u32(payload, 28 + 12 * l) as i64, n, n)?;
        for i in 0..quant_scale_count(l) {
            let s = q.scale(i);
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::QuantScale {
                    what: Name::new("QUANT activation scales"),
                    index: i,
                    bits: s.to_bits(),
                });
            }
        }
        Ok(q)
    }

    /// The raw record payload.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The quantisation scheme (always [`QUANT_SCHEME`] after validation).
    pub fn scheme(&self) -> u8 {
        self.bytes[0]
    }

    /// Logits are `q · 2^−logit_shift`.
    pub fn logit_shift(&self) -> u32 {
        rd_u32(self.bytes, 4)
    }

    /// Layer-norm epsilon in centred units² (docs/int8.md).
    pub fn ln_eps(&self) -> u64 {
        rd_u32(self.bytes, 8) as u64 | (rd_u32(self.bytes, 12) as u64) << 32
    }

    /// Multiplier from the positional sine (Q15) to residual units.
    pub fn pe_mult(&self) -> i32 {
        rd_i32(self.bytes, 16)
    }

    /// Shift of [`QuantView::pe_mult`].
    pub fn pe_shift(&self) -> i32 {
        rd_i32(self.bytes, 20)
    }

    /// Layers described.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// The constants of layer `l` (zeros past the last layer).
    pub fn layer(&self, l: usize) -> LayerQuant {
        let at = 28 + 12 * l;
        LayerQuant {
            att_mult: rd_i32(self.bytes, at),
            att_shift: rd_i32(self.bytes, at + 4),
            gelu_shift: rd_u32(self.bytes, at + 8),
        }
    }

    /// Number of activation scales.
    pub fn scale_count(&self) -> usize {
        quant_scale_count(self.layers)
    }

    /// Activation scale `i` (module docs order; 0.0 past the end).
    pub fn scale(&self, i: usize) -> f32 {
        if i >= self.scale_count() {
            return 0.0;
        }
        f32::from_bits(rd_u32(self.bytes, 32 + 12 * self.layers + 4 * i))
    }
}

/// Range of column `c` of an int8 table: `(name, min, max)`; `None` for unconstrained
/// columns. `running_norm` decides whether the input stage's floor may be non-zero.
fn column_range(
    spec: &TensorSpec,
    c: usize,
    running_norm: bool,
) -> Option<(&'static str, i64, i64)> {
    let mult = Some(("mult", -(i32::MAX as i64), i32::MAX as i64));
    let shift = Some(("shift", SHIFT_RANGE.0 as i64, SHIFT_RANGE.1 as i64));
    match (spec.kind, spec.part) {
        (_, Part::Rq) => match c {
            1 => mult,
            2 => shift,
            _ => None,
        },
        (TensorKind::InputQ, _) => match c {
            0 => Some(("exp", EXP_RANGE.0 as i64, EXP_RANGE.1 as i64)),
            1 => mult,
            2 => shift,
            4 => Some(("floor", 0, if running_norm { i32::MAX as i64 } else { 0 })),
            _ => None,
        },
        (TensorKind::Ln1Q | TensorKind::Ln2Q | TensorKind::FinalLnQ, _) => match c {
            0 => mult,
            1 => shift,
            _ => None,
        },
        _ => None,
    }
}

/// Checks the values of one validated int8-model tensor (`bytes` its data): scales
/// finite and positive, every constrained column of an integer table in range.
pub(crate) fn check_values(spec: &TensorSpec, bytes: &[u8], running_norm: bool) -> Result<()> {
    match spec.part {
        Part::Scale => {
            for (i, c) in bytes.chunks_exact(4).enumerate() {
                let s = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                if !(s.is_finite() && s > 0.0) {
                    return Err(Error::QuantScale {
                        what: spec.name(),
                        index: i,
                        bits: s.to_bits(),
                    });
                }
            }
            Ok(())
        }
        _ if spec.kind.is_matrix() && spec.part == Part::Data => Ok(()),
        _ => {
            let cols = spec.shape.as_slice().get(1).copied().unwrap_or(1).max(1);
            for (i, c) in bytes.chunks_exact(4).enumerate() {
                let v = i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64;
                if let Some((column, min, max)) = column_range(spec, i % cols, running_norm) {
                    if v < min || v > max {
                        return Err(Error::QuantValue {
                            tensor: spec.name(),
                            index: i,
                            column,
                            got: v,
                            min,
                            max,
                        });
                    }
                }
            }
            Ok(())
        }
    }
}

#[cfg(feature = "alloc")]
mod owned {
    use alloc::vec::Vec;

    use super::{quant_record_len, LayerQuant, QuantView, QUANT_SCHEME};

    /// The QUANT record held in memory (what [`QuantView`] reads), for writing.
    #[derive(Debug, Clone, PartialEq)]
    pub struct QuantRecord {
        /// Logits are `q · 2^−logit_shift`.
        pub logit_shift: u32,
        /// Layer-norm epsilon in centred units².
        pub ln_eps: u64,
        /// Positional sine (Q15) → residual units multiplier.
        pub pe_mult: i32,
        /// Its shift.
        pub pe_shift: i32,
        /// Per-layer constants.
        pub layers: Vec<LayerQuant>,
        /// Activation scales (documentation and dequantisation).
        pub scales: Vec<f32>,
    }

    impl QuantRecord {
        /// Copies a validated record.
        pub fn from_view(q: &QuantView<'_>) -> Self {
            Self {
                logit_shift: q.logit_shift(),
                ln_eps: q.ln_eps(),
                pe_mult: q.pe_mult(),
                pe_shift: q.pe_shift(),
                layers: (0..q.layers()).map(|l| q.layer(l)).collect(),
                scales: (0..q.scale_count()).map(|i| q.scale(i)).collect(),
            }
        }

        /// The record payload (module docs layout).
        pub fn to_bytes(&self) -> Vec<u8> {
            let mut b = Vec::with_capacity(quant_record_len(self.layers.len()));
            b.extend_from_slice(&[QUANT_SCHEME, 0, 0, 0]);
            b.extend_from_slice(&self.logit_shift.to_le_bytes());
            b.extend_from_slice(&self.ln_eps.to_le_bytes());
            b.extend_from_slice(&self.pe_mult.to_le_bytes());
            b.extend_from_slice(&self.pe_shift.to_le_bytes());
            b.extend_from_slice(&(self.layers.len() as u32).to_le_bytes());
            for l in &self.layers {
                b.extend_from_slice(&l.att_mult.to_le_bytes());
                b.extend_from_slice(&l.att_shift.to_le_bytes());
                b.extend_from_slice(&l.gelu_shift.to_le_bytes());
            }
            b.extend_from_slice(&(self.scales.len() as u32).to_le_bytes());
            for s in &self.scales {
                b.extend_from_slice(&s.to_bits().to_le_bytes());
            }
            b
        }
    }
}

#[cfg(feature = "alloc")]
pub use owned::QuantRecord;
