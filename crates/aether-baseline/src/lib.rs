//! # aether-baseline
//!
//! The baseline every result table sets beside the head: a random forest on
//! per-recording summary statistics, what a practitioner would try first.
//!
//! * [`stats`]: a recording `T × D` → one row of `D · S` statistics
//!   ([`StatSet::Percentiles`]: mean, population std, 10th / 90th percentile,
//!   mean |Δ|, std of Δ; [`StatSet::MinMax`]: mean, std, min, max, mean |Δ|);
//! * [`Forest`]: `trees` classification trees (smartcore CART, Gini, grown to
//!   purity, `⌊√F⌋` features tried per split, a per-class bootstrap each), every
//!   tree seeded from `(seed, tree index)` and trained in parallel, so the forest
//!   is the same whatever the thread count; prediction is the majority vote
//!   (ties: the lowest class index);
//! * [`evaluate`] (train → test) and [`kfold`] (stratified by recording) return
//!   per-recording predictions with accuracy, macro-F1, per-class P/R/F1 and the
//!   confusion matrix (`aether_head::train::ClassificationReport`).
//!
//! ```
//! use aether_baseline::{evaluate, ForestConfig};
//! use aether_data::{Dataset, Recording};
//! // class = sign of column 0's mean
//! let rec = |class: usize, i: usize| Recording {
//!     class,
//!     name: format!("r{i}"),
//!     frames: vec![if class == 0 { -1.0 - i as f32 } else { 1.0 + i as f32 }, 0.5, 0.0, 0.5],
//! };
//! let ds = Dataset {
//!     classes: vec!["neg".into(), "pos".into()],
//!     feature_names: vec!["a".into(), "b".into()],
//!     recordings: (0..8).map(|i| rec(i % 2, i)).collect(),
//! };
//! let cfg = ForestConfig { trees: 25, ..ForestConfig::default() };
//! let e = evaluate(&ds, &ds, &cfg).unwrap();
//! assert_eq!(e.report.accuracy, 1.0);
//! ```
#![deny(missing_docs)]

pub mod stats;

use aether_data::{DataError, Dataset};
use aether_head::train::{classification_report, ClassificationReport};
use rayon::prelude::*;
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

pub use stats::{summary_matrix, StatSet};

/// Trees per forest by default (the anchors' `n_estimators`).
pub const DEFAULT_TREES: usize = 500;

/// Why a baseline could not be trained or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// No training recordings.
    #[error("no training recordings")]
    EmptyTrain,
    /// Zero trees requested.
    #[error("the forest needs at least one tree")]
    NoTrees,
    /// Test and training data have different feature counts.
    #[error("test data has {test} features per frame, training data {train}")]
    DimMismatch {
        /// Training `D`.
        train: usize,
        /// Test `D`.
        test: usize,
    },
    /// A test class the training data does not name.
    #[error("test class `{0}` is not a training class")]
    UnknownClass(String),
    /// A recording whose frames are not a positive multiple of `D`, or a class
    /// index out of range.
    #[error("recording `{name}`: {detail}")]
    BadRecording {
        /// Recording name.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A split of the dataset failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// smartcore refused to fit or predict.
    #[error("random forest: {0}")]
    Forest(String),
    /// The metrics could not be computed.
    #[error("metrics: {0}")]
    Metrics(String),
}

/// Forest and feature settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForestConfig {
    /// Number of trees.
    pub trees: usize,
    /// Seed of the bootstrap samples and feature draws.
    pub seed: u64,
    /// Summary statistics per column.
    pub stats: StatSet,
    /// Features tried per split (`None`: `⌊√F⌋`).
    pub max_features: Option<usize>,
}

impl Default for ForestConfig {
    fn default() -> Self {
        Self {
            trees: DEFAULT_TREES,
            seed: 0,
            stats: StatSet::Percentiles,
            max_features: None,
        }
    }
}

type Tree = RandomForestClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>>;

/// A trained forest over the summary statistics of one set of classes.
pub struct Forest {
    trees: Vec<Tree>,
    classes: Vec<String>,
    dim: usize,
    config: ForestConfig,
}

impl std::fmt::Debug for Forest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forest")
            .field("trees", &self.trees.len())
            .field("classes", &self.classes)
            .field("dim", &self.dim)
            .field("config", &self.config)
            .finish()
    }
}

/// `n × f` row-major `rows` as a smartcore matrix, stored column-major (the
/// layout smartcore's own constructors produce).
fn matrix(rows: Vec<f64>, n: usize, f: usize) -> Result<DenseMatrix<f64>, BaselineError> {
    let mut cols = vec![0.0; rows.len()];
    for (i, row) in rows.chunks_exact(f.max(1)).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            cols[j * n + i] = v;
        }
    }
    DenseMatrix::new(n, f, cols, true).map_err(|e| BaselineError::Forest(e.to_string()))
}

fn check_frames(ds: &Dataset) -> Result<(), BaselineError> {
    let d = ds.dim();
    for r in &ds.recordings {
        if d == 0 || r.frames.is_empty() || r.frames.len() % d != 0 {
            return Err(BaselineError::BadRecording {
                name: r.name.clone(),
                detail: format!(
                    "{} values, not a positive multiple of D = {d}",
                    r.frames.len()
                ),
            });
        }
        if r.class >= ds.classes.len() {
            return Err(BaselineError::BadRecording {
                name: r.name.clone(),
                detail: format!("class {} of {}", r.class, ds.classes.len()),
            });
        }
    }
    Ok(())
}

impl Forest {
    /// Trains on every recording of `train` (one row of statistics each).
    pub fn fit(train: &Dataset, config: &ForestConfig) -> Result<Forest, BaselineError> {
        if train.recordings.is_empty() {
            return Err(BaselineError::EmptyTrain);
        }
        if config.trees == 0 {
            return Err(BaselineError::NoTrees);
        }
        check_frames(train)?;
        let (rows, f) = summary_matrix(train, config.stats);
        let n = train.recordings.len();
        let x = matrix(rows, n, f)?;
        let y: Vec<u32> = train.recordings.iter().map(|r| r.class as u32).collect();
        let trees = (0..config.trees)
            .into_par_iter()
            .map(|t| {
                let seed = aether_data::rng::SplitMix64::derive(config.seed, &[0x7EE5, t as u64])
                    .next_u64();
                let mut p = RandomForestClassifierParameters::default()
                    .with_n_trees(1)
                    .with_seed(seed);
                if let Some(m) = config.max_features {
                    p = p.with_m(m.clamp(1, f));
                }
                Tree::fit(&x, &y, p).map_err(|e| BaselineError::Forest(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Forest {
            trees,
            classes: train.classes.clone(),
            dim: train.dim(),
            config: *config,
        })
    }

    /// The training classes; predictions index this.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Votes per recording of `test`: `votes[i][c]` trees chose class `c`.
    pub fn votes(&self, test: &Dataset) -> Result<Vec<Vec<u32>>, BaselineError> {
        if test.dim() != self.dim {
            return Err(BaselineError::DimMismatch {
                train: self.dim,
                test: test.dim(),
            });
        }
        check_frames(test)?;
        let n = test.recordings.len();
        let c = self.classes.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let (rows, f) = summary_matrix(test, self.config.stats);
        let x = matrix(rows, n, f)?;
        let per_tree = self
            .trees
            .par_iter()
            .map(|t| {
                t.predict(&x)
                    .map_err(|e| BaselineError::Forest(e.to_string()))
            })
            .collect::<Result<Vec<Vec<u32>>, _>>()?;
        let mut votes = vec![vec![0u32; c]; n];
        for labels in per_tree {
            for (v, &l) in votes.iter_mut().zip(&labels) {
                if let Some(x) = v.get_mut(l as usize) {
                    *x += 1;
                }
            }
        }
        Ok(votes)
    }

    /// The predicted class (index into [`Forest::classes`]) of every recording of
    /// `test`: the majority vote, ties to the lowest index.
    pub fn predict(&self, test: &Dataset) -> Result<Vec<usize>, BaselineError> {
        Ok(self
            .votes(test)?
            .iter()
            .map(|v| {
                v.iter()
                    .enumerate()
                    .fold(
                        (0, 0),
                        |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) },
                    )
                    .0
            })
            .collect())
    }
}

/// Predictions on a test set and their scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Class names (the training classes); labels and predictions index this.
    pub classes: Vec<String>,
    /// Test recording names, in order.
    pub recordings: Vec<String>,
    /// True class of each test recording.
    pub labels: Vec<usize>,
    /// Predicted class of each test recording.
    pub predictions: Vec<usize>,
    /// Accuracy, macro-F1, per-class precision / recall / F1, confusion.
    pub report: ClassificationReport,
}

/// Maps `test`'s class indices to `classes` by name.
fn labels_in(test: &Dataset, classes: &[String]) -> Result<Vec<usize>, BaselineError> {
    test.recordings
        .iter()
        .map(|r| {
            let name = test
                .classes
                .get(r.class)
                .ok_or_else(|| BaselineError::BadRecording {
                    name: r.name.clone(),
                    detail: format!("class {} of {}", r.class, test.classes.len()),
                })?;
            classes
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| BaselineError::UnknownClass(name.clone()))
        })
        .collect()
}

fn scored(
    classes: Vec<String>,
    recordings: Vec<String>,
    labels: Vec<usize>,
    predictions: Vec<usize>,
) -> Result<Evaluation, BaselineError> {
    let report = classification_report(&predictions, &labels, classes.len())
        .map_err(|e| BaselineError::Metrics(e.to_string()))?;
    Ok(Evaluation {
        classes,
        recordings,
        labels,
        predictions,
        report,
    })
}

/// Trains on `train` and scores `test` (classes matched by name; every test
/// class must be a training class).
pub fn evaluate(
    train: &Dataset,
    test: &Dataset,
    config: &ForestConfig,
) -> Result<Evaluation, BaselineError> {
    let labels = labels_in(test, &train.classes)?;
    let forest = Forest::fit(train, config)?;
    let predictions = forest.predict(test)?;
    scored(
        train.classes.clone(),
        test.recordings.iter().map(|r| r.name.clone()).collect(),
        labels,
        predictions,
    )
}

/// Results of a k-fold run.
#[derive(Debug, Clone, PartialEq)]
pub struct KFold {
    /// One evaluation per fold.
    pub folds: Vec<Evaluation>,
    /// Every recording's out-of-fold prediction, in dataset order.
    pub pooled: Evaluation,
}

impl KFold {
    /// Mean of the folds' accuracies.
    pub fn mean_accuracy(&self) -> f64 {
        self.folds.iter().map(|f| f.report.accuracy).sum::<f64>() / self.folds.len().max(1) as f64
    }
}

/// Stratified k-fold by recording ([`Dataset::kfold`] with `split_seed`): fold
/// `f` trains a forest (seed `config.seed + f`) on the other folds and predicts
/// its own recordings.
pub fn kfold(
    ds: &Dataset,
    k: usize,
    split_seed: u64,
    config: &ForestConfig,
) -> Result<KFold, BaselineError> {
    let splits = ds.kfold(k, split_seed)?;
    let n = ds.recordings.len();
    let mut pooled_pred = vec![0usize; n];
    let mut folds = Vec::with_capacity(k);
    for (f, s) in splits.iter().enumerate() {
        let cfg = ForestConfig {
            seed: config.seed.wrapping_add(f as u64),
            ..*config
        };
        let e = evaluate(&ds.subset(&s.train), &ds.subset(&s.test), &cfg)?;
        for (&i, &p) in s.test.iter().zip(&e.predictions) {
            pooled_pred[i] = p;
        }
        folds.push(e);
    }
    let pooled = scored(
        ds.classes.clone(),
        ds.recordings.iter().map(|r| r.name.clone()).collect(),
        ds.recordings.iter().map(|r| r.class).collect(),
        pooled_pred,
    )?;
    Ok(KFold { folds, pooled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_data::rng::SplitMix64;
    use aether_data::Recording;

    /// `n` recordings per class of `T × 3` noise; class `c` shifts column 1's
    /// mean by `2c` (columns 0 and 2 carry no information).
    fn separable(n: usize, seed: u64, classes: usize) -> Dataset {
        let mut r = SplitMix64::new(seed);
        let mut recordings = Vec::new();
        for c in 0..classes {
            for i in 0..n {
                let t = 20 + (r.next_u64() % 20) as usize;
                let frames = (0..t * 3)
                    .map(|j| {
                        let noise = r.next_f64() as f32 - 0.5;
                        if j % 3 == 1 {
                            noise + 2.0 * c as f32
                        } else {
                            noise * 4.0
                        }
                    })
                    .collect();
                recordings.push(Recording {
                    class: c,
                    name: format!("s{seed}_c{c}_{i}"),
                    frames,
                });
            }
        }
        Dataset {
            classes: (0..classes).map(|c| format!("k{c}")).collect(),
            feature_names: vec!["x".into(), "y".into(), "z".into()],
            recordings,
        }
    }

    fn small() -> ForestConfig {
        ForestConfig {
            trees: 40,
            ..ForestConfig::default()
        }
    }

    #[test]
    fn separable_by_a_column_mean() {
        let e = evaluate(&separable(12, 1, 3), &separable(10, 2, 3), &small()).unwrap();
        assert_eq!(e.report.accuracy, 1.0);
        assert_eq!(e.report.macro_f1, 1.0);
        assert_eq!(e.report.confusion.get(2, 2), 10);
        assert_eq!(e.recordings.len(), 30);
    }

    #[test]
    fn minmax_set_also_separates() {
        let cfg = ForestConfig {
            stats: StatSet::MinMax,
            ..small()
        };
        let e = evaluate(&separable(12, 3, 2), &separable(10, 4, 2), &cfg).unwrap();
        assert_eq!(e.report.accuracy, 1.0);
    }

    #[test]
    fn deterministic_for_a_seed_and_thread_count() {
        // labels carry no signal here, so the votes depend on every random draw
        let mut ds = separable(10, 5, 2);
        let mut r = SplitMix64::new(9);
        for rec in &mut ds.recordings {
            rec.class = (r.next_u64() % 2) as usize;
        }
        let test = separable(6, 6, 2);
        let votes = |seed: u64, threads: usize| {
            let cfg = ForestConfig { seed, ..small() };
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| Forest::fit(&ds, &cfg).unwrap().votes(&test).unwrap())
        };
        let a = votes(7, 1);
        assert_eq!(a, votes(7, 2));
        assert_eq!(a, votes(7, 1));
        assert_ne!(a, votes(8, 1), "another seed gives another forest");
        assert!(a.iter().all(|v| v.iter().sum::<u32>() == 40));
    }

    #[test]
    fn kfold_pools_every_recording_once() {
        let ds = separable(10, 7, 2);
        let k = kfold(&ds, 5, 0, &small()).unwrap();
        assert_eq!(k.folds.len(), 5);
        assert_eq!(k.pooled.labels.len(), 20);
        assert_eq!(k.pooled.report.accuracy, 1.0);
        assert_eq!(k.mean_accuracy(), 1.0);
        assert_eq!(k.pooled, kfold(&ds, 5, 0, &small()).unwrap().pooled);
    }

    #[test]
    fn test_classes_are_matched_by_name() {
        let train = separable(8, 1, 3);
        let mut test = separable(5, 2, 3);
        // the test folder lacks class k0: its classes are k1, k2
        test.recordings.retain(|r| r.class > 0);
        for r in &mut test.recordings {
            r.class -= 1;
        }
        test.classes = vec!["k1".into(), "k2".into()];
        let e = evaluate(&train, &test, &small()).unwrap();
        assert!(e.labels.iter().all(|&l| l >= 1));
        assert_eq!(e.report.accuracy, 1.0);
        test.classes[0] = "other".into();
        assert_eq!(
            evaluate(&train, &test, &small()).unwrap_err(),
            BaselineError::UnknownClass("other".into())
        );
    }

    #[test]
    fn refusals() {
        let ds = separable(4, 1, 2);
        let empty = Dataset {
            recordings: vec![],
            ..ds.clone()
        };
        assert_eq!(
            Forest::fit(&empty, &small()).unwrap_err(),
            BaselineError::EmptyTrain
        );
        let none = ForestConfig {
            trees: 0,
            ..small()
        };
        assert_eq!(Forest::fit(&ds, &none).unwrap_err(), BaselineError::NoTrees);
        let mut narrow = ds.clone();
        narrow.feature_names.pop();
        for r in &mut narrow.recordings {
            r.frames.truncate(r.frames.len() / 3 * 2);
        }
        assert_eq!(
            evaluate(&ds, &narrow, &small()).unwrap_err(),
            BaselineError::DimMismatch { train: 3, test: 2 }
        );
        let mut ragged = ds.clone();
        ragged.recordings[0].frames.pop();
        assert!(matches!(
            Forest::fit(&ragged, &small()),
            Err(BaselineError::BadRecording { .. })
        ));
    }
}
