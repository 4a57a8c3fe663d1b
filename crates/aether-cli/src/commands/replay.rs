//! `aether replay`: send recordings as raw CSI datagrams from a fleet of simulated
//! nodes (distinct node ids and loopback source addresses, per-node sequence numbers,
//! paced) to a running `aether serve`. The demo, the load generator, and the way to try
//! the service without hardware.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aether_data::wire::{parse_capture, RawCsiFrame};
use aether_serve::replay::{encode_recordings, run as replay_run, ReplayConfig};
use anyhow::{bail, Context, Result};

use crate::values::{self, Ends};

/// Arguments of `aether replay`.
#[derive(clap::Args)]
pub struct Args {
    /// A raw CSI capture (0xC5110001 frames back to back) or a directory of them (searched recursively).
    #[arg(long)]
    pub data: PathBuf,
    /// Where `aether serve` listens.
    #[arg(long, default_value = "127.0.0.1:5005")]
    pub to: SocketAddr,
    /// Simulated nodes (node i sends recording i mod R from address 127.0.0.(2 + i/256), id i mod 256).
    #[arg(long, default_value_t = 1, value_parser = values::count(1, 65_536))]
    pub nodes: usize,
    /// Frames per second per node.
    #[arg(long, default_value_t = 100.0, value_parser = values::real(0.0, 10_000.0, Ends::OpenMin))]
    pub rate: f64,
    /// Start each recording again when it ends.
    #[arg(long = "loop")]
    pub looped: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S", value_parser = values::real(0.0, values::MAX_SECONDS, Ends::OpenMin))]
    pub duration: Option<f64>,
    /// First loopback source address of the fleet.
    #[arg(long, default_value = "127.0.0.2")]
    pub first_source: Ipv4Addr,
    /// Print only the summary.
    #[arg(long)]
    pub quiet: bool,
}

/// Every regular file under `p` (or `p` itself), sorted.
fn files(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
    if meta.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
        .with_context(|| format!("reading {}", p.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", p.display()))?;
    entries.sort();
    for e in entries {
        if e.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        files(&e, out)?;
    }
    Ok(())
}

/// Recordings by file name.
pub type Captures = Vec<(String, Vec<RawCsiFrame>)>;

/// Loads every capture under `path`: `(name, frames)`; files without a single raw CSI
/// frame are listed in the second vector.
pub fn load_captures(path: &Path) -> Result<(Captures, Vec<String>)> {
    let mut list = Vec::new();
    files(path, &mut list)?;
    let (mut recs, mut skipped) = (Vec::new(), Vec::new());
    for f in list {
        let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
        let (frames, _) = parse_capture(&bytes);
        if frames.is_empty() {
            skipped.push(f.display().to_string());
        } else {
            recs.push((f.display().to_string(), frames));
        }
    }
    Ok((recs, skipped))
}

/// Runs `aether replay`.
pub fn run(args: Args) -> Result<()> {
    let duration = args.duration.map(Duration::from_secs_f64);
    let (recs, skipped) = load_captures(&args.data)?;
    if recs.is_empty() {
        bail!(
            "{}: no raw CSI frames found (replay sends node captures; amplitude CSVs have no I/Q to send)",
            args.data.display()
        );
    }
    let frames: Vec<Vec<RawCsiFrame>> = recs.iter().map(|(_, f)| f.clone()).collect();
    let datagrams = encode_recordings(&frames)?;
    let cfg = ReplayConfig {
        to: args.to,
        nodes: args.nodes,
        rate_hz: args.rate,
        looped: args.looped,
        duration,
        first_source: args.first_source,
        start_seq: 0,
    };
    aether_serve::replay::validate(&cfg, datagrams.len())?;
    if !args.quiet {
        println!(
            "replay: {} recordings ({} frames), {} nodes at {} frames/s to {}{}",
            recs.len(),
            frames.iter().map(Vec::len).sum::<usize>(),
            args.nodes,
            args.rate,
            args.to,
            if args.looped { ", looping" } else { "" }
        );
        for s in &skipped {
            println!("  skipped {s}: no raw CSI frames");
        }
    }
    let r = replay_run(&datagrams, &cfg, &AtomicBool::new(false))?;
    let secs = r.elapsed.as_secs_f64();
    println!(
        "replay: sent {} datagrams in {:.2} s ({:.0}/s), {} send errors",
        r.sent,
        secs,
        r.sent as f64 / secs.max(1e-9),
        r.send_errors
    );
    if r.send_errors > 0 {
        bail!("{} datagrams could not be sent", r.send_errors);
    }
    Ok(())
}
