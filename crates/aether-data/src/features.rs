//! Raw CSI → per-frame feature vector: the one extractor used for real
//! captures, for CSV rows of amplitudes and for the simulator.
//!
//! For each antenna `a` of a frame with complex CSI `H[a,k] = I + jQ`:
//!
//! 1. amplitude `A[k] = |H[a,k]| = sqrt(I² + Q²)`;
//! 2. only *active* subcarriers are kept: the capture-level mask of subcarriers
//!    that are non-zero in at least half of the frames ([`active_mask`]) — this
//!    drops guard bands and DC, whose values are zero on every ESP32 chip,
//!    whatever order the chip reports them in;
//! 3. per-frame gain normalisation: `g = mean_k A[k]` over active subcarriers
//!    (removes AGC steps and chip-to-chip gain differences);
//! 4. the active subcarriers, in index order, are grouped into `B` contiguous
//!    bands of near-equal size (band `b` holds active indices
//!    `⌊b·K/B⌋ .. ⌊(b+1)·K/B⌋`);
//! 5. band feature `ln((mean_{k∈b} A[k] + ε) / (g + ε))`, `ε = 1e-3`;
//! 6. gain term (on by default) `ln(g + ε)`: the common-mode level;
//! 7. motion terms (`M = 5` by default): for lag `L_i = 2^i` frames,
//!    `m_i(t) = ln(ε_m + sqrt(mean_{j<B} (x_t[j] − x_{t−L_i}[j])²))` over the
//!    antenna's band features, `ε_m = 10⁻³`, with `x_{t−L}` replaced by the
//!    first frame while `t < L` (so `m_i(0) = ln ε_m`).
//!
//! Output per frame, antenna-major: `B` band features, the gain term, the `M`
//! motion terms, so `D = n_antennas · (B + 1 + M)` finite f32 (default
//! `B = 10`, `M = 5`: D = 16 on one antenna).
//!
//! Why the motion terms: a reflector moving by `Δ` changes its path by up to
//! `2Δ` and turns the interference fringe of every subcarrier by
//! `2π·Δpath/λ` (λ ≈ 12.4 cm at 2.4 GHz). *Where* the fringes sit depends on
//! centimetres of room geometry, so the band values of one gesture differ from
//! room to room; how much they change over a lag does not. For a fringe of
//! frequency `f` the change over lag `L` is `∝ |sin(π f L / rate)|`, so the
//! profile across lags 1, 2, 4, 8, 16 frames is a Doppler-speed signature,
//! and the log turns the unknown reflection strength (distance, cross-section)
//! into an additive offset that input normalisation removes. Band features
//! are gain invariant, so AGC steps do not count as motion. All terms are
//! causal: a node keeps the last `2^(M−1)` band vectors. Phase is not used:
//! ESP32 phase carries a random per-frame offset and slope, the CSV sources
//! have none, and amplitude-only features keep simulator, raw captures and
//! amplitude CSVs in one feature space (see docs/features.md).

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

/// Subcarriers non-zero in at least half of the rows. `rows` yields one
/// amplitude row per frame, each of length `n`.
pub fn active_mask<'a, I: IntoIterator<Item = &'a [f32]>>(rows: I, n: usize) -> Vec<bool> {
    let mut count = vec![0usize; n];
    let mut total = 0usize;
    for r in rows {
        total += 1;
        for (c, &v) in count.iter_mut().zip(r) {
            if v != 0.0 {
                *c += 1;
            }
        }
    }
    count.iter().map(|&c| total > 0 && 2 * c >= total).collect()
}

/// Amplitudes `|I + jQ|` of one antenna's subcarriers from interleaved I/Q.
pub fn amplitudes(iq: &[i8], out: &mut Vec<f32>) {
    out.clear();
    out.extend(iq.chunks_exact(2).map(|p| {
        let (i, q) = (p[0] as f32, p[1] as f32);
        (i * i + q * q).sqrt()
    }));
}

/// Features of one antenna's amplitude row under `mask` (formula in the
/// module docs), appended to `out`; the motion terms, which need earlier
/// frames, are appended as 0 and filled by the sequence extractors. `amps.len() == mask.len()`; the mask must
/// hold at least `cfg.bands` active subcarriers (checked by the callers).
pub fn extract_amplitude_row(amps: &[f32], mask: &[bool], cfg: FeatureConfig, out: &mut Vec<f32>) {
    let active: Vec<f64> = amps
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(&a, _)| a as f64)
        .collect();
    let k = active.len();
    let g = active.iter().sum::<f64>() / k.max(1) as f64;
    for b in 0..cfg.bands {
        let lo = b * k / cfg.bands;
        let hi = ((b + 1) * k / cfg.bands).max(lo + 1).min(k);
        let m = if hi > lo {
            active[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
        } else {
            g
        };
        out.push(((m + EPS) / (g + EPS)).ln() as f32);
    }
    if cfg.gain {
        out.push((g + EPS).ln() as f32);
    }
    // filled by `fill_motion` once the earlier frames are known
    out.extend(std::iter::repeat_n(0.0, cfg.motion));
}

/// Fills the motion terms of every antenna in `x` (`T × n_ant·per_antenna`,
/// row-major): term `i` of frame `t` is
/// `ln(ε_m + sqrt(mean_{j<B} (x[t,j] − x[max(t − 2^i, 0), j])²))` over that
/// antenna's `B` band features, `ε_m = 10⁻³` (so `ln ε_m` on the first frame).
fn fill_motion(x: &mut [f32], n_ant: usize, cfg: FeatureConfig) {
    if cfg.motion == 0 {
        return;
    }
    let per = cfg.per_antenna();
    let row = n_ant * per;
    let t = x.len() / row.max(1);
    let first = cfg.bands + usize::from(cfg.gain);
    for n in (0..t).rev() {
        for a in 0..n_ant {
            for i in 0..cfg.motion {
                let m = n.saturating_sub(1usize << i.min(30));
                let ss: f64 = (0..cfg.bands)
                    .map(|j| {
                        let (u, v) = (x[m * row + a * per + j], x[n * row + a * per + j]);
                        ((v - u) as f64).powi(2)
                    })
                    .sum();
                let rms = (ss / cfg.bands.max(1) as f64).sqrt();
                x[n * row + a * per + first + i] = (MOTION_EPS + rms).ln() as f32;
            }
        }
    }
}

/// Features of amplitude rows (e.g. a CSV of per-subcarrier amplitudes, one
/// row per frame, single antenna): `T×n` row-major in, `T×(B+gain+M)` row-major out.
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
    for (i, &v) in rows.iter().enumerate() {
        if !v.is_finite() || v < 0.0 {
            return Err(FeatureError::BadAmplitude {
                row: i / n,
                col: i % n,
                value: v,
            });
        }
    }
    let mask = active_mask(rows.chunks_exact(n), n);
    let active = mask.iter().filter(|&&m| m).count();
    if active < cfg.bands {
        return Err(FeatureError::TooFewSubcarriers {
            active,
            bands: cfg.bands,
        });
    }
    let mut out = Vec::with_capacity(rows.len() / n * cfg.per_antenna());
    for r in rows.chunks_exact(n) {
        extract_amplitude_row(r, &mask, cfg, &mut out);
    }
    fill_motion(&mut out, 1, cfg);
    Ok(out)
}

/// Features of a sequence of raw CSI frames of one shape: `T × (n_ant·(B+gain+M))`
/// row-major, plus the number of antennas. The active mask is computed per
/// antenna over all frames.
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
    // amps[t][a·sub + k]
    let mut amps = Vec::with_capacity(frames.len() * ant * sub);
    let mut buf = Vec::new();
    for f in frames {
        amplitudes(&f.iq, &mut buf);
        amps.extend_from_slice(&buf);
    }
    let masks: Vec<Vec<bool>> = (0..ant)
        .map(|a| {
            active_mask(
                amps.chunks_exact(ant * sub)
                    .map(|r| &r[a * sub..(a + 1) * sub]),
                sub,
            )
        })
        .collect();
    for m in &masks {
        let active = m.iter().filter(|&&x| x).count();
        if active < cfg.bands {
            return Err(FeatureError::TooFewSubcarriers {
                active,
                bands: cfg.bands,
            });
        }
    }
    let mut out = Vec::with_capacity(frames.len() * ant * cfg.per_antenna());
    for r in amps.chunks_exact(ant * sub) {
        for (a, m) in masks.iter().enumerate() {
            extract_amplitude_row(&r[a * sub..(a + 1) * sub], m, cfg, &mut out);
        }
    }
    fill_motion(&mut out, ant, cfg);
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
