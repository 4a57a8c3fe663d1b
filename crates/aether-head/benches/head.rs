//! Head benchmarks: forward latency of the AETHER default head (2 layers, D 16,
//! 4 q heads, 1 kv head, dim 32) at N = 100, 256, 1000, sparse vs dense, and the
//! cost of one streaming push at T = 1k and 15k cached positions.

use aether_head::{AttentionBackend, EvictionPolicy, HeadConfig, Stream, TemporalHead, Workspace};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};

fn weights(cfg: &HeadConfig) -> Vec<f32> {
    let mut x: u64 = 0xC511_0007_DEAD_BEEF;
    (0..cfg.num_weights().unwrap())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (((x.wrapping_mul(2685821657736338717) >> 32) as u32) as f32 / u32::MAX as f32 - 0.5)
                * 0.2
        })
        .collect()
}

fn frames(n: usize) -> Vec<f32> {
    (0..n * 16).map(|i| ((i as f32) * 0.37).sin()).collect()
}

fn forward(c: &mut Criterion) {
    let cfg = HeadConfig::aether_default();
    let w = weights(&cfg);
    let sparse = TemporalHead::from_flat(cfg, &w).unwrap();
    let dense = sparse.clone().with_backend(AttentionBackend::Dense);
    let mut g = c.benchmark_group("head_forward");
    for n in [100usize, 256, 1000] {
        let x = frames(n);
        for (name, head) in [("sparse", &sparse), ("dense", &dense)] {
            let mut ws = Workspace::new(head, n).unwrap();
            let mut logits = [0.0f32; 4];
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    head.forward_into(black_box(&x), &mut ws, &mut logits)
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

fn push(c: &mut Criterion) {
    let cfg = HeadConfig::aether_default();
    let w = weights(&cfg);
    let head = TemporalHead::from_flat(cfg, &w).unwrap();
    let mut g = c.benchmark_group("head_stream_push");
    for t in [1_000usize, 15_000] {
        // A ring of T positions prefilled to T: every timed push attends a T-long history.
        let mut s = Stream::new(&head, t, EvictionPolicy::SlidingWindow).unwrap();
        let x = frames(t);
        for f in x.chunks(16) {
            s.push(&head, f).unwrap();
        }
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("sparse", t), &t, |b, _| {
            b.iter(|| {
                i = (i + 1) % t;
                black_box(s.push(&head, &x[i * 16..(i + 1) * 16]).unwrap()[0]);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, forward, push);
criterion_main!(benches);
