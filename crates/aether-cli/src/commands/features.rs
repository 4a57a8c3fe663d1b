//! `aether features`: CSI recordings → dataset folder.
//!
//! Input is one file or a class-folder tree `DIR/<class>/<file>`. Formats, by content
//! and extension (docs/readers.md):
//! - a node capture: raw CSI frames (`0xC5110001`) back to back;
//! - an Intel 5300 CSI Tool log (`.dat`): the records with the file's most common
//!   receive-chain count, transmit stream 0, each receive chain an antenna;
//! - an esp-csi serial log (`CSI_DATA,…` lines; `.txt`, `.log` or any file holding them);
//! - a Nexmon CSI capture (`.pcap`, or any file with a pcap magic): the nexmon_csi
//!   packets of the file's most common subcarrier count, one antenna (each packet is one
//!   core and spatial stream);
//! - a `.csv` of per-subcarrier amplitudes (header + one row per frame).
//!
//! Every format goes through the one extractor of `aether_data::features`
//! (docs/features.md). `--amplitudes` skips the extractor and writes the raw
//! `|I + jQ|` of every (rx, tx, subcarrier) value as stored, unscaled, one row per record
//! of the file's most common shape (columns `rx{r}_tx{t}_sc{k}`; records of other
//! shapes are counted and left out). Malformed or truncated frames are skipped and counted;
//! a file that yields no frames, or whose feature names differ from the first
//! file's, is skipped and reported (an amplitude CSV with a negative value names its
//! row and column as every CSV error does: 1-based line number, 1-based column with
//! its name). A top-level `README.txt` (as `aether simulate --raw` writes) is the
//! folder's description, not an input. A single input file's class is `--class`, else
//! the name of the directory holding it (the same for a relative and an absolute
//! path). Output: `OUT/<class>/<file stem>.csv`, written atomically; `OUT` must be
//! missing or empty, is checked before any work, and is removed again if the run
//! fails; two inputs that would write the same file are refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aether_data::dataset::{check_class_name, CsvReader, Dataset, Recording};
use aether_data::features::{
    capture_features, extract_amplitude_frames, extract_amplitude_rows, feature_names,
    FeatureConfig,
};
use aether_data::readers::{amplitude_matrix, esp_csi, intel5300, nexmon, CsiShape};
use aether_data::wire::{parse_capture, CaptureReport, RAW_CSI_MAGIC};
use anyhow::{bail, Context, Result};

use super::plural;
use crate::args::FeatureArgs;
use crate::fsutil::{check_output_dir, write_dataset, OutDir};

/// Arguments of `aether features`.
#[derive(clap::Args)]
pub struct Args {
    /// A capture file, or a directory of class folders holding captures or amplitude CSVs.
    #[arg(long)]
    input: PathBuf,
    /// Output dataset folder (created; must be empty if it exists).
    #[arg(long)]
    out: PathBuf,
    /// Class name for a single input file (default: the name of the directory holding it).
    #[arg(long)]
    class: Option<String>,
    /// Write the raw amplitudes |I + jQ| of every (rx, tx, subcarrier) value instead of
    /// extracted features.
    #[arg(long)]
    amplitudes: bool,
    #[command(flatten)]
    features: FeatureArgs,
}

#[derive(Default)]
struct Totals {
    files: usize,
    frames: usize,
    parse: CaptureReport,
    other_shape: usize,
    /// Records of other formats' files that were skipped (bad records, other codes,
    /// non-CSI lines).
    other_records: usize,
    skipped_files: Vec<(String, String)>,
}

/// The recording formats `aether features` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Capture,
    Intel5300,
    EspCsi,
    Nexmon,
    AmplitudeCsv,
}

/// The format of a file, from its extension and first bytes.
fn format_of(path: &Path, bytes: &[u8]) -> Format {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if bytes.len() >= 4 && bytes[..4] == RAW_CSI_MAGIC.to_le_bytes() {
        return Format::Capture;
    }
    let pcap_magic = bytes.len() >= 4
        && matches!(
            u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1
        );
    match ext.as_str() {
        "pcap" => Format::Nexmon,
        _ if pcap_magic => Format::Nexmon,
        "dat" => Format::Intel5300,
        "csv" if !contains(bytes, b"CSI_DATA,") => Format::AmplitudeCsv,
        _ if contains(bytes, b"CSI_DATA,") => Format::EspCsi,
        _ => Format::Capture,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Raw amplitudes `T × n_ant·n_sub` of a node capture's most common shape.
fn capture_amplitudes(bytes: &[u8], t: &mut Totals) -> Option<(CsiShape, Vec<f32>)> {
    let (frames, rep) = parse_capture(bytes);
    t.parse.frames += rep.frames;
    t.parse.bad_header += rep.bad_header;
    t.parse.truncated += rep.truncated;
    t.parse.garbage_bytes += rep.garbage_bytes;
    let shape = aether_data::readers::most_common_shape(&frames)?;
    let m = aether_data::readers::amplitudes_of_shape(&frames, shape);
    t.other_shape += m.other_shape;
    Some((shape, m.rows))
}

fn visible_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    v.sort();
    Ok(v)
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Feature names and `T × D` frames of one file, or why it is skipped.
type FileOutcome = std::result::Result<(Vec<String>, Vec<f32>), String>;

/// Reads an amplitude CSV (the one CSV reader of every verb) and checks every value is
/// a non-negative amplitude; a refusal is a skip reason (without the file name, which
/// the skip line shows).
fn amplitude_csv(text: &str, file: &str) -> std::result::Result<(Vec<String>, Vec<f32>), String> {
    let strip = |e: String| {
        e.strip_prefix(&format!("{file}: "))
            .map_or(e.clone(), str::to_string)
    };
    let mut csv = CsvReader::new(file);
    let mut rows = Vec::new();
    for line in text.split_inclusive('\n') {
        let start = rows.len();
        if !csv
            .feed(line, &mut rows)
            .map_err(|e| strip(e.to_string()))?
        {
            continue;
        }
        if let Some(c) = rows[start..].iter().position(|&v| v < 0.0) {
            let header = csv.header().unwrap_or_default();
            return Err(format!(
                "row {}, column {} (`{}`): amplitude `{}` is negative",
                csv.line(),
                c + 1,
                header[c],
                rows[start + c]
            ));
        }
    }
    let header = csv.finish().map_err(|e| strip(e.to_string()))?.to_vec();
    Ok((header, rows))
}

/// Features (or raw amplitudes) of one file; I/O failures are errors, bad content is a
/// skip reason.
fn file_features(
    path: &Path,
    cfg: FeatureConfig,
    amplitudes: bool,
    t: &mut Totals,
) -> Result<FileOutcome> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let format = format_of(path, &bytes);
    // Amplitudes `T × n_ant·n_sub` (antenna-major) with the column names of --amplitudes.
    let (shape, amps): (CsiShape, Vec<f32>) = match format {
        Format::AmplitudeCsv => {
            let text = match String::from_utf8(bytes) {
                Ok(s) => s,
                Err(_) => return Ok(Err("CSV is not UTF-8".into())),
            };
            let (header, rows) = match amplitude_csv(&text, &path.display().to_string()) {
                Ok(x) => x,
                Err(reason) => return Ok(Err(reason)),
            };
            if amplitudes {
                t.frames += rows.len() / header.len().max(1);
                return Ok(Ok((header, rows)));
            }
            return Ok(match extract_amplitude_rows(&rows, header.len(), cfg) {
                Ok(f) => {
                    t.frames += rows.len() / header.len();
                    Ok((feature_names(1, cfg), f))
                }
                Err(e) => Err(e.to_string()),
            });
        }
        Format::Capture if !amplitudes => {
            return Ok(match capture_features(&bytes, cfg) {
                Ok(c) => {
                    t.parse.frames += c.report.frames;
                    t.parse.bad_header += c.report.bad_header;
                    t.parse.truncated += c.report.truncated;
                    t.parse.garbage_bytes += c.report.garbage_bytes;
                    t.other_shape += c.other_shape;
                    t.frames += c.frames();
                    Ok((c.feature_names.clone(), c.features))
                }
                Err(e) => {
                    let (_, rep) = parse_capture(&bytes);
                    t.parse.bad_header += rep.bad_header;
                    t.parse.truncated += rep.truncated;
                    t.parse.garbage_bytes += rep.garbage_bytes;
                    Err(format!("{e} ({rep})"))
                }
            });
        }
        Format::Capture => match capture_amplitudes(&bytes, t) {
            Some(x) => x,
            None => return Ok(Err("no raw CSI frame".into())),
        },
        Format::Intel5300 => {
            let log = match intel5300::parse_dat(&bytes) {
                Ok(l) => l,
                Err(e) => return Ok(Err(format!("Intel 5300 log: {e}"))),
            };
            t.other_records += log.skipped.len() + log.other_code_count();
            if amplitudes {
                match amplitude_matrix(&log.records) {
                    Some(m) => {
                        t.other_shape += m.other_shape;
                        (m.shape, m.rows)
                    }
                    None => return Ok(Err("no beamforming (0xBB) record".into())),
                }
            } else {
                // The file's most common receive-chain count, transmit stream 0.
                let mut counts = [0usize; 4];
                for r in &log.records {
                    counts[usize::from(r.n_rx).min(3)] += 1;
                }
                let n_rx = (1..4)
                    .max_by_key(|&k| (counts[k], std::cmp::Reverse(k)))
                    .unwrap_or(1);
                if counts[n_rx] == 0 {
                    return Ok(Err("no beamforming (0xBB) record".into()));
                }
                let mut rows = Vec::new();
                for r in log.records.iter().filter(|r| usize::from(r.n_rx) == n_rx) {
                    r.push_tx_amplitudes(0, &mut rows);
                }
                t.other_shape += log.records.len() - counts[n_rx];
                (
                    CsiShape {
                        n_rx,
                        n_tx: 1,
                        n_sub: intel5300::SUBCARRIERS,
                    },
                    rows,
                )
            }
        }
        Format::Nexmon => {
            let log = match nexmon::parse_pcap(&bytes) {
                Ok(l) => l,
                Err(e) => return Ok(Err(format!("Nexmon capture: {e}"))),
            };
            t.other_records += log.skipped.len() + log.other_packets;
            match amplitude_matrix(&log.records) {
                Some(m) => {
                    t.other_shape += m.other_shape;
                    (m.shape, m.rows)
                }
                None => return Ok(Err("no nexmon_csi packet (UDP port 5500)".into())),
            }
        }
        Format::EspCsi => {
            let log = esp_csi::parse_log(&bytes);
            t.other_records += log.skipped.len();
            match amplitude_matrix(&log.records) {
                Some(m) => {
                    t.other_shape += m.other_shape;
                    (m.shape, m.rows)
                }
                None => return Ok(Err("no valid CSI_DATA line".into())),
            }
        }
    };
    let width = shape.width();
    if width == 0 || amps.is_empty() {
        return Ok(Err("no CSI values".into()));
    }
    let n = amps.len() / width;
    if amplitudes {
        t.frames += n;
        return Ok(Ok((shape.column_names(), amps)));
    }
    let n_ant = shape.n_rx * shape.n_tx;
    Ok(
        match extract_amplitude_frames(&amps, n_ant, shape.n_sub, cfg) {
            Ok(f) => {
                t.frames += n;
                Ok((feature_names(n_ant, cfg), f))
            }
            Err(e) => Err(e.to_string()),
        },
    )
}

/// The class of a single input file: `--class`, else the name of the directory holding
/// it (resolved to an absolute path first, so `capture.bin` and `/abs/dir/capture.bin`
/// agree), else `unlabelled`.
fn single_file_class(input: &Path, class: Option<&String>) -> Result<String> {
    if let Some(c) = class {
        return Ok(c.clone());
    }
    let abs = std::path::absolute(input)
        .with_context(|| format!("{}: cannot resolve its directory", input.display()))?;
    Ok(abs
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unlabelled".into()))
}

/// Runs `aether features`.
pub fn run(args: Args) -> Result<()> {
    let cfg = args.features.config();
    if !args.input.exists() {
        bail!("{}: no such file or directory", args.input.display());
    }
    check_output_dir(&args.out)?;
    // (class name, files)
    let mut jobs: Vec<(String, Vec<PathBuf>)> = Vec::new();
    let mut t = Totals::default();
    if args.input.is_file() {
        let class = single_file_class(&args.input, args.class.as_ref())?;
        check_class_name(&class).with_context(|| {
            format!(
                "class of {} (set it with --class NAME)",
                args.input.display()
            )
        })?;
        jobs.push((class, vec![args.input.clone()]));
    } else {
        if args.class.is_some() {
            bail!(
                "--class applies to a single input file; a directory's classes are its sub-folders"
            );
        }
        for p in visible_sorted(&args.input)? {
            let shown = p.display().to_string();
            if hidden(&p) {
                t.skipped_files.push((shown, "hidden entry".into()));
            } else if p.is_dir() {
                let mut files = Vec::new();
                for f in visible_sorted(&p)? {
                    let shown = f.display().to_string();
                    if hidden(&f) {
                        t.skipped_files.push((shown, "hidden entry".into()));
                    } else if f.is_dir() {
                        t.skipped_files
                            .push((shown, "directory inside a class directory".into()));
                    } else {
                        files.push(f);
                    }
                }
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                check_class_name(&name).with_context(|| format!("{shown}: class folder"))?;
                jobs.push((name, files));
            } else if p.file_name().is_some_and(|n| n == "README.txt") {
                // The folder's description (`aether simulate --raw` writes one).
            } else {
                t.skipped_files.push((
                    shown,
                    "file at the top level (classes are sub-folders)".into(),
                ));
            }
        }
        if jobs.is_empty() {
            bail!(
                "{}: no class folders (expected DIR/<class>/<capture>)",
                args.input.display()
            );
        }
    }

    let mut ds = Dataset {
        classes: Vec::new(),
        feature_names: Vec::new(),
        recordings: Vec::new(),
    };
    let mut per_class = Vec::new();
    for (class, files) in jobs {
        let ci = ds.classes.len();
        let mut n = 0;
        // Output file stem -> the input that claimed it.
        let mut stems: BTreeMap<String, String> = BTreeMap::new();
        for f in files {
            t.files += 1;
            let shown = f.display().to_string();
            let (names, frames) = match file_features(&f, cfg, args.amplitudes, &mut t)? {
                Ok(x) => x,
                Err(reason) => {
                    t.skipped_files.push((shown, reason));
                    continue;
                }
            };
            if ds.feature_names.is_empty() {
                ds.feature_names = names;
            } else if ds.feature_names != names {
                t.skipped_files.push((
                    shown,
                    format!(
                        "{} columns ({} antennas?) differ from the first file's {}",
                        names.len(),
                        names.len() / cfg.per_antenna().max(1),
                        ds.feature_names.len()
                    ),
                ));
                continue;
            }
            let stem = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(first) = stems.insert(stem.clone(), shown.clone()) {
                bail!(
                    "{first} and {shown} would both be written to {class}/{stem}.csv; rename one of them"
                );
            }
            ds.recordings.push(Recording {
                class: ci,
                name: stem,
                frames,
            });
            n += 1;
        }
        if n == 0 {
            t.skipped_files
                .push((class.clone(), "class folder yielded no recordings".into()));
            continue;
        }
        per_class.push((class.clone(), n));
        ds.classes.push(class);
    }
    if ds.recordings.is_empty() {
        for (p, r) in &t.skipped_files {
            eprintln!("skipped {p}: {r}");
        }
        bail!(
            "no recordings could be extracted from {}",
            args.input.display()
        );
    }
    // Everything that can be refused is refused before the output directory exists.
    ds.to_files()?;
    let out = OutDir::create(&args.out)?;
    let written = write_dataset(out.path(), &ds)?;
    out.keep();

    let motion = match cfg.motion {
        0 => String::new(),
        m => format!(" + {m} motion"),
    };
    if args.amplitudes {
        println!(
            "amplitudes: {}, {} written to {} ({} raw |I+jQ| values per record)",
            plural(t.files, "file"),
            plural(written, "recording"),
            args.out.display(),
            ds.dim(),
        );
    } else {
        println!(
            "features: {}, {} written to {} ({} features per frame: {} bands{}{motion} per antenna)",
            plural(t.files, "file"),
            plural(written, "recording"),
            args.out.display(),
            ds.dim(),
            cfg.bands,
            if cfg.gain { " + log-gain" } else { "" },
        );
    }
    for (c, n) in &per_class {
        println!("  class {c}: {}", plural(*n, "recording"));
    }
    println!(
        "frames: {} extracted; raw frames read {}, skipped {} ({} bad header, {} truncated), {} of another shape left out, {} garbage bytes",
        t.frames,
        t.parse.frames,
        t.parse.skipped(),
        t.parse.bad_header,
        t.parse.truncated,
        t.other_shape,
        t.parse.garbage_bytes
    );
    if t.other_records > 0 {
        println!(
            "other formats: {} skipped (bad records, other record codes, lines without CSI)",
            plural(t.other_records, "record")
        );
    }
    if !t.skipped_files.is_empty() {
        println!("skipped {}:", plural(t.skipped_files.len(), "entry"));
        for (p, r) in &t.skipped_files {
            println!("  {p}: {r}");
        }
    }
    Ok(())
}
