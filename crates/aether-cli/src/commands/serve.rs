//! `aether serve`: the live service for a fleet of nodes (docs/serve.md).
//!
//! `--model M` serves a trained model; `--demo` trains a small gesture model on the
//! simulator, starts the service with it and feeds it a replay fleet of held-out
//! simulated recordings in the same process, then prints the dashboard URL. Runs until
//! SIGINT/SIGTERM, then stops cleanly (queued frames processed, clients told); SIGHUP
//! reloads the model from `--model`.
//!
//! `--config FILE` reads every option from a TOML file (keys are the long option names,
//! `-` or `_`; command-line options override the file); `--check-config` validates
//! everything, the model included, and exits 0 or 1 without binding a socket
//! (docs/serve-operations.md).
//!
//! Beyond one machine (docs/scaling.md): `--publish nats://HOST:PORT` makes this process
//! a gateway (UDP in, validated frames out to NATS JetStream partitions), `--source
//! nats://HOST:PORT --partitions 0-7` a worker that owns those partitions (a standby
//! while another worker holds them).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_data::features::FeatureConfig;
use aether_data::sim::{simulate, simulate_frames, Task};
use aether_rvne::BlobView;
use aether_serve::cluster::{ClusterConfig, PartitionSpec, Role};
use aether_serve::mqtt::MqttConfig;
use aether_serve::record::RecordConfig;
use aether_serve::replay::{encode_recordings, ReplayConfig};
use aether_serve::{ServeConfig, Service};
use anyhow::{bail, Context, Result};
use clap::{Args as _, FromArgMatches};

use crate::args::StreamArgs;
use crate::fsutil::read_model_file;
use crate::values::{self, Ends, Partitions};

/// Arguments of `aether serve`.
#[derive(clap::Args)]
pub struct Args {
    /// The model (.rvne v1 or v2); SIGHUP reloads it from this path.
    #[arg(long, required_unless_present_any = ["demo", "config"])]
    pub model: Option<PathBuf>,
    /// Read options from this TOML file (keys: long option names); options given here win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate everything (options, model, record and data directories, MQTT settings), then exit 0 or 1 without binding.
    #[arg(long)]
    pub check_config: bool,
    /// Logging, MQTT, recording and reload options.
    #[command(flatten)]
    pub ops: Box<OpsArgs>,
    /// Gateway and worker options (NATS JetStream).
    #[command(flatten)]
    pub cluster: Box<ClusterArgs>,
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
    /// WebSocket messages a client may fall behind before it loses the oldest, 1..=1048576.
    #[arg(long, default_value_t = 4_096, value_parser = values::count(1, 1 << 20))]
    pub ws_buffer: usize,
    /// Largest HTTP request body accepted (the model upload has its own limit), bytes.
    #[arg(long, default_value_t = 64 * 1024, value_parser = values::count(1024, 1 << 24))]
    pub max_request: usize,
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

/// Options of `aether serve` for running it in a home or a lab: logs, MQTT with Home
/// Assistant discovery, recording and labelling, model reloads.
#[derive(clap::Args)]
pub struct OpsArgs {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level (error, warn, info, debug, trace, or a tracing filter; RUST_LOG wins).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Publish results to this MQTT broker with Home Assistant discovery: mqtt://[USER[:PASSWORD]@]HOST[:PORT] or mqtts://… (TLS).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// MQTT user name (overrides the URL's).
    #[arg(long)]
    pub mqtt_user: Option<String>,
    /// MQTT password (overrides the URL's).
    #[arg(long, env = "AETHER_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// CA certificate (PEM) for mqtts:// (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    pub mqtt_ca: Option<PathBuf>,
    /// Most MQTT state updates per node per second.
    #[arg(long, default_value_t = 1.0, value_parser = values::real(0.0, 100.0, Ends::OpenMin))]
    pub mqtt_hz: f64,
    /// Seconds between MQTT heartbeats (every state published again).
    #[arg(long, default_value_t = 60.0, value_parser = values::real(1.0, values::MAX_SECONDS, Ends::Closed))]
    pub heartbeat: f64,
    /// Remove an expired node's Home Assistant entities (empty retained configs).
    #[arg(long)]
    pub forget_expired: bool,
    /// Home Assistant discovery prefix.
    #[arg(long, default_value = "homeassistant")]
    pub mqtt_discovery_prefix: String,
    /// Prefix of the state topics (<prefix>/<instance>/<node>/state).
    #[arg(long, default_value = "aether")]
    pub mqtt_topic_prefix: String,
    /// Node events queued for the MQTT task before new ones are dropped (counted).
    #[arg(long, default_value_t = 4096, value_parser = values::count(1, 1 << 20))]
    pub mqtt_queue: usize,
    /// MQTT messages buffered while the broker is unreachable (then dropped, counted).
    #[arg(long, default_value_t = 10_000, value_parser = values::count(1, 1 << 20))]
    pub mqtt_buffer: usize,
    /// Longest wait between MQTT reconnection attempts, seconds.
    #[arg(long, default_value_t = 30.0, value_parser = values::real(0.1, 3600.0, Ends::Closed))]
    pub mqtt_reconnect_max: f64,
    /// Directory of the instance id (stable MQTT client id and Home Assistant identifiers). Default: $STATE_DIRECTORY, $XDG_STATE_HOME/aether or ~/.local/state/aether.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Record: raw captures of every node, and labelled segments (POST /api/v1/label) as DIR/<class>/<node>_<time>.csv.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Seconds between flushes (write + fsync) of recordings: the most a crash can lose.
    #[arg(long, default_value_t = 1.0, value_parser = values::real(0.0, 60.0, Ends::OpenMin))]
    pub record_flush: f64,
    /// Frames queued for the recording thread before new ones are dropped (counted).
    #[arg(long, default_value_t = 65_536, value_parser = values::count(1, 16_777_216))]
    pub record_queue: usize,
    /// With --record: only labelled segments, no continuous raw captures.
    #[arg(long)]
    pub no_capture: bool,
    /// Largest model accepted by POST /api/v1/model, bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_parser = values::count(1024, 1 << 30))]
    pub max_model_bytes: usize,
}

/// Options of the cluster roles: a gateway forwards validated frames to NATS JetStream,
/// workers own partitions of the nodes (docs/scaling.md).
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Gateway: forward every validated frame to this NATS server (nats://[USER:PASSWORD@]HOST[:PORT]) in --partitions partitions.
    #[arg(long, value_name = "URL", conflicts_with = "source")]
    pub publish: Option<String>,
    /// Worker: take frames of --partitions from this NATS server instead of UDP, publish results to aether.result.<node>.
    #[arg(long, value_name = "URL")]
    pub source: Option<String>,
    /// Gateway: the partition count P (default 8). Worker: the partitions it owns (N, A-B, A,B,C).
    #[arg(long, value_parser = values::partitions)]
    pub partitions: Option<Partitions>,
    /// Worker: worker I of N equal workers, owning every partition p with p mod N = I.
    #[arg(long, value_name = "I/N", value_parser = values::partition_of, conflicts_with = "partitions")]
    pub partition_of: Option<(u32, u32)>,
    /// Gateway: frames kept per node in its partition's stream (at least a worker's rebuild: horizon + extractor horizon).
    #[arg(long, default_value_t = 1024, value_parser = values::count(1, 1 << 24))]
    pub retain: usize,
    /// Gateway: seconds a frame is kept in its partition's stream.
    #[arg(long, default_value_t = 3600.0, value_parser = values::real(0.0, values::MAX_SECONDS, Ends::OpenMin))]
    pub retain_age: f64,
    /// Gateway: frames queued for the broker before new ones are dropped (counted).
    #[arg(long, default_value_t = 65_536, value_parser = values::count(1, 1 << 24))]
    pub publish_queue: usize,
    /// Gateway: frames sent and not yet confirmed. Worker: frames fetched and not yet finished.
    #[arg(long, default_value_t = 4096, value_parser = values::count(1, 1 << 20))]
    pub max_inflight: usize,
    /// Worker: results kept per node in the AETHER_RESULTS stream.
    #[arg(long, default_value_t = 256, value_parser = values::count(1, 1 << 24))]
    pub result_retain: usize,
    /// Worker: seconds a partition lease lives without renewal (a dead worker's partitions move after at most 4/3 of it).
    #[arg(long, default_value_t = 3.0, value_parser = values::real(0.3, 3600.0, Ends::Closed))]
    pub lease_ttl: f64,
    /// Worker: seconds before the broker delivers an unacknowledged frame again.
    #[arg(long, default_value_t = 30.0, value_parser = values::real(1.0, 3600.0, Ends::Closed))]
    pub ack_wait: f64,
    /// Seconds in which the broker drops a repeated message id (frames and results).
    #[arg(long, default_value_t = 120.0, value_parser = values::real(0.1, 86_400.0, Ends::Closed))]
    pub dedup_window: f64,
    /// Worker: its name in the leases and results (default: host-pid-random).
    #[arg(long)]
    pub worker_id: Option<String>,
}

/// The cluster role from the options, if any.
fn cluster_config(c: &ClusterArgs) -> Result<Option<ClusterConfig>> {
    let dedup_window = Duration::from_secs_f64(c.dedup_window);
    if let Some(url) = &c.publish {
        if c.partition_of.is_some() {
            bail!("--partition-of is a worker option (--source)");
        }
        let partitions = match &c.partitions {
            None => 8,
            Some(Partitions::One(n)) => *n as u32,
            Some(Partitions::List(_)) => {
                bail!("a gateway takes --partitions P, the partition count (a list is for workers)")
            }
        };
        return Ok(Some(ClusterConfig {
            url: url.clone(),
            role: Role::Gateway {
                partitions,
                retain: c.retain as i64,
                retain_age: Duration::from_secs_f64(c.retain_age),
                queue: c.publish_queue,
                inflight: c.max_inflight,
            },
            dedup_window,
        }));
    }
    if let Some(url) = &c.source {
        let spec = match (&c.partitions, c.partition_of) {
            (Some(Partitions::One(n)), _) => PartitionSpec::List(vec![*n as u32]),
            (Some(Partitions::List(v)), _) => PartitionSpec::List(v.clone()),
            (None, Some((index, of))) => PartitionSpec::Of { index, of },
            (None, None) => {
                bail!("a worker (--source) needs --partitions LIST or --partition-of I/N")
            }
        };
        return Ok(Some(ClusterConfig {
            url: url.clone(),
            role: Role::Worker {
                partitions: spec,
                inflight: c.max_inflight,
                result_retain: c.result_retain as i64,
                lease_ttl: Duration::from_secs_f64(c.lease_ttl),
                ack_wait: Duration::from_secs_f64(c.ack_wait),
                id: c
                    .worker_id
                    .clone()
                    .unwrap_or_else(aether_serve::cluster::new_worker_id),
            },
            dedup_window,
        }));
    }
    if c.partitions.is_some() || c.partition_of.is_some() {
        bail!("--partitions and --partition-of need --publish (gateway) or --source (worker)");
    }
    Ok(None)
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options that name the file or the mode and so cannot come from a config file.
const NOT_IN_FILE: [&str; 4] = ["config", "check-config", "help", "version"];

/// The `serve` command definition used to merge a config file with the command line:
/// repeated options override (the later wins), negative numbers reach the range checks.
fn serve_command() -> clap::Command {
    Args::augment_args(clap::Command::new("serve"))
        .args_override_self(true)
        .mut_args(|a| {
            if a.get_action().takes_values() {
                a.allow_negative_numbers(true)
            } else {
                a
            }
        })
}

/// `--key=value` arguments from a TOML config file (keys: long option names, `_` or `-`).
pub fn file_args(path: &Path) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
    let cmd = serve_command();
    let mut out = Vec::new();
    for (k, v) in table {
        let key = k.replace('_', "-");
        let known = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()));
        let Some(arg) = known.filter(|_| !NOT_IN_FILE.contains(&key.as_str())) else {
            bail!("{}: unknown key {k:?}", path.display());
        };
        let flag = !arg.get_action().takes_values();
        match v {
            toml::Value::Boolean(b) if flag => {
                if b {
                    out.push(format!("--{key}").into());
                }
            }
            _ if flag => bail!("{}: {k} takes true or false", path.display()),
            toml::Value::String(s) => out.push(format!("--{key}={s}").into()),
            toml::Value::Integer(i) => out.push(format!("--{key}={i}").into()),
            toml::Value::Float(f) => out.push(format!("--{key}={f}").into()),
            _ => bail!("{}: {k} takes a string or a number", path.display()),
        }
    }
    Ok(out)
}

/// The arguments with `--config FILE` merged in: the file's options first, then the
/// command line's (which win).
fn merged(args: Args) -> Result<Args> {
    let Some(path) = args.config.clone() else {
        return Ok(args);
    };
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    // Everything after the `serve` word is the command line's own options.
    let at = argv
        .iter()
        .position(|a| a == "serve")
        .map_or(argv.len(), |i| i + 1);
    let cli = argv.split_off(at);
    // An option given on the command line replaces the file's (whose value is then
    // not even checked).
    let given: Vec<String> = cli
        .iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    let mut all: Vec<OsString> = vec!["serve".into()];
    for a in file_args(&path)? {
        let name = a
            .to_str()
            .and_then(|a| a.strip_prefix("--"))
            .map(|a| a.split('=').next().unwrap_or(a));
        if !name.is_some_and(|n| given.iter().any(|g| g == n)) {
            all.push(a);
        }
    }
    all.extend(cli);
    let m = serve_command().try_get_matches_from(all).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        anyhow::anyhow!("{} (with the config file {})", first, path.display())
    })?;
    Ok(Args::from_arg_matches(&m)?)
}

fn init_logs(args: &Args) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.ops.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match args.ops.log_format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

/// The MQTT settings, with the instance id from the data directory.
fn mqtt_config(args: &Args, url: &str) -> Result<MqttConfig> {
    let dir = args
        .ops
        .data_dir
        .clone()
        .unwrap_or_else(aether_serve::instance::default_dir);
    let id = aether_serve::instance::load_or_create(&dir)?;
    let mut m = MqttConfig::from_url(url, &id)?;
    if let Some(u) = &args.ops.mqtt_user {
        m.username = Some(u.clone());
    }
    if let Some(p) = &args.ops.mqtt_password {
        m.password = Some(p.clone());
    }
    m.ca_file = args.ops.mqtt_ca.clone();
    m.hz = args.ops.mqtt_hz;
    m.heartbeat = Duration::from_secs_f64(args.ops.heartbeat);
    m.forget_expired = args.ops.forget_expired;
    m.discovery_prefix = args.ops.mqtt_discovery_prefix.clone();
    m.topic_prefix = args.ops.mqtt_topic_prefix.clone();
    m.queue = args.ops.mqtt_queue;
    m.buffer = args.ops.mqtt_buffer;
    m.reconnect_max = Duration::from_secs_f64(args.ops.mqtt_reconnect_max);
    Ok(m)
}

/// The sum of a metric's samples in a Prometheus text.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

/// Trains the demo model: the gesture simulator, `recordings` per class, default head.
fn demo_model(recordings: usize) -> Result<Vec<u8>> {
    use aether_pipeline::{data_hash, fit_progress, model_bytes, TrainOpts};
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
        ..TrainOpts::default()
    };
    let fitted = fit_progress(&ds, &pool, &opts, &mut crate::progress::Bar::default())?;
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
    let args = merged(args)?;
    if args.model.is_none() && !args.demo {
        bail!("give --model FILE (on the command line or in the config file) or --demo");
    }
    if args.model.is_some() && args.demo {
        bail!("--model and --demo exclude each other");
    }
    init_logs(&args);
    let cluster = cluster_config(&args.cluster)?;
    let (bytes, name) = match &args.model {
        Some(p) => (read_model_file(p)?, p.display().to_string()),
        None if args.check_config => bail!("--check-config checks a --model, not --demo"),
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
        ws_buffer: args.ws_buffer,
        max_request_bytes: args.max_request,
        horizon_from_model: args.stream.horizon.is_none(),
        max_model_bytes: args.ops.max_model_bytes,
        mqtt: match &args.ops.mqtt {
            Some(url) => Some(mqtt_config(&args, url)?),
            None => None,
        },
        record: args.ops.record.as_ref().map(|d| RecordConfig {
            dir: d.clone(),
            queue: args.ops.record_queue,
            flush_every: Duration::from_secs_f64(args.ops.record_flush),
            capture: !args.ops.no_capture,
        }),
        cluster,
        ..ServeConfig::default()
    };
    if args.check_config {
        let m = Service::check(&bytes, &cfg).with_context(|| format!("checking {name}"))?;
        println!(
            "aether serve --check-config: ok: model {} ({name}; classes {}; input {}; horizon {}); HTTP {}; UDP {}{}{}",
            &m.sha256[..12],
            m.classes.join(", "),
            m.input.name(),
            m.stream.horizon,
            cfg.http,
            cfg.udp,
            cfg.mqtt.as_ref().map_or(String::new(), |q| format!(
                "; MQTT {}:{} as {}",
                q.host, q.port, q.instance
            )),
            cfg.record
                .as_ref()
                .map_or(String::new(), |r| format!("; recording into {}", r.dir.display())),
        );
        return Ok(());
    }
    let cfg_cluster = cfg.cluster.as_ref().map(|c| c.role.clone());
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
    match &cfg_cluster {
        Some(Role::Worker { partitions, id, .. }) => println!(
            "aether serve: UDP none: worker {id} of {} ({}), results on aether.result.<node>",
            args.cluster.source.as_deref().unwrap_or(""),
            match partitions {
                PartitionSpec::List(v) => format!("partitions {v:?}"),
                PartitionSpec::Of { index, of } =>
                    format!("partitions p with p mod {of} = {index}"),
            }
        ),
        Some(Role::Gateway { partitions, .. }) => {
            println!("aether serve: UDP {}  (nodes send here)", svc.udp_addr());
            println!(
                "aether serve: gateway: forwarding to {} in {partitions} partitions (aether.csi.<partition>.<node>)",
                args.cluster.publish.as_deref().unwrap_or("")
            );
        }
        None => println!("aether serve: UDP {}  (nodes send here)", svc.udp_addr()),
    }
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
    svc.run_until_signal(args.model.as_deref());
    stop.store(true, Ordering::SeqCst);
    if let Some(f) = fleet {
        let _ = f.join();
    }
    let gateway = svc.is_gateway();
    let metrics = Arc::clone(svc.metrics());
    svc.shutdown();
    let frames = metrics.frames.get();
    let text = metrics.render();
    let rejected: f64 = text
        .lines()
        .filter(|l| l.starts_with("aether_packets_rejected_total{"))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum();
    if gateway {
        let forwarded = metric_sum(&text, "aether_cluster_frames_forwarded_total");
        println!(
            "aether serve: stopped; {forwarded} frames forwarded, {rejected} packets rejected"
        );
    } else {
        println!("aether serve: stopped; {frames} frames processed, {rejected} packets rejected");
    }
    Ok(())
}
