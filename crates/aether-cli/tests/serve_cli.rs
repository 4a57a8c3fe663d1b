//! `aether serve` end to end, as a user runs it: the service as a process on ephemeral
//! ports, `aether replay` sending simulated captures from several nodes, and every
//! probability the service reports compared with `aether features` followed by
//! `aether classify --stream` on the same frames (same stream settings, same defaults).
//! Then SIGTERM: a clean stop with a summary.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn get(addr: SocketAddr, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}\n{body}");
    serde_json::from_str(body).unwrap()
}

struct Server {
    child: Child,
    udp: SocketAddr,
    http: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(model: &Path, extra: &[&str]) -> Server {
    let mut child = cmd()
        .args(["serve", "--model"])
        .arg(model)
        .args([
            "--udp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--history",
            "4096",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut udp, mut http) = (None, None);
    while udp.is_none() || http.is_none() {
        let l = lines.next().expect("serve printed its addresses").unwrap();
        if let Some(r) = l.strip_prefix("aether serve: UDP ") {
            udp = r.split_whitespace().next().map(|a| a.parse().unwrap());
        }
        if let Some(r) = l.strip_prefix("aether serve: dashboard http://") {
            http = r.split('/').next().map(|a| a.parse().unwrap());
        }
    }
    // Keep draining stdout so the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        udp: udp.unwrap(),
        http: http.unwrap(),
    }
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for c in std::fs::read_dir(dir).unwrap() {
        let c = c.unwrap().path();
        if c.is_dir() {
            for f in std::fs::read_dir(&c).unwrap() {
                v.push(f.unwrap().path());
            }
        }
    }
    v.sort();
    v
}

/// `aether classify --stream --json` probabilities per frame.
fn classify_stream(model: &Path, csv: &Path, extra: &[&str]) -> Vec<Vec<f32>> {
    let out = ok(&cmd()
        .args(["classify", "--stream", "--json", "--model"])
        .arg(model)
        .arg("--input")
        .arg(csv)
        .args(extra)
        .output()
        .unwrap());
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn node_history(http: SocketAddr, id: &str) -> Vec<Vec<f32>> {
    let v = get(http, &format!("/api/v1/nodes/{id}?history=4096"));
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            h["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn compare(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: frames");
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= 1e-4, "{what}: frame {t}: {g:?} vs {w:?}");
        }
    }
}

#[test]
fn served_probabilities_equal_features_then_classify_stream() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let caps = d.join("caps");
    let train_caps = d.join("train_caps");
    let feats = d.join("feats");
    let train_feats = d.join("train_feats");
    let model = d.join("m.rvne");
    // A small model trained from raw captures, as a user would.
    ok(&aether(&[
        "simulate",
        "--task",
        "gesture",
        "--recordings",
        "4",
        "--seed",
        "3",
        "--raw",
        "--out",
        train_caps.to_str().unwrap(),
    ]));
    ok(&aether(&[
        "features",
        "--input",
        train_caps.to_str().unwrap(),
        "--out",
        train_feats.to_str().unwrap(),
    ]));
    ok(&aether(&[
        "train",
        "--data",
        train_feats.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--epochs",
        "2",
        "--window",
        "96",
        "--no-plots",
        "--quiet",
    ]));
    // Held-out captures to replay, and their offline features.
    ok(&aether(&[
        "simulate",
        "--task",
        "gesture",
        "--recordings",
        "1",
        "--seed",
        "9",
        "--raw",
        "--out",
        caps.to_str().unwrap(),
    ]));
    ok(&aether(&[
        "features",
        "--input",
        caps.to_str().unwrap(),
        "--out",
        feats.to_str().unwrap(),
    ]));
    let files = captures(&caps);
    assert_eq!(files.len(), 4);

    for (label, extra) in [
        ("default settings", vec![]),
        (
            "horizon 0, capacity 64, sliding eviction",
            vec![
                "--horizon",
                "0",
                "--capacity",
                "64",
                "--eviction",
                "sliding",
            ],
        ),
        (
            "f16 caches, horizon 40",
            vec!["--kv", "f16", "--horizon", "40"],
        ),
    ] {
        let srv = serve(&model, &extra);
        let out = ok(&aether(&[
            "replay",
            "--data",
            caps.to_str().unwrap(),
            "--to",
            &srv.udp.to_string(),
            "--nodes",
            "6",
            "--rate",
            "600",
        ]));
        assert!(out.contains("0 send errors"), "{out}");
        let sent: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("replay: sent "))
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = get(srv.http, "/api/v1/nodes");
            let frames: u64 = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["frames"].as_u64().unwrap())
                .sum();
            if frames == sent {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{label}: {frames} of {sent} frames processed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for i in 0..6usize {
            let cap = &files[i % files.len()];
            let class = cap.parent().unwrap().file_name().unwrap();
            let csv = feats.join(class).join(format!(
                "{}.csv",
                cap.file_stem().unwrap().to_string_lossy()
            ));
            let want = classify_stream(&model, &csv, &extra);
            let id = format!("127.0.0.2/{i}");
            compare(
                &node_history(srv.http, &id),
                &want,
                &format!("{label}: node {id}"),
            );
        }
        // SIGTERM: a clean stop with a summary.
        let mut child = srv;
        Command::new("kill")
            .args(["-TERM", &child.child.id().to_string()])
            .status()
            .unwrap();
        let status = child.child.wait().unwrap();
        assert!(status.success(), "{label}: exit {status:?}");
        let mut err = String::new();
        child
            .child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn serve_refuses_bad_setups_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.rvne");
    ok(&aether(&[
        "init",
        "--format",
        "v2",
        model.to_str().unwrap(),
    ]));
    fails(
        &aether(&[
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--http",
            "0.0.0.0:0",
            "--udp",
            "127.0.0.1:0",
        ]),
        &["--token"],
    );
    fails(
        &aether(&[
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--horizon",
            "1",
        ]),
        &["--horizon"],
    );
    fails(
        &aether(&[
            "serve",
            "--model",
            dir.path().join("missing.rvne").to_str().unwrap(),
        ]),
        &["missing.rvne"],
    );
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    fails(
        &aether(&[
            "serve",
            "--model",
            model.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--udp",
            &port,
        ]),
        &["UDP"],
    );
    fails(
        &aether(&[
            "replay",
            "--data",
            dir.path().to_str().unwrap(),
            "--to",
            "127.0.0.1:9",
        ]),
        &["no raw CSI frames"],
    );
}
