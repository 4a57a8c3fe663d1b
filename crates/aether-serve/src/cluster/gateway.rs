//! Gateway side: shards hand every validated frame, stamped, to a bounded queue (full →
//! dropped and counted, never waiting); one task appends them to the partitions' logs
//! through an ordered window ([`super::pipe::Pipe`]) with dedup ids, so a retry after a
//! lost confirmation is not stored twice.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use super::pipe::Pipe;
use super::transport::{Outgoing, Target, Transport};
use super::{message_id, node_token, partition_of, Envelope, Stamp};
use crate::metrics::Metrics;
use crate::node::NodeKey;

/// What a shard needs to forward frames.
#[derive(Clone)]
pub struct ForwardSink {
    tx: mpsc::Sender<Outgoing>,
    /// Partition count.
    pub partitions: u32,
    /// This gateway's run id (its start time, ms).
    pub run: u64,
    dropped: Counter,
}

impl std::fmt::Debug for ForwardSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardSink")
            .field("partitions", &self.partitions)
            .field("run", &self.run)
            .finish()
    }
}

impl ForwardSink {
    /// The partition of a node.
    pub fn partition(&self, key: &NodeKey) -> u32 {
        partition_of(key, self.partitions)
    }

    /// Queues a stamped frame; false (and counted) when the queue is full.
    pub fn offer(
        &self,
        src: std::net::SocketAddr,
        node_id: u8,
        stamp: Stamp,
        datagram: &[u8],
    ) -> bool {
        let env = Envelope {
            stamp,
            src,
            node_id,
            datagram,
        };
        let token = node_token(&env.key());
        let mut payload = Vec::with_capacity(super::ENVELOPE_HEADER + datagram.len());
        env.encode(&mut payload);
        let msg = Outgoing {
            id: message_id(&token, stamp.run, stamp.index),
            target: Target::Frame {
                partition: stamp.partition,
                token,
            },
            payload: Bytes::from(payload),
        };
        if self.tx.try_send(msg).is_ok() {
            true
        } else {
            self.dropped.inc();
            false
        }
    }
}

/// The forwarding task.
pub struct Forwarder {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Forwarder {
    /// Starts the task on `rt`: a queue of `queue` frames, at most `inflight` sent and
    /// unconfirmed. Returns the shards' end; the task ends when every copy of it is
    /// dropped and the queue is stored.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        transport: Arc<dyn Transport>,
        partitions: u32,
        run: u64,
        queue: usize,
        inflight: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, ForwardSink) {
        let (tx, rx) = mpsc::channel(queue);
        let c = &metrics.cluster;
        let sink = ForwardSink {
            tx,
            partitions,
            run,
            dropped: c.forward_dropped.clone(),
        };
        let task = rt.spawn(forward(transport, rx, inflight, metrics));
        (Self { task: Some(task) }, sink)
    }

    /// Waits (at most `deadline`) until every queued frame was stored; the shards
    /// must have stopped (their senders dropped).
    pub fn finish(&mut self, rt: &tokio::runtime::Runtime, deadline: Duration) {
        if let Some(t) = self.task.take() {
            rt.block_on(async {
                if tokio::time::timeout(deadline, t).await.is_err() {
                    tracing::warn!("gateway: frames still unconfirmed at shutdown");
                }
            });
        }
    }
}

async fn forward(
    transport: Arc<dyn Transport>,
    mut rx: mpsc::Receiver<Outgoing>,
    inflight: usize,
    metrics: Arc<Metrics>,
) {
    let c = &metrics.cluster;
    let mut pipe: Pipe<()> = Pipe::new(transport);
    let mut open = true;
    let mut backoff = Duration::from_millis(50);
    loop {
        enum Ev {
            Done(Result<((), bool), super::transport::TransportError>),
            In(Option<Outgoing>),
        }
        if !open && pipe.is_empty() {
            break;
        }
        let room = open && pipe.len() < inflight;
        let ev = tokio::select! {
            r = pipe.confirm(), if !pipe.is_empty() => Ev::Done(r),
            m = rx.recv(), if room => Ev::In(m),
        };
        match ev {
            Ev::In(Some(m)) => {
                pipe.push(m, ()).await;
                // Take what else is queued without waiting.
                while pipe.len() < inflight {
                    match rx.try_recv() {
                        Ok(m) => pipe.push(m, ()).await,
                        Err(_) => break,
                    }
                }
            }
            Ev::In(None) => open = false,
            Ev::Done(Ok((_, dup))) => {
                backoff = Duration::from_millis(50);
                if dup {
                    c.duplicates.inc();
                } else {
                    c.forwarded.inc();
                }
            }
            Ev::Done(Err(e)) => {
                c.publish_error("frame");
                tracing::warn!(error = %e, "gateway: storing a frame failed; sending the window again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                let n = pipe.resend().await;
                c.retries.inc_by(n as u64);
            }
        }
        c.inflight.set(pipe.len() as i64);
        c.queue.set((rx.max_capacity() - rx.capacity()) as i64);
    }
}
