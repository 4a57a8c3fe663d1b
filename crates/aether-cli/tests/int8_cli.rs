//! The int8 verbs end to end: `aether train --int8` and `aether quantize` write int8
//! models that `inspect` declares as `i8`, `eval` scores, and `classify` runs in every
//! mode with exactly the integer head's logits (bit for bit: whole sequence, rolling
//! window and live stream); misuse is refused with one line.

mod common;

use aether_data::sim::Task;
use aether_quant::{QLiveStream, QuantHead};
use common::*;
use serde_json::Value;

/// Logits of `--json` lines (`logits` arrays, as f32).
fn logits_of(stdout: &str) -> Vec<Vec<f32>> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn to_f32(h: &QuantHead<'_>, q: &[i32]) -> Vec<f32> {
    let mut out = vec![0.0f32; q.len()];
    h.logits_to_f32(q, &mut out);
    out
}

/// `aether train --int8` of a small head (D 16, one thread) on `data` to `model`, plus `extra`.
fn train_int8(data: &std::path::Path, model: &std::path::Path, extra: &[&str]) {
    let mut args = vec!["train", "--data", s(data), "--out", s(model)];
    args.extend_from_slice(extra);
    args.extend([
        "--d-model",
        "16",
        "--threads",
        "1",
        "--quiet",
        "--no-plots",
        "--int8",
    ]);
    ok(&aether(&args));
}

#[test]
fn int8_models_through_every_verb() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "data", Task::Gesture, 6, 3);
    let model = dir.path().join("m.rvne");
    train_int8(&data, &model, &["--epochs", "2"]);
    let sibling = dir.path().join("m.int8.rvne");
    assert!(sibling.exists(), "train --int8 writes the int8 sibling");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    assert!(
        report["int8"]["validation"]["accuracy"].is_number(),
        "{report}"
    );

    // quantize: report and file
    let q = dir.path().join("q.rvne");
    let out = ok(&aether(&[
        "quantize",
        "--model",
        s(&model),
        "--calib",
        s(&data),
        "--out",
        s(&q),
        "--json",
    ]));
    let rep: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(rep["layers"].as_array().unwrap().len(), 4, "{rep}");
    assert!(rep["argmax_agreement"].as_f64().unwrap() > 0.5, "{rep}");
    let text = ok(&aether(&[
        "quantize",
        "--model",
        s(&model),
        "--calib",
        s(&data),
        "--out",
        s(&q),
    ]));
    assert!(
        text.contains("residual after layer 1") && text.contains("argmax agreement"),
        "{text}"
    );
    // an int8 model is not quantised again, and a float reader refuses it clearly
    fails(
        &aether(&[
            "quantize",
            "--model",
            s(&q),
            "--calib",
            s(&data),
            "--out",
            s(&dir.path().join("qq.rvne")),
        ]),
        &["already an int8 model"],
    );
    fails(
        &aether(&["convert", s(&q), s(&dir.path().join("c.rvne"))]),
        &["int8 model"],
    );

    // inspect declares the quantised tensors as i8
    let j: Value = serde_json::from_str(&ok(&aether(&["inspect", s(&q), "--json"]))).unwrap();
    let dtype = |name: &str| {
        j["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["dtype"].as_str().unwrap().to_string())
    };
    assert_eq!(dtype("layers.0.wq").as_deref(), Some("i8"));
    assert_eq!(dtype("classifier.w").as_deref(), Some("i8"));
    assert_eq!(dtype("layers.0.wq.rq").as_deref(), Some("i32"));
    assert_eq!(dtype("layers.0.wq.scale").as_deref(), Some("f32"));
    assert!(j["int8"]["logit_shift"].is_number());
    assert!(ok(&aether(&["inspect", s(&q)])).contains("int8:"));

    // eval scores the int8 model
    let e: Value = serde_json::from_str(&ok(&aether(&[
        "eval",
        "--model",
        s(&q),
        "--data",
        s(&data),
        "--json",
    ])))
    .unwrap();
    assert!(e["accuracy"].is_number());
    fails(
        &aether(&[
            "eval",
            "--model",
            s(&q),
            "--data",
            s(&data),
            "--backend",
            "dense",
        ]),
        &["int8"],
    );

    // classify: bit for bit the integer head
    let bytes = std::fs::read(&q).unwrap();
    let head = QuantHead::from_blob(&bytes).unwrap();
    let f = head.features();
    let rec = std::fs::read_dir(data.join("push"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let csv = std::fs::read_to_string(&rec).unwrap();
    let frames: Vec<f32> = csv
        .lines()
        .skip(1)
        .flat_map(|l| {
            l.split(',')
                .map(|v| v.parse::<f32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let n = frames.len() / f;
    let whole = logits_of(&ok(&aether(&[
        "classify",
        "--model",
        s(&q),
        "--input",
        s(&rec),
        "--json",
    ])));
    assert_eq!(whole, vec![to_f32(&head, &head.forward(&frames).unwrap())]);
    let win = logits_of(&ok(&aether(&[
        "classify",
        "--model",
        s(&q),
        "--input",
        s(&rec),
        "--json",
        "--window",
        "40",
        "--stride",
        "25",
    ])));
    let want: Vec<Vec<f32>> = (39..n)
        .step_by(25)
        .map(|end| {
            to_f32(
                &head,
                &head
                    .forward(&frames[(end + 1 - 40) * f..(end + 1) * f])
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(win, want);
    let stream = logits_of(&ok(&aether(&[
        "classify",
        "--model",
        s(&q),
        "--input",
        s(&rec),
        "--json",
        "--stream",
        "--horizon",
        "32",
    ])));
    let mut live = QLiveStream::new(&head, 32).unwrap();
    let want: Vec<Vec<f32>> = frames
        .chunks(f)
        .map(|fr| to_f32(&head, live.push(&head, fr).unwrap()))
        .collect();
    assert_eq!(stream, want);
    fails(
        &aether(&[
            "classify",
            "--model",
            s(&q),
            "--input",
            s(&rec),
            "--stream",
            "--horizon",
            "0",
        ]),
        &["horizon"],
    );
}

/// `train --int8 --qat-epochs N`: the fine-tuning runs after training (its epochs in the
/// report and the provenance), the float model's matrices are on their int8 grid, and
/// the int8 sibling holds exactly those integers (the matrices whose activation scales
/// fold per output column; `wo` folds the value scales per row, docs/int8.md).
#[test]
fn quantisation_aware_fine_tuning_puts_the_float_weights_on_the_int8_grid() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), "data", Task::Gesture, 6, 3);
    let model = dir.path().join("m.rvne");
    train_int8(&data, &model, &["--epochs", "3", "--qat-epochs", "2"]);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(report["config"]["qat_epochs"], 2, "{report}");
    assert_eq!(
        report["epochs_run"].as_u64().unwrap(),
        report["history"].as_array().unwrap().len() as u64
    );
    assert!(report["epochs_run"].as_u64().unwrap() >= 3, "{report}");
    let fb = std::fs::read(&model).unwrap();
    let qb = std::fs::read(dir.path().join("m.int8.rvne")).unwrap();
    let (fv, qv) = (
        aether_rvne::BlobView::parse(&fb).unwrap(),
        aether_rvne::BlobView::parse(&qb).unwrap(),
    );
    assert_eq!(fv.metadata_value("train.qat_epochs"), Some("2"));
    let mut checked = 0;
    for t in fv.tensors() {
        let name = t.name().to_string();
        let leaf = name.rsplit('.').next().unwrap();
        let matrix = ["w", "wq", "wk", "wv", "wo", "w1", "w2"].contains(&leaf);
        if !matrix {
            continue;
        }
        let w = t.as_f32().unwrap();
        let cols = t.shape().as_slice()[1];
        let rows = w.len() / cols;
        let q = qv.tensor(&name).unwrap().as_i8().unwrap().to_vec();
        for o in 0..cols {
            let m = (0..rows)
                .map(|i| f64::from(w[i * cols + o]).abs())
                .fold(0.0, f64::max);
            for i in 0..rows {
                let k = f64::from(w[i * cols + o]) / (m / 127.0);
                assert!((k - k.round()).abs() < 1e-3, "{name}[{i}, {o}] = {k} steps");
                if leaf != "wo" && m > 0.0 {
                    assert_eq!(k.round() as i8, q[i * cols + o], "{name}[{i}, {o}]");
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 6, "{checked} matrices");
    // --qat-epochs is range-checked like --epochs.
    fails(
        &aether(&[
            "train",
            "--data",
            s(&data),
            "--out",
            s(&model),
            "--qat-epochs",
            "-1",
        ]),
        &["--qat-epochs"],
    );
}
