//! Summarises CSI files read by `aether_data::readers`: records, shapes, skips.
//!
//! `cargo run --release -p aether-data --example csi_summary -- PATH…` walks
//! each path (files or directories, recursively); `.dat` files are read as
//! Intel 5300 logs, `.txt`/`.log` files as esp-csi serial logs. With
//! `--dump FILE` it prints FILE's amplitude matrix (most common shape) as CSV.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aether_data::readers::{amplitude_matrix, esp_csi, intel5300, CsiRecord};

fn walk(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        for x in v {
            walk(&x, out);
        }
    } else {
        out.push(p.to_path_buf());
    }
}

fn dump<R: CsiRecord>(records: &[R]) {
    if let Some(m) = amplitude_matrix(records) {
        println!("{}", m.column_names().join(","));
        for row in m.rows.chunks(m.width()) {
            let cells: Vec<String> = row.iter().map(f32::to_string).collect();
            println!("{}", cells.join(","));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--dump") {
        let Some(path) = args.get(i + 1) else {
            eprintln!("--dump needs a file");
            std::process::exit(2);
        };
        let bytes = std::fs::read(path).expect("read");
        if path.ends_with(".dat") {
            match intel5300::parse_dat(&bytes) {
                Ok(log) => dump(&log.records),
                Err(e) => eprintln!("{path}: {e}"),
            }
        } else {
            dump(&esp_csi::parse_log(&bytes).records);
        }
        return;
    }
    let mut files = Vec::new();
    for a in &args {
        walk(Path::new(a), &mut files);
    }
    let (mut n_files, mut records, mut skipped, mut other, mut fatal) = (0, 0, 0, 0, 0);
    let mut shapes: BTreeMap<(usize, usize, usize), usize> = BTreeMap::new();
    let mut per_file_rx2 = usize::MAX;
    for f in &files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        n_files += 1;
        let recs: Vec<(usize, usize, usize)> = match ext {
            "dat" => match intel5300::parse_dat(&bytes) {
                Ok(log) => {
                    skipped += log.skipped.len();
                    other += log.other_code_count();
                    for e in &log.skipped {
                        eprintln!("{}: {e}", f.display());
                    }
                    let rx2 = log.records.iter().filter(|b| b.n_rx == 2).count();
                    per_file_rx2 = per_file_rx2.min(rx2);
                    log.records
                        .iter()
                        .map(|b| (b.shape().n_rx, b.shape().n_tx, b.shape().n_sub))
                        .collect()
                }
                Err(e) => {
                    eprintln!("{}: {e}", f.display());
                    fatal += 1;
                    continue;
                }
            },
            "txt" | "log" => {
                let log = esp_csi::parse_log(&bytes);
                skipped += log.skipped.len();
                other += log.other_lines;
                log.records
                    .iter()
                    .map(|r| (1, 1, r.subcarriers()))
                    .collect()
            }
            _ => {
                n_files -= 1;
                continue;
            }
        };
        records += recs.len();
        for s in recs {
            *shapes.entry(s).or_insert(0) += 1;
        }
    }
    println!("{n_files} files, {records} records, {skipped} skipped, {other} other codes/lines, {fatal} files refused");
    for ((r, t, k), c) in &shapes {
        println!(
            "  {r}x{t}x{k}: {c} ({:.2} %)",
            100.0 * *c as f64 / records.max(1) as f64
        );
    }
    if per_file_rx2 != usize::MAX {
        println!("fewest Nrx = 2 records in one .dat file: {per_file_rx2}");
    }
}
