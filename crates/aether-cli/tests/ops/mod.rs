//! Helpers of the `aether serve` operation tests: the service as a child process (killed
//! on drop), HTTP, a trained model and raw captures made with the CLI, and the real
//! Mosquitto broker of the library's tests.
#![allow(dead_code)]

#[path = "../../../aether-serve/tests/common/broker.rs"]
pub mod broker;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// `aether serve` as a child process.
pub struct Server {
    /// The process.
    pub child: Child,
    /// Its UDP address.
    pub udp: SocketAddr,
    /// Its HTTP address.
    pub http: SocketAddr,
}

impl Server {
    /// Starts `aether serve --model M --udp 127.0.0.1:0 --http 127.0.0.1:0 EXTRA…` and
    /// waits for its addresses.
    pub fn start(model: &Path, extra: &[&str]) -> Self {
        let mut child = cmd()
            .args(["serve", "--model"])
            .arg(model)
            .args([
                "--udp",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--history",
                "8",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
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
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            udp: udp.unwrap(),
            http: http.unwrap(),
        }
    }

    /// SIGKILL, as a crash or a power cut would end it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A Prometheus sample's value.
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, text) = request(self.http, "GET", "/metrics", &[]);
        text.lines()
            .find_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                (k == sample).then(|| v.parse::<f64>().ok()).flatten()
            })
            .unwrap_or_else(|| panic!("no {sample}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An HTTP/1.1 request; `(status, body)`.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (h, b) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = h
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, b.to_string())
}

/// GET as JSON (200 expected).
pub fn get(addr: SocketAddr, path: &str) -> Value {
    let (st, body) = request(addr, "GET", path, b"");
    assert_eq!(st, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `f` every 20 ms for `secs`.
pub fn wait(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Raw gesture captures (`simulate --raw`) and a tiny model trained on their features.
pub fn captures_and_model(dir: &Path) -> (PathBuf, PathBuf) {
    let caps = dir.join("caps");
    let feats = dir.join("feats");
    let model = dir.join("m.rvne");
    ok(&aether(&[
        "simulate",
        "--task",
        "gesture",
        "--recordings",
        "1",
        "--seed",
        "4",
        "--raw",
        "--out",
        s(&caps),
    ]));
    ok(&aether(&[
        "features",
        "--input",
        s(&caps),
        "--out",
        s(&feats),
    ]));
    let mut args = vec![
        "train",
        "--data",
        s(&feats),
        "--out",
        s(&model),
        "--window",
        "32",
        "--no-plots",
    ];
    args.extend(TINY);
    ok(&aether(&args));
    (caps, model)
}

/// `aether replay` of `caps` to `to` as a child process.
pub fn replay(caps: &Path, to: SocketAddr, nodes: usize, rate: f64, secs: f64) -> Child {
    cmd()
        .args(["replay", "--quiet", "--loop", "--data"])
        .arg(caps)
        .args([
            "--to",
            &to.to_string(),
            "--nodes",
            &nodes.to_string(),
            "--rate",
            &rate.to_string(),
            "--duration",
            &secs.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Datagrams a finished replay child sent.
pub fn sent(child: Child) -> u64 {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("replay: sent "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}
