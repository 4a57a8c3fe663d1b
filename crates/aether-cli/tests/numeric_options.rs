//! Every numeric option of every verb, driven with random values — zero, negative,
//! huge, fractional, NaN, infinite, in range — must end with exit code 1 and one line
//! `aether: …` (never a panic, 101, or an abort, 134): a value outside the option's
//! documented range names the option and its range; a value inside it gets past the
//! range check and fails on the missing input instead. A second property runs the
//! cheap verbs on real data with random in-range and out-of-range values.

mod common;

use std::path::Path;

use aether_data::sim::Task;
use common::*;
use proptest::prelude::*;

/// The documented range of an option.
#[derive(Clone, Copy, Debug)]
enum Range {
    /// Whole numbers `min..=max`.
    Count(i128, i128),
    /// Reals; `open_min` / `open_max` exclude that end.
    Real(f64, f64, bool, bool),
    /// A `u64` seed.
    Seed,
    /// `I/N` with whole numbers `0 ≤ I < N ≤ max` (`serve --partition-of`).
    Fraction(i128),
}

impl Range {
    fn contains(self, v: &str) -> bool {
        match self {
            Range::Count(lo, hi) => v.parse::<i128>().is_ok_and(|x| lo <= x && x <= hi),
            Range::Real(lo, hi, open_lo, open_hi) => v.parse::<f64>().is_ok_and(|x| {
                x.is_finite()
                    && (if open_lo { x > lo } else { x >= lo })
                    && (if open_hi { x < hi } else { x <= hi })
            }),
            Range::Seed => v.parse::<u64>().is_ok(),
            Range::Fraction(max) => v.split_once('/').is_some_and(|(i, n)| {
                match (i.parse::<i128>(), n.parse::<i128>()) {
                    (Ok(i), Ok(n)) => 0 <= i && i < n && n <= max,
                    _ => false,
                }
            }),
        }
    }
}

const TRAIN_OPTS: [(&str, Range); 22] = [
    ("--window", Range::Count(1, 8192)),
    ("--stride", Range::Count(1, 1_000_000)),
    ("--epochs", Range::Count(1, 10_000)),
    ("--batch", Range::Count(1, 4096)),
    ("--lr", Range::Real(0.0, 1.0, true, false)),
    ("--patience", Range::Count(1, 10_000)),
    ("--seed", Range::Seed),
    ("--val", Range::Real(0.0, 1.0, false, true)),
    ("--threads", Range::Count(0, 256)),
    ("--d-model", Range::Count(1, 1024)),
    ("--layers", Range::Count(1, 32)),
    ("--aug-gain", Range::Real(0.0, 10.0, false, false)),
    ("--aug-offset", Range::Real(0.0, 10.0, false, false)),
    ("--aug-noise", Range::Real(0.0, 10.0, false, false)),
    ("--group-field", Range::Count(0, 15)),
    ("--aug-crop", Range::Real(0.0, 1.0, true, false)),
    ("--aug-speed", Range::Real(0.0, 1.0, false, false)),
    ("--aug-mask", Range::Real(0.0, 1.0, false, true)),
    ("--weight-decay", Range::Real(0.0, 1.0, false, false)),
    ("--ema", Range::Real(0.0, 1.0, false, true)),
    ("--label-smoothing", Range::Real(0.0, 1.0, false, true)),
    ("--mixup", Range::Real(0.0, 2.0, false, false)),
];

/// Base arguments of one verb and its numeric options with their ranges.
type Verb = (Vec<&'static str>, Vec<(&'static str, Range)>);

/// `(base arguments, numeric options)` of every verb that has numeric options; the
/// base arguments name inputs that do not exist (or an output under a regular file),
/// so no run gets as far as real work. `{D}` is a scratch directory, `{F}` a file in it.
fn verbs() -> Vec<Verb> {
    let mut train_and_gate = TRAIN_OPTS.to_vec();
    train_and_gate.push(("--kfold", Range::Count(2, 1000)));
    let mut gate = TRAIN_OPTS.to_vec();
    gate.extend([
        ("--test-fraction", Range::Real(0.0, 1.0, false, true)),
        ("--seeds", Range::Count(1, 100)),
        ("--repeats", Range::Count(1, 100_000)),
    ]);
    vec![
        (
            vec!["init", "{F}/x.rvne"],
            vec![
                ("--seed", Range::Seed),
                ("--input-dim", Range::Count(1, 4096)),
                ("--q-heads", Range::Count(1, 256)),
                ("--kv-heads", Range::Count(1, 256)),
                ("--head-dim", Range::Count(1, 1024)),
                ("--layers", Range::Count(1, 256)),
                ("--classes", Range::Count(2, 65_536)),
            ],
        ),
        (
            vec!["convert", "{D}/missing.rvne", "{D}/o.rvne"],
            vec![
                ("--window", Range::Count(0, 1 << 20)),
                ("--block-size", Range::Count(1, 1 << 20)),
                ("--globals", Range::Count(0, 1 << 20)),
            ],
        ),
        (
            vec!["simulate", "--task", "gesture", "--out", "{F}/x"],
            vec![
                ("--recordings", Range::Count(1, 20_000)),
                ("--seed", Range::Seed),
                ("--bands", Range::Count(1, 512)),
                ("--motion-lags", Range::Count(0, 12)),
            ],
        ),
        (
            vec!["features", "--input", "{D}/missing", "--out", "{D}/o"],
            vec![
                ("--bands", Range::Count(1, 512)),
                ("--motion-lags", Range::Count(0, 12)),
            ],
        ),
        (
            vec!["train", "--data", "{D}/missing", "--out", "{D}/m.rvne"],
            train_and_gate,
        ),
        (
            vec![
                "eval",
                "--model",
                "{D}/missing.rvne",
                "--data",
                "{D}/missing",
            ],
            vec![
                ("--window", Range::Count(1, 8192)),
                ("--stride", Range::Count(1, 1_000_000)),
                ("--group-field", Range::Count(0, 15)),
            ],
        ),
        (vec!["gate", "--data", "{D}/missing"], gate),
        (
            vec![
                "adapt",
                "--model",
                "{D}/missing.rvne",
                "--data",
                "{D}/missing",
                "--out",
                "{D}/o.rvne",
            ],
            vec![
                ("--epochs", Range::Count(1, 10_000)),
                ("--lr", Range::Real(0.0, 1.0, true, false)),
                ("--seed", Range::Seed),
                ("--threads", Range::Count(0, 256)),
            ],
        ),
        (
            vec![
                "adapt",
                "--model",
                "{D}/missing.rvne",
                "--data",
                "{D}/missing",
            ],
            vec![("--shots", Range::Count(1, 1000))],
        ),
        (
            vec![
                "adapt",
                "--model",
                "{D}/missing.rvne",
                "--data",
                "{D}/missing",
                "--shots",
                "1",
            ],
            vec![("--seeds", Range::Count(1, 100))],
        ),
        (
            vec!["baseline", "--data", "{D}/missing"],
            vec![
                ("--kfold", Range::Count(2, 1000)),
                ("--trees", Range::Count(1, 10_000)),
                ("--seed", Range::Seed),
                ("--group-field", Range::Count(0, 15)),
            ],
        ),
        (
            vec!["baseline", "--data", "{D}/missing", "--kfold-groups"],
            vec![("--seeds", Range::Count(1, 100))],
        ),
        (
            vec![
                "train",
                "--data",
                "{D}/missing",
                "--out",
                "{D}/r.json",
                "--kfold-groups",
            ],
            vec![("--seeds", Range::Count(1, 100))],
        ),
        (
            vec![
                "classify",
                "--model",
                "{D}/missing.rvne",
                "--input",
                "{D}/in.csv",
                "--window",
                "4",
            ],
            vec![("--stride", Range::Count(1, 1_000_000))],
        ),
        (
            vec![
                "classify",
                "--model",
                "{D}/missing.rvne",
                "--input",
                "{D}/in.csv",
            ],
            vec![("--window", Range::Count(1, 8192))],
        ),
        (
            vec![
                "serve",
                "--model",
                "{D}/missing.rvne",
                "--http",
                "127.0.0.1:0",
                "--udp",
                "127.0.0.1:0",
            ],
            vec![
                ("--shards", Range::Count(0, 1024)),
                ("--ingest-threads", Range::Count(1, 64)),
                ("--stale", Range::Real(0.0, 31_536_000.0, true, false)),
                ("--expire", Range::Real(0.0, 31_536_000.0, true, false)),
                ("--max-gap", Range::Count(0, 1_000_000)),
                ("--publish-hz", Range::Real(0.0, 1000.0, true, false)),
                ("--history", Range::Count(0, 1_000_000)),
                ("--max-nodes", Range::Count(1, 10_000_000)),
                (
                    "--max-node-rate",
                    Range::Real(0.0, 1_000_000.0, false, false),
                ),
                ("--queue", Range::Count(1, 16_777_216)),
                ("--udp-buffer", Range::Count(4096, 1 << 30)),
                ("--ws-buffer", Range::Count(1, 1 << 20)),
                ("--max-request", Range::Count(1024, 1 << 24)),
                ("--horizon", Range::Count(0, 1 << 20)),
                ("--capacity", Range::Count(1, 1 << 20)),
                ("--recent", Range::Count(0, 1 << 20)),
                ("--bands", Range::Count(1, 512)),
                ("--motion-lags", Range::Count(0, 12)),
                ("--demo-nodes", Range::Count(1, 4096)),
                ("--demo-rate", Range::Real(0.0, 10_000.0, true, false)),
                ("--demo-recordings", Range::Count(10, 20_000)),
                ("--mqtt-hz", Range::Real(0.0, 100.0, true, false)),
                ("--heartbeat", Range::Real(1.0, 31_536_000.0, false, false)),
                ("--mqtt-queue", Range::Count(1, 1 << 20)),
                ("--mqtt-buffer", Range::Count(1, 1 << 20)),
                (
                    "--mqtt-reconnect-max",
                    Range::Real(0.1, 3600.0, false, false),
                ),
                ("--record-flush", Range::Real(0.0, 60.0, true, false)),
                ("--record-queue", Range::Count(1, 16_777_216)),
                ("--max-model-bytes", Range::Count(1024, 1 << 30)),
                ("--partitions", Range::Count(0, 1024)),
                ("--partition-of", Range::Fraction(1024)),
                ("--retain", Range::Count(1, 1 << 24)),
                ("--retain-age", Range::Real(0.0, 31_536_000.0, true, false)),
                ("--publish-queue", Range::Count(1, 1 << 24)),
                ("--max-inflight", Range::Count(1, 1 << 20)),
                ("--result-retain", Range::Count(1, 1 << 24)),
                ("--lease-ttl", Range::Real(0.3, 3600.0, false, false)),
                ("--ack-wait", Range::Real(1.0, 3600.0, false, false)),
                ("--dedup-window", Range::Real(0.1, 86_400.0, false, false)),
            ],
        ),
        (
            vec![
                "quantize",
                "--model",
                "{D}/missing.rvne",
                "--calib",
                "{D}/missing",
                "--out",
                "{D}/m8.rvne",
            ],
            vec![
                ("--window", Range::Count(1, 8192)),
                ("--stride", Range::Count(1, 1_000_000)),
                ("--calib-windows", Range::Count(1, 100_000)),
                ("--report-windows", Range::Count(1, 100_000)),
                ("--group-field", Range::Count(0, 15)),
            ],
        ),
        (
            vec!["replay", "--data", "{D}/missing", "--to", "127.0.0.1:9"],
            vec![
                ("--nodes", Range::Count(1, 65_536)),
                ("--rate", Range::Real(0.0, 10_000.0, true, false)),
                ("--duration", Range::Real(0.0, 31_536_000.0, true, false)),
            ],
        ),
        (
            vec![
                "classify",
                "--model",
                "{D}/missing.rvne",
                "--input",
                "{D}/in.csv",
                "--stream",
            ],
            vec![
                ("--horizon", Range::Count(0, 1 << 20)),
                ("--capacity", Range::Count(1, 1 << 20)),
                ("--recent", Range::Count(0, 1 << 20)),
            ],
        ),
        (
            vec!["demo", "--keep", "{F}/x"],
            vec![
                ("--recordings", Range::Count(1, 20_000)),
                ("--held-out", Range::Count(1, 20_000)),
                ("--seed", Range::Seed),
                ("--epochs", Range::Count(1, 10_000)),
            ],
        ),
    ]
}

/// Values a user or an adversary might type for a number.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("1".to_string()),
        any::<i64>().prop_map(|v| v.to_string()),
        (0i64..70_000).prop_map(|v| v.to_string()),
        Just(u64::MAX.to_string()),
        Just("18446744073709551616".to_string()),
        Just("99999999999999999999999999999999999999999".to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        (-2.0f64..12.0).prop_map(|v| format!("{v:.3}")),
        Just("1e30".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-inf".to_string()),
        Just("ten".to_string()),
        Just(String::new()),
    ]
}

/// `--opt value`, or `--opt=value` when the value would otherwise read as a flag.
fn option_args(opt: &str, v: &str, joined: bool) -> Vec<String> {
    let looks_like_flag =
        v.starts_with('-') && v[1..].parse::<f64>().map_or(true, |x| !x.is_finite());
    if joined || looks_like_flag || v.is_empty() {
        vec![format!("{opt}={v}")]
    } else {
        vec![opt.to_string(), v.to_string()]
    }
}

fn scratch() -> (tempfile::TempDir, String, String) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    let (ds, fs) = (s(d.path()).to_string(), s(&f).to_string());
    (d, ds, fs)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn every_numeric_option_refuses_or_passes_cleanly(
        verb in 0usize..10, pick in any::<prop::sample::Index>(), v in value(), joined in any::<bool>()
    ) {
        let verbs = verbs();
        let (base, opts) = &verbs[verb];
        let (opt, range) = opts[pick.index(opts.len())];
        let (_dir, d, f) = scratch();
        let mut args: Vec<String> = base
            .iter()
            .map(|a| a.replace("{D}", &d).replace("{F}", &f))
            .collect();
        args.extend(option_args(opt, &v, joined));
        let out = cmd().args(&args).output().unwrap();
        let err = stderr(&out);
        prop_assert_eq!(out.status.code(), Some(1), "{:?}: {}", args, err);
        prop_assert_eq!(err.trim_end().lines().count(), 1, "{:?}: {}", args, err);
        prop_assert!(err.starts_with("aether: ") && !err.contains("panicked"), "{}", err);
        let refused = err.contains(&format!("invalid value '{v}' for {opt}: must be"));
        prop_assert_eq!(refused, !range.contains(&v), "{:?}: {}", args, err);
    }
}

/// A tiny dataset, the reference model and a CSV of its features, built once.
fn fixtures(dir: &Path) -> (String, String, String) {
    let data = dataset(dir, "d", Task::Gesture, 2, 1);
    let (v1, _) = models(dir);
    let csv = data.join("wave").join("synthetic_s1_wave_000.csv");
    (
        s(&data).to_string(),
        s(&v1).to_string(),
        s(&csv).to_string(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn windows_on_real_data_succeed_or_fail_cleanly(
        verb in 0usize..3, w in value(), st in value()
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (data, model, csv) = fixtures(dir.path());
        let m = dir.path().join("m.rvne");
        let mut args: Vec<String> = match verb {
            0 => vec!["classify", "--model", &model, "--input", &csv],
            1 => vec!["eval", "--model", &model, "--data", &data],
            _ => vec!["train", "--data", &data, "--out", s(&m), "--no-plots"],
        }
        .into_iter()
        .map(String::from)
        .collect();
        args.extend(option_args("--window", &w, false));
        args.extend(option_args("--stride", &st, false));
        if verb == 2 {
            args.extend(TINY.iter().map(|a| a.to_string()));
            args.extend(option_args("--batch", &st, true));
        }
        let out = cmd().args(&args).output().unwrap();
        let err = stderr(&out);
        match out.status.code() {
            Some(0) => {}
            Some(1) => {
                prop_assert_eq!(err.trim_end().lines().count(), 1, "{:?}: {}", args, err);
                prop_assert!(err.starts_with("aether: "), "{}", err);
            }
            c => prop_assert!(false, "{:?}: exit {:?}: {}", args, c, err),
        }
    }
}
