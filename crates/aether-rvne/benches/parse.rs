//! `BlobView::parse` cost against file size: v1 and v2 blobs from ~40 KB to ~10 MB.
//! Parse work is linear in the size (CRC over every byte, one pass over records and
//! table), so time per byte should stay flat across sizes.
//!
//! `cargo bench -p aether-rvne --bench parse`

use aether_rvne::{reference_init, BlobView, DType, Dims, ModelMeta};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for layers in [2usize, 16, 128, 512] {
        let dims = Dims {
            input_dim: 16,
            d_model: 16,
            q_heads: 4,
            kv_heads: 1,
            head_dim: 32,
            layers,
            classes: 4,
            mlp_hidden: 0,
        };
        let m = reference_init(&ModelMeta::v1_defaults(dims), 1, DType::F32).unwrap();
        for (label, bytes) in [
            ("v1", m.to_v1_bytes(DType::F32).unwrap()),
            ("v2", m.to_v2_bytes(DType::F32).unwrap()),
        ] {
            g.throughput(Throughput::Bytes(bytes.len() as u64));
            g.bench_with_input(BenchmarkId::new(label, bytes.len()), &bytes, |b, bytes| {
                b.iter(|| BlobView::parse(black_box(bytes)).unwrap().tensor_count())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
