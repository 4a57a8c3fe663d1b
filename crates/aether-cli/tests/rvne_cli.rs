//! `aether init / inspect / convert` end to end through the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

const REFERENCE_SHA256: &str = "7c6c074ef3b6b23b4d9ae2327deaade81329f003c3a52b59581492c08252d49d";

fn aether(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(args)
        .output()
        .expect("run aether")
}

fn ok(args: &[&str]) -> String {
    let o = aether(args);
    assert!(
        o.status.success(),
        "aether {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs a command that must fail; returns its one-line stderr.
fn fails(args: &[&str]) -> String {
    let o = aether(args);
    assert!(!o.status.success(), "aether {args:?} should fail");
    let e = String::from_utf8(o.stderr).unwrap();
    assert_eq!(
        e.trim_end().lines().count(),
        1,
        "one-line reason expected: {e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    e
}

fn sha(p: &Path) -> String {
    Sha256::digest(std::fs::read(p).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    fn p(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.p(name).to_str().unwrap().to_string()
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../aether-rvne/testdata/aether_default_v1.rvne")
}

#[test]
fn init_default_is_reference_blob() {
    let d = Dir::new();
    ok(&["init", &d.s("a.rvne")]);
    assert_eq!(std::fs::metadata(d.p("a.rvne")).unwrap().len(), 41_244);
    assert_eq!(sha(&d.p("a.rvne")), REFERENCE_SHA256);
    assert_eq!(
        std::fs::read(d.p("a.rvne")).unwrap(),
        std::fs::read(golden()).unwrap()
    );
    // Explicit reference options give the same bytes.
    ok(&[
        "init",
        "--seed",
        "0xC5110007DEADBEEF",
        "--format",
        "v1",
        "--dtype",
        "f32",
        "--input-dim",
        "16",
        "--q-heads",
        "4",
        "--kv-heads",
        "1",
        "--head-dim",
        "32",
        "--layers",
        "2",
        "--classes",
        "4",
        &d.s("b.rvne"),
    ]);
    assert_eq!(sha(&d.p("b.rvne")), REFERENCE_SHA256);
}

#[test]
fn init_options_are_deterministic() {
    let d = Dir::new();
    let args = [
        "--seed",
        "7",
        "--dtype",
        "f16",
        "--input-dim",
        "8",
        "--q-heads",
        "2",
        "--kv-heads",
        "2",
        "--head-dim",
        "4",
        "--layers",
        "3",
        "--classes",
        "5",
    ];
    let mut a1 = vec!["init"];
    a1.extend(args);
    a1.push("");
    let x = d.s("x.rvne");
    let y = d.s("y.rvne");
    let n = a1.len();
    a1[n - 1] = &x;
    ok(&a1);
    a1[n - 1] = &y;
    ok(&a1);
    assert_eq!(std::fs::read(&x).unwrap(), std::fs::read(&y).unwrap());
    // F=8, Hq·dh=8, Hkv·dh=8: per layer 64·4 = 256 weights, classifier 40; f16.
    assert_eq!(
        std::fs::metadata(&x).unwrap().len(),
        28 + (3 * 256 + 40) * 2
    );
    ok(&["init", "--seed", "8", &d.s("s8.rvne")]);
    ok(&["init", "--seed", "9", &d.s("s9.rvne")]);
    assert_ne!(sha(&d.p("s8.rvne")), sha(&d.p("s9.rvne")));
    ok(&["init", "--format", "v2", &d.s("v2.rvne")]);
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", &d.s("v2.rvne")])).unwrap();
    assert_eq!(j["format"], "rvne v2");
    let e = fails(&["init", "--kv-heads", "3", &d.s("bad.rvne")]);
    assert!(
        e.contains("q_heads 4 is not a multiple of kv_heads 3"),
        "{e}"
    );
    assert!(!d.p("bad.rvne").exists());
}

#[test]
fn inspect_text_and_json() {
    let g = golden();
    let g = g.to_str().unwrap();
    let t = ok(&["inspect", g]);
    for needle in [
        "rvne v1",
        "defaults assumed",
        "crc:          ok",
        "F=16 D=16 Hq=4 Hkv=1 dh=32 L=2 C=4",
        "window=32 block_size=16 globals=[0] causal=yes",
        "pooling:      mean",
        "10304 parameters",
        "layers.1.wo",
        "classifier.w",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
    let j: serde_json::Value = serde_json::from_str(&ok(&["inspect", "--json", g])).unwrap();
    assert_eq!(j["format"], "rvne v1");
    assert_eq!(j["dtype"], "f32");
    assert_eq!(j["defaults_assumed"], true);
    assert_eq!(j["crc"]["status"], "ok");
    assert_eq!(j["parameter_count"], 10304);
    assert_eq!(j["dims"]["q_heads"], 4);
    assert_eq!(j["pattern"]["global_tokens"], serde_json::json!([0]));
    assert_eq!(j["architecture"]["pooling"], "mean");
    let tensors = j["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 9);
    assert_eq!(tensors[0]["name"], "layers.0.wq");
    assert_eq!(tensors[0]["shape"], serde_json::json!([16, 128]));
    assert_eq!(tensors[0]["bytes"], 8192);
    assert_eq!(tensors[0]["offset"], 24);
}

#[test]
fn inspect_refuses_bad_files_with_one_line() {
    let d = Dir::new();
    let good = std::fs::read(golden()).unwrap();
    let write = |n: &str, b: &[u8]| {
        std::fs::write(d.p(n), b).unwrap();
        d.s(n)
    };
    fails(&["inspect", &write("empty.rvne", &[])]);
    let e = fails(&["inspect", &write("trunc.rvne", &good[..1000])]);
    assert!(
        e.contains("header implies 41244 bytes, file has 1000"),
        "{e}"
    );
    let mut flipped = good.clone();
    flipped[500] ^= 0x10;
    let e = fails(&["inspect", &write("crc.rvne", &flipped)]);
    assert!(e.contains("CRC mismatch"), "{e}");
    let mut x = 0x1234_5678_9ABC_DEF0u64;
    let random: Vec<u8> = (0..5000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fails(&["inspect", &write("random.bin", &random)]);
    // Valid v1 header and CRC whose dims disagree with the payload (3 layers declared).
    let mut lie = good.clone();
    lie[16..18].copy_from_slice(&3u16.to_le_bytes());
    let n = lie.len();
    let crc = crc32(&lie[..n - 4]);
    lie[n - 4..].copy_from_slice(&crc.to_le_bytes());
    let e = fails(&["inspect", &write("lie.rvne", &lie)]);
    assert!(e.contains("41216") && e.contains("61696"), "{e}");
    let mut v3 = good.clone();
    v3[4] = 3;
    let e = fails(&["inspect", &write("v3.rvne", &v3)]);
    assert!(e.contains("unsupported .rvne version 3"), "{e}");
    fails(&["inspect", &d.s("does-not-exist.rvne")]);
}

fn crc32(b: &[u8]) -> u32 {
    let mut c = !0u32;
    for &x in b {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn convert_round_trips_bit_exact() {
    let d = Dir::new();
    let g = golden();
    let g = g.to_str().unwrap();
    // v1 → v2 → v1 and v1 → safetensors → v1.
    ok(&["convert", g, &d.s("a.rvne"), "--to", "v2"]);
    ok(&["convert", &d.s("a.rvne"), &d.s("a1.rvne"), "--to", "v1"]);
    assert_eq!(sha(&d.p("a1.rvne")), REFERENCE_SHA256);
    ok(&["convert", g, &d.s("a.safetensors")]);
    ok(&[
        "convert",
        &d.s("a.safetensors"),
        &d.s("a2.rvne"),
        "--to",
        "v1",
    ]);
    assert_eq!(sha(&d.p("a2.rvne")), REFERENCE_SHA256);
    // An upgraded v2 (pattern, pooling, names, provenance) survives safetensors exactly.
    ok(&[
        "convert",
        g,
        &d.s("up.rvne"),
        "--to",
        "v2",
        "--window",
        "16",
        "--block-size",
        "8",
        "--globals",
        "0,5",
        "--causal",
        "false",
        "--landmarks",
        "false",
        "--pooling",
        "last",
        "--class-names",
        "wave,circle,fall,none",
        "--set",
        "trained_by=test",
    ]);
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", &d.s("up.rvne")])).unwrap();
    assert_eq!(j["pattern"]["window"], 16);
    assert_eq!(j["pattern"]["block_size"], 8);
    assert_eq!(j["pattern"]["global_tokens"], serde_json::json!([0, 5]));
    assert_eq!(j["pattern"]["causal"], false);
    assert_eq!(j["pattern"]["landmarks"], false);
    assert_eq!(j["architecture"]["pooling"], "last");
    assert_eq!(j["class_names"][3], "none");
    assert_eq!(j["metadata"][0], serde_json::json!(["trained_by", "test"]));
    assert_eq!(j["defaults_assumed"], false);
    ok(&["convert", &d.s("up.rvne"), &d.s("up.safetensors")]);
    ok(&["convert", &d.s("up.safetensors"), &d.s("up2.rvne")]);
    assert_eq!(sha(&d.p("up.rvne")), sha(&d.p("up2.rvne")));
    // f16 paths.
    ok(&["init", "--dtype", "f16", &d.s("h.rvne")]);
    ok(&["convert", &d.s("h.rvne"), &d.s("h.safetensors")]);
    ok(&[
        "convert",
        &d.s("h.safetensors"),
        &d.s("h2.rvne"),
        "--to",
        "v2",
    ]);
    ok(&["convert", &d.s("h2.rvne"), &d.s("h3.rvne"), "--to", "v1"]);
    assert_eq!(sha(&d.p("h.rvne")), sha(&d.p("h3.rvne")));
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", &d.s("h2.rvne")])).unwrap();
    assert_eq!(j["dtype"], "f16");
}

#[test]
fn safetensors_export_uses_model_md_names_and_metadata() {
    let d = Dir::new();
    ok(&["convert", golden().to_str().unwrap(), &d.s("m.safetensors")]);
    let bytes = std::fs::read(d.p("m.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "classifier.w",
            "layers.0.wk",
            "layers.0.wo",
            "layers.0.wq",
            "layers.0.wv",
            "layers.1.wk",
            "layers.1.wo",
            "layers.1.wq",
            "layers.1.wv"
        ]
    );
    let wq = st.tensor("layers.0.wq").unwrap();
    assert_eq!(wq.shape(), &[16, 128]);
    let golden_bytes = std::fs::read(golden()).unwrap();
    assert_eq!(wq.data(), &golden_bytes[24..24 + 8192]);
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&header.metadata().as_ref().unwrap()["aether"]).unwrap();
    assert_eq!(meta["dims"]["layers"], 2);
}

#[test]
fn safetensors_from_elsewhere_needs_meta_side_file() {
    // A PyTorch-style file: model.md names, no aether metadata, arbitrary order.
    let d = Dir::new();
    ok(&["convert", golden().to_str().unwrap(), &d.s("m.safetensors")]);
    let bytes = std::fs::read(d.p("m.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let plain = safetensors::serialize(tensors, &None).unwrap();
    std::fs::write(d.p("plain.safetensors"), &plain).unwrap();
    let e = fails(&["convert", &d.s("plain.safetensors"), &d.s("out.rvne")]);
    assert!(e.contains("--meta"), "{e}");
    assert!(!d.p("out.rvne").exists());
    std::fs::write(
        d.p("meta.json"),
        r#"{"dims": {"input_dim": 16, "q_heads": 4, "kv_heads": 1, "head_dim": 32, "layers": 2, "classes": 4},
            "pattern": {"window": 24, "global_tokens": [0, 1]},
            "class_names": ["a", "b", "c", "d"], "metadata": [["source", "pytorch"]]}"#,
    )
    .unwrap();
    ok(&[
        "convert",
        &d.s("plain.safetensors"),
        &d.s("out.rvne"),
        "--meta",
        &d.s("meta.json"),
    ]);
    let j: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", "--json", &d.s("out.rvne")])).unwrap();
    assert_eq!(j["pattern"]["window"], 24);
    assert_eq!(j["pattern"]["block_size"], 16);
    assert_eq!(j["class_names"][0], "a");
    assert_eq!(j["metadata"][0], serde_json::json!(["source", "pytorch"]));
    // Tensors are bit-identical to the golden file's.
    ok(&[
        "convert",
        &d.s("out.rvne"),
        &d.s("out1.rvne"),
        "--to",
        "v1",
        "--strip-names",
        "--window",
        "32",
        "--globals",
        "0",
    ]);
    assert_eq!(sha(&d.p("out1.rvne")), REFERENCE_SHA256);
    // A side file that contradicts the tensors is a clear error.
    std::fs::write(d.p("bad.json"), r#"{"dims": {"layers": 3}}"#).unwrap();
    let e = fails(&[
        "convert",
        &d.s("plain.safetensors"),
        &d.s("bad.rvne"),
        "--meta",
        &d.s("bad.json"),
    ]);
    assert!(e.contains("layers.2.wq"), "{e}");
    std::fs::write(d.p("typo.json"), r#"{"dimz": {}}"#).unwrap();
    let e = fails(&[
        "convert",
        &d.s("plain.safetensors"),
        &d.s("bad.rvne"),
        "--meta",
        &d.s("typo.json"),
    ]);
    assert!(e.contains("dimz"), "{e}");
}

#[test]
fn v1_export_refused_when_model_needs_more() {
    let d = Dir::new();
    ok(&[
        "convert",
        golden().to_str().unwrap(),
        &d.s("p.rvne"),
        "--window",
        "8",
    ]);
    let e = fails(&["convert", &d.s("p.rvne"), &d.s("p1.rvne"), "--to", "v1"]);
    assert!(
        e.contains("cannot write v1") && e.contains("pattern"),
        "{e}"
    );
    ok(&[
        "convert",
        golden().to_str().unwrap(),
        &d.s("n.rvne"),
        "--class-names",
        "a,b,c,d",
    ]);
    let e = fails(&["convert", &d.s("n.rvne"), &d.s("n1.rvne"), "--to", "v1"]);
    assert!(e.contains("--strip-names"), "{e}");
    ok(&[
        "convert",
        golden().to_str().unwrap(),
        &d.s("l.rvne"),
        "--pooling",
        "last",
    ]);
    let e = fails(&["convert", &d.s("l.rvne"), &d.s("l1.rvne"), "--to", "v1"]);
    assert!(e.contains("cannot write v1"), "{e}");
    // Refusals leave no output and no temporary file behind.
    assert_eq!(d.files(), ["l.rvne", "n.rvne", "p.rvne"]);
}

#[test]
fn failed_write_leaves_nothing() {
    let d = Dir::new();
    let out = d.p("missing-dir").join("x.rvne");
    fails(&["init", out.to_str().unwrap()]);
    assert!(!out.exists());
    assert!(d.files().is_empty());
}
