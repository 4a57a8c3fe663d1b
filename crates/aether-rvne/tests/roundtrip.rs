//! Property round trips over shapes, dtypes, architecture options and metadata, plus
//! never-panic properties on random and mutated inputs.

mod common;

use aether_rvne::{
    reference_init, Architecture, AttentionBackend, BlobView, DType, Dims, ModelFile, ModelMeta,
    PatternSpec, Pooling, Positional,
};
use proptest::prelude::*;

fn arb_dims() -> impl Strategy<Value = (Dims, bool)> {
    (
        1usize..6,
        1usize..6,
        1usize..4,
        1usize..4,
        1usize..5,
        1usize..4,
        2usize..6,
        0usize..5,
        any::<bool>(),
    )
        .prop_map(|(f, d, kv, ratio, dh, l, c, h, embed)| {
            (
                Dims {
                    input_dim: f,
                    d_model: if embed { d } else { f },
                    q_heads: kv * ratio,
                    kv_heads: kv,
                    head_dim: dh,
                    layers: l,
                    classes: c,
                    mlp_hidden: h,
                },
                embed,
            )
        })
}

fn arb_meta() -> impl Strategy<Value = ModelMeta> {
    (
        arb_dims(),
        proptest::collection::vec(any::<bool>(), 8),
        (
            0usize..70,
            1usize..40,
            proptest::collection::vec(0usize..100, 0..5),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(|((dims, embed), o, (w, b, g, causal, ls, lm))| {
            let arch = Architecture {
                input_norm: o[0],
                embed,
                positional: if o[1] {
                    Positional::Sinusoidal
                } else {
                    Positional::None
                },
                pre_norm: o[2],
                biases: o[3],
                final_norm: o[4],
                pooling: if o[5] { Pooling::Last } else { Pooling::Mean },
                attention: if o[6] {
                    AttentionBackend::Dense
                } else {
                    AttentionBackend::Sparse
                },
                running_norm: o[7],
            };
            ModelMeta::new(
                dims,
                arch,
                PatternSpec::new(w, b, &g, causal, ls, lm).unwrap(),
            )
        })
}

fn arb_names(n: usize) -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        Just(Vec::new()),
        Just((0..n).map(|i| format!("n{i}·é")).collect()),
    ]
}

fn arb_model() -> impl Strategy<Value = ModelFile> {
    (arb_meta(), any::<u64>()).prop_flat_map(|(meta, seed)| {
        let d = meta.dims;
        (
            arb_names(d.classes),
            arb_names(d.input_dim),
            proptest::collection::vec(("[a-z.]{1,8}", "\\PC{0,12}"), 0..4),
        )
            .prop_map(move |(cn, fnm, kv)| {
                let mut m = reference_init(&meta, seed, DType::F32).unwrap();
                m.class_names = cn;
                m.feature_names = fnm;
                let mut seen = std::collections::HashSet::new();
                m.metadata = kv
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .collect();
                m
            })
    })
}

fn bits(m: &ModelFile) -> Vec<Vec<u32>> {
    m.tensors
        .iter()
        .map(|t| t.data.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// Copies `b` into a 16-aligned buffer (shifted by `shift` bytes) and returns the slice.
fn placed(b: &[u8], shift: usize) -> (Vec<u128>, std::ops::Range<usize>) {
    let mut store = vec![0u128; (b.len() + shift) / 16 + 1];
    let bytes: &mut [u8] = bytemuck_bytes(&mut store);
    bytes[shift..shift + b.len()].copy_from_slice(b);
    (store, shift..shift + b.len())
}

fn bytemuck_bytes(v: &mut [u128]) -> &mut [u8] {
    let n = v.len() * 16;
    // SAFETY: u128 has no padding and any byte pattern is a valid u8; the length is exact.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, n) }
}

fn as_bytes(v: &[u128]) -> &[u8] {
    // SAFETY: as above, read-only.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len() * 16) }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn v2_round_trip_f32_bit_exact(m in arb_model()) {
        let b = m.to_v2_bytes(DType::F32).unwrap();
        let back = ModelFile::from_bytes(&b).unwrap();
        prop_assert_eq!(&back.meta, &m.meta);
        prop_assert_eq!(&back.class_names, &m.class_names);
        prop_assert_eq!(&back.feature_names, &m.feature_names);
        prop_assert_eq!(&back.metadata, &m.metadata);
        prop_assert_eq!(bits(&back), bits(&m));
        prop_assert_eq!(&back.to_v2_bytes(DType::F32).unwrap(), &b);
        let v = BlobView::parse(&b).unwrap();
        for (i, n) in m.class_names.iter().enumerate() {
            prop_assert_eq!(v.class_name(i), Some(n.as_str()));
        }
        for (k, val) in &m.metadata {
            prop_assert_eq!(v.metadata_value(k), Some(val.as_str()));
        }
    }

    #[test]
    fn v2_round_trip_f16(m in arb_model()) {
        let b = m.to_v2_bytes(DType::F16).unwrap();
        let v = BlobView::parse(&b).unwrap();
        prop_assert_eq!(v.dtype(), Some(DType::F16));
        let back = ModelFile::from_view(&v).unwrap();
        for (x, y) in back.tensors.iter().zip(&m.tensors) {
            for (a, b) in x.data.iter().zip(&y.data) {
                prop_assert_eq!(*a, half::f16::from_f32(*b).to_f32());
            }
        }
        prop_assert_eq!(&back.to_v2_bytes(DType::F16).unwrap(), &b);
    }

    #[test]
    fn tensors_aligned_and_zero_copy(m in arb_model(), shift in 1usize..16) {
        let b = m.to_v2_bytes(DType::F32).unwrap();
        let (store, r) = placed(&b, 0);
        let v = BlobView::parse(&as_bytes(&store)[r]).unwrap();
        for (t, spec) in v.tensors().zip(m.meta.tensor_specs()) {
            prop_assert_eq!(t.offset() % 16, 0);
            prop_assert_eq!(t.shape(), spec.shape);
            let z = t.as_f32().expect("aligned f32 tensor is zero-copy");
            let want = &m.tensor(t.name()).unwrap().data;
            prop_assert!(z.iter().map(|x| x.to_bits()).eq(want.iter().map(|x| x.to_bits())));
        }
        // Unaligned buffer: still readable by copy, zero-copy refused when misaligned.
        let (store, r) = placed(&b, shift);
        let v = BlobView::parse(&as_bytes(&store)[r]).unwrap();
        for t in v.tensors() {
            if shift % 4 != 0 {
                prop_assert!(t.as_f32().is_none());
            }
            let mut out = vec![0.0; t.len()];
            t.read_f32_into(&mut out).unwrap();
            let want = &m.tensor(t.name()).unwrap().data;
            prop_assert!(out.iter().map(|x| x.to_bits()).eq(want.iter().map(|x| x.to_bits())));
        }
    }

    #[test]
    fn v1_v2_v1_byte_exact(
        f in 1usize..9, kv in 1usize..4, r in 1usize..4, dh in 1usize..9, l in 1usize..4,
        c in 2usize..7, seed in any::<u64>(), f16 in any::<bool>()
    ) {
        let dt = if f16 { DType::F16 } else { DType::F32 };
        let dims = Dims { input_dim: f, d_model: f, q_heads: kv * r, kv_heads: kv, head_dim: dh, layers: l, classes: c, mlp_hidden: 0 };
        let v1 = aether_rvne::reference_init_v1_bytes(&dims, seed, dt).unwrap();
        let view = BlobView::parse(&v1).unwrap();
        prop_assert!(view.meta().defaults_assumed);
        prop_assert_eq!(view.dtype(), Some(dt));
        let v2 = ModelFile::from_view(&view).unwrap().to_v2_bytes(dt).unwrap();
        let v2view = BlobView::parse(&v2).unwrap();
        prop_assert!(!v2view.meta().defaults_assumed);
        for (a, b) in view.tensors().zip(v2view.tensors()) {
            prop_assert_eq!(a.name(), b.name());
            prop_assert_eq!(a.bytes(), b.bytes());
        }
        let again = ModelFile::from_bytes(&v2).unwrap().to_v1_bytes(dt).unwrap();
        prop_assert_eq!(again, v1);
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = BlobView::parse(&b);
    }

    #[test]
    fn mutated_valid_files_never_panic(m in arb_model(), edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>(), fix in any::<bool>()) {
        let mut b = m.to_v2_bytes(DType::F32).unwrap();
        for (at, v) in edits {
            let n = b.len();
            b[at % n] = v;
        }
        b.truncate(b.len() - cut % 8);
        if fix && b.len() >= 44 {
            let n = b.len() as u32;
            b[32..36].copy_from_slice(&n.to_le_bytes());
            common::fix_crc(&mut b);
        }
        if let Ok(v) = BlobView::parse(&b) {
            // Whatever is accepted is fully readable and re-encodes canonically.
            let mf = ModelFile::from_view(&v).unwrap();
            let dt = v.dtype().unwrap_or(DType::F32);
            let again = mf.to_v2_bytes(dt).unwrap();
            prop_assert_eq!(ModelFile::from_bytes(&again).unwrap().to_v2_bytes(dt).unwrap(), again);
        }
    }
}

#[test]
fn v1_names_match_model_md() {
    let b = common::tiny_v1_model().to_v1_bytes(DType::F32).unwrap();
    let v = BlobView::parse(&b).unwrap();
    let names: Vec<String> = v.tensors().map(|t| t.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "layers.0.wq",
            "layers.0.wk",
            "layers.0.wv",
            "layers.0.wo",
            "layers.1.wq",
            "layers.1.wk",
            "layers.1.wv",
            "layers.1.wo",
            "classifier.w"
        ]
    );
    assert!(v.tensor("layers.2.wq").is_none());
    assert!(v.tensor("embed.w").is_none());
    assert_eq!(v.metadata().count(), 0);
}
