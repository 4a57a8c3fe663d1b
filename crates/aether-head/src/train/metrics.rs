//! Classification metrics and per-recording voting.
//!
//! Confusion `M[t][p]` counts windows of true class `t` predicted as `p`.
//! `precision_c = M[c][c] / Σₜ M[t][c]`, `recall_c = M[c][c] / Σₚ M[c][p]`,
//! `F1_c = 2PR/(P+R)` (0 when undefined); macro-F1 averages `F1_c` over the classes
//! that occur in the labels or the predictions. Voting: every recording's windows
//! average their logits and the recording takes the argmax of the mean.

use std::collections::HashMap;
use std::hash::Hash;

use super::error::TrainError;
use super::model::argmax;

/// A `C × C` confusion matrix, rows = true class, columns = predicted class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// An all-zero matrix for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    /// Counts one prediction (indices must be `< classes`).
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth * self.classes + predicted] += 1;
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Count of true class `t` predicted as `p`.
    pub fn get(&self, t: usize, p: usize) -> u64 {
        self.counts[t * self.classes + p]
    }

    /// Rows (true class) of counts, for JSON and plots.
    pub fn rows(&self) -> Vec<Vec<u64>> {
        self.counts
            .chunks(self.classes.max(1))
            .map(<[u64]>::to_vec)
            .collect()
    }

    /// Total count.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Accuracy, macro-F1 and per-class figures of a set of predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationReport {
    /// Fraction of correct predictions (0 when empty).
    pub accuracy: f64,
    /// Mean F1 over classes present in labels or predictions.
    pub macro_f1: f64,
    /// Per-class precision.
    pub precision: Vec<f64>,
    /// Per-class recall.
    pub recall: Vec<f64>,
    /// Per-class F1.
    pub f1: Vec<f64>,
    /// Per-class number of true instances.
    pub support: Vec<u64>,
    /// The confusion matrix.
    pub confusion: ConfusionMatrix,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Report over `predictions` vs `labels` (equal lengths, every index `< classes`).
pub fn classification_report(
    predictions: &[usize],
    labels: &[usize],
    classes: usize,
) -> Result<ClassificationReport, TrainError> {
    if predictions.len() != labels.len() {
        return Err(TrainError::LengthMismatch {
            what: "predictions",
            expected: labels.len(),
            got: predictions.len(),
        });
    }
    let mut cm = ConfusionMatrix::new(classes);
    for (i, (&p, &t)) in predictions.iter().zip(labels).enumerate() {
        for v in [p, t] {
            if v >= classes {
                return Err(TrainError::Label {
                    index: i,
                    label: v,
                    classes,
                });
            }
        }
        cm.add(t, p);
    }
    let correct: u64 = (0..classes).map(|c| cm.get(c, c)).sum();
    let mut precision = vec![0.0; classes];
    let mut recall = vec![0.0; classes];
    let mut f1 = vec![0.0; classes];
    let mut support = vec![0u64; classes];
    let (mut f1_sum, mut present) = (0.0, 0usize);
    for c in 0..classes {
        let tp = cm.get(c, c);
        let row: u64 = (0..classes).map(|p| cm.get(c, p)).sum();
        let col: u64 = (0..classes).map(|t| cm.get(t, c)).sum();
        precision[c] = ratio(tp, col);
        recall[c] = ratio(tp, row);
        let s = precision[c] + recall[c];
        f1[c] = if s > 0.0 {
            2.0 * precision[c] * recall[c] / s
        } else {
            0.0
        };
        support[c] = row;
        if row > 0 || col > 0 {
            f1_sum += f1[c];
            present += 1;
        }
    }
    Ok(ClassificationReport {
        accuracy: ratio(correct, labels.len() as u64),
        macro_f1: if present == 0 {
            0.0
        } else {
            f1_sum / present as f64
        },
        precision,
        recall,
        f1,
        support,
        confusion: cm,
    })
}

/// Report from flat logits `[len, classes]` (argmax per row) vs `labels`.
pub fn report_from_logits(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
) -> Result<ClassificationReport, TrainError> {
    let preds = predictions(logits, labels.len(), classes)?;
    classification_report(&preds, labels, classes)
}

fn predictions(logits: &[f32], rows: usize, classes: usize) -> Result<Vec<usize>, TrainError> {
    if classes == 0 || logits.len() != rows * classes {
        return Err(TrainError::LengthMismatch {
            what: "logits",
            expected: rows * classes,
            got: logits.len(),
        });
    }
    Ok(logits.chunks_exact(classes).map(argmax).collect())
}

/// The vote of one recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingVote<R> {
    /// Recording identifier.
    pub recording: R,
    /// True class of its windows.
    pub label: usize,
    /// Argmax of the mean logits.
    pub predicted: usize,
    /// Mean logits over its windows, `[C]`.
    pub mean_logits: Vec<f32>,
    /// Number of windows that voted.
    pub windows: usize,
}

/// Groups windows by recording (first-appearance order) and averages their logits.
///
/// `logits` is `[len, classes]` flat; every window of one recording must carry the same
/// label, else an error names the recording's first window.
pub fn vote_by_recording<R: Clone + Eq + Hash>(
    logits: &[f32],
    classes: usize,
    recordings: &[R],
    labels: &[usize],
) -> Result<Vec<RecordingVote<R>>, TrainError> {
    if recordings.len() != labels.len() {
        return Err(TrainError::LengthMismatch {
            what: "recordings",
            expected: labels.len(),
            got: recordings.len(),
        });
    }
    predictions(logits, labels.len(), classes)?;
    let mut index: HashMap<&R, usize> = HashMap::new();
    let mut sums: Vec<(usize, Vec<f64>, usize, usize)> = Vec::new();
    for (i, (r, &y)) in recordings.iter().zip(labels).enumerate() {
        if y >= classes {
            return Err(TrainError::Label {
                index: i,
                label: y,
                classes,
            });
        }
        let slot = *index.entry(r).or_insert_with(|| {
            sums.push((i, vec![0.0; classes], 0, y));
            sums.len() - 1
        });
        let (first, acc, count, label) = &mut sums[slot];
        if *label != y {
            return Err(TrainError::config(
                "recording labels",
                format!("windows {first} and {i} of one recording differ ({label} vs {y})"),
            ));
        }
        for (a, &z) in acc.iter_mut().zip(&logits[i * classes..(i + 1) * classes]) {
            *a += f64::from(z);
        }
        *count += 1;
    }
    Ok(sums
        .into_iter()
        .map(|(first, acc, count, label)| {
            let mean: Vec<f32> = acc.iter().map(|&s| (s / count as f64) as f32).collect();
            RecordingVote {
                recording: recordings[first].clone(),
                label,
                predicted: argmax(&mean),
                mean_logits: mean,
                windows: count,
            }
        })
        .collect())
}

/// Report over recording votes (one prediction per recording).
pub fn report_from_votes<R>(
    votes: &[RecordingVote<R>],
    classes: usize,
) -> Result<ClassificationReport, TrainError> {
    let p: Vec<usize> = votes.iter().map(|v| v.predicted).collect();
    let t: Vec<usize> = votes.iter().map(|v| v.label).collect();
    classification_report(&p, &t, classes)
}

/// Mean cross-entropy `−log softmax(z)_y` of flat logits `[len, classes]` vs `labels`.
pub fn mean_cross_entropy(
    logits: &[f32],
    labels: &[usize],
    classes: usize,
) -> Result<f64, TrainError> {
    predictions(logits, labels.len(), classes)?;
    if labels.is_empty() {
        return Ok(0.0);
    }
    let mut p = vec![0.0f32; classes];
    let mut total = 0.0f64;
    for (i, (z, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        if y >= classes {
            return Err(TrainError::Label {
                index: i,
                label: y,
                classes,
            });
        }
        let lse = super::model::softmax(z, &mut p);
        total += f64::from(lse - z[y]);
    }
    Ok(total / labels.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_by_hand() {
        // truth 0,0,1,1,2 ; pred 0,1,1,1,0
        let r = classification_report(&[0, 1, 1, 1, 0], &[0, 0, 1, 1, 2], 4).unwrap();
        assert!((r.accuracy - 0.6).abs() < 1e-12);
        assert!((r.precision[0] - 0.5).abs() < 1e-12);
        assert!((r.recall[0] - 0.5).abs() < 1e-12);
        assert!((r.precision[1] - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.recall[1], 1.0);
        assert_eq!(r.f1[2], 0.0);
        // Class 3 absent everywhere: excluded from macro-F1.
        let want = (0.5 + 0.8 + 0.0) / 3.0;
        assert!((r.macro_f1 - want).abs() < 1e-12);
        assert_eq!(r.confusion.get(2, 0), 1);
        assert_eq!(r.support, vec![2, 2, 1, 0]);
        assert_eq!(r.confusion.total(), 5);
        assert!(classification_report(&[0], &[5], 2).is_err());
        assert!(classification_report(&[0], &[], 2).is_err());
    }

    #[test]
    fn voting_averages_logits() {
        let logits = [1.0, 0.0, 0.0, 3.0, 2.0, 0.0, 5.0, 0.0];
        let recs = ["a", "a", "b", "c"];
        let v = vote_by_recording(&logits, 2, &recs, &[1, 1, 0, 0]).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].mean_logits, vec![0.5, 1.5]);
        assert_eq!(v[0].predicted, 1);
        assert_eq!(v[0].windows, 2);
        let r = report_from_votes(&v, 2).unwrap();
        assert_eq!(r.accuracy, 1.0);
        assert!(vote_by_recording(&logits, 2, &recs, &[1, 0, 0, 0]).is_err());
        assert!(vote_by_recording(&logits[..7], 2, &recs, &[1, 1, 0, 0]).is_err());
    }

    #[test]
    fn cross_entropy_of_uniform_logits() {
        let ce = mean_cross_entropy(&[0.0; 6], &[0, 2], 3).unwrap();
        assert!((ce - 3f64.ln()).abs() < 1e-6);
    }
}
