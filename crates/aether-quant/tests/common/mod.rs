//! Shared helpers: sample float models over every docs/model.md option, frames, and the
//! naive integer reference of docs/int8.md.
#![allow(dead_code)]

pub mod naive;

use aether_quant::quantize::{quantize, QuantizeOptions};
use aether_rvne::{
    reference_init, Architecture, AttentionBackend, DType, Dims, ModelFile, ModelMeta, PatternSpec,
    Pooling, Positional, XorShift64Star,
};

/// Every option on: input norm, embedding, positional, pre-norm, biases, MLP, final norm.
pub fn full_arch() -> Architecture {
    Architecture {
        input_norm: true,
        embed: true,
        positional: Positional::Sinusoidal,
        pre_norm: true,
        biases: true,
        final_norm: true,
        pooling: Pooling::Mean,
        attention: AttentionBackend::Sparse,
        running_norm: false,
    }
}

/// Small dims with the default head's shape (MQA, MLP).
pub fn small_dims() -> Dims {
    Dims {
        input_dim: 5,
        d_model: 12,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 8,
        layers: 2,
        classes: 3,
        mlp_hidden: 16,
    }
}

/// A short causal pattern that exercises window, globals, log-stride and landmarks at
/// small N.
pub fn small_pattern() -> PatternSpec {
    PatternSpec::new(4, 3, &[0, 5], true, true, true).unwrap()
}

/// Every option combination the tests run: the full head, each option off (or changed),
/// running norm on, and the bare v1 shape.
pub fn variants() -> Vec<(&'static str, ModelMeta)> {
    let base = full_arch();
    let dims = small_dims();
    let p = small_pattern();
    let mut v = vec![("full", ModelMeta::new(dims, base, p))];
    let mut add = |name: &'static str, f: &dyn Fn(&mut Architecture, &mut Dims)| {
        let (mut a, mut d) = (base, dims);
        f(&mut a, &mut d);
        if !a.embed {
            d.d_model = d.input_dim;
        }
        v.push((name, ModelMeta::new(d, a, p)));
    };
    add("no input_norm", &|a, _| a.input_norm = false);
    add("no embed", &|a, _| a.embed = false);
    add("no positional", &|a, _| a.positional = Positional::None);
    add("no pre_norm", &|a, _| a.pre_norm = false);
    add("no biases", &|a, _| a.biases = false);
    add("no mlp", &|_, d| d.mlp_hidden = 0);
    add("no final_norm", &|a, _| a.final_norm = false);
    add("pooling last", &|a, _| a.pooling = Pooling::Last);
    add("dense attention", &|a, _| {
        a.attention = AttentionBackend::Dense
    });
    add("running norm", &|a, _| a.running_norm = true);
    add("running norm, bare", &|a, d| {
        *a = Architecture::V1;
        a.running_norm = true;
        d.mlp_hidden = 0;
    });
    v.push((
        "bare v1",
        ModelMeta::v1_defaults(Dims {
            input_dim: dims.input_dim,
            d_model: dims.input_dim,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 8,
            layers: 2,
            classes: 3,
            mlp_hidden: 0,
        }),
    ));
    v
}

/// A reference-initialised model of `meta` with every vector perturbed (biases, layer
/// norms, input statistics), so every table is exercised.
pub fn float_model(meta: &ModelMeta, seed: u64) -> ModelFile {
    let mut m = reference_init(meta, seed, DType::F32).unwrap();
    let mut rng = XorShift64Star::new(seed ^ 0x9E37_79B9);
    for t in &mut m.tensors {
        let vector = t.shape.len() == 1;
        for x in &mut t.data {
            let r = rng.next_weight(); // [-0.1, 0.1]
            if t.name == "input.std" {
                *x = 0.5 + 10.0 * r.abs();
            } else if t.name == "input.mean" {
                *x = 30.0 * r;
            } else if t.name.ends_with(".g") {
                *x = 1.0 + 4.0 * r;
            } else if vector {
                *x = 3.0 * r;
            } else {
                *x *= 8.0; // matrices: ±0.8, outputs of a useful size
            }
        }
    }
    m
}

/// `n` frames of `f` features: per-feature offsets and scales (like raw amplitudes),
/// a slow drift and noise.
pub fn frames(n: usize, f: usize, seed: u64) -> Vec<f32> {
    let mut rng = XorShift64Star::new(seed.wrapping_add(17));
    let mut out = Vec::with_capacity(n * f);
    for t in 0..n {
        for c in 0..f {
            let level = 10.0 * c as f32 - 15.0;
            let scale = 0.5 + c as f32;
            let drift = ((t as f32) * 0.05 + c as f32).sin();
            let noise = rng.next_weight();
            if c == 1 {
                // Nearly constant: the running norm's floor (1e-3) decides here.
                out.push(7.0 + if t >= 10 { 1e-4 * (t % 3) as f32 } else { 0.0 });
            } else {
                out.push(level + scale * (drift + 5.0 * noise));
            }
        }
    }
    out
}

/// Calibration windows for `meta`.
pub fn calib_windows(meta: &ModelMeta, seed: u64) -> Vec<Vec<f32>> {
    (0..6)
        .map(|i| frames(20 + 7 * i, meta.dims.input_dim, seed + i as u64))
        .collect()
}

/// The int8 blob of `float_model(meta, seed)`, quantised on [`calib_windows`].
pub fn quantized(meta: &ModelMeta, seed: u64) -> (ModelFile, Vec<u8>) {
    let m = float_model(meta, seed);
    let w = calib_windows(meta, seed);
    let refs: Vec<&[f32]> = w.iter().map(|v| v.as_slice()).collect();
    let (q, _) = quantize(&m, &refs, &QuantizeOptions::default()).unwrap();
    (m, q.to_v2_bytes().unwrap())
}
