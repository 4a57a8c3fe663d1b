//! `aether classify` end to end on the reference v1 blob and a v2 blob with class names.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use aether_rvne::{reference_init, DType, Dims, ModelMeta, REFERENCE_SEED};

fn aether() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aether"))
}

fn models(dir: &Path) -> (PathBuf, PathBuf) {
    let meta = ModelMeta::v1_defaults(Dims::AETHER_DEFAULT);
    let mut model = reference_init(&meta, REFERENCE_SEED, DType::F32).unwrap();
    let v1 = dir.join("ref.rvne");
    std::fs::write(&v1, model.to_v1_bytes(DType::F32).unwrap()).unwrap();
    model.class_names = ["wave", "circle", "fall", "idle"]
        .map(String::from)
        .to_vec();
    model.feature_names = (0..16).map(|i| format!("f{i}")).collect();
    let v2 = dir.join("named.rvne");
    std::fs::write(&v2, model.to_v2_bytes(DType::F32).unwrap()).unwrap();
    (v1, v2)
}

fn csv(n: usize) -> String {
    let mut s = (0..16)
        .map(|i| format!("f{i}"))
        .collect::<Vec<_>>()
        .join(",");
    s.push('\n');
    for t in 0..n {
        let row: Vec<String> = (0..16)
            .map(|f| format!("{}", ((0.1 * t as f32 + 0.3 * f as f32).sin())))
            .collect();
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

fn run(args: &[&str]) -> Output {
    aether().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn logits(v: &serde_json::Value) -> Vec<f64> {
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn whole_stream_and_window_modes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = models(dir.path());
    let input = dir.path().join("in.csv");
    std::fs::write(&input, csv(40)).unwrap();
    let (m, i) = (v1.to_str().unwrap(), input.to_str().unwrap());

    let whole: serde_json::Value = serde_json::from_str(&stdout(&run(&[
        "classify", "--model", m, "--input", i, "--json",
    ])))
    .unwrap();
    let p: f64 = whole["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .sum();
    assert!((p - 1.0).abs() < 1e-5);
    assert!(whole["class"].as_str().unwrap().starts_with("class"));

    let s = stdout(&run(&[
        "classify", "--model", m, "--input", i, "--stream", "--json",
    ]));
    let lines: Vec<serde_json::Value> = s
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 40);
    assert_eq!(lines[39]["frame"], 39);
    for (a, b) in logits(&lines[39]).iter().zip(logits(&whole)) {
        assert!((a - b).abs() < 1e-4);
    }

    let s = stdout(&run(&[
        "classify", "--model", m, "--input", i, "--window", "10", "--stride", "5", "--json",
    ]));
    let wins: Vec<serde_json::Value> = s
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // windows end at frames 9, 14, …, 39
    assert_eq!(wins.len(), 7);
    assert_eq!(
        (wins[6]["start"].as_u64(), wins[6]["end"].as_u64()),
        (Some(30), Some(39))
    );

    // Plain output with class names from a v2 file; stdin input.
    let mut child = aether()
        .args(["classify", "--model", v2.to_str().unwrap(), "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(csv(40).as_bytes())
        .unwrap();
    let out = stdout(&child.wait_with_output().unwrap());
    for name in ["wave", "circle", "fall", "idle", "probability", "40 frames"] {
        assert!(out.contains(name), "{out}");
    }
    let plain_stream = stdout(&run(&[
        "classify",
        "--model",
        v2.to_str().unwrap(),
        "--input",
        i,
        "--stream",
    ]));
    assert_eq!(plain_stream.lines().count(), 41);
    assert!(plain_stream.lines().next().unwrap().contains("p(wave)"));

    // Dense override runs and differs from sparse at 40 frames only through attention.
    let dense: serde_json::Value = serde_json::from_str(&stdout(&run(&[
        "classify",
        "--model",
        m,
        "--input",
        i,
        "--json",
        "--backend",
        "dense",
    ])))
    .unwrap();
    assert_eq!(logits(&dense).len(), 4);
}

#[test]
fn bad_input_fails_with_file_row_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = models(dir.path());
    let m = v1.to_str().unwrap();
    let bad = dir.path().join("bad.csv");
    let mut text = csv(5);
    text.push_str(&vec!["0.5"; 15].join(","));
    text.push_str(",oops\n");
    std::fs::write(&bad, &text).unwrap();
    let o = run(&["classify", "--model", m, "--input", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("bad.csv")
            && e.contains("row 7")
            && e.contains("column 16")
            && e.contains("oops"),
        "{e}"
    );

    std::fs::write(&bad, "a,b\n1,2\n").unwrap();
    let o = run(&["classify", "--model", m, "--input", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("16 features"));

    let wrong_names = dir.path().join("names.csv");
    std::fs::write(&wrong_names, csv(3).replacen("f3", "rssi", 1)).unwrap();
    let o = run(&[
        "classify",
        "--model",
        v2.to_str().unwrap(),
        "--input",
        wrong_names.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("column 4"));

    let corrupt = dir.path().join("corrupt.rvne");
    let mut b = std::fs::read(&v1).unwrap();
    b[50] ^= 0xff;
    std::fs::write(&corrupt, b).unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(&good, csv(3)).unwrap();
    let o = run(&[
        "classify",
        "--model",
        corrupt.to_str().unwrap(),
        "--input",
        good.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("corrupt.rvne"));

    let o = run(&[
        "classify",
        "--model",
        m,
        "--input",
        good.to_str().unwrap(),
        "--window",
        "10",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("fewer than --window 10"));
    let o = run(&["classify", "--model", m, "--input", "/nonexistent.csv"]);
    assert!(!o.status.success());
}
