//! Prefill benchmark table against the reference crate `ruvllm_sparse_attention` 0.1.1.
//!
//! N = 64…8192, q_heads = kv_heads = 4, head_dim 32, window 16, block 32, globals [0],
//! causal, log-stride + landmarks, one thread. Columns: reference dense, reference
//! sparse, our dense, our sparse, speedups, edges per query, ns per edge. The
//! reference dense is skipped above N = 4096 (1.5 s per call there).
//!
//! ```text
//! cargo run --release -p aether-kernel --example bench_table [-- --json] [--quick] [--plot FILE.svg]
//! ```
//! Timing: thread CPU time per call (the development machine is shared; wall time
//! would count time spent preempted), at least 0.3 s of CPU per cell (0.05 s with `--quick`).
//! Wall time of the same calls is reported beside it for our kernels: it includes
//! allocation, page faults and preemption, i.e. what a caller of the plain API sees;
//! "wall gain" is the reference sparse CPU time over our sparse wall time. "sp. into"
//! is `sparse_attention_into` on caller-owned output and scratch (CPU time), so
//! "plain/into" is what the allocating plain call costs on top.

use std::hint::black_box;
use std::time::Instant;

use aether_kernel::{
    dense_attention, simd, sparse_attention, sparse_attention_into, sparse_scratch_len,
    SparsePattern, Tensor3,
};
use plotters::prelude::*;
use ruvllm_sparse_attention as refc;
use ruvllm_sparse_attention::AttentionBackend;

const HEADS: usize = 4;
const DIM: usize = 32;

fn data(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// This thread's CPU time in ns (Linux `/proc/thread-self/schedstat`), if readable.
///
/// The machine is shared: wall time includes time the thread spent preempted, CPU
/// time does not, so per-call costs use CPU time when it is available.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Mean cost of one call of `f`, in ms: thread CPU time (wall time when CPU time
/// is unreadable) and wall time of the same calls.
#[derive(Clone, Copy)]
struct Cost {
    cpu: f64,
    wall: f64,
}

/// Mean cost of one call of `f`: after a warm-up call, batches of about 5 ms run
/// until `budget_s` of CPU time (and at least 3 calls) is spent.
fn median_ms(budget_s: f64, mut f: impl FnMut()) -> Cost {
    let w = Instant::now();
    f();
    let first = w.elapsed().as_secs_f64();
    let batch = ((0.005 / first.max(1e-9)) as usize).clamp(1, 10_000);
    let (c0, w0) = (cpu_ns(), Instant::now());
    let mut calls = 0usize;
    loop {
        for _ in 0..batch {
            f();
        }
        calls += batch;
        let spent = match (c0, cpu_ns()) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 * 1e-9,
            _ => w0.elapsed().as_secs_f64(),
        };
        if calls >= 3 && spent >= budget_s {
            let wall = w0.elapsed().as_secs_f64();
            return Cost {
                cpu: spent * 1e3 / calls as f64,
                wall: wall * 1e3 / calls as f64,
            };
        }
    }
}

struct Row {
    n: usize,
    edges_per_query: f64,
    ref_dense_ms: Option<f64>,
    ref_sparse_ms: f64,
    our_dense_ms: f64,
    our_sparse_ms: f64,
    our_dense_wall_ms: f64,
    our_sparse_wall_ms: f64,
    ref_sparse_wall_ms: f64,
    our_sparse_into_ms: f64,
}

impl Row {
    fn ns_per_edge(&self, ms: f64) -> f64 {
        ms * 1e6 / (self.edges_per_query * self.n as f64 * HEADS as f64)
    }
}

fn run(n: usize, budget: f64) -> Row {
    let p = SparsePattern {
        window: 16,
        block_size: 32,
        global_tokens: vec![0],
        causal: true,
        log_stride: true,
        landmarks: true,
    };
    let len = n * HEADS * DIM;
    let (qd, kd, vd) = (data(len, 1 + n as u64), data(len, 2), data(len, 3));
    let q = Tensor3::from_vec(qd.clone(), n, HEADS, DIM).expect("shape");
    let k = Tensor3::from_vec(kd.clone(), n, HEADS, DIM).expect("shape");
    let v = Tensor3::from_vec(vd.clone(), n, HEADS, DIM).expect("shape");
    let rq = refc::tensor::Tensor3::from_vec(qd, n, HEADS, DIM).expect("shape");
    let rk = refc::tensor::Tensor3::from_vec(kd, n, HEADS, DIM).expect("shape");
    let rv = refc::tensor::Tensor3::from_vec(vd, n, HEADS, DIM).expect("shape");
    let rs = refc::SubquadraticSparseAttention::new(refc::SparseAttentionConfig {
        window: 16,
        block_size: 32,
        global_tokens: vec![0],
        causal: true,
        use_log_stride: true,
        use_landmarks: true,
        sort_candidates: false,
    })
    .expect("config");
    let ref_dense_ms = (n <= 4096).then(|| {
        median_ms(budget, || {
            black_box(refc::dense_attention(&rq, &rk, &rv, true).expect("ref dense"));
        })
        .cpu
    });
    let ref_sparse_ms = median_ms(budget, || {
        black_box(rs.forward(&rq, &rk, &rv).expect("ref sparse"));
    });
    let our_dense_ms = median_ms(budget, || {
        black_box(dense_attention(&q, &k, &v, true).expect("dense"));
    });
    let our_sparse_ms = median_ms(budget, || {
        black_box(sparse_attention(&p, &q, &k, &v).expect("sparse"));
    });
    let mut out = Tensor3::zeros(n, HEADS, DIM).expect("shape");
    let mut scratch = vec![0.0f32; sparse_scratch_len(&p, n, HEADS, DIM).expect("scratch")];
    let our_sparse_into_ms = median_ms(budget, || {
        sparse_attention_into(&p, &q, &k, &v, &mut out, &mut scratch).expect("sparse into");
        black_box(&out);
    });
    Row {
        n,
        edges_per_query: p.edges(n) as f64 / n as f64,
        ref_dense_ms,
        ref_sparse_ms: ref_sparse_ms.cpu,
        our_dense_ms: our_dense_ms.cpu,
        our_sparse_ms: our_sparse_ms.cpu,
        our_dense_wall_ms: our_dense_ms.wall,
        our_sparse_wall_ms: our_sparse_ms.wall,
        ref_sparse_wall_ms: ref_sparse_ms.wall,
        our_sparse_into_ms: our_sparse_into_ms.cpu,
    }
}

fn plot(path: &str, rows: &[Row]) -> Result<(), Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let xmax = rows.iter().map(|r| r.n).max().unwrap_or(64) as f64 * 1.3;
        let ys = rows.iter().flat_map(|r| {
            [r.ref_sparse_ms, r.our_dense_ms, r.our_sparse_ms]
                .into_iter()
                .chain(r.ref_dense_ms)
        });
        let (ymin, ymax) = ys.fold((f64::MAX, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Prefill time vs N (4 heads, dim 32, W16, B32, causal, 1 thread)",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(
                (48.0..xmax).log_scale(),
                (ymin * 0.6..ymax * 1.6).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("sequence length N")
            .y_desc("time per call (ms)")
            .draw()?;
        type Get = fn(&Row) -> Option<f64>;
        let series: [(&str, RGBColor, Get); 4] = [
            ("reference dense", RED, |r| r.ref_dense_ms),
            ("reference sparse", MAGENTA, |r| Some(r.ref_sparse_ms)),
            ("our dense (flash tiles)", BLUE, |r| Some(r.our_dense_ms)),
            ("our sparse", GREEN, |r| Some(r.our_sparse_ms)),
        ];
        for (name, color, get) in series {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| get(r).map(|y| (r.n as f64, y)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
    }
    // Temp file + fsync + rename: never leave a partial plot behind.
    let tmp = format!("{path}.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(svg.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let plot_path = args
        .iter()
        .position(|a| a == "--plot")
        .and_then(|i| args.get(i + 1).cloned());
    let budget = if quick { 0.05 } else { 0.3 };
    let ns: &[usize] = if quick {
        &[64, 256, 1024]
    } else {
        &[64, 128, 256, 512, 1024, 2048, 4096, 8192]
    };
    let rows: Vec<Row> = ns.iter().map(|&n| run(n, budget)).collect();
    if json {
        let arr: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "n": r.n,
                    "edges_per_query": r.edges_per_query,
                    "ref_dense_ms": r.ref_dense_ms,
                    "ref_sparse_ms": r.ref_sparse_ms,
                    "our_dense_ms": r.our_dense_ms,
                    "our_sparse_ms": r.our_sparse_ms,
                    "ref_sparse_wall_ms": r.ref_sparse_wall_ms,
                    "our_dense_wall_ms": r.our_dense_wall_ms,
                    "our_sparse_wall_ms": r.our_sparse_wall_ms,
                    "sparse_speedup_vs_ref_wall": r.ref_sparse_ms / r.our_sparse_wall_ms,
                    "our_sparse_into_ms": r.our_sparse_into_ms,
                    "sparse_speedup_vs_ref": r.ref_sparse_ms / r.our_sparse_ms,
                    "dense_speedup_vs_ref": r.ref_dense_ms.map(|d| d / r.our_dense_ms),
                    "our_sparse_vs_our_dense": r.our_dense_ms / r.our_sparse_ms,
                    "ref_ns_per_edge": r.ns_per_edge(r.ref_sparse_ms),
                    "our_ns_per_edge": r.ns_per_edge(r.our_sparse_ms),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "config": {"q_heads": HEADS, "kv_heads": HEADS, "head_dim": DIM, "window": 16,
                       "block_size": 32, "global_tokens": [0], "causal": true, "threads": 1},
            "simd": simd::active_level().name(),
            "rows": arr,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "prefill, q_heads = kv_heads = {HEADS}, head_dim {DIM}, W 16, B 32, causal, 1 thread, simd {}",
            simd::active_level().name()
        );
        println!(
            "{:>5} | {:>11} | {:>12} | {:>10} | {:>11} | {:>9} | {:>9} | {:>10} | {:>6} | {:>8} | {:>8} | {:>10} | {:>11} | {:>9} | {:>11} | {:>10}",
            "N", "ref dense", "ref sparse", "our dense", "our sparse", "sp. gain", "dn. gain",
            "dense/sp.", "edges", "ref ns/e", "our ns/e", "dense wall", "sparse wall", "wall gain", "sp. into", "plain/into"
        );
        for r in &rows {
            let rd = r
                .ref_dense_ms
                .map_or("—".to_string(), |x| format!("{x:.3} ms"));
            let dg = r
                .ref_dense_ms
                .map_or("—".to_string(), |x| format!("{:.1}×", x / r.our_dense_ms));
            println!(
                "{:>5} | {:>11} | {:>9.3} ms | {:>7.3} ms | {:>8.4} ms | {:>8.1}× | {:>9} | {:>9.2}× | {:>6.1} | {:>8.1} | {:>8.2} | {:>7.3} ms | {:>8.4} ms | {:>8.1}× | {:>8.4} ms | {:>9.3}×",
                r.n,
                rd,
                r.ref_sparse_ms,
                r.our_dense_ms,
                r.our_sparse_ms,
                r.ref_sparse_ms / r.our_sparse_ms,
                dg,
                r.our_dense_ms / r.our_sparse_ms,
                r.edges_per_query,
                r.ns_per_edge(r.ref_sparse_ms),
                r.ns_per_edge(r.our_sparse_ms),
                r.our_dense_wall_ms,
                r.our_sparse_wall_ms,
                r.ref_sparse_ms / r.our_sparse_wall_ms,
                r.our_sparse_into_ms,
                r.our_sparse_ms / r.our_sparse_into_ms,
            );
        }
    }
    if let Some(path) = plot_path {
        plot(&path, &rows)?;
        eprintln!("wrote {path}");
    }
    Ok(())
}
