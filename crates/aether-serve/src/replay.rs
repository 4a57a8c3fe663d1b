//! A replay fleet: real (or simulated) recordings sent as raw CSI datagrams from `K`
//! simulated nodes, the way ESP32 nodes send them: distinct node ids and source
//! addresses, per-node sequence numbers, paced at a frame rate. It is the demo, the
//! load generator and the way to try the service without hardware.
//!
//! Node `i` sends recording `i mod R` (looping when asked) with node id `i mod 256` from
//! source address `i / 256` of the fleet (`127.0.0.2`, `127.0.0.3`, … on loopback).
//! Sends are spread evenly: the `j`-th datagram of the run goes to node `j mod K` at
//! `j / (K · rate)` seconds, so every node sends every `1 / rate` seconds, staggered.

use std::io::IoSlice;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

use aether_data::wire::{RawCsiFrame, RAW_CSI_HEADER_LEN, RAW_CSI_MAGIC};

use crate::error::ServeError;

/// Fleet settings.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Where the service listens.
    pub to: SocketAddr,
    /// Simulated nodes.
    pub nodes: usize,
    /// Frames per second per node.
    pub rate_hz: f64,
    /// Start each recording again when it ends (sequence numbers keep counting).
    pub looped: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// First source address on loopback (the fleet uses this and the next ones).
    pub first_source: Ipv4Addr,
    /// First sequence number of every node.
    pub start_seq: u32,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            to: "127.0.0.1:5005".parse().expect("literal"),
            nodes: 1,
            rate_hz: 100.0,
            looped: false,
            duration: None,
            first_source: Ipv4Addr::new(127, 0, 0, 2),
            start_seq: 0,
        }
    }
}

/// What a replay sent.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams the OS refused to send.
    pub send_errors: u64,
    /// Per node: `(source address, node id, recording index, datagrams sent)`.
    pub nodes: Vec<(IpAddr, u8, usize, u64)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Encodes recordings of raw frames into datagrams (node id and sequence numbers are
/// set per node when sent).
pub fn encode_recordings(recs: &[Vec<RawCsiFrame>]) -> Result<Vec<Vec<Vec<u8>>>, ServeError> {
    recs.iter()
        .map(|r| {
            r.iter()
                .map(|f| {
                    f.encode()
                        .map_err(|e| ServeError::Config(format!("recording frame: {e}")))
                })
                .collect()
        })
        .collect()
}

/// Source address of fleet node `i` sending to `to`.
pub fn source_of(cfg: &ReplayConfig, i: usize) -> IpAddr {
    if cfg.to.ip().is_loopback() && cfg.to.is_ipv4() {
        let base = u32::from(cfg.first_source);
        IpAddr::V4(Ipv4Addr::from(base + (i / 256) as u32))
    } else if cfg.to.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    }
}

/// Checks a fleet: nodes and rate in range, loopback source addresses available, at
/// most 256 nodes when the service is not on loopback (one source address).
pub fn validate(cfg: &ReplayConfig, recordings: usize) -> Result<(), ServeError> {
    let bad = |m: String| Err(ServeError::Config(m));
    if recordings == 0 {
        return bad("no recordings to replay".into());
    }
    if cfg.nodes == 0 || cfg.nodes > 65_536 {
        return bad(format!("--nodes {} must be in 1..=65536", cfg.nodes));
    }
    if !(cfg.rate_hz > 0.0 && cfg.rate_hz <= 10_000.0) {
        return bad(format!(
            "--rate {} must be in (0, 10000] frames/s",
            cfg.rate_hz
        ));
    }
    let loopback = cfg.to.ip().is_loopback() && cfg.to.is_ipv4();
    if !loopback && cfg.nodes > 256 {
        return bad(format!(
            "--nodes {}: more than 256 nodes need distinct source addresses, which only loopback targets get",
            cfg.nodes
        ));
    }
    if loopback {
        let last = u32::from(cfg.first_source) + ((cfg.nodes - 1) / 256) as u32;
        if (last >> 24) != 127 || last & 0xff == 255 {
            return bad(format!(
                "--nodes {}: the source addresses from {} would leave 127.0.0.0/8",
                cfg.nodes, cfg.first_source
            ));
        }
    }
    Ok(())
}

/// Sends the fleet until every recording ended (not looping), `duration` passed, or
/// `stop` is set.
pub fn run(
    recordings: &[Vec<Vec<u8>>],
    cfg: &ReplayConfig,
    stop: &AtomicBool,
) -> Result<ReplayReport, ServeError> {
    validate(cfg, recordings.len())?;
    for (i, r) in recordings.iter().enumerate() {
        if r.is_empty() {
            return Err(ServeError::Config(format!("recording {i} has no frames")));
        }
        for d in r {
            if d.len() < RAW_CSI_HEADER_LEN || d[..4] != RAW_CSI_MAGIC.to_le_bytes() {
                return Err(ServeError::Config(format!(
                    "recording {i} holds a datagram that is not a raw CSI frame"
                )));
            }
        }
    }
    let k = cfg.nodes;
    let n_sources = k.div_ceil(256);
    let mut sockets = Vec::with_capacity(n_sources);
    for s in 0..n_sources {
        let ip = source_of(cfg, s * 256);
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(|source| ServeError::Bind {
            what: "UDP (replay source)",
            addr: SocketAddr::new(ip, 0),
            source,
        })?;
        let _ = socket2::SockRef::from(&sock).set_send_buffer_size(4 << 20);
        sockets.push(sock);
    }
    let mut next_frame = vec![0usize; k];
    let mut sent_by = vec![0u64; k];
    // Sequence numbers count datagrams handed to the OS (a refused one leaves a gap).
    let mut seq_of = vec![cfg.start_seq; k];
    let mut done = vec![false; k];
    let mut live = k;
    let mut report = ReplayReport::default();
    let per_sec = cfg.rate_hz * k as f64;
    let mut batch = SendBatch::new(cfg.to);
    let start = Instant::now();
    let mut j: u64 = 0;
    while live > 0 && !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        if cfg.duration.is_some_and(|d| now >= d) {
            break;
        }
        let due = (now.as_secs_f64() * per_sec) as u64 + 1;
        while j < due && live > 0 {
            let i = (j % k as u64) as usize;
            j += 1;
            if done[i] {
                continue;
            }
            let rec = &recordings[i % recordings.len()];
            let seq = seq_of[i];
            seq_of[i] = seq.wrapping_add(1);
            let sock = i / 256;
            if batch.socket != sock || batch.len == BATCH {
                batch.flush(&sockets, &mut sent_by, &mut report);
                batch.socket = sock;
            }
            batch.push(&rec[next_frame[i]], (i % 256) as u8, seq, i);
            next_frame[i] += 1;
            if next_frame[i] == rec.len() {
                if cfg.looped {
                    next_frame[i] = 0;
                } else {
                    done[i] = true;
                    live -= 1;
                }
            }
        }
        batch.flush(&sockets, &mut sent_by, &mut report);
        let next_at = j as f64 / per_sec;
        let wait = next_at - start.elapsed().as_secs_f64();
        // Never spin: wake at most every millisecond and send what fell due meanwhile
        // (at high rates, bursts of rate × 1 ms; each node's own pacing stays 1/rate).
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait.clamp(0.001, 0.01)));
        }
    }
    report.elapsed = start.elapsed();
    report.nodes = (0..k)
        .map(|i| {
            (
                source_of(cfg, i),
                (i % 256) as u8,
                i % recordings.len(),
                sent_by[i],
            )
        })
        .collect();
    Ok(report)
}

/// Datagrams sent per `sendmmsg` call.
const BATCH: usize = 64;

/// Up to [`BATCH`] datagrams of one source socket, sent with one `sendmmsg` call.
struct SendBatch {
    to: SocketAddr,
    socket: usize,
    len: usize,
    bufs: Vec<Vec<u8>>,
    node: Vec<usize>,
    headers: MultiHeaders<SockaddrStorage>,
}

impl SendBatch {
    fn new(to: SocketAddr) -> Self {
        Self {
            to,
            socket: 0,
            len: 0,
            bufs: (0..BATCH).map(|_| Vec::with_capacity(4096)).collect(),
            node: vec![0; BATCH],
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Queues `datagram` as node id `node_id`, sequence `seq`, of fleet node `i`.
    fn push(&mut self, datagram: &[u8], node_id: u8, seq: u32, i: usize) {
        let b = &mut self.bufs[self.len];
        b.clear();
        b.extend_from_slice(datagram);
        b[4] = node_id;
        b[12..16].copy_from_slice(&seq.to_le_bytes());
        self.node[self.len] = i;
        self.len += 1;
    }

    /// Sends what is queued (retrying the rest after a partial send once); datagrams
    /// the OS refuses are counted as send errors.
    fn flush(&mut self, sockets: &[UdpSocket], sent_by: &mut [u64], report: &mut ReplayReport) {
        let mut from = 0;
        let mut tries = 0;
        while from < self.len {
            let fd = sockets[self.socket].as_raw_fd();
            let addr = SockaddrStorage::from(self.to);
            let slices: Vec<[IoSlice<'_>; 1]> = self.bufs[from..self.len]
                .iter()
                .map(|b| [IoSlice::new(b)])
                .collect();
            let addrs = vec![Some(addr); slices.len()];
            let n = match sendmmsg(
                fd,
                &mut self.headers,
                &slices,
                &addrs,
                [],
                MsgFlags::empty(),
            ) {
                Ok(r) => r.count(),
                Err(_) => 0,
            };
            for &i in &self.node[from..from + n] {
                sent_by[i] += 1;
            }
            report.sent += n as u64;
            from += n;
            if n == 0 {
                tries += 1;
                if tries > 1 {
                    report.send_errors += (self.len - from) as u64;
                    break;
                }
            }
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_addresses_and_limits() {
        let cfg = ReplayConfig {
            nodes: 600,
            ..ReplayConfig::default()
        };
        assert_eq!(source_of(&cfg, 0), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(source_of(&cfg, 255), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(source_of(&cfg, 256), IpAddr::from([127, 0, 0, 3]));
        assert!(validate(&cfg, 1).is_ok());
        assert!(validate(&cfg, 0).is_err());
        let far = ReplayConfig {
            to: "10.0.0.1:5005".parse().unwrap(),
            nodes: 300,
            ..ReplayConfig::default()
        };
        assert!(validate(&far, 1).is_err());
        let fast = ReplayConfig {
            rate_hz: 0.0,
            ..ReplayConfig::default()
        };
        assert!(validate(&fast, 1).is_err());
        let edge = ReplayConfig {
            first_source: Ipv4Addr::new(127, 255, 255, 250),
            nodes: 256 * 6,
            ..ReplayConfig::default()
        };
        assert!(validate(&edge, 1).is_err());
    }
}
