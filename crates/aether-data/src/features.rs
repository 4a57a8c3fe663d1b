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
//! 7. motion term (on by default): `sqrt(mean_j (x_t[j] − x_{t−1}[j])²)` over
//!    the antenna's band and gain features, 0 on the first frame — a causal,
//!    streamable measure of how fast the channel changes (Doppler energy),
//!    independent of where the interference pattern happens to sit.
//!
//! Output per frame, antenna-major: `B` band features, the gain term, the
//! motion term, so `D = n_antennas · (B + 2)` finite f32 (default `B = 14`:
//! D = 16 on one antenna). Motion shows up as the time variation of the relative band
//! amplitudes (a moving reflector changes the multipath interference pattern
//! differently at different subcarrier frequencies) and of the gain term: over
//! a 20 MHz channel a body path shifts all subcarriers almost alike, and that
//! common-mode part is removed from the band features by the normalisation but
//! kept in the gain term. The gain term also carries AGC steps and chip gain
//! offsets, which per-recording normalisation (in training) takes out. Phase is not used:
//! ESP32 phase carries a random per-frame offset and slope, the CSV sources
//! have none, and amplitude-only features keep simulator, raw captures and
//! amplitude CSVs in one feature space (see docs/features.md).

use crate::wire::{parse_capture, CaptureReport, RawCsiFrame};

/// Default number of subcarrier bands per antenna (with the gain and motion terms: 16 features).
pub const DEFAULT_BANDS: usize = 14;
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

/// The extractor: number of bands per antenna and whether to append the
/// log-gain term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureConfig {
    /// Bands per antenna (`B`).
    pub bands: usize,
    /// Append `ln(g + ε)` per antenna (feature `a{a}_gain`).
    pub gain: bool,
    /// Append the motion term per antenna (feature `a{a}_motion`): the RMS
    /// change of that antenna's band (and gain) features since the previous
    /// frame, 0 on the first frame.
    pub motion: bool,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            bands: DEFAULT_BANDS,
            gain: true,
            motion: true,
        }
    }
}

impl FeatureConfig {
    /// Features per antenna: `B`, +1 with the gain term, +1 with the motion term.
    pub fn per_antenna(&self) -> usize {
        self.bands + usize::from(self.gain) + usize::from(self.motion)
    }
}

/// Feature names for `n_antennas` antennas: `a{antenna}_b{band:02}`, then
/// `a{antenna}_gain` when the gain term is on.
pub fn feature_names(n_antennas: usize, cfg: FeatureConfig) -> Vec<String> {
    (0..n_antennas)
        .flat_map(|a| {
            (0..cfg.bands)
                .map(move |b| format!("a{a}_b{b:02}"))
                .chain(cfg.gain.then(|| format!("a{a}_gain")))
                .chain(cfg.motion.then(|| format!("a{a}_motion")))
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
/// module docs), appended to `out`; the motion term, which needs the previous
/// frame, is appended as 0 and filled by the sequence extractors. `amps.len() == mask.len()`; the mask must
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
    if cfg.motion {
        out.push(0.0); // filled by `fill_motion` once the previous frame is known
    }
}

/// Fills the motion term of every antenna in `x` (`T × n_ant·per_antenna`,
/// row-major): `sqrt(mean_j (x[t,j] − x[t−1,j])²)` over that antenna's other
/// features, 0 at `t = 0`.
fn fill_motion(x: &mut [f32], n_ant: usize, cfg: FeatureConfig) {
    if !cfg.motion {
        return;
    }
    let per = cfg.per_antenna();
    let row = n_ant * per;
    let t = x.len() / row.max(1);
    for n in 1..t {
        for a in 0..n_ant {
            let (prev, cur) = x.split_at_mut(n * row);
            let p = &prev[(n - 1) * row + a * per..(n - 1) * row + (a + 1) * per - 1];
            let c = &mut cur[a * per..(a + 1) * per];
            let ss: f64 = p
                .iter()
                .zip(c.iter())
                .map(|(u, v)| ((v - u) as f64).powi(2))
                .sum();
            c[per - 1] = (ss / (per - 1).max(1) as f64).sqrt() as f32;
        }
    }
}

/// Features of amplitude rows (e.g. a CSV of per-subcarrier amplitudes, one
/// row per frame, single antenna): `T×n` row-major in, `T×(B+gain)` row-major out.
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

/// Features of a sequence of raw CSI frames of one shape: `T × (n_ant·(B+gain))`
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
                motion: false,
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
        for (x, y) in fa.iter().zip(&fb).take(14) {
            assert!((x - y).abs() < 1e-3, "{x} vs {y}");
        }
        assert_eq!(fa.len(), 16);
        assert!((fb[14] - fa[14] - 3.7f32.ln()).abs() < 1e-3);
        assert_eq!(fa[15], 0.0); // motion of the first frame
    }

    #[test]
    fn errors() {
        let c = FeatureConfig {
            bands: 4,
            gain: true,
            motion: true,
        };
        assert_eq!(extract_frames(&[], c), Err(FeatureError::NoFrames));
        assert_eq!(
            extract_frames(
                &[frame(vec![1; 8], 4)],
                FeatureConfig {
                    bands: 0,
                    gain: true,
                    motion: true,
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
                    motion: false,
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
            motion: false,
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
                    motion: false,
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
                    motion: true,
                }
            ),
            ["a0_b00", "a0_gain", "a0_motion"]
        );
    }

    #[test]
    fn motion_term_is_rms_change() {
        let cfg = FeatureConfig {
            bands: 2,
            gain: false,
            motion: true,
        };
        let f1 = frame(vec![3, 0, 0, 0, 3, 4, 0, 0], 4);
        let f2 = frame(vec![5, 0, 0, 0, 3, 4, 0, 0], 4);
        let (x, _) = extract_frames(&[f1.clone(), f2, f1], cfg).unwrap();
        assert_eq!(x.len(), 9);
        assert_eq!(x[2], 0.0);
        let rms =
            |a: &[f32], b: &[f32]| (((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)) / 2.0).sqrt();
        assert!((x[5] - rms(&x[0..2], &x[3..5])).abs() < 1e-6);
        assert!((x[8] - rms(&x[3..5], &x[6..8])).abs() < 1e-6);
        assert!(x[5] > 0.0);
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
            motion: false,
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
                               motion in any::<bool>()) {
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
