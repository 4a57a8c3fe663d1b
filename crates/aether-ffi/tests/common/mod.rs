//! Blobs and frames shared by the integration tests.
#![allow(dead_code)]

use aether_rvne::{
    reference_init, reference_init_v1_bytes, Architecture, AttentionBackend, DType, Dims,
    ModelMeta, PatternSpec, Pooling, Positional, REFERENCE_SEED,
};

/// The reference v1 blob of docs/rvne-format.md (AETHER default head, f32, 41,244 bytes).
pub fn seeded_v1() -> Vec<u8> {
    reference_init_v1_bytes(&Dims::AETHER_DEFAULT, REFERENCE_SEED, DType::F32).unwrap()
}

/// The reference init stored as f16 (weights are converted at init, never borrowed).
pub fn seeded_v1_f16() -> Vec<u8> {
    reference_init_v1_bytes(&Dims::AETHER_DEFAULT, REFERENCE_SEED, DType::F16).unwrap()
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn lcg(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A "trained-like" v2 blob: every architecture option on (running norm when `causal`,
/// input norm, embedding F → D,
/// sinusoidal positions, pre-norm, biases, MLP, final norm), `pooling`, `attention`, a
/// small sparse pattern that the window exceeds, and every tensor perturbed away from its
/// init (non-trivial norms, biases and input statistics), with class and feature names.
pub fn trained_v2(
    f: usize,
    d: usize,
    c: usize,
    pooling: Pooling,
    attention: AttentionBackend,
    causal: bool,
    seed: u64,
) -> Vec<u8> {
    let dims = Dims {
        input_dim: f,
        d_model: d,
        q_heads: 4,
        kv_heads: 2,
        head_dim: 3,
        layers: 2,
        classes: c,
        mlp_hidden: 10,
    };
    let arch = Architecture {
        input_norm: true,
        embed: true,
        positional: Positional::Sinusoidal,
        pre_norm: true,
        biases: true,
        final_norm: true,
        pooling,
        attention,
        // the causal case also standardises its inputs on the fly (model.md step 0)
        running_norm: causal,
    };
    let pattern = PatternSpec::new(4, 3, &[0, 5], causal, true, true).unwrap();
    let meta = ModelMeta::new(dims, arch, pattern);
    let mut model = reference_init(&meta, seed, DType::F32).unwrap();
    for (i, t) in model.tensors.iter_mut().enumerate() {
        let noise = lcg(seed ^ (i as u64 + 1), t.data.len());
        let name = t.name.clone();
        for (v, z) in t.data.iter_mut().zip(noise) {
            *v = if name == "input.std" || name.ends_with(".g") {
                1.0 + 0.4 * z.abs()
            } else if name.ends_with(".b") || name.starts_with("input.mean") {
                0.3 * z
            } else {
                *v * 3.0 + 0.05 * z
            };
        }
    }
    model.class_names = (0..c).map(|i| format!("class{i}")).collect();
    model.feature_names = (0..f).map(|i| format!("feat{i}")).collect();
    model.to_v2_bytes(DType::F32).unwrap()
}

/// The trained-like v2 blobs the tests use: `(name, blob, F, C)`.
pub fn trained_cases() -> Vec<(&'static str, Vec<u8>, usize, usize)> {
    vec![
        (
            "trained-v2-last-sparse",
            trained_v2(6, 8, 3, Pooling::Last, AttentionBackend::Sparse, true, 11),
            6,
            3,
        ),
        (
            "trained-v2-mean-dense-bidirectional",
            trained_v2(5, 6, 4, Pooling::Mean, AttentionBackend::Dense, false, 12),
            5,
            4,
        ),
    ]
}

/// The trained-like cases quantised to int8 (calibrated on frames like the tests'):
/// `(name, int8 blob, F, C)`.
pub fn int8_cases() -> Vec<(&'static str, Vec<u8>, usize, usize)> {
    let names = ["int8-last-sparse", "int8-mean-dense-bidirectional"];
    trained_cases()
        .into_iter()
        .zip(names)
        .map(|((_, blob, f, c), name)| {
            let model = aether_rvne::ModelFile::from_bytes(&blob).unwrap();
            let calib: Vec<Vec<f32>> = (0..8)
                .map(|i| frames(20 + 3 * i, f, 900 + i as u64))
                .collect();
            let refs: Vec<&[f32]> = calib.iter().map(|v| v.as_slice()).collect();
            let (q, _) = aether_quant::quantize::quantize(
                &model,
                &refs,
                &aether_quant::quantize::QuantizeOptions::default(),
            )
            .unwrap();
            (name, q.to_v2_bytes().unwrap(), f, c)
        })
        .collect()
}

/// `n` frames of `f` features, smooth plus noise (like CSI features).
pub fn frames(n: usize, f: usize, seed: u64) -> Vec<f32> {
    let noise = lcg(seed, n * f);
    (0..n * f)
        .map(|i| {
            let (t, k) = ((i / f) as f32, (i % f) as f32);
            (0.13 * t + 0.7 * k).sin() + 0.05 * k + 0.2 * noise[i]
        })
        .collect()
}

/// A copy of `bytes` at a 16-aligned address (the firmware's flash-mapped blob).
pub struct Aligned {
    store: Vec<u128>,
    len: usize,
}

impl Aligned {
    /// Copies `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        let mut store = vec![0u128; bytes.len().div_ceil(16).max(1)];
        // SAFETY: `store` has at least `bytes.len()` bytes; u8 has no alignment needs.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(store.as_mut_ptr().cast::<u8>(), bytes.len()) };
        dst.copy_from_slice(bytes);
        Self {
            store,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `store` holds at least `len` initialised bytes.
        unsafe { std::slice::from_raw_parts(self.store.as_ptr().cast::<u8>(), self.len) }
    }
}
