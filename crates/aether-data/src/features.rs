//! Raw CSI → per-frame feature vector: the one extractor used for real
//! captures, for CSV rows of amplitudes, for the simulator and for live nodes.
//!
//! For each antenna of a frame with complex CSI `H[k] = I + jQ`:
//!
//! 1. amplitude `A[k] = |H[k]|`;
//! 2. *active* subcarriers: non-zero in at least half of the last
//!    [`MASK_WINDOW`] frames up to and including this one (drops guard bands and
//!    DC, zero on every ESP32 chip, whatever order a chip reports them in; causal,
//!    so a live stream and a file agree);
//! 3. gain `g = mean A[k]` over the active subcarriers;
//! 4. the active subcarriers, in index order, form `B` contiguous bands
//!    (`⌊b·K/B⌋ .. ⌊(b+1)·K/B⌋`);
//! 5. band feature `ln((mean_{k∈b} A[k] + ε) / (g + ε))`, `ε = 10⁻³`;
//! 6. gain term (on by default) `ln(g + ε)`;
//! 7. `M` motion terms (default 5): for lag `L_i = 2^i` frames,
//!    `m_i(t) = ln(ε_m + sqrt(mean_{j<B} (x_t[j] − x_{t−L_i}[j])²))` over the
//!    band features, `ε_m = 10⁻³`, the first frame standing in for `x_{t−L}`
//!    while `t < L`.
//!
//! Output per frame, antenna-major: `D = n_ant · (B + gain + M)` finite f32 (16 on
//! one antenna by default). [`FeatureStream`] is the state machine; the offline
//! extractors feed it a whole sequence. Why these terms: docs/features.md.

use crate::wire::{parse_capture, CaptureReport, RawCsiFrame};

/// Default number of subcarrier bands per antenna (with the gain and the five
/// motion terms: 16 features).
pub const DEFAULT_BANDS: usize = 10;
/// Default number of motion terms per antenna (lags 1, 2, 4, 8, 16 frames).
pub const DEFAULT_MOTION_LAGS: usize = 5;
/// Floor inside the log of a motion term (log-ratio units): a still channel
/// reads `ln(10⁻³) ≈ −6.9`.
const MOTION_EPS: f64 = 1e-3;
/// Stabiliser in the log-ratio.
const EPS: f64 = 1e-3;

/// Why features could not be extracted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// Fewer active subcarriers than bands.
    #[error("{active} active subcarriers, need at least {bands} (one per band)")]
    TooFewSubcarriers {
        /// Active subcarriers found.
        active: usize,
        /// Bands requested.
        bands: usize,
    },
    /// Zero bands requested.
    #[error("the number of bands must be at least 1")]
    ZeroBands,
    /// No frames to extract from.
    #[error("no frames")]
    NoFrames,
    /// A frame's shape differs from the first frame's.
    #[error("frame {index} has {got_ant}×{got_sub} antennas×subcarriers, expected {ant}×{sub}")]
    ShapeMismatch {
        /// Index of the frame.
        index: usize,
        /// Antennas expected.
        ant: usize,
        /// Subcarriers expected.
        sub: usize,
        /// Antennas found.
        got_ant: usize,
        /// Subcarriers found.
        got_sub: usize,
    },
    /// More motion terms than [`MAX_MOTION_LAGS`].
    #[error("{got} motion terms requested, at most {max} are supported")]
    TooManyMotionLags {
        /// Terms requested.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// A frame pushed into a [`FeatureStream`] has the wrong number of values.
    #[error("frame has {got} values, the stream takes {expected}")]
    FrameLength {
        /// Values expected.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A row of amplitudes has a negative or non-finite value.
    #[error("amplitude {value} at row {row}, column {col} is negative or not finite")]
    BadAmplitude {
        /// Row (0-based).
        row: usize,
        /// Column (0-based).
        col: usize,
        /// The value.
        value: f32,
    },
}

/// The extractor: number of bands per antenna, whether to append the
/// log-gain term, and how many motion terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureConfig {
    /// Bands per antenna (`B`).
    pub bands: usize,
    /// Append `ln(g + ε)` per antenna (feature `a{a}_gain`).
    pub gain: bool,
    /// Number `M` of motion terms per antenna (features `a{a}_m{i}`, lag
    /// `2^i` frames, `i < M`): the log RMS change of that antenna's band
    /// features over the lag; 0 leaves them out.
    pub motion: usize,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            bands: DEFAULT_BANDS,
            gain: true,
            motion: DEFAULT_MOTION_LAGS,
        }
    }
}

impl FeatureConfig {
    /// Features per antenna: `B`, +1 with the gain term, + `M` motion terms.
    pub fn per_antenna(&self) -> usize {
        self.bands + usize::from(self.gain) + self.motion
    }
}

/// Feature names for `n_antennas` antennas: `a{antenna}_b{band:02}`, then
/// `a{antenna}_gain` when the gain term is on, then `a{antenna}_m{i}` for the
/// motion term of lag `2^i`.
pub fn feature_names(n_antennas: usize, cfg: FeatureConfig) -> Vec<String> {
    (0..n_antennas)
        .flat_map(|a| {
            (0..cfg.bands)
                .map(move |b| format!("a{a}_b{b:02}"))
                .chain(cfg.gain.then(|| format!("a{a}_gain")))
                .chain((0..cfg.motion).map(move |i| format!("a{a}_m{i}")))
        })
        .collect()
}

/// Frames the causal active-subcarrier mask looks back over (docs/features.md step 2):
/// a subcarrier is active at frame `t` when it is non-zero in at least half of the
/// frames `max(0, t − 63) ..= t`.
pub const MASK_WINDOW: usize = 64;

/// Largest number of motion terms per antenna (longest lag `2^(M−1)` = 2048 frames).
pub const MAX_MOTION_LAGS: usize = 12;

/// Causal, allocation-free feature extraction of one stream of frames of one shape
/// (antennas × subcarriers): push a frame, get its feature vector (formula in the
/// module docs). The offline extractors ([`extract_frames`], [`extract_amplitude_rows`])
/// run this same state machine over a whole sequence, so a stream and a file agree bit
/// for bit on every frame.
///
/// State: the last [`MASK_WINDOW`] frames' non-zero flags (the active mask), the last
/// `2^(M−1)` frames' band features (the motion terms), a frame counter. The output at
/// frame `t` depends only on frames `t − (MASK_WINDOW − 1) − 2^(M−1) ..= t`
/// ([`FeatureStream::horizon`]) once `t` is past that many frames.
#[derive(Debug, Clone)]
pub struct FeatureStream {
    cfg: FeatureConfig,
    n_ant: usize,
    n_sub: usize,
    /// Frames pushed (positions since construction or reset; may start above 0, see
    /// [`FeatureStream::resume_at`]).
    t: u64,
    /// Frames pushed since construction, reset or resume.
    since: u64,
    /// Ring of per-frame non-zero flags, `MASK_WINDOW × n_ant·n_sub`.
    nz: Vec<bool>,
    /// Non-zero count per (antenna, subcarrier) over the ring's frames.
    counts: Vec<u16>,
    /// Frames currently in the flag ring (≤ MASK_WINDOW).
    in_ring: usize,
    /// Ring of band features, `lags × n_ant × B` (slot `t mod lags`).
    hist: Vec<f32>,
    /// Band features of the first frame since construction/reset (stands in for
    /// `x[t − L]` while `t < L`).
    first: Vec<f32>,
    amps: Vec<f32>,
    active: Vec<f64>,
    out: Vec<f32>,
}

impl FeatureStream {
    /// A fresh extractor for frames of `n_ant` antennas × `n_sub` subcarriers.
    ///
    /// Refuses zero bands, more than [`MAX_MOTION_LAGS`] motion terms, zero antennas
    /// and fewer subcarriers than bands.
    pub fn new(cfg: FeatureConfig, n_ant: usize, n_sub: usize) -> Result<Self, FeatureError> {
        if cfg.bands == 0 {
            return Err(FeatureError::ZeroBands);
        }
        if cfg.motion > MAX_MOTION_LAGS {
            return Err(FeatureError::TooManyMotionLags {
                got: cfg.motion,
                max: MAX_MOTION_LAGS,
            });
        }
        if n_ant == 0 || n_sub == 0 {
            return Err(FeatureError::NoFrames);
        }
        if n_sub < cfg.bands {
            return Err(FeatureError::TooFewSubcarriers {
                active: n_sub,
                bands: cfg.bands,
            });
        }
        let cells = n_ant * n_sub;
        let lags = Self::lags_of(cfg);
        Ok(Self {
            cfg,
            n_ant,
            n_sub,
            t: 0,
            since: 0,
            nz: vec![false; MASK_WINDOW * cells],
            counts: vec![0; cells],
            in_ring: 0,
            hist: vec![0.0; lags * n_ant * cfg.bands],
            first: vec![0.0; n_ant * cfg.bands],
            amps: vec![0.0; cells],
            active: Vec::with_capacity(n_sub),
            out: vec![0.0; n_ant * cfg.per_antenna()],
        })
    }

    /// Like [`FeatureStream::new`], counting frames from `t0` instead of 0, for a
    /// state rebuilt from a replay of recent frames: after [`FeatureStream::horizon`]
    /// pushes its outputs equal those of a stream that saw every frame from 0.
    pub fn resume_at(
        cfg: FeatureConfig,
        n_ant: usize,
        n_sub: usize,
        t0: u64,
    ) -> Result<Self, FeatureError> {
        let mut s = Self::new(cfg, n_ant, n_sub)?;
        s.t = t0;
        Ok(s)
    }

    fn lags_of(cfg: FeatureConfig) -> usize {
        if cfg.motion == 0 {
            0
        } else {
            1usize << (cfg.motion - 1)
        }
    }

    /// The extractor configuration.
    pub fn config(&self) -> FeatureConfig {
        self.cfg
    }

    /// `(antennas, subcarriers)` of the frames this stream takes.
    pub fn shape(&self) -> (usize, usize) {
        (self.n_ant, self.n_sub)
    }

    /// Features per frame, `n_ant · (B + gain + M)`.
    pub fn dim(&self) -> usize {
        self.out.len()
    }

    /// Position of the next frame (frames pushed, plus the resume offset).
    pub fn position(&self) -> u64 {
        self.t
    }

    /// Frames of history the output depends on: `MASK_WINDOW + 2^(M−1)`.
    pub fn horizon(&self) -> usize {
        MASK_WINDOW + Self::lags_of(self.cfg)
    }

    /// Bytes of the state's buffers.
    pub fn bytes(&self) -> usize {
        self.nz.len()
            + self.counts.len() * 2
            + (self.hist.len() + self.first.len() + self.amps.len() + self.out.len()) * 4
            + self.active.capacity() * 8
    }

    /// Forgets every frame: the next push is frame 0 again.
    pub fn reset(&mut self) {
        self.t = 0;
        self.since = 0;
        self.in_ring = 0;
        self.nz.iter_mut().for_each(|v| *v = false);
        self.counts.iter_mut().for_each(|v| *v = 0);
    }

    /// Amplitudes `|I + jQ|` of the last pushed frame, antenna-major (`n_ant · n_sub`).
    pub fn amplitudes(&self) -> &[f32] {
        &self.amps
    }

    /// Features of the last pushed frame.
    pub fn features(&self) -> &[f32] {
        &self.out
    }

    /// Pushes one frame of interleaved `(I, Q)` int8 pairs, antenna-major
    /// (`2 · n_ant · n_sub` values) and returns its features.
    pub fn push_iq(&mut self, iq: &[i8]) -> Result<&[f32], FeatureError> {
        let cells = self.n_ant * self.n_sub;
        if iq.len() != 2 * cells {
            return Err(FeatureError::FrameLength {
                expected: 2 * cells,
                got: iq.len(),
            });
        }
        for (a, p) in self.amps.iter_mut().zip(iq.chunks_exact(2)) {
            let (i, q) = (p[0] as f32, p[1] as f32);
            *a = (i * i + q * q).sqrt();
        }
        self.step();
        Ok(&self.out)
    }

    /// Pushes one frame of amplitudes (antenna-major, `n_ant · n_sub` finite,
    /// non-negative values) and returns its features; a bad value is refused with its
    /// column and leaves the state unchanged.
    pub fn push_amplitudes(&mut self, amps: &[f32]) -> Result<&[f32], FeatureError> {
        let cells = self.n_ant * self.n_sub;
        if amps.len() != cells {
            return Err(FeatureError::FrameLength {
                expected: cells,
                got: amps.len(),
            });
        }
        if let Some(col) = amps.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(FeatureError::BadAmplitude {
                row: self.t as usize,
                col,
                value: amps[col],
            });
        }
        self.amps.copy_from_slice(amps);
        self.step();
        Ok(&self.out)
    }

    /// Updates the mask ring with `self.amps` and computes `self.out`.
    fn step(&mut self) {
        let cells = self.n_ant * self.n_sub;
        let slot = (self.t % MASK_WINDOW as u64) as usize;
        let ring = &mut self.nz[slot * cells..(slot + 1) * cells];
        if self.in_ring == MASK_WINDOW {
            for (c, old) in self.counts.iter_mut().zip(ring.iter()) {
                *c -= u16::from(*old);
            }
        } else {
            self.in_ring += 1;
        }
        for ((c, r), &a) in self.counts.iter_mut().zip(ring.iter_mut()).zip(&self.amps) {
            *r = a != 0.0;
            *c += u16::from(*r);
        }
        let n = self.in_ring;
        let (b_n, per) = (self.cfg.bands, self.cfg.per_antenna());
        let lags = Self::lags_of(self.cfg);
        let since_reset = self.since;
        for a in 0..self.n_ant {
            // step 2-6: active subcarriers, gain, bands (f64, index order)
            self.active.clear();
            let amps = &self.amps[a * self.n_sub..(a + 1) * self.n_sub];
            let counts = &self.counts[a * self.n_sub..(a + 1) * self.n_sub];
            self.active.extend(
                amps.iter()
                    .zip(counts)
                    .filter(|(_, &c)| 2 * c as usize >= n)
                    .map(|(&v, _)| v as f64),
            );
            let k = self.active.len();
            let g = self.active.iter().sum::<f64>() / k.max(1) as f64;
            let out = &mut self.out[a * per..(a + 1) * per];
            for (b, o) in out[..b_n].iter_mut().enumerate() {
                let lo = b * k / b_n;
                let hi = ((b + 1) * k / b_n).max(lo + 1).min(k);
                let m = if hi > lo {
                    self.active[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
                } else {
                    g
                };
                *o = ((m + EPS) / (g + EPS)).ln() as f32;
            }
            if self.cfg.gain {
                out[b_n] = (g + EPS).ln() as f32;
            }
            // step 7: motion terms over the band features of earlier frames
            if lags > 0 {
                let (x, rest) = out.split_at_mut(b_n);
                if since_reset == 0 {
                    self.first[a * b_n..(a + 1) * b_n].copy_from_slice(x);
                }
                let m0 = usize::from(self.cfg.gain);
                for i in 0..self.cfg.motion {
                    let lag = 1u64 << i;
                    let prev = if since_reset >= lag {
                        let s = ((self.t - lag) % lags as u64) as usize;
                        &self.hist[(s * self.n_ant + a) * b_n..(s * self.n_ant + a + 1) * b_n]
                    } else {
                        &self.first[a * b_n..(a + 1) * b_n]
                    };
                    let ss: f64 = prev
                        .iter()
                        .zip(x.iter())
                        .map(|(&u, &v)| ((v - u) as f64).powi(2))
                        .sum();
                    let rms = (ss / b_n as f64).sqrt();
                    rest[m0 + i] = (MOTION_EPS + rms).ln() as f32;
                }
                let s = (self.t % lags as u64) as usize;
                self.hist[(s * self.n_ant + a) * b_n..(s * self.n_ant + a + 1) * b_n]
                    .copy_from_slice(x);
            }
        }
        self.since += 1;
        self.t += 1;
    }
}

/// Features of amplitude rows (e.g. a CSV of per-subcarrier amplitudes, one
/// row per frame, single antenna): `T×n` row-major in, `T×(B+gain+M)` row-major out,
/// the output of a [`FeatureStream`] fed row by row.
pub fn extract_amplitude_rows(
    rows: &[f32],
    n: usize,
    cfg: FeatureConfig,
) -> Result<Vec<f32>, FeatureError> {
    if cfg.bands == 0 {
        return Err(FeatureError::ZeroBands);
    }
    if n == 0 || rows.is_empty() {
        return Err(FeatureError::NoFrames);
    }
    if let Some(i) = rows.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(FeatureError::BadAmplitude {
            row: i / n,
            col: i % n,
            value: rows[i],
        });
    }
    let mut s = FeatureStream::new(cfg, 1, n)?;
    let mut out = Vec::with_capacity(rows.len() / n * s.dim());
    let mut nz = NonZero::new(n);
    for r in rows.chunks_exact(n) {
        out.extend_from_slice(s.push_amplitudes(r)?);
        nz.add(s.amplitudes());
    }
    nz.check(1, n, cfg.bands)?;
    Ok(out)
}

/// Features of amplitude frames of `n_ant` antennas (links) × `n_sub` subcarriers,
/// antenna-major within a frame (`T × n_ant·n_sub` row-major in, `T × n_ant·(B+gain+M)`
/// out): the output of a [`FeatureStream`] fed frame by frame, with the file-level
/// active-subcarrier check of [`extract_frames`]. Readers of other CSI formats
/// (Intel 5300, esp-csi) use it with each receive chain as an antenna.
pub fn extract_amplitude_frames(
    amps: &[f32],
    n_ant: usize,
    n_sub: usize,
    cfg: FeatureConfig,
) -> Result<Vec<f32>, FeatureError> {
    if cfg.bands == 0 {
        return Err(FeatureError::ZeroBands);
    }
    let cells = n_ant * n_sub;
    if cells == 0 || amps.is_empty() {
        return Err(FeatureError::NoFrames);
    }
    if let Some(i) = amps.iter().position(|v| !v.is_finite() || *v < 0.0) {
        return Err(FeatureError::BadAmplitude {
            row: i / cells,
            col: i % cells,
            value: amps[i],
        });
    }
    let mut s = FeatureStream::new(cfg, n_ant, n_sub)?;
    let mut out = Vec::with_capacity(amps.len() / cells * s.dim());
    let mut nz = NonZero::new(cells);
    for r in amps.chunks_exact(cells) {
        out.extend_from_slice(s.push_amplitudes(r)?);
        nz.add(s.amplitudes());
    }
    nz.check(n_ant, n_sub, cfg.bands)?;
    Ok(out)
}

/// Per-subcarrier non-zero counts over a whole sequence: the file-level validity
/// check of the offline extractors (a capture whose subcarriers are non-zero in at
/// least half of its frames must number at least `B` per antenna, as before the
/// causal mask; the features themselves do not depend on it).
struct NonZero {
    counts: Vec<usize>,
    frames: usize,
}

impl NonZero {
    fn new(cells: usize) -> Self {
        Self {
            counts: vec![0; cells],
            frames: 0,
        }
    }

    fn add(&mut self, amps: &[f32]) {
        self.frames += 1;
        for (c, &a) in self.counts.iter_mut().zip(amps) {
            *c += usize::from(a != 0.0);
        }
    }

    fn check(&self, n_ant: usize, n_sub: usize, bands: usize) -> Result<(), FeatureError> {
        for a in 0..n_ant {
            let active = self.counts[a * n_sub..(a + 1) * n_sub]
                .iter()
                .filter(|&&c| 2 * c >= self.frames)
                .count();
            if active < bands {
                return Err(FeatureError::TooFewSubcarriers { active, bands });
            }
        }
        Ok(())
    }
}

/// Features of a sequence of raw CSI frames of one shape: `T × (n_ant·(B+gain+M))`
/// row-major, plus the number of antennas; the output of a [`FeatureStream`] fed
/// frame by frame.
pub fn extract_frames(
    frames: &[RawCsiFrame],
    cfg: FeatureConfig,
) -> Result<(Vec<f32>, usize), FeatureError> {
    if cfg.bands == 0 {
        return Err(FeatureError::ZeroBands);
    }
    let first = frames.first().ok_or(FeatureError::NoFrames)?;
    let (ant, sub) = (first.n_antennas as usize, first.n_subcarriers as usize);
    for (index, f) in frames.iter().enumerate() {
        let (ga, gs) = (f.n_antennas as usize, f.n_subcarriers as usize);
        if ga != ant || gs != sub || f.iq.len() != 2 * ga * gs {
            return Err(FeatureError::ShapeMismatch {
                index,
                ant,
                sub,
                got_ant: ga,
                got_sub: gs,
            });
        }
    }
    let mut s = FeatureStream::new(cfg, ant, sub)?;
    let mut out = Vec::with_capacity(frames.len() * s.dim());
    let mut nz = NonZero::new(ant * sub);
    for f in frames {
        out.extend_from_slice(s.push_iq(&f.iq)?);
        nz.add(s.amplitudes());
    }
    nz.check(ant, sub, cfg.bands)?;
    Ok((out, ant))
}

/// Splits frames into runs of one shape (antennas, subcarriers), in order; a
/// capture normally has one run. Returns `(start, end)` index ranges.
pub fn shape_runs(frames: &[RawCsiFrame]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=frames.len() {
        if i == frames.len()
            || frames[i].n_antennas != frames[start].n_antennas
            || frames[i].n_subcarriers != frames[start].n_subcarriers
        {
            if i > start {
                runs.push((start, i));
            }
            start = i;
        }
    }
    runs
}

/// Features of one capture file plus what was skipped in it.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureFeatures {
    /// `T × D` features, row-major.
    pub features: Vec<f32>,
    /// The `D` feature names.
    pub feature_names: Vec<String>,
    /// Frames read and skipped by the parser.
    pub report: CaptureReport,
    /// Well-formed frames left out because their (antennas, subcarriers)
    /// shape differs from the capture's most common shape.
    pub other_shape: usize,
}

impl CaptureFeatures {
    /// Frames (rows) extracted.
    pub fn frames(&self) -> usize {
        self.features
            .len()
            .checked_div(self.feature_names.len())
            .unwrap_or(0)
    }
}

/// Parses a capture (raw CSI frames back to back, see [`parse_capture`]) and
/// extracts features from the frames of its most common shape (ties: the
/// shape seen first), in order. Fails only if no frame survives or the
/// extractor refuses the shape.
pub fn capture_features(bytes: &[u8], cfg: FeatureConfig) -> Result<CaptureFeatures, FeatureError> {
    let (frames, report) = parse_capture(bytes);
    let mut shapes: Vec<((u8, u16), usize)> = Vec::new();
    for f in &frames {
        let key = (f.n_antennas, f.n_subcarriers);
        match shapes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, c)) => *c += 1,
            None => shapes.push((key, 1)),
        }
    }
    let best = shapes
        .iter()
        .fold(None::<((u8, u16), usize)>, |acc, &(k, c)| match acc {
            Some((_, bc)) if bc >= c => acc,
            _ => Some((k, c)),
        })
        .ok_or(FeatureError::NoFrames)?;
    let keep: Vec<RawCsiFrame> = frames
        .into_iter()
        .filter(|f| (f.n_antennas, f.n_subcarriers) == best.0)
        .collect();
    let other_shape = report.frames - keep.len();
    let (features, ant) = extract_frames(&keep, cfg)?;
    Ok(CaptureFeatures {
        features,
        feature_names: feature_names(ant, cfg),
        report,
        other_shape,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(iq: Vec<i8>, n_sub: u16) -> RawCsiFrame {
        RawCsiFrame {
            node_id: 1,
            n_antennas: (iq.len() / (2 * n_sub as usize)) as u8,
            n_subcarriers: n_sub,
            freq_mhz: 2412,
            seq: 0,
            rssi: 0,
            noise_floor: 0,
            iq,
        }
    }

    #[test]
    fn hand_computed_bands() {
        // 4 subcarriers, amplitudes 3,4(0),5,0 → with 0 masked: active 3,5 …
        // use 2 bands over active [3, 5]; g = 4.
        let iq = vec![3, 0, 0, 0, 3, 4, 0, 0];
        let f = frame(iq, 4);
        let (x, ant) = extract_frames(
            &[f],
            FeatureConfig {
                bands: 2,
                gain: true,
                motion: 0,
            },
        )
        .unwrap();
        assert_eq!(ant, 1);
        let e = |m: f64| ((m + 1e-3) / (4.0 + 1e-3)).ln() as f32;
        assert_eq!(x, vec![e(3.0), e(5.0), (4.0f64 + 1e-3).ln() as f32]);
    }

    #[test]
    fn gain_invariance() {
        let a: Vec<f32> = (0..52)
            .map(|k| 10.0 + (k as f32 * 0.7).sin() * 5.0)
            .collect();
        let b: Vec<f32> = a.iter().map(|v| v * 3.7).collect();
        let fa = extract_amplitude_rows(&a, 52, FeatureConfig::default()).unwrap();
        let fb = extract_amplitude_rows(&b, 52, FeatureConfig::default()).unwrap();
        assert_eq!(fa.len(), 16);
        for (i, (x, y)) in fa.iter().zip(&fb).enumerate() {
            if i != DEFAULT_BANDS {
                assert!((x - y).abs() < 1e-3, "{i}: {x} vs {y}");
            }
        }
        assert!((fb[DEFAULT_BANDS] - fa[DEFAULT_BANDS] - 3.7f32.ln()).abs() < 1e-3);
        // motion terms of the first frame sit at the floor
        for &m in &fa[DEFAULT_BANDS + 1..] {
            assert_eq!(m, (MOTION_EPS as f32).ln());
        }
    }

    /// A gain step (AGC) leaves every feature but the gain term unchanged,
    /// motion terms included.
    #[test]
    fn gain_step_is_not_motion() {
        let row: Vec<f32> = (0..52)
            .map(|k| 10.0 + (k as f32 * 0.7).sin() * 5.0)
            .collect();
        let mut rows = Vec::new();
        for t in 0..40 {
            let g = if t < 20 { 1.0 } else { 1.4 };
            rows.extend(row.iter().map(|v| v * g));
        }
        let x = extract_amplitude_rows(&rows, 52, FeatureConfig::default()).unwrap();
        let floor = (MOTION_EPS as f32).ln();
        for f in x.chunks_exact(16) {
            // only f32 rounding of the band values moves them off the floor
            for &m in &f[DEFAULT_BANDS + 1..] {
                assert!((m - floor).abs() < 0.05, "{m}");
            }
        }
    }

    #[test]
    fn errors() {
        let c = FeatureConfig {
            bands: 4,
            gain: true,
            motion: 1,
        };
        assert_eq!(extract_frames(&[], c), Err(FeatureError::NoFrames));
        assert_eq!(
            extract_frames(
                &[frame(vec![1; 8], 4)],
                FeatureConfig {
                    bands: 0,
                    gain: true,
                    motion: 1,
                }
            ),
            Err(FeatureError::ZeroBands)
        );
        assert_eq!(
            extract_frames(&[frame(vec![1; 6], 3)], c),
            Err(FeatureError::TooFewSubcarriers {
                active: 3,
                bands: 4
            })
        );
        assert!(matches!(
            extract_frames(&[frame(vec![1; 8], 4), frame(vec![1; 10], 5)], c),
            Err(FeatureError::ShapeMismatch { index: 1, .. })
        ));
        assert_eq!(
            extract_amplitude_rows(&[1.0, -1.0, 1.0, 1.0], 4, c),
            Err(FeatureError::BadAmplitude {
                row: 0,
                col: 1,
                value: -1.0
            })
        );
        assert!(matches!(
            extract_amplitude_rows(
                &[1.0, 1.0, f32::NAN, 1.0],
                2,
                FeatureConfig {
                    bands: 1,
                    gain: false,
                    motion: 0,
                }
            ),
            Err(FeatureError::BadAmplitude { row: 1, col: 0, .. })
        ));
        assert_eq!(
            extract_amplitude_rows(&[], 4, c),
            Err(FeatureError::NoFrames)
        );
    }

    #[test]
    fn zero_frames_give_zero_features() {
        let z = frame(vec![0; 16], 8);
        let nz = frame(vec![5; 16], 8);
        let cfg = FeatureConfig {
            bands: 2,
            gain: false,
            motion: 0,
        };
        let (x, _) = extract_frames(&[nz.clone(), z, nz], cfg).unwrap();
        assert!(x.iter().all(|v| v.is_finite()));
        assert_eq!(&x[2..4], &[0.0, 0.0]);
    }

    #[test]
    fn runs_split_by_shape() {
        let a = frame(vec![1; 8], 4);
        let b = frame(vec![1; 10], 5);
        assert_eq!(shape_runs(&[]), vec![]);
        assert_eq!(
            shape_runs(&[a.clone(), a.clone(), b.clone(), a]),
            vec![(0, 2), (2, 3), (3, 4)]
        );
        assert_eq!(
            feature_names(
                2,
                FeatureConfig {
                    bands: 2,
                    gain: false,
                    motion: 0,
                }
            ),
            ["a0_b00", "a0_b01", "a1_b00", "a1_b01"]
        );
        assert_eq!(
            feature_names(
                1,
                FeatureConfig {
                    bands: 1,
                    gain: true,
                    motion: 1,
                }
            ),
            ["a0_b00", "a0_gain", "a0_m0"]
        );
    }

    /// Motion term `i` against a direct computation from the band features:
    /// `ln(ε + RMS(x[t] − x[max(t − 2^i, 0)]))`.
    #[test]
    fn motion_terms_are_lagged_log_rms_change() {
        let cfg = FeatureConfig {
            bands: 2,
            gain: true,
            motion: 3,
        };
        let frames: Vec<RawCsiFrame> = (0..7)
            .map(|t| frame(vec![3 + t as i8, 0, 0, 0, 3, 4 - (t % 3) as i8, 0, 0], 4))
            .collect();
        let (x, _) = extract_frames(&frames, cfg).unwrap();
        assert_eq!(x.len(), 7 * 6);
        for t in 0..7usize {
            for i in 0..3 {
                let m = t.saturating_sub(1 << i);
                let (a, b) = (&x[m * 6..m * 6 + 2], &x[t * 6..t * 6 + 2]);
                let rms = (((a[0] - b[0]) as f64).powi(2) + ((a[1] - b[1]) as f64).powi(2)) / 2.0;
                let want = (MOTION_EPS + rms.sqrt()).ln() as f32;
                assert!((x[t * 6 + 3 + i] - want).abs() < 1e-6, "t {t} i {i}");
            }
        }
        assert!(
            x[6 * 6 + 5] > x[6 * 6 + 3],
            "a longer lag sees more change here"
        );
        assert_eq!(
            feature_names(1, cfg),
            ["a0_b00", "a0_b01", "a0_gain", "a0_m0", "a0_m1", "a0_m2"]
        );
    }

    #[test]
    fn capture_features_keeps_main_shape() {
        let a = frame((0..16).map(|v| v as i8 + 1).collect(), 8);
        let b = frame(vec![3; 10], 5);
        let mut bytes = crate::wire::encode_capture(&[a.clone(), b, a.clone()]).unwrap();
        bytes.extend([1, 2, 3]);
        let cfg = FeatureConfig {
            bands: 2,
            gain: true,
            motion: 0,
        };
        let c = capture_features(&bytes, cfg).unwrap();
        assert_eq!(c.frames(), 2);
        assert_eq!(c.other_shape, 1);
        assert_eq!(c.report.frames, 3);
        assert_eq!(c.report.garbage_bytes, 3);
        assert_eq!(c.feature_names, ["a0_b00", "a0_b01", "a0_gain"]);
        assert_eq!(c.features, extract_frames(&[a.clone(), a], cfg).unwrap().0);
        assert_eq!(
            capture_features(b"garbage", cfg),
            Err(FeatureError::NoFrames)
        );
    }

    /// The formula of the module docs written directly, frame by frame, from the
    /// whole amplitude matrix (`T × n_ant·n_sub`): the oracle for [`FeatureStream`].
    fn naive_features(amps: &[f32], n_ant: usize, n_sub: usize, cfg: FeatureConfig) -> Vec<f32> {
        let cells = n_ant * n_sub;
        let t_len = amps.len() / cells;
        let per = cfg.per_antenna();
        let mut x = vec![0.0f32; t_len * n_ant * per];
        for t in 0..t_len {
            let lo_t = t.saturating_sub(MASK_WINDOW - 1);
            for a in 0..n_ant {
                let row = |u: usize| &amps[u * cells + a * n_sub..u * cells + (a + 1) * n_sub];
                let active: Vec<f64> = (0..n_sub)
                    .filter(|&k| {
                        let c = (lo_t..=t).filter(|&u| row(u)[k] != 0.0).count();
                        2 * c >= t + 1 - lo_t
                    })
                    .map(|k| row(t)[k] as f64)
                    .collect();
                let k = active.len();
                let g = active.iter().sum::<f64>() / k.max(1) as f64;
                let o = (t * n_ant + a) * per;
                for b in 0..cfg.bands {
                    let lo = b * k / cfg.bands;
                    let hi = ((b + 1) * k / cfg.bands).max(lo + 1).min(k);
                    let m = if hi > lo {
                        active[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
                    } else {
                        g
                    };
                    x[o + b] = ((m + EPS) / (g + EPS)).ln() as f32;
                }
                if cfg.gain {
                    x[o + cfg.bands] = (g + EPS).ln() as f32;
                }
                for i in 0..cfg.motion {
                    let m = t.saturating_sub(1 << i);
                    let p = (m * n_ant + a) * per;
                    let ss: f64 = (0..cfg.bands)
                        .map(|j| ((x[o + j] - x[p + j]) as f64).powi(2))
                        .sum();
                    let rms = (ss / cfg.bands as f64).sqrt();
                    x[o + cfg.bands + usize::from(cfg.gain) + i] = (MOTION_EPS + rms).ln() as f32;
                }
            }
        }
        x
    }

    /// Amplitudes with whole runs of zeros (guard bands, fades, dropouts) so the
    /// causal mask changes over time.
    fn zeroy_amps(seed: u64, t: usize, cells: usize, p_zero: u64) -> Vec<f32> {
        let mut r = crate::rng::SplitMix64::new(seed);
        let guard: Vec<bool> = (0..cells).map(|_| r.next_u64().is_multiple_of(5)).collect();
        (0..t * cells)
            .map(|i| {
                let z = guard[i % cells] || r.next_u64() % 100 < p_zero;
                if z {
                    0.0
                } else {
                    (r.next_u64() % 12_800) as f32 / 100.0
                }
            })
            .collect()
    }

    #[test]
    fn stream_state_is_bounded_and_resets() {
        let cfg = FeatureConfig::default();
        let amps = zeroy_amps(7, 300, 64, 10);
        let mut s = FeatureStream::new(cfg, 1, 64).unwrap();
        let first: Vec<f32> = amps
            .chunks(64)
            .flat_map(|r| s.push_amplitudes(r).unwrap().to_vec())
            .collect();
        let bytes = s.bytes();
        assert!(bytes < 8 * 1024, "{bytes}");
        assert_eq!(s.horizon(), MASK_WINDOW + 16);
        s.reset();
        let again: Vec<f32> = amps
            .chunks(64)
            .flat_map(|r| s.push_amplitudes(r).unwrap().to_vec())
            .collect();
        assert_eq!(first, again);
        assert_eq!(
            FeatureStream::new(FeatureConfig { motion: 13, ..cfg }, 1, 64).err(),
            Some(FeatureError::TooManyMotionLags { got: 13, max: 12 })
        );
        assert!(matches!(
            s.push_amplitudes(&[1.0; 63]),
            Err(FeatureError::FrameLength {
                expected: 64,
                got: 63
            })
        ));
        let mut bad = vec![1.0; 64];
        bad[5] = f32::NAN;
        let before = s.clone();
        assert!(matches!(
            s.push_amplitudes(&bad),
            Err(FeatureError::BadAmplitude { col: 5, .. })
        ));
        assert_eq!(s.position(), before.position());
        assert_eq!(s.features(), before.features());
    }

    proptest! {
        /// The stream equals the formula written directly, bit for bit, on inputs whose
        /// active mask changes over time, for every shape and option.
        #[test]
        fn stream_equals_naive_formula(seed in any::<u64>(), t in 1usize..150, ant in 1usize..3,
                                       sub in 1usize..40, bands in 1usize..8, gain in any::<bool>(),
                                       motion in 0usize..7, p_zero in 0u64..60) {
            prop_assume!(sub >= bands);
            let cfg = FeatureConfig { bands, gain, motion };
            let amps = zeroy_amps(seed, t, ant * sub, p_zero);
            let mut s = FeatureStream::new(cfg, ant, sub).unwrap();
            let got: Vec<f32> = amps
                .chunks(ant * sub)
                .flat_map(|r| s.push_amplitudes(r).unwrap().to_vec())
                .collect();
            let want = naive_features(&amps, ant, sub, cfg);
            prop_assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert!(g.to_bits() == w.to_bits(), "value {}: {} vs {}", i, g, w);
            }
        }

        /// A stream rebuilt with `resume_at` from the last `horizon` frames before `t0`
        /// agrees bit for bit with the stream that saw everything, from `t0` on.
        #[test]
        fn resumed_stream_is_exact_after_its_horizon(seed in any::<u64>(), t0 in 0usize..200,
                                                     motion in 0usize..6, p_zero in 0u64..40) {
            let cfg = FeatureConfig { bands: 4, gain: true, motion };
            let (ant, sub) = (1, 16);
            let amps = zeroy_amps(seed, t0 + 40, ant * sub, p_zero);
            let mut full = FeatureStream::new(cfg, ant, sub).unwrap();
            let all: Vec<Vec<f32>> = amps
                .chunks(ant * sub)
                .map(|r| full.push_amplitudes(r).unwrap().to_vec())
                .collect();
            let h = full.horizon();
            let start = t0.saturating_sub(h);
            let mut re = if start == 0 {
                FeatureStream::new(cfg, ant, sub).unwrap()
            } else {
                FeatureStream::resume_at(cfg, ant, sub, start as u64).unwrap()
            };
            for (t, r) in amps.chunks(ant * sub).enumerate().skip(start) {
                let f = re.push_amplitudes(r).unwrap();
                if t >= t0 {
                    prop_assert_eq!(f, &all[t][..], "frame {}", t);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn features_are_finite(seed in any::<u64>(), t in 1usize..20, ant in 1u8..3,
                               sub in 1u16..70, bands in 1usize..20, gain in any::<bool>(),
                               motion in 0usize..6) {
            let mut r = crate::rng::SplitMix64::new(seed);
            let frames: Vec<_> = (0..t).map(|_| {
                frame((0..2 * ant as usize * sub as usize).map(|_| r.next_u64() as i8).collect(), sub)
            }).collect();
            let cfg = FeatureConfig { bands, gain, motion };
            match extract_frames(&frames, cfg) {
                Ok((x, a)) => {
                    prop_assert_eq!(a, ant as usize);
                    prop_assert_eq!(x.len(), t * ant as usize * cfg.per_antenna());
                    prop_assert!(x.iter().all(|v| v.is_finite()));
                }
                Err(FeatureError::TooFewSubcarriers { active, bands: b }) => {
                    prop_assert!(active < b);
                }
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
