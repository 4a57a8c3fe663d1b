//! Worker side: partition leases, takeover with an exact rebuild, consumption with
//! bounded credits, result publishing and acknowledgement.
//!
//! ```text
//! lease task ── every TTL/3: renew held leases, try to take the others (standby)
//!   └─ partition task (per owned partition, epoch e):
//!        resume point F (committed) ─► replay: last R frames per node ≤ F (no results)
//!        ─► consume after F: credits ─► stamped items ─► shard queues (bounded)
//! shards ─► outcome per frame (bounded channel, sized to the credits) ─► publisher:
//!        result → aether.result.<node> (dedup id) ─► stored ─► frame done ─► commit the
//!        contiguous prefix (ack all up to it), every 20 ms
//! ```
//!
//! A frame counts against the credits from the moment it is fetched until its result is
//! stored (or it produced none), so the shard queues and the outcome channel can never
//! overflow and nothing waits on the network inside a shard. A partition whose lease is
//! lost gets a new epoch: shards drop its nodes and skip frames of the old epoch, and the
//! publisher drops their outcomes (fencing).
//!
//! After a takeover, results of frames the previous owner may already have published are
//! checked against the last stored result of their node and skipped when it has them
//! (so neither the broker's dedup window nor the frames' redelivery can make a second
//! result).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_data::features::MASK_WINDOW;
use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch, Semaphore};

use super::pipe::Pipe;
use super::transport::{AckRef, LogMsg, Outgoing, Target, Transport, TransportError};
use super::{decode_envelope, kind_of, message_id, parse_message_id, PartitionSpec, Stamp};
use crate::ingest::shard_of;
use crate::metrics::Metrics;
use crate::model::{LoadedModel, ModelInput};
use crate::shard::{Batch, Control, Item};

/// Frames fetched per partition request at most.
const FETCH: usize = 256;

/// Frames a replay must cover to rebuild a node's state exactly: the stream horizon plus
/// the extractor's (64 + 2^(M−1) frames for raw CSI, none for feature-state input);
/// `None` for a continuous stream (horizon 0), which cannot be rebuilt.
pub fn replay_frames(model: &LoadedModel) -> Option<usize> {
    let h = model.stream.state_horizon()?;
    let e = match model.input {
        ModelInput::RawCsi { features, .. } => {
            MASK_WINDOW
                + if features.motion == 0 {
                    0
                } else {
                    1usize << (features.motion - 1)
                }
        }
        _ => 0,
    };
    Some(h + e)
}

/// The ownership epoch of every partition (0: not owned here).
#[derive(Debug)]
pub struct Epochs(Vec<AtomicU64>);

impl Epochs {
    fn new() -> Self {
        Self(
            (0..super::MAX_PARTITIONS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }

    /// The current epoch of partition `p`.
    pub fn get(&self, p: u32) -> u64 {
        self.0
            .get(p as usize)
            .map_or(0, |e| e.load(Ordering::Acquire))
    }

    fn set(&self, p: u32, e: u64) {
        if let Some(x) = self.0.get(p as usize) {
            x.store(e, Ordering::Release);
        }
    }
}

/// What a shard reports for every stamped frame.
#[derive(Debug)]
pub struct Outcome {
    /// The frame's stamp.
    pub stamp: Stamp,
    /// The node's token and the result to publish (none: the frame gave no result).
    pub result: Option<(String, Bytes)>,
}

/// The shards' end of the worker.
#[derive(Clone)]
pub struct OutcomeSink {
    tx: mpsc::Sender<Outcome>,
    /// Current partition epochs.
    pub epochs: Arc<Epochs>,
    /// This worker's id (in the results).
    pub worker: Arc<str>,
    dropped: Counter,
}

impl std::fmt::Debug for OutcomeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeSink")
            .field("worker", &self.worker)
            .finish()
    }
}

impl OutcomeSink {
    /// Whether a stamped frame belongs to its partition's current ownership.
    pub fn current(&self, s: &Stamp) -> bool {
        self.epochs.get(s.partition) == s.epoch
    }

    /// Hands an outcome to the publisher (never waits; the channel is sized to the
    /// credits, so a refusal is a bug, counted as fenced).
    pub fn offer(&self, o: Outcome) {
        if self.tx.try_send(o).is_err() {
            self.dropped.inc();
        }
    }
}

/// The outcome channel for `inflight` credits: the shards' sink and the worker's end.
pub fn outcome_channel(
    inflight: usize,
    worker: &str,
    metrics: &Metrics,
) -> (OutcomeSink, OutcomeRx) {
    let (tx, rx) = mpsc::channel(inflight + 64);
    (
        OutcomeSink {
            tx,
            epochs: Arc::new(Epochs::new()),
            worker: Arc::from(worker),
            dropped: metrics.cluster.fenced.clone(),
        },
        OutcomeRx(rx),
    )
}

/// The worker's end of the outcome channel.
pub struct OutcomeRx(mpsc::Receiver<Outcome>);

/// Settings of a worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The partitions it wants.
    pub spec: PartitionSpec,
    /// Credits: frames fetched and not finished.
    pub inflight: usize,
    /// Lease lifetime in force.
    pub lease_ttl: Duration,
    /// Redelivery after this long without an acknowledgement.
    pub ack_wait: Duration,
    /// Its id in the leases and results.
    pub id: String,
    /// Frames per node a rebuild replays ([`replay_frames`]).
    pub replay: usize,
}

/// What the worker needs of the shards.
pub struct ShardLinks {
    /// Data queues.
    pub data: Vec<Sender<Batch>>,
    /// Packets queued per shard.
    pub queued: Vec<Arc<AtomicUsize>>,
    /// Queue limit per shard, packets.
    pub queue_packets: usize,
    /// Control channels.
    pub ctrl: Vec<Sender<Control>>,
}

/// Commits a partition's frames in order: the longest finished prefix.
#[derive(Debug, Default)]
struct AckTracker {
    q: VecDeque<(u64, AckRef, bool)>,
    floor: Option<(u64, AckRef)>,
    committed: u64,
    since_commit: u64,
}

impl AckTracker {
    fn register(&mut self, seq: u64, ack: AckRef) {
        self.q.push_back((seq, ack, false));
    }

    fn done(&mut self, seq: u64) {
        if let Ok(i) = self.q.binary_search_by_key(&seq, |e| e.0) {
            self.q[i].2 = true;
        }
        while self.q.front().is_some_and(|e| e.2) {
            let (s, a, _) = self.q.pop_front().expect("front exists");
            self.floor = Some((s, a));
            self.since_commit += 1;
        }
    }

    /// The commit due, with the frames it covers.
    fn due(&self) -> Option<(u64, AckRef, u64)> {
        match &self.floor {
            Some((s, a)) if *s > self.committed => Some((*s, a.clone(), self.since_commit)),
            _ => None,
        }
    }

    fn committed(&mut self, seq: u64, frames: u64) {
        if seq > self.committed {
            self.committed = seq;
            self.since_commit = self.since_commit.saturating_sub(frames);
        }
    }
}

struct Part {
    epoch: u64,
    track: AckTracker,
    /// After a takeover: per node, the last result already stored (`None`: none or
    /// passed).
    check: Option<HashMap<String, Option<(u64, u64)>>>,
}

struct Ctx {
    t: Arc<dyn Transport>,
    shards: Mutex<Option<ShardLinks>>,
    epochs: Arc<Epochs>,
    credits: Arc<Semaphore>,
    parts: Mutex<HashMap<u32, Part>>,
    metrics: Arc<Metrics>,
    s: WorkerSettings,
}

/// A running worker.
pub struct Worker {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// Starts the lease, partition and publisher tasks on `rt`.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        t: Arc<dyn Transport>,
        s: WorkerSettings,
        sink: &OutcomeSink,
        rx: OutcomeRx,
        shards: ShardLinks,
        metrics: Arc<Metrics>,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            t,
            shards: Mutex::new(Some(shards)),
            epochs: Arc::clone(&sink.epochs),
            credits: Arc::new(Semaphore::new(s.inflight)),
            parts: Mutex::new(HashMap::new()),
            metrics,
            s,
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = rt.spawn(run(ctx, rx.0, stop_rx));
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops fetching, lets the frames in flight finish (at most `deadline`), commits,
    /// releases the leases (a standby takes over at once) and lets go of the shards.
    pub fn stop(&mut self, rt: &tokio::runtime::Runtime, deadline: Duration) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            rt.block_on(async {
                if tokio::time::timeout(deadline, t).await.is_err() {
                    tracing::warn!("worker: shutdown did not finish in time");
                }
            });
        }
    }
}

struct Held {
    rev: u64,
    last_ok: Instant,
    epoch: u64,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), TransportError>>,
}

async fn run(ctx: Arc<Ctx>, rx: mpsc::Receiver<Outcome>, stop: watch::Receiver<bool>) {
    let (pub_stop, pub_stop_rx) = watch::channel(false);
    let publisher = tokio::spawn(publish(Arc::clone(&ctx), rx, pub_stop_rx));
    let held = leases(&ctx, stop).await;
    // Frames in flight finish (their results are published and committed).
    let end = Instant::now() + Duration::from_secs(10);
    while ctx.credits.available_permits() < ctx.s.inflight && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = pub_stop.send(true);
    let _ = publisher.await;
    for (p, h) in held {
        let _ = ctx.t.release(p, h.rev).await;
        ctx.metrics.cluster.set_lease(p, false);
    }
    ctx.metrics.cluster.partitions_owned.set(0);
    // Let the shards drain and stop.
    *ctx.shards.lock().expect("shards lock") = None;
}

/// Renews held leases and tries to take the others every TTL/3 until `stop`; returns the
/// leases still held (partition tasks stopped).
async fn leases(ctx: &Arc<Ctx>, mut stop: watch::Receiver<bool>) -> HashMap<u32, Held> {
    let c = &ctx.metrics.cluster;
    let period = ctx.s.lease_ttl / 3;
    let mut held: HashMap<u32, Held> = HashMap::new();
    let mut next_epoch = 1u64;
    let wanted = loop {
        let total = match &ctx.s.spec {
            PartitionSpec::List(_) => super::MAX_PARTITIONS,
            PartitionSpec::Of { .. } => match ctx.t.declared().await {
                Ok(Some(d)) => d.partitions,
                _ => 0,
            },
        };
        if total > 0 {
            break ctx.s.spec.resolve(total);
        }
        tracing::info!("worker: waiting for a gateway to declare the partition count");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return held,
        }
    };
    for &p in &wanted {
        c.set_lease(p, false);
    }
    tracing::info!(id = %ctx.s.id, partitions = ?wanted, "worker: asking for partitions");
    loop {
        for &p in &wanted {
            if let Some(h) = held.get_mut(&p) {
                if h.task.is_finished() {
                    // The partition task failed (broker error): start over from the
                    // committed point with a new epoch, keeping the lease.
                    let epoch = next_epoch;
                    next_epoch += 1;
                    forget(ctx, p, h.epoch);
                    let (s, t) = spawn_partition(ctx, p, epoch);
                    h.epoch = epoch;
                    h.stop = s;
                    h.task = t;
                }
                match ctx.t.renew(p, &ctx.s.id, h.rev).await {
                    Ok(Some(r)) => {
                        h.rev = r;
                        h.last_ok = Instant::now();
                    }
                    Ok(None) => {
                        tracing::warn!(partition = p, "worker: lease lost to another worker");
                        let h = held.remove(&p).expect("held");
                        lose(ctx, p, h);
                    }
                    Err(e) => {
                        c.publish_error("lease");
                        if h.last_ok.elapsed() >= ctx.s.lease_ttl / 2 {
                            tracing::warn!(partition = p, error = %e, "worker: lease not renewed in time: giving the partition up");
                            let h = held.remove(&p).expect("held");
                            lose(ctx, p, h);
                        }
                    }
                }
            } else {
                match ctx.t.acquire(p, &ctx.s.id).await {
                    Ok(Some(rev)) => {
                        let epoch = next_epoch;
                        next_epoch += 1;
                        c.leases_acquired.inc();
                        c.set_lease(p, true);
                        tracing::info!(partition = p, epoch, "worker: lease taken");
                        let (s, t) = spawn_partition(ctx, p, epoch);
                        held.insert(
                            p,
                            Held {
                                rev,
                                last_ok: Instant::now(),
                                epoch,
                                stop: s,
                                task: t,
                            },
                        );
                    }
                    Ok(None) => {}
                    Err(e) => {
                        c.publish_error("lease");
                        tracing::debug!(partition = p, error = %e, "worker: lease request failed");
                    }
                }
            }
        }
        c.partitions_owned.set(held.len() as i64);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => break,
        }
    }
    for h in held.values() {
        let _ = h.stop.send(true);
    }
    for h in held.values_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut h.task).await;
    }
    held
}

fn spawn_partition(
    ctx: &Arc<Ctx>,
    p: u32,
    epoch: u64,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), TransportError>>,
) {
    ctx.parts.lock().expect("parts lock").insert(
        p,
        Part {
            epoch,
            track: AckTracker::default(),
            check: None,
        },
    );
    ctx.epochs.set(p, epoch);
    let (s, r) = watch::channel(false);
    let c2 = Arc::clone(ctx);
    let task = tokio::spawn(async move {
        let r = partition(&c2, p, epoch, r).await;
        if let Err(e) = &r {
            c2.metrics.cluster.publish_error("fetch");
            tracing::warn!(partition = p, error = %e, "worker: partition stopped on a broker error; restarting it");
        }
        r
    });
    (s, task)
}

/// Forgets a partition's ownership `epoch`: outcomes of it are dropped from now on, and
/// the shards drop its nodes.
fn forget(ctx: &Ctx, p: u32, epoch: u64) {
    ctx.epochs.set(p, 0);
    ctx.parts.lock().expect("parts lock").remove(&p);
    if let Some(s) = ctx.shards.lock().expect("shards lock").as_ref() {
        for c in &s.ctrl {
            let _ = c.send(Control::Forget(p, epoch));
        }
    }
}

fn lose(ctx: &Ctx, p: u32, h: Held) {
    let c = &ctx.metrics.cluster;
    c.leases_lost.inc();
    c.set_lease(p, false);
    let _ = h.stop.send(true);
    forget(ctx, p, h.epoch);
}

/// Waits `d`; true when `stop` came first.
async fn stopped(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// One owned partition: resume point, replay, then consumption until `stop`.
async fn partition(
    ctx: &Arc<Ctx>,
    p: u32,
    epoch: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), TransportError> {
    let c = &ctx.metrics.cluster;
    let since = Instant::now();
    let resume = loop {
        if let Some(r) = ctx.t.resume(p).await? {
            break r;
        }
        tracing::info!(
            partition = p,
            "worker: the partition's log does not exist yet"
        );
        if stopped(&mut stop, Duration::from_secs(1)).await {
            return Ok(());
        }
    };
    if let Some(k) = resume.retain {
        if (k as usize) < ctx.s.replay {
            tracing::error!(
                partition = p,
                retain = k,
                needed = ctx.s.replay,
                "worker: the partition keeps fewer frames per node than a rebuild needs (gateway --retain): takeovers are not exact"
            );
        }
    }
    let takeover = resume.existed && (resume.committed > 0 || resume.delivered > 0);
    if takeover {
        c.takeovers.inc();
        if let Some(part) = ctx.parts.lock().expect("parts lock").get_mut(&p) {
            part.check = Some(HashMap::new());
        }
        tracing::info!(
            partition = p,
            committed = resume.committed,
            delivered = resume.delivered,
            "worker: taking the partition over"
        );
    }
    if resume.committed > 0 && !replay(ctx, p, epoch, resume.committed, &mut stop).await? {
        return Ok(());
    }
    let mut cur = ctx
        .t
        .consume(p, resume.committed, ctx.s.ack_wait, ctx.s.inflight * 4)
        .await?;
    let mut last = resume.committed;
    let mut first_live = takeover;
    loop {
        let permit = tokio::select! {
            r = Arc::clone(&ctx.credits).acquire_owned() => match r {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
            _ = stop.changed() => return Ok(()),
        };
        permit.forget();
        let mut n = 1;
        while n < FETCH {
            match ctx.credits.try_acquire() {
                Ok(p) => {
                    p.forget();
                    n += 1;
                }
                Err(_) => break,
            }
        }
        let r = tokio::select! {
            r = cur.next_batch(n, Duration::from_millis(500)) => r,
            _ = stop.changed() => {
                ctx.credits.add_permits(n);
                return Ok(());
            }
        };
        let msgs = match r {
            Ok(m) => m,
            Err(e) => {
                ctx.credits.add_permits(n);
                return Err(e);
            }
        };
        if let Some(m) = msgs.last() {
            c.set_lag(p, m.pending);
        }
        let mut used = 0;
        let mut out = Batches::new(ctx);
        for m in msgs {
            if m.seq <= last {
                c.redeliveries.inc();
                continue;
            }
            last = m.seq;
            c.received.inc();
            {
                let mut parts = ctx.parts.lock().expect("parts lock");
                let Some(part) = parts.get_mut(&p).filter(|x| x.epoch == epoch) else {
                    ctx.credits.add_permits(n - used);
                    return Ok(());
                };
                part.track.register(m.seq, m.ack.clone());
                if !out.add(&m, p, epoch, false) {
                    c.bad_envelopes.inc();
                    part.track.done(m.seq);
                    continue;
                }
            }
            used += 1;
        }
        ctx.credits.add_permits(n - used);
        if used > 0 && first_live {
            first_live = false;
            c.takeover_seconds.set(since.elapsed().as_secs_f64());
        }
        if !out.flush(&mut stop).await {
            return Ok(());
        }
    }
}

/// Replays the partition up to `upto`: the last R frames of every node, through the
/// shards, publishing nothing. False when stopped.
async fn replay(
    ctx: &Arc<Ctx>,
    p: u32,
    epoch: u64,
    upto: u64,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, TransportError> {
    let c = &ctx.metrics.cluster;
    let r = ctx.s.replay.max(1);
    let mut cur = ctx.t.replay(p, upto).await?;
    let mut rings: HashMap<(IpAddr, u8), VecDeque<LogMsg>> = HashMap::new();
    'read: loop {
        let b = tokio::select! {
            b = cur.next_batch(1024, Duration::from_secs(2)) => b?,
            _ = stop.changed() => return Ok(false),
        };
        if b.is_empty() {
            break;
        }
        for m in b {
            if m.seq > upto {
                break 'read;
            }
            let end = m.seq == upto;
            if let Some(env) = decode_envelope(&m.payload) {
                let ring = rings.entry((env.src.ip(), env.node_id)).or_default();
                ring.push_back(m);
                if ring.len() > r {
                    ring.pop_front();
                }
            }
            if end {
                break 'read;
            }
        }
    }
    let mut frames = 0u64;
    let mut out = Batches::new(ctx);
    for ring in rings.values() {
        let exact = ring.len() >= r
            || ring
                .front()
                .and_then(|m| decode_envelope(&m.payload))
                .is_some_and(|e| e.stamp.pos == 0);
        if !exact {
            c.inexact_nodes.inc();
        }
        for m in ring {
            let permit = tokio::select! {
                r = Arc::clone(&ctx.credits).acquire_owned() => match r {
                    Ok(p) => p,
                    Err(_) => return Ok(false),
                },
                _ = stop.changed() => return Ok(false),
            };
            permit.forget();
            if out.add(m, p, epoch, true) {
                frames += 1;
            } else {
                ctx.credits.add_permits(1);
            }
            if out.len() >= FETCH && !out.flush(stop).await {
                return Ok(false);
            }
        }
    }
    if !out.flush(stop).await {
        return Ok(false);
    }
    c.replay_frames.inc_by(frames);
    tracing::info!(
        partition = p,
        nodes = rings.len(),
        frames,
        "worker: node state rebuilt from the retained frames"
    );
    Ok(true)
}

/// Stamped items on their way to the shards.
struct Batches<'a> {
    ctx: &'a Ctx,
    b: Vec<Batch>,
    n: usize,
}

impl<'a> Batches<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        let shards = ctx
            .shards
            .lock()
            .expect("shards lock")
            .as_ref()
            .map_or(0, |s| s.data.len());
        Self {
            ctx,
            b: (0..shards).map(|_| Batch::default()).collect(),
            n: 0,
        }
    }

    fn len(&self) -> usize {
        self.n
    }

    /// Adds a forwarded frame; false when it is not one.
    fn add(&mut self, m: &LogMsg, partition: u32, epoch: u64, replay: bool) -> bool {
        let Some(env) = decode_envelope(&m.payload) else {
            return false;
        };
        let Some((kind, node_id)) = kind_of(env.datagram) else {
            return false;
        };
        if node_id != env.node_id || self.b.is_empty() {
            return false;
        }
        let s = shard_of(env.src.ip(), env.node_id, self.b.len());
        let b = &mut self.b[s];
        let start = b.data.len() as u32;
        b.data.extend_from_slice(env.datagram);
        b.items.push(Item {
            src: env.src,
            kind,
            node_id,
            start,
            len: env.datagram.len() as u32,
            stamp: Some(Stamp {
                partition,
                seq: m.seq,
                epoch,
                replay,
                ..env.stamp
            }),
        });
        self.n += 1;
        true
    }

    /// Hands the batches to the shards, waiting while a queue is full; false when
    /// stopped or the shards are gone.
    async fn flush(&mut self, stop: &mut watch::Receiver<bool>) -> bool {
        self.n = 0;
        for (i, slot) in self.b.iter_mut().enumerate() {
            if slot.items.is_empty() {
                continue;
            }
            let mut batch = std::mem::take(slot);
            batch.recv_at = Some(Instant::now());
            let n = batch.items.len();
            loop {
                let sent = {
                    let g = self.ctx.shards.lock().expect("shards lock");
                    let Some(s) = g.as_ref() else {
                        return false;
                    };
                    let q = &s.queued[i];
                    if q.load(Ordering::Relaxed) + n > s.queue_packets {
                        Err(batch)
                    } else {
                        q.fetch_add(n, Ordering::Relaxed);
                        match s.data[i].try_send(batch) {
                            Ok(()) => Ok(()),
                            Err(TrySendError::Full(b)) => {
                                q.fetch_sub(n, Ordering::Relaxed);
                                Err(b)
                            }
                            Err(TrySendError::Disconnected(_)) => return false,
                        }
                    }
                };
                match sent {
                    Ok(()) => break,
                    Err(b) => {
                        batch = b;
                        if stopped(stop, Duration::from_millis(1)).await {
                            return false;
                        }
                    }
                }
            }
        }
        true
    }
}

/// Publishes results in order, marks frames done, commits every 20 ms; ends on `stop`
/// after committing.
async fn publish(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Outcome>, mut stop: watch::Receiver<bool>) {
    let c = &ctx.metrics.cluster;
    let mut pipe: Pipe<(u32, u64, u64)> = Pipe::new(Arc::clone(&ctx.t));
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Duration::from_millis(50);
    loop {
        enum Ev {
            Out(Option<Outcome>),
            Done(Result<((u32, u64, u64), bool), TransportError>),
            Tick,
            Stop,
        }
        let ev = tokio::select! {
            o = rx.recv() => Ev::Out(o),
            r = pipe.confirm(), if !pipe.is_empty() => Ev::Done(r),
            _ = tick.tick() => Ev::Tick,
            _ = stop.changed() => Ev::Stop,
        };
        match ev {
            Ev::Out(Some(o)) => outcome(&ctx, &mut pipe, o).await,
            Ev::Out(None) => {
                if stopped(&mut stop, Duration::from_millis(20)).await {
                    commit(&ctx).await;
                    break;
                }
            }
            Ev::Done(Ok(((p, epoch, seq), dup))) => {
                backoff = Duration::from_millis(50);
                if dup {
                    c.duplicates.inc();
                } else {
                    c.results.inc();
                }
                finish(&ctx, p, epoch, seq);
            }
            Ev::Done(Err(e)) => {
                c.publish_error("result");
                tracing::warn!(error = %e, "worker: storing a result failed; sending the window again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                let n = pipe.resend().await;
                c.retries.inc_by(n as u64);
            }
            Ev::Tick => commit(&ctx).await,
            Ev::Stop => {
                commit(&ctx).await;
                break;
            }
        }
        c.inflight.set(pipe.len() as i64);
    }
}

/// A frame is finished: mark it done (when its partition's ownership is current) and
/// give its credit back.
fn finish(ctx: &Ctx, p: u32, epoch: u64, seq: u64) {
    if let Some(part) = ctx
        .parts
        .lock()
        .expect("parts lock")
        .get_mut(&p)
        .filter(|x| x.epoch == epoch)
    {
        part.track.done(seq);
    }
    ctx.credits.add_permits(1);
}

async fn outcome(ctx: &Arc<Ctx>, pipe: &mut Pipe<(u32, u64, u64)>, o: Outcome) {
    let c = &ctx.metrics.cluster;
    let st = o.stamp;
    if st.replay {
        ctx.credits.add_permits(1);
        return;
    }
    let current = |ctx: &Ctx| {
        ctx.parts
            .lock()
            .expect("parts lock")
            .get(&st.partition)
            .is_some_and(|x| x.epoch == st.epoch)
    };
    if !current(ctx) {
        c.fenced.inc();
        ctx.credits.add_permits(1);
        return;
    }
    let Some((token, payload)) = o.result else {
        finish(ctx, st.partition, st.epoch, st.seq);
        return;
    };
    // After a takeover: did a previous owner already store this result?
    let known = {
        let parts = ctx.parts.lock().expect("parts lock");
        let part = parts.get(&st.partition).expect("checked above");
        part.check.as_ref().map(|m| m.get(&token).copied())
    };
    let last = match known {
        None => None,
        Some(Some(v)) => v,
        Some(None) => {
            let v = match ctx.t.last_result(&token).await {
                Ok(id) => id.as_deref().and_then(parse_message_id),
                Err(e) => {
                    c.publish_error("lookup");
                    tracing::warn!(error = %e, "worker: looking up a node's last result failed");
                    None
                }
            };
            if let Some(part) = ctx.parts.lock().expect("parts lock").get_mut(&st.partition) {
                if let Some(m) = part.check.as_mut() {
                    m.insert(token.clone(), v);
                }
            }
            v
        }
    };
    if let Some(l) = last {
        if (st.run, st.index) <= l {
            c.results_skipped.inc();
            finish(ctx, st.partition, st.epoch, st.seq);
            return;
        }
        // Past what was published: no more checks for this node.
        if let Some(part) = ctx.parts.lock().expect("parts lock").get_mut(&st.partition) {
            if let Some(m) = part.check.as_mut() {
                m.insert(token.clone(), None);
            }
        }
    }
    let msg = Outgoing {
        id: message_id(&token, st.run, st.index),
        target: Target::Result { token },
        payload,
    };
    pipe.push(msg, (st.partition, st.epoch, st.seq)).await;
}

/// Commits every partition's finished prefix.
async fn commit(ctx: &Ctx) {
    let c = &ctx.metrics.cluster;
    let due: Vec<(u32, u64, u64, AckRef, u64)> = ctx
        .parts
        .lock()
        .expect("parts lock")
        .iter()
        .filter_map(|(p, x)| x.track.due().map(|(s, a, n)| (*p, x.epoch, s, a, n)))
        .collect();
    for (p, epoch, seq, ack, n) in due {
        match ctx.t.commit(&ack).await {
            Ok(()) => {
                c.acks.inc();
                c.frames_acked.inc_by(n);
                if let Some(part) = ctx
                    .parts
                    .lock()
                    .expect("parts lock")
                    .get_mut(&p)
                    .filter(|x| x.epoch == epoch)
                {
                    part.track.committed(seq, n);
                }
            }
            Err(e) => {
                c.publish_error("ack");
                tracing::debug!(partition = p, error = %e, "worker: commit failed; retried with the next");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_commits_the_finished_prefix() {
        let mut t = AckTracker::default();
        for s in [3u64, 5, 9, 12] {
            t.register(s, AckRef(format!("a{s}")));
        }
        assert!(t.due().is_none());
        t.done(5);
        assert!(t.due().is_none(), "3 is not finished");
        t.done(3);
        assert_eq!(t.due(), Some((5, AckRef("a5".into()), 2)));
        t.committed(5, 2);
        assert!(t.due().is_none());
        t.done(12);
        assert!(t.due().is_none());
        t.done(9);
        assert_eq!(t.due(), Some((12, AckRef("a12".into()), 2)));
        t.done(77);
        assert_eq!(t.q.len(), 0);
    }
}
