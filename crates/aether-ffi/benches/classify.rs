//! Latency of `ruv_temporal_classify` (the forward over a full window) and
//! `ruv_temporal_push` for the AETHER default head, through the C ABI.
//!
//! `cargo bench -p aether-ffi --bench classify`

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};

use aether_ffi::{
    ruv_temporal_classify, ruv_temporal_destroy, ruv_temporal_init, ruv_temporal_push, ESP_OK,
};
use aether_rvne::{reference_init_v1_bytes, DType, Dims, REFERENCE_SEED};

fn bench(c: &mut Criterion) {
    let blob = reference_init_v1_bytes(&Dims::AETHER_DEFAULT, REFERENCE_SEED, DType::F32).unwrap();
    let mut g = c.benchmark_group("ruv_temporal");
    for window in [64u32, 128, 256] {
        let mut ctx = std::ptr::null_mut();
        // SAFETY: `blob` outlives the context (destroyed at the end of the iteration).
        let e = unsafe { ruv_temporal_init(blob.as_ptr(), blob.len(), 16, window, 4, &mut ctx) };
        assert_eq!(e, ESP_OK);
        let frames: Vec<f32> = (0..(window as usize + 7) * 16)
            .map(|i| ((i / 16) as f32 * 0.1 + (i % 16) as f32 * 0.3).sin())
            .collect();
        for fr in frames.chunks(16) {
            // SAFETY: live context, 16 floats.
            assert_eq!(unsafe { ruv_temporal_push(ctx, fr.as_ptr()) }, ESP_OK);
        }
        let mut logits = [0.0f32; 4];
        g.bench_with_input(BenchmarkId::new("classify", window), &window, |b, _| {
            // SAFETY: live context, 4 writable floats.
            b.iter(|| unsafe { ruv_temporal_classify(ctx, black_box(logits.as_mut_ptr()), 4) })
        });
        if window == 256 {
            let fr = &frames[..16];
            g.bench_function("push", |b| {
                // SAFETY: live context, 16 floats.
                b.iter(|| unsafe { ruv_temporal_push(ctx, black_box(fr.as_ptr())) })
            });
        }
        // SAFETY: live context, not used afterwards.
        unsafe { ruv_temporal_destroy(ctx) };
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
