//! Readers for the CSI files other tools record, one module per format:
//!
//! * [`intel5300`]: Linux 802.11n CSI Tool `.dat` logs (Intel 5300, beamforming
//!   records `0xBB`);
//! * [`esp_csi`]: Espressif `esp-csi` serial console logs (`CSI_DATA,…` lines);
//! * [`nexmon`]: Nexmon CSI captures (pcap of the UDP packets to port 5500).
//!
//! Every reader turns `&[u8]` into a log of typed records, never panics, keeps
//! the metadata the file holds (timestamps, RSSI, noise, AGC …) and counts what
//! it skipped, each skipped record with its typed error. Records implement
//! [`CsiRecord`], so one set of helpers serves every format:
//! [`amplitude_matrix`] keeps the records of the most common [`CsiShape`] and
//! stacks their amplitudes `|I + jQ|` into a `T × (n_rx·n_tx·n_sub)` matrix, in
//! the order `(rx, tx, subcarrier)` (subcarrier fastest), unscaled: the values as
//! stored in the file. docs/readers.md describes each format and its policy.
//!
//! ```
//! use aether_data::readers::{amplitude_matrix, esp_csi};
//! let log = esp_csi::parse_log(b"boot\nCSI_DATA,1,aa:bb:cc:dd:ee:ff,-50,11,-90,0,0,11,123,0,0,4,0,\"[3,4,0,2]\"\n");
//! assert_eq!((log.records.len(), log.other_lines), (1, 1));
//! let m = amplitude_matrix(&log.records).unwrap();
//! assert_eq!((m.frames(), m.width()), (1, 2));
//! assert_eq!(m.rows, vec![5.0, 2.0]);
//! ```

pub mod esp_csi;
pub mod intel5300;
pub mod nexmon;

/// The shape of one record's CSI: receive chains × transmit streams × subcarriers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CsiShape {
    /// Receive chains (antennas as reported by the file).
    pub n_rx: usize,
    /// Transmit (spatial) streams.
    pub n_tx: usize,
    /// Subcarriers (or subcarrier groups) per link.
    pub n_sub: usize,
}

impl CsiShape {
    /// Values per record: `n_rx · n_tx · n_sub`.
    pub fn width(&self) -> usize {
        self.n_rx * self.n_tx * self.n_sub
    }

    /// Column names `rx{r}_tx{t}_sc{k}` in the amplitude order `(rx, tx, subcarrier)`.
    pub fn column_names(&self) -> Vec<String> {
        let mut v = Vec::with_capacity(self.width());
        for r in 0..self.n_rx {
            for t in 0..self.n_tx {
                for k in 0..self.n_sub {
                    v.push(format!("rx{r}_tx{t}_sc{k}"));
                }
            }
        }
        v
    }
}

/// One record of complex CSI from any reader.
pub trait CsiRecord {
    /// The record's shape.
    fn shape(&self) -> CsiShape;
    /// Appends `|I + jQ|` of every value, `shape().width()` of them, in the order
    /// `(rx, tx, subcarrier)`, subcarrier fastest, unscaled.
    fn push_amplitudes(&self, out: &mut Vec<f32>);
}

/// A node's raw CSI frame: each antenna is a receive chain, one transmit stream.
impl CsiRecord for crate::wire::RawCsiFrame {
    fn shape(&self) -> CsiShape {
        CsiShape {
            n_rx: usize::from(self.n_antennas),
            n_tx: 1,
            n_sub: usize::from(self.n_subcarriers),
        }
    }

    fn push_amplitudes(&self, out: &mut Vec<f32>) {
        out.extend(self.iq.chunks_exact(2).map(|p| {
            let (i, q) = (f32::from(p[0]), f32::from(p[1]));
            (i * i + q * q).sqrt()
        }));
    }
}

/// Amplitudes of the records of one shape, stacked `T × width` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct AmplitudeMatrix {
    /// The shape every kept record has.
    pub shape: CsiShape,
    /// `T × shape.width()` amplitudes, row-major, one row per kept record.
    pub rows: Vec<f32>,
    /// Indices (into the record slice) of the kept records, in order.
    pub kept: Vec<usize>,
    /// Records left out because their shape differs.
    pub other_shape: usize,
}

impl AmplitudeMatrix {
    /// Rows `T`.
    pub fn frames(&self) -> usize {
        self.kept.len()
    }

    /// Columns: `n_rx · n_tx · n_sub`.
    pub fn width(&self) -> usize {
        self.shape.width()
    }

    /// Column names (see [`CsiShape::column_names`]).
    pub fn column_names(&self) -> Vec<String> {
        self.shape.column_names()
    }
}

/// The most common shape among `records` (ties: the shape seen first, as for node
/// captures); `None` without records.
pub fn most_common_shape<R: CsiRecord>(records: &[R]) -> Option<CsiShape> {
    let mut counts: Vec<(CsiShape, usize)> = Vec::new();
    for r in records {
        let s = r.shape();
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, c)) => *c += 1,
            None => counts.push((s, 1)),
        }
    }
    counts
        .iter()
        .fold(None::<(CsiShape, usize)>, |acc, &(k, c)| match acc {
            Some((_, bc)) if bc >= c => acc,
            _ => Some((k, c)),
        })
        .map(|(k, _)| k)
}

/// The amplitude matrix of the records whose shape is `shape`, in order.
pub fn amplitudes_of_shape<R: CsiRecord>(records: &[R], shape: CsiShape) -> AmplitudeMatrix {
    let mut rows = Vec::new();
    let mut kept = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r.shape() == shape {
            r.push_amplitudes(&mut rows);
            kept.push(i);
        }
    }
    AmplitudeMatrix {
        shape,
        rows,
        other_shape: records.len() - kept.len(),
        kept,
    }
}

/// The amplitude matrix of the records of the most common shape; `None` without
/// records.
pub fn amplitude_matrix<R: CsiRecord>(records: &[R]) -> Option<AmplitudeMatrix> {
    most_common_shape(records).map(|s| amplitudes_of_shape(records, s))
}

/// Unwraps a run of wrapping 32-bit microsecond counters (the Intel 5300
/// `timestamp_low`, the ESP32 `local_timestamp`) into a monotone 64-bit time
/// from the first value: each step is taken modulo 2³², so a counter that wraps
/// keeps counting up.
pub fn unwrap_u32_us<I: IntoIterator<Item = u32>>(ticks: I) -> Vec<u64> {
    let mut out = Vec::new();
    let mut prev: Option<u32> = None;
    let mut t = 0u64;
    for x in ticks {
        if let Some(p) = prev {
            t = t.wrapping_add(u64::from(x.wrapping_sub(p)));
        }
        out.push(t);
        prev = Some(x);
    }
    out
}

/// `|re + j·im|` in f32 (exact inputs, one rounding).
pub(crate) fn magnitude(re: f32, im: f32) -> f32 {
    (re * re + im * im).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(CsiShape, f32);
    impl CsiRecord for R {
        fn shape(&self) -> CsiShape {
            self.0
        }
        fn push_amplitudes(&self, out: &mut Vec<f32>) {
            out.extend(std::iter::repeat_n(self.1, self.0.width()));
        }
    }

    fn s(n_rx: usize, n_tx: usize) -> CsiShape {
        CsiShape {
            n_rx,
            n_tx,
            n_sub: 2,
        }
    }

    #[test]
    fn most_common_shape_ties_go_to_the_first_seen() {
        let recs = [
            R(s(2, 1), 1.0),
            R(s(2, 2), 2.0),
            R(s(2, 2), 3.0),
            R(s(2, 1), 4.0),
        ];
        assert_eq!(most_common_shape(&recs), Some(s(2, 1)));
        let m = amplitude_matrix(&recs).unwrap();
        assert_eq!(m.kept, vec![0, 3]);
        assert_eq!(m.other_shape, 2);
        assert_eq!(m.rows, vec![1.0, 1.0, 1.0, 1.0, 4.0, 4.0, 4.0, 4.0]);
        assert_eq!(m.frames(), 2);
        assert!(amplitude_matrix::<R>(&[]).is_none());
    }

    #[test]
    fn column_names_follow_rx_tx_subcarrier() {
        assert_eq!(
            s(2, 2).column_names()[..5],
            [
                "rx0_tx0_sc0",
                "rx0_tx0_sc1",
                "rx0_tx1_sc0",
                "rx0_tx1_sc1",
                "rx1_tx0_sc0"
            ]
        );
    }

    #[test]
    fn unwrap_counts_across_the_wrap() {
        assert_eq!(
            unwrap_u32_us([u32::MAX - 1, u32::MAX, 0, 5]),
            vec![0, 1, 2, 7]
        );
        assert!(unwrap_u32_us([]).is_empty());
    }
}
