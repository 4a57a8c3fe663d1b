//! Writes the sample blobs under `testdata/` (and fuzz seeds): the tiny v1 model in f32
//! and f16, and a v2 model with every architecture option, names and provenance.
//!
//! `cargo run -p aether-rvne --example write_samples -- DIR`

use aether_rvne::{
    reference_init, Architecture, AttentionBackend, DType, Dims, ModelMeta, PatternSpec, Pooling,
    Positional,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).ok_or("usage: write_samples DIR")?);
    std::fs::create_dir_all(&dir)?;
    let tiny = reference_init(
        &ModelMeta::v1_defaults(Dims {
            input_dim: 2,
            d_model: 2,
            q_heads: 2,
            kv_heads: 1,
            head_dim: 2,
            layers: 2,
            classes: 2,
            mlp_hidden: 0,
        }),
        7,
        DType::F32,
    )?;
    std::fs::write(dir.join("tiny_v1_f32.rvne"), tiny.to_v1_bytes(DType::F32)?)?;
    std::fs::write(dir.join("tiny_v1_f16.rvne"), tiny.to_v1_bytes(DType::F16)?)?;
    let dims = Dims {
        input_dim: 3,
        d_model: 4,
        q_heads: 2,
        kv_heads: 1,
        head_dim: 3,
        layers: 2,
        classes: 3,
        mlp_hidden: 5,
    };
    let arch = Architecture {
        input_norm: true,
        embed: true,
        positional: Positional::Sinusoidal,
        pre_norm: true,
        biases: true,
        final_norm: true,
        pooling: Pooling::Last,
        attention: AttentionBackend::Sparse,
        running_norm: false,
    };
    let pattern = PatternSpec::new(8, 4, &[0, 7], true, true, false)?;
    let mut full = reference_init(&ModelMeta::new(dims, arch, pattern), 42, DType::F32)?;
    full.class_names = vec!["wave".into(), "circle".into(), "none".into()];
    full.feature_names = vec!["amp0".into(), "amp1".into(), "φ".into()];
    full.metadata = vec![
        ("trained_by".into(), "aether train".into()),
        ("epochs".into(), "12".into()),
    ];
    std::fs::write(dir.join("full_v2_f32.rvne"), full.to_v2_bytes(DType::F32)?)?;
    std::fs::write(dir.join("full_v2_f16.rvne"), full.to_v2_bytes(DType::F16)?)?;
    Ok(())
}
