//! One module per `aether` verb; each has `Args` (clap) and `run`.

pub mod baseline;
pub mod bench;
pub mod bench_head;
pub mod classify;
pub mod convert;
pub mod demo;
pub mod eval;
pub mod features;
pub mod gate;
pub mod init;
pub mod inspect;
pub mod simulate;
pub mod train;
