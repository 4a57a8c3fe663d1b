//! Golden test: the reference v1 init (docs/rvne-format.md) with a fixed input gives
//! the committed logits in `testdata/golden_v1_logits.txt` (to 1e-5).

use aether_head::{EvictionPolicy, HeadConfig, Stream, TemporalHead};

/// The reference init recipe: xorshift64*, seed 0xC511_0007_DEAD_BEEF, high 32 bits.
fn reference_weights(n: usize) -> Vec<f32> {
    let mut x: u64 = 0xC511_0007_DEAD_BEEF;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = (x.wrapping_mul(2685821657736338717) >> 32) as u32;
            ((b as f32) / (u32::MAX as f32) - 0.5) * 0.2
        })
        .collect()
}

/// The fixed input: 64 frames of 16 features, `sin(0.1·t + 0.3·f) + 0.05·f`.
fn fixed_input() -> Vec<f32> {
    (0..64)
        .flat_map(|t| {
            (0..16).map(move |f| (0.1 * t as f32 + 0.3 * f as f32).sin() + 0.05 * f as f32)
        })
        .collect()
}

fn golden() -> Vec<f32> {
    let text = include_str!("../testdata/golden_v1_logits.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn reference_v1_init_gives_committed_logits() {
    let cfg = HeadConfig::aether_default();
    let w = reference_weights(cfg.num_weights().unwrap());
    let head = TemporalHead::from_flat(cfg, &w).unwrap();
    let logits = head.forward(&fixed_input()).unwrap();
    let want = golden();
    assert_eq!(logits.len(), want.len());
    for (a, b) in logits.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5, "{logits:?} vs golden {want:?}");
    }
    // The stream reaches the same logits after the last frame.
    let mut s = Stream::new(&head, 64, EvictionPolicy::Error).unwrap();
    for f in fixed_input().chunks(16) {
        s.push(&head, f).unwrap();
    }
    for (a, b) in s.logits().iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5);
    }
}

#[test]
fn reference_v1_blob_loads_and_gives_committed_logits() {
    let bytes = include_bytes!("../testdata/reference_v1.rvne");
    // The committed blob is the reference recipe, byte for byte (docs/rvne-format.md).
    let rebuilt = aether_rvne::reference_init_v1_bytes(
        &aether_rvne::Dims::AETHER_DEFAULT,
        aether_rvne::REFERENCE_SEED,
        aether_rvne::DType::F32,
    )
    .unwrap();
    assert_eq!(&rebuilt[..], &bytes[..]);
    let head = TemporalHead::from_blob(bytes).unwrap();
    assert_eq!(head.config(), &HeadConfig::aether_default());
    let logits = head.forward(&fixed_input()).unwrap();
    for (a, b) in logits.iter().zip(&golden()) {
        assert!((a - b).abs() <= 1e-5);
    }
}

#[test]
#[ignore = "regenerates testdata/golden_v1_logits.txt; run by hand after a deliberate change"]
fn regenerate_golden() {
    let cfg = HeadConfig::aether_default();
    let w = reference_weights(cfg.num_weights().unwrap());
    let head = TemporalHead::from_flat(cfg, &w).unwrap();
    let logits = head.forward(&fixed_input()).unwrap();
    let mut s = String::from(
        "# logits of the reference v1 init (docs/rvne-format.md recipe, D 16, Hq 4, Hkv 1, dh 32, L 2, C 4)\n\
         # on 64 frames u[t][f] = sin(0.1 t + 0.3 f) + 0.05 f; see tests/golden.rs\n",
    );
    for l in logits {
        s.push_str(&format!("{l:.9e}\n"));
    }
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/golden_v1_logits.txt"),
        s,
    )
    .unwrap();
    let blob = aether_rvne::reference_init_v1_bytes(
        &aether_rvne::Dims::AETHER_DEFAULT,
        aether_rvne::REFERENCE_SEED,
        aether_rvne::DType::F32,
    )
    .unwrap();
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/reference_v1.rvne"),
        blob,
    )
    .unwrap();
}
