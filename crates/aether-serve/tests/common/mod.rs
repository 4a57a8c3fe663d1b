//! Shared test helpers: a small model, simulated recordings, the library oracle, a
//! minimal HTTP client and polling.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use aether_data::features::{feature_names, FeatureConfig, FeatureStream};
use aether_data::sim::{simulate_frames, Task};
use aether_data::wire::RawCsiFrame;
use aether_head::math::softmax;
use aether_head::train::{Architecture, ExportInfo, Model};
use aether_head::{LiveStream, StreamSettings, TemporalHead};
use aether_rvne::DType;
use aether_serve::{ServeConfig, Service};

/// Class names of the test model.
pub const CLASSES: [&str; 3] = ["push_pull", "swipe", "circle"];

pub mod broker;

/// A randomly initialised 3-class head over the default extractor's 16 features, with
/// input statistics fitted to simulated frames so the logits move.
pub fn model_bytes(window: Option<usize>, seed: u64) -> Vec<u8> {
    model_bytes_named(&CLASSES, window, seed)
}

/// [`model_bytes`] with other class names.
pub fn model_bytes_named(classes: &[&str], window: Option<usize>, seed: u64) -> Vec<u8> {
    let cfg = FeatureConfig::default();
    let names = feature_names(1, cfg);
    let arch = Architecture {
        d_model: 16,
        mlp_hidden: 24,
        running_norm: false,
        ..Architecture::trainable(names.len(), classes.len())
    };
    let mut m = Model::new(arch, seed).unwrap();
    let rec = features_of(&recording(0, 7));
    let d = names.len();
    let n = rec.len() / d;
    let mut mean = vec![0.0f32; d];
    let mut var = vec![0.0f32; d];
    for r in rec.chunks(d) {
        for (i, v) in r.iter().enumerate() {
            mean[i] += v / n as f32;
        }
    }
    for r in rec.chunks(d) {
        for (i, v) in r.iter().enumerate() {
            var[i] += (v - mean[i]).powi(2) / n as f32;
        }
    }
    let std: Vec<f32> = var.iter().map(|v| v.sqrt().max(1e-3)).collect();
    let m = Model::from_parts(m.arch().clone(), m.params_mut().to_vec(), mean, std).unwrap();
    let mut metadata = Vec::new();
    if let Some(w) = window {
        metadata.push(("data.window".to_string(), w.to_string()));
    }
    m.to_v2_bytes(
        &ExportInfo {
            class_names: classes.iter().map(|s| s.to_string()).collect(),
            feature_names: names,
            metadata,
        },
        DType::F32,
    )
    .unwrap()
}

/// Simulated raw frames of gesture recording `index` of class `class % 3`.
pub fn recording(class: usize, index: usize) -> Vec<RawCsiFrame> {
    simulate_frames(Task::Gesture, class % 3, index, 11)
}

/// Features of frames through the streaming extractor (default configuration).
pub fn features_of(frames: &[RawCsiFrame]) -> Vec<f32> {
    let f0 = &frames[0];
    let mut fs = FeatureStream::new(
        FeatureConfig::default(),
        f0.n_antennas as usize,
        f0.n_subcarriers as usize,
    )
    .unwrap();
    frames
        .iter()
        .flat_map(|f| fs.push_iq(&f.iq).unwrap().to_vec())
        .collect()
}

/// The probabilities the service must report after every frame: the library's
/// extractor and live stream run directly.
pub fn oracle(model: &[u8], frames: &[RawCsiFrame], settings: StreamSettings) -> Vec<Vec<f32>> {
    let head = TemporalHead::from_blob(model).unwrap();
    let feats = features_of(frames);
    let d = head.config().features;
    let mut s = LiveStream::new(&head, settings).unwrap();
    feats
        .chunks(d)
        .map(|f| {
            let l = s.push(&head, f).unwrap();
            let mut p = vec![0.0; l.len()];
            softmax(l, &mut p);
            p
        })
        .collect()
}

/// Settings of a service on ephemeral loopback ports.
pub fn loopback_config() -> ServeConfig {
    ServeConfig {
        udp: "127.0.0.1:0".parse().unwrap(),
        http: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        history: 4096,
        max_node_rate: 0.0,
        ..ServeConfig::default()
    }
}

/// Waits until `f` holds (polling every 10 ms) or panics after `secs` with `what`.
pub fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}

/// Sends `frames` as node `node_id` from `sock`, with sequence numbers `seqs`.
pub fn send_frames(
    sock: &UdpSocket,
    to: SocketAddr,
    node_id: u8,
    frames: &[RawCsiFrame],
    seqs: impl Iterator<Item = u32>,
) {
    for (f, s) in frames.iter().zip(seqs) {
        let mut f = f.clone();
        f.node_id = node_id;
        f.seq = s;
        sock.send_to(&f.encode().unwrap(), to).unwrap();
        // Pace a little so a 2-core test machine does not drop in the kernel.
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// A plain HTTP/1.1 request; returns `(status, headers, body)`.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req += &format!("{k}: {v}\r\n");
    }
    if !body.is_empty() || method == "POST" {
        req += &format!("Content-Length: {}\r\n", body.len());
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// GET as JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, _, body) = http(addr, "GET", path, &[], b"");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The value of a Prometheus sample line `name{labels} value` (labels exact, or none).
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == sample).then(|| v.parse::<f64>().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

/// Starts a service with `cfg` on `model`.
pub fn start(model: &[u8], cfg: ServeConfig) -> Service {
    Service::start(model, cfg).unwrap()
}
