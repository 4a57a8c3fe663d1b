//! Prometheus metrics from real counters (prometheus-client, one registry per service,
//! no global state). Naming follows one scheme per stage: `aether_<thing>_total`
//! counters, `aether_<stage>_seconds` histograms, gauges for levels.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Why a packet was dropped (label `reason` of `aether_packets_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Shorter than its packet kind needs.
    Truncated,
    /// Longer than the receive buffer (the datagram was cut).
    Oversized,
    /// Unknown magic.
    BadMagic,
    /// More bytes than its one packet.
    TrailingBytes,
    /// Zero antennas declared.
    ZeroAntennas,
    /// Zero or more than 512 subcarriers declared.
    BadSubcarriers,
    /// Fewer subcarriers than the extractor's bands.
    TooFewSubcarriers,
    /// CRC mismatch.
    Crc,
    /// Unsupported packet version.
    Version,
    /// NaN or infinite values.
    NonFinite,
    /// The node's frame shape changed mid-stream.
    ShapeChange,
    /// The model does not take this packet kind or width.
    ModelInput,
    /// The node limit is reached.
    TooManyNodes,
    /// The node sends faster than the per-node limit.
    RateLimited,
    /// The shard's queue is full.
    QueueFull,
    /// Sequence number seen before.
    Duplicate,
    /// Sequence number behind the newest (arrived late).
    Reordered,
    /// The stream refused the frame (numeric range).
    Stream,
}

impl Reject {
    /// Every reason, for pre-registering the label values.
    pub const ALL: [Reject; 18] = [
        Reject::Truncated,
        Reject::Oversized,
        Reject::BadMagic,
        Reject::TrailingBytes,
        Reject::ZeroAntennas,
        Reject::BadSubcarriers,
        Reject::TooFewSubcarriers,
        Reject::Crc,
        Reject::Version,
        Reject::NonFinite,
        Reject::ShapeChange,
        Reject::ModelInput,
        Reject::TooManyNodes,
        Reject::RateLimited,
        Reject::QueueFull,
        Reject::Duplicate,
        Reject::Reordered,
        Reject::Stream,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Truncated => "truncated",
            Reject::Oversized => "oversized",
            Reject::BadMagic => "bad_magic",
            Reject::TrailingBytes => "trailing_bytes",
            Reject::ZeroAntennas => "zero_antennas",
            Reject::BadSubcarriers => "bad_subcarriers",
            Reject::TooFewSubcarriers => "too_few_subcarriers",
            Reject::Crc => "crc",
            Reject::Version => "version",
            Reject::NonFinite => "non_finite",
            Reject::ShapeChange => "shape_change",
            Reject::ModelInput => "model_input",
            Reject::TooManyNodes => "too_many_nodes",
            Reject::RateLimited => "rate_limited",
            Reject::QueueFull => "queue_full",
            Reject::Duplicate => "duplicate",
            Reject::Reordered => "reordered",
            Reject::Stream => "stream",
        }
    }
}

fn info_labels(model_sha: &str) -> Vec<(String, String)> {
    vec![
        ("model_sha256".into(), model_sha.into()),
        ("version".into(), env!("CARGO_PKG_VERSION").into()),
    ]
}

/// Per-frame processing stages (label `stage` of `aether_stage_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Packet decoding and sequence checks.
    Decode,
    /// Feature extraction.
    Features,
    /// The head's stream push.
    Head,
}

impl Stage {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Features => "features",
            Stage::Head => "head",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
    shard: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabel {
    shard: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Every metric of a service.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Datagrams received.
    pub packets: Counter,
    rejected: Family<ReasonLabel, Counter>,
    packets_kind: Family<KindLabel, Counter>,
    /// Frames that reached a node's stream.
    pub frames: Counter,
    /// Packets missing in sequence gaps.
    pub frames_lost: Counter,
    resets: Family<ReasonLabel, Counter>,
    /// Node classification packets recorded.
    pub node_results: Counter,
    /// Nodes dropped after `--expire`.
    pub nodes_expired: Counter,
    nodes: Family<StateLabel, Gauge>,
    stage: Family<StageLabel, Histogram>,
    latency: Family<ShardLabel, Histogram>,
    queue: Family<ShardLabel, Gauge>,
    /// Queue capacity per shard, packets.
    pub queue_capacity: Gauge,
    /// Open WebSocket clients.
    pub ws_clients: Gauge,
    /// WebSocket messages sent.
    pub ws_messages: Counter,
    /// WebSocket messages a lagging client missed.
    pub ws_lagged: Counter,
    /// Classification packets sent back to nodes.
    pub replies: Counter,
    /// Datagrams the kernel dropped because the socket buffer was full.
    pub kernel_drops: Counter,
    http_rejected: Family<ReasonLabel, Counter>,
    /// HTTP requests served.
    pub http_requests: Counter,
    /// Per-shard node counts (live, stale), summed into `aether_nodes` on scrape.
    pub shard_nodes: Vec<[AtomicI64; 2]>,
    info: Family<Vec<(String, String)>, Gauge>,
    /// Model reloads, by result (`ok`, `invalid`, `failed`).
    reloads: Family<ReasonLabel, Counter>,
    /// Generation of the serving model (0 = the model the service started with).
    pub model_generation: Gauge,
    /// MQTT messages published (queued to the client), by kind.
    mqtt_messages: Family<KindLabel, Counter>,
    /// MQTT messages or shard events dropped, by reason.
    mqtt_dropped: Family<ReasonLabel, Counter>,
    /// 1 while connected to the broker.
    pub mqtt_connected: Gauge,
    /// Broker connections made (the first and every reconnect).
    pub mqtt_connects: Counter,
    /// Broker connection errors (refused, lost, timed out).
    pub mqtt_errors: Counter,
    /// Full announcements (every discovery config), by cause.
    mqtt_announces: Family<ReasonLabel, Counter>,
    /// Feature rows written to labelled segments.
    pub record_rows: Counter,
    /// Feature rows flushed and synced to disk.
    pub record_rows_synced: Counter,
    /// Raw frames written to the continuous captures.
    pub record_captured: Counter,
    /// Frames not recorded, by reason (`queue_full`, `write_failed`).
    record_dropped: Family<ReasonLabel, Counter>,
    /// Recording errors, by kind (`no_space`, `permission`, `read_only`, `other`).
    record_errors: Family<KindLabel, Counter>,
    /// Labelled segments by outcome (`finished`, `failed`, `recovered`).
    record_segments: Family<ReasonLabel, Counter>,
    /// Labelled segments being written.
    pub record_active: Gauge,
    /// Label requests, by action (`start`, `stop`).
    labels: Family<KindLabel, Counter>,
    /// Gateway and worker metrics (registered only in those roles).
    pub cluster: ClusterMetrics,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabel {
    what: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: u32,
}

/// Metrics of the gateway and worker roles (docs/scaling.md).
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// Gateway: frames the broker stored.
    pub forwarded: Counter,
    /// Messages the broker already had (same dedup id): not stored twice.
    pub duplicates: Counter,
    /// Gateway: frames dropped because the broker queue was full.
    pub forward_dropped: Counter,
    /// Messages sent again after a failed confirmation.
    pub retries: Counter,
    /// Messages sent and not yet confirmed.
    pub inflight: Gauge,
    /// Gateway: frames queued for the broker.
    pub queue: Gauge,
    publish_errors: Family<WhatLabel, Counter>,
    /// Worker: partitions owned.
    pub partitions_owned: Gauge,
    lease: Family<PartitionLabel, Gauge>,
    /// Worker: leases taken.
    pub leases_acquired: Counter,
    /// Worker: leases lost (not renewed in time, or taken by another worker).
    pub leases_lost: Counter,
    /// Worker: partitions taken over from a previous owner.
    pub takeovers: Counter,
    /// Worker: seconds from taking a lease to processing the first live frame, last takeover.
    pub takeover_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Worker: frames replayed to rebuild node state.
    pub replay_frames: Counter,
    lag: Family<PartitionLabel, Gauge>,
    /// Worker: frames received from the partitions.
    pub received: Counter,
    /// Worker: frames the broker delivered again (already taken: skipped).
    pub redeliveries: Counter,
    /// Worker: commits (acknowledgements up to a frame) sent.
    pub acks: Counter,
    /// Worker: frames acknowledged.
    pub frames_acked: Counter,
    /// Worker: results the broker stored.
    pub results: Counter,
    /// Worker: results not published again because the previous owner had.
    pub results_skipped: Counter,
    /// Worker: frames missing between a node's forwarded positions.
    pub frames_missing: Counter,
    /// Worker: nodes rebuilt from fewer frames than the state horizon.
    pub inexact_nodes: Counter,
    /// Worker: outcomes dropped because their partition's lease was lost.
    pub fenced: Counter,
    /// Worker: messages that are not forwarded frames.
    pub bad_envelopes: Counter,
}

impl ClusterMetrics {
    /// Counts a broker error of `what` (`frame`, `result`, `ack`, `lease`, `fetch`, `replay`).
    pub fn publish_error(&self, what: &'static str) {
        self.publish_errors.get_or_create(&WhatLabel { what }).inc();
    }

    /// Sets whether this worker holds partition `p`'s lease.
    pub fn set_lease(&self, p: u32, owned: bool) {
        self.lease
            .get_or_create(&PartitionLabel { partition: p })
            .set(i64::from(owned));
    }

    /// Sets partition `p`'s consumer lag (frames the broker holds for this worker).
    pub fn set_lag(&self, p: u32, lag: u64) {
        self.lag
            .get_or_create(&PartitionLabel { partition: p })
            .set(lag.min(i64::MAX as u64) as i64);
    }

    fn register(&self, r: &mut Registry) {
        let c = |r: &mut Registry, n: &str, h: &str, m: &Counter| r.register(n, h, m.clone());
        c(
            r,
            "aether_cluster_frames_forwarded",
            "Frames the broker stored (gateway)",
            &self.forwarded,
        );
        c(
            r,
            "aether_cluster_duplicates",
            "Messages the broker already had (same dedup id), not stored twice",
            &self.duplicates,
        );
        c(
            r,
            "aether_cluster_forward_dropped",
            "Frames dropped because the broker queue was full (gateway)",
            &self.forward_dropped,
        );
        c(
            r,
            "aether_cluster_retries",
            "Messages sent again after a failed confirmation",
            &self.retries,
        );
        r.register(
            "aether_cluster_inflight",
            "Messages sent to the broker and not yet confirmed",
            self.inflight.clone(),
        );
        r.register(
            "aether_cluster_forward_queue",
            "Frames queued for the broker (gateway)",
            self.queue.clone(),
        );
        r.register(
            "aether_cluster_errors",
            "Broker errors, by operation",
            self.publish_errors.clone(),
        );
        r.register(
            "aether_cluster_partitions_owned",
            "Partitions this worker owns",
            self.partitions_owned.clone(),
        );
        r.register(
            "aether_cluster_lease",
            "1 while this worker holds the partition's lease, 0 while it waits as a standby",
            self.lease.clone(),
        );
        c(
            r,
            "aether_cluster_leases_acquired",
            "Partition leases taken",
            &self.leases_acquired,
        );
        c(
            r,
            "aether_cluster_leases_lost",
            "Partition leases lost",
            &self.leases_lost,
        );
        c(
            r,
            "aether_cluster_takeovers",
            "Partitions taken over from a previous owner",
            &self.takeovers,
        );
        r.register(
            "aether_cluster_takeover_seconds",
            "From taking a lease to the first live frame, last takeover",
            self.takeover_seconds.clone(),
        );
        c(
            r,
            "aether_cluster_replay_frames",
            "Frames replayed to rebuild node state",
            &self.replay_frames,
        );
        r.register(
            "aether_cluster_consumer_lag",
            "Frames the broker holds for this worker, by partition",
            self.lag.clone(),
        );
        c(
            r,
            "aether_cluster_frames_received",
            "Frames received from the partitions",
            &self.received,
        );
        c(
            r,
            "aether_cluster_redeliveries",
            "Frames delivered again and skipped",
            &self.redeliveries,
        );
        c(
            r,
            "aether_cluster_acks",
            "Acknowledgements (up to a frame) sent",
            &self.acks,
        );
        c(
            r,
            "aether_cluster_frames_acked",
            "Frames acknowledged",
            &self.frames_acked,
        );
        c(
            r,
            "aether_cluster_results_published",
            "Results the broker stored",
            &self.results,
        );
        c(
            r,
            "aether_cluster_results_skipped",
            "Results not published again because a previous owner had",
            &self.results_skipped,
        );
        c(
            r,
            "aether_cluster_frames_missing",
            "Frames missing between a node's forwarded positions",
            &self.frames_missing,
        );
        c(
            r,
            "aether_cluster_inexact_nodes",
            "Nodes rebuilt from fewer frames than the state horizon",
            &self.inexact_nodes,
        );
        c(
            r,
            "aether_cluster_fenced",
            "Outcomes dropped because the partition's lease was lost",
            &self.fenced,
        );
        c(
            r,
            "aether_cluster_bad_envelopes",
            "Messages in a partition that are not forwarded frames",
            &self.bad_envelopes,
        );
        for w in [
            "frame", "result", "ack", "lease", "fetch", "replay", "lookup",
        ] {
            let _ = self.publish_errors.get_or_create(&WhatLabel { what: w });
        }
    }
}

impl Metrics {
    /// A registry with every metric for `shards` shards.
    pub fn new(shards: usize, model_sha: &str) -> Arc<Self> {
        Self::with_cluster(shards, model_sha, false)
    }

    /// [`Metrics::new`], plus the cluster metrics when `cluster` (gateway or worker).
    pub fn with_cluster(shards: usize, model_sha: &str, cluster: bool) -> Arc<Self> {
        let mut registry = Registry::default();
        let m = Self {
            packets: Counter::default(),
            rejected: Family::default(),
            packets_kind: Family::default(),
            frames: Counter::default(),
            frames_lost: Counter::default(),
            resets: Family::default(),
            node_results: Counter::default(),
            nodes_expired: Counter::default(),
            nodes: Family::default(),
            stage: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(2.5e-7, 1.25, 60))
            }),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1e-5, 1.25, 64))
            }),
            queue: Family::default(),
            queue_capacity: Gauge::default(),
            ws_clients: Gauge::default(),
            ws_messages: Counter::default(),
            ws_lagged: Counter::default(),
            replies: Counter::default(),
            kernel_drops: Counter::default(),
            http_rejected: Family::default(),
            http_requests: Counter::default(),
            shard_nodes: (0..shards)
                .map(|_| [AtomicI64::new(0), AtomicI64::new(0)])
                .collect(),
            registry: Registry::default(),
            info: Family::default(),
            reloads: Family::default(),
            model_generation: Gauge::default(),
            mqtt_messages: Family::default(),
            mqtt_dropped: Family::default(),
            mqtt_connected: Gauge::default(),
            mqtt_connects: Counter::default(),
            mqtt_errors: Counter::default(),
            mqtt_announces: Family::default(),
            record_rows: Counter::default(),
            record_rows_synced: Counter::default(),
            record_captured: Counter::default(),
            record_dropped: Family::default(),
            record_errors: Family::default(),
            record_segments: Family::default(),
            record_active: Gauge::default(),
            labels: Family::default(),
            cluster: ClusterMetrics::default(),
        };
        if cluster {
            m.cluster.register(&mut registry);
        }
        registry.register(
            "aether_packets_received",
            "UDP datagrams received",
            m.packets.clone(),
        );
        registry.register(
            "aether_packets_by_kind",
            "Datagrams received by packet kind (raw_csi, feature_state, classification, unknown)",
            m.packets_kind.clone(),
        );
        registry.register(
            "aether_packets_rejected",
            "Datagrams dropped, by reason",
            m.rejected.clone(),
        );
        registry.register(
            "aether_frames",
            "Frames that reached a node's stream",
            m.frames.clone(),
        );
        registry.register(
            "aether_frames_lost",
            "Packets missing in sequence-number gaps",
            m.frames_lost.clone(),
        );
        registry.register(
            "aether_stream_resets",
            "Node streams restarted, by reason (gap, restart, shape)",
            m.resets.clone(),
        );
        registry.register(
            "aether_node_results",
            "Classification packets from nodes that classify on-device",
            m.node_results.clone(),
        );
        registry.register(
            "aether_nodes_expired",
            "Nodes whose state was dropped",
            m.nodes_expired.clone(),
        );
        registry.register("aether_nodes", "Nodes tracked, by state", m.nodes.clone());
        registry.register(
            "aether_stage_seconds",
            "Per-frame time in each processing stage",
            m.stage.clone(),
        );
        registry.register(
            "aether_frame_latency_seconds",
            "From the datagram's receipt to its result",
            m.latency.clone(),
        );
        registry.register(
            "aether_queue_depth",
            "Packets queued per shard",
            m.queue.clone(),
        );
        registry.register(
            "aether_queue_capacity",
            "Packets a shard may have queued",
            m.queue_capacity.clone(),
        );
        registry.register(
            "aether_ws_clients",
            "Open WebSocket clients",
            m.ws_clients.clone(),
        );
        registry.register(
            "aether_ws_messages",
            "WebSocket messages sent",
            m.ws_messages.clone(),
        );
        registry.register(
            "aether_ws_lagged_messages",
            "WebSocket messages lagging clients missed",
            m.ws_lagged.clone(),
        );
        registry.register(
            "aether_replies_sent",
            "Classification packets sent back to nodes",
            m.replies.clone(),
        );
        registry.register(
            "aether_kernel_drops",
            "Datagrams the kernel dropped (socket buffer full)",
            m.kernel_drops.clone(),
        );
        registry.register(
            "aether_http_rejected",
            "HTTP requests refused, by reason",
            m.http_rejected.clone(),
        );
        registry.register(
            "aether_http_requests",
            "HTTP requests served",
            m.http_requests.clone(),
        );
        m.info.get_or_create(&info_labels(model_sha)).set(1);
        registry.register(
            "aether_info",
            "The running model and version",
            m.info.clone(),
        );
        registry.register(
            "aether_model_reloads",
            "Model reloads (POST /api/v1/model, SIGHUP), by result",
            m.reloads.clone(),
        );
        registry.register(
            "aether_model_generation",
            "Generation of the serving model (0 = the one started with)",
            m.model_generation.clone(),
        );
        registry.register(
            "aether_mqtt_messages",
            "MQTT messages handed to the client, by kind",
            m.mqtt_messages.clone(),
        );
        registry.register(
            "aether_mqtt_dropped",
            "MQTT events or messages dropped (never blocking the shards), by reason",
            m.mqtt_dropped.clone(),
        );
        registry.register(
            "aether_mqtt_connected",
            "1 while connected to the MQTT broker",
            m.mqtt_connected.clone(),
        );
        registry.register(
            "aether_mqtt_connects",
            "MQTT broker connections made",
            m.mqtt_connects.clone(),
        );
        registry.register(
            "aether_mqtt_errors",
            "MQTT connection errors",
            m.mqtt_errors.clone(),
        );
        registry.register(
            "aether_mqtt_announcements",
            "Home Assistant discovery announcements, by cause",
            m.mqtt_announces.clone(),
        );
        registry.register(
            "aether_record_rows",
            "Feature rows written to labelled segments",
            m.record_rows.clone(),
        );
        registry.register(
            "aether_record_rows_synced",
            "Feature rows flushed and fsynced to disk",
            m.record_rows_synced.clone(),
        );
        registry.register(
            "aether_record_captured",
            "Raw frames written to the continuous captures",
            m.record_captured.clone(),
        );
        registry.register(
            "aether_record_dropped",
            "Frames not recorded, by reason",
            m.record_dropped.clone(),
        );
        registry.register(
            "aether_record_errors",
            "Recording I/O errors, by kind",
            m.record_errors.clone(),
        );
        registry.register(
            "aether_record_segments",
            "Labelled segments, by outcome",
            m.record_segments.clone(),
        );
        registry.register(
            "aether_record_segments_active",
            "Labelled segments being written",
            m.record_active.clone(),
        );
        registry.register(
            "aether_labels",
            "Label requests, by action",
            m.labels.clone(),
        );
        for r in ["ok", "invalid", "failed"] {
            let _ = m.reloads.get_or_create(&ReasonLabel { reason: r });
        }
        for k in ["config", "state", "availability", "event", "status"] {
            let _ = m.mqtt_messages.get_or_create(&KindLabel { kind: k });
        }
        for r in ["queue_full", "client_full"] {
            let _ = m.mqtt_dropped.get_or_create(&ReasonLabel { reason: r });
        }
        for r in ["connect", "birth", "model"] {
            let _ = m.mqtt_announces.get_or_create(&ReasonLabel { reason: r });
        }
        for r in ["queue_full", "write_failed"] {
            let _ = m.record_dropped.get_or_create(&ReasonLabel { reason: r });
        }
        for k in ["no_space", "permission", "read_only", "other"] {
            let _ = m.record_errors.get_or_create(&KindLabel { kind: k });
        }
        for r in ["finished", "failed", "recovered"] {
            let _ = m.record_segments.get_or_create(&ReasonLabel { reason: r });
        }
        for k in ["start", "stop"] {
            let _ = m.labels.get_or_create(&KindLabel { kind: k });
        }
        for r in Reject::ALL {
            let _ = m
                .rejected
                .get_or_create(&ReasonLabel { reason: r.as_str() });
        }
        for r in ["gap", "restart", "shape", "error"] {
            let _ = m.resets.get_or_create(&ReasonLabel { reason: r });
        }
        for k in ["raw_csi", "feature_state", "classification", "unknown"] {
            let _ = m.packets_kind.get_or_create(&KindLabel { kind: k });
        }
        for s in ["live", "stale"] {
            let _ = m.nodes.get_or_create(&StateLabel { state: s });
        }
        for r in [
            "unauthorized",
            "not_found",
            "too_large",
            "uri_too_long",
            "method",
            "bad_request",
            "forbidden",
            "conflict",
        ] {
            let _ = m.http_rejected.get_or_create(&ReasonLabel { reason: r });
        }
        Arc::new(Self { registry, ..m })
    }

    /// The counter of rejection `r` (cheap handle to keep on a hot path).
    pub fn rejected(&self, r: Reject) -> Counter {
        self.rejected
            .get_or_create(&ReasonLabel { reason: r.as_str() })
            .clone()
    }

    /// The counter of packets of `kind`.
    pub fn kind(&self, kind: &'static str) -> Counter {
        self.packets_kind.get_or_create(&KindLabel { kind }).clone()
    }

    /// The counter of stream resets for `reason`.
    pub fn resets(&self, reason: &'static str) -> Counter {
        self.resets.get_or_create(&ReasonLabel { reason }).clone()
    }

    /// The histogram of `stage` on `shard`.
    pub fn stage(&self, stage: Stage, shard: usize) -> Histogram {
        self.stage
            .get_or_create(&StageLabel {
                stage: stage.as_str(),
                shard: shard as u32,
            })
            .clone()
    }

    /// The frame-latency histogram of `shard`.
    pub fn latency(&self, shard: usize) -> Histogram {
        self.latency
            .get_or_create(&ShardLabel {
                shard: shard as u32,
            })
            .clone()
    }

    /// The queue-depth gauge of `shard`.
    pub fn queue(&self, shard: usize) -> Gauge {
        self.queue
            .get_or_create(&ShardLabel {
                shard: shard as u32,
            })
            .clone()
    }

    /// Counts an HTTP refusal.
    pub fn http_rejected(&self, reason: &'static str) {
        self.http_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Shows `new_sha` in `aether_info` instead of `old_sha` and counts a reload.
    pub fn model_swapped(&self, old_sha: &str, new_sha: &str, generation: u64) {
        self.info.remove(&info_labels(old_sha));
        self.info.get_or_create(&info_labels(new_sha)).set(1);
        self.model_generation.set(generation as i64);
        self.reload("ok");
    }

    /// Counts a reload with `result` (`ok`, `invalid`, `failed`).
    pub fn reload(&self, result: &'static str) {
        self.reloads
            .get_or_create(&ReasonLabel { reason: result })
            .inc();
    }

    /// The counter of MQTT messages of `kind`.
    pub fn mqtt_message(&self, kind: &'static str) -> Counter {
        self.mqtt_messages
            .get_or_create(&KindLabel { kind })
            .clone()
    }

    /// The counter of MQTT drops for `reason`.
    pub fn mqtt_dropped(&self, reason: &'static str) -> Counter {
        self.mqtt_dropped
            .get_or_create(&ReasonLabel { reason })
            .clone()
    }

    /// Counts an announcement caused by `cause` (`connect`, `birth`, `model`).
    pub fn mqtt_announce(&self, cause: &'static str) {
        self.mqtt_announces
            .get_or_create(&ReasonLabel { reason: cause })
            .inc();
    }

    /// The counter of frames not recorded for `reason`.
    pub fn record_dropped(&self, reason: &'static str) -> Counter {
        self.record_dropped
            .get_or_create(&ReasonLabel { reason })
            .clone()
    }

    /// Counts a recording error of `kind`.
    pub fn record_error(&self, kind: &'static str) {
        self.record_errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// Counts a segment with `outcome` (`finished`, `failed`, `recovered`).
    pub fn record_segment(&self, outcome: &'static str) {
        self.record_segments
            .get_or_create(&ReasonLabel { reason: outcome })
            .inc();
    }

    /// Counts a label request (`start`, `stop`).
    pub fn label(&self, action: &'static str) {
        self.labels.get_or_create(&KindLabel { kind: action }).inc();
    }

    /// Node counts `(live, stale)` over every shard.
    pub fn node_counts(&self) -> (i64, i64) {
        self.shard_nodes.iter().fold((0, 0), |(l, s), [a, b]| {
            (l + a.load(Ordering::Relaxed), s + b.load(Ordering::Relaxed))
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let (live, stale) = self.node_counts();
        self.nodes
            .get_or_create(&StateLabel { state: "live" })
            .set(live);
        self.nodes
            .get_or_create(&StateLabel { state: "stale" })
            .set(stale);
        let mut s = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
