//! Criterion benchmarks of the prefill kernels: our sparse and dense attention at
//! N = 256, 1024, 4096 (q_heads = kv_heads = 4, head_dim 32, W 16, B 32, globals [0],
//! causal, one thread), sparse at every available SIMD level (AVX-512 with the
//! query-tile path on and off), and MQA (kv_heads 1).
//! The reference-crate comparison is the `bench_table` example.
//!
//! Run: `cargo bench -p aether-kernel --bench attention`.

use std::hint::black_box;
use std::time::Duration;

use aether_kernel::simd::{Exec, SimdLevel};
use aether_kernel::{
    dense_attention, sparse_attention, sparse_attention_at, sparse_attention_with, SparsePattern,
    Tensor3,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn tensor(n: usize, h: usize, seed: u64) -> Tensor3 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..n * h * 32)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Tensor3::from_vec(data, n, h, 32).expect("shape")
}

fn pattern() -> SparsePattern {
    SparsePattern {
        window: 16,
        block_size: 32,
        global_tokens: vec![0],
        causal: true,
        log_stride: true,
        landmarks: true,
    }
}

fn prefill(c: &mut Criterion) {
    let p = pattern();
    let mut g = c.benchmark_group("prefill");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    for n in [256usize, 1024, 4096] {
        let (q, k, v) = (tensor(n, 4, 1), tensor(n, 4, 2), tensor(n, 4, 3));
        g.throughput(Throughput::Elements((p.edges(n) * 4) as u64));
        g.bench_with_input(BenchmarkId::new("sparse", n), &n, |b, _| {
            b.iter(|| black_box(sparse_attention(&p, &q, &k, &v).expect("valid")))
        });
        g.throughput(Throughput::Elements((n * (n + 1) / 2 * 4) as u64));
        g.bench_with_input(BenchmarkId::new("dense", n), &n, |b, _| {
            b.iter(|| black_box(dense_attention(&q, &k, &v, true).expect("valid")))
        });
    }
    g.finish();
}

fn simd_levels(c: &mut Criterion) {
    let p = pattern();
    let n = 1024;
    let (q, k, v) = (tensor(n, 4, 1), tensor(n, 4, 2), tensor(n, 4, 3));
    let mut g = c.benchmark_group("sparse_simd_level");
    g.measurement_time(Duration::from_secs(2)).sample_size(20);
    for level in SimdLevel::ALL.into_iter().filter(|l| l.is_available()) {
        g.bench_function(level.name(), |b| {
            b.iter(|| black_box(sparse_attention_at(level, &p, &q, &k, &v).expect("valid")))
        });
    }
    // The AVX-512 level runs the query-tile path; the same level on the row kernel:
    if SimdLevel::Avx512.is_available() {
        let rows = Exec::at(SimdLevel::Avx512).with_query_tiles(false);
        g.bench_function("avx512 rows (tiles off)", |b| {
            b.iter(|| black_box(sparse_attention_with(rows, &p, &q, &k, &v).expect("valid")))
        });
    }
    g.finish();
}

fn mqa(c: &mut Criterion) {
    let p = pattern();
    let n = 1024;
    let (q, k, v) = (tensor(n, 4, 1), tensor(n, 1, 2), tensor(n, 1, 3));
    let mut g = c.benchmark_group("mqa_1024");
    g.measurement_time(Duration::from_secs(2)).sample_size(20);
    g.bench_function("sparse", |b| {
        b.iter(|| black_box(sparse_attention(&p, &q, &k, &v).expect("valid")))
    });
    g.bench_function("dense", |b| {
        b.iter(|| black_box(dense_attention(&q, &k, &v, true).expect("valid")))
    });
    g.finish();
}

criterion_group!(benches, prefill, simd_levels, mqa);
criterion_main!(benches);
