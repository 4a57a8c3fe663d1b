//! Training: backward through the whole head, AdamW, metrics (feature `train`).
//!
//! See docs/training.md for the math, the optimiser, the schedule and determinism.

mod attention;
pub mod config;
pub mod error;
pub mod export;
pub mod metrics;
pub mod model;
mod ops;
pub mod optim;
pub mod params;
pub mod qat;
pub mod rng;
pub mod trainer;

pub use crate::config::{AttentionBackend, Pooling, Positional};
pub use config::{Architecture, Augment, Monitor, TrainConfig};
pub use error::TrainError;
pub use export::{provenance, ExportInfo};
pub use metrics::{
    classification_report, mean_cross_entropy, report_from_logits, report_from_votes,
    vote_by_recording, ClassificationReport, ConfusionMatrix, RecordingVote,
};
pub use model::{argmax, Model, Window};
pub use optim::{clip_global_norm, AdamW, Schedule};
pub use params::{Layout, ParamKind, TensorSpec};
pub use qat::fake_quant_weights;
pub use trainer::{
    inverse_frequency_weights, train, train_model, EpochStats, TrainEvent, TrainOutcome, GRAD_CHUNK,
};
