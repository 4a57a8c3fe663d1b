//! Per-recording summary statistics: a recording of `T × D` frames becomes one
//! row of `D · S` numbers, column-major (the `S` statistics of column 0, then of
//! column 1, …), computed in f64.
//!
//! With `x` one column and `Δ_t = x_{t+1} − x_t` (`T − 1` differences):
//!
//! * [`StatSet::Percentiles`] (`S = 6`, the anchor statistics of the original AETHER specification): mean,
//!   population std `sqrt(mean((x − mean)²))`, 10th and 90th percentile (linear
//!   interpolation between order statistics, numpy's default: position
//!   `q·(T − 1)` in the sorted column), mean `|Δ|`, population std of `Δ`;
//! * [`StatSet::MinMax`] (`S = 5`, the WiBaSL anchors): mean, std, min, max,
//!   mean `|Δ|`.
//!
//! A recording of one frame has no differences: its Δ statistics are 0.

use aether_data::Dataset;

/// Which statistics describe a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatSet {
    /// mean, std, p10, p90, mean |Δ|, std Δ.
    #[default]
    Percentiles,
    /// mean, std, min, max, mean |Δ|.
    MinMax,
}

impl StatSet {
    /// The statistics' names, in row order.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            StatSet::Percentiles => &["mean", "std", "p10", "p90", "mean_abs_diff", "std_diff"],
            StatSet::MinMax => &["mean", "std", "min", "max", "mean_abs_diff"],
        }
    }

    /// Statistics per column `S`.
    pub fn per_column(self) -> usize {
        self.names().len()
    }

    /// Feature names `{column}_{statistic}` of a row.
    pub fn feature_names(self, columns: &[String]) -> Vec<String> {
        columns
            .iter()
            .flat_map(|c| self.names().iter().map(move |s| format!("{c}_{s}")))
            .collect()
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

fn std(x: &[f64], m: f64) -> f64 {
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// The `q`-quantile (`0 ≤ q ≤ 1`) of sorted `s` by linear interpolation; 0 if empty.
pub fn quantile_sorted(s: &[f64], q: f64) -> f64 {
    let Some(&last) = s.last() else {
        return 0.0;
    };
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    match s.get(lo + 1) {
        Some(&hi) => s[lo] + frac * (hi - s[lo]),
        None => last,
    }
}

/// Appends the statistics of one column `x` to `out`.
pub fn column_stats(x: &[f64], set: StatSet, out: &mut Vec<f64>) {
    let m = mean(x);
    let sd = std(x, m);
    let diffs: Vec<f64> = x.windows(2).map(|w| w[1] - w[0]).collect();
    let abs_diff: Vec<f64> = diffs.iter().map(|d| d.abs()).collect();
    let mad = mean(&abs_diff);
    out.extend([m, sd]);
    match set {
        StatSet::Percentiles => {
            let mut s = x.to_vec();
            s.sort_by(f64::total_cmp);
            out.extend([
                quantile_sorted(&s, 0.1),
                quantile_sorted(&s, 0.9),
                mad,
                std(&diffs, mean(&diffs)),
            ]);
        }
        StatSet::MinMax => {
            let min = x.iter().copied().fold(f64::INFINITY, f64::min);
            let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let (min, max) = if x.is_empty() { (0.0, 0.0) } else { (min, max) };
            out.extend([min, max, mad]);
        }
    }
}

/// The statistics row (`dim · S` values) of one recording's `T × dim` frames;
/// a trailing partial frame is ignored.
pub fn recording_stats(frames: &[f32], dim: usize, set: StatSet) -> Vec<f64> {
    let t = frames.len().checked_div(dim).unwrap_or(0);
    let mut out = Vec::with_capacity(dim * set.per_column());
    let mut col = Vec::with_capacity(t);
    for d in 0..dim {
        col.clear();
        col.extend((0..t).map(|i| f64::from(frames[i * dim + d])));
        column_stats(&col, set, &mut out);
    }
    out
}

/// The statistics of every recording of `ds`: `n × F` row-major and `F = D · S`.
pub fn summary_matrix(ds: &Dataset, set: StatSet) -> (Vec<f64>, usize) {
    let f = ds.dim() * set.per_column();
    let mut rows = Vec::with_capacity(ds.recordings.len() * f);
    for r in &ds.recordings {
        rows.extend(recording_stats(&r.frames, ds.dim(), set));
    }
    (rows, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_column() {
        // x = 1, 3, 2, 6: mean 3, var (4+0+1+9)/4 = 3.5; sorted 1 2 3 6:
        // p10 at 0.3 → 1.3, p90 at 2.7 → 3 + 0.7·3 = 5.1; Δ = 2, −1, 4:
        // mean |Δ| 7/3, mean Δ 5/3, var Δ = ((1/3)² + (8/3)² + (7/3)²)/3 = 114/27
        let x = [1.0, 3.0, 2.0, 6.0];
        let mut p = Vec::new();
        column_stats(&x, StatSet::Percentiles, &mut p);
        let want = [
            3.0,
            3.5f64.sqrt(),
            1.3,
            5.1,
            7.0 / 3.0,
            (114.0f64 / 27.0).sqrt(),
        ];
        for (a, b) in p.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{p:?}");
        }
        let mut m = Vec::new();
        column_stats(&x, StatSet::MinMax, &mut m);
        assert_eq!(m[2..4], [1.0, 6.0]);
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn rows_are_column_major_and_one_frame_is_fine() {
        let r = recording_stats(&[1.0, 10.0, 3.0, 30.0], 2, StatSet::MinMax);
        assert_eq!(
            r,
            vec![2.0, 1.0, 1.0, 3.0, 2.0, 20.0, 10.0, 10.0, 30.0, 20.0]
        );
        let one = recording_stats(&[4.0], 1, StatSet::Percentiles);
        assert_eq!(one, vec![4.0, 0.0, 4.0, 4.0, 0.0, 0.0]);
        assert_eq!(
            StatSet::MinMax.feature_names(&["a".into()]),
            vec!["a_mean", "a_std", "a_min", "a_max", "a_mean_abs_diff"]
        );
    }

    #[test]
    fn quantiles_match_numpy_linear() {
        let s = [0.0, 10.0];
        assert_eq!(quantile_sorted(&s, 0.1), 1.0);
        assert_eq!(quantile_sorted(&s, 1.0), 10.0);
        assert_eq!(quantile_sorted(&[], 0.5), 0.0);
        assert_eq!(quantile_sorted(&[7.0], 0.9), 7.0);
    }
}
