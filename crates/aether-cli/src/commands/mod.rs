//! One module per `aether` verb; each has `Args` (clap) and `run`, and imports no other
//! verb: shared code lives in the `aether-pipeline` library or in the crate's non-verb
//! modules (`args`, `fsutil`, `progress`, `values`).

pub mod adapt;
pub mod baseline;
pub mod bench;
pub mod classify;
pub mod convert;
pub mod demo;
pub mod eval;
pub mod features;
pub mod gate;
pub mod init;
pub mod inspect;
pub mod quantize;
pub mod replay;
pub mod serve;
pub mod simulate;
pub mod train;

/// `n` and a noun, pluralised unless `n` is 1 (the pipeline's reports use the same).
pub(crate) use aether_pipeline::plural;
