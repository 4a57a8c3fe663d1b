//! The node's UDP wire formats (little-endian, packed; every field documented below):
//!
//! * raw CSI frame `0xC5110001`: 20-byte header (magic u32, node_id u8,
//!   n_antennas u8, n_subcarriers u16 ≤ 512, freq_mhz u32, seq u32, rssi i8,
//!   noise_floor i8, reserved u16) then `n_antennas × n_subcarriers` pairs
//!   `(I i8, Q i8)`, antenna-major; size `20 + 2·n_ant·n_sub`;
//! * feature state `0xC5110006`, 60 bytes, CRC-32 over bytes `0..56`;
//! * classification `0xC5110007`, 40 bytes, CRC-32 over bytes `0..36`.
//!
//! A capture file is raw CSI frames back to back; [`parse_capture`] never
//! fails: malformed or truncated frames are skipped and counted, and the
//! parser resynchronises by scanning for the next magic.

use std::fmt;

/// Magic of a raw CSI frame.
pub const RAW_CSI_MAGIC: u32 = 0xC511_0001;
/// Magic of a feature-state packet.
pub const FEATURE_STATE_MAGIC: u32 = 0xC511_0006;
/// Magic of a classification packet.
pub const CLASSIFICATION_MAGIC: u32 = 0xC511_0007;
/// Raw CSI header size in bytes.
pub const RAW_CSI_HEADER_LEN: usize = 20;
/// Largest subcarrier count a raw CSI frame may declare.
pub const MAX_SUBCARRIERS: u16 = 512;
/// Feature-state packet size in bytes.
pub const FEATURE_STATE_LEN: usize = 60;
/// Classification packet size in bytes.
pub const CLASSIFICATION_LEN: usize = 40;
/// Classification packet version this crate writes and accepts.
pub const CLASSIFICATION_VERSION: u16 = 1;

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// Deliberately exhaustive: the wire format is versioned, and the service maps every
// variant to its own rejection reason, so a new variant must fail to compile there.
pub enum WireError {
    /// Fewer bytes than the packet needs.
    #[error("packet truncated: need {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The first four bytes are not the expected magic.
    #[error("bad magic: expected {expected:#010x}, got {got:#010x}")]
    BadMagic {
        /// Magic expected.
        expected: u32,
        /// Magic found.
        got: u32,
    },
    /// A raw CSI frame declares zero antennas.
    #[error("raw CSI frame declares zero antennas")]
    ZeroAntennas,
    /// A raw CSI frame declares zero or more than 512 subcarriers.
    #[error("raw CSI frame declares {0} subcarriers (allowed 1..=512)")]
    BadSubcarrierCount(u16),
    /// The CRC footer does not match the bytes before it.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the packet.
        stored: u32,
        /// CRC computed over the packet.
        computed: u32,
    },
    /// A classification packet with a version other than 1.
    #[error("unsupported classification packet version {0}")]
    UnsupportedVersion(u16),
    /// A datagram holds more bytes than its one packet.
    #[error("datagram has {got} bytes, its packet is {expected}")]
    TrailingBytes {
        /// Bytes the packet takes.
        expected: usize,
        /// Bytes in the datagram.
        got: usize,
    },
    /// The I/Q payload length does not match `n_antennas × n_subcarriers`.
    #[error("I/Q payload has {got} values, header needs {expected}")]
    PayloadLength {
        /// Values (`2·n_ant·n_sub`) the header implies.
        expected: usize,
        /// Values present.
        got: usize,
    },
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}
fn f32_at(b: &[u8], o: usize) -> f32 {
    f32::from_bits(u32_at(b, o))
}

/// One raw CSI frame as a node sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCsiFrame {
    /// Node identifier.
    pub node_id: u8,
    /// Number of receive antennas (≥ 1).
    pub n_antennas: u8,
    /// Subcarriers per antenna (1..=512).
    pub n_subcarriers: u16,
    /// Channel centre frequency in MHz.
    pub freq_mhz: u32,
    /// Sequence number.
    pub seq: u32,
    /// RSSI in dBm (0 = unknown).
    pub rssi: i8,
    /// Noise floor in dBm (0 = unknown).
    pub noise_floor: i8,
    /// Interleaved `(I, Q)` pairs, antenna-major: `iq[2·(a·n_sub + k)]` is I of
    /// antenna `a`, subcarrier `k`; length `2·n_antennas·n_subcarriers`.
    pub iq: Vec<i8>,
}

impl RawCsiFrame {
    /// Encoded size of a frame with these dimensions.
    pub fn encoded_len(n_antennas: u8, n_subcarriers: u16) -> usize {
        RAW_CSI_HEADER_LEN + 2 * n_antennas as usize * n_subcarriers as usize
    }

    /// Encodes the frame; fails if the header dimensions are invalid or disagree
    /// with the payload.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        if self.n_antennas == 0 {
            return Err(WireError::ZeroAntennas);
        }
        if self.n_subcarriers == 0 || self.n_subcarriers > MAX_SUBCARRIERS {
            return Err(WireError::BadSubcarrierCount(self.n_subcarriers));
        }
        let expected = 2 * self.n_antennas as usize * self.n_subcarriers as usize;
        if self.iq.len() != expected {
            return Err(WireError::PayloadLength {
                expected,
                got: self.iq.len(),
            });
        }
        let mut out = Vec::with_capacity(RAW_CSI_HEADER_LEN + expected);
        out.extend_from_slice(&RAW_CSI_MAGIC.to_le_bytes());
        out.push(self.node_id);
        out.push(self.n_antennas);
        out.extend_from_slice(&self.n_subcarriers.to_le_bytes());
        out.extend_from_slice(&self.freq_mhz.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(self.rssi as u8);
        out.push(self.noise_floor as u8);
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend(self.iq.iter().map(|&v| v as u8));
        Ok(out)
    }

    /// Decodes one frame from the start of `bytes`; returns it and the bytes used.
    pub fn decode(bytes: &[u8]) -> Result<(Self, usize), WireError> {
        let header = decode_raw_header(bytes)?;
        let (n_ant, n_sub) = header;
        let len = Self::encoded_len(n_ant, n_sub);
        if bytes.len() < len {
            return Err(WireError::Truncated {
                needed: len,
                got: bytes.len(),
            });
        }
        let frame = RawCsiFrame {
            node_id: bytes[4],
            n_antennas: n_ant,
            n_subcarriers: n_sub,
            freq_mhz: u32_at(bytes, 8),
            seq: u32_at(bytes, 12),
            rssi: bytes[16] as i8,
            noise_floor: bytes[17] as i8,
            iq: bytes[RAW_CSI_HEADER_LEN..len]
                .iter()
                .map(|&b| b as i8)
                .collect(),
        };
        Ok((frame, len))
    }
}

/// A raw CSI frame borrowed from a datagram: the header fields and the `(I, Q)`
/// payload, no copy (the live service decodes every packet this way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCsiRef<'a> {
    /// Node identifier.
    pub node_id: u8,
    /// Number of receive antennas (≥ 1).
    pub n_antennas: u8,
    /// Subcarriers per antenna (1..=512).
    pub n_subcarriers: u16,
    /// Channel centre frequency in MHz.
    pub freq_mhz: u32,
    /// Sequence number.
    pub seq: u32,
    /// RSSI in dBm (0 = unknown).
    pub rssi: i8,
    /// Noise floor in dBm (0 = unknown).
    pub noise_floor: i8,
    /// Interleaved `(I, Q)` pairs as bytes (reinterpret each as `i8`), antenna-major.
    pub iq: &'a [u8],
}

impl<'a> RawCsiRef<'a> {
    /// Decodes a datagram that must hold exactly one frame: header checks as
    /// [`RawCsiFrame::decode`], then the length must equal `20 + 2·n_ant·n_sub`
    /// (shorter: [`WireError::Truncated`]; longer: [`WireError::TrailingBytes`]).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (n_ant, n_sub) = decode_raw_header(bytes)?;
        let len = RawCsiFrame::encoded_len(n_ant, n_sub);
        if bytes.len() < len {
            return Err(WireError::Truncated {
                needed: len,
                got: bytes.len(),
            });
        }
        if bytes.len() > len {
            return Err(WireError::TrailingBytes {
                expected: len,
                got: bytes.len(),
            });
        }
        Ok(Self {
            node_id: bytes[4],
            n_antennas: n_ant,
            n_subcarriers: n_sub,
            freq_mhz: u32_at(bytes, 8),
            seq: u32_at(bytes, 12),
            rssi: bytes[16] as i8,
            noise_floor: bytes[17] as i8,
            iq: &bytes[RAW_CSI_HEADER_LEN..len],
        })
    }

    /// The payload as `i8` values, appended to `out` (cleared first).
    pub fn iq_into(&self, out: &mut Vec<i8>) {
        out.clear();
        out.extend(self.iq.iter().map(|&b| b as i8));
    }
}

/// Validates a raw CSI header; returns `(n_antennas, n_subcarriers)`.
fn decode_raw_header(bytes: &[u8]) -> Result<(u8, u16), WireError> {
    if bytes.len() < RAW_CSI_HEADER_LEN {
        return Err(WireError::Truncated {
            needed: RAW_CSI_HEADER_LEN,
            got: bytes.len(),
        });
    }
    let magic = u32_at(bytes, 0);
    if magic != RAW_CSI_MAGIC {
        return Err(WireError::BadMagic {
            expected: RAW_CSI_MAGIC,
            got: magic,
        });
    }
    let n_ant = bytes[5];
    let n_sub = u16_at(bytes, 6);
    if n_ant == 0 {
        return Err(WireError::ZeroAntennas);
    }
    if n_sub == 0 || n_sub > MAX_SUBCARRIERS {
        return Err(WireError::BadSubcarrierCount(n_sub));
    }
    Ok((n_ant, n_sub))
}

/// What [`parse_capture`] skipped, by reason. Nothing is dropped silently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureReport {
    /// Frames decoded.
    pub frames: usize,
    /// Frames whose header was invalid (zero antennas, subcarriers 0 or > 512).
    pub bad_header: usize,
    /// Frames cut short: the next magic (or end of file) came before their end.
    pub truncated: usize,
    /// Bytes between frames that were not part of any frame (resync scans).
    pub garbage_bytes: usize,
}

impl CaptureReport {
    /// Frames skipped for any reason.
    pub fn skipped(&self) -> usize {
        self.bad_header + self.truncated
    }
}

impl fmt::Display for CaptureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} frames read, {} skipped ({} bad header, {} truncated), {} garbage bytes",
            self.frames,
            self.skipped(),
            self.bad_header,
            self.truncated,
            self.garbage_bytes
        )
    }
}

fn find_magic(bytes: &[u8], from: usize) -> Option<usize> {
    let m = RAW_CSI_MAGIC.to_le_bytes();
    if from >= bytes.len() {
        return None;
    }
    bytes[from..]
        .windows(4)
        .position(|w| w == m)
        .map(|p| p + from)
}

/// Parses a capture (raw CSI frames back to back). Never fails and never panics.
///
/// Policy: at a magic, the header is validated (bad → counted `bad_header`,
/// resync after the magic). A frame is accepted when its declared length fits
/// in the buffer and no other magic starts inside its payload; if a magic
/// starts inside (a frame cut short and followed by the next one) or the file
/// ends early, it is counted `truncated` and parsing resumes at that magic.
/// Bytes that are not part of a frame are counted in `garbage_bytes`.
pub fn parse_capture(bytes: &[u8]) -> (Vec<RawCsiFrame>, CaptureReport) {
    let mut frames = Vec::new();
    let mut rep = CaptureReport::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(start) = find_magic(bytes, pos) else {
            rep.garbage_bytes += bytes.len() - pos;
            break;
        };
        rep.garbage_bytes += start - pos;
        let rest = &bytes[start..];
        match decode_raw_header(rest) {
            Err(WireError::Truncated { .. }) => {
                rep.truncated += 1;
                break;
            }
            Err(_) => {
                rep.bad_header += 1;
                pos = start + 4;
                continue;
            }
            Ok((n_ant, n_sub)) => {
                let len = RawCsiFrame::encoded_len(n_ant, n_sub);
                let next_magic = find_magic(bytes, start + 4);
                let cut = match next_magic {
                    Some(m) if m < start + len => Some(m),
                    _ => None,
                };
                if let Some(m) = cut {
                    rep.truncated += 1;
                    pos = m;
                    continue;
                }
                if rest.len() < len {
                    rep.truncated += 1;
                    break;
                }
                match RawCsiFrame::decode(rest) {
                    Ok((f, used)) => {
                        frames.push(f);
                        rep.frames += 1;
                        pos = start + used;
                    }
                    Err(_) => {
                        rep.bad_header += 1;
                        pos = start + 4;
                    }
                }
            }
        }
    }
    (frames, rep)
}

/// Encodes frames back to back as a capture file.
pub fn encode_capture(frames: &[RawCsiFrame]) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&f.encode()?);
    }
    Ok(out)
}

fn check_crc(bytes: &[u8], body: usize) -> Result<(), WireError> {
    let stored = u32_at(bytes, body);
    let computed = crc32fast::hash(&bytes[..body]);
    if stored != computed {
        return Err(WireError::CrcMismatch { stored, computed });
    }
    Ok(())
}

fn check_head(bytes: &[u8], len: usize, magic: u32) -> Result<(), WireError> {
    if bytes.len() < len {
        return Err(WireError::Truncated {
            needed: len,
            got: bytes.len(),
        });
    }
    let got = u32_at(bytes, 0);
    if got != magic {
        return Err(WireError::BadMagic {
            expected: magic,
            got,
        });
    }
    Ok(())
}

/// Names of the nine values of a feature-state packet, in packet order: a model whose
/// feature names are exactly these takes feature-state packets as its frames.
pub const FEATURE_STATE_NAMES: [&str; 9] = [
    "motion_score",
    "presence_score",
    "respiration_bpm",
    "respiration_conf",
    "heartbeat_bpm",
    "heartbeat_conf",
    "anomaly_score",
    "env_shift_score",
    "node_coherence",
];

/// Feature-state packet (`0xC5110006`, 60 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureState {
    /// Node identifier.
    pub node_id: u8,
    /// Operating mode.
    pub mode: u8,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp in microseconds.
    pub ts_us: u64,
    /// Motion score.
    pub motion_score: f32,
    /// Presence score.
    pub presence_score: f32,
    /// Respiration rate in breaths per minute.
    pub respiration_bpm: f32,
    /// Respiration confidence.
    pub respiration_conf: f32,
    /// Heart rate in beats per minute.
    pub heartbeat_bpm: f32,
    /// Heart-rate confidence.
    pub heartbeat_conf: f32,
    /// Anomaly score.
    pub anomaly_score: f32,
    /// Environment-shift score.
    pub env_shift_score: f32,
    /// Coherence across nodes.
    pub node_coherence: f32,
    /// Quality flags.
    pub quality_flags: u16,
}

impl FeatureState {
    /// The nine values in the order of [`FEATURE_STATE_NAMES`].
    pub fn values(&self) -> [f32; 9] {
        [
            self.motion_score,
            self.presence_score,
            self.respiration_bpm,
            self.respiration_conf,
            self.heartbeat_bpm,
            self.heartbeat_conf,
            self.anomaly_score,
            self.env_shift_score,
            self.node_coherence,
        ]
    }

    /// Encodes to the 60-byte packet with its CRC.
    pub fn encode(&self) -> [u8; FEATURE_STATE_LEN] {
        let mut b = [0u8; FEATURE_STATE_LEN];
        b[0..4].copy_from_slice(&FEATURE_STATE_MAGIC.to_le_bytes());
        b[4] = self.node_id;
        b[5] = self.mode;
        b[6..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.ts_us.to_le_bytes());
        let fs = self.values();
        for (i, v) in fs.iter().enumerate() {
            b[16 + 4 * i..20 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        b[52..54].copy_from_slice(&self.quality_flags.to_le_bytes());
        let crc = crc32fast::hash(&b[..56]);
        b[56..60].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates (length, magic, CRC) a 60-byte packet.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_head(bytes, FEATURE_STATE_LEN, FEATURE_STATE_MAGIC)?;
        check_crc(bytes, 56)?;
        let f = |i: usize| f32_at(bytes, 16 + 4 * i);
        Ok(Self {
            node_id: bytes[4],
            mode: bytes[5],
            seq: u16_at(bytes, 6),
            ts_us: u64_at(bytes, 8),
            motion_score: f(0),
            presence_score: f(1),
            respiration_bpm: f(2),
            respiration_conf: f(3),
            heartbeat_bpm: f(4),
            heartbeat_conf: f(5),
            anomaly_score: f(6),
            env_shift_score: f(7),
            node_coherence: f(8),
            quality_flags: u16_at(bytes, 52),
        })
    }
}

/// Classification packet (`0xC5110007`, 40 bytes, version 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Classification {
    /// Number of classes of the model.
    pub n_classes: u16,
    /// Node identifier.
    pub node_id: u8,
    /// Timestamp in microseconds.
    pub ts_us: u64,
    /// Sequence number.
    pub seq: u32,
    /// Index of the winning class.
    pub argmax: u8,
    /// Logit of the winning class.
    pub top_logit: f32,
    /// Margin between the two best logits.
    pub top1_minus_top2: f32,
}

impl Classification {
    /// Encodes to the 40-byte packet with its CRC.
    pub fn encode(&self) -> [u8; CLASSIFICATION_LEN] {
        let mut b = [0u8; CLASSIFICATION_LEN];
        b[0..4].copy_from_slice(&CLASSIFICATION_MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&CLASSIFICATION_VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.n_classes.to_le_bytes());
        b[8] = self.node_id;
        b[12..20].copy_from_slice(&self.ts_us.to_le_bytes());
        b[20..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24] = self.argmax;
        b[28..32].copy_from_slice(&self.top_logit.to_le_bytes());
        b[32..36].copy_from_slice(&self.top1_minus_top2.to_le_bytes());
        let crc = crc32fast::hash(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and validates (length, magic, CRC, version) a 40-byte packet.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        check_head(bytes, CLASSIFICATION_LEN, CLASSIFICATION_MAGIC)?;
        check_crc(bytes, 36)?;
        let version = u16_at(bytes, 4);
        if version != CLASSIFICATION_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        Ok(Self {
            n_classes: u16_at(bytes, 6),
            node_id: bytes[8],
            ts_us: u64_at(bytes, 12),
            seq: u32_at(bytes, 20),
            argmax: bytes[24],
            top_logit: f32_at(bytes, 28),
            top1_minus_top2: f32_at(bytes, 32),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(seq: u32, n_ant: u8, n_sub: u16) -> RawCsiFrame {
        RawCsiFrame {
            node_id: 1,
            n_antennas: n_ant,
            n_subcarriers: n_sub,
            freq_mhz: 2412,
            seq,
            rssi: -40,
            noise_floor: -92,
            iq: (0..2 * n_ant as usize * n_sub as usize)
                .map(|i| (i as i32 * 7 + seq as i32) as i8)
                .collect(),
        }
    }

    #[test]
    fn raw_frame_byte_layout() {
        let f = RawCsiFrame {
            node_id: 9,
            n_antennas: 1,
            n_subcarriers: 2,
            freq_mhz: 2412,
            seq: 0x0102_0304,
            rssi: -40,
            noise_floor: -92,
            iq: vec![1, -1, 127, -128],
        };
        let b = f.encode().unwrap();
        assert_eq!(
            b,
            vec![
                0x01, 0x00, 0x11, 0xC5, 9, 1, 2, 0, 0x6C, 0x09, 0, 0, 4, 3, 2, 1, 0xD8, 0xA4, 0, 0,
                1, 0xFF, 0x7F, 0x80
            ]
        );
        assert_eq!(RawCsiFrame::decode(&b).unwrap(), (f, 24));
    }

    #[test]
    fn borrowed_view_equals_owned_decode_and_wants_exact_length() {
        let f = frame(77, 2, 5);
        let mut b = f.encode().unwrap();
        let v = RawCsiRef::parse(&b).unwrap();
        let mut iq = Vec::new();
        v.iq_into(&mut iq);
        assert_eq!(
            (v.node_id, v.n_antennas, v.n_subcarriers, v.seq, v.freq_mhz),
            (f.node_id, f.n_antennas, f.n_subcarriers, f.seq, f.freq_mhz)
        );
        assert_eq!(
            (v.rssi, v.noise_floor, iq),
            (f.rssi, f.noise_floor, f.iq.clone())
        );
        assert_eq!(
            RawCsiRef::parse(&b[..b.len() - 1]),
            Err(WireError::Truncated {
                needed: b.len(),
                got: b.len() - 1
            })
        );
        b.push(0);
        assert_eq!(
            RawCsiRef::parse(&b),
            Err(WireError::TrailingBytes {
                expected: b.len() - 1,
                got: b.len()
            })
        );
        b[5] = 0;
        assert_eq!(RawCsiRef::parse(&b), Err(WireError::ZeroAntennas));
    }

    #[test]
    fn raw_frame_errors() {
        let b = frame(0, 1, 4).encode().unwrap();
        assert!(matches!(
            RawCsiFrame::decode(&b[..10]),
            Err(WireError::Truncated {
                needed: 20,
                got: 10
            })
        ));
        assert!(matches!(
            RawCsiFrame::decode(&b[..25]),
            Err(WireError::Truncated {
                needed: 28,
                got: 25
            })
        ));
        let mut m = b.clone();
        m[0] = 0;
        assert!(matches!(
            RawCsiFrame::decode(&m),
            Err(WireError::BadMagic { .. })
        ));
        let mut z = b.clone();
        z[5] = 0;
        assert_eq!(RawCsiFrame::decode(&z), Err(WireError::ZeroAntennas));
        let mut s = b.clone();
        s[6..8].copy_from_slice(&513u16.to_le_bytes());
        assert_eq!(
            RawCsiFrame::decode(&s),
            Err(WireError::BadSubcarrierCount(513))
        );
        s[6..8].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(
            RawCsiFrame::decode(&s),
            Err(WireError::BadSubcarrierCount(0))
        );
        let mut bad = frame(0, 1, 4);
        bad.iq.pop();
        assert_eq!(
            bad.encode(),
            Err(WireError::PayloadLength {
                expected: 8,
                got: 7
            })
        );
        bad.n_antennas = 0;
        assert_eq!(bad.encode(), Err(WireError::ZeroAntennas));
    }

    #[test]
    fn capture_skips_and_counts() {
        let frames: Vec<_> = (0..5).map(|s| frame(s, 1, 8)).collect();
        let mut bytes = b"junk".to_vec();
        bytes.extend(frames[0].encode().unwrap());
        // frame 1 cut short (missing its last 5 bytes), directly followed by frame 2
        let f1 = frames[1].encode().unwrap();
        bytes.extend(&f1[..f1.len() - 5]);
        bytes.extend(frames[2].encode().unwrap());
        // a header declaring 600 subcarriers
        let mut badh = frames[3].encode().unwrap();
        badh[6..8].copy_from_slice(&600u16.to_le_bytes());
        bytes.extend(&badh[..8]);
        bytes.extend(frames[3].encode().unwrap());
        // the last frame truncated by end of file
        let f4 = frames[4].encode().unwrap();
        bytes.extend(&f4[..f4.len() - 1]);
        let (got, rep) = parse_capture(&bytes);
        assert_eq!(
            got,
            vec![frames[0].clone(), frames[2].clone(), frames[3].clone()]
        );
        assert_eq!(rep.frames, 3);
        assert_eq!(rep.truncated, 2);
        assert_eq!(rep.bad_header, 1);
        assert_eq!(rep.garbage_bytes, 4 + 4);
        assert_eq!(rep.skipped(), 3);
        assert!(rep.to_string().contains("3 frames read"));
    }

    #[test]
    fn capture_empty_and_header_only() {
        assert_eq!(parse_capture(&[]), (vec![], CaptureReport::default()));
        let b = frame(0, 1, 4).encode().unwrap();
        let (f, rep) = parse_capture(&b[..12]);
        assert!(f.is_empty());
        assert_eq!(rep.truncated, 1);
    }

    #[test]
    fn feature_state_layout_and_errors() {
        let s = FeatureState {
            node_id: 3,
            mode: 2,
            seq: 0x0A0B,
            ts_us: 0x0102_0304_0506_0708,
            motion_score: 1.0,
            presence_score: 0.5,
            respiration_bpm: 14.0,
            respiration_conf: 0.9,
            heartbeat_bpm: 70.0,
            heartbeat_conf: 0.8,
            anomaly_score: 0.1,
            env_shift_score: 0.2,
            node_coherence: 0.3,
            quality_flags: 0xBEEF,
        };
        let b = s.encode();
        assert_eq!(&b[0..4], &[0x06, 0x00, 0x11, 0xC5]);
        assert_eq!(&b[4..8], &[3, 2, 0x0B, 0x0A]);
        assert_eq!(&b[8..16], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[16..20], &1.0f32.to_le_bytes());
        assert_eq!(&b[48..52], &0.3f32.to_le_bytes());
        assert_eq!(&b[52..56], &[0xEF, 0xBE, 0, 0]);
        assert_eq!(&b[56..60], &crc32fast::hash(&b[..56]).to_le_bytes());
        assert_eq!(FeatureState::decode(&b).unwrap(), s);
        let mut c = b;
        c[20] ^= 1;
        assert!(matches!(
            FeatureState::decode(&c),
            Err(WireError::CrcMismatch { .. })
        ));
        assert!(matches!(
            FeatureState::decode(&b[..59]),
            Err(WireError::Truncated {
                needed: 60,
                got: 59
            })
        ));
        let mut m = b;
        m[3] = 0;
        assert!(matches!(
            FeatureState::decode(&m),
            Err(WireError::BadMagic { .. })
        ));
    }

    #[test]
    fn classification_layout_and_errors() {
        let c = Classification {
            n_classes: 4,
            node_id: 7,
            ts_us: 1_000_000,
            seq: 42,
            argmax: 2,
            top_logit: 3.5,
            top1_minus_top2: 1.25,
        };
        let b = c.encode();
        assert_eq!(&b[0..8], &[0x07, 0x00, 0x11, 0xC5, 1, 0, 4, 0]);
        assert_eq!(&b[8..12], &[7, 0, 0, 0]);
        assert_eq!(&b[12..20], &1_000_000u64.to_le_bytes());
        assert_eq!(&b[20..28], &[42, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&b[28..32], &3.5f32.to_le_bytes());
        assert_eq!(&b[32..36], &1.25f32.to_le_bytes());
        assert_eq!(Classification::decode(&b).unwrap(), c);
        let mut v = b;
        v[4] = 2;
        let crc = crc32fast::hash(&v[..36]);
        v[36..40].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Classification::decode(&v),
            Err(WireError::UnsupportedVersion(2))
        );
        let mut x = b;
        x[39] ^= 0x80;
        assert!(matches!(
            Classification::decode(&x),
            Err(WireError::CrcMismatch { .. })
        ));
        assert!(matches!(
            Classification::decode(&b[..39]),
            Err(WireError::Truncated { .. })
        ));
    }

    proptest! {
        #[test]
        fn raw_frame_round_trip(n_ant in 1u8..4, n_sub in 1u16..80, seq in any::<u32>(),
                                node in any::<u8>(), rssi in any::<i8>(), nf in any::<i8>(),
                                fill in any::<u64>()) {
            let mut f = frame(seq, n_ant, n_sub);
            f.node_id = node; f.rssi = rssi; f.noise_floor = nf;
            let mut r = crate::rng::SplitMix64::new(fill);
            for v in f.iq.iter_mut() { *v = r.next_u64() as i8; }
            let b = f.encode().unwrap();
            prop_assert_eq!(b.len(), RawCsiFrame::encoded_len(n_ant, n_sub));
            prop_assert_eq!(RawCsiFrame::decode(&b).unwrap(), (f, b.len()));
        }

        #[test]
        fn feature_state_round_trip(node in any::<u8>(), mode in any::<u8>(), seq in any::<u16>(),
                                    ts in any::<u64>(), vals in proptest::array::uniform9(-1e6f32..1e6),
                                    q in any::<u16>()) {
            let s = FeatureState { node_id: node, mode, seq, ts_us: ts,
                motion_score: vals[0], presence_score: vals[1], respiration_bpm: vals[2],
                respiration_conf: vals[3], heartbeat_bpm: vals[4], heartbeat_conf: vals[5],
                anomaly_score: vals[6], env_shift_score: vals[7], node_coherence: vals[8],
                quality_flags: q };
            prop_assert_eq!(FeatureState::decode(&s.encode()).unwrap(), s);
        }

        #[test]
        fn classification_round_trip(n in any::<u16>(), node in any::<u8>(), ts in any::<u64>(),
                                     seq in any::<u32>(), am in any::<u8>(),
                                     a in -1e6f32..1e6, d in 0f32..1e6) {
            let c = Classification { n_classes: n, node_id: node, ts_us: ts, seq, argmax: am,
                                     top_logit: a, top1_minus_top2: d };
            prop_assert_eq!(Classification::decode(&c.encode()).unwrap(), c);
        }

        #[test]
        fn any_bit_flip_in_packets_is_caught(i in 0usize..60, bit in 0u8..8) {
            let s = FeatureState { node_id: 1, mode: 0, seq: 1, ts_us: 2, motion_score: 0.5,
                presence_score: 0.5, respiration_bpm: 12.0, respiration_conf: 1.0,
                heartbeat_bpm: 60.0, heartbeat_conf: 1.0, anomaly_score: 0.0,
                env_shift_score: 0.0, node_coherence: 1.0, quality_flags: 0 };
            let mut b = s.encode();
            b[i] ^= 1 << bit;
            prop_assert!(FeatureState::decode(&b).is_err());
        }

        #[test]
        fn capture_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let (frames, rep) = parse_capture(&bytes);
            prop_assert_eq!(frames.len(), rep.frames);
            prop_assert!(rep.garbage_bytes <= bytes.len());
        }

        #[test]
        fn capture_recovers_frames_after_garbage(
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            tail in proptest::collection::vec(any::<u8>(), 0..40),
            n in 1usize..6, n_sub in 1u16..40,
        ) {
            // Garbage that happens to contain the magic could swallow a frame; the
            // property is about garbage without it (with it: counted, never a panic).
            let m = RAW_CSI_MAGIC.to_le_bytes();
            prop_assume!(!garbage.windows(4).any(|w| w == m));
            prop_assume!(!tail.windows(4).any(|w| w == m));
            let frames: Vec<_> = (0..n as u32).map(|s| frame(s, 1, n_sub)).collect();
            let mut bytes = garbage.clone();
            // Guard against garbage whose tail forms a magic with the frame's first bytes.
            bytes.extend([0u8; 4]);
            bytes.extend(encode_capture(&frames).unwrap());
            bytes.extend(&tail);
            let (got, rep) = parse_capture(&bytes);
            prop_assert_eq!(got, frames);
            prop_assert_eq!(rep.skipped(), 0);
            prop_assert_eq!(rep.garbage_bytes, garbage.len() + 4 + tail.len());
        }
    }
}
