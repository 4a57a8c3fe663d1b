//! End-to-end tests of `aether train`, `eval`, `gate` and `demo` through the binary, on
//! tiny simulated datasets (few recordings, few epochs).

use std::path::Path;
use std::process::{Command, Output};

use aether_rvne::BlobView;

fn aether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(args)
        .output()
        .expect("run aether")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails with exactly one stderr line containing every needle.
fn fails(out: &Output, needles: &[&str]) {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} lacks {n:?}");
    }
}

/// The JSON report of a gate run: printed whether the gate passed (exit 0) or failed
/// (exit 1 with one line naming the failed checks; at these sizes latency always fails).
fn gate_report(out: &Output) -> String {
    if !out.status.success() {
        fails(out, &["gate failed"]);
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn simulate(dir: &Path, name: &str, task: &str, recordings: usize, seed: u64) -> String {
    let p = dir.join(name);
    ok(&aether(&[
        "simulate",
        "--task",
        task,
        "--out",
        p.to_str().unwrap(),
        "--recordings",
        &recordings.to_string(),
        "--seed",
        &seed.to_string(),
    ]));
    p.to_str().unwrap().to_string()
}

const SMALL: [&str; 10] = [
    "--epochs",
    "3",
    "--d-model",
    "16",
    "--layers",
    "1",
    "--quiet",
    "--threads",
    "2",
    "--no-plots",
];

/// One epoch of the smallest head: for tests that check plumbing, not learning.
const TINY: [&str; 7] = [
    "--epochs",
    "1",
    "--d-model",
    "16",
    "--layers",
    "1",
    "--quiet",
];

fn train(data: &str, out: &Path, extra: &[&str]) -> Output {
    let mut a = vec!["train", "--data", data, "--out", out.to_str().unwrap()];
    a.extend_from_slice(extra);
    aether(&a)
}

#[test]
fn train_eval_classify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = simulate(dir.path(), "g0", "gesture", 4, 3);
    let held = simulate(dir.path(), "g1", "gesture", 2, 4);
    let model = dir.path().join("m.rvne");
    let out = train(&data, &model, &["--epochs", "2", "--quiet"]);
    let text = ok(&out);
    assert!(text.contains("validation: accuracy"), "{text}");
    for f in ["m.rvne", "m.json", "m.curves.svg", "m.confusion.svg"] {
        assert!(dir.path().join(f).is_file(), "{f} missing");
    }
    let bytes = std::fs::read(&model).unwrap();
    let view = BlobView::parse(&bytes).unwrap();
    assert_eq!(view.class_name(0), Some("circle"));
    assert_eq!(view.feature_name(0), Some("a0_b00"));
    assert_eq!(view.metadata_value("data.sha256").map(str::len), Some(64));
    assert_eq!(view.metadata_value("train.seed"), Some("0"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(report["epochs_run"], 2);
    let window = report["window"].as_u64().unwrap();
    assert!((1..=512).contains(&window));
    assert_eq!(
        view.metadata_value("data.window"),
        Some(window.to_string().as_str())
    );
    assert_eq!(report["history"].as_array().unwrap().len(), 2);
    assert!(report["validation"]["accuracy"].is_number());

    let e = ok(&aether(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &held,
        "--json",
    ]));
    let j: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    let acc = j["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(j["macro_f1"].is_number());
    assert_eq!(j["classes"].as_array().unwrap().len(), 4);
    let conf = j["confusion"].as_array().unwrap();
    let total: u64 = conf
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 8, "one vote per held-out recording");
    assert!(j["windows"]["count"].as_u64().unwrap() >= 8);
    let correct: u64 = (0..4).map(|i| conf[i][i].as_u64().unwrap()).sum();
    assert!((acc - correct as f64 / 8.0).abs() < 1e-12);
    let text = ok(&aether(&[
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        &held,
    ]));
    assert!(text.contains("per recording") && text.contains("window level"));

    let csv = std::fs::read_dir(Path::new(&held).join("wave"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let c = ok(&aether(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        "--input",
        csv.to_str().unwrap(),
        "--json",
    ]));
    let cj: serde_json::Value = serde_json::from_str(c.trim()).unwrap();
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count() - 1;
    assert_eq!(cj["frames"].as_u64().unwrap() as usize, rows);
}

#[test]
fn same_seed_same_model_bytes_and_v1_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = simulate(dir.path(), "f", "anomaly", 3, 5);
    let a = dir.path().join("a.rvne");
    let b = dir.path().join("b.rvne");
    ok(&train(&data, &a, &SMALL));
    let mut one_thread = SMALL.to_vec();
    one_thread[8] = "1";
    ok(&train(&data, &b, &one_thread));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let mut other = SMALL.to_vec();
    other.extend(["--seed", "9"]);
    ok(&train(&data, &b, &other));
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    let v1 = dir.path().join("v1.rvne");
    ok(&train(
        &data,
        &v1,
        &["--format", "v1", "--epochs", "2", "--quiet", "--no-plots"],
    ));
    let bytes = std::fs::read(&v1).unwrap();
    assert_eq!(&bytes[4..6], &[1, 0], "version 1");
    let e = ok(&aether(&[
        "eval",
        "--model",
        v1.to_str().unwrap(),
        "--data",
        &data,
        "--json",
    ]));
    let j: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert_eq!(j["recordings"], 6);
    let bad = train(
        &data,
        &v1,
        &[
            "--format", "v1", "--arch", "no mlp", "--epochs", "1", "--quiet",
        ],
    );
    fails(&bad, &["v1"]);
}

#[test]
fn bad_data_dirs_fail_with_one_line_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.rvne");
    fails(
        &train(dir.path().join("missing").to_str().unwrap(), &m, &[]),
        &["missing"],
    );
    let root = dir.path().join("bad");
    for c in ["a", "b"] {
        std::fs::create_dir_all(root.join(c)).unwrap();
        std::fs::write(root.join(c).join("r1.csv"), "x,y\n1,2\n3,4\n").unwrap();
    }
    std::fs::write(root.join("b").join("r2.csv"), "x,y\n1,2\n3\n").unwrap();
    fails(
        &train(root.to_str().unwrap(), &m, &[]),
        &["r2.csv", "row 3"],
    );
    std::fs::write(root.join("b").join("r2.csv"), "x,y\n1,2\n3,zz\n").unwrap();
    fails(
        &train(root.to_str().unwrap(), &m, &[]),
        &["r2.csv", "row 3", "column 2"],
    );
    std::fs::write(root.join("b").join("r2.csv"), "x,z\n1,2\n").unwrap();
    fails(&train(root.to_str().unwrap(), &m, &[]), &["r2.csv"]);
    assert!(!m.exists(), "no model written on failure");
    std::fs::remove_file(root.join("b").join("r2.csv")).unwrap();
    std::fs::remove_file(root.join("b").join("r1.csv")).unwrap();
    fails(&train(root.to_str().unwrap(), &m, &[]), &["b"]);
}

#[test]
fn eval_refuses_a_dataset_of_other_classes() {
    let dir = tempfile::tempdir().unwrap();
    let g = simulate(dir.path(), "g", "gesture", 2, 1);
    let f = simulate(dir.path(), "f", "fall", 2, 1);
    let m = dir.path().join("m.rvne");
    ok(&train(&g, &m, &SMALL));
    fails(
        &aether(&["eval", "--model", m.to_str().unwrap(), "--data", &f]),
        &["classes"],
    );
}

#[test]
fn kfold_and_gate_report_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = simulate(dir.path(), "a", "anomaly", 4, 2);
    let rep = dir.path().join("cv.json");
    let mut args = vec!["--kfold", "2"];
    args.extend_from_slice(&TINY);
    let out = ok(&train(&data, &rep, &args));
    assert!(out.contains("2-fold by recording"), "{out}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    assert_eq!(j["per_fold"].as_array().unwrap().len(), 2);
    let total: u64 = j["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 8, "every recording tested once");

    let mut args = vec!["gate", "--data", &data, "--repeats", "3", "--json"];
    args.extend_from_slice(&TINY);
    let g = gate_report(&aether(&args));
    let j: serde_json::Value = serde_json::from_str(g.trim()).unwrap();
    for k in [
        "accuracy_delta",
        "loss_relative_delta",
        "spearman_top50",
        "latency_ratio",
    ] {
        assert!(j.get(k).is_some(), "{k} missing in {j}");
    }
    assert!(j["sparse"]["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(j["gate"].as_array().unwrap().len(), 4);
}

#[test]
fn running_norm_is_recorded_and_streams_like_the_whole_forward() {
    let dir = tempfile::tempdir().unwrap();
    let data = simulate(dir.path(), "b", "breathing", 3, 2);
    let model = dir.path().join("rn.rvne");
    let mut args = vec!["--running-norm", "--no-plots"];
    args.extend_from_slice(&TINY);
    ok(&train(&data, &model, &args));
    let m = model.to_str().unwrap();
    let info = ok(&aether(&["inspect", m]));
    assert!(info.contains("running_norm=yes"), "{info}");
    let csv = std::fs::read_dir(Path::new(&data).join("apnea"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let csv = csv.to_str().unwrap();
    // The whole recording forwarded once and streamed frame by frame end on the same class.
    let whole: serde_json::Value = serde_json::from_str(
        ok(&aether(&[
            "classify", "--model", m, "--input", csv, "--json",
        ]))
        .trim(),
    )
    .unwrap();
    let lines = ok(&aether(&[
        "classify", "--model", m, "--input", csv, "--stream", "--json",
    ]));
    let stream: serde_json::Value =
        serde_json::from_str(lines.trim().lines().last().unwrap()).unwrap();
    assert_eq!(
        stream["frame"].as_u64().unwrap() + 1,
        whole["frames"].as_u64().unwrap()
    );
    for (a, b) in whole["logits"]
        .as_array()
        .unwrap()
        .iter()
        .zip(stream["logits"].as_array().unwrap())
    {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
            "{whole} vs {stream}"
        );
    }
    assert_eq!(whole["class"], stream["class"], "{whole} vs {stream}");
    let v1 = dir.path().join("v1.rvne");
    fails(
        &train(
            &data,
            &v1,
            &[
                "--running-norm",
                "--format",
                "v1",
                "--arch",
                "bare v1",
                "--epochs",
                "1",
                "--quiet",
            ],
        ),
        &["v1"],
    );
}

#[test]
fn gate_tests_on_a_separate_dataset_over_several_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = simulate(dir.path(), "a", "anomaly", 4, 2);
    let test = simulate(dir.path(), "b", "anomaly", 3, 5);
    let mut small = TINY.to_vec();
    small.extend_from_slice(&["--repeats", "2"]);
    let mut args = vec![
        "gate",
        "--data",
        &data,
        "--test-data",
        &test,
        "--seeds",
        "2",
    ];
    args.extend_from_slice(&small);
    args.push("--json");
    let j: serde_json::Value = serde_json::from_str(gate_report(&aether(&args)).trim()).unwrap();
    assert_eq!(
        j["test_recordings"], 6,
        "every recording of the test data: {j}"
    );
    let runs = j["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["seed"], 0);
    assert_eq!(runs[1]["seed"], 1);
    let mean = (runs[0]["accuracy_delta"].as_f64().unwrap()
        + runs[1]["accuracy_delta"].as_f64().unwrap())
        / 2.0;
    assert!((j["accuracy_delta"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(j["accuracy_delta_sd"].as_f64().unwrap() >= 0.0);

    let other = simulate(dir.path(), "c", "fall", 2, 1);
    let mut bad = vec!["gate", "--data", &data, "--test-data", &other];
    bad.extend_from_slice(&small);
    fails(&aether(&bad), &["classes", "differ"]);
    let mut zero = vec!["gate", "--data", &data, "--seeds", "0"];
    zero.extend_from_slice(&small);
    fails(&aether(&zero), &["--seeds"]);
}

#[test]
fn demo_runs_from_any_directory_and_writes_only_under_out() {
    let cwd = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_aether"))
        .current_dir(cwd.path())
        .args([
            "demo",
            "--out",
            out_dir.to_str().unwrap(),
            "--recordings",
            "3",
            "--held-out",
            "1",
            "--epochs",
            "1",
            "--quiet",
        ])
        .output()
        .unwrap();
    let text = ok(&out);
    assert!(text.contains("held-out accuracy"), "{text}");
    assert!(text.contains("frame by frame"), "{text}");
    assert!(out_dir.join("gesture.rvne").is_file());
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
    let again = Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(["demo", "--out", out_dir.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    fails(&again, &["not empty"]);
}
