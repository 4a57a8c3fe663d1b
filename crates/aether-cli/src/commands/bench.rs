//! `aether bench`: kernel benchmarks as a table or one JSON document.
//!
//! Sections (one thread unless stated; thread CPU time per call, wall time for the
//! 2-thread rows):
//! - prefill: our dense vs our sparse, N = 64…8192, q_heads = kv_heads = 4, head_dim 32,
//!   W 16, B 32, globals [0], causal; edges per query and ns per edge;
//! - GQA/MQA: q_heads 4 with kv_heads 4, 2, 1 at N = 1024;
//! - threads: rayon with 2 threads vs serial (N = 4096, `--quick`: 1024; minimum wall time);
//! - decode: one `push` + one `decode` per step for the AETHER shape (q_heads 4,
//!   kv_heads 1, dim 32, W 32, B 16) at T = 1k, 15k, 100k positions, f32 and f16
//!   caches, and the KV memory each holds at T.
//!
//! - head: the AETHER default head's forward (N = 100, 256, 1000, sparse vs dense)
//!   and streaming push cost (T = 1k, 15k), from `bench_head`.
//!
//! The reference-crate columns live in the kernel's `bench_table` example (the
//! reference crate is a dev-dependency only).

mod head;

use std::hint::black_box;
use std::time::Instant;

use aether_kernel::{
    dense_attention, dense_attention_par, simd, sparse_attention, sparse_attention_par, KvCacheOf,
    KvElem, SparsePattern, Tensor3,
};
use anyhow::Context;
use serde_json::{json, Value};

/// Arguments of `aether bench`.
#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Fewer sizes and shorter timing (about 2 s in all on the 2-core development machine).
    #[arg(long)]
    pub quick: bool,
}

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

fn tensor(n: usize, h: usize, seed: u64) -> anyhow::Result<Tensor3> {
    Ok(Tensor3::from_vec(data(n * h * DIM, seed), n, h, DIM)?)
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

/// Mean cost in ms of one call of `f`: after a warm-up call, batches of about 5 ms
/// run until `budget_s` of CPU time (and at least 3 calls) is spent; thread CPU
/// time when available, else wall time.
pub(crate) fn median_ms(budget_s: f64, mut f: impl FnMut()) -> f64 {
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
            return spent * 1e3 / calls as f64;
        }
    }
}

/// Minimum wall time in ms over repeated calls: for the multi-thread rows, where one
/// thread's CPU time says nothing; the minimum filters out preempted runs.
fn wall_min_ms(budget_s: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::MAX;
    let mut calls = 0;
    while calls < 5 || (start.elapsed().as_secs_f64() < budget_s * 4.0 && calls < 500) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        calls += 1;
    }
    best
}

fn prefill_pattern() -> SparsePattern {
    SparsePattern {
        window: 16,
        block_size: 32,
        global_tokens: vec![0],
        causal: true,
        log_stride: true,
        landmarks: true,
    }
}

/// Our dense and sparse prefill at `n` with `hq` query and `hk` kv heads.
fn prefill(n: usize, hq: usize, hk: usize, budget: f64) -> anyhow::Result<Value> {
    let p = prefill_pattern();
    let (q, k, v) = (tensor(n, hq, 1)?, tensor(n, hk, 2)?, tensor(n, hk, 3)?);
    let dense_ms = median_ms(budget, || {
        black_box(dense_attention(&q, &k, &v, true).expect("valid shapes"));
    });
    let sparse_ms = median_ms(budget, || {
        black_box(sparse_attention(&p, &q, &k, &v).expect("valid shapes"));
    });
    let epq = p.edges(n) as f64 / n as f64;
    Ok(json!({
        "n": n, "q_heads": hq, "kv_heads": hk,
        "dense_ms": dense_ms, "sparse_ms": sparse_ms,
        "dense_over_sparse": dense_ms / sparse_ms,
        "edges_per_query": epq,
        "ns_per_edge": sparse_ms * 1e6 / (epq * n as f64 * hq as f64),
    }))
}

fn threads(n: usize, budget: f64) -> anyhow::Result<Value> {
    let p = prefill_pattern();
    let (q, k, v) = (tensor(n, 4, 1)?, tensor(n, 4, 2)?, tensor(n, 4, 3)?);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .context("building a 2-thread pool")?;
    let s1 = wall_min_ms(budget, || {
        black_box(sparse_attention(&p, &q, &k, &v).expect("valid shapes"));
    });
    let d1 = wall_min_ms(budget, || {
        black_box(dense_attention(&q, &k, &v, true).expect("valid shapes"));
    });
    let (s2, d2) = pool.install(|| {
        (
            wall_min_ms(budget, || {
                black_box(sparse_attention_par(&p, &q, &k, &v).expect("valid shapes"));
            }),
            wall_min_ms(budget, || {
                black_box(dense_attention_par(&q, &k, &v, true).expect("valid shapes"));
            }),
        )
    });
    Ok(json!({
        "n": n, "threads": 2,
        "sparse_1t_ms": s1, "sparse_2t_ms": s2, "sparse_scaling": s1 / s2,
        "dense_1t_ms": d1, "dense_2t_ms": d2, "dense_scaling": d1 / d2,
    }))
}

/// Minimum over rounds of the mean wall µs per (push + decode) step starting from a cache
/// holding `t` positions (`t/4`, at most 4096, steps per round so T stays near `t`),
/// and the KV bytes of a cache of capacity `t` holding `t` positions.
fn decode<S: KvElem>(t: usize, rounds: usize) -> anyhow::Result<(f64, usize)> {
    let (hq, hk) = (4, 1);
    let p = SparsePattern::default();
    let steps = (t / 4).clamp(1, 4096);
    let pool = 257;
    let rows = data(pool * hk * DIM * 2, 9);
    let qrows = data(pool * hq * DIM, 10);
    let row = |i: usize| {
        let o = (i % pool) * hk * DIM * 2;
        (
            &rows[o..o + hk * DIM],
            &rows[o + hk * DIM..o + 2 * hk * DIM],
        )
    };
    let mut sized = KvCacheOf::<S>::try_new(t, hk, DIM, p.block_size)?;
    for i in 0..t {
        let (kr, vr) = row(i);
        sized.push(kr, vr)?;
    }
    let bytes = sized.bytes();
    drop(sized);
    let mut cache = KvCacheOf::<S>::try_new(t + steps, hk, DIM, p.block_size)?;
    cache.reserve_decode(&p, hq)?;
    let mut out = vec![0.0f32; hq * DIM];
    let mut means = Vec::new();
    for _ in 0..rounds {
        cache.reset();
        for i in 0..t {
            let (kr, vr) = row(i);
            cache.push(kr, vr)?;
        }
        let w0 = Instant::now();
        for i in t..t + steps {
            let (kr, vr) = row(i);
            cache.push(kr, vr)?;
            let qo = (i % pool) * hq * DIM;
            cache.decode(&p, &qrows[qo..qo + hq * DIM], &mut out)?;
            black_box(&out);
        }
        means.push(w0.elapsed().as_secs_f64() * 1e6 / steps as f64);
    }
    // Minimum over rounds: a round is short enough to often run unpreempted.
    Ok((means.iter().copied().fold(f64::MAX, f64::min), bytes))
}

/// Runs `aether bench`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let doc = collect(args.quick, !args.json)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}

/// Runs every section; prints tables as it goes when `print` is set.
pub fn collect(quick: bool, print: bool) -> anyhow::Result<Value> {
    let budget = if quick { 0.05 } else { 0.3 };
    let level = simd::active_level().name();
    let ns: &[usize] = if quick {
        &[64, 256, 1024]
    } else {
        &[64, 128, 256, 512, 1024, 2048, 4096, 8192]
    };
    if print {
        println!("aether bench — simd {level}, one thread unless stated");
        println!();
        println!("prefill: q_heads = kv_heads = 4, head_dim 32, W 16, B 32, globals [0], causal");
        println!(
            "{:>5} | {:>10} | {:>11} | {:>13} | {:>10} | {:>8}",
            "N", "dense", "sparse", "dense/sparse", "edges/q", "ns/edge"
        );
    }
    let mut pre = Vec::new();
    for &n in ns {
        let r = prefill(n, 4, 4, budget)?;
        if print {
            println!(
                "{:>5} | {:>7.3} ms | {:>8.4} ms | {:>12.2}× | {:>10.1} | {:>8.2}",
                n,
                r["dense_ms"].as_f64().unwrap_or(f64::NAN),
                r["sparse_ms"].as_f64().unwrap_or(f64::NAN),
                r["dense_over_sparse"].as_f64().unwrap_or(f64::NAN),
                r["edges_per_query"].as_f64().unwrap_or(f64::NAN),
                r["ns_per_edge"].as_f64().unwrap_or(f64::NAN),
            );
        }
        pre.push(r);
    }
    if print {
        println!();
        println!("GQA/MQA vs MHA: N = 1024, q_heads 4");
        println!("{:>8} | {:>10} | {:>11}", "kv_heads", "dense", "sparse");
    }
    let mut gqa = Vec::new();
    for hk in [4, 2, 1] {
        let r = prefill(1024, 4, hk, budget)?;
        if print {
            println!(
                "{:>8} | {:>7.3} ms | {:>8.4} ms",
                hk,
                r["dense_ms"].as_f64().unwrap_or(f64::NAN),
                r["sparse_ms"].as_f64().unwrap_or(f64::NAN),
            );
        }
        gqa.push(r);
    }
    let tn = if quick { 1024 } else { 4096 };
    let th = threads(tn, budget)?;
    if print {
        println!();
        println!("2-thread scaling (rayon), N = {tn}");
        println!(
            "sparse {:.3} ms -> {:.3} ms ({:.2}×), dense {:.3} ms -> {:.3} ms ({:.2}×)",
            th["sparse_1t_ms"].as_f64().unwrap_or(f64::NAN),
            th["sparse_2t_ms"].as_f64().unwrap_or(f64::NAN),
            th["sparse_scaling"].as_f64().unwrap_or(f64::NAN),
            th["dense_1t_ms"].as_f64().unwrap_or(f64::NAN),
            th["dense_2t_ms"].as_f64().unwrap_or(f64::NAN),
            th["dense_scaling"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let ts: &[usize] = if quick {
        &[1_000, 15_000]
    } else {
        &[1_000, 15_000, 100_000]
    };
    let rounds = if quick { 5 } else { 25 };
    if print {
        println!();
        println!(
            "decode step (push + decode), AETHER shape: q_heads 4, kv_heads 1, dim 32, W 32, B 16"
        );
        println!(
            "{:>7} | {:>10} | {:>10} | {:>11} | {:>11}",
            "T", "f32 µs", "f16 µs", "f32 KV", "f16 KV"
        );
    }
    let mut dec = Vec::new();
    for &t in ts {
        let (f32_us, f32_b) = decode::<f32>(t, rounds)?;
        let (f16_us, f16_b) = decode::<half::f16>(t, rounds)?;
        if print {
            println!(
                "{:>7} | {:>10.3} | {:>10.3} | {:>8.2} MB | {:>8.2} MB",
                t,
                f32_us,
                f16_us,
                f32_b as f64 / 1e6,
                f16_b as f64 / 1e6
            );
        }
        dec.push(json!({
            "t": t, "rounds": rounds,
            "f32_us_per_step": f32_us, "f16_us_per_step": f16_us,
            "f32_kv_bytes": f32_b, "f16_kv_bytes": f16_b,
        }));
    }
    Ok(json!({
        "simd": level,
        "quick": quick,
        "prefill": pre,
        "gqa": gqa,
        "threads": th,
        "decode": dec,
        "head": head::run(quick, print)?,
    }))
}
