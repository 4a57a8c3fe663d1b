//! The training and evaluation pipeline of aether-temporal, as a library.
//!
//! `aether train`, `eval`, `gate`, `demo`, `quantize`, `baseline`, `adapt` and
//! `serve --demo` all run on these functions, so another program (a Python binding, a
//! notebook driver) that calls them trains and scores exactly as the command line does,
//! with the same defaults:
//!
//! ```no_run
//! use aether_pipeline::{evaluate, fit, load, model_logits, select_groups, TrainOpts};
//!
//! # fn main() -> anyhow::Result<()> {
//! let (ds, _skipped) = load("data".as_ref())?;
//! let pool = select_groups(&ds, &[], 0)?;
//! let fitted = fit(&ds, &pool, &TrainOpts::default(), true)?;
//! let val = evaluate(&ds, &fitted.val_recordings, fitted.window, model_logits(&fitted.outcome.model))?;
//! println!("validation accuracy {:.3}", val.recordings.accuracy);
//! # Ok(())
//! # }
//! ```
//!
//! Modules, one job each: [`data`] (read, hash, select, window), [`fit`](mod@fit) (options and
//! training), [`evaluate`](mod@evaluate) (scoring), [`model_io`] (model bytes out, model files in,
//! int8), [`protocol`] (k-fold and group protocols), [`report`] (JSON, text, SVG) and
//! [`values`] (the range-checked option parsers). The main items are re-exported here.

#![warn(missing_docs)]

pub mod data;
pub mod evaluate;
pub mod fit;
pub mod model_formats;
pub mod model_io;
pub mod protocol;
pub mod report;
pub mod values;

pub use aether_data::{Dataset, LoadReport};
pub use data::{
    data_hash, derive_window, load, print_skipped, select_groups, DatasetError, WindowSet,
    DEPLOYED_WINDOW, MAX_WHOLE_WINDOW, MAX_WINDOW_VALUES,
};
pub use evaluate::{evaluate, model_logits, Evaluation};
pub use fit::{
    derive_arch, derive_config, fit, fit_progress, fit_with, fit_with_progress, Attention, Fitted,
    Progress, Silent, StderrLines, TrainOpts, FRAME_BUDGET,
};
pub use model_io::{
    int8_logits, model_bytes, quantize_bytes, read_model_file, stored_window, LoadedModel,
};
pub use protocol::{
    mean_sd, plan_runs, run_protocol, Plan, Protocol, ProtocolOutcome, ProtocolSettings, Run,
    Scores,
};
pub use report::json::{evaluation_json, fitted_json, report_json, stat_json};
pub use report::svg::{confusion_svg, curves_svg};
pub use report::text::{plural, report_text};
