//! Head benchmarks for `aether bench`: forward latency of the AETHER default head
//! (2 layers, D 16, 4 q heads, 1 kv head, dim 32) at N = 100, 256, 1000, sparse vs
//! dense, and the cost of one streaming push at T = 1k and 15k cached positions.
//!
//! Timing is `aether bench`'s: mean thread CPU time per call (wall time where the
//! platform has no per-thread CPU clock), so a loaded machine does not inflate it.

use aether_head::{Backend, EvictionPolicy, HeadConfig, Stream, TemporalHead, Workspace};
use anyhow::Result;
use serde_json::json;

use super::median_ms;

fn reference_weights(cfg: &HeadConfig) -> Vec<f32> {
    let mut rng = aether_rvne::XorShift64Star::new(aether_rvne::REFERENCE_SEED);
    (0..cfg.num_weights().unwrap_or(0))
        .map(|_| rng.next_weight())
        .collect()
}

fn frames(n: usize, f: usize) -> Vec<f32> {
    (0..n * f).map(|i| ((i as f32) * 0.37).sin()).collect()
}

/// Runs the head benchmarks, printing a table when `print` is set, and returns the
/// figures as JSON.
pub fn run(quick: bool, print: bool) -> Result<serde_json::Value> {
    let cfg = HeadConfig::aether_default();
    let w = reference_weights(&cfg);
    let sparse = TemporalHead::from_flat(cfg.clone(), &w)?;
    let dense = sparse.clone().with_backend(Backend::Dense);
    let budget = if quick { 0.05 } else { 0.3 };
    let fmt = |ms: f64| {
        if ms >= 1.0 {
            format!("{ms:.3} ms")
        } else {
            format!("{:.2} µs", ms * 1e3)
        }
    };
    if print {
        println!();
        println!("head: AETHER default (L 2, D 16, Hq 4, Hkv 1, dh 32, C 4), one thread");
        println!(
            "{:<22} {:>7} {:>12} {:>12}",
            "benchmark", "N / T", "per call", "dense/sparse"
        );
    }
    let mut fwd = Vec::new();
    for n in [100usize, 256, 1000] {
        let x = frames(n, cfg.features);
        let mut ms = [0.0f64; 2];
        for (k, head) in [&sparse, &dense].into_iter().enumerate() {
            let mut ws = Workspace::new(head, n)?;
            let mut logits = [0.0f32; 4];
            ms[k] = median_ms(budget, || {
                head.forward_into(std::hint::black_box(&x), &mut ws, &mut logits)
                    .expect("forward on finite input");
            });
        }
        if print {
            println!("{:<22} {:>7} {:>12}", "forward sparse", n, fmt(ms[0]));
            println!(
                "{:<22} {:>7} {:>12} {:>11.1}x",
                "forward dense",
                n,
                fmt(ms[1]),
                ms[1] / ms[0]
            );
        }
        fwd.push(json!({"n": n, "sparse_ms": ms[0], "dense_ms": ms[1]}));
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
        let ms = median_ms(budget, || {
            i = (i + 1) % t;
            std::hint::black_box(s.push(&sparse, &x[i * f..(i + 1) * f]).expect("push")[0]);
        });
        if print {
            println!("{:<22} {:>7} {:>12}", "stream push (sparse)", t, fmt(ms));
        }
        push.push(json!({"t": t, "us_per_push": ms * 1e3, "bytes": s.bytes()}));
    }
    let ws_bytes = sparse.workspace_bytes(256)?;
    if print {
        println!(
            "working set: forward N=256 workspace {} B, weights {} B (borrowed from the blob)",
            ws_bytes,
            sparse.weight_bytes()
        );
    }
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
        let v = super::run(true, false).unwrap();
        assert_eq!(v["forward"].as_array().unwrap().len(), 3);
        assert_eq!(v["stream_push"].as_array().unwrap().len(), 2);
        for r in v["forward"].as_array().unwrap() {
            assert!(r["sparse_ms"].as_f64().unwrap() > 0.0);
            assert!(r["dense_ms"].as_f64().unwrap() > 0.0);
        }
        assert_eq!(v["weight_bytes"], 41_216);
    }
}
