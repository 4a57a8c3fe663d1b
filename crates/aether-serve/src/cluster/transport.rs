//! The broker behind a small trait: a partitioned, retained log of frames with a
//! committed position per partition, a results channel with dedup ids, and partition
//! leases. [`super::nats`] implements it on NATS JetStream; a Kafka-style log maps the
//! same way (partition → topic partition, sequence → offset, commit → offset commit,
//! lease → group membership).

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

/// A broker failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The broker refused or did not answer.
    #[error("broker: {0}")]
    Broker(String),
    /// The broker's settings do not fit this process.
    #[error("broker settings: {0}")]
    Config(String),
}

/// A future of a transport call.
pub type TFuture<'a, T> = BoxFuture<'a, Result<T, TransportError>>;

/// Resolves when the broker stored a sent message: `true` when it was a duplicate of one
/// it already had (same dedup id).
pub type PendingAck = BoxFuture<'static, Result<bool, TransportError>>;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node's frame into its partition's log.
    Frame {
        /// The partition.
        partition: u32,
        /// The node's subject token.
        token: String,
    },
    /// A node's result.
    Result {
        /// The node's subject token.
        token: String,
    },
}

/// A message to store, with its dedup id.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where.
    pub target: Target,
    /// The dedup id.
    pub id: String,
    /// The bytes.
    pub payload: Bytes,
}

/// A token that commits a partition's log up to (and including) its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRef(pub String);

/// A message read from a partition's log.
#[derive(Debug, Clone)]
pub struct LogMsg {
    /// Its sequence number in the partition's log.
    pub seq: u64,
    /// The bytes.
    pub payload: Bytes,
    /// Commits up to this message.
    pub ack: AckRef,
    /// Messages after it the broker still holds for this reader.
    pub pending: u64,
}

/// Where a partition's previous owner got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resume {
    /// Every message up to this sequence is committed (its result published).
    pub committed: u64,
    /// The highest sequence handed to the previous owner.
    pub delivered: u64,
    /// Whether the partition had an owner before.
    pub existed: bool,
    /// Frames per node the partition's log keeps (`None`: no limit).
    pub retain: Option<u64>,
}

/// What the gateway declared for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// Partition count.
    pub partitions: u32,
    /// Frames kept per node.
    pub retain: i64,
}

/// Reads a partition's log in order.
pub trait Cursor: Send {
    /// Waits up to `wait` for a first message, then returns it with whatever else is at
    /// hand, at most `max` (empty: nothing came, or a replay reached its end).
    fn next_batch(&mut self, max: usize, wait: Duration) -> TFuture<'_, Vec<LogMsg>>;
}

/// The broker operations of a gateway and a worker.
pub trait Transport: Send + Sync + 'static {
    /// Gateway: creates (or updates) the partition logs and declares the settings;
    /// refuses a different partition count than the one already declared.
    fn setup_gateway(
        &self,
        declared: Declared,
        retain_age: Duration,
        dedup: Duration,
    ) -> TFuture<'_, ()>;
    /// Worker: creates the results log and the lease store if missing; returns the
    /// lease lifetime in force and the gateway's declaration (if any yet).
    fn setup_worker(
        &self,
        result_retain: i64,
        lease_ttl: Duration,
        dedup: Duration,
    ) -> TFuture<'_, (Duration, Option<Declared>)>;
    /// The gateway's declaration, if made.
    fn declared(&self) -> TFuture<'_, Option<Declared>>;
    /// Sends a message; calls are sent in call order. The returned future resolves
    /// when the broker stored it.
    fn send(&self, msg: &Outgoing) -> TFuture<'_, PendingAck>;
    /// The dedup id of the last stored result of a node.
    fn last_result(&self, token: &str) -> TFuture<'_, Option<String>>;
    /// Where the partition's previous owner got to (`None`: the log does not exist yet).
    fn resume(&self, partition: u32) -> TFuture<'_, Option<Resume>>;
    /// Every retained message of the partition up to `upto`, in order.
    fn replay(&self, partition: u32, upto: u64) -> TFuture<'_, Box<dyn Cursor>>;
    /// The partition's messages after `after`, in order, for this owner (the previous
    /// owner's reader is replaced).
    fn consume(
        &self,
        partition: u32,
        after: u64,
        ack_wait: Duration,
        max_pending: usize,
    ) -> TFuture<'_, Box<dyn Cursor>>;
    /// Commits the partition up to the message of `ack`.
    fn commit(&self, ack: &AckRef) -> TFuture<'_, ()>;
    /// Takes the partition's lease for `owner`: its revision, or `None` when another
    /// owner holds it.
    fn acquire(&self, partition: u32, owner: &str) -> TFuture<'_, Option<u64>>;
    /// Renews a held lease: the new revision, or `None` when it was lost.
    fn renew(&self, partition: u32, owner: &str, revision: u64) -> TFuture<'_, Option<u64>>;
    /// Gives a held lease up.
    fn release(&self, partition: u32, revision: u64) -> TFuture<'_, ()>;
}
