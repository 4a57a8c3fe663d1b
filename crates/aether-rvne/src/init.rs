//! The reference initialisation recipe (docs/rvne-format.md): xorshift64* seeded with
//! `0xC511_0007_DEAD_BEEF`, one output per weight, `w = ((b / u32::MAX) − 0.5) · 0.2`
//! with `b` the output's high 32 bits, computed in f32, drawn in the canonical tensor
//! order. For a v1-expressible model this reproduces the reference v1 blob byte for byte
//! (AETHER default dims: 41,244 bytes).

/// The seed of the reference recipe.
pub const REFERENCE_SEED: u64 = 0xC511_0007_DEAD_BEEF;

/// xorshift64* (`x ^= x<<13; x ^= x>>7; x ^= x<<17`, output `x · 2685821657736338717`).
#[derive(Debug, Clone)]
pub struct XorShift64Star {
    state: u64,
}

impl XorShift64Star {
    /// Seeds the generator; a zero seed (the generator's fixed point) becomes
    /// [`REFERENCE_SEED`].
    pub const fn new(seed: u64) -> Self {
        Self {
            state: if seed == 0 { REFERENCE_SEED } else { seed },
        }
    }

    /// Next 64-bit output.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x.wrapping_mul(2_685_821_657_736_338_717)
    }

    /// Next reference weight in `[−0.1, 0.1]`.
    pub fn next_weight(&mut self) -> f32 {
        let b = (self.next_u64() >> 32) as u32;
        ((b as f32) / (u32::MAX as f32) - 0.5) * 0.2
    }
}

#[cfg(feature = "alloc")]
mod owned {
    use alloc::vec::Vec;

    use super::XorShift64Star;
    use crate::error::Result;
    use crate::meta::{DType, Dims, ModelMeta, TensorKind};
    use crate::writer::{ModelFile, Tensor};

    /// A model initialised by the reference recipe: matrices from the generator in
    /// canonical order; layer-norm gains and `input.std` 1; biases, betas, `input.mean` 0.
    /// `dtype` is the storage dtype later writes use by default.
    pub fn reference_init(meta: &ModelMeta, seed: u64, dtype: DType) -> Result<ModelFile> {
        meta.validate()?;
        let mut rng = XorShift64Star::new(seed);
        let mut tensors = Vec::with_capacity(meta.tensor_count());
        for spec in meta.tensor_specs() {
            let n = spec.numel().unwrap_or(0);
            let data: Vec<f32> = match spec.kind {
                k if k.is_matrix() => (0..n).map(|_| rng.next_weight()).collect(),
                TensorKind::InputStd
                | TensorKind::Ln1G
                | TensorKind::Ln2G
                | TensorKind::FinalLnG => alloc::vec![1.0; n],
                _ => alloc::vec![0.0; n],
            };
            tensors.push(Tensor {
                name: spec.name().as_str().into(),
                shape: spec.shape.as_slice().to_vec(),
                data,
            });
        }
        Ok(ModelFile {
            meta: *meta,
            dtype,
            class_names: Vec::new(),
            feature_names: Vec::new(),
            metadata: Vec::new(),
            tensors,
        })
    }

    /// The v1 blob of the reference recipe for v1 `dims` (`D = F`, no MLP).
    pub fn reference_init_v1_bytes(dims: &Dims, seed: u64, dtype: DType) -> Result<Vec<u8>> {
        reference_init(&ModelMeta::v1_defaults(*dims), seed, dtype)?.to_v1_bytes(dtype)
    }
}

#[cfg(feature = "alloc")]
pub use owned::{reference_init, reference_init_v1_bytes};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_seed_is_not_stuck() {
        let mut a = XorShift64Star::new(0);
        let mut b = XorShift64Star::new(REFERENCE_SEED);
        assert_eq!(a.next_u64(), b.next_u64());
        let w = a.next_weight();
        assert!((-0.1..=0.1).contains(&w));
    }
}
