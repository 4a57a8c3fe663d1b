//! UDP ingest: batched receives (`recvmmsg`), a header peek to find the node, a
//! per-node rate limit, and routing to the node's shard. Nothing here blocks on a
//! shard: a full shard queue drops the packets and counts them.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_data::wire::{CLASSIFICATION_MAGIC, FEATURE_STATE_MAGIC, RAW_CSI_MAGIC};
use crossbeam_channel::Sender;
use nix::sys::socket::{
    recvmmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage,
};
use prometheus_client::metrics::counter::Counter;
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::ServeError;
use crate::metrics::{Metrics, Reject};
use crate::shard::{offer, Batch, Item, Kind};

/// Datagrams read per `recvmmsg` call.
pub const BATCH: usize = 64;
/// Receive buffer per datagram: a datagram longer than this is cut by the kernel,
/// counted as `oversized` and dropped (3 antennas × 512 subcarriers fit: 3,092 bytes).
pub const SLOT: usize = 4096;

/// Binds the UDP socket: `SO_REUSEPORT` when several threads share
/// the port, the asked receive buffer (forced when privileged), a 100 ms receive
/// timeout so the loop sees shutdown, and `SO_RXQ_OVFL` to count kernel drops.
/// Returns the socket and the receive buffer the kernel granted.
pub fn bind(
    addr: SocketAddr,
    recv_buffer: usize,
    reuse_port: bool,
) -> Result<(UdpSocket, usize), ServeError> {
    let io = |context, source| ServeError::Io { context, source };
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| io("creating the UDP socket", e))?;
    s.set_reuse_address(true)
        .map_err(|e| io("SO_REUSEADDR", e))?;
    if reuse_port {
        s.set_reuse_port(true).map_err(|e| io("SO_REUSEPORT", e))?;
    }
    if setsockopt(&s, sockopt::RcvBufForce, &recv_buffer).is_err() {
        let _ = s.set_recv_buffer_size(recv_buffer);
    }
    let _ = setsockopt(&s, sockopt::RxqOvfl, &1);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| io("SO_RCVTIMEO", e))?;
    s.bind(&addr.into()).map_err(|source| ServeError::Bind {
        what: "UDP",
        addr,
        source,
    })?;
    let granted = s.recv_buffer_size().unwrap_or(0);
    Ok((s.into(), granted))
}

/// Token bucket of one node (burst = one second of the rate).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Everything an ingest thread owns.
pub struct Ingest {
    /// The socket.
    pub socket: UdpSocket,
    /// One queue per shard.
    pub shards: Vec<Sender<Batch>>,
    /// Packets queued per shard.
    pub queued: Vec<Arc<AtomicUsize>>,
    /// Queue limit per shard, packets.
    pub queue_packets: usize,
    /// Frames per second per node (0 = unlimited).
    pub max_node_rate: f64,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Cleared to stop.
    pub running: Arc<AtomicBool>,
}

/// A stable 32-bit hash of a node key: CRC-32 of the address bytes (4 or 16) and the
/// node id. The same on every machine and version, so shards and partitions agree.
pub fn node_hash(addr: IpAddr, node_id: u8) -> u32 {
    let mut h = crc32fast::Hasher::new();
    match addr {
        IpAddr::V4(a) => h.update(&a.octets()),
        IpAddr::V6(a) => h.update(&a.octets()),
    }
    h.update(&[node_id]);
    h.finalize()
}

/// The shard of a node key.
pub fn shard_of(addr: IpAddr, node_id: u8, shards: usize) -> usize {
    (node_hash(addr, node_id) as usize) % shards.max(1)
}

/// `(kind, node_id)` from a datagram's first bytes.
pub fn peek(b: &[u8]) -> Result<(Kind, u8), Reject> {
    if b.len() < 4 {
        return Err(Reject::Truncated);
    }
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (kind, at) = match magic {
        RAW_CSI_MAGIC => (Kind::RawCsi, 4),
        FEATURE_STATE_MAGIC => (Kind::FeatureState, 4),
        CLASSIFICATION_MAGIC => (Kind::Classification, 8),
        _ => return Err(Reject::BadMagic),
    };
    b.get(at).map(|&id| (kind, id)).ok_or(Reject::Truncated)
}

fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

impl Ingest {
    /// Receives until `running` is cleared, then reads what the kernel still holds
    /// and returns (dropping the shard senders lets the shards drain and stop).
    pub fn run(self) {
        let n_shards = self.shards.len();
        let mut buf = vec![0u8; BATCH * SLOT];
        let mut headers: MultiHeaders<SockaddrStorage> =
            MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(u32)));
        let mut batches: Vec<Batch> = (0..n_shards).map(|_| Batch::default()).collect();
        let mut buckets: HashMap<(IpAddr, u8), Bucket> = HashMap::new();
        let mut last_prune = Instant::now();
        let rejected: HashMap<Reject, Counter> = Reject::ALL
            .iter()
            .map(|&r| (r, self.metrics.rejected(r)))
            .collect();
        let kinds = [
            self.metrics.kind("raw_csi"),
            self.metrics.kind("feature_state"),
            self.metrics.kind("classification"),
            self.metrics.kind("unknown"),
        ];
        let mut drops_seen: u32 = 0;
        let fd = self.socket.as_raw_fd();
        let rate = self.max_node_rate;
        let mut got: Vec<(usize, bool, Option<SocketAddr>)> = Vec::with_capacity(BATCH);
        loop {
            // After shutdown, read what the kernel already holds, then stop.
            let draining = !self.running.load(Ordering::Relaxed);
            let flags = if draining {
                MsgFlags::MSG_DONTWAIT
            } else {
                MsgFlags::MSG_WAITFORONE
            };
            got.clear();
            let mut ovfl = None;
            {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                    buf.chunks_mut(SLOT).map(|c| [IoSliceMut::new(c)]).collect();
                match recvmmsg(fd, &mut headers, iovs.iter_mut(), flags, None) {
                    Ok(res) => {
                        for r in res {
                            if let Ok(cm) = r.cmsgs() {
                                for c in cm {
                                    if let ControlMessageOwned::RxqOvfl(n) = c {
                                        ovfl = Some(n);
                                    }
                                }
                            }
                            let addr = r.address.as_ref().and_then(socket_addr);
                            got.push((r.bytes, r.flags.contains(MsgFlags::MSG_TRUNC), addr));
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) if !draining => {
                        continue
                    }
                    Err(_) if draining => break,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                }
            }
            if got.is_empty() && draining {
                break;
            }
            if let Some(n) = ovfl {
                if n > drops_seen {
                    self.metrics.kernel_drops.inc_by(u64::from(n - drops_seen));
                    drops_seen = n;
                }
            }
            let now = Instant::now();
            self.metrics.packets.inc_by(got.len() as u64);
            for (i, &(len, trunc, addr)) in got.iter().enumerate() {
                let bytes = &buf[i * SLOT..i * SLOT + len.min(SLOT)];
                let Some(src) = addr else {
                    rejected[&Reject::BadMagic].inc();
                    continue;
                };
                let (kind, node_id) = match peek(bytes) {
                    Ok(x) => x,
                    Err(r) => {
                        kinds[3].inc();
                        rejected[&r].inc();
                        continue;
                    }
                };
                kinds[kind as usize].inc();
                if trunc {
                    rejected[&Reject::Oversized].inc();
                    continue;
                }
                if rate > 0.0 {
                    let b = buckets.entry((src.ip(), node_id)).or_insert(Bucket {
                        tokens: rate,
                        at: now,
                    });
                    let dt = now.saturating_duration_since(b.at).as_secs_f64();
                    b.tokens = (b.tokens + dt * rate).min(rate.max(1.0));
                    b.at = now;
                    if b.tokens < 1.0 {
                        rejected[&Reject::RateLimited].inc();
                        continue;
                    }
                    b.tokens -= 1.0;
                }
                let s = shard_of(src.ip(), node_id, n_shards);
                let batch = &mut batches[s];
                let start = batch.data.len() as u32;
                batch.data.extend_from_slice(bytes);
                batch.items.push(Item {
                    src,
                    kind,
                    node_id,
                    start,
                    len: bytes.len() as u32,
                    stamp: None,
                });
            }
            for (s, batch) in batches.iter_mut().enumerate() {
                if batch.items.is_empty() {
                    continue;
                }
                let mut b = std::mem::take(batch);
                b.recv_at = Some(now);
                let dropped = offer(&self.shards[s], &self.queued[s], self.queue_packets, b);
                if dropped > 0 {
                    rejected[&Reject::QueueFull].inc_by(dropped as u64);
                }
            }
            if rate > 0.0 && last_prune.elapsed() > Duration::from_secs(10) {
                last_prune = now;
                buckets
                    .retain(|_, b| now.saturating_duration_since(b.at) < Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_finds_kind_and_node() {
        let mut raw = RAW_CSI_MAGIC.to_le_bytes().to_vec();
        assert_eq!(peek(&raw), Err(Reject::Truncated));
        raw.push(9);
        assert_eq!(peek(&raw), Ok((Kind::RawCsi, 9)));
        let mut c = CLASSIFICATION_MAGIC.to_le_bytes().to_vec();
        c.extend([1, 0, 3, 0, 42]);
        assert_eq!(peek(&c), Ok((Kind::Classification, 42)));
        assert_eq!(peek(&[1, 2, 3]), Err(Reject::Truncated));
        assert_eq!(peek(&[1, 2, 3, 4, 5]), Err(Reject::BadMagic));
    }

    #[test]
    fn shards_spread_nodes() {
        let mut counts = [0usize; 4];
        for i in 0..4096u32 {
            let ip = IpAddr::from([127, 0, (i >> 8) as u8, 2]);
            counts[shard_of(ip, i as u8, 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
