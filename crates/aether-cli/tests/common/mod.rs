//! Helpers shared by the issue-17 tests: run the binary, check the exit-code and
//! one-line-error contract, and build inputs with the libraries (not the binary under
//! test). `AETHER_BIN` runs the tests against another build of `aether` (e.g. an older
//! one, to see which tests it fails).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aether_data::features::FeatureConfig;
use aether_data::sim::{simulate, Task};
use aether_rvne::{reference_init, DType, Dims, ModelMeta, REFERENCE_SEED};

/// The binary under test.
pub fn bin() -> PathBuf {
    std::env::var_os("AETHER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_aether")))
}

/// A command for the binary under test.
pub fn cmd() -> Command {
    Command::new(bin())
}

/// Runs `aether ARGS`.
pub fn aether(args: &[&str]) -> Output {
    cmd().args(args).output().expect("run aether")
}

/// Runs `aether ARGS` in `cwd`.
pub fn aether_in(cwd: &Path, args: &[&str]) -> Output {
    cmd()
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run aether")
}

/// Stdout of a successful run.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts the error contract — exit code 1, exactly one stderr line `aether: …`, no
/// panic — and that the line contains every needle; returns the line.
pub fn fails(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit code 1 expected; stderr: {err}"
    );
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 1, "one stderr line expected: {err:?}");
    assert!(lines[0].starts_with("aether: "), "{err:?}");
    for n in needles {
        assert!(err.contains(n), "stderr {err:?} lacks {n:?}");
    }
    lines[0].to_string()
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a simulated dataset folder (`per_class` recordings per class) under `dir/name`.
pub fn dataset(dir: &Path, name: &str, task: Task, per_class: usize, seed: u64) -> PathBuf {
    let ds = simulate(task, per_class, seed, FeatureConfig::default()).unwrap();
    let root = dir.join(name);
    for f in ds.to_files().unwrap() {
        std::fs::create_dir_all(root.join(&f.class)).unwrap();
        std::fs::write(root.join(&f.class).join(&f.file_name), f.contents).unwrap();
    }
    root
}

/// The reference v1 model (16 features, 4 classes) and the same weights as v2 with
/// feature names `f0..f15` and class names; returns `(v1, v2)`.
pub fn models(dir: &Path) -> (PathBuf, PathBuf) {
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

/// A CSV of `n` frames with 16 columns named `f0..f15`.
pub fn frames_csv(n: usize) -> String {
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

/// Path as `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names of the entries of `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Smallest training settings: one epoch of the smallest head, no progress output.
pub const TINY: [&str; 7] = [
    "--epochs",
    "1",
    "--d-model",
    "16",
    "--layers",
    "1",
    "--quiet",
];
