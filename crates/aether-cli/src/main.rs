//! `aether`: the command-line front end of aether-temporal.
//!
//! Every verb lives in its own module under `commands/`; this file only parses
//! arguments and dispatches. Exit codes (crates/aether-cli/README.md): 0 success; 1 an
//! error — a refused option value, bad input, a failed write, a failed gate — with one
//! line `aether: …` on stderr; 2 a malformed command line (unknown option, missing
//! argument), reported by the argument parser with its usage text.

mod args;
mod commands;
mod fsutil;
mod progress;
mod values;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// Adapt a trained model to a new room, person or day from a few labelled recordings.
    Adapt(commands::adapt::Args),
    /// Evaluate a model on a dataset folder.
    Eval(commands::eval::Args),
    /// Quantise a float model to an int8 model (post-training, calibrated on a dataset folder).
    Quantize(commands::quantize::Args),
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
    /// The live service: UDP ingest from a fleet of nodes, HTTP/WebSocket API, metrics, dashboard.
    Serve(commands::serve::Args),
    /// Send recordings as raw CSI from a fleet of simulated nodes to a running service.
    Replay(commands::replay::Args),
}

/// The command line definition; every option that takes a value also accepts a
/// negative number as that value, so `--batch -1` reaches the range check (exit 1)
/// instead of being taken for an unknown flag.
fn command() -> clap::Command {
    fn negatives(c: clap::Command) -> clap::Command {
        c.mut_args(|a| {
            if a.get_action().takes_values() {
                a.allow_negative_numbers(true)
            } else {
                a
            }
        })
        .mut_subcommands(negatives)
    }
    negatives(Cli::command())
}

/// The one-line message of a refused option value (range checks of `values`, or a
/// value outside a fixed list); `None` for other command-line errors.
fn refused_value(e: &clap::Error) -> Option<String> {
    let arg = match e.get(ContextKind::InvalidArg)? {
        ContextValue::String(s) => s.split(' ').next().unwrap_or(s).to_string(),
        _ => return None,
    };
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    let why = match e.kind() {
        ErrorKind::ValueValidation => std::error::Error::source(e)?.to_string(),
        ErrorKind::InvalidValue => match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(v)) if !v.is_empty() => {
                format!("must be one of {}", v.join(", "))
            }
            _ if value.is_empty() => "must not be empty".into(),
            _ => "not an accepted value".into(),
        },
        _ => return None,
    };
    Some(format!("invalid value '{value}' for {arg}: {why}"))
}

/// An error and its causes on one line, each cause once (a cause whose text the
/// message already contains is not repeated).
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts
        .join(": ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    // The default SIGPIPE action, so `aether … | head` ends quietly instead of panicking
    // on "failed printing to stdout: Broken pipe" (Rust ignores SIGPIPE by default).
    sigpipe::reset();
    let matches = command().try_get_matches().unwrap_or_else(|e| {
        if let Some(msg) = refused_value(&e) {
            eprintln!("aether: {msg}");
            std::process::exit(1);
        }
        // Help and version exit 0; malformed command lines exit 2 with clap's usage text.
        e.exit()
    });
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Init(a) => commands::init::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Convert(a) => commands::convert::run(a),
        Command::Simulate(a) => commands::simulate::run(a),
        Command::Features(a) => commands::features::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Adapt(a) => commands::adapt::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::Quantize(a) => commands::quantize::run(a),
        Command::Baseline(a) => commands::baseline::run(a),
        Command::Gate(a) => commands::gate::run(a),
        Command::Classify(a) => commands::classify::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Demo(a) => commands::demo::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Replay(a) => commands::replay::run(a),
    };
    if let Err(e) = result {
        eprintln!("aether: {}", one_line(&e));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let inner = std::io::Error::other("the number of bands must be at least 1");
        let e = anyhow::Error::new(inner)
            .context("feature extraction: the number of bands must be at least 1");
        assert_eq!(
            one_line(&e),
            "feature extraction: the number of bands must be at least 1"
        );
        let e = anyhow::anyhow!("root cause\nsecond line").context("reading x");
        assert_eq!(one_line(&e), "reading x: root cause second line");
    }

    #[test]
    fn refused_values_are_one_line_naming_the_argument() {
        let msg = |args: &[&str]| {
            let e = command().try_get_matches_from(args).unwrap_err();
            refused_value(&e)
        };
        assert_eq!(
            msg(&["aether", "init", ""]).as_deref(),
            Some("invalid value '' for <OUTPUT>: must not be empty")
        );
        assert_eq!(
            msg(&["aether", "init", "--format", "v3", "x"]).as_deref(),
            Some("invalid value 'v3' for --format: must be one of v1, v2")
        );
        assert_eq!(
            msg(&["aether", "train", "--data", "d", "--out", "m", "--batch", "-3"]).as_deref(),
            Some("invalid value '-3' for --batch: must be a whole number from 1 to 4096")
        );
        // a malformed command line is clap's (exit 2), not a refused value
        assert_eq!(msg(&["aether", "train", "--bogus"]), None);
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        command().debug_assert();
    }
}
