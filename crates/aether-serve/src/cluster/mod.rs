//! Beyond one machine: `aether serve` as a gateway or as workers on a partitioned,
//! retained log (NATS JetStream; docs/scaling.md).
//!
//! ```text
//! nodes ─UDP─► gateway (ingest, shards: decode, sequence, shape; stamp index + position)
//!          ─► aether.csi.<partition>.<node>  (stream AETHER_CSI_<partition>, Nats-Msg-Id)
//!          ─► worker owning the partition (lease in KV aether_leases, durable consumer)
//!             ─► shards: the same node streams as one process ─► aether.result.<node>
//!                (stream AETHER_RESULTS, Nats-Msg-Id) ─► ack (all up to the floor)
//! ```
//!
//! The gateway decides everything that sets a node's stream position (sequence gaps,
//! restarts, shape switches) and stamps each forwarded frame with its per-node index and
//! its position in the node's stream ([`Stamp`]); so a worker's node state at a frame is a
//! function of the last [`crate::cluster::worker::replay_frames`] frames and that
//! position, and a new owner rebuilds it exactly by replaying them
//! (`LiveStream::resume_at`, `FeatureStream::resume_at`).
//!
//! The transport is the small [`transport::Transport`] trait; [`nats`] implements it on
//! JetStream. Everything else here is independent of the broker.

pub mod gateway;
#[cfg(feature = "nats")]
pub mod nats;
pub mod pipe;
pub mod transport;
pub mod worker;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::error::ServeError;
use crate::ingest::node_hash;
use crate::node::NodeKey;
use crate::shard::Kind;

/// Most partitions of a cluster.
pub const MAX_PARTITIONS: u32 = 1024;
/// Subject prefix of forwarded frames: `aether.csi.<partition>.<node>`.
pub const CSI_PREFIX: &str = "aether.csi";
/// Subject prefix of results: `aether.result.<node>`.
pub const RESULT_PREFIX: &str = "aether.result";
/// Stream of partition `p` is `AETHER_CSI_<p>`.
pub const CSI_STREAM: &str = "AETHER_CSI";
/// Stream of the results.
pub const RESULT_STREAM: &str = "AETHER_RESULTS";
/// Key-value bucket of the partition leases (keys `p<partition>`).
pub const LEASE_BUCKET: &str = "aether_leases";
/// Key-value bucket of the cluster settings the gateway declares (key `settings`).
pub const SETTINGS_BUCKET: &str = "aether_cluster";
/// Name of every partition's durable consumer.
pub const CONSUMER: &str = "aether-worker";

/// A fresh worker id: `<host>-<pid>-<random>` (its name in the leases and results).
pub fn new_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .take(32)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}-{}-{:06x}", std::process::id(), nanos & 0xff_ffff)
}

/// The partition of a node: its stable hash modulo the partition count.
pub fn partition_of(key: &NodeKey, partitions: u32) -> u32 {
    node_hash(key.addr, key.node_id) % partitions.max(1)
}

/// The subject token of a node: `a-b-c-d_<id>` for IPv4, the eight hex groups joined by
/// `-` then `_<id>` for IPv6 (subjects cannot hold `.`, `:` or `/`).
pub fn node_token(key: &NodeKey) -> String {
    match key.addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}-{}-{}-{}_{}", o[0], o[1], o[2], o[3], key.node_id)
        }
        IpAddr::V6(a) => {
            let g: Vec<String> = a.segments().iter().map(|s| format!("{s:x}")).collect();
            format!("{}_{}", g.join("-"), key.node_id)
        }
    }
}

/// Parses a [`node_token`].
pub fn parse_token(t: &str) -> Option<NodeKey> {
    let (a, n) = t.rsplit_once('_')?;
    let node_id: u8 = n.parse().ok()?;
    let parts: Vec<&str> = a.split('-').collect();
    let addr = match parts.len() {
        4 => {
            let mut o = [0u8; 4];
            for (x, p) in o.iter_mut().zip(&parts) {
                *x = p.parse().ok()?;
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        8 => {
            let mut s = [0u16; 8];
            for (x, p) in s.iter_mut().zip(&parts) {
                if p.is_empty() || p.len() > 4 {
                    return None;
                }
                *x = u16::from_str_radix(p, 16).ok()?;
            }
            IpAddr::V6(Ipv6Addr::from(s))
        }
        _ => return None,
    };
    Some(NodeKey { addr, node_id })
}

/// Subject of a forwarded frame.
pub fn csi_subject(partition: u32, token: &str) -> String {
    format!("{CSI_PREFIX}.{partition}.{token}")
}

/// Subject of a node's results.
pub fn result_subject(token: &str) -> String {
    format!("{RESULT_PREFIX}.{token}")
}

/// The dedup id (`Nats-Msg-Id`) of a node's frame and of its result: `<node>:<run>:<index>`.
pub fn message_id(token: &str, run: u64, index: u64) -> String {
    format!("{token}:{run}:{index}")
}

/// `(run, index)` from a [`message_id`].
pub fn parse_message_id(id: &str) -> Option<(u64, u64)> {
    let mut it = id.rsplitn(3, ':');
    let index = it.next()?.parse().ok()?;
    let run = it.next()?.parse().ok()?;
    it.next()?;
    Some((run, index))
}

/// Parses a partition list: `3`, `0-7`, `0,2,4-6` (indices below [`MAX_PARTITIONS`]),
/// sorted and without repeats.
pub fn parse_partition_list(s: &str) -> Result<Vec<u32>, String> {
    let bad = || {
        format!(
            "{s:?}: a partition list is N, A-B or a comma-separated list of those, 0 ≤ N < {MAX_PARTITIONS}"
        )
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let a: u32 = a.parse().map_err(|_| bad())?;
        let b: u32 = b.parse().map_err(|_| bad())?;
        if a > b || b >= MAX_PARTITIONS {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Which partitions a worker wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSpec {
    /// These partitions (`--partitions 0-7`).
    List(Vec<u32>),
    /// Worker `index` of `of` equal workers: every partition `p` with `p mod of == index`
    /// of the count the gateway declared (`--partition-of I/N`).
    Of {
        /// This worker's number.
        index: u32,
        /// Workers sharing the partitions.
        of: u32,
    },
}

impl PartitionSpec {
    /// The partitions out of `total`.
    pub fn resolve(&self, total: u32) -> Vec<u32> {
        match self {
            PartitionSpec::List(v) => v.iter().copied().filter(|&p| p < total).collect(),
            PartitionSpec::Of { index, of } => (0..total).filter(|p| p % of == *index).collect(),
        }
    }
}

/// What a cluster process does.
#[derive(Debug, Clone)]
pub enum Role {
    /// Takes the nodes' UDP frames, validates them and appends them to the partitions.
    Gateway {
        /// Partition count.
        partitions: u32,
        /// Frames kept per node in its partition's stream (`max_msgs_per_subject`).
        retain: i64,
        /// Longest a frame is kept (`max_age`).
        retain_age: Duration,
        /// Frames queued for the broker before new ones are dropped (counted).
        queue: usize,
        /// Frames sent to the broker and not yet confirmed.
        inflight: usize,
    },
    /// Owns partitions (by lease), runs their nodes, publishes results.
    Worker {
        /// The partitions it wants.
        partitions: PartitionSpec,
        /// Frames fetched and not yet finished (result published and acknowledged).
        inflight: usize,
        /// Results kept per node in the results stream.
        result_retain: i64,
        /// Lease lifetime (a dead owner's partitions move after at most this plus a
        /// third of it).
        lease_ttl: Duration,
        /// The broker redelivers a frame not acknowledged for this long.
        ack_wait: Duration,
        /// This worker's name in the leases.
        id: String,
    },
}

/// Settings of a cluster role.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Broker URL (`nats://HOST:PORT`).
    pub url: String,
    /// Gateway or worker.
    pub role: Role,
    /// Window in which a repeated dedup id is dropped by the broker.
    pub dedup_window: Duration,
}

impl ClusterConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ServeError> {
        let bad = |m: String| Err(ServeError::Config(m));
        let rest = self
            .url
            .strip_prefix("nats://")
            .or_else(|| self.url.strip_prefix("tls://"));
        match rest {
            Some(r) if !r.is_empty() && !r.contains(['/', ' ']) => {}
            _ => {
                return bad(format!(
                    "broker URL {:?} must be nats://[USER:PASSWORD@]HOST[:PORT] or tls://…",
                    self.url
                ))
            }
        }
        if self.dedup_window < Duration::from_millis(100) {
            return bad("--dedup-window must be at least 0.1 s".into());
        }
        match &self.role {
            Role::Gateway {
                partitions,
                retain,
                queue,
                inflight,
                retain_age,
            } => {
                if *partitions == 0 || *partitions > MAX_PARTITIONS {
                    return bad(format!(
                        "a gateway needs --partitions P with 1 ≤ P ≤ {MAX_PARTITIONS} (got {partitions})"
                    ));
                }
                if *retain < 1 || *queue == 0 || *inflight == 0 {
                    return bad(
                        "--retain, --publish-queue and --max-inflight must be positive".into(),
                    );
                }
                if retain_age.is_zero() {
                    return bad("--retain-age must be positive".into());
                }
            }
            Role::Worker {
                partitions,
                inflight,
                lease_ttl,
                result_retain,
                ..
            } => {
                match partitions {
                    PartitionSpec::List(v) if v.is_empty() => {
                        return bad("a worker needs --partitions LIST or --partition-of I/N".into())
                    }
                    PartitionSpec::Of { index, of } if of == &0 || index >= of => {
                        return bad(format!("--partition-of {index}/{of}: need 0 ≤ I < N"))
                    }
                    _ => {}
                }
                if *inflight == 0 || *result_retain < 1 {
                    return bad("--max-inflight and --result-retain must be positive".into());
                }
                if *lease_ttl < Duration::from_millis(300) {
                    return bad("--lease-ttl must be at least 0.3 s".into());
                }
            }
        }
        Ok(())
    }
}

/// Why a stream position restarted at this frame (the gateway's verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Reset {
    /// The stream continues.
    #[default]
    None = 0,
    /// The node's first frame (or the first after it expired).
    First = 1,
    /// A sequence gap above `--max-gap`.
    Gap = 2,
    /// The node restarted (sequence numbers went far back).
    Restart = 3,
    /// The node's frame shape changed.
    Shape = 4,
}

impl Reset {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Reset::None,
            1 => Reset::First,
            2 => Reset::Gap,
            3 => Reset::Restart,
            4 => Reset::Shape,
            _ => return None,
        })
    }
}

/// What a forwarded frame carries besides its datagram, and where a worker got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    /// The gateway run (its start time, ms): indices restart with a new run.
    pub run: u64,
    /// The node's frame index in this run (0, 1, 2, … for every forwarded packet).
    pub index: u64,
    /// The frame's position in the node's stream (0 after every reset).
    pub pos: u64,
    /// Packets missing in the sequence gap before this frame.
    pub lost: u32,
    /// Whether and why the stream restarts at this frame.
    pub reset: Reset,
    /// The node's partition.
    pub partition: u32,
    /// When the gateway received the datagram, ms since the epoch.
    pub recv_ms: u64,
    /// Worker side: the frame's sequence number in its partition log.
    pub seq: u64,
    /// Worker side: the ownership epoch of the partition that delivered it.
    pub epoch: u64,
    /// Worker side: a replayed frame (rebuilds state, publishes nothing).
    pub replay: bool,
}

/// Magic of a forwarded frame.
pub const ENVELOPE_MAGIC: u32 = 0xAE7C_0001;
/// Bytes before the datagram in a forwarded frame.
pub const ENVELOPE_HEADER: usize = 64;

/// A forwarded frame, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The stamp (worker-side fields zero).
    pub stamp: Stamp,
    /// The node's source address and port.
    pub src: SocketAddr,
    /// The node id byte.
    pub node_id: u8,
    /// The datagram as the node sent it.
    pub datagram: &'a [u8],
}

impl Envelope<'_> {
    /// The node key.
    pub fn key(&self) -> NodeKey {
        NodeKey {
            addr: self.src.ip(),
            node_id: self.node_id,
        }
    }

    /// Appends the encoding (64-byte little-endian header, then the datagram) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let s = &self.stamp;
        out.extend_from_slice(&ENVELOPE_MAGIC.to_le_bytes());
        out.extend_from_slice(&s.run.to_le_bytes());
        out.extend_from_slice(&s.index.to_le_bytes());
        out.extend_from_slice(&s.pos.to_le_bytes());
        out.extend_from_slice(&s.recv_ms.to_le_bytes());
        out.extend_from_slice(&s.lost.to_le_bytes());
        out.extend_from_slice(&(s.partition as u16).to_le_bytes());
        out.extend_from_slice(&self.src.port().to_le_bytes());
        out.push(s.reset as u8);
        out.push(self.node_id);
        let mut addr = [0u8; 16];
        match self.src.ip() {
            IpAddr::V4(a) => {
                out.push(4);
                addr[..4].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.push(6);
                addr = a.octets();
            }
        }
        out.push(0);
        out.extend_from_slice(&addr);
        out.extend_from_slice(self.datagram);
    }
}

/// Decodes a forwarded frame; `None` when it is not one.
pub fn decode_envelope(b: &[u8]) -> Option<Envelope<'_>> {
    if b.len() < ENVELOPE_HEADER {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    if u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")) != ENVELOPE_MAGIC {
        return None;
    }
    let lost = u32::from_le_bytes(b[36..40].try_into().expect("4 bytes"));
    let partition = u32::from(u16::from_le_bytes([b[40], b[41]]));
    let port = u16::from_le_bytes([b[42], b[43]]);
    let reset = Reset::from_u8(b[44])?;
    let node_id = b[45];
    let ip = match b[46] {
        4 => IpAddr::V4(Ipv4Addr::new(b[48], b[49], b[50], b[51])),
        6 => {
            let o: [u8; 16] = b[48..64].try_into().expect("16 bytes");
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(Envelope {
        stamp: Stamp {
            run: u64_at(4),
            index: u64_at(12),
            pos: u64_at(20),
            recv_ms: u64_at(28),
            lost,
            reset,
            partition,
            ..Stamp::default()
        },
        src: SocketAddr::new(ip, port),
        node_id,
        datagram: &b[ENVELOPE_HEADER..],
    })
}

/// A node's cluster bookkeeping (in [`crate::node::Node`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeCluster {
    /// Gateway: index of the next forwarded packet.
    pub next_index: u64,
    /// Gateway: stream position of the next forwarded frame.
    pub next_pos: u64,
    /// Gateway: why the next frame restarts the stream (a restart frame was dropped).
    pub pending_reset: Reset,
    /// Gateway: packets lost before the next frame (including dropped forwards).
    pub pending_lost: u32,
    /// Worker: `(run, index)` of the last frame taken.
    pub last: Option<(u64, u64)>,
    /// Worker: the partition ownership epoch the node's state belongs to.
    pub epoch: u64,
    /// Worker: the node's partition.
    pub partition: Option<u32>,
}

/// A shard's part in a cluster.
#[derive(Debug, Clone)]
pub enum ShardLink {
    /// Gateway: validated frames are stamped and forwarded instead of run.
    Gateway(gateway::ForwardSink),
    /// Worker: frames come stamped from the partitions; every outcome is reported.
    Worker(worker::OutcomeSink),
}

/// The packet kind of a datagram, from its magic (forwarded frames were checked by the
/// gateway).
pub fn kind_of(datagram: &[u8]) -> Option<(Kind, u8)> {
    crate::ingest::peek(datagram).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_subject_safe() {
        for id in ["127.0.0.2/7", "10.1.2.3/0", "::1/255", "fe80::1:2/3"] {
            let k = NodeKey::parse(id).unwrap();
            let t = node_token(&k);
            assert!(!t.contains(['.', ':', '/', '*', '>', ' ']), "{t}");
            assert_eq!(parse_token(&t), Some(k), "{t}");
        }
        assert_eq!(
            node_token(&NodeKey::parse("127.0.0.2/7").unwrap()),
            "127-0-0-2_7"
        );
        for bad in ["", "1-2-3_4", "1-2-3-4", "1-2-3-400_1", "1-2-3-4_256"] {
            assert!(parse_token(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn partition_lists() {
        assert_eq!(parse_partition_list("3").unwrap(), vec![3]);
        assert_eq!(parse_partition_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_partition_list("5,0-1, 5").unwrap(), vec![0, 1, 5]);
        for bad in ["", "-1", "3-1", "1024", "a", "1-", "1.5"] {
            assert!(parse_partition_list(bad).is_err(), "{bad}");
        }
        let of = PartitionSpec::Of { index: 1, of: 3 };
        assert_eq!(of.resolve(8), vec![1, 4, 7]);
        assert_eq!(PartitionSpec::List(vec![1, 9]).resolve(8), vec![1]);
    }

    #[test]
    fn envelopes_round_trip() {
        let data = [1u8, 2, 3, 4, 5];
        for src in ["127.0.0.9:4000", "[fe80::1]:5"] {
            let e = Envelope {
                stamp: Stamp {
                    run: 1_700_000_000_000,
                    index: 42,
                    pos: 17,
                    lost: 3,
                    reset: Reset::Gap,
                    partition: 1023,
                    recv_ms: 99,
                    ..Stamp::default()
                },
                src: src.parse().unwrap(),
                node_id: 200,
                datagram: &data,
            };
            let mut b = Vec::new();
            e.encode(&mut b);
            assert_eq!(b.len(), ENVELOPE_HEADER + data.len());
            assert_eq!(decode_envelope(&b), Some(e));
            let mut bad = b.clone();
            bad[0] ^= 1;
            assert!(decode_envelope(&bad).is_none());
            assert!(decode_envelope(&b[..ENVELOPE_HEADER - 1]).is_none());
        }
    }

    #[test]
    fn message_ids() {
        let id = message_id("127-0-0-2_7", 5, 9);
        assert_eq!(parse_message_id(&id), Some((5, 9)));
        assert_eq!(parse_message_id("x:1"), None);
    }

    #[test]
    fn partitions_follow_the_node_hash() {
        let k = NodeKey::parse("127.0.0.2/7").unwrap();
        assert_eq!(partition_of(&k, 8), crate::ingest::node_hash(k.addr, 7) % 8);
        let mut counts = [0; 4];
        for i in 0..2000u32 {
            let k = NodeKey {
                addr: IpAddr::from([127, 0, (i >> 8) as u8, 2]),
                node_id: i as u8,
            };
            counts[partition_of(&k, 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 400), "{counts:?}");
    }
}
