//! Loading a head from a `.rvne` blob (v1 and v2) through `aether-rvne`.
//!
//! The blob's `ModelMeta` becomes a [`HeadConfig`] ([`HeadConfig::from_meta`]); every tensor is borrowed straight
//! from the blob when it is stored as f32 at a 4-aligned address (zero-copy from
//! flash), and copied (converting f16) otherwise.

use alloc::borrow::Cow;

use aether_rvne::BlobView;

use crate::config::HeadConfig;
use crate::error::{try_vec, HeadError, Result};
use crate::model::TemporalHead;
use crate::weights::Weights;

impl<'a> TemporalHead<'a> {
    /// Parses a v1 or v2 `.rvne` blob and builds the head it describes, borrowing
    /// aligned f32 tensors from `bytes`.
    pub fn from_blob(bytes: &'a [u8]) -> Result<Self> {
        let view = BlobView::parse(bytes).map_err(HeadError::format)?;
        Self::from_view(&view)
    }

    /// Builds the head a parsed blob describes (see [`TemporalHead::from_blob`]). An
    /// int8 model (docs/int8.md) is refused: the float head cannot run integer tensors.
    pub fn from_view(view: &BlobView<'a>) -> Result<Self> {
        if view.is_int8() {
            return Err(HeadError::Config {
                what: "model",
                detail: "an int8 (quantised) model runs on the integer head (aether-quant), not the float head".into(),
            });
        }
        let cfg = HeadConfig::try_from_meta(view.meta())?;
        let weights = Weights::from_lookup(&cfg, |name| {
            let Some(t) = view.tensor(name) else {
                return Ok(None);
            };
            if let Some(s) = t.as_f32() {
                return Ok(Some(Cow::Borrowed(s)));
            }
            let mut owned = try_vec(t.len(), 0.0f32, "a weight tensor copied out of the blob")?;
            t.read_f32_into(&mut owned).map_err(HeadError::format)?;
            Ok(Some(Cow::Owned(owned)))
        })?;
        Self::new(cfg, weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_rvne::{reference_init, DType, Dims, ModelFile, ModelMeta, REFERENCE_SEED};

    #[test]
    fn v1_and_v2_of_the_reference_init_give_the_same_head() {
        let meta = ModelMeta::v1_defaults(Dims::AETHER_DEFAULT);
        let model = reference_init(&meta, REFERENCE_SEED, DType::F32).unwrap();
        let v1 = model.to_v1_bytes(DType::F32).unwrap();
        let v2 = model.to_v2_bytes(DType::F32).unwrap();
        let h1 = TemporalHead::from_blob(&v1).unwrap();
        let h2 = TemporalHead::from_blob(&v2).unwrap();
        assert_eq!(h1.config(), &HeadConfig::aether_default());
        assert_eq!(h1.weights(), h2.weights());
        let frames: alloc::vec::Vec<f32> = (0..16 * 20).map(|i| (i % 9) as f32 * 0.1).collect();
        assert_eq!(h1.forward(&frames).unwrap(), h2.forward(&frames).unwrap());
        // f16 weights load (converted, owned) and stay close.
        let v1h = model.to_v1_bytes(DType::F16).unwrap();
        let hh = TemporalHead::from_blob(&v1h).unwrap();
        assert!(!hh.is_zero_copy());
        let (a, b) = (h1.forward(&frames).unwrap(), hh.forward(&frames).unwrap());
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-3));
        let _ = ModelFile::from_bytes(&v2).unwrap();
    }

    #[test]
    fn aligned_f32_blob_is_borrowed_zero_copy() {
        let meta = ModelMeta::v1_defaults(Dims::AETHER_DEFAULT);
        let v2 = reference_init(&meta, REFERENCE_SEED, DType::F32)
            .unwrap()
            .to_v2_bytes(DType::F32)
            .unwrap();
        // Copy into a u32-aligned buffer so the f32 views are aligned.
        let words: alloc::vec::Vec<u32> = v2
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(b)
            })
            .collect();
        let bytes = &bytemuck::cast_slice::<u32, u8>(&words)[..v2.len()];
        let h = TemporalHead::from_blob(bytes).unwrap();
        assert!(h.is_zero_copy());
        assert_eq!(h.owned_weight_bytes(), 0);
    }

    #[test]
    fn corrupt_blobs_are_typed_errors() {
        let meta = ModelMeta::v1_defaults(Dims::AETHER_DEFAULT);
        let mut v1 = reference_init(&meta, REFERENCE_SEED, DType::F32)
            .unwrap()
            .to_v1_bytes(DType::F32)
            .unwrap();
        v1[100] ^= 1;
        assert!(matches!(
            TemporalHead::from_blob(&v1),
            Err(HeadError::Format { .. })
        ));
        assert!(matches!(
            TemporalHead::from_blob(&[]),
            Err(HeadError::Format { .. })
        ));
    }
}
