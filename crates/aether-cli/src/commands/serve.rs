//! `aether serve`: the live service for a fleet of nodes (docs/serve.md).
//!
//! `--model M` serves a trained model; `--demo` trains a small gesture model on the
//! simulator, starts the service with it and feeds it a replay fleet of held-out
//! simulated recordings in the same process, then prints the dashboard URL. Runs until
//! SIGINT/SIGTERM, then stops cleanly (queued frames processed, clients told).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_data::features::FeatureConfig;
use aether_data::sim::{simulate, simulate_frames, Task};
use aether_rvne::BlobView;
use aether_serve::replay::{encode_recordings, ReplayConfig};
use aether_serve::{ServeConfig, Service};
use anyhow::{Context, Result};

use crate::args::StreamArgs;
use crate::fsutil::read_model_file;
use crate::values::{self, Ends};

/// Arguments of `aether serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The model (.rvne v1 or v2).
    #[arg(long, required_unless_present = "demo")]
    pub model: Option<PathBuf>,
    /// Train a small demo model on simulated gestures and replay a simulated fleet into it.
    #[arg(long, conflicts_with = "model")]
    pub demo: bool,
    /// UDP address the nodes send to.
    #[arg(long, default_value = "0.0.0.0:5005")]
    pub udp: SocketAddr,
    /// HTTP address of the API, metrics and dashboard (non-loopback needs --token or --insecure).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Bearer token the HTTP API requires (at least 8 printable characters).
    #[arg(long, env = "AETHER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow a non-loopback HTTP address without a token.
    #[arg(long)]
    pub insecure: bool,
    /// Worker shards (0 = one per CPU).
    #[arg(long, default_value_t = 0, value_parser = values::count(0, 1024))]
    pub shards: usize,
    /// UDP receive threads sharing the port.
    #[arg(long, default_value_t = 1, value_parser = values::count(1, 64))]
    pub ingest_threads: usize,
    /// Seconds without frames before a node is shown stale.
    #[arg(long, default_value_t = 5.0, value_parser = values::real(0.0, values::MAX_SECONDS, Ends::OpenMin))]
    pub stale: f64,
    /// Seconds without frames before a node's state is dropped.
    #[arg(long, default_value_t = 60.0, value_parser = values::real(0.0, values::MAX_SECONDS, Ends::OpenMin))]
    pub expire: f64,
    /// Largest sequence gap (missing packets) a stream continues over; larger restarts it.
    #[arg(long, default_value_t = 50, value_parser = values::count(0, 1_000_000))]
    pub max_gap: usize,
    /// WebSocket updates per node per second (class changes are sent at once).
    #[arg(long, default_value_t = 10.0, value_parser = values::real(0.0, 1000.0, Ends::OpenMin))]
    pub publish_hz: f64,
    /// Per-frame results kept per node for GET /api/v1/nodes/{id}.
    #[arg(long, default_value_t = 256, value_parser = values::count(0, 1_000_000))]
    pub history: usize,
    /// Most nodes tracked at once.
    #[arg(long, default_value_t = 10_000, value_parser = values::count(1, 10_000_000))]
    pub max_nodes: usize,
    /// Most frames per second one node may send (0 = no limit).
    #[arg(long, default_value_t = 1_000.0, value_parser = values::real(0.0, 1_000_000.0, Ends::Closed))]
    pub max_node_rate: f64,
    /// Packets a shard may have queued before new ones are dropped (counted).
    #[arg(long, default_value_t = 65_536, value_parser = values::count(1, 16_777_216))]
    pub queue: usize,
    /// Send a classification packet (0xC5110007) back to a node with each update.
    #[arg(long)]
    pub reply: bool,
    /// Kernel receive buffer for the UDP socket, bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024, value_parser = values::count(4096, 1 << 30))]
    pub udp_buffer: usize,
    #[command(flatten)]
    pub stream: StreamArgs,
    /// With --demo: simulated nodes.
    #[arg(long, default_value_t = 8, value_parser = values::count(1, 4096))]
    pub demo_nodes: usize,
    /// With --demo: frames per second per node.
    #[arg(long, default_value_t = 100.0, value_parser = values::real(0.0, 10_000.0, Ends::OpenMin))]
    pub demo_rate: f64,
    /// With --demo: training recordings per gesture class.
    #[arg(long, default_value_t = 150, value_parser = values::count(10, values::MAX_RECORDINGS))]
    pub demo_recordings: usize,
    /// Bands of the extractor for a model whose file names no features (v1).
    #[arg(long, default_value_t = aether_data::features::DEFAULT_BANDS, value_parser = values::count(1, values::MAX_BANDS))]
    pub bands: usize,
    /// Motion terms of the extractor for a model whose file names no features (v1).
    #[arg(long, default_value_t = aether_data::features::DEFAULT_MOTION_LAGS, value_parser = values::count(0, values::MAX_MOTION_LAGS))]
    pub motion_lags: usize,
    /// Leave out the gain term for a model whose file names no features (v1).
    #[arg(long)]
    pub no_gain: bool,
}

/// Trains the demo model: the gesture simulator, `recordings` per class, default head.
fn demo_model(recordings: usize) -> Result<Vec<u8>> {
    use super::train::{data_hash, fit, model_bytes, TrainOpts};
    let task = Task::Gesture;
    let t = Instant::now();
    eprintln!(
        "aether serve --demo: training a {}-class gesture head on {} simulated recordings per class …",
        task.classes().len(),
        recordings
    );
    let ds = simulate(task, recordings, 1, FeatureConfig::default())?;
    let pool: Vec<usize> = (0..ds.recordings.len()).collect();
    let opts = TrainOpts {
        seed: 1,
        val: 0.2,
        attention: "sparse".into(),
        arch: "full".into(),
        ..TrainOpts::default()
    };
    let fitted = fit(&ds, &pool, &opts, false)?;
    let bytes = model_bytes(&fitted, &ds, &data_hash(&ds), false, false)?;
    eprintln!(
        "aether serve --demo: trained in {:.1} s ({} bytes)",
        t.elapsed().as_secs_f64(),
        bytes.len()
    );
    Ok(bytes)
}

/// Runs `aether serve`.
pub fn run(args: Args) -> Result<()> {
    let (bytes, name) = match &args.model {
        Some(p) => (read_model_file(p)?, p.display().to_string()),
        None => (demo_model(args.demo_recordings)?, "demo model".to_string()),
    };
    let view =
        BlobView::parse(&bytes).with_context(|| format!("{name}: not a valid .rvne file"))?;
    let stream = args.stream.settings(&view)?;
    let cfg = ServeConfig {
        udp: args.udp,
        http: args.http,
        shards: args.shards,
        stream: Some(stream),
        features: FeatureConfig {
            bands: args.bands,
            gain: !args.no_gain,
            motion: args.motion_lags,
        },
        stale: Duration::from_secs_f64(args.stale),
        expire: Duration::from_secs_f64(args.expire),
        max_gap: args.max_gap as u32,
        publish_hz: args.publish_hz,
        history: args.history,
        max_nodes: args.max_nodes,
        max_node_rate: args.max_node_rate,
        queue_packets: args.queue,
        token: args.token.clone(),
        insecure: args.insecure,
        reply: args.reply,
        udp_recv_buffer: args.udp_buffer,
        ingest_threads: args.ingest_threads,
        ..ServeConfig::default()
    };
    let svc =
        Service::start(&bytes, cfg).with_context(|| format!("starting the service with {name}"))?;
    let m = svc.model();
    let host = if svc.http_addr().ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], svc.http_addr().port()))
    } else {
        svc.http_addr()
    };
    println!(
        "aether serve: model {} ({}; classes {}; input {}; horizon {})",
        &m.sha256[..12],
        name,
        m.classes.join(", "),
        m.input.name(),
        m.stream.horizon
    );
    println!("aether serve: UDP {}  (nodes send here)", svc.udp_addr());
    println!("aether serve: dashboard http://{host}/   API http://{host}/api/v1/nodes   metrics http://{host}/metrics");

    let stop = Arc::new(AtomicBool::new(false));
    let fleet = if args.demo {
        let mut to = svc.udp_addr();
        if to.ip().is_unspecified() {
            to.set_ip([127, 0, 0, 1].into());
        }
        let recs: Vec<_> = (0..args.demo_nodes)
            .map(|i| simulate_frames(Task::Gesture, i % 3, 1000 + i, 2))
            .collect();
        let datagrams = encode_recordings(&recs)?;
        let cfg = ReplayConfig {
            to,
            nodes: args.demo_nodes,
            rate_hz: args.demo_rate,
            looped: true,
            ..ReplayConfig::default()
        };
        aether_serve::replay::validate(&cfg, datagrams.len())?;
        println!(
            "aether serve: replaying {} simulated nodes at {} frames/s (held-out rooms and subjects); Ctrl-C stops",
            args.demo_nodes, args.demo_rate
        );
        let stop = Arc::clone(&stop);
        Some(std::thread::spawn(move || {
            aether_serve::replay::run(&datagrams, &cfg, &stop)
        }))
    } else {
        None
    };
    svc.wait_for_signal();
    stop.store(true, Ordering::SeqCst);
    if let Some(f) = fleet {
        let _ = f.join();
    }
    let frames = svc.frames();
    let text = svc.metrics().render();
    svc.shutdown();
    let rejected: f64 = text
        .lines()
        .filter(|l| l.starts_with("aether_packets_rejected_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    println!("aether serve: stopped; {frames} frames processed, {rejected} packets rejected");
    Ok(())
}
