//! `aether serve` beyond one machine, as an operator runs it: a real NATS server with
//! JetStream (Debian's `nats-server`, started here on an ephemeral port), a gateway
//! (`--publish`), two workers with the same `--partitions` (the second a standby), and a
//! replayed fleet. The first worker is killed with SIGKILL mid-stream; the standby takes
//! its partitions over, rebuilds every node's state from the retained frames, and goes
//! on. Every node's stored results must then be exactly one per frame the fleet sent
//! (no loss, no second result), equal to the single-process library oracle (the
//! extractor and live stream run directly on the node's frames), with results from both
//! workers; a result published twice (a redelivered frame) must be the same result.
//!
//! Skips with a message when `nats-server` is missing, unless `AETHER_REQUIRE_NATS` is
//! set (CI sets it), which makes a missing server a failure.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_data::features::{feature_names, FeatureConfig, FeatureStream};
use aether_data::sim::{simulate_frames, Task};
use aether_data::wire::RawCsiFrame;
use aether_head::math::softmax;
use aether_head::train::{Architecture, ExportInfo, Model};
use aether_head::{LiveStream, StreamSettings, TemporalHead};
use aether_rvne::DType;
use aether_serve::replay::{encode_recordings, ReplayConfig};
use common::*;
use futures_util::StreamExt;
use serde_json::Value;

/// `nats-server` on `PATH` or in `/usr/sbin` (Debian's package puts it there).
fn nats_server() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A NATS server with JetStream on an ephemeral loopback port, storing in `dir`.
fn start_nats(dir: &Path) -> Option<(Proc, String)> {
    let Some(bin) = nats_server() else {
        if std::env::var_os("AETHER_REQUIRE_NATS").is_some() {
            panic!("AETHER_REQUIRE_NATS is set but no nats-server binary was found (apt-get install nats-server)");
        }
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server); set AETHER_REQUIRE_NATS=1 to make this a failure");
        return None;
    };
    let port = free_port();
    let log = std::fs::File::create(dir.join("nats.log")).unwrap();
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("js"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting nats-server");
    let p = Proc(child);
    let end = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((p, format!("nats://127.0.0.1:{port}")))
}

struct Served {
    proc: Proc,
    http: SocketAddr,
    udp: Option<SocketAddr>,
}

/// `aether serve --model MODEL ARGS` on ephemeral loopback ports.
fn serve(model: &Path, args: &[&str], log: &Path) -> Served {
    let mut child = cmd()
        .args(["serve", "--model"])
        .arg(model)
        .args(["--http", "127.0.0.1:0", "--shards", "2"])
        .args(args)
        .env("RUST_LOG", "aether_serve=info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut udp, mut http) = (None, None);
    let mut worker = false;
    while http.is_none() || (udp.is_none() && !worker) {
        let Some(Ok(l)) = lines.next() else {
            let _ = child.kill();
            let mut e = String::new();
            let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut e));
            panic!("serve {args:?} ended early: {e}");
        };
        if let Some(r) = l.strip_prefix("aether serve: UDP ") {
            if r.starts_with("none") {
                worker = true;
            } else {
                udp = r.split_whitespace().next().map(|a| a.parse().unwrap());
            }
        }
        if let Some(r) = l.strip_prefix("aether serve: dashboard http://") {
            http = r.split('/').next().map(|a| a.parse().unwrap());
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Served {
        proc: Proc(child),
        http: http.unwrap(),
        udp,
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
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
    body.to_string()
}

/// A Prometheus sample's value (0 when absent).
fn metric(addr: SocketAddr, sample: &str) -> f64 {
    get(addr, "/metrics")
        .lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == sample).then(|| v.parse::<f64>().ok()).flatten()
        })
        .unwrap_or(0.0)
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A 3-class head over the default extractor's features, trained on windows of 64
/// (so the streams' horizon is 64), input statistics fitted to simulated frames.
fn model_file(dir: &Path) -> PathBuf {
    let cfg = FeatureConfig::default();
    let names = feature_names(1, cfg);
    let arch = Architecture {
        d_model: 16,
        mlp_hidden: 24,
        running_norm: false,
        ..Architecture::trainable(names.len(), 3)
    };
    let mut m = Model::new(arch, 5).unwrap();
    let rec = features_of(&recording(0, 7));
    let d = names.len();
    let n = (rec.len() / d) as f32;
    let mut mean = vec![0.0f32; d];
    let mut var = vec![0.0f32; d];
    for r in rec.chunks(d) {
        for (i, v) in r.iter().enumerate() {
            mean[i] += v / n;
        }
    }
    for r in rec.chunks(d) {
        for (i, v) in r.iter().enumerate() {
            var[i] += (v - mean[i]).powi(2) / n;
        }
    }
    let std: Vec<f32> = var.iter().map(|v| v.sqrt().max(1e-3)).collect();
    let m = Model::from_parts(m.arch().clone(), m.params_mut().to_vec(), mean, std).unwrap();
    let bytes = m
        .to_v2_bytes(
            &ExportInfo {
                class_names: ["push_pull", "swipe", "circle"].map(String::from).to_vec(),
                feature_names: names,
                metadata: vec![("data.window".into(), "64".into())],
            },
            DType::F32,
        )
        .unwrap();
    let p = dir.join("m.rvne");
    std::fs::write(&p, bytes).unwrap();
    p
}

fn recording(class: usize, index: usize) -> Vec<RawCsiFrame> {
    simulate_frames(Task::Gesture, class % 3, index, 11)
}

fn features_of(frames: &[RawCsiFrame]) -> Vec<f32> {
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

/// Per-frame probabilities of one process running the node: the library's extractor and
/// live stream on every frame.
fn oracle(model: &[u8], frames: &[RawCsiFrame]) -> Vec<Vec<f32>> {
    let head = TemporalHead::from_blob(model).unwrap();
    let d = head.config().features;
    let mut s = LiveStream::new(&head, StreamSettings::with_horizon(64)).unwrap();
    features_of(frames)
        .chunks(d)
        .map(|f| {
            let l = s.push(&head, f).unwrap();
            let mut p = vec![0.0; l.len()];
            softmax(l, &mut p);
            p
        })
        .collect()
}

/// A stored or observed result: `(node, index) → (probs, worker)`.
type Results = HashMap<(String, u64), Vec<(Vec<f32>, String)>>;

fn parse_result(payload: &[u8]) -> ((String, u64), (Vec<f32>, String)) {
    let v: Value = serde_json::from_slice(payload).unwrap();
    let probs = v["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap() as f32)
        .collect();
    (
        (
            v["node"].as_str().unwrap().to_string(),
            v["index"].as_u64().unwrap(),
        ),
        (probs, v["worker"].as_str().unwrap().to_string()),
    )
}

/// Results the results stream holds.
async fn stored_count(url: &str) -> u64 {
    let c = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(c);
    let mut s = js.get_stream("AETHER_RESULTS").await.unwrap();
    s.info().await.unwrap().state.messages
}

/// Every result the results stream holds.
async fn stored_results(url: &str) -> Results {
    let c = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(c);
    let mut s = js.get_stream("AETHER_RESULTS").await.unwrap();
    let total = s.info().await.unwrap().state.messages;
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut msgs = consumer.messages().await.unwrap();
    let mut out: Results = HashMap::new();
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
            .await
            .expect("reading the results stream")
            .unwrap()
            .unwrap();
        let (k, v) = parse_result(&m.payload);
        out.entry(k).or_default().push(v);
    }
    out
}

/// The fleet's nodes: `(id, recording, frames sent)`.
fn fleet_nodes(rep: &aether_serve::replay::ReplayReport) -> Vec<(String, usize, u64)> {
    rep.nodes
        .iter()
        .map(|(src, node_id, rec, n)| (format!("{src}/{node_id}"), *rec, *n))
        .collect()
}

/// The frames a node was sent: its recording, looped.
fn node_frames(recs: &[Vec<RawCsiFrame>], rec: usize, n: u64) -> Vec<RawCsiFrame> {
    (0..n as usize)
        .map(|j| recs[rec][j % recs[rec].len()].clone())
        .collect()
}

/// Every node's stored results are exactly one per frame it was sent, each equal to the
/// single-process oracle, and every result published more than once (a redelivered
/// frame) was the same result; returns the results per worker.
fn check_results(
    stored: &Results,
    observed: &Results,
    rep: &aether_serve::replay::ReplayReport,
    recs: &[Vec<RawCsiFrame>],
    model_bytes: &[u8],
) -> BTreeMap<String, usize> {
    let mut by_worker: BTreeMap<String, usize> = BTreeMap::new();
    for (id, rec, n) in fleet_nodes(rep) {
        let want = oracle(model_bytes, &node_frames(recs, rec, n));
        for (t, w) in want.iter().enumerate() {
            let got = stored
                .get(&(id.clone(), t as u64))
                .unwrap_or_else(|| panic!("{id}: no result for frame {t} of {n}"));
            assert_eq!(got.len(), 1, "{id}: frame {t} stored {} times", got.len());
            assert_eq!(&got[0].0, w, "{id}: frame {t} ({})", got[0].1);
            *by_worker.entry(got[0].1.clone()).or_default() += 1;
            if let Some(seen) = observed.get(&(id.clone(), t as u64)) {
                for (p, who) in seen {
                    assert_eq!(p, w, "{id}: frame {t} published differently by {who}");
                }
            }
        }
        let extra = stored
            .keys()
            .filter(|(nid, i)| nid == &id && *i >= n)
            .count();
        assert_eq!(extra, 0, "{id}: results for frames never sent");
    }
    let total: usize = stored.values().map(Vec::len).sum();
    assert_eq!(total as u64, rep.sent, "results stored = frames sent");
    by_worker
}

/// A worker's `/api/v1/nodes` lists exactly the fleet's nodes that `owned` selects, each
/// at the stream position of the frames it was sent and with the oracle's last
/// probabilities.
fn check_api(
    http: SocketAddr,
    rep: &aether_serve::replay::ReplayReport,
    recs: &[Vec<RawCsiFrame>],
    model_bytes: &[u8],
    owned: impl Fn(&aether_serve::NodeKey) -> bool,
) {
    let v: Value = serde_json::from_str(&get(http, "/api/v1/nodes")).unwrap();
    let listed: HashMap<String, &Value> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_string(), n))
        .collect();
    let mut want_ids = Vec::new();
    for (id, rec, n) in fleet_nodes(rep) {
        let key = aether_serve::NodeKey::parse(&id).unwrap();
        if !owned(&key) {
            assert!(
                !listed.contains_key(&id),
                "{http}: lists {id}, not its node"
            );
            continue;
        }
        want_ids.push(id.clone());
        let node = listed
            .get(&id)
            .unwrap_or_else(|| panic!("{http}: {id} missing from /api/v1/nodes"));
        assert_eq!(node["position"].as_u64(), Some(n), "{id}: {node}");
        let last = oracle(model_bytes, &node_frames(recs, rec, n))
            .pop()
            .unwrap();
        let probs: Vec<f32> = ["push_pull", "swipe", "circle"]
            .iter()
            .map(|c| node["probs"][c].as_f64().unwrap() as f32)
            .collect();
        assert_eq!(probs, last, "{id}: API probabilities");
    }
    assert_eq!(listed.len(), want_ids.len(), "{http}: {listed:?}");
}

#[test]
fn a_killed_worker_is_replaced_and_every_result_equals_one_process() {
    // AETHER_KEEP_TEST_DIR keeps the logs (NATS, gateway, workers) for a look.
    let dir = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("AETHER_KEEP_TEST_DIR").is_some())
        .tempdir()
        .unwrap();
    let d = dir.path();
    eprintln!("cluster test directory: {}", d.display());
    let Some((_nats, url)) = start_nats(d) else {
        return;
    };
    let model = model_file(d);
    let model_bytes = std::fs::read(&model).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    // Every result as published (before the broker's dedup), from the start.
    let observed: Arc<Mutex<Results>> = Arc::default();
    {
        let obs = Arc::clone(&observed);
        let url = url.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let c = async_nats::connect(&url).await.unwrap();
            let mut s = c.subscribe("aether.result.>").await.unwrap();
            c.flush().await.unwrap();
            ready_tx.send(()).unwrap();
            while let Some(m) = s.next().await {
                let (k, v) = parse_result(&m.payload);
                obs.lock().unwrap().entry(k).or_default().push(v);
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }

    let worker_args = |id: &'static str| {
        vec![
            "--source",
            url.as_str(),
            "--partitions",
            "0-3",
            "--lease-ttl",
            "1",
            "--worker-id",
            id,
            // Keep every result, so the test can read them all back.
            "--result-retain",
            "100000",
        ]
    };
    let a = serve(&model, &worker_args("worker-a"), &d.join("a.log"));
    wait_until(
        15,
        "worker A owning the 4 partitions (the gateway is not up yet: it waits)",
        || metric(a.http, "aether_cluster_partitions_owned") == 4.0,
    );
    let b = serve(&model, &worker_args("worker-b"), &d.join("b.log"));
    let gw = serve(
        &model,
        &[
            "--udp",
            "127.0.0.1:0",
            "--publish",
            &url,
            "--partitions",
            "4",
        ],
        &d.join("gateway.log"),
    );
    // Every WebSocket update B sends, from before it owns anything.
    let b_updates: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    {
        let ups = Arc::clone(&b_updates);
        let url = format!("ws://{}/api/v1/stream", b.http);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
                .await
                .unwrap();
            ready_tx.send(()).unwrap();
            while let Some(Ok(m)) = ws.next().await {
                let Ok(text) = m.into_text() else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if v["type"] == "node" {
                    if let (Some(id), Some(pos)) = (v["id"].as_str(), v["position"].as_u64()) {
                        ups.lock().unwrap().push((id.to_string(), pos));
                    }
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    // B is a standby: it holds nothing while A lives.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(metric(b.http, "aether_cluster_partitions_owned"), 0.0);
    assert_eq!(
        metric(b.http, "aether_cluster_lease{partition=\"2\"}"),
        0.0,
        "standby"
    );

    // A fleet of 8 nodes looping 4 recordings at 100 frames/s for 5 s.
    let recs: Vec<Vec<RawCsiFrame>> = (0..4).map(|i| recording(i, i + 30)).collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let fleet_cfg = ReplayConfig {
        to: gw.udp.unwrap(),
        nodes: 8,
        rate_hz: 100.0,
        looped: true,
        duration: Some(Duration::from_secs(5)),
        ..ReplayConfig::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let fleet = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || aether_serve::replay::run(&datagrams, &fleet_cfg, &stop))
    };
    // Kill A once it has published a good part of the stream (every node well past the
    // 144-frame state horizon: 64 of the stream + 80 of the extractor).
    wait_until(20, "worker A publishing results", || {
        metric(a.http, "aether_cluster_results_published_total") >= 8.0 * 200.0
    });
    let mut a = a;
    let killed_at = Instant::now();
    Command::new("kill")
        .args(["-KILL", &a.proc.0.id().to_string()])
        .status()
        .unwrap();
    let _ = a.proc.0.wait();
    wait_until(10, "worker B taking over the 4 partitions", || {
        metric(b.http, "aether_cluster_partitions_owned") == 4.0
    });
    let takeover = killed_at.elapsed();
    assert!(
        takeover < Duration::from_secs(4),
        "takeover took {takeover:?} with a 1 s lease"
    );
    let rep = fleet.join().unwrap().unwrap();
    assert_eq!(rep.send_errors, 0);
    let sent: u64 = rep.nodes.iter().map(|n| n.3).sum();
    assert_eq!(sent, rep.sent);

    // Everything forwarded, stored and answered.
    wait_until(20, "the gateway forwarding every frame", || {
        metric(gw.http, "aether_cluster_frames_forwarded_total") == sent as f64
    });
    assert_eq!(metric(gw.http, "aether_cluster_forward_dropped_total"), 0.0);
    wait_until(30, "a result for every frame", || {
        rt.block_on(stored_count(&url)) >= sent
    });
    let stored = rt.block_on(stored_results(&url));
    assert!(metric(b.http, "aether_cluster_takeovers_total") >= 4.0);
    assert!(metric(b.http, "aether_cluster_replay_frames_total") > 0.0);
    assert_eq!(metric(b.http, "aether_cluster_inexact_nodes_total"), 0.0);
    assert_eq!(metric(b.http, "aether_cluster_frames_missing_total"), 0.0);

    let by_worker = check_results(
        &stored,
        &observed.lock().unwrap(),
        &rep,
        &recs,
        &model_bytes,
    );
    assert!(
        by_worker.get("worker-a").is_some_and(|&n| n > 0)
            && by_worker.get("worker-b").is_some_and(|&n| n > 0),
        "results from both workers: {by_worker:?}"
    );
    // The new owner serves the HTTP API for every node it took over, with the state a
    // single process has after the same frames.
    check_api(b.http, &rep, &recs, &model_bytes, |_| true);
    // Replayed frames rebuild state and go nowhere: B's WebSocket shows only frames it
    // ran live. Those start at most `skipped` frames (results A had already stored)
    // before B's first stored result of the node; a replay reaches back 144 frames.
    let skipped = metric(b.http, "aether_cluster_results_skipped_total") as u64;
    let updates = b_updates.lock().unwrap().clone();
    for (id, _, n) in fleet_nodes(&rep) {
        let first_b = (0..n)
            .find(|&i| {
                stored
                    .get(&(id.clone(), i))
                    .is_some_and(|r| r[0].1 == "worker-b")
            })
            .unwrap_or_else(|| panic!("{id}: no result from B"));
        let mine: Vec<u64> = updates
            .iter()
            .filter(|(n, _)| n == &id)
            .map(|u| u.1)
            .collect();
        assert!(!mine.is_empty(), "{id}: no WebSocket update from B");
        let lowest = *mine.iter().min().unwrap();
        assert!(
            lowest + skipped > first_b,
            "{id}: B sent an update at position {lowest}, its first result is frame {first_b}, {skipped} skipped: a replayed frame was published"
        );
    }
    let ids: Vec<IpAddr> = rep.nodes.iter().map(|n| n.0).collect();
    assert_eq!(ids.len(), 8);
    eprintln!(
        "cluster: {sent} frames, takeover in {takeover:?}, results by worker {by_worker:?}, B replayed {} frames",
        metric(b.http, "aether_cluster_replay_frames_total")
    );
    drop(gw);
    drop(b);
}

#[test]
fn workers_split_the_partitions_by_partition_of_and_serve_their_nodes() {
    let dir = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("AETHER_KEEP_TEST_DIR").is_some())
        .tempdir()
        .unwrap();
    let d = dir.path();
    eprintln!("cluster test directory: {}", d.display());
    let Some((_nats, url)) = start_nats(d) else {
        return;
    };
    let model = model_file(d);
    let model_bytes = std::fs::read(&model).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The gateway first: a worker with --partition-of needs the declared count.
    let gw = serve(
        &model,
        &[
            "--udp",
            "127.0.0.1:0",
            "--publish",
            &url,
            "--partitions",
            "4",
        ],
        &d.join("gateway.log"),
    );
    let worker = |i: &str| {
        let id = format!("worker-{i}");
        let of = format!("{i}/2");
        serve(
            &model,
            &[
                "--source",
                &url,
                "--partition-of",
                &of,
                "--worker-id",
                &id,
                "--result-retain",
                "100000",
            ],
            &d.join(format!("{id}.log")),
        )
    };
    let w = [worker("0"), worker("1")];
    for (i, x) in w.iter().enumerate() {
        wait_until(15, "each worker owning its 2 partitions", || {
            metric(x.http, "aether_cluster_partitions_owned") == 2.0
        });
        for p in 0..4 {
            let want = if p % 2 == i { 1.0 } else { 0.0 };
            let lease = format!("aether_cluster_lease{{partition=\"{p}\"}}");
            assert_eq!(metric(x.http, &lease), want, "worker {i}, partition {p}");
        }
    }

    // Bad input on a partition subject: not a forwarded frame. The worker counts it,
    // acknowledges it with the rest and goes on.
    rt.block_on(async {
        let c = async_nats::connect(&url).await.unwrap();
        let js = async_nats::jetstream::new(c);
        js.publish("aether.csi.0.junk", "not an envelope".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    wait_until(10, "the junk message counted", || {
        metric(w[0].http, "aether_cluster_bad_envelopes_total") == 1.0
    });

    let recs: Vec<Vec<RawCsiFrame>> = (0..4).map(|i| recording(i, i + 50)).collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let fleet_cfg = ReplayConfig {
        to: gw.udp.unwrap(),
        nodes: 8,
        rate_hz: 100.0,
        looped: true,
        duration: Some(Duration::from_secs(2)),
        ..ReplayConfig::default()
    };
    let rep = aether_serve::replay::run(&datagrams, &fleet_cfg, &Arc::new(AtomicBool::new(false)))
        .unwrap();
    assert_eq!(rep.send_errors, 0);
    let sent = rep.sent;
    wait_until(20, "a result for every frame", || {
        rt.block_on(stored_count(&url)) >= sent
    });
    let stored = rt.block_on(stored_results(&url));
    let by_worker = check_results(&stored, &HashMap::new(), &rep, &recs, &model_bytes);
    assert_eq!(by_worker.values().sum::<usize>() as u64, sent);
    for (i, x) in w.iter().enumerate() {
        let owned =
            |k: &aether_serve::NodeKey| aether_serve::cluster::partition_of(k, 4) % 2 == i as u32;
        check_api(x.http, &rep, &recs, &model_bytes, owned);
        assert_eq!(metric(x.http, "aether_cluster_takeovers_total"), 0.0);
    }
    // Every frame acknowledged (the junk message too), after its result was stored.
    for x in &w {
        let results = metric(x.http, "aether_cluster_results_published_total");
        wait_until(10, "every frame acknowledged", || {
            metric(x.http, "aether_cluster_frames_acked_total") >= results
        });
    }
    let acked: f64 = w
        .iter()
        .map(|x| metric(x.http, "aether_cluster_frames_acked_total"))
        .sum();
    assert_eq!(acked, sent as f64 + 1.0, "frames + the junk message");
    drop(gw);
}

#[test]
fn cluster_roles_refuse_a_model_their_streams_cannot_rebuild() {
    // Checked before any broker is contacted (nothing listens on port 9).
    let dir = tempfile::tempdir().unwrap();
    let model = model_file(dir.path());
    let check = |args: &[&str]| {
        cmd()
            .args(["serve", "--check-config", "--model"])
            .arg(&model)
            .args(args)
            .output()
            .unwrap()
    };
    // The model's state: horizon 64 + extractor 64 + 16 = the last 144 frames.
    let gw = ["--publish", "nats://127.0.0.1:9", "--retain"];
    let out = check(&[&gw[..], &["143"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("--retain 143") && err.contains("last 144 frames"),
        "{err}"
    );
    let out = check(&[&gw[..], &["144"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = check(&[
        "--source",
        "nats://127.0.0.1:9",
        "--partitions",
        "0-3",
        "--horizon",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("needs a horizon > 0"),
        "{}",
        stderr(&out)
    );
}
