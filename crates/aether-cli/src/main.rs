//! `aether`: the command-line front end of aether-temporal.
//!
//! Every verb lives in its own module under `commands/`; this file only parses
//! arguments and dispatches. Errors print one line and exit non-zero.

mod commands;
mod fsutil;

use clap::{Parser, Subcommand};

/// A learned sparse-attention temporal head for WiFi CSI sensing.
#[derive(Parser)]
#[command(name = "aether", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a deterministic, randomly initialised .rvne file (the reference recipe by default).
    Init(commands::init::Args),
    /// Describe a .rvne file: version, dims, pattern, classes, tensors, CRC.
    Inspect(commands::inspect::Args),
    /// Convert between .rvne v1, .rvne v2 and safetensors.
    Convert(commands::convert::Args),
    /// Write a labelled synthetic dataset folder from a physical CSI simulator.
    Simulate(commands::simulate::Args),
    /// Turn raw CSI captures into the dataset-folder format.
    Features(commands::features::Args),
    /// Train a head on a dataset folder and write a .rvne model.
    Train(commands::train::Args),
    /// Evaluate a model on a dataset folder.
    Eval(commands::eval::Args),
    /// A random forest on per-recording summary statistics: the baseline for any split.
    Baseline(commands::baseline::Args),
    /// The dense-vs-sparse validation gate.
    Gate(commands::gate::Args),
    /// Classify a CSV of frames with a model (whole, windowed or streaming).
    Classify(commands::classify::Args),
    /// Benchmark the kernels and the head.
    Bench(commands::bench::Args),
    /// Run the main job end to end on embedded defaults.
    Demo(commands::demo::Args),
}

/// Restores the default SIGPIPE action so `aether … | head` ends quietly instead of
/// panicking on "failed printing to stdout: Broken pipe" (Rust ignores SIGPIPE by default).
#[cfg(unix)]
fn reset_sigpipe() {
    // SAFETY: called once at start-up before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE and no Rust state depends on the signal being ignored.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn reset_sigpipe() {}

fn main() {
    reset_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => commands::init::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Convert(a) => commands::convert::run(a),
        Command::Simulate(a) => commands::simulate::run(a),
        Command::Features(a) => commands::features::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Baseline(a) => commands::baseline::run(a),
        Command::Gate(a) => commands::gate::run(a),
        Command::Classify(a) => commands::classify::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Demo(a) => commands::demo::run(a),
    };
    if let Err(e) = result {
        eprintln!("aether: {e:#}");
        std::process::exit(1);
    }
}
