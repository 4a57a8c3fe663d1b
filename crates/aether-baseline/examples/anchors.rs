//! Reproduces the random-forest anchors of ../shared/data/README.md and
//! the original AETHER specification with this crate's forest (docs/baseline.md has the numbers).
//!
//! `cargo run --release -p aether-baseline --example anchors -- [DATA_DIR] [--seeds N] [--trees N]`
//!
//! `DATA_DIR` defaults to `../shared/data` (relative to the workspace root). A
//! dataset that is missing is skipped. Runs, each for forest seeds `0..N`:
//!
//! * espectre-esp32 gestures (wave / circle_cw / no_gesture) and presence
//!   (baseline / movement): 5-fold by recording, on the raw `|I + jQ|` of the 64
//!   subcarriers of each node capture and on the extractor's features
//!   (`capture_features`, default config); percentile statistics;
//! * stability-har-esp32s2: train on session D1, test on D2, D3, D4; raw
//!   amplitudes; percentile statistics;
//! * wibasl-intel5300 split (b): 5-fold by recording over all 2,215 recordings;
//!   records with Nrx = 2, tx 0, unscaled `|csi|` (T × 60); min/max statistics.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aether_baseline::{evaluate, kfold, ForestConfig, StatSet};
use aether_data::features::{capture_features, FeatureConfig};
use aether_data::readers::intel5300;
use aether_data::wire::parse_capture;
use aether_data::{Dataset, Recording};

/// Builds a dataset from `root/<class>/<file>` for `classes`, each file through
/// `load` (`None` skips it); returns `None` if `root` is missing.
fn folder_dataset(
    root: &Path,
    classes: &[&str],
    names: Vec<String>,
    load: impl Fn(&[u8]) -> Option<Vec<f32>>,
) -> Option<Dataset> {
    if !root.is_dir() {
        return None;
    }
    let mut recordings = Vec::new();
    let mut skipped = 0;
    for (c, class) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(class))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            let Some(frames) = std::fs::read(&f).ok().and_then(|b| load(&b)) else {
                skipped += 1;
                continue;
            };
            let name = f.file_stem()?.to_string_lossy().into_owned();
            recordings.push(Recording {
                class: c,
                name,
                frames,
            });
        }
    }
    if skipped > 0 {
        println!("  ({skipped} files skipped in {})", root.display());
    }
    Some(Dataset {
        classes: classes.iter().map(|s| s.to_string()).collect(),
        feature_names: names,
        recordings,
    })
}

/// Raw amplitudes of a node capture's most common shape, `T × (ant·sub)`.
fn capture_amplitudes(bytes: &[u8]) -> Option<Vec<f32>> {
    let (frames, _) = parse_capture(bytes);
    aether_data::readers::amplitude_matrix(&frames).map(|m| m.rows)
}

/// WiBaSL anchor rows: records with Nrx = 2, tx 0 only, `|csi|` unscaled, T × 60.
fn wibasl_rows(bytes: &[u8]) -> Option<Vec<f32>> {
    let log = intel5300::parse_dat(bytes).ok()?;
    let mut out = Vec::new();
    for b in log.records.iter().filter(|b| b.n_rx == 2) {
        b.push_tx_amplitudes(0, &mut out);
    }
    (!out.is_empty()).then_some(out)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

fn report(label: &str, anchor: &str, accs: &[f64], f1s: &[f64], secs: f64) {
    let (a, asd) = mean_sd(accs);
    let (f, fsd) = mean_sd(f1s);
    let each: Vec<String> = accs.iter().map(|x| format!("{x:.3}")).collect();
    println!(
        "{label:<44} accuracy {a:.3} ± {asd:.3} [{}]  macro-F1 {f:.3} ± {fsd:.3}  anchor {anchor}  ({secs:.0} s)",
        each.join(" ")
    );
}

fn run_kfold(label: &str, anchor: &str, ds: &Dataset, seeds: u64, base: ForestConfig) {
    let t = Instant::now();
    let (mut accs, mut f1s) = (Vec::new(), Vec::new());
    for seed in 0..seeds {
        let cfg = ForestConfig { seed, ..base };
        let k = kfold(ds, 5, seed, &cfg).expect("k-fold");
        accs.push(k.pooled.report.accuracy);
        f1s.push(k.pooled.report.macro_f1);
    }
    report(label, anchor, &accs, &f1s, t.elapsed().as_secs_f64());
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut root = PathBuf::from("../shared/data");
    let mut seeds = 1u64;
    let mut trees = aether_baseline::DEFAULT_TREES;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seeds" => seeds = args.next().and_then(|s| s.parse().ok()).unwrap_or(1),
            "--trees" => trees = args.next().and_then(|s| s.parse().ok()).unwrap_or(trees),
            _ => root = PathBuf::from(a),
        }
    }
    let pct = ForestConfig {
        trees,
        stats: StatSet::Percentiles,
        ..ForestConfig::default()
    };
    println!(
        "forest: {trees} trees, forest and split seeds 0..{seeds}; accuracy pooled over folds"
    );

    let esp = root.join("espectre-esp32");
    let sub64: Vec<String> = (0..64).map(|k| format!("sc{k}")).collect();
    let feat_names = aether_data::features::feature_names(1, FeatureConfig::default());
    for (task, classes, anchor) in [
        ("gestures", &["wave", "circle_cw", "no_gesture"][..], "0.90"),
        ("presence", &["baseline", "movement"][..], "0.70"),
    ] {
        if let Some(ds) = folder_dataset(&esp, classes, sub64.clone(), capture_amplitudes) {
            run_kfold(
                &format!("espectre {task}, 5-fold, |I+jQ| x 64"),
                anchor,
                &ds,
                seeds,
                pct,
            );
        }
        let feats = |b: &[u8]| {
            capture_features(b, FeatureConfig::default())
                .ok()
                .map(|c| c.features)
        };
        if let Some(ds) = folder_dataset(&esp, classes, feat_names.clone(), feats) {
            run_kfold(
                &format!("espectre {task}, 5-fold, features x 16"),
                anchor,
                &ds,
                seeds,
                pct,
            );
        }
    }

    let har = root.join("stability-har-esp32s2");
    if har.is_dir() {
        let (ds, _) = aether_data::dataset::load_dataset(&har).expect("stability-har");
        for (test, anchor) in [("D2", "0.42"), ("D3", "0.33"), ("D4", "0.17")] {
            let t = Instant::now();
            let s = ds.split_by_groups(&["D1"], &[test]).expect("groups");
            let (train, held) = (ds.subset(&s.train), ds.subset(&s.test));
            let (mut accs, mut f1s) = (Vec::new(), Vec::new());
            for seed in 0..seeds {
                let e = evaluate(&train, &held, &ForestConfig { seed, ..pct }).expect("evaluate");
                accs.push(e.report.accuracy);
                f1s.push(e.report.macro_f1);
            }
            report(
                &format!(
                    "stability-har D1 -> {test} ({} test)",
                    held.recordings.len()
                ),
                anchor,
                &accs,
                &f1s,
                t.elapsed().as_secs_f64(),
            );
        }
    }

    let wib = root.join("wibasl-intel5300");
    if wib.is_dir() {
        let mut classes: Vec<String> = std::fs::read_dir(&wib)
            .expect("wibasl")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        classes.sort();
        let refs: Vec<&str> = classes.iter().map(String::as_str).collect();
        let names: Vec<String> = (0..2)
            .flat_map(|r| (0..30).map(move |k| format!("rx{r}_tx0_sc{k}")))
            .collect();
        let ds = folder_dataset(&wib, &refs, names, wibasl_rows).expect("wibasl");
        let mm = ForestConfig {
            stats: StatSet::MinMax,
            ..pct
        };
        run_kfold(
            &format!("wibasl (b), 5-fold, {} recordings", ds.recordings.len()),
            "0.590",
            &ds,
            seeds,
            mm,
        );
    }
}
