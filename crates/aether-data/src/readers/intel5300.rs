//! Intel 5300 Linux 802.11n CSI Tool `.dat` logs (`log_to_file` output).
//!
//! A log is a run of records: `field_len` u16 **big-endian**, `code` u8, then
//! `field_len − 1` bytes. Code `0xBB` is a beamforming (bfee) record, decoded
//! exactly as the tool's `read_bfee.c`; every other code is skipped and counted
//! per code. The `0xBB` body is little-endian:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | `timestamp_low` u32 (µs, NIC clock, wraps at 2³²) |
//! | 4 | 2 | `bfee_count` u16 |
//! | 6 | 2 | reserved |
//! | 8 | 1 | `Nrx` u8 (1..=3) |
//! | 9 | 1 | `Ntx` u8 (1..=3) |
//! | 10 | 3 | `rssi_a`, `rssi_b`, `rssi_c` u8 |
//! | 13 | 1 | `noise` i8 (dBm) |
//! | 14 | 1 | `agc` u8 |
//! | 15 | 1 | `antenna_sel` u8 (2-bit antenna number per rx stream) |
//! | 16 | 2 | `len` u16 = `(30·(Nrx·Ntx·16 + 3) + 7) / 8` |
//! | 18 | 2 | `fake_rate_n_flags` u16 |
//! | 20 | len | bit-packed CSI |
//!
//! The CSI bits, LSB first: for each of the 30 subcarrier groups skip 3 bits,
//! then for each of the `Nrx·Ntx` pairs (tx index fastest) an int8 real and an
//! int8 imaginary part, 16 bits per pair.
//!
//! Policy (docs/readers.md): a record of length 0 (framing lost) is the only
//! fatal error. A `0xBB` record that fails a check (short header, `Nrx`/`Ntx`
//! outside 1..=3, `len` not the value `Nrx`/`Ntx` imply, `field_len` not
//! `1 + 20 + len`) is skipped and kept in [`DatLog::skipped`] with its error;
//! framing does not depend on its contents, so the records after it are read.
//! A file that ends inside a record (a logger stopped mid-write) ends the log
//! with a [`Intel5300Error::Truncated`] entry in `skipped`. CSI is kept as
//! stored: no scaling by RSSI/AGC (`get_scaled_csi.m`) and no antenna
//! permutation; [`Bfee::antenna_permutation`] gives the latter.

use std::collections::BTreeMap;

use super::{magnitude, CsiRecord, CsiShape};

/// Record code of a beamforming (bfee) record.
pub const CODE_BFEE: u8 = 0xBB;
/// Subcarrier groups per bfee record (HT20 and HT40 alike).
pub const SUBCARRIERS: usize = 30;
/// Bytes of the bfee header before the packed CSI.
pub const BFEE_HEADER_LEN: usize = 20;

/// A corrupt record (every variant names its record index and byte offset).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Intel5300Error {
    /// `field_len` is 0: there is no code byte, so the framing is lost (fatal).
    #[error("record {index} at byte {offset}: field_len 0, framing lost")]
    ZeroFieldLength {
        /// Record index (0-based, records of every code).
        index: usize,
        /// Byte offset of the record's `field_len`.
        offset: usize,
    },
    /// The file ends inside this record (its 3-byte prefix or its body).
    #[error("record {index} at byte {offset}: truncated, needs {needed} bytes, {available} left")]
    Truncated {
        /// Record index.
        index: usize,
        /// Byte offset of the record.
        offset: usize,
        /// Bytes the record needs (prefix included).
        needed: usize,
        /// Bytes left in the file from `offset`.
        available: usize,
    },
    /// A `0xBB` body shorter than the 20-byte bfee header.
    #[error(
        "record {index} at byte {offset}: bfee body of {body} bytes, the header alone needs 20"
    )]
    ShortBfee {
        /// Record index.
        index: usize,
        /// Byte offset.
        offset: usize,
        /// Body bytes (`field_len − 1`).
        body: usize,
    },
    /// `Nrx` or `Ntx` outside 1..=3.
    #[error("record {index} at byte {offset}: Nrx {n_rx}, Ntx {n_tx} (each must be 1..=3)")]
    BadAntennaCount {
        /// Record index.
        index: usize,
        /// Byte offset.
        offset: usize,
        /// `Nrx` read.
        n_rx: u8,
        /// `Ntx` read.
        n_tx: u8,
    },
    /// `len` differs from `(30·(Nrx·Ntx·16 + 3) + 7) / 8`.
    #[error("record {index} at byte {offset}: len {len}, {n_rx}x{n_tx} needs {expected}")]
    BadCsiLength {
        /// Record index.
        index: usize,
        /// Byte offset.
        offset: usize,
        /// `Nrx`.
        n_rx: u8,
        /// `Ntx`.
        n_tx: u8,
        /// `len` read.
        len: usize,
        /// `len` the shape implies.
        expected: usize,
    },
    /// The body is not exactly the bfee header plus `len` CSI bytes.
    #[error(
        "record {index} at byte {offset}: bfee body of {body} bytes, header + len = {expected}"
    )]
    BodyLengthMismatch {
        /// Record index.
        index: usize,
        /// Byte offset.
        offset: usize,
        /// Body bytes (`field_len − 1`).
        body: usize,
        /// `20 + len`.
        expected: usize,
    },
}

/// One beamforming record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bfee {
    /// Record index in the file (0-based, records of every code).
    pub index: usize,
    /// Byte offset of the record's `field_len`.
    pub offset: usize,
    /// Low 32 bits of the NIC's 1 MHz clock (wraps; see [`super::unwrap_u32_us`]).
    pub timestamp_low: u32,
    /// Beamforming measurement counter of the driver.
    pub bfee_count: u16,
    /// Receive chains `Nrx` (1..=3).
    pub n_rx: u8,
    /// Transmit streams `Ntx` (1..=3).
    pub n_tx: u8,
    /// RSSI of antenna A (dB above the noise floor as the NIC reports; 0 = unused).
    pub rssi_a: u8,
    /// RSSI of antenna B.
    pub rssi_b: u8,
    /// RSSI of antenna C.
    pub rssi_c: u8,
    /// Noise floor in dBm (signed).
    pub noise: i8,
    /// Automatic gain control setting (dB).
    pub agc: u8,
    /// Antenna selection: rx stream `k` came from antenna `(antenna_sel >> 2k) & 3`.
    pub antenna_sel: u8,
    /// The rate and flags of the measured packet (bit 0x800: HT40).
    pub fake_rate_n_flags: u16,
    /// `(real, imag)` per value in file order: subcarrier, then rx, then tx
    /// (tx fastest); `30 · Nrx · Ntx` pairs.
    pub csi: Vec<[i8; 2]>,
}

impl Bfee {
    /// The `(real, imag)` pair of rx stream `rx`, tx stream `tx`, subcarrier `sc`.
    pub fn csi_at(&self, rx: usize, tx: usize, sc: usize) -> Option<[i8; 2]> {
        let (nr, nt) = (usize::from(self.n_rx), usize::from(self.n_tx));
        if rx >= nr || tx >= nt || sc >= SUBCARRIERS {
            return None;
        }
        self.csi.get((sc * nr + rx) * nt + tx).copied()
    }

    /// Amplitudes of transmit stream `tx` only, rx-major (`Nrx × 30`), appended
    /// to `out`; nothing when `tx ≥ Ntx`.
    pub fn push_tx_amplitudes(&self, tx: usize, out: &mut Vec<f32>) {
        if tx >= usize::from(self.n_tx) {
            return;
        }
        for rx in 0..usize::from(self.n_rx) {
            for sc in 0..SUBCARRIERS {
                let [re, im] = self.csi_at(rx, tx, sc).unwrap_or([0, 0]);
                out.push(magnitude(f32::from(re), f32::from(im)));
            }
        }
    }

    /// The physical antenna (0 = A, 1 = B, 2 = C) of each of the first `Nrx` rx
    /// streams, from `antenna_sel` (read_bf_file.m's `perm`, 0-based).
    pub fn antenna_permutation(&self) -> Vec<u8> {
        (0..self.n_rx.min(3))
            .map(|k| (self.antenna_sel >> (2 * k)) & 3)
            .collect()
    }

    /// Total received power in dBm as `get_total_rss.m` computes it: the sum of
    /// the non-zero `rssi_*` in linear power, in dB, minus 44 and `agc`.
    pub fn total_rss_dbm(&self) -> f64 {
        let p: f64 = [self.rssi_a, self.rssi_b, self.rssi_c]
            .iter()
            .filter(|&&r| r != 0)
            .map(|&r| 10f64.powf(f64::from(r) / 10.0))
            .sum();
        10.0 * p.log10() - 44.0 - f64::from(self.agc)
    }

    /// Side features of the record: `rssi_a`, `rssi_b`, `rssi_c`, `noise`, `agc`.
    pub fn side_features(&self) -> [f32; 5] {
        [
            f32::from(self.rssi_a),
            f32::from(self.rssi_b),
            f32::from(self.rssi_c),
            f32::from(self.noise),
            f32::from(self.agc),
        ]
    }
}

impl CsiRecord for Bfee {
    fn shape(&self) -> CsiShape {
        CsiShape {
            n_rx: usize::from(self.n_rx),
            n_tx: usize::from(self.n_tx),
            n_sub: SUBCARRIERS,
        }
    }

    fn push_amplitudes(&self, out: &mut Vec<f32>) {
        for rx in 0..usize::from(self.n_rx) {
            for tx in 0..usize::from(self.n_tx) {
                for sc in 0..SUBCARRIERS {
                    let [re, im] = self.csi_at(rx, tx, sc).unwrap_or([0, 0]);
                    out.push(magnitude(f32::from(re), f32::from(im)));
                }
            }
        }
    }
}

/// A decoded `.dat` log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatLog {
    /// The beamforming records that passed every check, in file order.
    pub records: Vec<Bfee>,
    /// Records of other codes, counted per code.
    pub other_codes: BTreeMap<u8, usize>,
    /// Records skipped, each with its error (a truncated tail is the last entry).
    pub skipped: Vec<Intel5300Error>,
    /// Records framed in the file, of every code, including skipped ones.
    pub records_seen: usize,
}

impl DatLog {
    /// Records of other codes, all codes together.
    pub fn other_code_count(&self) -> usize {
        self.other_codes.values().sum()
    }

    /// The first skipped record's error, for callers that accept only clean logs.
    pub fn first_error(&self) -> Option<&Intel5300Error> {
        self.skipped.first()
    }
}

/// Encodes `b` as one `.dat` record (length prefix, code 0xBB, header, packed CSI with
/// zero skip and pad bits): the inverse of [`decode_bfee`], for writing test logs.
/// `b.csi` must hold `30 · n_rx · n_tx` pairs (missing pairs are written as zero).
pub fn encode_bfee(b: &Bfee) -> Vec<u8> {
    let len = csi_len(b.n_rx, b.n_tx);
    let mut payload = vec![0u8; len];
    let pairs = usize::from(b.n_rx) * usize::from(b.n_tx);
    let mut at = 0;
    let mut put = |at: usize, v: u8| {
        for i in 0..8 {
            if (v >> i) & 1 == 1 {
                if let Some(byte) = payload.get_mut((at + i) / 8) {
                    *byte |= 1 << ((at + i) % 8);
                }
            }
        }
    };
    for sc in 0..SUBCARRIERS {
        at += 3;
        for p in 0..pairs {
            let [re, im] = b.csi.get(sc * pairs + p).copied().unwrap_or([0, 0]);
            put(at, re as u8);
            put(at + 8, im as u8);
            at += 16;
        }
    }
    let mut body = Vec::with_capacity(20 + len);
    body.extend_from_slice(&b.timestamp_low.to_le_bytes());
    body.extend_from_slice(&b.bfee_count.to_le_bytes());
    body.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&[b.n_rx, b.n_tx, b.rssi_a, b.rssi_b, b.rssi_c]);
    body.extend_from_slice(&[b.noise as u8, b.agc, b.antenna_sel]);
    body.extend_from_slice(&(len as u16).to_le_bytes());
    body.extend_from_slice(&b.fake_rate_n_flags.to_le_bytes());
    body.extend_from_slice(&payload);
    let mut rec = ((body.len() + 1) as u16).to_be_bytes().to_vec();
    rec.push(CODE_BFEE);
    rec.extend_from_slice(&body);
    rec
}

/// `len` of the packed CSI of an `n_rx × n_tx` record: `(30·(n_rx·n_tx·16 + 3) + 7) / 8`.
pub fn csi_len(n_rx: u8, n_tx: u8) -> usize {
    (SUBCARRIERS * (usize::from(n_rx) * usize::from(n_tx) * 16 + 3)).div_ceil(8)
}

/// Decodes the body of a `0xBB` record (the `field_len − 1` bytes after the
/// code); `index` and `offset` only label errors and the record.
pub fn decode_bfee(body: &[u8], index: usize, offset: usize) -> Result<Bfee, Intel5300Error> {
    let Some(h) = body.first_chunk::<BFEE_HEADER_LEN>() else {
        return Err(Intel5300Error::ShortBfee {
            index,
            offset,
            body: body.len(),
        });
    };
    let (n_rx, n_tx) = (h[8], h[9]);
    if !(1..=3).contains(&n_rx) || !(1..=3).contains(&n_tx) {
        return Err(Intel5300Error::BadAntennaCount {
            index,
            offset,
            n_rx,
            n_tx,
        });
    }
    let len = usize::from(u16::from_le_bytes([h[16], h[17]]));
    let expected = csi_len(n_rx, n_tx);
    if len != expected {
        return Err(Intel5300Error::BadCsiLength {
            index,
            offset,
            n_rx,
            n_tx,
            len,
            expected,
        });
    }
    if body.len() != BFEE_HEADER_LEN + len {
        return Err(Intel5300Error::BodyLengthMismatch {
            index,
            offset,
            body: body.len(),
            expected: BFEE_HEADER_LEN + len,
        });
    }
    let payload = &body[BFEE_HEADER_LEN..];
    let pairs = usize::from(n_rx) * usize::from(n_tx);
    let mut csi = Vec::with_capacity(SUBCARRIERS * pairs);
    // read_bfee.c: a byte past the payload reads as 0 (never needed: the last
    // pair of a record starts 2 bits into a byte, so len covers it)
    let byte = |i: usize| u16::from(payload.get(i).copied().unwrap_or(0));
    let mut bit = 0usize;
    for _ in 0..SUBCARRIERS {
        bit += 3;
        let rem = bit % 8;
        for _ in 0..pairs {
            let b = bit / 8;
            let re = ((byte(b) | (byte(b + 1) << 8)) >> rem) as u8 as i8;
            let im = ((byte(b + 1) | (byte(b + 2) << 8)) >> rem) as u8 as i8;
            csi.push([re, im]);
            bit += 16;
        }
    }
    Ok(Bfee {
        index,
        offset,
        timestamp_low: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
        bfee_count: u16::from_le_bytes([h[4], h[5]]),
        n_rx,
        n_tx,
        rssi_a: h[10],
        rssi_b: h[11],
        rssi_c: h[12],
        noise: h[13] as i8,
        agc: h[14],
        antenna_sel: h[15],
        fake_rate_n_flags: u16::from_le_bytes([h[18], h[19]]),
        csi,
    })
}

/// Parses a whole `.dat` log (policy in the module docs). The only error is
/// [`Intel5300Error::ZeroFieldLength`]; everything else is skipped and listed.
pub fn parse_dat(bytes: &[u8]) -> Result<DatLog, Intel5300Error> {
    let mut log = DatLog::default();
    let mut pos = 0usize;
    let mut index = 0usize;
    while pos < bytes.len() {
        let available = bytes.len() - pos;
        let Some(&[hi, lo, code]) = bytes[pos..].first_chunk::<3>() else {
            log.records_seen += 1;
            log.skipped.push(Intel5300Error::Truncated {
                index,
                offset: pos,
                needed: 3,
                available,
            });
            break;
        };
        let field_len = usize::from(u16::from_be_bytes([hi, lo]));
        if field_len == 0 {
            return Err(Intel5300Error::ZeroFieldLength { index, offset: pos });
        }
        log.records_seen += 1;
        let needed = 2 + field_len;
        let Some(record) = bytes[pos..].get(..needed) else {
            log.skipped.push(Intel5300Error::Truncated {
                index,
                offset: pos,
                needed,
                available,
            });
            break;
        };
        if code == CODE_BFEE {
            match decode_bfee(&record[3..], index, pos) {
                Ok(b) => log.records.push(b),
                Err(e) => log.skipped.push(e),
            }
        } else {
            *log.other_codes.entry(code).or_insert(0) += 1;
        }
        pos += needed;
        index += 1;
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::{amplitude_matrix, CsiRecord};
    use crate::rng::SplitMix64;
    use proptest::prelude::*;

    /// Writes `value`'s low `n` bits at bit `at`, LSB first, one bit at a time
    /// (independent of the decoder's shift-and-or).
    fn put_bits(buf: &mut [u8], at: usize, value: u8, n: usize) {
        for i in 0..n {
            let (byte, bit) = ((at + i) / 8, (at + i) % 8);
            if (value >> i) & 1 == 1 {
                buf[byte] |= 1 << bit;
            } else {
                buf[byte] &= !(1 << bit);
            }
        }
    }

    /// Encodes `b` as one complete record (prefix, code, header, packed CSI); the
    /// 3 skipped bits per subcarrier and the pad bits are filled from `junk`.
    fn encode(b: &Bfee, junk: u64) -> Vec<u8> {
        let len = csi_len(b.n_rx, b.n_tx);
        let mut rng = SplitMix64::new(junk);
        let mut payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let pairs = usize::from(b.n_rx) * usize::from(b.n_tx);
        let mut at = 0;
        for sc in 0..SUBCARRIERS {
            at += 3;
            for p in 0..pairs {
                let [re, im] = b.csi[sc * pairs + p];
                put_bits(&mut payload, at, re as u8, 8);
                put_bits(&mut payload, at + 8, im as u8, 8);
                at += 16;
            }
        }
        let mut body = Vec::new();
        body.extend_from_slice(&b.timestamp_low.to_le_bytes());
        body.extend_from_slice(&b.bfee_count.to_le_bytes());
        body.extend_from_slice(&[0xAB, 0xCD]);
        body.extend_from_slice(&[b.n_rx, b.n_tx, b.rssi_a, b.rssi_b, b.rssi_c]);
        body.extend_from_slice(&[b.noise as u8, b.agc, b.antenna_sel]);
        body.extend_from_slice(&(len as u16).to_le_bytes());
        body.extend_from_slice(&b.fake_rate_n_flags.to_le_bytes());
        body.extend_from_slice(&payload);
        let mut rec = ((body.len() + 1) as u16).to_be_bytes().to_vec();
        rec.push(CODE_BFEE);
        rec.extend_from_slice(&body);
        rec
    }

    fn bfee(n_rx: u8, n_tx: u8, seed: u64) -> Bfee {
        let mut r = SplitMix64::new(seed);
        Bfee {
            index: 0,
            offset: 0,
            timestamp_low: r.next_u64() as u32,
            bfee_count: r.next_u64() as u16,
            n_rx,
            n_tx,
            rssi_a: 30,
            rssi_b: 25,
            rssi_c: 0,
            noise: -92,
            agc: 40,
            antenna_sel: 0b00_10_01,
            fake_rate_n_flags: 0x109,
            csi: (0..SUBCARRIERS * usize::from(n_rx) * usize::from(n_tx))
                .map(|_| [r.next_u64() as i8, r.next_u64() as i8])
                .collect(),
        }
    }

    fn with_pos(mut b: Bfee, index: usize, offset: usize) -> Bfee {
        b.index = index;
        b.offset = offset;
        b
    }

    #[test]
    fn public_encoder_round_trips() {
        for (nr, nt) in [(1, 1), (2, 2), (3, 2), (2, 1)] {
            let b = bfee(nr, nt, 40 + u64::from(nr * nt));
            let bytes = encode_bfee(&b);
            let log = parse_dat(&bytes).unwrap();
            assert_eq!(log.records, vec![with_pos(b, 0, 0)]);
        }
    }

    #[test]
    fn csi_len_matches_the_tool() {
        assert_eq!(csi_len(2, 2), 252);
        assert_eq!(csi_len(1, 1), 72);
        assert_eq!(csi_len(3, 3), 552);
        // a 2×2 record is 275 bytes in all
        assert_eq!(encode(&bfee(2, 2, 1), 0).len(), 275);
    }

    /// A 1×1 record written out by hand: every subcarrier's real part is its
    /// index, the imaginary part minus the index; skip bits set to 1.
    #[test]
    fn hand_computed_1x1_record() {
        let mut payload = [0u8; 72];
        // subcarrier k occupies bits 19k .. 19k+19: 3 skip bits, re, im.
        let mut bits = Vec::new();
        for k in 0..30i32 {
            bits.extend([1, 1, 1]);
            for v in [k as i8 as u8, (-k) as i8 as u8] {
                bits.extend((0..8).map(|i| (v >> i) & 1));
            }
        }
        for (i, b) in bits.iter().enumerate() {
            payload[i / 8] |= b << (i % 8);
        }
        // first bytes by hand: bits 0-2 skip (111), re0 = 0 (bits 3-10), im0 = 0
        // (11-18), skip 19-21 (111), re1 = 1 at bit 22 → byte 2 = 0b0111_1000 | …
        assert_eq!(payload[0], 0b0000_0111);
        assert_eq!(payload[2], 0b0111_1000);
        let mut rec = vec![0x00, 0x5D, 0xBB]; // field_len 93 = 1 + 20 + 72
        rec.extend([0x78, 0x56, 0x34, 0x12]); // timestamp_low 0x12345678
        rec.extend([0x07, 0x00, 0x00, 0x00]); // bfee_count 7, reserved
        rec.extend([1, 1, 33, 0, 0, 0xA4, 0x2C, 0b11_10_00]); // Nrx Ntx rssi noise -92 agc 44 sel
        rec.extend([72, 0, 0x09, 0x01]); // len 72, rate 0x109
        rec.extend(payload);
        let log = parse_dat(&rec).unwrap();
        assert_eq!(log.skipped, vec![]);
        let b = &log.records[0];
        assert_eq!(b.timestamp_low, 0x1234_5678);
        assert_eq!(b.bfee_count, 7);
        assert_eq!(
            (b.n_rx, b.n_tx, b.rssi_a, b.noise, b.agc),
            (1, 1, 33, -92, 44)
        );
        assert_eq!(b.fake_rate_n_flags, 0x109);
        assert_eq!(b.antenna_permutation(), vec![0]);
        for k in 0..30 {
            assert_eq!(b.csi_at(0, 0, k), Some([k as i8, -(k as i8)]));
        }
        let mut amps = Vec::new();
        b.push_amplitudes(&mut amps);
        assert_eq!(amps[3], (18.0f32).sqrt());
        assert!((b.total_rss_dbm() - (33.0 - 44.0 - 44.0)).abs() < 1e-12);
    }

    #[test]
    fn amplitude_order_is_rx_tx_subcarrier() {
        let b = bfee(2, 3, 9);
        let mut a = Vec::new();
        b.push_amplitudes(&mut a);
        assert_eq!(a.len(), 180);
        for rx in 0..2 {
            for tx in 0..3 {
                for sc in 0..30 {
                    let [re, im] = b.csi[(sc * 2 + rx) * 3 + tx];
                    let want = (f32::from(re).powi(2) + f32::from(im).powi(2)).sqrt();
                    assert_eq!(a[(rx * 3 + tx) * 30 + sc], want);
                }
            }
        }
        let mut t1 = Vec::new();
        b.push_tx_amplitudes(1, &mut t1);
        assert_eq!(t1.len(), 60);
        assert_eq!(t1[30..], a[(3 + 1) * 30..(3 + 1) * 30 + 30]);
        b.push_tx_amplitudes(3, &mut t1);
        assert_eq!(t1.len(), 60);
    }

    #[test]
    fn other_codes_are_counted_and_mixed_shapes_selected() {
        let mut file = encode(&bfee(2, 2, 1), 5);
        file.extend([0x00, 0x04, 0xC1, 1, 2, 3]); // code 0xC1, 3 bytes
        let at = file.len();
        file.extend(encode(&bfee(2, 1, 2), 6));
        let at2 = file.len();
        file.extend(encode(&bfee(2, 2, 3), 7));
        let log = parse_dat(&file).unwrap();
        assert_eq!(log.records_seen, 4);
        assert_eq!(log.other_codes.get(&0xC1), Some(&1));
        assert_eq!(log.records.len(), 3);
        assert_eq!(log.records[1], with_pos(bfee(2, 1, 2), 2, at));
        assert_eq!(log.records[2], with_pos(bfee(2, 2, 3), 3, at2));
        let m = amplitude_matrix(&log.records).unwrap();
        assert_eq!((m.frames(), m.width(), m.other_shape), (2, 120, 1));
        assert_eq!(m.kept, vec![0, 2]);
    }

    #[test]
    fn zero_field_length_is_fatal() {
        let mut file = encode(&bfee(1, 1, 1), 0);
        let at = file.len();
        file.extend([0, 0, 0xBB]);
        assert_eq!(
            parse_dat(&file),
            Err(Intel5300Error::ZeroFieldLength {
                index: 1,
                offset: at
            })
        );
    }

    #[test]
    fn truncated_tail_is_skipped() {
        let good = encode(&bfee(2, 2, 1), 0);
        let mut file = good.clone();
        file.extend_from_slice(&good[..100]);
        let log = parse_dat(&file).unwrap();
        assert_eq!(log.records.len(), 1);
        assert_eq!(
            log.skipped,
            vec![Intel5300Error::Truncated {
                index: 1,
                offset: 275,
                needed: 275,
                available: 100
            }]
        );
        // cut inside the 3-byte prefix
        let log = parse_dat(&[0x01]).unwrap();
        assert_eq!(
            log.skipped,
            vec![Intel5300Error::Truncated {
                index: 0,
                offset: 0,
                needed: 3,
                available: 1
            }]
        );
        assert_eq!(log.records_seen, 1);
    }

    /// Re-frames `body` (a 0xBB body) as a record followed by a good record.
    fn bad_then_good(body: &[u8]) -> DatLog {
        let mut file = ((body.len() + 1) as u16).to_be_bytes().to_vec();
        file.push(CODE_BFEE);
        file.extend_from_slice(body);
        file.extend(encode(&bfee(1, 1, 4), 0));
        let log = parse_dat(&file).unwrap();
        assert_eq!(log.records.len(), 1, "the record after a bad one is read");
        log
    }

    #[test]
    fn short_bfee_is_skipped() {
        let log = bad_then_good(&[0; 19]);
        assert_eq!(
            log.skipped,
            vec![Intel5300Error::ShortBfee {
                index: 0,
                offset: 0,
                body: 19
            }]
        );
    }

    #[test]
    fn bad_antenna_counts_are_skipped() {
        for (nr, nt) in [(0, 1), (4, 1), (1, 0), (2, 4)] {
            let mut body = encode(&bfee(1, 1, 1), 0)[3..].to_vec();
            body[8] = nr;
            body[9] = nt;
            let log = bad_then_good(&body);
            assert_eq!(
                log.skipped,
                vec![Intel5300Error::BadAntennaCount {
                    index: 0,
                    offset: 0,
                    n_rx: nr,
                    n_tx: nt
                }]
            );
        }
    }

    #[test]
    fn len_that_disagrees_with_the_shape_is_skipped() {
        let mut body = encode(&bfee(2, 2, 1), 0)[3..].to_vec();
        body[9] = 1; // now claims 2×1, which needs len 132, not 252
        let log = bad_then_good(&body);
        assert_eq!(
            log.skipped,
            vec![Intel5300Error::BadCsiLength {
                index: 0,
                offset: 0,
                n_rx: 2,
                n_tx: 1,
                len: 252,
                expected: 132
            }]
        );
    }

    #[test]
    fn body_longer_or_shorter_than_len_is_skipped() {
        for extra in [-1i32, 1] {
            let mut body = encode(&bfee(1, 1, 1), 0)[3..].to_vec();
            if extra < 0 {
                body.pop();
            } else {
                body.push(0);
            }
            let n = body.len();
            let log = bad_then_good(&body);
            assert_eq!(
                log.skipped,
                vec![Intel5300Error::BodyLengthMismatch {
                    index: 0,
                    offset: 0,
                    body: n,
                    expected: 92
                }]
            );
        }
    }

    #[test]
    fn empty_file_is_an_empty_log() {
        assert_eq!(parse_dat(&[]), Ok(DatLog::default()));
    }

    proptest! {
        #[test]
        fn round_trip(shapes in proptest::collection::vec((1u8..=3, 1u8..=3, any::<u64>()), 0..6),
                      junk in any::<u64>(), other in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut file = Vec::new();
            let mut want = Vec::new();
            let mut index = 0;
            for (i, &(nr, nt, seed)) in shapes.iter().enumerate() {
                let b = bfee(nr, nt, seed);
                want.push(with_pos(b.clone(), index, file.len()));
                file.extend(encode(&b, junk ^ i as u64));
                index += 1;
                if i % 2 == 0 {
                    // a record of another code between bfees
                    file.extend(((other.len() + 1) as u16).to_be_bytes());
                    file.push(0xC1);
                    file.extend(&other);
                    index += 1;
                }
            }
            let log = parse_dat(&file).unwrap();
            prop_assert_eq!(&log.records, &want);
            prop_assert!(log.skipped.is_empty());
            prop_assert_eq!(log.records_seen, index);
            prop_assert_eq!(log.other_code_count(), shapes.len().div_ceil(2));
        }

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(log) = parse_dat(&bytes) {
                for b in &log.records {
                    prop_assert_eq!(b.csi.len(), 30 * usize::from(b.n_rx) * usize::from(b.n_tx));
                }
            }
        }
    }
}
