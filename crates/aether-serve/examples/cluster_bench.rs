//! Capacity of the cluster roles on one machine (docs/scaling.md), against a real
//! `nats-server` with JetStream started here on a loopback port with a temporary store
//! (one per phase, stopped at the end). Three phases, each bounded in count and time:
//!
//! 1. **Broker** (through the service's own transport code): `--frames N` forwarded
//!    frames of `--nodes K` nodes (1 antenna × 64 subcarriers raw CSI in its 64-byte
//!    envelope) appended to `--partitions P` partition streams the way the gateway does
//!    (ordered window of `--window W` unconfirmed messages, dedup ids, every message
//!    acknowledged by JetStream), read back the way a worker does (durable consumer, ack
//!    all up to the finished prefix), and N results (the worker's JSON) published with
//!    dedup ids. Messages/s and MB/s of each, stored bytes per frame.
//! 2. **End to end**: an in-process gateway (`--publish`, 1 shard) takes a replay fleet
//!    of `--e2e-nodes` nodes × `--rate` Hz for `--duration` s over UDP and forwards it;
//!    then an in-process worker (`--source`, `--shards S`) drains the backlog from
//!    JetStream, runs every node's stream and publishes one result per frame. Frames/s
//!    wall clock and per CPU-second of each process (getrusage), and the broker's CPU
//!    per frame (/proc/PID/stat). The default architecture over 16 features (the shape
//!    `aether serve --demo` trains), horizon 300.
//! 3. **Retained state**: bytes per frame the partition streams hold (so bytes per node
//!    at `--retain` frames), and the worker's state bytes per node (`/api/v1/nodes`
//!    `bytes`, and RSS growth per node).
//!
//! A benchmark, not a test: numbers go to docs/scaling.md and docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p aether-serve --example cluster_bench -- --frames 200000 --nodes 1000 --partitions 8 --e2e-nodes 200 --rate 100 --duration 10
//! ```

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_data::sim::{simulate_frames, Task};
use aether_serve::cluster::nats::NatsTransport;
use aether_serve::cluster::pipe::Pipe;
use aether_serve::cluster::transport::{Declared, Outgoing, Target, Transport};
use aether_serve::cluster::worker::replay_frames;
use aether_serve::cluster::{
    message_id, node_token, partition_of, ClusterConfig, Envelope, PartitionSpec, Role, Stamp,
};
use aether_serve::replay::{encode_recordings, ReplayConfig};
use aether_serve::{NodeKey, ServeConfig, Service};
use bytes::Bytes;
use nix::sys::resource::UsageWho;

mod bench_common;
use bench_common::{cpu, default_model, rss_kib};

fn arg(name: &str, default: &str) -> String {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// A `nats-server -js` on a free loopback port, storing in a temporary directory; killed
/// and reaped on drop.
struct Nats {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bin = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = std::process::Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting nats-server (apt-get install nats-server)");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// CPU seconds the server used so far.
    fn cpu(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let f: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |x| x.1)
            .split_whitespace()
            .collect();
        let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (t(11) + t(12)) / 100.0
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stored messages and bytes of the streams whose names start with `prefix`.
async fn stream_totals(url: &str, prefix: &str, partitions: u32) -> (u64, u64) {
    let c = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(c);
    let names: Vec<String> = if prefix == "AETHER_CSI" {
        (0..partitions).map(|p| format!("AETHER_CSI_{p}")).collect()
    } else {
        vec![prefix.to_string()]
    };
    let (mut m, mut b) = (0, 0);
    for n in names {
        let mut s = js.get_stream(n).await.unwrap();
        let st = &s.info().await.unwrap().state;
        m += st.messages;
        b += st.bytes;
    }
    (m, b)
}

fn main() {
    let frames: usize = arg("--frames", "200000").parse().expect("--frames N");
    let nodes: usize = arg("--nodes", "1000").parse().expect("--nodes N");
    let partitions: u32 = arg("--partitions", "8").parse().expect("--partitions P");
    let window: usize = arg("--window", "4096").parse().expect("--window N");
    let e2e_nodes: usize = arg("--e2e-nodes", "200").parse().expect("--e2e-nodes N");
    let rate: f64 = arg("--rate", "100").parse().expect("--rate HZ");
    let duration: f64 = arg("--duration", "10").parse().expect("--duration S");
    let shards: usize = arg("--shards", "1").parse().expect("--shards N");
    let retain: usize = arg("--retain", "1024").parse().expect("--retain N");
    assert!(frames > 0 && nodes > 0 && partitions > 0 && e2e_nodes > 0 && shards > 0);
    assert!(
        duration > 0.0 && duration <= 600.0,
        "--duration: 0 < S ≤ 600"
    );
    let cpu_name = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!(
        "# aether cluster bench: cores {}, CPU {cpu_name}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // A real raw CSI datagram (1 antenna × 64 subcarriers).
    let recs: Vec<_> = (0..16)
        .map(|i| simulate_frames(Task::Gesture, i % 4, 500 + i, 3))
        .collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let datagram = datagrams[0][0].clone();

    println!("\n## 1. broker: {frames} frames of {nodes} nodes in {partitions} partitions, window {window}");
    {
        let nats = Nats::start();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let c0 = nats.cpu();
        rt.block_on(broker(
            &nats.url, frames, nodes, partitions, window, &datagram,
        ));
        println!(
            "nats-server CPU: {:.2} s for phase 1 ({:.1} µs per frame, append + consume + result)",
            nats.cpu() - c0,
            1e6 * (nats.cpu() - c0) / frames as f64
        );
    }

    println!("\n## 2. end to end: gateway (1 shard) ← UDP fleet of {e2e_nodes} nodes × {rate} Hz × {duration} s; worker ({shards} shard{}) drains JetStream", if shards == 1 { "" } else { "s" });
    end_to_end(
        &datagrams, e2e_nodes, rate, duration, shards, partitions, retain,
    );
}

/// Phase 2 and 3: gateway, then worker, on one broker.
fn end_to_end(
    datagrams: &[Vec<Vec<u8>>],
    nodes: usize,
    rate: f64,
    duration: f64,
    shards: usize,
    partitions: u32,
    retain: usize,
) {
    let nats = Nats::start();
    let model = default_model();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = ServeConfig {
        udp: "127.0.0.1:0".parse().unwrap(),
        http: "127.0.0.1:0".parse().unwrap(),
        max_node_rate: 0.0,
        ..ServeConfig::default()
    };
    // The gateway.
    let gw = Service::start(
        &model,
        ServeConfig {
            shards: 1,
            cluster: Some(ClusterConfig {
                url: nats.url.clone(),
                role: Role::Gateway {
                    partitions,
                    retain: retain as i64,
                    retain_age: Duration::from_secs(3600),
                    queue: 65_536,
                    inflight: 4096,
                },
                dedup_window: Duration::from_secs(120),
            }),
            ..base.clone()
        },
    )
    .expect("starting the gateway");
    let rcfg = ReplayConfig {
        to: gw.udp_addr(),
        nodes,
        rate_hz: rate,
        looped: true,
        duration: Some(Duration::from_secs_f64(duration)),
        ..ReplayConfig::default()
    };
    let (n0, p0, t0) = (nats.cpu(), cpu(UsageWho::RUSAGE_SELF), Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let fleet = {
        let d = datagrams.to_vec();
        std::thread::spawn(move || {
            let r = aether_serve::replay::run(&d, &rcfg, &stop).expect("replay");
            (r, cpu(UsageWho::RUSAGE_THREAD))
        })
    };
    let (rep, fleet_cpu) = fleet.join().unwrap();
    let m = Arc::clone(gw.metrics());
    let end = Instant::now() + Duration::from_secs(60);
    let mut last = (0, Instant::now());
    loop {
        let f = m.cluster.forwarded.get() + m.cluster.forward_dropped.get();
        if f >= rep.sent || Instant::now() > end {
            break;
        }
        if f != last.0 {
            last = (f, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            break; // nothing more comes (frames lost on the way are counted below)
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = t0.elapsed().as_secs_f64();
    let gw_cpu = cpu(UsageWho::RUSAGE_SELF) - p0 - fleet_cpu;
    let nats_gw = nats.cpu() - n0;
    let forwarded = m.cluster.forwarded.get();
    let text = m.render();
    let rejected: f64 = text
        .lines()
        .filter(|l| l.starts_with("aether_packets_rejected_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    println!(
        "gateway: fleet sent {} datagrams in {:.2} s ({:.0}/s); forwarded (stored by JetStream) {forwarded}, dropped at the broker queue {}, rejected {rejected}, not arrived {}",
        rep.sent,
        rep.elapsed.as_secs_f64(),
        rep.sent as f64 / rep.elapsed.as_secs_f64(),
        m.cluster.forward_dropped.get(),
        rep.sent.saturating_sub(forwarded + m.cluster.forward_dropped.get() + rejected as u64),
    );
    println!(
        "gateway: CPU {gw_cpu:.2} s = {:.1} µs per forwarded frame → {:.0} frames/s per gateway core; nats-server {:.1} µs per frame (store); wall {wall:.2} s",
        1e6 * gw_cpu / forwarded.max(1) as f64,
        forwarded as f64 / gw_cpu.max(1e-9),
        1e6 * nats_gw / forwarded.max(1) as f64,
    );
    gw.shutdown();

    // The worker drains the backlog.
    let rss0 = rss_kib();
    let (n0, p0, t0) = (nats.cpu(), cpu(UsageWho::RUSAGE_SELF), Instant::now());
    let wk = Service::start(
        &model,
        ServeConfig {
            shards,
            cluster: Some(ClusterConfig {
                url: nats.url.clone(),
                role: Role::Worker {
                    partitions: PartitionSpec::List((0..partitions).collect()),
                    inflight: 4096,
                    result_retain: 256,
                    lease_ttl: Duration::from_secs(3),
                    ack_wait: Duration::from_secs(30),
                    id: "bench-worker".into(),
                },
                dedup_window: Duration::from_secs(120),
            }),
            ..base
        },
    )
    .expect("starting the worker");
    let m = Arc::clone(wk.metrics());
    let end = Instant::now() + Duration::from_secs(600);
    let mut mid = None;
    while m.cluster.results.get() < forwarded && Instant::now() < end {
        if mid.is_none() && m.cluster.results.get() >= forwarded / 2 {
            mid = Some((rss_kib(), wk.nodes()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = t0.elapsed().as_secs_f64();
    let wk_cpu = cpu(UsageWho::RUSAGE_SELF) - p0;
    let nats_wk = nats.cpu() - n0;
    let results = m.cluster.results.get();
    let (rss_mid, api) = mid.unwrap_or_else(|| (rss_kib(), wk.nodes()));
    // Let the last commits go out before reading the streams.
    std::thread::sleep(Duration::from_millis(200));
    let acked = m.cluster.frames_acked.get();
    println!(
        "worker: {results} results for {forwarded} frames in {wall:.2} s wall = {:.0} frames/s ({shards} shard{}); acknowledged {acked}",
        results as f64 / wall,
        if shards == 1 { "" } else { "s" },
    );
    println!(
        "worker: CPU {wk_cpu:.2} s = {:.1} µs per frame → {:.0} frames/s per worker core; nats-server {:.1} µs per frame (deliver, ack, store result)",
        1e6 * wk_cpu / results.max(1) as f64,
        results as f64 / wk_cpu.max(1e-9),
        1e6 * nats_wk / results.max(1) as f64,
    );
    let text = m.render();
    let stage = |st: &str| {
        let sum = |what: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.starts_with(&format!("aether_stage_seconds_{what}"))
                        && l.contains(&format!("stage=\"{st}\""))
                })
                .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
                .sum()
        };
        1e6 * sum("sum") / sum("count").max(1.0)
    };
    println!(
        "worker: of which per frame in the shard: decode {:.1} µs, features {:.1} µs, head {:.1} µs",
        stage("decode"),
        stage("features"),
        stage("head")
    );
    let state: Vec<f64> = api.iter().filter_map(|n| n["bytes"].as_f64()).collect();
    let node_bytes = state.iter().sum::<f64>() / state.len().max(1) as f64;
    println!(
        "\n## 3. retained state\nworker: {} nodes, {:.0} B of stream state per node (/api/v1/nodes bytes), RSS growth {:.0} KiB per node at half the backlog",
        state.len(),
        node_bytes,
        (rss_mid - rss0) / nodes as f64
    );
    wk.shutdown();
    let (fm, fb) = rt.block_on(stream_totals(&nats.url, "AETHER_CSI", partitions));
    let (rm, rb) = rt.block_on(stream_totals(&nats.url, "AETHER_RESULTS", partitions));
    let per_frame = fb as f64 / fm.max(1) as f64;
    let loaded = Service::check(&model, &ServeConfig::default()).expect("the model");
    let need = replay_frames(&loaded).expect("a horizon");
    println!(
        "streams: AETHER_CSI_* hold {fm} frames in {fb} B = {per_frame:.0} B per frame → {:.0} KiB per node at --retain {retain}; AETHER_RESULTS {rm} results in {rb} B = {:.0} B per result",
        per_frame * retain as f64 / 1024.0,
        rb as f64 / rm.max(1) as f64
    );
    println!(
        "state horizon of this model: {need} frames per node (stream horizon {} + extractor) → {:.0} KiB per node of stream retention at the minimum --retain",
        loaded.stream.horizon,
        per_frame * need as f64 / 1024.0
    );
}

/// Phase 1: append, consume and publish results through the transport.
async fn broker(
    url: &str,
    frames: usize,
    nodes: usize,
    partitions: u32,
    window: usize,
    datagram: &[u8],
) {
    let results = frames;
    let t: Arc<dyn Transport> = NatsTransport::connect(url, "aether-bench").await.unwrap();
    t.setup_gateway(
        Declared {
            partitions,
            retain: 1024,
        },
        Duration::from_secs(3600),
        Duration::from_secs(120),
    )
    .await
    .unwrap();
    t.setup_worker(1024, Duration::from_secs(3), Duration::from_secs(120))
        .await
        .unwrap();
    let keys: Vec<NodeKey> = (0..nodes)
        .map(|i| NodeKey {
            addr: std::net::IpAddr::from([10, 0, (i >> 8) as u8, 2]),
            node_id: i as u8,
        })
        .collect();
    // Gateway side: append every frame through the ordered window.
    let mut pipe: Pipe<()> = Pipe::new(Arc::clone(&t));
    let mut bytes = 0usize;
    let t0 = Instant::now();
    for j in 0..frames {
        let key = keys[j % nodes];
        let p = partition_of(&key, partitions);
        let st = Stamp {
            run: 1,
            index: (j / nodes) as u64,
            pos: (j / nodes) as u64,
            partition: p,
            ..Stamp::default()
        };
        let env = Envelope {
            stamp: st,
            src: std::net::SocketAddr::new(key.addr, 4000),
            node_id: key.node_id,
            datagram,
        };
        let mut payload = Vec::with_capacity(212);
        env.encode(&mut payload);
        bytes += payload.len();
        let token = node_token(&key);
        let msg = Outgoing {
            id: message_id(&token, 1, st.index),
            target: Target::Frame {
                partition: p,
                token,
            },
            payload: Bytes::from(payload),
        };
        while pipe.len() >= window {
            pipe.confirm().await.expect("stored");
        }
        pipe.push(msg, ()).await;
    }
    while !pipe.is_empty() {
        pipe.confirm().await.expect("stored");
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "append (gateway): {frames} frames of {} B payload in {dt:.2} s: {:.0} msgs/s, {:.1} MB/s payload",
        bytes / frames,
        frames as f64 / dt,
        bytes as f64 / dt / 1e6
    );
    // Worker side: read every partition through its durable consumer, committing.
    let t0 = Instant::now();
    let mut got = 0usize;
    for p in 0..partitions {
        let mut cur = t
            .consume(p, 0, Duration::from_secs(30), 1 << 16)
            .await
            .unwrap();
        let mut n = 0;
        loop {
            let b = cur
                .next_batch(256, Duration::from_millis(500))
                .await
                .unwrap();
            if b.is_empty() {
                break;
            }
            n += b.len();
            t.commit(&b.last().unwrap().ack).await.unwrap();
            if b.last().unwrap().pending == 0 {
                break;
            }
        }
        got += n;
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "consume (worker): {got} frames in {dt:.2} s: {:.0} msgs/s",
        got as f64 / dt
    );
    // Results: the worker's JSON per frame.
    let sample = serde_json::json!({
        "node": "10.0.0.2/0", "run": 1_765_000_000_000u64, "index": 123_456, "pos": 123_456,
        "class": "push_pull", "probs": [0.352_013_f32, 0.291_045_84_f32, 0.356_941_13_f32],
        "recv_ms": 1_765_000_000_000u64, "at_ms": 1_765_000_000_000u64,
        "model": "0123456789abcdef", "worker": "host-12345-abcdef",
    })
    .to_string();
    let mut pipe: Pipe<()> = Pipe::new(Arc::clone(&t));
    let t0 = Instant::now();
    for j in 0..results {
        let key = keys[j % nodes];
        let token = node_token(&key);
        let msg = Outgoing {
            id: message_id(&token, 1, (j / nodes) as u64),
            target: Target::Result { token },
            payload: Bytes::from(sample.clone()),
        };
        while pipe.len() >= window {
            pipe.confirm().await.expect("stored");
        }
        pipe.push(msg, ()).await;
    }
    while !pipe.is_empty() {
        pipe.confirm().await.expect("stored");
    }
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "results (worker): {results} of {} B in {dt:.2} s: {:.0} msgs/s",
        sample.len(),
        results as f64 / dt
    );
    // Stored bytes per frame (payload, subject, headers, JetStream's record).
    let c = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(c);
    let (mut b, mut m) = (0u64, 0u64);
    for p in 0..partitions {
        let mut s = js.get_stream(format!("AETHER_CSI_{p}")).await.unwrap();
        let st = &s.info().await.unwrap().state;
        b += st.bytes;
        m += st.messages;
    }
    println!(
        "stored: {m} frames, {b} B: {:.0} B per frame",
        b as f64 / m.max(1) as f64
    );
}
