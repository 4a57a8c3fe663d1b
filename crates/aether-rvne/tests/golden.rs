//! The reference v1 blob of docs/rvne-format.md, byte for byte, and the committed golden file.

use aether_rvne::{
    reference_init_v1_bytes, BlobView, DType, Dims, ModelFile, PatternSpec, Pooling, REFERENCE_SEED,
};
use sha2::{Digest, Sha256};

const GOLDEN_SHA256: &str = "7c6c074ef3b6b23b4d9ae2327deaade81329f003c3a52b59581492c08252d49d";
const GOLDEN: &[u8] = include_bytes!("../testdata/aether_default_v1.rvne");

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn reference_recipe_reproduces_facts_hash() {
    let bytes = reference_init_v1_bytes(&Dims::AETHER_DEFAULT, REFERENCE_SEED, DType::F32).unwrap();
    assert_eq!(bytes.len(), 41_244);
    assert_eq!(hex(&Sha256::digest(&bytes)), GOLDEN_SHA256);
    assert_eq!(bytes, GOLDEN);
}

#[test]
fn golden_file_hash_and_view() {
    assert_eq!(hex(&Sha256::digest(GOLDEN)), GOLDEN_SHA256);
    let v = BlobView::parse(GOLDEN).unwrap();
    assert_eq!(v.version(), 1);
    let m = v.meta();
    assert!(m.defaults_assumed);
    assert_eq!(m.dims, Dims::AETHER_DEFAULT);
    assert_eq!(m.pattern, PatternSpec::AETHER_DEFAULT);
    assert_eq!(m.arch.pooling, Pooling::Mean);
    assert_eq!(v.dtype(), Some(DType::F32));
    assert_eq!(v.tensor_count(), 9);
    assert_eq!(v.class_name(0), None);
    assert_eq!(v.feature_name(0), None);
    let wq = v.tensor("layers.0.wq").unwrap();
    assert_eq!(wq.shape().as_slice(), &[16, 128]);
    assert_eq!(wq.offset(), 24);
    let c = v.tensor("classifier.w").unwrap();
    assert_eq!(c.shape().as_slice(), &[16, 4]);
    assert_eq!(c.offset() + c.bytes().len(), GOLDEN.len() - 4);
    let first = f32::from_le_bytes(GOLDEN[24..28].try_into().unwrap());
    assert_eq!(wq.get(0), Some(first));
    let m = ModelFile::from_view(&v).unwrap();
    assert_eq!(m.to_v1_bytes(DType::F32).unwrap(), GOLDEN);
}

mod common;

#[test]
fn committed_samples_are_stable() {
    // Any change to the encoding shows up here (regenerate with the write_samples example
    // only for a deliberate, documented format change).
    let full = common::full_model();
    assert_eq!(
        full.to_v2_bytes(DType::F32).unwrap(),
        include_bytes!("../testdata/full_v2_f32.rvne")
    );
    assert_eq!(
        full.to_v2_bytes(DType::F16).unwrap(),
        include_bytes!("../testdata/full_v2_f16.rvne")
    );
    let tiny = common::tiny_v1_model();
    assert_eq!(
        tiny.to_v1_bytes(DType::F32).unwrap(),
        include_bytes!("../testdata/tiny_v1_f32.rvne")
    );
    assert_eq!(
        tiny.to_v1_bytes(DType::F16).unwrap(),
        include_bytes!("../testdata/tiny_v1_f16.rvne")
    );
    let v = BlobView::parse(include_bytes!("../testdata/full_v2_f32.rvne")).unwrap();
    assert_eq!(v.class_name(2), Some("none"));
    assert_eq!(v.feature_name(2), Some("φ"));
    assert_eq!(v.metadata_value("epochs"), Some("12"));
    assert_eq!(v.meta().pattern.globals(), &[0, 7]);
}
