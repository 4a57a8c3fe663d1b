//! Load benchmark of the live service: a replay fleet of `N` nodes × `R` frames/s of raw
//! CSI (64 subcarriers, one antenna) on loopback into an in-process service running the
//! default architecture (the shape `aether serve --demo` trains), for `D` seconds.
//! Reports frames sent and processed (loss counted end to end), rejections, kernel
//! drops, frame-to-result latency percentiles (from the service's histogram), CPU per
//! frame by stage and by thread, and memory per node. A benchmark, not a test: results
//! go to docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p aether-serve --example load -- --nodes 1000 --rate 100 --duration 60
//! cargo run --release -p aether-serve --example load -- --sweep 100,500,1000,1500 --duration 20 --svg docs/serve_load.svg
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_data::sim::{simulate_frames, Task};
use aether_head::live::KvPrecision;
use aether_head::StreamSettings;
use aether_serve::replay::{encode_recordings, run, ReplayConfig};
use aether_serve::{ServeConfig, Service};
use nix::sys::resource::UsageWho;

mod bench_common;
use bench_common::{cpu, default_model, rss_kib};

struct Opts {
    nodes: Vec<usize>,
    rate: f64,
    duration: f64,
    kv: KvPrecision,
    horizon: Option<usize>,
    shards: usize,
    model: Option<String>,
    svg: Option<String>,
    json: bool,
}

fn parse() -> Opts {
    let mut o = Opts {
        nodes: vec![1000],
        rate: 100.0,
        duration: 60.0,
        kv: KvPrecision::F32,
        horizon: None,
        shards: 0,
        model: None,
        svg: None,
        json: false,
    };
    let a: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < a.len() {
        let v = a.get(i + 1).cloned().unwrap_or_default();
        match a[i].as_str() {
            "--nodes" => o.nodes = vec![v.parse().expect("--nodes N")],
            "--sweep" => {
                o.nodes = v
                    .split(',')
                    .map(|x| x.parse().expect("--sweep N,N,…"))
                    .collect()
            }
            "--rate" => o.rate = v.parse().expect("--rate HZ"),
            "--duration" => o.duration = v.parse().expect("--duration S"),
            "--kv" => {
                o.kv = if v == "f16" {
                    KvPrecision::F16
                } else {
                    KvPrecision::F32
                }
            }
            "--horizon" => o.horizon = Some(v.parse().expect("--horizon N")),
            "--shards" => o.shards = v.parse().expect("--shards N"),
            "--model" => o.model = Some(v),
            "--svg" => o.svg = Some(v),
            "--json" => {
                o.json = true;
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

/// `(upper bound, cumulative count)` of a histogram summed over its label sets.
fn histogram(text: &str, name: &str) -> Vec<(f64, f64)> {
    let mut by_le: BTreeMap<u64, f64> = BTreeMap::new();
    let prefix = format!("{name}_bucket{{");
    for l in text.lines().filter(|l| l.starts_with(&prefix)) {
        let Some(le) = l.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        let v: f64 = l.rsplit_once(' ').unwrap().1.parse().unwrap();
        *by_le.entry(le.to_bits()).or_default() += v;
    }
    let mut v: Vec<(f64, f64)> = by_le
        .into_iter()
        .map(|(k, c)| (f64::from_bits(k), c))
        .collect();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    v
}

/// Upper bound of the bucket holding quantile `q`.
fn quantile(h: &[(f64, f64)], q: f64) -> f64 {
    let total = h.last().map_or(0.0, |x| x.1);
    h.iter()
        .find(|(_, c)| *c >= q * total)
        .map_or(f64::NAN, |x| x.0)
}

fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l.as_bytes().get(name.len()) == Some(&b' ')
                    || l.as_bytes().get(name.len()) == Some(&b'{'))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// CPU seconds per thread name prefix, from /proc/self/task/*/stat.
fn thread_cpu() -> BTreeMap<String, f64> {
    let tick = 100.0;
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in rd.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |x| x.1);
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 13 {
            continue;
        }
        let cpu =
            (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / tick;
        let name = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-')
            .to_string();
        *out.entry(name).or_default() += cpu;
    }
    out
}

struct Row {
    nodes: usize,
    sent: u64,
    processed: u64,
    lost: i64,
    rejected: f64,
    kernel_drops: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    stage_us: [f64; 3],
    cpu_us_per_frame: BTreeMap<String, f64>,
    node_kib: f64,
    rss_per_node_kib: f64,
    achieved: f64,
}

fn one(nodes: usize, o: &Opts, model: &[u8]) -> Row {
    let rss0 = rss_kib();
    let stream = o.horizon.map(|h| StreamSettings {
        kv: o.kv,
        ..StreamSettings::with_horizon(h)
    });
    let cfg = ServeConfig {
        udp: "127.0.0.1:0".parse().unwrap(),
        http: "127.0.0.1:0".parse().unwrap(),
        shards: o.shards,
        stream: stream.or_else(|| {
            (o.kv == KvPrecision::F16).then(|| StreamSettings {
                kv: KvPrecision::F16,
                ..StreamSettings::with_horizon(300)
            })
        }),
        max_node_rate: 0.0,
        ..ServeConfig::default()
    };
    let svc = Service::start(model, cfg).unwrap();
    let recs: Vec<_> = (0..16)
        .map(|i| simulate_frames(Task::Gesture, i % 4, 500 + i, 3))
        .collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let rcfg = ReplayConfig {
        to: svc.udp_addr(),
        nodes,
        rate_hz: o.rate,
        looped: true,
        duration: Some(Duration::from_secs_f64(o.duration)),
        ..ReplayConfig::default()
    };
    let cpu0 = thread_cpu();
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let fleet = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("replay".into())
            .spawn(move || {
                let rep = run(&datagrams, &rcfg, &stop).unwrap();
                // A finished thread leaves /proc/self/task: read its CPU time before it exits.
                (rep, cpu(UsageWho::RUSAGE_THREAD))
            })
            .unwrap()
    };
    let mut mid_nodes = Vec::new();
    let mut mid_rss = 0.0;
    while !fleet.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        if mid_nodes.is_empty() && t.elapsed().as_secs_f64() > o.duration * 0.6 {
            mid_rss = rss_kib();
            mid_nodes = svc.nodes();
        }
    }
    let (rep, replay_cpu) = fleet.join().unwrap();
    let mut cpu1 = thread_cpu();
    cpu1.insert("replay".into(), replay_cpu);
    // Let the queues drain.
    let mut last = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let f = svc.frames();
        if f == last && f > 0 {
            break;
        }
        last = f;
    }
    let text = svc.metrics().render();
    let processed = svc.frames();
    let lat = histogram(&text, "aether_frame_latency_seconds");
    let stage_sum = |s: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("aether_stage_seconds_sum") && l.contains(&format!("stage=\"{s}\""))
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let stage_n = |s: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("aether_stage_seconds_count") && l.contains(&format!("stage=\"{s}\""))
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let stage_us = ["decode", "features", "head"].map(|s| 1e6 * stage_sum(s) / stage_n(s).max(1.0));
    let rejected: f64 = text
        .lines()
        .filter(|l| l.starts_with("aether_packets_rejected_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    let kernel_drops = sample(&text, "aether_kernel_drops_total");
    let mut cpu = BTreeMap::new();
    for (k, v) in &cpu1 {
        let d = v - cpu0.get(k).copied().unwrap_or(0.0);
        if d > 0.0 {
            cpu.insert(k.clone(), 1e6 * d / processed.max(1) as f64);
        }
    }
    let node_bytes: f64 = mid_nodes
        .iter()
        .filter_map(|n| n["bytes"].as_f64())
        .sum::<f64>()
        / mid_nodes.len().max(1) as f64;
    svc.shutdown();
    Row {
        nodes,
        sent: rep.sent,
        processed,
        lost: rep.sent as i64 - processed as i64,
        rejected,
        kernel_drops,
        p50_ms: 1e3 * quantile(&lat, 0.5),
        p99_ms: 1e3 * quantile(&lat, 0.99),
        max_ms: 1e3
            * lat
                .iter()
                .rev()
                .find(|(_, c)| *c < lat.last().unwrap().1)
                .map_or(0.0, |x| x.0),
        stage_us,
        cpu_us_per_frame: cpu,
        node_kib: node_bytes / 1024.0,
        rss_per_node_kib: (mid_rss - rss0) / nodes as f64,
        achieved: rep.sent as f64 / rep.elapsed.as_secs_f64(),
    }
}

fn main() {
    let o = parse();
    let model = match &o.model {
        Some(p) => std::fs::read(p).expect("reading --model"),
        None => default_model(),
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!(
        "# aether serve load: rate {} Hz/node, {} s per point, kv {:?}, cores {}, CPU {cpu}",
        o.rate,
        o.duration,
        o.kv,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| nodes | frames/s offered | sent | processed | lost | rejected | kernel drops | p50 ms | p99 ms | decode µs | features µs | head µs | CPU µs/frame (service) | CPU µs/frame (replay) | KiB/node (state) | KiB/node (RSS) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for &n in &o.nodes {
        let r = one(n, &o, &model);
        let service: f64 = r
            .cpu_us_per_frame
            .iter()
            .filter(|(k, _)| k.starts_with("aether"))
            .map(|(_, v)| v)
            .sum();
        let replay = r.cpu_us_per_frame.get("replay").copied().unwrap_or(0.0);
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} |",
            r.nodes, r.achieved, r.sent, r.processed, r.lost, r.rejected, r.kernel_drops, r.p50_ms, r.p99_ms,
            r.stage_us[0], r.stage_us[1], r.stage_us[2], service, replay, r.node_kib, r.rss_per_node_kib
        );
        if o.json {
            println!(
                "{}",
                serde_json::json!({
                    "nodes": r.nodes, "sent": r.sent, "processed": r.processed, "lost": r.lost,
                    "rejected": r.rejected, "kernel_drops": r.kernel_drops, "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms, "max_bucket_ms": r.max_ms, "stage_us": r.stage_us,
                    "cpu_us_per_frame": r.cpu_us_per_frame, "node_kib": r.node_kib,
                    "rss_per_node_kib": r.rss_per_node_kib, "achieved_fps": r.achieved,
                })
            );
        }
        rows.push(r);
    }
    if let Some(path) = &o.svg {
        svg(path, &rows, o.rate);
        println!("wrote {path}");
    }
}

/// Loss (%) and p99 latency (ms) against fleet size, one SVG with two panels.
fn svg(path: &str, rows: &[Row], rate: f64) {
    let (w, h, pad) = (720.0, 300.0, 50.0);
    let xmax = rows.iter().map(|r| r.nodes).max().unwrap_or(1) as f64 * 1.05;
    let panel = |title: &str, vals: Vec<(f64, f64)>, ymax: f64, unit: &str, x0: f64| -> String {
        let pw = w / 2.0 - pad * 1.5;
        let ph = h - 2.0 * pad;
        let px = |x: f64| x0 + pad + x / xmax * pw;
        let py = |y: f64| pad + ph - y / ymax * ph;
        let mut s = format!(
            "<text x='{}' y='20' font-size='13' text-anchor='middle'>{title}</text>",
            x0 + pad + pw / 2.0
        );
        s += &format!(
            "<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='#333'/><line x1='{}' y1='{}' x2='{}' y2='{}' stroke='#333'/>",
            px(0.0), py(0.0), px(xmax), py(0.0), px(0.0), py(0.0), px(0.0), py(ymax)
        );
        for k in 0..=4 {
            let y = ymax * k as f64 / 4.0;
            s += &format!(
                "<text x='{}' y='{}' font-size='10' text-anchor='end'>{y:.1}{unit}</text>",
                px(0.0) - 4.0,
                py(y) + 3.0
            );
        }
        let pts: Vec<String> = vals
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(y.min(ymax))))
            .collect();
        s += &format!(
            "<polyline fill='none' stroke='#2e7dd1' stroke-width='2' points='{}'/>",
            pts.join(" ")
        );
        for (x, y) in &vals {
            s += &format!(
                "<circle cx='{:.1}' cy='{:.1}' r='3' fill='#2e7dd1'/>",
                px(*x),
                py(y.min(ymax))
            );
            s += &format!(
                "<text x='{:.1}' y='{}' font-size='9' text-anchor='middle'>{}</text>",
                px(*x),
                py(0.0) + 14.0,
                *x as usize
            );
        }
        s += &format!("<text x='{}' y='{}' font-size='11' text-anchor='middle'>nodes × {rate} frames/s</text>", x0 + pad + pw / 2.0, h - 8.0);
        s
    };
    let loss: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r.nodes as f64,
                100.0 * r.lost.max(0) as f64 / r.sent.max(1) as f64,
            )
        })
        .collect();
    let p99: Vec<(f64, f64)> = rows.iter().map(|r| (r.nodes as f64, r.p99_ms)).collect();
    let lmax = loss.iter().map(|x| x.1).fold(1.0, f64::max) * 1.2;
    let pmax = p99.iter().map(|x| x.1).fold(1.0, f64::max) * 1.2;
    let body = panel("frames lost (%)", loss, lmax, "%", 0.0)
        + &panel("p99 frame-to-result latency (ms)", p99, pmax, "", w / 2.0);
    let doc = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif'><rect width='100%' height='100%' fill='white'/>{body}</svg>"
    );
    std::fs::write(path, doc).unwrap();
}
