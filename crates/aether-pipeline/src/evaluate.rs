//! Scoring a model on some recordings: window-level and per-recording figures.
//!
//! The windows of a recording vote with their averaged logits, so the per-recording
//! figures are what a node reports for a whole recording; the window-level ones and the
//! mean cross-entropy are kept beside them.

use aether_data::dataset::WindowConfig;
use aether_data::Dataset;
use aether_head::train::{
    report_from_logits, report_from_votes, vote_by_recording, ClassificationReport, Model,
};
use anyhow::{bail, Result};

use crate::data::WindowSet;

/// Window-level and per-recording figures of one evaluation.
pub struct Evaluation {
    /// Window-level report.
    pub windows: ClassificationReport,
    /// Per-recording report (windows vote with their averaged logits).
    pub recordings: ClassificationReport,
    /// Number of windows.
    pub n_windows: usize,
    /// Number of recordings.
    pub n_recordings: usize,
    /// Mean cross-entropy over the windows.
    pub loss: f64,
}

/// Scores the recordings `indices` of `ds` with `logits_of` (flat `[n, C]` logits of a
/// list of windows).
pub fn evaluate(
    ds: &Dataset,
    indices: &[usize],
    window: WindowConfig,
    logits_of: impl Fn(&[&[f32]]) -> Result<Vec<f32>>,
) -> Result<Evaluation> {
    let set = WindowSet::new(ds, indices, window)?;
    if set.is_empty() {
        bail!("no windows to evaluate");
    }
    let c = ds.classes.len();
    let logits = logits_of(&set.slices())?;
    let windows = report_from_logits(&logits, &set.labels, c)?;
    let votes = vote_by_recording(&logits, c, &set.recording, &set.labels)?;
    let recordings = report_from_votes(&votes, c)?;
    let loss = aether_head::train::mean_cross_entropy(&logits, &set.labels, c)?;
    Ok(Evaluation {
        windows,
        recordings,
        n_windows: set.len(),
        n_recordings: votes.len(),
        loss,
    })
}

/// Logits of windows through the training model (parallel).
pub fn model_logits(m: &Model) -> impl Fn(&[&[f32]]) -> Result<Vec<f32>> + '_ {
    move |w| Ok(m.logits_batch(w)?)
}
