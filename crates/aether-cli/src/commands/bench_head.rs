//! Head benchmarks for `aether bench`: forward latency of the AETHER default head
//! (2 layers, D 16, 4 q heads, 1 kv head, dim 32) at N = 100, 256, 1000, sparse vs
//! dense, and the cost of one streaming push at T = 1k and 15k cached positions.
//!
//! Each figure is the median over several timed batches; besides wall time it reports
//! the thread's on-CPU time (`/proc/thread-self/schedstat`, Linux) so a loaded machine
//! does not hide the cost of the code itself.

use std::time::{Duration, Instant};

use aether_head::{Backend, EvictionPolicy, HeadConfig, Stream, TemporalHead, Workspace};
use anyhow::Result;
use serde_json::json;

/// The thread's on-CPU nanoseconds so far, when the kernel exposes them.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Median wall and CPU time per call of `f` over `batches` batches of `per_batch` calls.
fn measure(batches: usize, per_batch: usize, mut f: impl FnMut()) -> (f64, Option<f64>) {
    f();
    let mut wall = Vec::with_capacity(batches);
    let mut cpu = Vec::with_capacity(batches);
    for _ in 0..batches {
        let c0 = thread_cpu_ns();
        let t0 = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        let w = t0.elapsed();
        wall.push(w.as_secs_f64() / per_batch as f64);
        if let (Some(a), Some(b)) = (c0, thread_cpu_ns()) {
            cpu.push((b - a) as f64 * 1e-9 / per_batch as f64);
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let c = (cpu.len() == batches).then(|| med(&mut cpu));
    (med(&mut wall), c)
}

/// Calls per batch so that one batch takes about `target`.
fn calibrate(target: Duration, mut f: impl FnMut()) -> usize {
    let t0 = Instant::now();
    f();
    let one = t0.elapsed().max(Duration::from_nanos(50));
    ((target.as_secs_f64() / one.as_secs_f64()) as usize).clamp(1, 1_000_000)
}

fn reference_weights(cfg: &HeadConfig) -> Vec<f32> {
    let mut rng = aether_rvne::XorShift64Star::new(aether_rvne::REFERENCE_SEED);
    (0..cfg.num_weights().unwrap_or(0))
        .map(|_| rng.next_weight())
        .collect()
}

fn frames(n: usize, f: usize) -> Vec<f32> {
    (0..n * f).map(|i| ((i as f32) * 0.37).sin()).collect()
}

/// Runs the head benchmarks, prints a table and returns the figures as JSON.
// Called from `aether bench` (commands/bench.rs), which is wired by its owner.
#[allow(dead_code)]
pub fn run(quick: bool) -> Result<serde_json::Value> {
    let cfg = HeadConfig::aether_default();
    let w = reference_weights(&cfg);
    let sparse = TemporalHead::from_flat(cfg.clone(), &w)?;
    let dense = sparse.clone().with_backend(Backend::Dense);
    let (batches, target) = if quick {
        (3, Duration::from_millis(20))
    } else {
        (9, Duration::from_millis(150))
    };
    println!("head: AETHER default (L 2, D 16, Hq 4, Hkv 1, dh 32, C 4), one thread");
    println!(
        "{:<22} {:>7} {:>12} {:>12} {:>12}",
        "benchmark", "N / T", "wall", "cpu", "dense/sparse"
    );
    let fmt = |s: f64| {
        if s >= 1e-3 {
            format!("{:.3} ms", s * 1e3)
        } else {
            format!("{:.2} µs", s * 1e6)
        }
    };
    let mut fwd = Vec::new();
    for n in [100usize, 256, 1000] {
        let x = frames(n, cfg.features);
        let mut row = serde_json::Map::new();
        row.insert("n".into(), json!(n));
        let mut cpu_pair = [0.0f64; 2];
        for (k, (name, head)) in [("sparse", &sparse), ("dense", &dense)]
            .into_iter()
            .enumerate()
        {
            let mut ws = Workspace::new(head, n)?;
            let mut logits = [0.0f32; 4];
            let mut call = || {
                head.forward_into(std::hint::black_box(&x), &mut ws, &mut logits)
                    .expect("forward on finite input");
            };
            let per = calibrate(target, &mut call);
            let (wall, cpu) = measure(batches, per, &mut call);
            cpu_pair[k] = cpu.unwrap_or(wall);
            let ratio = if k == 1 {
                format!("{:.1}x", cpu_pair[1] / cpu_pair[0])
            } else {
                String::new()
            };
            println!(
                "{:<22} {:>7} {:>12} {:>12} {:>12}",
                format!("forward {name}"),
                n,
                fmt(wall),
                cpu.map_or("-".into(), fmt),
                ratio
            );
            row.insert(format!("{name}_wall_ms"), json!(wall * 1e3));
            row.insert(format!("{name}_cpu_ms"), json!(cpu.map(|c| c * 1e3)));
        }
        fwd.push(serde_json::Value::Object(row));
    }
    let mut push = Vec::new();
    for t in [1_000usize, 15_000] {
        // A ring of T positions prefilled to T: every timed push attends a T-long history.
        let mut s = Stream::new(&sparse, t, EvictionPolicy::SlidingWindow)?;
        let x = frames(t, cfg.features);
        for fr in x.chunks(cfg.features) {
            s.push(&sparse, fr)?;
        }
        let mut i = 0usize;
        let f = cfg.features;
        let mut call = || {
            i = (i + 1) % t;
            std::hint::black_box(s.push(&sparse, &x[i * f..(i + 1) * f]).expect("push")[0]);
        };
        let per = calibrate(target, &mut call);
        let (wall, cpu) = measure(batches, per, &mut call);
        println!(
            "{:<22} {:>7} {:>12} {:>12} {:>12}",
            "stream push (sparse)",
            t,
            fmt(wall),
            cpu.map_or("-".into(), fmt),
            ""
        );
        push.push(json!({"t": t, "wall_us": wall * 1e6, "cpu_us": cpu.map(|c| c * 1e6), "bytes": s.bytes()}));
    }
    let ws_bytes = sparse.workspace_bytes(256)?;
    println!(
        "working set: forward N=256 workspace {} B, weights {} B (borrowed from the blob)",
        ws_bytes,
        sparse.weight_bytes()
    );
    Ok(json!({
        "config": "aether_default L2 D16 Hq4 Hkv1 dh32 C4",
        "forward": fwd,
        "stream_push": push,
        "workspace_bytes_n256": ws_bytes,
        "weight_bytes": sparse.weight_bytes(),
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quick_run_reports_every_figure() {
        let v = super::run(true).unwrap();
        assert_eq!(v["forward"].as_array().unwrap().len(), 3);
        assert_eq!(v["stream_push"].as_array().unwrap().len(), 2);
        for r in v["forward"].as_array().unwrap() {
            assert!(r["sparse_wall_ms"].as_f64().unwrap() > 0.0);
            assert!(r["dense_wall_ms"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(v["weight_bytes"], 41_216);
    }
}
