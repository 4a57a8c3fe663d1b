//! Nexmon CSI captures: a pcap of the UDP packets (port 5500) that
//! seemoo-lab/nexmon_csi sends for every frame a patched Broadcom chip receives.
//!
//! The file is classic libpcap: a 24-byte global header (magic `0xa1b2c3d4`, or
//! `0xa1b23c4d` for nanosecond timestamps, in either byte order; version; link
//! type), then per packet a 16-byte record header (`ts_sec`, `ts_usec`,
//! `incl_len`, `orig_len`) and `incl_len` bytes. Link types read: Ethernet (1),
//! raw IPv4 (101, 228) and Linux cooked capture (113). Inside: IPv4 (options
//! allowed), UDP, and the nexmon_csi payload, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 0–1 | magic `0x1111` |
//! | 2 | RSSI (i8, dBm) |
//! | 3 | frame control byte |
//! | 4–9 | source MAC |
//! | 10–11 | sequence number |
//! | 12–13 | core and spatial stream: `core = v & 7`, `stream = (v >> 3) & 7` |
//! | 14–15 | chanspec |
//! | 16–17 | chip version |
//! | 18– | `nfft` subcarriers × (i16 real, i16 imaginary) |
//!
//! `nfft = (payload − 18) / 4` must be 64, 128, 256 or 512 (20–160 MHz). The int16
//! layout is that of bcm43455c0 (Raspberry Pi 3B+/4), bcm4358 and bcm4339; the
//! bcm4366c0 packs its values in a floating-point format this reader does not
//! decode: such a record (chip `0xe834` or `0x4366`) is skipped as
//! [`NexmonError::UnsupportedChip`].
//!
//! Policy (docs/readers.md): a file that is not a pcap, or whose link type is not
//! read, is fatal ([`parse_pcap`] returns the error). Packets that are not IPv4
//! UDP to port 5500 are counted in [`NexmonLog::other_packets`]; a port-5500
//! packet whose payload fails a check is skipped and kept in
//! [`NexmonLog::skipped`] with its error; a truncated last packet is skipped as
//! [`NexmonError::Truncated`]. Each packet holds one (core, stream) pair, so a
//! record's shape is `1 × 1 × nfft`; captures from several cores interleave them
//! (tell them apart with [`NexmonRecord::core`]).

use super::{magnitude, CsiRecord, CsiShape};

/// UDP port nexmon_csi sends to.
pub const PORT: u16 = 5500;
/// The payload's magic number.
pub const MAGIC: u16 = 0x1111;
/// Bytes of the payload header before the CSI values.
pub const HEADER: usize = 18;
/// Subcarrier counts a record may have (20, 40, 80, 160 MHz).
pub const NFFT: [usize; 4] = [64, 128, 256, 512];

/// Why a file or a packet could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NexmonError {
    /// The file does not start with a pcap magic number (pcapng is not read).
    #[error(
        "not a pcap file (magic {magic:#010x}; pcapng is not read, convert with `editcap -F pcap`)"
    )]
    NotPcap {
        /// The first four bytes, little-endian.
        magic: u32,
    },
    /// The pcap link type is none of Ethernet, raw IPv4 or Linux cooked capture.
    #[error("pcap link type {link} is not read (Ethernet 1, raw IP 101/228, Linux cooked 113)")]
    LinkType {
        /// The link type of the global header.
        link: u32,
    },
    /// A packet ends before its record header says (or before a header it needs).
    #[error("packet {packet}: truncated ({need} bytes needed, {have} present)")]
    Truncated {
        /// Packet index (0-based).
        packet: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The payload to port 5500 does not start with `0x1111`.
    #[error("packet {packet}: nexmon_csi magic {found:#06x}, expected 0x1111")]
    BadMagic {
        /// Packet index.
        packet: usize,
        /// The value found.
        found: u16,
    },
    /// The payload's CSI length is not 4 × 64, 128, 256 or 512 bytes.
    #[error("packet {packet}: {len} bytes of CSI, not 4 × 64, 128, 256 or 512")]
    BadLength {
        /// Packet index.
        packet: usize,
        /// Bytes after the 18-byte header.
        len: usize,
    },
    /// A chip whose value format is not the int16 one (bcm4366c0).
    #[error("packet {packet}: chip {chip:#06x} (bcm4366c0) packs CSI as floating point, not read")]
    UnsupportedChip {
        /// Packet index.
        packet: usize,
        /// The chip field.
        chip: u16,
    },
}

/// One nexmon_csi packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NexmonRecord {
    /// Capture time, seconds.
    pub ts_sec: u32,
    /// Capture time, microseconds (nanoseconds / 1000 for nanosecond files).
    pub ts_usec: u32,
    /// RSSI, dBm.
    pub rssi: i8,
    /// 802.11 frame control byte of the received frame.
    pub frame_control: u8,
    /// Transmitter MAC.
    pub src_mac: [u8; 6],
    /// 802.11 sequence number field.
    pub seq: u16,
    /// Receive core (antenna chain), `0..8`.
    pub core: u8,
    /// Spatial stream, `0..8`.
    pub stream: u8,
    /// Broadcom chanspec (channel and bandwidth).
    pub chanspec: u16,
    /// Chip version field.
    pub chip: u16,
    /// `(real, imaginary)` per subcarrier, as stored.
    pub csi: Vec<(i16, i16)>,
}

impl CsiRecord for NexmonRecord {
    fn shape(&self) -> CsiShape {
        CsiShape {
            n_rx: 1,
            n_tx: 1,
            n_sub: self.csi.len(),
        }
    }

    fn push_amplitudes(&self, out: &mut Vec<f32>) {
        out.extend(
            self.csi
                .iter()
                .map(|&(re, im)| magnitude(f32::from(re), f32::from(im))),
        );
    }
}

/// A decoded capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NexmonLog {
    /// The pcap link type.
    pub link_type: u32,
    /// Records of the packets that passed every check, in order.
    pub records: Vec<NexmonRecord>,
    /// Packets that are not IPv4 UDP to port 5500.
    pub other_packets: usize,
    /// Port-5500 packets (or a truncated last packet) that failed a check, each with its error.
    pub skipped: Vec<NexmonError>,
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let v = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(v)
    } else {
        u16::from_le_bytes(v)
    }
}

fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(v)
    } else {
        u32::from_le_bytes(v)
    }
}

/// The IPv4 packet inside a frame of `link` type, if it carries one.
fn ipv4(link: u32, frame: &[u8]) -> Option<&[u8]> {
    let (ethertype_at, ip_at) = match link {
        1 => (12, 14),
        113 => (14, 16),
        101 | 228 => return Some(frame),
        _ => return None,
    };
    if frame.len() < ip_at || u16_at(frame, ethertype_at, true) != 0x0800 {
        return None;
    }
    Some(&frame[ip_at..])
}

/// The UDP payload of an IPv4 packet to [`PORT`], if it is one.
fn udp_5500(ip: &[u8]) -> Option<&[u8]> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl + 8 {
        return None;
    }
    let udp = &ip[ihl..];
    if u16_at(udp, 2, true) != PORT {
        return None;
    }
    // The UDP length bounds the payload (captures may pad the frame).
    let len = usize::from(u16_at(udp, 4, true)).clamp(8, udp.len());
    Some(&udp[8..len])
}

/// Decodes one nexmon_csi payload.
pub fn parse_payload(packet: usize, ts: (u32, u32), p: &[u8]) -> Result<NexmonRecord, NexmonError> {
    if p.len() < HEADER {
        return Err(NexmonError::Truncated {
            packet,
            need: HEADER,
            have: p.len(),
        });
    }
    let magic = u16_at(p, 0, false);
    if magic != MAGIC {
        return Err(NexmonError::BadMagic {
            packet,
            found: magic,
        });
    }
    let len = p.len() - HEADER;
    if !len.is_multiple_of(4) || !NFFT.contains(&(len / 4)) {
        return Err(NexmonError::BadLength { packet, len });
    }
    let chip = u16_at(p, 16, false);
    if chip == 0xe834 || chip == 0x4366 {
        return Err(NexmonError::UnsupportedChip { packet, chip });
    }
    let css = u16_at(p, 12, false);
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(&p[4..10]);
    Ok(NexmonRecord {
        ts_sec: ts.0,
        ts_usec: ts.1,
        rssi: i8::from_le_bytes([p[2]]),
        frame_control: p[3],
        src_mac,
        seq: u16_at(p, 10, false),
        core: (css & 7) as u8,
        stream: ((css >> 3) & 7) as u8,
        chanspec: u16_at(p, 14, false),
        chip,
        csi: p[HEADER..]
            .chunks_exact(4)
            .map(|c| {
                (
                    i16::from_le_bytes([c[0], c[1]]),
                    i16::from_le_bytes([c[2], c[3]]),
                )
            })
            .collect(),
    })
}

/// Decodes a pcap capture of nexmon_csi packets (see the module docs for what is fatal,
/// skipped or counted).
pub fn parse_pcap(bytes: &[u8]) -> Result<NexmonLog, NexmonError> {
    if bytes.len() < 24 {
        let mut m = [0u8; 4];
        m[..bytes.len().min(4)].copy_from_slice(&bytes[..bytes.len().min(4)]);
        return Err(NexmonError::NotPcap {
            magic: u32::from_le_bytes(m),
        });
    }
    let magic = u32_at(bytes, 0, false);
    let (big, nanos) = match magic {
        0xa1b2_c3d4 => (false, false),
        0xd4c3_b2a1 => (true, false),
        0xa1b2_3c4d => (false, true),
        0x4d3c_b2a1 => (true, true),
        _ => return Err(NexmonError::NotPcap { magic }),
    };
    let link = u32_at(bytes, 20, big) & 0x0fff_ffff;
    if ![1, 101, 113, 228].contains(&link) {
        return Err(NexmonError::LinkType { link });
    }
    let mut log = NexmonLog {
        link_type: link,
        ..NexmonLog::default()
    };
    let mut at = 24;
    let mut packet = 0;
    while at < bytes.len() {
        let have = bytes.len() - at;
        if have < 16 {
            log.skipped.push(NexmonError::Truncated {
                packet,
                need: 16,
                have,
            });
            break;
        }
        let ts_sec = u32_at(bytes, at, big);
        let sub = u32_at(bytes, at + 4, big);
        let ts_usec = if nanos { sub / 1000 } else { sub };
        let incl = u32_at(bytes, at + 8, big) as usize;
        let body = &bytes[at + 16..];
        if incl > body.len() {
            log.skipped.push(NexmonError::Truncated {
                packet,
                need: incl,
                have: body.len(),
            });
            break;
        }
        let frame = &body[..incl];
        match ipv4(link, frame).and_then(udp_5500) {
            None => log.other_packets += 1,
            Some(p) => match parse_payload(packet, (ts_sec, ts_usec), p) {
                Ok(r) => log.records.push(r),
                Err(e) => log.skipped.push(e),
            },
        }
        at += 16 + incl;
        packet += 1;
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::amplitude_matrix;
    use proptest::prelude::*;

    /// A nexmon_csi payload (the encoder of these tests, written from the format table).
    fn payload(rssi: i8, core: u8, stream: u8, chip: u16, csi: &[(i16, i16)]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend(MAGIC.to_le_bytes());
        p.push(rssi as u8);
        p.push(0x08);
        p.extend([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        p.extend(0x1230u16.to_le_bytes());
        p.extend((u16::from(core) | u16::from(stream) << 3).to_le_bytes());
        p.extend(0x1006u16.to_le_bytes());
        p.extend(chip.to_le_bytes());
        for &(re, im) in csi {
            p.extend(re.to_le_bytes());
            p.extend(im.to_le_bytes());
        }
        p
    }

    /// An Ethernet / IPv4 / UDP frame to `port` around `payload`.
    fn frame(port: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([0x02, 0, 0, 0, 0, 1]);
        f.extend(0x0800u16.to_be_bytes());
        let total = 20 + 8 + payload.len();
        f.extend([0x45, 0]);
        f.extend((total as u16).to_be_bytes());
        f.extend([
            0, 0, 0x40, 0, 64, 17, 0, 0, 10, 10, 10, 10, 255, 255, 255, 255,
        ]);
        f.extend(5500u16.to_be_bytes());
        f.extend(port.to_be_bytes());
        f.extend(((8 + payload.len()) as u16).to_be_bytes());
        f.extend([0, 0]);
        f.extend(payload);
        f
    }

    /// A pcap file (little-endian, microseconds, Ethernet) of `frames`.
    fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(0xa1b2_c3d4u32.to_le_bytes());
        b.extend(2u16.to_le_bytes());
        b.extend(4u16.to_le_bytes());
        b.extend([0; 8]);
        b.extend(65535u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        for (i, f) in frames.iter().enumerate() {
            b.extend((1_700_000_000 + i as u32).to_le_bytes());
            b.extend((i as u32 * 10).to_le_bytes());
            b.extend((f.len() as u32).to_le_bytes());
            b.extend((f.len() as u32).to_le_bytes());
            b.extend(f);
        }
        b
    }

    fn csi(n: usize, seed: i16) -> Vec<(i16, i16)> {
        (0..n as i16)
            .map(|k| {
                (
                    k.wrapping_mul(3).wrapping_add(seed),
                    k.wrapping_neg().wrapping_sub(seed),
                )
            })
            .collect()
    }

    #[test]
    fn reads_records_counts_others_and_keeps_metadata() {
        let a = csi(64, 1);
        let mut c = vec![(0i16, 0i16); 64];
        c[5] = (3, 4);
        let bytes = pcap(&[
            frame(5500, &payload(-40, 1, 2, 0x0065, &a)),
            frame(53, b"dns"),
            frame(5500, &payload(-41, 0, 0, 0x0065, &c)),
        ]);
        let log = parse_pcap(&bytes).unwrap();
        assert_eq!(log.link_type, 1);
        assert_eq!((log.records.len(), log.other_packets), (2, 1));
        assert!(log.skipped.is_empty());
        let r = &log.records[0];
        assert_eq!((r.rssi, r.core, r.stream, r.chip), (-40, 1, 2, 0x0065));
        assert_eq!(
            (r.ts_sec, r.ts_usec, r.seq, r.chanspec),
            (1_700_000_000, 0, 0x1230, 0x1006)
        );
        assert_eq!(r.src_mac, [0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(r.csi, a);
        let m = amplitude_matrix(&log.records).unwrap();
        assert_eq!((m.frames(), m.width()), (2, 64));
        assert_eq!(m.rows[64 + 5], 5.0);
        assert_eq!(m.rows[64], 0.0);
    }

    #[test]
    fn every_error_is_typed() {
        assert_eq!(
            parse_pcap(b"\x0a\x0d\x0d\x0a................................"),
            Err(NexmonError::NotPcap { magic: 0x0a0d_0d0a })
        );
        assert!(matches!(
            parse_pcap(b"\xd4\xc3"),
            Err(NexmonError::NotPcap { .. })
        ));
        let mut wrong_link = pcap(&[]);
        wrong_link[20] = 127;
        assert_eq!(
            parse_pcap(&wrong_link),
            Err(NexmonError::LinkType { link: 127 })
        );
        let mut bad_magic = payload(-40, 0, 0, 0x0065, &csi(64, 0));
        bad_magic[0] = 0x22;
        let odd = payload(-40, 0, 0, 0x0065, &csi(63, 0));
        let chip = payload(-40, 0, 0, 0xe834, &csi(64, 0));
        let short = payload(-40, 0, 0, 0x0065, &[])[..10].to_vec();
        let mut bytes = pcap(&[
            frame(5500, &bad_magic),
            frame(5500, &odd),
            frame(5500, &chip),
            frame(5500, &short),
            frame(5500, &payload(-40, 0, 0, 0x0065, &csi(128, 0))),
        ]);
        bytes.truncate(bytes.len() - 3);
        let log = parse_pcap(&bytes).unwrap();
        assert!(log.records.is_empty());
        assert_eq!(
            log.skipped,
            vec![
                NexmonError::BadMagic {
                    packet: 0,
                    found: 0x1122
                },
                NexmonError::BadLength {
                    packet: 1,
                    len: 252
                },
                NexmonError::UnsupportedChip {
                    packet: 2,
                    chip: 0xe834
                },
                NexmonError::Truncated {
                    packet: 3,
                    need: 18,
                    have: 10
                },
                NexmonError::Truncated {
                    packet: 4,
                    need: 14 + 28 + 18 + 512,
                    have: 14 + 28 + 18 + 509
                },
            ]
        );
    }

    #[test]
    fn big_endian_nanosecond_and_raw_ip_files_read_alike() {
        let a = csi(256, 7);
        let f = frame(5500, &payload(-60, 3, 1, 0x0065, &a));
        let mut b = Vec::new();
        b.extend(0xa1b2_3c4du32.to_be_bytes());
        b.extend(2u16.to_be_bytes());
        b.extend(4u16.to_be_bytes());
        b.extend([0; 8]);
        b.extend(65535u32.to_be_bytes());
        b.extend(101u32.to_be_bytes());
        let ip = &f[14..];
        b.extend(5u32.to_be_bytes());
        b.extend(7_000u32.to_be_bytes());
        b.extend((ip.len() as u32).to_be_bytes());
        b.extend((ip.len() as u32).to_be_bytes());
        b.extend(ip);
        let log = parse_pcap(&b).unwrap();
        assert_eq!(log.link_type, 101);
        assert_eq!(log.records.len(), 1);
        let r = &log.records[0];
        assert_eq!((r.ts_sec, r.ts_usec, r.core, r.stream), (5, 7, 3, 1));
        assert_eq!(r.csi, a);
    }

    #[test]
    fn linux_cooked_captures_read() {
        let a = csi(64, 3);
        let f = frame(5500, &payload(-50, 0, 0, 0x0065, &a));
        let mut sll = vec![0u8; 14];
        sll.extend(0x0800u16.to_be_bytes());
        sll.extend(&f[14..]);
        let mut b = pcap(&[sll]);
        b[20..24].copy_from_slice(&113u32.to_le_bytes());
        let log = parse_pcap(&b).unwrap();
        assert_eq!((log.link_type, log.records.len()), (113, 1));
        assert_eq!(log.records[0].csi, a);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..600), link in prop::sample::select(vec![1u32, 101, 113])) {
            let mut b = pcap(&[]);
            b[20..24].copy_from_slice(&link.to_le_bytes());
            b.extend(&tail);
            let log = parse_pcap(&b).unwrap();
            for r in &log.records {
                prop_assert!(NFFT.contains(&r.csi.len()));
            }
            let _ = parse_pcap(&tail);
        }

        #[test]
        fn encoded_records_round_trip(
            n in prop::sample::select(NFFT.to_vec()), seed in any::<i16>(),
            rssi in any::<i8>(), core in 0u8..8, stream in 0u8..8, others in 0usize..3,
        ) {
            let a = csi(n, seed);
            let mut frames = vec![frame(4000, b"other"); others];
            frames.push(frame(5500, &payload(rssi, core, stream, 0x0065, &a)));
            let log = parse_pcap(&pcap(&frames)).unwrap();
            prop_assert_eq!(log.other_packets, others);
            prop_assert_eq!(log.records.len(), 1);
            let r = &log.records[0];
            prop_assert_eq!((r.rssi, r.core, r.stream), (rssi, core, stream));
            prop_assert_eq!(&r.csi, &a);
        }
    }
}
