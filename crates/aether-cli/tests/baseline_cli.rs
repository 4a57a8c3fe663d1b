//! End-to-end tests of `aether baseline` on tiny dataset folders the tests write.

use std::path::Path;
use std::process::{Command, Output};

const NAMES: [&str; 4] = ["left", "mid", "right", "up"];

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

/// `DATA/<class>/<class>_<i>.csv` with columns `a,b`: the levels of both
/// columns are set by the class name (its place in [`NAMES`]), plus a wobble.
fn write_dataset(dir: &Path, classes: &[&str], per_class: usize, offset: usize) {
    for class in classes {
        let c = NAMES.iter().position(|n| n == class).unwrap();
        let d = dir.join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..per_class {
            let mut s = String::from("a,b\n");
            for t in 0..12 {
                let h =
                    (c * 1_000_003 + i * 10_007 + t * 101 + offset * 7).wrapping_mul(2_654_435_761);
                let wobble = ((h >> 8) % 1000) as f32 * 4e-4;
                s += &format!("{},{}\n", 3.0 * c as f32 + wobble, wobble - 2.0 * c as f32);
            }
            std::fs::write(d.join(format!("{class}_{i}.csv")), s).unwrap();
        }
    }
}

#[test]
fn kfold_text_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write_dataset(&data, &["left", "right"], 9, 0);
    let d = data.to_str().unwrap();
    let text = ok(&aether(&[
        "baseline", "--data", d, "--kfold", "3", "--trees", "30",
    ]));
    assert!(text.contains("random forest: 30 trees, seed 0"), "{text}");
    assert!(text.contains("3-fold by recording"), "{text}");
    assert!(text.contains("fold 3/3"), "{text}");
    assert!(
        text.contains(
            "accuracy 1.0000 per recording (18 recordings, pooled over folds), macro-F1 1.0000"
        ),
        "{text}"
    );
    assert!(text.contains("confusion"), "{text}");

    let json = ok(&aether(&[
        "baseline", "--data", d, "--trees", "30", "--json", "--stats", "minmax",
    ]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["accuracy"], 1.0);
    assert_eq!(v["macro_f1"], 1.0);
    assert_eq!(v["mode"], "kfold");
    assert_eq!(v["folds"].as_array().unwrap().len(), 5);
    assert_eq!(v["classes"], serde_json::json!(["left", "right"]));
    assert_eq!(v["confusion"], serde_json::json!([[9, 0], [0, 9]]));
    assert_eq!(v["per_class"][1]["recall"], 1.0);
    assert_eq!(v["stats"][2], "min");
    assert_eq!(v["predictions"].as_array().unwrap().len(), 18);
    // same seed, same output
    assert_eq!(
        json,
        ok(&aether(&[
            "baseline", "--data", d, "--trees", "30", "--json", "--stats", "minmax"
        ]))
    );
}

#[test]
fn train_test_split_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let (train, test, odd) = (
        tmp.path().join("tr"),
        tmp.path().join("te"),
        tmp.path().join("odd"),
    );
    write_dataset(&train, &["left", "mid", "right"], 5, 0);
    write_dataset(&test, &["mid", "right"], 3, 1);
    write_dataset(&odd, &["left", "up"], 2, 0);
    let p = |x: &Path| x.to_str().unwrap().to_string();
    let out = ok(&aether(&[
        "baseline",
        "--data",
        &p(&train),
        "--test",
        &p(&test),
        "--trees",
        "20",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mode"], "test");
    assert_eq!(v["recordings"], 6);
    assert_eq!(v["accuracy"], 1.0);
    assert_eq!(v["classes"], serde_json::json!(["left", "mid", "right"]));
    assert!(v.get("folds").is_none());

    let bad = aether(&[
        "baseline",
        "--data",
        &p(&train),
        "--test",
        &p(&odd),
        "--trees",
        "5",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("test class `up` is not a training class"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let both = aether(&[
        "baseline",
        "--data",
        &p(&train),
        "--test",
        &p(&test),
        "--kfold",
        "2",
    ]);
    assert!(!both.status.success());
    let folds = aether(&["baseline", "--data", &p(&odd), "--kfold", "9"]);
    assert!(String::from_utf8_lossy(&folds.stderr).contains("9-fold needs"));
}
