//! The JSON reports: classification figures, evaluations, training runs.
//!
//! These are the objects `aether train`, `eval`, `baseline` and `adapt` write; their
//! keys are a contract for the programs that read the reports.

use aether_data::Dataset;
use aether_head::train::{ClassificationReport, EpochStats};
use serde_json::{json, Value};

use crate::evaluate::Evaluation;
use crate::fit::Fitted;
use crate::model_io::arch_label;
use crate::protocol::mean_sd;

/// JSON of a classification report with class names.
pub fn report_json(r: &ClassificationReport, classes: &[String]) -> Value {
    let per_class: Vec<Value> = classes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({
                "class": n,
                "precision": r.precision[i],
                "recall": r.recall[i],
                "f1": r.f1[i],
                "support": r.support[i],
            })
        })
        .collect();
    json!({
        "accuracy": r.accuracy,
        "macro_f1": r.macro_f1,
        "per_class": per_class,
        "confusion": r.confusion.rows(),
    })
}

/// JSON of an [`Evaluation`]: per-recording figures at the top (`accuracy`, `macro_f1`,
/// `confusion`, `classes`, `per_class`), window-level ones under `windows`.
pub fn evaluation_json(e: &Evaluation, classes: &[String]) -> Value {
    let mut top = report_json(&e.recordings, classes);
    let obj = top.as_object_mut().expect("object");
    obj.insert("classes".into(), json!(classes));
    obj.insert("recordings".into(), json!(e.n_recordings));
    let mut w = report_json(&e.windows, classes);
    w.as_object_mut()
        .expect("object")
        .insert("count".into(), json!(e.n_windows));
    w.as_object_mut()
        .expect("object")
        .insert("loss".into(), json!(e.loss));
    obj.insert("windows".into(), w);
    top
}

fn history_json(h: &[EpochStats]) -> Value {
    json!(h
        .iter()
        .map(|s| json!({
            "epoch": s.epoch + 1,
            "train_loss": s.train_loss,
            "train_accuracy": s.train_accuracy,
            "val_loss": s.val_loss,
            "val_accuracy": s.val_accuracy,
            "val_macro_f1": s.val_macro_f1,
            "learning_rate": s.learning_rate,
            "grad_norm": s.grad_norm,
            "windows_per_sec": s.windows_per_sec,
            "seconds": s.seconds,
        }))
        .collect::<Vec<_>>())
}

/// Report JSON of a fitted model (settings, history, validation figures).
pub fn fitted_json(f: &Fitted, ds: &Dataset, val: Option<&Evaluation>) -> Value {
    let c = &f.config;
    let trained: usize = f.outcome.history.iter().map(|_| f.train_windows).sum();
    json!({
        "window": f.window.len,
        "stride": f.window.stride,
        "architecture": arch_label(&f.arch),
        "config": {
            "epochs": c.epochs, "batch_size": c.batch_size, "learning_rate": c.learning_rate,
            "weight_decay": c.weight_decay, "clip_norm": c.clip_norm, "patience": c.patience,
            "class_weighting": c.class_weighting, "seed": c.seed, "qat_epochs": f.qat_epochs,
        },
        "train_recordings": f.train_recordings.len(),
        "val_recordings": f.val_recordings.len(),
        "train_windows": f.train_windows,
        "epochs_run": f.outcome.history.len(),
        "best_epoch": f.outcome.best_epoch + 1,
        "stopped_early": f.outcome.stopped_early,
        "seconds": f.seconds,
        "windows_per_sec": trained as f64 / f.seconds.max(1e-9),
        "history": history_json(&f.outcome.history),
        "validation": val.map(|e| evaluation_json(e, &ds.classes)),
    })
}

/// `{"mean", "sd", "per_seed"}` of per-seed values.
pub fn stat_json(v: &[f64]) -> Value {
    let (m, sd) = mean_sd(v);
    json!({"mean": m, "sd": sd, "per_seed": v})
}
