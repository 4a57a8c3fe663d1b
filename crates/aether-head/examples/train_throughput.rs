//! Training throughput of the default head: windows per second at N = 256.
//!
//! `cargo run --release -p aether-head --features train --example train_throughput -- [threads] [n] [features] [epochs]`
//! (defaults 2, 256, 16, 3). Prints one line per epoch, the best epoch's wall-clock rate
//! and, on Linux, the rate per CPU-second of the whole run (process user + system time
//! from `/proc/self/stat`), which stays meaningful on a machine shared with other jobs.

use std::ops::ControlFlow;

use aether_head::train::{train, Architecture, TrainConfig, TrainEvent, Window};

/// Process CPU seconds (user + system) from `/proc/self/stat`, if readable.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are integers"))
        .collect();
    let threads = args.first().copied().unwrap_or(2);
    let n = args.get(1).copied().unwrap_or(256);
    let f = args.get(2).copied().unwrap_or(16);
    let epochs = args.get(3).copied().unwrap_or(3);
    let count = 512;
    let mut s = 0x1234_5678_9ABC_DEF1u64;
    let data: Vec<(Vec<f32>, usize)> = (0..count)
        .map(|i| {
            let x = (0..n * f)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect();
            (x, i % 4)
        })
        .collect();
    let windows: Vec<Window> = data
        .iter()
        .map(|(x, y)| Window {
            frames: x,
            label: *y,
        })
        .collect();
    let arch = Architecture::trainable(f, 4);
    let cfg = TrainConfig {
        epochs,
        threads,
        ..TrainConfig::default()
    };
    println!(
        "default head (L {}, Hq {}, Hkv {}, dh {}, D {}, MLP {}), N {n}, F {f}, {count} windows, batch {}, {threads} threads",
        arch.layers, arch.q_heads, arch.kv_heads, arch.head_dim, arch.d_model, arch.mlp_hidden, cfg.batch_size
    );
    let mut best = 0.0f64;
    let cpu0 = cpu_seconds();
    let wall0 = std::time::Instant::now();
    train(arch, &cfg, &windows, &[], |e| {
        if let TrainEvent::Epoch(s) = e {
            println!(
                "epoch {}: {:.0} windows/s, loss {:.4}",
                s.epoch, s.windows_per_sec, s.train_loss
            );
            best = best.max(s.windows_per_sec);
        }
        ControlFlow::Continue(())
    })
    .expect("training runs");
    let wall = wall0.elapsed().as_secs_f64();
    println!("best: {best:.0} windows/s (wall clock)");
    if let (Some(a), Some(b)) = (cpu0, cpu_seconds()) {
        let total = (count * epochs) as f64;
        println!(
            "cpu: {:.2} s over {:.2} s wall for {total} windows: {:.0} windows per CPU-second",
            b - a,
            wall,
            total / (b - a).max(1e-9)
        );
    }
}
