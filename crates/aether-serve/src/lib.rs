//! # aether-serve
//!
//! The live sensing service behind `aether serve` (docs/serve.md): CSI nodes send UDP
//! packets; each node gets its own exact stream through the temporal head; results go
//! out over an HTTP/JSON API, a WebSocket, Prometheus metrics and a live dashboard.
//!
//! ```text
//! UDP ─► ingest thread(s): recvmmsg, peek node, rate limit ─► shard queues (bounded)
//!     ─► shard threads (one per core, own their nodes): decode → features → head
//!     ─► node state ─► HTTP API (queries over control channels) / WebSocket hub / metrics
//! ```
//!
//! [`Service::start`] binds, spawns and returns at once; [`Service::shutdown`] stops
//! ingest, lets every shard finish its queued frames, tells WebSocket clients, and
//! closes the HTTP server. [`replay`] is the fleet simulator that feeds it.
//!
//! Beside the hot path, never in its way (bounded queues, drops counted):
//! [`mqtt`] publishes results to an MQTT broker with Home Assistant discovery,
//! [`record`] writes labelled segments and raw captures on a writer thread, and
//! [`reload`] swaps the model between two batches of every shard
//! (docs/home-assistant.md, docs/serve-operations.md).
//!
//! Beyond one machine, [`cluster`] runs the service as a gateway (UDP in, validated
//! frames out to NATS JetStream) or as workers that own partitions of the nodes, with
//! failover and exact state rebuilds (docs/scaling.md).
#![deny(missing_docs)]

pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod instance;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod node;
pub mod packet;
pub mod record;
pub mod reload;
pub mod replay;
pub mod seq;
pub mod shard;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{oneshot, watch};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::ServeConfig;
pub use error::ServeError;
pub use metrics::{Metrics, Reject};
pub use model::{LoadedModel, ModelInput};
pub use node::NodeKey;

use crate::cluster::gateway::Forwarder;
use crate::cluster::transport::Transport;
use crate::cluster::worker::{Worker, WorkerSettings};
use crate::cluster::{Role, ShardLink};
use crate::http::AppState;
use crate::hub::Hub;
use crate::ingest::Ingest;
use crate::mqtt::Mqtt;
use crate::record::Recorder;
use crate::reload::{ModelSlot, ReloadSettings, Reloaded, Reloader};
use crate::shard::{Control, Shard, ShardCtx};

/// A running service.
pub struct Service {
    udp: SocketAddr,
    http: SocketAddr,
    udp_buffer: usize,
    models: Arc<ModelSlot>,
    reloader: Arc<Reloader>,
    mqtt: Option<Mqtt>,
    recorder: Option<Arc<Recorder>>,
    metrics: Arc<Metrics>,
    running: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    ingest: Vec<JoinHandle<()>>,
    shards: Vec<JoinHandle<()>>,
    ctrl: Vec<crossbeam_channel::Sender<Control>>,
    shutdown_tx: watch::Sender<bool>,
    http_stop: Option<oneshot::Sender<()>>,
    http_thread: Option<JoinHandle<()>>,
    runtime: Arc<tokio::runtime::Runtime>,
    cluster: Option<Running>,
}

/// A cluster role's tasks.
enum Running {
    Gateway(Forwarder),
    Worker(Worker),
}

/// Connects to the broker of a cluster role.
#[cfg(feature = "nats")]
fn connect(
    rt: &tokio::runtime::Runtime,
    url: &str,
    name: &str,
) -> Result<Arc<dyn Transport>, ServeError> {
    let t = rt
        .block_on(cluster::nats::NatsTransport::connect(url, name))
        .map_err(|e| ServeError::Broker(e.to_string()))?;
    Ok(t)
}

#[cfg(not(feature = "nats"))]
fn connect(
    _: &tokio::runtime::Runtime,
    url: &str,
    _: &str,
) -> Result<Arc<dyn Transport>, ServeError> {
    Err(ServeError::Config(format!(
        "{url}: this build has no NATS client (cargo feature `nats`)"
    )))
}

/// Whether the model fits the cluster role: a worker needs a bounded state horizon (its
/// replay length, returned), and a gateway's partitions must keep at least that many
/// frames per node, or every takeover would be inexact.
fn cluster_fit(model: &LoadedModel, cfg: &ServeConfig) -> Result<Option<usize>, ServeError> {
    let need = cluster::worker::replay_frames(model);
    match cfg.cluster.as_ref().map(|c| &c.role) {
        Some(Role::Worker { .. }) => need.map(Some).ok_or_else(|| {
            ServeError::Config(
                "a worker needs a horizon > 0 (--horizon): a continuous stream cannot be rebuilt from retained frames".into(),
            )
        }),
        Some(Role::Gateway { retain, .. }) => match need {
            Some(r) if (*retain as usize) < r => Err(ServeError::Config(format!(
                "--retain {retain}: rebuilding this model's state on a worker needs the last {r} frames of every node (horizon {} + extractor); keep at least that many",
                model.stream.horizon
            ))),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Service {
    /// Validates the model and settings, binds the sockets and starts every thread.
    pub fn start(model_bytes: &[u8], cfg: ServeConfig) -> Result<Self, ServeError> {
        cfg.validate()?;
        let model = Arc::new(LoadedModel::from_bytes(
            model_bytes,
            cfg.features,
            cfg.stream,
        )?);
        Self::start_with(model, cfg)
    }

    /// Checks everything `start` would without binding or starting anything: the
    /// settings, the model (loaded fully), the recording directory (created and
    /// written to), the MQTT settings (and TLS CA file). Returns the model.
    pub fn check(model_bytes: &[u8], cfg: &ServeConfig) -> Result<LoadedModel, ServeError> {
        cfg.validate()?;
        let m = LoadedModel::from_bytes(model_bytes, cfg.features, cfg.stream)?;
        cluster_fit(&m, cfg)?;
        if let Some(r) = &cfg.record {
            record::check_dir(&r.dir)?;
        }
        Ok(m)
    }

    /// Starts with an already loaded model.
    pub fn start_with(model: Arc<LoadedModel>, cfg: ServeConfig) -> Result<Self, ServeError> {
        cfg.validate()?;

        let n_shards = cfg.shard_count();
        let worker_mode = matches!(
            cfg.cluster.as_ref().map(|c| &c.role),
            Some(Role::Worker { .. })
        );
        let replay = cluster_fit(&model, &cfg)?;
        let metrics = Metrics::with_cluster(n_shards, &model.sha256, cfg.cluster.is_some());
        metrics.queue_capacity.set(cfg.queue_packets as i64);
        let hub = Arc::new(Hub::new(cfg.ws_buffer));
        let running = Arc::new(AtomicBool::new(true));
        let ready = Arc::new(AtomicBool::new(false));
        let models = Arc::new(ModelSlot::new(Arc::clone(&model)));

        // Sockets first: nothing starts if an address is taken. A worker takes its frames
        // from the broker, not from UDP.
        let mut sockets = Vec::new();
        let (udp, udp_buffer) = if worker_mode {
            (SocketAddr::from(([0, 0, 0, 0], 0)), 0)
        } else {
            let (first, udp_buffer) =
                ingest::bind(cfg.udp, cfg.udp_recv_buffer, cfg.ingest_threads > 1)?;
            let udp = first.local_addr().map_err(|source| ServeError::Io {
                context: "reading the UDP address",
                source,
            })?;
            sockets.push(first);
            for _ in 1..cfg.ingest_threads {
                sockets.push(ingest::bind(udp, cfg.udp_recv_buffer, true)?.0);
            }
            (udp, udp_buffer)
        };
        let listener =
            std::net::TcpListener::bind(cfg.http).map_err(|source| ServeError::Bind {
                what: "HTTP",
                addr: cfg.http,
                source,
            })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServeError::Io {
                context: "configuring the HTTP socket",
                source,
            })?;
        let http = listener.local_addr().map_err(|source| ServeError::Io {
            context: "reading the HTTP address",
            source,
        })?;
        let reply: Option<UdpSocket> = if cfg.reply && !sockets.is_empty() {
            Some(sockets[0].try_clone().map_err(|source| ServeError::Io {
                context: "cloning the UDP socket for replies",
                source,
            })?)
        } else {
            None
        };

        // The runtime of the HTTP server and the MQTT task.
        let runtime = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("aether-http")
                .enable_all()
                .build()
                .map_err(|source| ServeError::Io {
                    context: "starting the HTTP runtime",
                    source,
                })?,
        );
        let recorder = match &cfg.record {
            Some(r) => Some(Recorder::start(r.clone(), Arc::clone(&metrics))?),
            None => None,
        };
        let mqtt = match &cfg.mqtt {
            Some(m) => Some(Mqtt::start(
                &runtime,
                m.clone(),
                models.subscribe(),
                Arc::clone(&metrics),
            )?),
            None => None,
        };

        // A cluster role: the broker, and the shards' link to it.
        let mut role_tasks = None;
        let mut link = None;
        let mut worker_start = None;
        if let Some(c) = &cfg.cluster {
            match &c.role {
                Role::Gateway {
                    partitions,
                    retain,
                    retain_age,
                    queue,
                    inflight,
                } => {
                    let t = connect(&runtime, &c.url, "aether-gateway")?;
                    runtime
                        .block_on(t.setup_gateway(
                            cluster::transport::Declared {
                                partitions: *partitions,
                                retain: *retain,
                            },
                            *retain_age,
                            c.dedup_window,
                        ))
                        .map_err(|e| ServeError::Broker(e.to_string()))?;
                    let (f, sink) = Forwarder::start(
                        &runtime,
                        t,
                        *partitions,
                        now_ms(),
                        *queue,
                        *inflight,
                        Arc::clone(&metrics),
                    );
                    role_tasks = Some(Running::Gateway(f));
                    link = Some(ShardLink::Gateway(sink));
                }
                Role::Worker {
                    partitions,
                    inflight,
                    result_retain,
                    lease_ttl,
                    ack_wait,
                    id,
                } => {
                    let t = connect(&runtime, &c.url, id)?;
                    let (ttl, declared) = runtime
                        .block_on(t.setup_worker(*result_retain, *lease_ttl, c.dedup_window))
                        .map_err(|e| ServeError::Broker(e.to_string()))?;
                    let r = replay.unwrap_or(0);
                    if let Some(d) = declared {
                        if d.retain > 0 && (d.retain as usize) < r {
                            return Err(ServeError::Config(format!(
                                "the gateway keeps {} frames per node (--retain); rebuilding this model's state needs {r} (horizon {} + extractor): raise the gateway's --retain",
                                d.retain, model.stream.horizon
                            )));
                        }
                        if let cluster::PartitionSpec::List(v) = partitions {
                            if let Some(p) = v.iter().find(|&&p| p >= d.partitions) {
                                return Err(ServeError::Config(format!(
                                    "--partitions: partition {p} does not exist (the gateway declared {})",
                                    d.partitions
                                )));
                            }
                        }
                    }
                    let (sink, rx) = cluster::worker::outcome_channel(*inflight, id, &metrics);
                    worker_start = Some((
                        t,
                        WorkerSettings {
                            spec: partitions.clone(),
                            inflight: *inflight,
                            lease_ttl: ttl,
                            ack_wait: *ack_wait,
                            id: id.clone(),
                            replay: r,
                        },
                        sink.clone(),
                        rx,
                    ));
                    link = Some(ShardLink::Worker(sink));
                }
            }
        }

        // Shards.
        let node_count = Arc::new(AtomicUsize::new(0));
        let publish_every_ms = (1000.0 / cfg.publish_hz).round() as u64;
        let mut data_tx = Vec::new();
        let mut ctrl = Vec::new();
        let mut queued = Vec::new();
        let mut shards = Vec::new();
        for index in 0..n_shards {
            let (dtx, drx) = crossbeam_channel::bounded(4096);
            let (ctx_tx, ctx_rx) = crossbeam_channel::unbounded();
            let q = Arc::new(AtomicUsize::new(0));
            let ctx = ShardCtx {
                index,
                model: Arc::clone(&model),
                metrics: Arc::clone(&metrics),
                hub: Arc::clone(&hub),
                clock: Arc::clone(&cfg.clock),
                queued: Arc::clone(&q),
                reply: match &reply {
                    Some(s) => Some(s.try_clone().map_err(|source| ServeError::Io {
                        context: "cloning the reply socket",
                        source,
                    })?),
                    None => None,
                },
                stale_ms: cfg.stale.as_millis() as u64,
                expire_ms: cfg.expire.as_millis() as u64,
                max_gap: cfg.max_gap,
                publish_every_ms,
                history: cfg.history,
                node_count: Arc::clone(&node_count),
                max_nodes: cfg.max_nodes,
                running: Arc::clone(&running),
                generation: 0,
                mqtt: mqtt.as_ref().map(|m| m.sink.clone()),
                record: recorder.as_ref().map(|r| r.sink()),
                cluster: link.clone(),
            };
            let shard = Shard::new(ctx);
            shards.push(
                std::thread::Builder::new()
                    .name(format!("aether-shard-{index}"))
                    .spawn(move || shard.run(drx, ctx_rx))
                    .map_err(|source| ServeError::Io {
                        context: "starting a shard thread",
                        source,
                    })?,
            );
            data_tx.push(dtx);
            ctrl.push(ctx_tx);
            queued.push(q);
        }

        // Ingest.
        let mut ingest_threads = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let ing = Ingest {
                socket,
                shards: data_tx.clone(),
                queued: queued.clone(),
                queue_packets: cfg.queue_packets,
                max_node_rate: cfg.max_node_rate,
                metrics: Arc::clone(&metrics),
                running: Arc::clone(&running),
            };
            ingest_threads.push(
                std::thread::Builder::new()
                    .name(format!("aether-ingest-{i}"))
                    .spawn(move || ing.run())
                    .map_err(|source| ServeError::Io {
                        context: "starting an ingest thread",
                        source,
                    })?,
            );
        }
        if let Some((t, settings, sink, rx)) = worker_start {
            role_tasks = Some(Running::Worker(Worker::start(
                &runtime,
                t,
                settings,
                &sink,
                rx,
                cluster::worker::ShardLinks {
                    data: data_tx.clone(),
                    queued: queued.clone(),
                    queue_packets: cfg.queue_packets,
                    ctrl: ctrl.clone(),
                },
                Arc::clone(&metrics),
            )));
        }
        drop(link);
        drop(data_tx);

        // HTTP.
        let reloader = Arc::new(Reloader::new(
            Arc::clone(&models),
            ctrl.clone(),
            Arc::clone(&metrics),
            ReloadSettings {
                features: cfg.features,
                stream: cfg.stream,
                horizon_from_model: cfg.horizon_from_model,
            },
            recorder.clone(),
        ));
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(AppState {
            models: Arc::clone(&models),
            reloader: Arc::clone(&reloader),
            recorder: recorder.clone(),
            max_model_bytes: cfg.max_model_bytes,
            clock: Arc::clone(&cfg.clock),
            metrics: Arc::clone(&metrics),
            hub: Arc::clone(&hub),
            shards: ctrl.clone(),
            token: cfg.token.clone(),
            max_body: cfg.max_request_bytes,
            history: cfg.history,
            publish_hz: cfg.publish_hz,
            stale_ms: cfg.stale.as_millis() as u64,
            udp: if worker_mode {
                "none (worker: frames come from the broker)".into()
            } else {
                udp.to_string()
            },
            ready: Arc::clone(&ready),
            shutdown: shutdown_rx,
        });
        let app = http::router(state);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let rt = Arc::clone(&runtime);
        let listener = {
            let _g = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(|source| ServeError::Io {
                context: "registering the HTTP socket",
                source,
            })?
        };
        let http_thread = std::thread::Builder::new()
            .name("aether-http-serve".into())
            .spawn(move || {
                rt.block_on(async move {
                    let _ = axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
                });
            })
            .map_err(|source| ServeError::Io {
                context: "starting the HTTP thread",
                source,
            })?;
        ready.store(true, Ordering::SeqCst);
        tracing::info!(%udp, %http, shards = n_shards, udp_buffer, "aether serve started");
        Ok(Self {
            udp,
            http,
            udp_buffer,
            models,
            reloader,
            mqtt,
            recorder,
            metrics,
            running,
            ready,
            ingest: ingest_threads,
            shards,
            ctrl,
            shutdown_tx,
            http_stop: Some(stop_tx),
            http_thread: Some(http_thread),
            runtime,
            cluster: role_tasks,
        })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
    }

    /// Receive buffer the kernel granted the UDP socket, bytes.
    pub fn udp_buffer(&self) -> usize {
        self.udp_buffer
    }

    /// The serving model.
    pub fn model(&self) -> Arc<LoadedModel> {
        self.models.get()
    }

    /// Generation of the serving model (0 = the one started with, +1 per reload).
    pub fn model_generation(&self) -> u64 {
        self.models.generation()
    }

    /// Validates `bytes` fully and swaps the model in (blocks until every shard has);
    /// on error the old model keeps serving.
    pub fn reload(&self, bytes: &[u8]) -> Result<Reloaded, ServeError> {
        self.reloader.reload(bytes)
    }

    /// The recorder, with `--record`.
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs the stale/expire sweep on every shard now and waits for it.
    pub fn sweep_now(&self) {
        let mut waits = Vec::new();
        for c in &self.ctrl {
            let (tx, rx) = oneshot::channel();
            if c.send(Control::Sweep(tx)).is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.blocking_recv();
        }
    }

    /// Every node's view (what `GET /api/v1/nodes` lists), unsorted.
    pub fn nodes(&self) -> Vec<Value> {
        let mut waits = Vec::new();
        for c in &self.ctrl {
            let (tx, rx) = oneshot::channel();
            if c.send(Control::List(tx)).is_ok() {
                waits.push(rx);
            }
        }
        waits
            .into_iter()
            .filter_map(|w| w.blocking_recv().ok())
            .flatten()
            .collect()
    }

    /// Frames that reached node streams so far.
    pub fn frames(&self) -> u64 {
        self.metrics.frames.get()
    }

    /// Whether this service is a cluster gateway (`--publish`).
    pub fn is_gateway(&self) -> bool {
        matches!(self.cluster, Some(Running::Gateway(_)))
    }

    /// Whether this service is a cluster worker (`--source`).
    pub fn is_worker(&self) -> bool {
        matches!(self.cluster, Some(Running::Worker(_)))
    }

    /// Blocks until SIGINT or SIGTERM.
    pub fn wait_for_signal(&self) {
        self.run_until_signal(None);
    }

    /// Blocks until SIGINT or SIGTERM; on SIGHUP reloads the model from `reload_from`
    /// (validated first; a bad file is logged and the old model keeps serving).
    pub fn run_until_signal(&self, reload_from: Option<&Path>) {
        use tokio::signal::unix::{signal, SignalKind};
        self.runtime.block_on(async {
            let mut term = signal(SignalKind::terminate()).ok();
            let mut hup = signal(SignalKind::hangup()).ok();
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = next(&mut term) => break,
                    _ = next(&mut hup) => {
                        let Some(p) = reload_from else {
                            tracing::warn!("SIGHUP: no --model file to reload from");
                            continue;
                        };
                        let p = p.to_path_buf();
                        let rl = Arc::clone(&self.reloader);
                        let r = tokio::task::spawn_blocking(move || {
                            let bytes = std::fs::read(&p).map_err(|e| {
                                ServeError::Model(format!("reading {}: {e}", p.display()))
                            })?;
                            rl.reload(&bytes)
                        })
                        .await;
                        match r {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                if matches!(e, ServeError::Model(ref m) if m.starts_with("reading")) {
                                    self.metrics.reload("failed");
                                }
                                tracing::error!(error = %e, "SIGHUP reload failed; the old model keeps serving");
                            }
                            Err(e) => tracing::error!(error = %e, "SIGHUP reload task failed"),
                        }
                    }
                }
            }
        });
    }

    /// Stops cleanly: not ready, ingest stops, every queued frame is processed, WebSocket
    /// clients get a `shutdown` message and a close frame, the HTTP server closes.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.ready.store(false, Ordering::SeqCst);
        self.running.store(false, Ordering::SeqCst);
        for h in self.ingest.drain(..) {
            let _ = h.join();
        }
        // A worker finishes its frames in flight, commits and releases its leases; then
        // its shards drain.
        if let Some(Running::Worker(w)) = &mut self.cluster {
            w.stop(&self.runtime, Duration::from_secs(20));
        }
        for h in self.shards.drain(..) {
            let _ = h.join();
        }
        // A gateway stores what the shards forwarded last.
        if let Some(Running::Gateway(f)) = &mut self.cluster {
            f.finish(&self.runtime, Duration::from_secs(10));
        }
        // The shards queued the end of every open segment: the recorder finishes them.
        if let Some(r) = &self.recorder {
            r.stop();
        }
        if let Some(m) = &mut self.mqtt {
            m.stop(&self.runtime);
        }
        let _ = self.shutdown_tx.send(true);
        // Give WebSocket tasks a moment to send their close frames.
        std::thread::sleep(Duration::from_millis(50));
        if let Some(s) = self.http_stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.http_thread.take() {
            let _ = h.join();
        }
    }
}

/// The next delivery of signal `s` (never, when it could not be installed).
async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.http_thread.is_some() || !self.ingest.is_empty() {
            self.stop();
        }
    }
}
