//! A shard: one thread that owns a subset of the nodes (by hash of the node key) and
//! runs every packet of theirs through decode → features → head → publish. No lock
//! on the hot path: packets arrive in batches on a bounded queue, HTTP queries arrive
//! on a control channel and are answered between batches.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_data::features::FeatureStream;
use aether_data::wire::{Classification, FeatureState, RawCsiRef};
use aether_head::math::{argmax, softmax};
use crossbeam_channel::{Receiver, Sender};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::cluster::worker::Outcome;
use crate::cluster::{node_token, Reset, ShardLink, Stamp};
use crate::hub::Hub;
use crate::metrics::{Metrics, Reject, Stage};
use crate::model::{LoadedModel, ModelInput};
use crate::mqtt::{percent, MqttEvent, MqttSink};
use crate::node::{ActiveLabel, CsiState, History, Node, NodeKey, NodeResult};
use crate::packet::{decode, Packet};
use crate::record::{Frame, RecordSink};
use crate::seq::SeqVerdict;

/// Frames of a new shape in a row after which a node restarts on that shape.
pub const SHAPE_SWITCH_FRAMES: u32 = 100;

/// Packet kinds, from the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Raw CSI `0xC5110001`.
    RawCsi,
    /// Feature state `0xC5110006`.
    FeatureState,
    /// Classification `0xC5110007`.
    Classification,
}

/// One datagram inside a [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct Item {
    /// Sender.
    pub src: SocketAddr,
    /// Kind from the magic.
    pub kind: Kind,
    /// `node_id` byte.
    pub node_id: u8,
    /// Offset in [`Batch::data`].
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
    /// A frame forwarded by a gateway, as a worker received it (docs/scaling.md).
    pub stamp: Option<Stamp>,
}

/// Datagrams for one shard from one receive call.
#[derive(Debug, Default)]
pub struct Batch {
    /// When the receive call returned.
    pub recv_at: Option<Instant>,
    /// The datagrams' bytes, back to back.
    pub data: Vec<u8>,
    /// The datagrams.
    pub items: Vec<Item>,
}

/// Requests answered by a shard between batches.
#[derive(Debug)]
pub enum Control {
    /// Every node's view.
    List(oneshot::Sender<Vec<Value>>),
    /// One node's view with its last `history` results.
    Get(NodeKey, usize, oneshot::Sender<Option<Value>>),
    /// Run the stale/expire sweep now (tests with a manual clock).
    Sweep(oneshot::Sender<()>),
    /// Serve this model (generation) from the next frame on: every node's stream restarts
    /// on it. The answer lists the labelled segments that ended because the new model's
    /// features differ (the caller closes them).
    SwapModel(Arc<LoadedModel>, u64, oneshot::Sender<Vec<ActiveLabel>>),
    /// Start (`Some`) or stop (`None`) recording a node's frames into a segment. The
    /// answer is `None` when the node is unknown, else the label it had before.
    Label(
        NodeKey,
        Option<ActiveLabel>,
        oneshot::Sender<Option<Option<ActiveLabel>>>,
    ),
    /// Worker: drop the nodes of a partition whose ownership (this epoch or older) ended.
    Forget(u32, u64),
}

/// What a shard needs from its service.
pub struct ShardCtx {
    /// Shard index.
    pub index: usize,
    /// The model.
    pub model: Arc<LoadedModel>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// WebSocket fan-out.
    pub hub: Arc<Hub>,
    /// Clock.
    pub clock: Arc<dyn Clock>,
    /// Packets queued for this shard (the ingest side adds, the shard subtracts).
    pub queued: Arc<AtomicUsize>,
    /// Socket for `--reply` packets.
    pub reply: Option<UdpSocket>,
    /// Settings.
    pub stale_ms: u64,
    /// Expiry, ms.
    pub expire_ms: u64,
    /// Largest gap that keeps a stream.
    pub max_gap: u32,
    /// Minimum ms between published updates of a node.
    pub publish_every_ms: u64,
    /// History length per node.
    pub history: usize,
    /// Node limit shared by all shards.
    pub node_count: Arc<AtomicUsize>,
    /// Node limit.
    pub max_nodes: usize,
    /// Set while the service runs.
    pub running: Arc<AtomicBool>,
    /// Generation of `model`.
    pub generation: u64,
    /// Node results for MQTT, if enabled.
    pub mqtt: Option<MqttSink>,
    /// Frames for the recorder, if enabled.
    pub record: Option<RecordSink>,
    /// Gateway (forward frames) or worker (report outcomes) of a cluster.
    pub cluster: Option<ShardLink>,
}

struct Handles {
    rejected: HashMap<Reject, Counter>,
    frames: Counter,
    lost: Counter,
    reset_gap: Counter,
    reset_restart: Counter,
    reset_shape: Counter,
    reset_error: Counter,
    node_results: Counter,
    expired: Counter,
    replies: Counter,
    decode: Histogram,
    features: Histogram,
    head: Histogram,
    latency: Histogram,
    queue: Gauge,
}

impl Handles {
    fn new(m: &Metrics, shard: usize) -> Self {
        Self {
            rejected: Reject::ALL.iter().map(|&r| (r, m.rejected(r))).collect(),
            frames: m.frames.clone(),
            lost: m.frames_lost.clone(),
            reset_gap: m.resets("gap"),
            reset_restart: m.resets("restart"),
            reset_shape: m.resets("shape"),
            reset_error: m.resets("error"),
            node_results: m.node_results.clone(),
            expired: m.nodes_expired.clone(),
            replies: m.replies.clone(),
            decode: m.stage(Stage::Decode, shard),
            features: m.stage(Stage::Features, shard),
            head: m.stage(Stage::Head, shard),
            latency: m.latency(shard),
            queue: m.queue(shard),
        }
    }
    fn reject(&self, r: Reject) {
        self.rejected[&r].inc();
    }
}

/// The shard's state and loop.
pub struct Shard {
    ctx: ShardCtx,
    h: Handles,
    nodes: HashMap<NodeKey, Node>,
    iq: Vec<i8>,
    feats: Vec<f32>,
    last_sweep: Instant,
}

impl Shard {
    /// A shard with no nodes.
    pub fn new(ctx: ShardCtx) -> Self {
        let h = Handles::new(&ctx.metrics, ctx.index);
        Self {
            ctx,
            h,
            nodes: HashMap::new(),
            iq: Vec::new(),
            feats: Vec::new(),
            last_sweep: Instant::now(),
        }
    }

    /// Runs until the data channel closes (every ingest thread stopped) and is drained.
    pub fn run(mut self, data: Receiver<Batch>, ctrl: Receiver<Control>) {
        loop {
            crossbeam_channel::select! {
                recv(data) -> b => match b {
                    Ok(batch) => self.batch(batch),
                    Err(_) => break,
                },
                recv(ctrl) -> c => if let Ok(c) = c { self.control(c) },
                default(Duration::from_millis(50)) => {},
            }
            if self.last_sweep.elapsed() >= Duration::from_millis(250) {
                self.sweep();
            }
        }
        while let Ok(c) = ctrl.try_recv() {
            self.control(c);
        }
        self.sweep();
        // Labelled segments still open are finished by the recorder (queued after their rows).
        if let Some(r) = &self.ctx.record {
            for n in self.nodes.values_mut() {
                if let Some(l) = n.label.take() {
                    r.offer(Frame::End { seg: l.seg });
                }
            }
        }
    }

    fn control(&mut self, c: Control) {
        let now = self.ctx.clock.now_ms();
        let classes = &self.ctx.model.classes;
        match c {
            Control::List(tx) => {
                let v = self
                    .nodes
                    .values()
                    .map(|n| n.view(classes, now, self.ctx.stale_ms))
                    .collect();
                let _ = tx.send(v);
            }
            Control::Get(key, n, tx) => {
                let v = self.nodes.get(&key).map(|node| {
                    let mut v = node.view(classes, now, self.ctx.stale_ms);
                    v["classes"] = Value::from(classes.clone());
                    v["history"] = Value::from(node.history.json(n));
                    v
                });
                let _ = tx.send(v);
            }
            Control::Sweep(tx) => {
                self.sweep();
                let _ = tx.send(());
            }
            Control::SwapModel(m, generation, tx) => {
                let _ = tx.send(self.swap_model(m, generation));
            }
            Control::Label(key, label, tx) => {
                let r = self.nodes.get_mut(&key).map(|n| {
                    let before = n.label.take();
                    n.label = label;
                    before
                });
                let _ = tx.send(r);
            }
            Control::Forget(partition, epoch) => {
                let before = self.nodes.len();
                let record = &self.ctx.record;
                self.nodes.retain(|_, n| {
                    let gone = n.cluster.partition == Some(partition) && n.cluster.epoch <= epoch;
                    if gone {
                        if let (Some(r), Some(l)) = (record, n.label.take()) {
                            r.offer(Frame::End { seg: l.seg });
                        }
                    }
                    !gone
                });
                let gone = before - self.nodes.len();
                self.ctx.node_count.fetch_sub(gone, Ordering::Relaxed);
            }
        }
    }

    /// Serves `m` from the next frame on; returns the labels ended by a change of
    /// features.
    fn swap_model(&mut self, m: Arc<LoadedModel>, generation: u64) -> Vec<ActiveLabel> {
        let old = std::mem::replace(&mut self.ctx.model, Arc::clone(&m));
        self.ctx.generation = generation;
        let same_input = old.input == m.input;
        let same_rows = old.record_header() == m.record_header();
        let classes = m.classes.len();
        let mut ended = Vec::new();
        for n in self.nodes.values_mut() {
            n.stream = None;
            if !same_input {
                // A different extractor: rebuilt on the next frame.
                n.csi = None;
            }
            if n.probs.len() != classes {
                n.history = History::new(self.ctx.history, classes);
            }
            n.probs = vec![0.0; classes];
            n.class = None;
            n.published_class = None;
            n.mqtt_class = None;
            n.generation = generation;
            if !same_rows {
                if let Some(l) = n.label.take() {
                    ended.push(l);
                }
            }
        }
        ended
    }

    /// Marks stale nodes, drops expired ones, updates the node gauges.
    fn sweep(&mut self) {
        self.last_sweep = Instant::now();
        let now = self.ctx.clock.now_ms();
        let (stale_ms, expire_ms) = (self.ctx.stale_ms, self.ctx.expire_ms);
        let hub = &self.ctx.hub;
        let mqtt = &self.ctx.mqtt;
        let record = &self.ctx.record;
        let model = &self.ctx.model;
        let mut expired = 0usize;
        self.nodes.retain(|_, n| {
            let age = now.saturating_sub(n.last_seen_ms);
            if age > expire_ms {
                expired += 1;
                hub.publish_with(|| serde_json::json!({"type": "expired", "id": n.id}).to_string());
                if let Some(m) = mqtt {
                    m.offer(MqttEvent::Expired { key: n.key });
                }
                if let (Some(r), Some(l)) = (record, n.label.take()) {
                    r.offer(Frame::End { seg: l.seg });
                }
                return false;
            }
            if let Some(m) = mqtt {
                // A change the rate limit held back goes out once it is due.
                mqtt_due(m, n, model, now);
            }
            let stale = age > stale_ms;
            if stale != n.stale {
                if let Some(m) = mqtt {
                    m.offer(MqttEvent::Live {
                        key: n.key,
                        live: !stale,
                    });
                }
                n.stale = stale;
                let classes = &self.ctx.model.classes;
                hub.publish_with(|| {
                    let mut v = n.view(classes, now, stale_ms);
                    v["type"] = Value::from("node");
                    v.to_string()
                });
            }
            true
        });
        if expired > 0 {
            self.h.expired.inc_by(expired as u64);
            self.ctx.node_count.fetch_sub(expired, Ordering::Relaxed);
        }
        let stale = self.nodes.values().filter(|n| n.stale).count();
        let c = &self.ctx.metrics.shard_nodes[self.ctx.index];
        c[0].store((self.nodes.len() - stale) as i64, Ordering::Relaxed);
        c[1].store(stale as i64, Ordering::Relaxed);
    }

    fn batch(&mut self, b: Batch) {
        let n = b.items.len();
        for it in &b.items {
            let bytes = &b.data[it.start as usize..(it.start + it.len) as usize];
            let t0 = Instant::now();
            let stamp = self.worker_stamp(it);
            if let Some(st) = &stamp {
                if !self.admit(it, st) {
                    self.outcome(it, st, false);
                    continue;
                }
            }
            let done = match decode(bytes) {
                Ok(Packet::RawCsi(v)) => self.raw_csi(it, v, bytes, t0),
                Ok(Packet::FeatureState(p)) => self.feature_state(it, p, t0),
                Ok(Packet::Classification(p)) => self.classification(it, p),
                Err(r) => {
                    self.reject_node(it, r);
                    false
                }
            };
            if done {
                if let Some(r) = b.recv_at {
                    self.h.latency.observe(r.elapsed().as_secs_f64());
                }
            }
            if let Some(st) = &stamp {
                self.outcome(it, st, done);
            }
        }
        let left = self.ctx.queued.fetch_sub(n, Ordering::Relaxed) - n;
        self.h.queue.set(left as i64);
    }

    /// The stamp of a forwarded frame, when this shard is a worker's.
    fn worker_stamp(&self, it: &Item) -> Option<Stamp> {
        match &self.ctx.cluster {
            Some(ShardLink::Worker(_)) => it.stamp,
            _ => None,
        }
    }

    /// Whether a forwarded frame is taken: its partition's ownership is current, a node
    /// of an older ownership starts afresh, and a frame index already taken is refused.
    fn admit(&mut self, it: &Item, st: &Stamp) -> bool {
        let Some(ShardLink::Worker(w)) = &self.ctx.cluster else {
            return true;
        };
        if !w.current(st) {
            return false;
        }
        let key = NodeKey {
            addr: it.src.ip(),
            node_id: it.node_id,
        };
        if self
            .nodes
            .get(&key)
            .is_some_and(|n| n.cluster.epoch < st.epoch)
        {
            if let Some(mut n) = self.nodes.remove(&key) {
                self.ctx.node_count.fetch_sub(1, Ordering::Relaxed);
                if let (Some(r), Some(l)) = (&self.ctx.record, n.label.take()) {
                    r.offer(Frame::End { seg: l.seg });
                }
            }
        }
        if let Some(n) = self.nodes.get_mut(&key) {
            if n.cluster.last.is_some_and(|l| (st.run, st.index) <= l) {
                self.h.reject(Reject::Duplicate);
                n.rejected += 1;
                return false;
            }
        }
        true
    }

    /// Reports a forwarded frame's outcome to the worker: the node's result when the
    /// frame reached its stream.
    fn outcome(&mut self, it: &Item, st: &Stamp, done: bool) {
        let Some(ShardLink::Worker(w)) = &self.ctx.cluster else {
            return;
        };
        let key = NodeKey {
            addr: it.src.ip(),
            node_id: it.node_id,
        };
        let node = self.nodes.get_mut(&key);
        let mut result = None;
        if let Some(n) = node {
            if w.current(st) {
                n.cluster.last = Some((st.run, st.index));
            }
            if done && it.kind != Kind::Classification && !st.replay {
                if let Some(class) = n.class {
                    let model = &self.ctx.model;
                    let v = serde_json::json!({
                        "node": n.id,
                        "run": st.run,
                        "index": st.index,
                        "pos": st.pos,
                        "class": model.classes.get(class),
                        "probs": n.probs,
                        "recv_ms": st.recv_ms,
                        "at_ms": n.last_seen_ms,
                        "model": &model.sha256[..16.min(model.sha256.len())],
                        "worker": &*w.worker,
                    });
                    result = Some((node_token(&key), bytes::Bytes::from(v.to_string())));
                }
            }
        }
        w.offer(Outcome { stamp: *st, result });
    }

    /// A gateway's forwarding of a taken frame: stamp (index, stream position, why it
    /// restarts, packets lost before it) and queue it; a full queue drops it (counted),
    /// and the next frame carries the loss and the restart.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        h: &Handles,
        ctx: &ShardCtx,
        node: &mut Node,
        it: &Item,
        bytes: &[u8],
        verdict: SeqVerdict,
        switched: bool,
        advances: bool,
        now: u64,
    ) -> bool {
        let Some(ShardLink::Gateway(g)) = &ctx.cluster else {
            return false;
        };
        let (lost, reset) = match verdict {
            SeqVerdict::First if switched => (0, Reset::Shape),
            SeqVerdict::First => (0, Reset::First),
            SeqVerdict::Gap { lost } => (lost, Reset::None),
            SeqVerdict::GapReset { lost } => (lost, Reset::Gap),
            SeqVerdict::Restart => (0, Reset::Restart),
            _ => (0, Reset::None),
        };
        let c = &mut node.cluster;
        let reset = if reset == Reset::None {
            c.pending_reset
        } else {
            reset
        };
        if reset != Reset::None && advances {
            c.next_pos = 0;
        }
        let partition = g.partition(&node.key);
        c.partition = Some(partition);
        let st = Stamp {
            run: g.run,
            index: c.next_index,
            pos: c.next_pos,
            lost: lost + c.pending_lost,
            reset: if advances { reset } else { Reset::None },
            partition,
            recv_ms: now,
            ..Stamp::default()
        };
        node.last_seen_ms = now;
        node.stale = false;
        if g.offer(it.src, it.node_id, st, bytes) {
            c.next_index += 1;
            if advances {
                c.next_pos += 1;
                c.pending_reset = Reset::None;
                c.pending_lost = 0;
                node.frames += 1;
            }
            true
        } else {
            if advances {
                c.pending_reset = reset;
                c.pending_lost = st.lost + 1;
            }
            h.lost.inc();
            false
        }
    }

    /// Applies a forwarded frame's stamp to its node (worker): losses, restarts.
    fn apply_stamp(h: &Handles, node: &mut Node, st: &Stamp) {
        if st.lost > 0 {
            h.lost.inc_by(u64::from(st.lost));
            node.lost += u64::from(st.lost);
        }
        let counter = match st.reset {
            Reset::None => return,
            Reset::First => None,
            Reset::Gap => Some(&h.reset_gap),
            Reset::Restart => Some(&h.reset_restart),
            Reset::Shape => Some(&h.reset_shape),
        };
        if let Some(c) = counter {
            c.inc();
            node.resets += 1;
        }
        node.reset_stream();
    }

    /// The node of `it`, created if new and the node limit allows.
    fn node(&mut self, it: &Item, now: u64) -> Option<&mut Node> {
        let key = NodeKey {
            addr: it.src.ip(),
            node_id: it.node_id,
        };
        if !self.nodes.contains_key(&key) {
            let total = self.ctx.node_count.fetch_add(1, Ordering::Relaxed);
            if total >= self.ctx.max_nodes {
                self.ctx.node_count.fetch_sub(1, Ordering::Relaxed);
                self.h.reject(Reject::TooManyNodes);
                return None;
            }
            let classes = self.ctx.model.classes.len();
            let mut n = Node::new(key, it.src, now, classes, self.ctx.history);
            n.generation = self.ctx.generation;
            if let Some(st) = &it.stamp {
                n.cluster.epoch = st.epoch;
                n.cluster.partition = Some(st.partition);
            }
            self.nodes.insert(key, n);
        }
        let n = self.nodes.get_mut(&key).expect("inserted above");
        n.src = it.src;
        Some(n)
    }

    fn reject_node(&mut self, it: &Item, r: Reject) {
        self.h.reject(r);
        let key = NodeKey {
            addr: it.src.ip(),
            node_id: it.node_id,
        };
        if let Some(n) = self.nodes.get_mut(&key) {
            n.rejected += 1;
        }
    }

    /// Applies a sequence verdict: counts, resets; false if the frame is dropped.
    fn apply_seq(h: &Handles, node: &mut Node, v: SeqVerdict) -> bool {
        match v {
            SeqVerdict::Duplicate => {
                h.reject(Reject::Duplicate);
                node.rejected += 1;
                return false;
            }
            SeqVerdict::Late => {
                h.reject(Reject::Reordered);
                node.rejected += 1;
                return false;
            }
            SeqVerdict::Gap { lost } => {
                h.lost.inc_by(u64::from(lost));
                node.lost += u64::from(lost);
            }
            SeqVerdict::GapReset { lost } => {
                h.lost.inc_by(u64::from(lost));
                node.lost += u64::from(lost);
                h.reset_gap.inc();
                node.resets += 1;
                node.reset_stream();
            }
            SeqVerdict::Restart => {
                h.reset_restart.inc();
                node.resets += 1;
                node.reset_stream();
            }
            SeqVerdict::First | SeqVerdict::Next => {}
        }
        true
    }

    fn raw_csi(&mut self, it: &Item, v: RawCsiRef<'_>, bytes: &[u8], t0: Instant) -> bool {
        let ModelInput::RawCsi { features, antennas } = self.ctx.model.input else {
            self.reject_node(it, Reject::ModelInput);
            return false;
        };
        if usize::from(v.n_antennas) != antennas {
            self.reject_node(it, Reject::ModelInput);
            return false;
        }
        if usize::from(v.n_subcarriers) < features.bands {
            self.reject_node(it, Reject::TooFewSubcarriers);
            return false;
        }
        let now = self.ctx.clock.now_ms();
        let max_gap = self.ctx.max_gap;
        let model = Arc::clone(&self.ctx.model);
        let key = NodeKey {
            addr: it.src.ip(),
            node_id: it.node_id,
        };
        if self.node(it, now).is_none() {
            return false;
        }
        let stamp = self.worker_stamp(it);
        let h = &self.h;
        let node = self.nodes.get_mut(&key).expect("created");
        let shape = (usize::from(v.n_antennas), usize::from(v.n_subcarriers));
        let mut switched = false;
        match &mut node.csi {
            // A worker takes the gateway's word: a new shape comes with a restart.
            Some(c) if c.fs.shape() != shape && stamp.is_some() => {
                node.csi = None;
                if let Some(s) = &mut node.stream {
                    s.reset();
                }
            }
            Some(c) if c.fs.shape() != shape => {
                let count = match c.pending_shape {
                    Some((a, s, k)) if (a, s) == (v.n_antennas, v.n_subcarriers) => k + 1,
                    _ => 1,
                };
                if count < SHAPE_SWITCH_FRAMES {
                    c.pending_shape = Some((v.n_antennas, v.n_subcarriers, count));
                    h.reject(Reject::ShapeChange);
                    node.rejected += 1;
                    return false;
                }
                h.reset_shape.inc();
                node.resets += 1;
                node.csi = None;
                switched = true;
                if let Some(s) = &mut node.stream {
                    s.reset();
                }
            }
            Some(c) => c.pending_shape = None,
            None => {}
        }
        if node.csi.is_none() {
            let made = match &stamp {
                Some(st) => FeatureStream::resume_at(features, shape.0, shape.1, st.pos),
                None => FeatureStream::new(features, shape.0, shape.1),
            };
            match made {
                Ok(fs) => {
                    node.csi = Some(CsiState {
                        fs,
                        seq: crate::seq::SeqTracker::new(32),
                        pending_shape: None,
                    })
                }
                Err(_) => {
                    h.reject(Reject::TooFewSubcarriers);
                    node.rejected += 1;
                    return false;
                }
            }
        }
        if let Some(st) = &stamp {
            Self::apply_stamp(h, node, st);
            let csi = node.csi.as_mut().expect("set above");
            if csi.fs.position() != st.pos {
                // Frames missing before this one (or a node rebuilt mid-stream): the
                // extractor continues at the gateway's position.
                if let Ok(fs) = FeatureStream::resume_at(features, shape.0, shape.1, st.pos) {
                    csi.fs = fs;
                }
            }
        } else {
            let csi = node.csi.as_mut().expect("set above");
            let verdict = csi.seq.check(v.seq, max_gap);
            if !Self::apply_seq(h, node, verdict) {
                return false;
            }
            if matches!(self.ctx.cluster, Some(ShardLink::Gateway(_))) {
                if let Some(r) = &self.ctx.record {
                    if r.capture {
                        r.offer(Frame::Capture {
                            node: key,
                            bytes: bytes.into(),
                        });
                    }
                }
                h.decode.observe(t0.elapsed().as_secs_f64());
                return Self::forward(h, &self.ctx, node, it, bytes, verdict, switched, true, now);
            }
        }
        let t1 = Instant::now();
        h.decode.observe((t1 - t0).as_secs_f64());
        v.iq_into(&mut self.iq);
        let csi = node.csi.as_mut().expect("set above");
        let feats = match csi.fs.push_iq(&self.iq) {
            Ok(f) => f,
            Err(_) => {
                h.reject(Reject::Truncated);
                node.rejected += 1;
                return false;
            }
        };
        self.feats.clear();
        self.feats.extend_from_slice(feats);
        let t2 = Instant::now();
        h.features.observe((t2 - t1).as_secs_f64());
        // A replayed frame (a worker rebuilding a node's state) was recorded when it was
        // first run.
        let replayed = stamp.is_some_and(|st| st.replay);
        if let (Some(r), false) = (&self.ctx.record, replayed) {
            if r.capture {
                r.offer(Frame::Capture {
                    node: key,
                    bytes: bytes.into(),
                });
            }
            record_row(r, node, &self.feats);
        }
        Self::frame(
            &self.ctx,
            h,
            node,
            &model,
            &self.feats,
            v.seq,
            now,
            t2,
            stamp.as_ref(),
        )
    }

    fn feature_state(&mut self, it: &Item, p: FeatureState, t0: Instant) -> bool {
        if self.ctx.model.input != ModelInput::FeatureState {
            self.reject_node(it, Reject::ModelInput);
            return false;
        }
        let values = p.values();
        let now = self.ctx.clock.now_ms();
        let max_gap = self.ctx.max_gap;
        let model = Arc::clone(&self.ctx.model);
        let key = NodeKey {
            addr: it.src.ip(),
            node_id: it.node_id,
        };
        if self.node(it, now).is_none() {
            return false;
        }
        let stamp = self.worker_stamp(it);
        let h = &self.h;
        let node = self.nodes.get_mut(&key).expect("created");
        if let Some(st) = &stamp {
            Self::apply_stamp(h, node, st);
        } else {
            let verdict = node.fs_seq.check(u32::from(p.seq), max_gap);
            if !Self::apply_seq(h, node, verdict) {
                return false;
            }
            if matches!(self.ctx.cluster, Some(ShardLink::Gateway(_))) {
                let bytes = p.encode();
                return Self::forward(h, &self.ctx, node, it, &bytes, verdict, false, true, now);
            }
        }
        let t1 = Instant::now();
        h.decode.observe((t1 - t0).as_secs_f64());
        if let (Some(r), false) = (&self.ctx.record, stamp.is_some_and(|st| st.replay)) {
            record_row(r, node, &values);
        }
        Self::frame(
            &self.ctx,
            h,
            node,
            &model,
            &values,
            u32::from(p.seq),
            now,
            t1,
            stamp.as_ref(),
        )
    }

    fn classification(&mut self, it: &Item, p: Classification) -> bool {
        let now = self.ctx.clock.now_ms();
        let max_gap = self.ctx.max_gap;
        let classes = &self.ctx.model.classes;
        let class = (usize::from(p.n_classes) == classes.len())
            .then(|| classes.get(usize::from(p.argmax)).cloned())
            .flatten();
        let key = NodeKey {
            addr: it.src.ip(),
            node_id: it.node_id,
        };
        if self.node(it, now).is_none() {
            return false;
        }
        let stamped = self.worker_stamp(it).is_some();
        let h = &self.h;
        let node = self.nodes.get_mut(&key).expect("created");
        let verdict = if stamped {
            SeqVerdict::Next
        } else {
            node.cls_seq.check(p.seq, max_gap)
        };
        match verdict {
            SeqVerdict::Duplicate => {
                h.reject(Reject::Duplicate);
                node.rejected += 1;
                return false;
            }
            SeqVerdict::Late => {
                h.reject(Reject::Reordered);
                node.rejected += 1;
                return false;
            }
            _ => {}
        }
        if matches!(self.ctx.cluster, Some(ShardLink::Gateway(_))) {
            let bytes = p.encode();
            return Self::forward(h, &self.ctx, node, it, &bytes, verdict, false, false, now);
        }
        node.node_result = Some(NodeResult {
            argmax: p.argmax,
            class,
            n_classes: p.n_classes,
            top_logit: p.top_logit,
            top1_minus_top2: p.top1_minus_top2,
            seq: p.seq,
            ts_us: p.ts_us,
            at_ms: now,
        });
        node.last_seen_ms = now;
        node.stale = false;
        h.node_results.inc();
        true
    }

    /// Pushes one frame of features into the node's stream and publishes. A worker's
    /// frame (`stamp`) continues the stream at the gateway's position; a replayed one
    /// only rebuilds state: its result went out when it was first run, so it goes to
    /// no WebSocket, MQTT or reply.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        ctx: &ShardCtx,
        h: &Handles,
        node: &mut Node,
        model: &LoadedModel,
        feats: &[f32],
        seq: u32,
        now: u64,
        t0: Instant,
        stamp: Option<&Stamp>,
    ) -> bool {
        let pos = stamp.map(|st| st.pos);
        let replayed = stamp.is_some_and(|st| st.replay);
        if let (Some(p), Some(s)) = (pos, &node.stream) {
            if s.position() != p {
                // Frames missing before this one: continue at the gateway's position.
                if p > s.position() && node.frames > 0 {
                    ctx.metrics.cluster.frames_missing.inc_by(p - s.position());
                }
                node.stream = None;
            }
        }
        if node.stream.is_none() {
            let made = match pos {
                Some(p) => model.head.resume_stream(model.stream, p),
                None => model.head.live_stream(model.stream),
            };
            match made {
                Ok(s) => node.stream = Some(s),
                Err(_) => {
                    h.reject(Reject::Stream);
                    return false;
                }
            }
        }
        let stream = node.stream.as_mut().expect("set above");
        let pos = stream.position();
        let logits = match stream.push(&model.head, feats) {
            Ok(l) => l,
            Err(_) => {
                // A refused frame may leave the stream half-updated: restart it.
                h.reject(Reject::Stream);
                h.reset_error.inc();
                node.rejected += 1;
                node.resets += 1;
                node.reset_stream();
                return false;
            }
        };
        softmax(logits, &mut node.probs);
        h.head.observe(t0.elapsed().as_secs_f64());
        let class = argmax(&node.probs);
        node.class = Some(class);
        node.frames += 1;
        node.last_seen_ms = now;
        let was_stale = std::mem::replace(&mut node.stale, false);
        h.frames.inc();
        node.history
            .push(node.frames - 1, pos, seq, now, ctx.generation, &node.probs);
        if replayed {
            return true;
        }
        if let Some(m) = &ctx.mqtt {
            if was_stale {
                m.offer(MqttEvent::Live {
                    key: node.key,
                    live: true,
                });
            }
            mqtt_due(m, node, &ctx.model, now);
        }
        let due = now.saturating_sub(node.last_publish_ms) >= ctx.publish_every_ms
            || node.published_class != Some(class);
        if due {
            node.last_publish_ms = now;
            node.published_class = Some(class);
            ctx.hub
                .publish_with(|| update_json(node, model, now, ctx.stale_ms));
            if let Some(sock) = &ctx.reply {
                let packet = reply_packet(node, model, logits_margin(&node.probs), seq);
                if sock.send_to(&packet, node.src).is_ok() {
                    h.replies.inc();
                }
            }
        }
        true
    }
}

/// Hands a node's state to MQTT when its class or rounded probability changed and the
/// per-node rate allows.
fn mqtt_due(m: &MqttSink, node: &mut Node, model: &Arc<LoadedModel>, now: u64) {
    let Some(class) = node.class else {
        return;
    };
    let pct = percent(node.probs.get(class).copied().unwrap_or(0.0));
    if (node.mqtt_class == Some(class) && node.mqtt_pct == pct)
        || now.saturating_sub(node.mqtt_at_ms) < m.every_ms
    {
        return;
    }
    node.mqtt_at_ms = now;
    node.mqtt_class = Some(class);
    node.mqtt_pct = pct;
    m.offer(MqttEvent::State {
        key: node.key,
        model: Arc::clone(model),
        class,
        probs: node.probs.clone(),
    });
}

/// Queues a feature row for the node's labelled segment, if it has one.
fn record_row(r: &RecordSink, node: &mut Node, feats: &[f32]) {
    if let Some(l) = &mut node.label {
        if r.offer(Frame::Row {
            seg: l.seg,
            feats: feats.into(),
        }) {
            l.frames += 1;
        } else {
            l.dropped += 1;
        }
    }
}

/// `(top probability's log-odds proxy, margin)` from probabilities: the classification
/// packet carries logits, so send `ln p` of the top class and `ln p1 − ln p2`.
fn logits_margin(p: &[f32]) -> (f32, f32) {
    let mut s: Vec<f32> = p.to_vec();
    s.sort_by(|a, b| b.total_cmp(a));
    let l1 = s.first().copied().unwrap_or(0.0).max(1e-30).ln();
    let l2 = s.get(1).copied().unwrap_or(0.0).max(1e-30).ln();
    (l1, l1 - l2)
}

fn reply_packet(node: &Node, model: &LoadedModel, (top, margin): (f32, f32), seq: u32) -> [u8; 40] {
    Classification {
        n_classes: model.classes.len().min(u16::MAX as usize) as u16,
        node_id: node.key.node_id,
        ts_us: node.last_seen_ms.saturating_mul(1000),
        seq,
        argmax: node.class.unwrap_or(0).min(255) as u8,
        top_logit: top,
        top1_minus_top2: margin,
    }
    .encode()
}

/// The WebSocket update of a node: its view plus the latest amplitude row (0..=255,
/// amplitude over the frame's mean × 100) for the dashboard's heat strip.
fn update_json(node: &Node, model: &LoadedModel, now: u64, stale_ms: u64) -> String {
    let mut v = node.view(&model.classes, now, stale_ms);
    v["type"] = Value::from("node");
    if let Some(c) = &node.csi {
        let a = c.fs.amplitudes();
        let sub = c.fs.shape().1;
        let row = &a[..sub.min(a.len())];
        let mean = row.iter().sum::<f32>() / row.len().max(1) as f32;
        let q: Vec<u8> = row
            .iter()
            .map(|x| {
                if mean > 0.0 {
                    (x / mean * 100.0).clamp(0.0, 255.0) as u8
                } else {
                    0
                }
            })
            .collect();
        v["amps"] = Value::from(q);
    }
    v.to_string()
}

/// Sends `batch` to a shard unless its queue would exceed `cap` packets; returns
/// the packets dropped.
pub fn offer(tx: &Sender<Batch>, queued: &AtomicUsize, cap: usize, batch: Batch) -> usize {
    let n = batch.items.len();
    let before = queued.fetch_add(n, Ordering::Relaxed);
    if before + n > cap {
        queued.fetch_sub(n, Ordering::Relaxed);
        return n;
    }
    match tx.try_send(batch) {
        Ok(()) => 0,
        Err(_) => {
            queued.fetch_sub(n, Ordering::Relaxed);
            n
        }
    }
}
