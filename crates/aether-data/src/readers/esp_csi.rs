//! Espressif `esp-csi` serial console logs (`CSI_DATA,…` lines).
//!
//! The `csi_recv` examples of espressif/esp-csi print one line per packet:
//! `CSI_DATA,` then the metadata fields, then the CSI buffer as a quoted JSON
//! array `"[v0,v1,…]"` of `len` signed integers. Two layouts exist, told apart
//! by the number of metadata fields:
//!
//! * [`Layout::Classic`] (ESP32, -S2, -S3, -C3; 23 fields): `id, mac, rssi, rate,
//!   sig_mode, mcs, bandwidth, smoothing, not_sounding, aggregation, stbc,
//!   fec_coding, sgi, noise_floor, ampdu_cnt, channel, secondary_channel,
//!   local_timestamp, ant, sig_len, rx_state, len, first_word`;
//! * [`Layout::C5C6`] (ESP32-C5, -C6; 13 fields): `seq, mac, rssi, rate,
//!   noise_floor, fft_gain, agc_gain, channel, local_timestamp, sig_len,
//!   rx_state, len, first_word`.
//!
//! The buffer holds one pair per subcarrier, **imaginary part first** (ESP-IDF's
//! `wifi_csi_info_t` layout: byte `2k` is Im, byte `2k + 1` is Re of subcarrier
//! `k`), in the order the chip reports (LLTF, then HT-LTF, … depending on
//! packet type and chip). Values are kept as `i16` (int8 normally, 12-bit
//! with the `CSI_FORCE_LLTF` build option). The amplitude of pair `k` is
//! `sqrt(v[2k]² + v[2k+1]²)`, the same whichever part is called real.
//!
//! Policy (docs/readers.md): nothing is fatal. A line is split at `\n` (a
//! trailing `\r` is dropped); `CSI_DATA,` may follow a prefix (a monitor's
//! timestamp) and is read from there. Lines without `CSI_DATA,` (boot log, the
//! header row, other logs) are counted in [`EspCsiLog::other_lines`]. A
//! `CSI_DATA` line that fails a check is skipped and kept in
//! [`EspCsiLog::skipped`] with its error: serial logs lose bytes, and one bad
//! line should not cost a recording.

use super::{magnitude, CsiRecord, CsiShape};

/// The line prefix of a CSI record.
pub const PREFIX: &str = "CSI_DATA,";
/// Longest line considered (longer lines are refused as [`EspCsiError::TooLong`]).
pub const MAX_LINE: usize = 64 * 1024;

/// Metadata fields of the classic layout, after `CSI_DATA`.
pub const CLASSIC_FIELDS: [&str; 23] = [
    "id",
    "mac",
    "rssi",
    "rate",
    "sig_mode",
    "mcs",
    "bandwidth",
    "smoothing",
    "not_sounding",
    "aggregation",
    "stbc",
    "fec_coding",
    "sgi",
    "noise_floor",
    "ampdu_cnt",
    "channel",
    "secondary_channel",
    "local_timestamp",
    "ant",
    "sig_len",
    "rx_state",
    "len",
    "first_word",
];

/// Metadata fields of the ESP32-C5/C6 layout, after `CSI_DATA`.
pub const C5C6_FIELDS: [&str; 13] = [
    "seq",
    "mac",
    "rssi",
    "rate",
    "noise_floor",
    "fft_gain",
    "agc_gain",
    "channel",
    "local_timestamp",
    "sig_len",
    "rx_state",
    "len",
    "first_word",
];

/// Which metadata layout a line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// ESP32, -S2, -S3, -C3: [`CLASSIC_FIELDS`].
    Classic,
    /// ESP32-C5, -C6: [`C5C6_FIELDS`].
    C5C6,
}

impl Layout {
    /// The field names, in order (the MAC address is the second).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Layout::Classic => &CLASSIC_FIELDS,
            Layout::C5C6 => &C5C6_FIELDS,
        }
    }
}

/// A malformed `CSI_DATA` line (every variant names its 1-based line number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EspCsiError {
    /// The line is longer than [`MAX_LINE`] bytes.
    #[error("line {line}: {len} bytes, longer than the {MAX_LINE}-byte limit")]
    TooLong {
        /// Line number.
        line: usize,
        /// Its length.
        len: usize,
    },
    /// The line is not valid UTF-8.
    #[error("line {line}: not UTF-8")]
    NotUtf8 {
        /// Line number.
        line: usize,
    },
    /// No `[` opens the CSI array.
    #[error("line {line}: no CSI array `[…]`")]
    MissingArray {
        /// Line number.
        line: usize,
    },
    /// The array is not closed by `]` (a line cut short).
    #[error("line {line}: CSI array not closed")]
    UnclosedArray {
        /// Line number.
        line: usize,
    },
    /// Text other than a closing quote after the array (two lines run together).
    #[error("line {line}: unexpected text after the CSI array")]
    TrailingText {
        /// Line number.
        line: usize,
    },
    /// A metadata field count that is neither layout's.
    #[error("line {line}: {got} metadata fields, expected 23 (classic) or 13 (C5/C6)")]
    FieldCount {
        /// Line number.
        line: usize,
        /// Fields found.
        got: usize,
    },
    /// A metadata field that is not an integer.
    #[error("line {line}: field `{field}` = {text:?} is not an integer")]
    BadField {
        /// Line number.
        line: usize,
        /// Field name.
        field: &'static str,
        /// Its text.
        text: String,
    },
    /// A MAC address that is not six `:`-separated hex bytes.
    #[error("line {line}: bad MAC address {text:?}")]
    BadMac {
        /// Line number.
        line: usize,
        /// Its text.
        text: String,
    },
    /// An array element that is not an integer in the i16 range.
    #[error("line {line}: CSI value {position} = {text:?} is not an i16")]
    BadValue {
        /// Line number.
        line: usize,
        /// 0-based position in the array.
        position: usize,
        /// Its text.
        text: String,
    },
    /// An empty array or one with an odd number of values.
    #[error("line {line}: {count} CSI values, need a positive even number")]
    BadValueCount {
        /// Line number.
        line: usize,
        /// Values found.
        count: usize,
    },
    /// The `len` field disagrees with the array.
    #[error("line {line}: len field {len}, array holds {count} values")]
    LenMismatch {
        /// Line number.
        line: usize,
        /// The `len` field.
        len: i64,
        /// Values in the array.
        count: usize,
    },
}

/// One `CSI_DATA` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspCsiRecord {
    /// 1-based line number in the log.
    pub line: usize,
    /// The metadata layout.
    pub layout: Layout,
    /// Sender MAC address.
    pub mac: [u8; 6],
    /// The integer metadata fields in the layout's order without `mac`
    /// (`layout.fields()` minus its second entry); see [`EspCsiRecord::field`].
    pub fields: Vec<i64>,
    /// The CSI buffer as printed: `(Im, Re)` pairs, one per subcarrier.
    pub values: Vec<i16>,
}

impl EspCsiRecord {
    /// The integer field `name` of the record's layout (`None` for `mac` or a
    /// name the layout lacks).
    pub fn field(&self, name: &str) -> Option<i64> {
        let i = self
            .layout
            .fields()
            .iter()
            .filter(|&&f| f != "mac")
            .position(|&f| f == name)?;
        self.fields.get(i).copied()
    }

    /// RSSI in dBm.
    pub fn rssi(&self) -> Option<i64> {
        self.field("rssi")
    }

    /// Noise floor (dBm, as the chip reports it).
    pub fn noise_floor(&self) -> Option<i64> {
        self.field("noise_floor")
    }

    /// The receiver's local time in µs (32-bit, wraps; see [`super::unwrap_u32_us`]).
    pub fn local_timestamp(&self) -> Option<i64> {
        self.field("local_timestamp")
    }

    /// Subcarriers in the buffer (`values.len() / 2`).
    pub fn subcarriers(&self) -> usize {
        self.values.len() / 2
    }

    /// `(re, im)` of subcarrier `k`.
    pub fn iq(&self, k: usize) -> Option<(i16, i16)> {
        let im = *self.values.get(2 * k)?;
        let re = *self.values.get(2 * k + 1)?;
        Some((re, im))
    }
}

impl CsiRecord for EspCsiRecord {
    fn shape(&self) -> CsiShape {
        CsiShape {
            n_rx: 1,
            n_tx: 1,
            n_sub: self.subcarriers(),
        }
    }

    fn push_amplitudes(&self, out: &mut Vec<f32>) {
        out.extend(
            self.values
                .chunks_exact(2)
                .map(|p| magnitude(f32::from(p[0]), f32::from(p[1]))),
        );
    }
}

/// A decoded serial log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EspCsiLog {
    /// Records of the lines that passed every check, in order.
    pub records: Vec<EspCsiRecord>,
    /// Lines without `CSI_DATA,` (blank lines included).
    pub other_lines: usize,
    /// Malformed `CSI_DATA` lines, each with its error.
    pub skipped: Vec<EspCsiError>,
}

fn parse_int(line: usize, field: &'static str, text: &str) -> Result<i64, EspCsiError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| EspCsiError::BadField {
            line,
            field,
            text: text.chars().take(32).collect(),
        })
}

fn parse_mac(line: usize, text: &str) -> Result<[u8; 6], EspCsiError> {
    let bad = || EspCsiError::BadMac {
        line,
        text: text.chars().take(32).collect(),
    };
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for m in mac.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.is_empty() || p.len() > 2 {
            return Err(bad());
        }
        *m = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}

/// Parses the text of one line from its `CSI_DATA,` on (`line` labels errors).
pub fn parse_line(text: &str, line: usize) -> Result<EspCsiRecord, EspCsiError> {
    let rest = text.strip_prefix(PREFIX).unwrap_or(text);
    let open = rest.find('[').ok_or(EspCsiError::MissingArray { line })?;
    let close = rest[open..]
        .find(']')
        .map(|c| open + c)
        .ok_or(EspCsiError::UnclosedArray { line })?;
    let tail = rest[close + 1..].trim();
    if !(tail.is_empty() || tail == "\"") {
        return Err(EspCsiError::TrailingText { line });
    }
    let head = rest[..open].trim_end();
    let head = head.strip_suffix('"').unwrap_or(head).trim_end();
    let head = head.strip_suffix(',').unwrap_or(head);
    let cells: Vec<&str> = head.split(',').collect();
    let layout = match cells.len() {
        23 => Layout::Classic,
        13 => Layout::C5C6,
        got => return Err(EspCsiError::FieldCount { line, got }),
    };
    let mut mac = [0u8; 6];
    let mut fields = Vec::with_capacity(cells.len() - 1);
    for (&name, cell) in layout.fields().iter().zip(&cells) {
        if name == "mac" {
            mac = parse_mac(line, cell)?;
        } else {
            fields.push(parse_int(line, name, cell)?);
        }
    }
    let body = rest[open + 1..close].trim();
    let mut values = Vec::new();
    if !body.is_empty() {
        for (position, v) in body.split(',').enumerate() {
            let v = v.trim();
            values.push(v.parse::<i16>().map_err(|_| EspCsiError::BadValue {
                line,
                position,
                text: v.chars().take(32).collect(),
            })?);
        }
    }
    if values.is_empty() || values.len() % 2 != 0 {
        return Err(EspCsiError::BadValueCount {
            line,
            count: values.len(),
        });
    }
    let rec = EspCsiRecord {
        line,
        layout,
        mac,
        fields,
        values,
    };
    let len = rec.field("len").unwrap_or(-1);
    if usize::try_from(len).ok() != Some(rec.values.len()) {
        return Err(EspCsiError::LenMismatch {
            line,
            len,
            count: rec.values.len(),
        });
    }
    Ok(rec)
}

/// Parses a whole serial log (policy in the module docs); never fails.
pub fn parse_log(bytes: &[u8]) -> EspCsiLog {
    let mut log = EspCsiLog::default();
    if bytes.is_empty() {
        return log;
    }
    let prefix = PREFIX.as_bytes();
    // a final '\n' ends the last line rather than starting an empty one
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Some(start) = raw.windows(prefix.len()).position(|w| w == prefix) else {
            log.other_lines += 1;
            continue;
        };
        let result = if raw.len() > MAX_LINE {
            Err(EspCsiError::TooLong {
                line,
                len: raw.len(),
            })
        } else {
            match std::str::from_utf8(&raw[start..]) {
                Ok(text) => parse_line(text, line),
                Err(_) => Err(EspCsiError::NotUtf8 { line }),
            }
        };
        match result {
            Ok(r) => log.records.push(r),
            Err(e) => log.skipped.push(e),
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::amplitude_matrix;
    use proptest::prelude::*;

    /// Formats `r` as the firmware prints it (`ets_printf` in esp-csi's csi_recv).
    fn encode(r: &EspCsiRecord) -> String {
        let mut s = String::from("CSI_DATA");
        let mut f = r.fields.iter();
        for &name in r.layout.fields() {
            if name == "mac" {
                let m = r.mac;
                s += &format!(
                    ",{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                );
            } else {
                s += &format!(",{}", f.next().unwrap());
            }
        }
        let v: Vec<String> = r.values.iter().map(i16::to_string).collect();
        s += &format!(",\"[{}]\"", v.join(","));
        s
    }

    fn record(layout: Layout, values: Vec<i16>, seed: i64) -> EspCsiRecord {
        let n = layout.fields().len() - 1;
        let len_at = layout
            .fields()
            .iter()
            .filter(|&&f| f != "mac")
            .position(|&f| f == "len")
            .unwrap();
        let mut fields: Vec<i64> = (0..n as i64).map(|i| seed.wrapping_mul(31) ^ i).collect();
        fields[len_at] = values.len() as i64;
        EspCsiRecord {
            line: 0,
            layout,
            mac: [0x1a, 0, 0, 0, 0, seed as u8],
            fields,
            values,
        }
    }

    const CLASSIC: &str = "CSI_DATA,7,1a:00:00:00:00:00,-45,11,1,0,0,0,0,0,0,0,0,-93,0,11,1,123456,0,76,0,4,0,\"[3,-4,0,2]\"";

    #[test]
    fn hand_written_classic_line() {
        let text = format!("I (123) csi_recv: start\r\n{CLASSIC}\r\nnot csi\n");
        let log = parse_log(text.as_bytes());
        assert_eq!(log.other_lines, 2);
        assert!(log.skipped.is_empty());
        let r = &log.records[0];
        assert_eq!((r.line, r.layout), (2, Layout::Classic));
        assert_eq!(r.mac, [0x1a, 0, 0, 0, 0, 0]);
        assert_eq!(r.field("id"), Some(7));
        assert_eq!(r.rssi(), Some(-45));
        assert_eq!(r.noise_floor(), Some(-93));
        assert_eq!(r.local_timestamp(), Some(123_456));
        assert_eq!(r.field("sig_len"), Some(76));
        assert_eq!(r.field("fft_gain"), None);
        assert_eq!(r.iq(0), Some((-4, 3)));
        assert_eq!(r.iq(1), Some((2, 0)));
        assert_eq!(r.iq(2), None);
        let m = amplitude_matrix(&log.records).unwrap();
        assert_eq!(m.rows, vec![5.0, 2.0]);
        assert_eq!(m.column_names(), vec!["rx0_tx0_sc0", "rx0_tx0_sc1"]);
    }

    #[test]
    fn c6_line_with_a_monitor_prefix() {
        let line =
            "[12:00:01.5] CSI_DATA,3,1a:00:00:00:00:01,-60,11,-90,2,30,6,99,0,0,2,1,\"[ 6 , 8 ]\"";
        let log = parse_log(line.as_bytes());
        let r = &log.records[0];
        assert_eq!(r.layout, Layout::C5C6);
        assert_eq!(r.field("seq"), Some(3));
        assert_eq!(r.field("agc_gain"), Some(30));
        assert_eq!(r.field("first_word"), Some(1));
        assert_eq!(r.values, vec![6, 8]);
    }

    #[test]
    fn header_row_and_blank_lines_are_other_lines() {
        let text = "type,id,mac,rssi\n\n";
        let log = parse_log(text.as_bytes());
        assert_eq!((log.other_lines, log.records.len()), (2, 0));
        assert_eq!(parse_log(b""), EspCsiLog::default());
    }

    fn one_error(line: &str) -> EspCsiError {
        let log = parse_log(format!("{line}\n{CLASSIC}\n").as_bytes());
        assert_eq!(
            log.records.len(),
            1,
            "the good line after a bad one is read"
        );
        assert_eq!(log.skipped.len(), 1);
        log.skipped[0].clone()
    }

    #[test]
    fn each_check_has_its_error() {
        let cut = &CLASSIC[..CLASSIC.len() - 4];
        assert_eq!(one_error(cut), EspCsiError::UnclosedArray { line: 1 });
        let no_array = &CLASSIC[..CLASSIC.find('[').unwrap()];
        assert_eq!(one_error(no_array), EspCsiError::MissingArray { line: 1 });
        assert_eq!(
            one_error(&format!("{CLASSIC}CSI_DATA,1")),
            EspCsiError::TrailingText { line: 1 }
        );
        assert_eq!(
            one_error(&CLASSIC.replacen("7,", "", 1)),
            EspCsiError::FieldCount { line: 1, got: 22 }
        );
        assert_eq!(
            one_error(&CLASSIC.replacen("-45", "x5", 1)),
            EspCsiError::BadField {
                line: 1,
                field: "rssi",
                text: "x5".into()
            }
        );
        assert_eq!(
            one_error(&CLASSIC.replacen("1a:00", "1a:0g", 1)),
            EspCsiError::BadMac {
                line: 1,
                text: "1a:0g:00:00:00:00".into()
            }
        );
        assert_eq!(
            one_error(&CLASSIC.replacen("-4,", "40000,", 1)),
            EspCsiError::BadValue {
                line: 1,
                position: 1,
                text: "40000".into()
            }
        );
        assert_eq!(
            one_error(&CLASSIC.replacen("[3,-4,0,2]", "[3,-4,0]", 1)),
            EspCsiError::BadValueCount { line: 1, count: 3 }
        );
        assert_eq!(
            one_error(&CLASSIC.replacen("[3,-4,0,2]", "[]", 1)),
            EspCsiError::BadValueCount { line: 1, count: 0 }
        );
        assert_eq!(
            one_error(&CLASSIC.replacen("[3,-4,0,2]", "[3,-4]", 1)),
            EspCsiError::LenMismatch {
                line: 1,
                len: 4,
                count: 2
            }
        );
        let mut bad_utf8 = b"CSI_DATA,\xff".to_vec();
        bad_utf8.extend(format!("\n{CLASSIC}").as_bytes());
        assert_eq!(
            parse_log(&bad_utf8).skipped,
            vec![EspCsiError::NotUtf8 { line: 1 }]
        );
        let long = format!("CSI_DATA,{}", "1".repeat(MAX_LINE));
        assert_eq!(
            one_error(&long),
            EspCsiError::TooLong {
                line: 1,
                len: MAX_LINE + 9
            }
        );
    }

    proptest! {
        #[test]
        fn round_trip(recs in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(any::<i16>(), 1..40), any::<i64>()), 0..8)) {
            let mut text = String::from("boot noise\n");
            let mut want = Vec::new();
            for (i, (classic, mut values, seed)) in recs.into_iter().enumerate() {
                if values.len() % 2 == 1 { values.pop(); }
                if values.is_empty() { values = vec![1, 2]; }
                let layout = if classic { Layout::Classic } else { Layout::C5C6 };
                let mut r = record(layout, values, seed);
                r.line = i + 2;
                text += &encode(&r);
                text += if i % 2 == 0 { "\r\n" } else { "\n" };
                want.push(r);
            }
            let log = parse_log(text.as_bytes());
            prop_assert_eq!(&log.records, &want);
            prop_assert!(log.skipped.is_empty());
            prop_assert_eq!(log.other_lines, 1);
        }

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = b"CSI_DATA,".to_vec();
            b.extend(bytes);
            let log = parse_log(&b);
            prop_assert_eq!(log.records.len() + log.skipped.len() + log.other_lines,
                            b.strip_suffix(b"\n").unwrap_or(&b).split(|&c| c == b'\n').count());
        }
    }
}
