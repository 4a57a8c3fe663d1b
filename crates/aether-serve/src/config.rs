//! Service settings (every `aether serve` flag has a field here).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aether_data::features::FeatureConfig;
use aether_head::StreamSettings;

use crate::clock::{Clock, SystemClock};
use crate::cluster::{ClusterConfig, Role};
use crate::error::ServeError;
use crate::mqtt::MqttConfig;
use crate::record::RecordConfig;

/// Everything a [`crate::Service`] needs besides the model bytes.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// UDP address the nodes send to.
    pub udp: SocketAddr,
    /// HTTP address of the API, metrics and dashboard.
    pub http: SocketAddr,
    /// Worker shards (threads owning nodes); 0 = one per CPU.
    pub shards: usize,
    /// Stream settings of every node (`None`: the model's default horizon).
    pub stream: Option<StreamSettings>,
    /// Extractor for a model whose file names no features (v1).
    pub features: FeatureConfig,
    /// A node is `stale` after this long without frames.
    pub stale: Duration,
    /// A node's state is dropped after this long without frames.
    pub expire: Duration,
    /// Largest gap (missing packets) a stream continues over; a larger one resets it.
    pub max_gap: u32,
    /// Most WebSocket updates per node per second (class changes are sent at once).
    pub publish_hz: f64,
    /// Per-frame results kept per node for `GET /api/v1/nodes/{id}`.
    pub history: usize,
    /// Most nodes tracked at once; packets of further nodes are refused.
    pub max_nodes: usize,
    /// Most frames per second one node may send (token bucket, burst of one second);
    /// 0 = no limit.
    pub max_node_rate: f64,
    /// Packets a shard may have queued; beyond that, packets are dropped and counted.
    pub queue_packets: usize,
    /// Bearer token required by the API (and the dashboard's requests).
    pub token: Option<String>,
    /// Allow a non-loopback HTTP address without a token.
    pub insecure: bool,
    /// Send a classification packet back to a node after each published update.
    pub reply: bool,
    /// Largest HTTP request body accepted, bytes.
    pub max_request_bytes: usize,
    /// Kernel receive buffer asked for the UDP socket, bytes.
    pub udp_recv_buffer: usize,
    /// UDP receive threads (several share the port with `SO_REUSEPORT`).
    pub ingest_threads: usize,
    /// WebSocket broadcast buffer (messages a client may fall behind before it lags).
    pub ws_buffer: usize,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// On a model reload, take the horizon from the new model's training window (no
    /// explicit `--horizon`); the other stream settings stay.
    pub horizon_from_model: bool,
    /// Largest model accepted by `POST /api/v1/model`, bytes.
    pub max_model_bytes: usize,
    /// MQTT with Home Assistant discovery.
    pub mqtt: Option<MqttConfig>,
    /// Recording and labelling (`--record DIR`).
    pub record: Option<RecordConfig>,
    /// Gateway (`--publish`) or worker (`--source`) of a cluster (docs/scaling.md).
    pub cluster: Option<ClusterConfig>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            udp: "0.0.0.0:5005".parse().expect("literal"),
            http: "127.0.0.1:8080".parse().expect("literal"),
            shards: 0,
            stream: None,
            features: FeatureConfig::default(),
            stale: Duration::from_secs(5),
            expire: Duration::from_secs(60),
            max_gap: 50,
            publish_hz: 10.0,
            history: 256,
            max_nodes: 10_000,
            max_node_rate: 1_000.0,
            queue_packets: 65_536,
            token: None,
            insecure: false,
            reply: false,
            max_request_bytes: 64 * 1024,
            udp_recv_buffer: 16 * 1024 * 1024,
            ingest_threads: 1,
            ws_buffer: 4_096,
            clock: Arc::new(SystemClock::default()),
            horizon_from_model: false,
            max_model_bytes: 64 * 1024 * 1024,
            mqtt: None,
            record: None,
            cluster: None,
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

impl ServeConfig {
    /// Checks every setting; the HTTP API on a non-loopback address needs a token or
    /// `insecure`.
    pub fn validate(&self) -> Result<(), ServeError> {
        let bad = |m: String| Err(ServeError::Config(m));
        if !is_loopback(self.http.ip()) && self.token.is_none() && !self.insecure {
            return bad(format!(
                "the HTTP API on {} is reachable from other hosts: give --token (bearer) or --insecure",
                self.http
            ));
        }
        if let Some(t) = &self.token {
            if t.len() < 8 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return bad("--token must be at least 8 printable ASCII characters".into());
            }
        }
        if self.shards > 1024 {
            return bad(format!("--shards {} is more than 1024", self.shards));
        }
        if self.expire < self.stale {
            return bad(format!(
                "--expire ({:?}) must not be shorter than --stale ({:?})",
                self.expire, self.stale
            ));
        }
        if !(self.publish_hz > 0.0 && self.publish_hz <= 1_000.0) {
            return bad(format!(
                "--publish-hz {} must be in (0, 1000]",
                self.publish_hz
            ));
        }
        if !(self.max_node_rate >= 0.0 && self.max_node_rate.is_finite()) {
            return bad(format!(
                "--max-node-rate {} must be a finite value ≥ 0",
                self.max_node_rate
            ));
        }
        if self.history > 1_000_000 {
            return bad(format!("--history {} is more than 1,000,000", self.history));
        }
        if self.max_nodes == 0 || self.max_nodes > 10_000_000 {
            return bad(format!(
                "--max-nodes {} must be in 1..=10,000,000",
                self.max_nodes
            ));
        }
        if self.queue_packets == 0 {
            return bad("--queue must be positive".into());
        }
        if self.ingest_threads == 0 || self.ingest_threads > 64 {
            return bad(format!(
                "--ingest-threads {} must be in 1..=64",
                self.ingest_threads
            ));
        }
        if self.ws_buffer == 0 || self.ws_buffer > 1 << 20 {
            return bad(format!(
                "--ws-buffer {} must be in 1..=1048576",
                self.ws_buffer
            ));
        }
        if let Some(s) = &self.stream {
            s.validate()
                .map_err(|e| ServeError::Config(format!("stream settings: {e}")))?;
        }
        if self.max_model_bytes < 1024 || self.max_model_bytes > 1 << 30 {
            return bad(format!(
                "--max-model-bytes {} must be in 1024..=1073741824",
                self.max_model_bytes
            ));
        }
        if let Some(m) = &self.mqtt {
            m.validate()?;
        }
        if let Some(c) = &self.cluster {
            c.validate()?;
            if let Role::Worker { .. } = c.role {
                if self.reply {
                    return bad("--reply needs the nodes' UDP socket: not on a worker".into());
                }
                if self.stream.is_some_and(|s| s.horizon == 0) {
                    return bad("a worker needs a horizon > 0 (--horizon): a continuous stream cannot be rebuilt from retained frames".into());
                }
            }
        }
        if let Some(r) = &self.record {
            if r.queue == 0 || r.flush_every.is_zero() {
                return bad("--record-queue and --record-flush must be positive".into());
            }
        }
        Ok(())
    }

    /// Shards actually started.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}
