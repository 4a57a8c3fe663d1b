//! `aether serve` in a home and a lab, as processes: with a real Mosquitto, `aether
//! replay` makes one Home Assistant device per node with rate-limited states, a killed
//! service leaves its last will (`offline`), a restart keeps every identifier; a
//! labelled capture survives `kill -9` up to its last flush, is recovered, trains a
//! model with `aether train`, and that model hot-reloads without losing a frame; the
//! TOML config file, `--check-config` and JSON logs.

mod common;
mod ops;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use ops::broker::{Broker, Msg, Sub};
use ops::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Captures and a trained model, made once for every test of this file.
fn fixtures() -> &'static (tempfile::TempDir, PathBuf, PathBuf) {
    static F: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    F.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let (caps, model) = captures_and_model(d.path());
        (d, caps, model)
    })
}

fn configs(msgs: &[Msg]) -> Vec<&Msg> {
    msgs.iter()
        .filter(|m| m.topic.starts_with("homeassistant/") && m.topic.ends_with("/config"))
        .collect()
}

#[test]
fn mqtt_devices_rate_limited_states_last_will_and_stable_ids() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let (_, caps, model) = fixtures();
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let sub = Sub::new(broker.port, "ha", &["homeassistant/#", "aether/#"]);
    let url = broker.url();
    let args = ["--mqtt", &url, "--data-dir", s(&state), "--mqtt-hz", "2"];
    let mut srv = Server::start(model, &args);
    let inst = std::fs::read_to_string(state.join("instance-id"))
        .unwrap()
        .trim()
        .to_string();
    let status = format!("aether/{inst}/status");
    sub.wait(10, "online", |m| {
        m.iter().any(|m| m.topic == status && m.payload == "online")
    });

    let t0 = Instant::now();
    let n = sent(replay(caps, srv.udp, 3, 100.0, 2.0));
    wait(20, "every frame", || {
        srv.metric("aether_frames_total") == n as f64
    });
    std::thread::sleep(Duration::from_millis(600));
    let elapsed = t0.elapsed().as_secs_f64();
    let msgs = sub.all();
    let slug = inst.replace('-', "_");
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        let node = format!("127_0_0_2_n{i}");
        let mine: Vec<&Msg> = configs(&msgs)
            .into_iter()
            .filter(|m| m.topic.contains(&node))
            .collect();
        let topics: BTreeSet<&str> = mine.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                format!("homeassistant/sensor/{slug}_{node}/class/config"),
                format!("homeassistant/sensor/{slug}_{node}/probability/config"),
                format!("homeassistant/event/{slug}_{node}/activity/config"),
            ]
            .iter()
            .map(String::as_str)
            .collect(),
            "gesture classes: a class sensor, a probability and an event entity, no binary sensor"
        );
        for m in &mine {
            let c: Value = serde_json::from_str(&m.payload).unwrap();
            assert_eq!(
                c["device"]["identifiers"][0],
                format!("aether_{slug}_{node}")
            );
            assert_eq!(c["availability"][0]["topic"], status);
            ids.insert(c["unique_id"].as_str().unwrap().to_string());
            if m.topic.contains("/event/") {
                assert_eq!(c["event_types"], json!(["circle", "push", "swipe", "wave"]));
            }
        }
        let states = msgs
            .iter()
            .filter(|m| m.topic == format!("aether/{inst}/{node}/state"))
            .count();
        let max = (2.0 * elapsed).ceil() as usize + 1;
        assert!(
            (1..=max).contains(&states),
            "{node}: {states} states in {elapsed:.1} s (max {max})"
        );
    }
    assert_eq!(ids.len(), 9);

    // A crash: the broker publishes the last will.
    srv.kill9();
    sub.wait(10, "last will", |m| {
        m.iter()
            .rev()
            .find(|m| m.topic == status)
            .is_some_and(|m| m.payload == "offline")
    });

    // A restart with the same data directory: the same instance, the same identifiers.
    let before = sub.all().len();
    let srv = Server::start(model, &args);
    sub.wait(10, "online again", |m| {
        m[before..]
            .iter()
            .any(|m| m.topic == status && m.payload == "online")
    });
    let n = sent(replay(caps, srv.udp, 1, 100.0, 0.3));
    wait(20, "frames", || {
        srv.metric("aether_frames_total") == n as f64
    });
    let want = format!("aether_{slug}_127_0_0_2_n0_class");
    sub.wait(10, "the same unique_id after the restart", |m| {
        configs(&m[before..])
            .iter()
            .any(|c| c.payload.contains(&format!("\"unique_id\":\"{want}\"")))
    });
    assert!(ids.contains(&want));
    assert_eq!(
        std::fs::read_to_string(state.join("instance-id"))
            .unwrap()
            .trim(),
        inst
    );
}

fn label(srv: &Server, node: &str, class: Option<&str>) -> Value {
    let body = json!({"node": node, "class": class}).to_string();
    let (st, text) = request(srv.http, "POST", "/api/v1/label", body.as_bytes());
    assert_eq!(st, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".csv.part"))
        .collect();
    v.sort();
    v
}

#[test]
fn labelled_capture_survives_kill9_trains_and_hot_reloads_without_losing_a_frame() {
    let (_, caps, model) = fixtures();
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("rec");
    let args = ["--record", s(&rec), "--record-flush", "0.1"];
    let mut srv = Server::start(model, &args);
    let mut fleet = replay(caps, srv.udp, 2, 100.0, 6.0);
    wait(10, "two nodes", || {
        get(srv.http, "/api/v1/nodes")["count"] == 2
    });
    label(&srv, "127.0.0.2/0", Some("wave"));
    label(&srv, "127.0.0.2/1", Some("circle"));
    std::thread::sleep(Duration::from_millis(1200));
    let a = label(&srv, "127.0.0.2/0", None);
    let b = label(&srv, "127.0.0.2/1", None);
    let done =
        a["finished"]["frames"].as_u64().unwrap() + b["finished"]["frames"].as_u64().unwrap();
    assert!(a["finished"]["frames"].as_u64().unwrap() > 50, "{a}");

    // A segment in progress, then kill -9 once at least 40 of its rows were synced.
    label(&srv, "127.0.0.2/0", Some("wave"));
    wait(10, "rows synced", || {
        srv.metric("aether_record_rows_synced_total") >= (done + 40) as f64
    });
    let synced = srv.metric("aether_record_rows_synced_total") as u64 - done;
    srv.kill9();
    let _ = fleet.kill();
    let _ = fleet.wait();
    let part = parts(&rec.join("wave"));
    assert_eq!(part.len(), 1, "{part:?}");
    let text = std::fs::read_to_string(&part[0]).unwrap();
    let whole = &text[..text.rfind('\n').unwrap() + 1];
    let (header, rows) = aether_data::dataset::parse_csv(whole, "part").unwrap();
    let kept = (rows.len() / header.len()) as u64;
    assert!(
        kept >= synced,
        "{kept} rows on disk, {synced} were synced before the kill"
    );

    // The next start recovers it under its final name.
    let srv = Server::start(model, &args);
    assert!(parts(&rec.join("wave")).is_empty());
    let waves = std::fs::read_dir(rec.join("wave")).unwrap().count();
    assert_eq!(waves, 2);

    // `aether train` on the capture, as is.
    let m2 = d.path().join("m2.rvne");
    let mut t = vec![
        "train",
        "--data",
        s(&rec),
        "--out",
        s(&m2),
        "--window",
        "16",
        "--no-plots",
    ];
    t.extend(TINY);
    ok(&aether(&t));
    let bytes = std::fs::read(&m2).unwrap();

    // Hot reload mid-replay: every datagram received reaches a stream.
    let fleet = replay(caps, srv.udp, 2, 150.0, 1.5);
    std::thread::sleep(Duration::from_millis(500));
    let (st, body) = request(srv.http, "POST", "/api/v1/model", &bytes);
    assert_eq!(st, 200, "{body}");
    let n = sent(fleet);
    wait(20, "every frame", || {
        srv.metric("aether_frames_total") == n as f64
    });
    assert_eq!(srv.metric("aether_packets_received_total"), n as f64);
    let hash: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let m = get(srv.http, "/api/v1/model");
    assert_eq!(m["hash"], hash);
    assert_eq!(m["generation"], 1);
    let nodes = get(srv.http, "/api/v1/nodes");
    for n in nodes["nodes"].as_array().unwrap() {
        assert_eq!(n["model_generation"], 1, "{n}");
    }
}

#[test]
fn config_file_check_config_and_json_logs() {
    let (_, _, model) = fixtures();
    let d = tempfile::tempdir().unwrap();
    // A taken UDP port: --check-config must not bind it.
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let conf = d.path().join("serve.toml");
    let rec = d.path().join("rec");
    std::fs::write(
        &conf,
        format!(
            "model = {:?}\nudp = \"{}\"\nhttp = \"127.0.0.1:0\"\npublish_hz = 5\nrecord = {:?}\nmax-gap = 10\nreply = true\n",
            s(model),
            taken.local_addr().unwrap(),
            s(&rec)
        ),
    )
    .unwrap();
    let c = s(&conf);
    let out = ok(&aether(&["serve", "--config", c, "--check-config"]));
    assert!(
        out.contains("--check-config: ok") && out.contains("recording into"),
        "{out}"
    );
    // Command-line options win over the file; their values are range-checked either way.
    fails(
        &aether(&[
            "serve",
            "--config",
            c,
            "--check-config",
            "--publish-hz",
            "5000",
        ]),
        &["--publish-hz"],
    );
    let bad = d.path().join("bad.toml");
    std::fs::write(&bad, format!("model = {:?}\npublish_hz = 5000\n", s(model))).unwrap();
    fails(
        &aether(&["serve", "--config", s(&bad), "--check-config"]),
        &["--publish-hz", "config file"],
    );
    let out = ok(&aether(&[
        "serve",
        "--config",
        s(&bad),
        "--check-config",
        "--publish-hz",
        "7",
    ]));
    assert!(out.contains("ok"), "{out}");
    std::fs::write(&bad, format!("model = {:?}\nwhat = 1\n", s(model))).unwrap();
    fails(
        &aether(&["serve", "--config", s(&bad), "--check-config"]),
        &["unknown key"],
    );
    std::fs::write(&bad, "model = \"/nonexistent.rvne\"\n").unwrap();
    fails(
        &aether(&["serve", "--config", s(&bad), "--check-config"]),
        &["nonexistent"],
    );
    std::fs::write(
        &bad,
        format!("model = {:?}\nmqtt = \"tcp://x\"\n", s(model)),
    )
    .unwrap();
    fails(
        &aether(&[
            "serve",
            "--config",
            s(&bad),
            "--check-config",
            "--data-dir",
            s(&d.path().join("st")),
        ]),
        &["mqtt://"],
    );
    std::fs::write(&bad, b"model = [").unwrap();
    fails(
        &aether(&["serve", "--config", s(&bad), "--check-config"]),
        &["bad.toml"],
    );
    // The example config of crates/aether-serve/contrib passes, with local paths.
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../aether-serve/contrib/aether-serve.toml");
    let out = ok(&aether(&[
        "serve",
        "--config",
        s(&example),
        "--check-config",
        "--model",
        s(model),
        "--record",
        s(&rec),
        "--data-dir",
        s(&d.path().join("state")),
    ]));
    assert!(out.contains("MQTT"), "{out}");

    // JSON logs: one object per line on stderr.
    let mut child = cmd()
        .args([
            "serve",
            "--config",
            c,
            "--udp",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{v}");
    assert!(v["fields"]["message"].as_str().is_some(), "{v}");
}
