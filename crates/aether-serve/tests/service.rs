//! The service end to end in one process: exactness against the library oracle for a
//! replayed fleet, the malformed-packet battery, sequence gaps and restarts, stale and
//! expire timing on a manual clock, and the HTTP API's refusals.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use aether_data::wire::{Classification, FeatureState, RawCsiFrame};
use aether_head::StreamSettings;
use aether_serve::replay::{encode_recordings, run, ReplayConfig};
use aether_serve::{ManualClock, ServeConfig};
use common::*;

fn history(addr: SocketAddr, id: &str, n: usize) -> Vec<Vec<f32>> {
    let v = get_json(addr, &format!("/api/v1/nodes/{id}?history={n}"));
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

fn assert_close(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: frame count");
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= 1e-6, "{what}: frame {t}: {g:?} vs {w:?}");
        }
    }
}

/// A fleet of 12 nodes replaying 5 different recordings: every node's every per-frame
/// probability equals the extractor + live stream run directly on its frames.
#[test]
fn replayed_fleet_equals_the_library_oracle() {
    let model = model_bytes(Some(64), 3);
    let svc = start(&model, loopback_config());
    let recs: Vec<Vec<RawCsiFrame>> = (0..5).map(|i| recording(i, i + 20)).collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let cfg = ReplayConfig {
        to: svc.udp_addr(),
        nodes: 12,
        rate_hz: 400.0,
        ..ReplayConfig::default()
    };
    let rep = run(&datagrams, &cfg, &AtomicBool::new(false)).unwrap();
    assert_eq!(rep.send_errors, 0);
    let total: usize = (0..12).map(|i| recs[i % 5].len()).sum();
    assert_eq!(rep.sent as usize, total);
    wait_until(30, "every frame processed", || {
        svc.frames() as usize == total
    });
    let settings = StreamSettings::with_horizon(64);
    let http = svc.http_addr();
    let nodes = get_json(http, "/api/v1/nodes");
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 12);
    for (src, node_id, rec, sent) in &rep.nodes {
        let id = format!("{src}/{node_id}");
        let want = oracle(&model, &recs[*rec], settings);
        assert_eq!(*sent as usize, want.len());
        let got = history(http, &id, 4096);
        assert_close(&got, &want, &id);
        let v = get_json(http, &format!("/api/v1/nodes/{id}"));
        for k in [
            "id",
            "addr",
            "node_id",
            "frames",
            "class",
            "probs",
            "last_seen_ms",
            "state",
        ] {
            assert!(v.get(k).is_some(), "{id}: key {k} missing in {v}");
        }
        assert_eq!(v["frames"], *sent);
        assert_eq!(v["state"], "live");
        assert_eq!(v["addr"], src.to_string());
        let probs = v["probs"].as_object().unwrap();
        assert_eq!(probs.len(), 3);
        let last = want.last().unwrap();
        for (i, c) in CLASSES.iter().enumerate() {
            assert!((probs[*c].as_f64().unwrap() as f32 - last[i]).abs() <= 1e-6);
        }
    }
    let m = svc.metrics().render();
    assert_eq!(metric(&m, "aether_frames_total"), total as f64);
    assert_eq!(metric(&m, "aether_packets_received_total"), total as f64);
    svc.shutdown();
}

/// Every kind of bad packet is counted by reason and dropped, while a clean node sending
/// in between gets exactly the results it would get alone.
#[test]
fn malformed_packets_are_counted_and_leave_other_nodes_untouched() {
    let model = model_bytes(Some(32), 4);
    let cfg = ServeConfig {
        max_node_rate: 1000.0,
        ..loopback_config()
    };
    let svc = start(&model, cfg);
    let to = svc.udp_addr();
    let good = UdpSocket::bind("127.0.0.2:0").unwrap();
    let bad = UdpSocket::bind("127.0.0.3:0").unwrap();
    let clean = recording(1, 3);
    let half = clean.len() / 2;
    send_frames(&good, to, 1, &clean[..half], 0..);

    let f = &clean[0];
    let enc = |fr: &RawCsiFrame| fr.encode().unwrap();
    let mut expect: Vec<(&str, usize)> = Vec::new();
    let mut send = |b: &[u8], reason: &'static str| {
        bad.send_to(b, to).unwrap();
        std::thread::sleep(Duration::from_micros(200));
        match expect.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => expect.push((reason, 1)),
        }
    };
    send(&[0xC5, 0x11], "truncated");
    send(&[1, 2, 3, 4, 5, 6, 7, 8], "bad_magic");
    let full = enc(f);
    send(&full[..full.len() - 3], "truncated");
    let mut long = full.clone();
    long.extend([0, 0]);
    send(&long, "trailing_bytes");
    let mut zero_ant = full.clone();
    zero_ant[5] = 0;
    send(&zero_ant, "zero_antennas");
    let mut zero_sub = full.clone();
    zero_sub[6] = 0;
    zero_sub[7] = 0;
    send(&zero_sub, "bad_subcarriers");
    let mut many_sub = full.clone();
    many_sub[6..8].copy_from_slice(&600u16.to_le_bytes());
    send(&many_sub, "bad_subcarriers");
    let mut big = full.clone();
    big.resize(5000, 0);
    send(&big, "oversized");
    let few = RawCsiFrame {
        n_subcarriers: 4,
        iq: vec![3; 8],
        ..f.clone()
    };
    send(&enc(&few), "too_few_subcarriers");
    let two_ant = RawCsiFrame {
        n_antennas: 2,
        iq: [f.iq.clone(), f.iq.clone()].concat(),
        ..f.clone()
    };
    send(&enc(&two_ant), "model_input");
    let fs = FeatureState {
        node_id: 9,
        mode: 0,
        seq: 1,
        ts_us: 5,
        motion_score: 0.5,
        presence_score: 0.5,
        respiration_bpm: 12.0,
        respiration_conf: 0.9,
        heartbeat_bpm: 60.0,
        heartbeat_conf: 0.9,
        anomaly_score: 0.0,
        env_shift_score: 0.0,
        node_coherence: 1.0,
        quality_flags: 0,
    };
    send(&fs.encode(), "model_input");
    let mut bad_crc = fs.encode();
    bad_crc[20] ^= 1;
    send(&bad_crc, "crc");
    let cls = Classification {
        n_classes: 3,
        node_id: 9,
        ts_us: 7,
        seq: 1,
        argmax: 1,
        top_logit: 2.0,
        top1_minus_top2: 0.5,
    };
    let mut bad_version = cls.encode();
    bad_version[4] = 9;
    let crc = crc32fast::hash(&bad_version[..36]);
    bad_version[36..].copy_from_slice(&crc.to_le_bytes());
    send(&bad_version, "version");
    let nan = Classification {
        top_logit: f32::NAN,
        ..cls
    };
    send(&nan.encode(), "non_finite");
    send(&cls.encode(), "ok");
    send(&cls.encode(), "duplicate");
    // A node that changes its subcarrier count mid-stream.
    let sub = UdpSocket::bind("127.0.0.4:0").unwrap();
    send_frames(&sub, to, 5, &clean[..10], 0..);
    let narrow: Vec<RawCsiFrame> = clean[10..15]
        .iter()
        .map(|f| RawCsiFrame {
            n_subcarriers: 32,
            iq: f.iq[..64].to_vec(),
            ..f.clone()
        })
        .collect();
    send_frames(&sub, to, 5, &narrow, 10..);
    // Duplicates and late frames of node 5.
    send_frames(&sub, to, 5, &clean[15..17], 15..);
    send_frames(&sub, to, 5, &clean[16..17], 16..);
    send_frames(&sub, to, 5, &clean[14..15], 14..);
    // A flood from one node: 2,000 frames at once against a 1,000/s limit.
    let flood = UdpSocket::bind("127.0.0.5:0").unwrap();
    for s in 0..2000u32 {
        let mut f = clean[(s as usize) % clean.len()].clone();
        f.node_id = 6;
        f.seq = s;
        flood.send_to(&f.encode().unwrap(), to).unwrap();
    }
    send_frames(&good, to, 1, &clean[half..], half as u32..);

    let want = oracle(&model, &clean, StreamSettings::with_horizon(32));
    let http = svc.http_addr();
    wait_until(30, "the clean node's frames", || {
        get_json(http, "/api/v1/nodes/127.0.0.2/1")["frames"] == clean.len()
    });
    assert_close(&history(http, "127.0.0.2/1", 4096), &want, "clean node");
    let m = svc.metrics().render();
    let r = |reason: &str| {
        metric(
            &m,
            &format!("aether_packets_rejected_total{{reason=\"{reason}\"}}"),
        )
    };
    for (reason, n) in &expect {
        if *reason != "ok" && *reason != "duplicate" {
            assert_eq!(r(reason), *n as f64, "{reason}\n{m}");
        }
    }
    assert_eq!(r("shape_change"), 5.0);
    assert_eq!(
        r("duplicate"),
        2.0,
        "classification repeat + frame 16 again"
    );
    assert_eq!(r("reordered"), 1.0);
    let limited = r("rate_limited");
    assert!(
        (800.0..=1000.0).contains(&limited),
        "rate limited {limited}"
    );
    assert_eq!(metric(&m, "aether_node_results_total"), 1.0);
    let n5 = get_json(http, "/api/v1/nodes/127.0.0.4/5");
    assert_eq!(n5["frames"], 12);
    assert_eq!(n5["rejected"], 7);
    assert_eq!(n5["shape"], serde_json::json!([1, 64]));
    let n9 = get_json(http, "/api/v1/nodes/127.0.0.3/9");
    assert_eq!(n9["source"], "node");
    assert_eq!(n9["class"], CLASSES[1]);
    assert_eq!(n9["node_result"]["argmax"], 1);
    svc.shutdown();
}

/// A small gap continues the stream; a gap above `--max-gap` and a jump back (reboot)
/// restart it: the results after a restart equal a fresh stream on the frames after it.
#[test]
fn gaps_and_restarts_follow_the_documented_rule() {
    let model = model_bytes(Some(48), 5);
    let cfg = ServeConfig {
        max_gap: 20,
        ..loopback_config()
    };
    let svc = start(&model, cfg);
    let to = svc.udp_addr();
    let s = UdpSocket::bind("127.0.0.2:0").unwrap();
    let rec = recording(2, 9);
    let (a, b, c) = (&rec[..60], &rec[60..120], &rec[120..200]);
    send_frames(&s, to, 3, a, 0..);
    send_frames(&s, to, 3, b, 70..); // gap of 10 lost: continue
    send_frames(&s, to, 3, c, 1000..); // gap of 870: restart
    let d = &rec[200..240];
    send_frames(&s, to, 3, d, 0..); // back to 0: node rebooted
    let http = svc.http_addr();
    wait_until(30, "all frames", || svc.frames() == 240);
    let got = history(http, "127.0.0.2/3", 4096);
    let settings = StreamSettings::with_horizon(48);
    let mut want = oracle(&model, &rec[..120], settings);
    want.extend(oracle(&model, c, settings));
    want.extend(oracle(&model, d, settings));
    assert_close(&got, &want, "segments");
    let v = get_json(http, "/api/v1/nodes/127.0.0.2/3?history=45");
    let h = v["history"].as_array().unwrap();
    assert_eq!(h.len(), 45);
    assert_eq!(h[44]["position"], 39);
    assert_eq!(h[4]["position"], 79);
    assert_eq!(v["lost"], 10 + 870);
    assert_eq!(v["resets"], 2);
    let m = svc.metrics().render();
    assert_eq!(metric(&m, "aether_frames_lost_total"), 880.0);
    assert_eq!(
        metric(&m, "aether_stream_resets_total{reason=\"gap\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "aether_stream_resets_total{reason=\"restart\"}"),
        1.0
    );
    svc.shutdown();
}

/// Stale after `--stale`, dropped after `--expire`, on a manual clock.
#[test]
fn stale_then_expired_on_a_manual_clock() {
    let model = model_bytes(None, 6);
    let clock = Arc::new(ManualClock::new(1_000_000));
    let cfg = ServeConfig {
        clock: clock.clone(),
        stale: Duration::from_secs(5),
        expire: Duration::from_secs(60),
        ..loopback_config()
    };
    let svc = start(&model, cfg);
    let to = svc.udp_addr();
    let s = UdpSocket::bind("127.0.0.2:0").unwrap();
    let s2 = UdpSocket::bind("127.0.0.3:0").unwrap();
    let rec = recording(0, 1);
    send_frames(&s, to, 1, &rec[..20], 0..);
    send_frames(&s2, to, 2, &rec[..20], 0..);
    wait_until(20, "frames", || svc.frames() == 40);
    let http = svc.http_addr();
    let state = |id: &str| get_json(http, &format!("/api/v1/nodes/{id}"))["state"].clone();
    assert_eq!(state("127.0.0.2/1"), "live");
    assert_eq!(
        get_json(http, "/api/v1/nodes/127.0.0.2/1")["last_seen_ms"],
        1_000_000
    );
    clock.advance(5_000);
    svc.sweep_now();
    assert_eq!(
        state("127.0.0.2/1"),
        "live",
        "exactly --stale is still live"
    );
    clock.advance(1);
    svc.sweep_now();
    assert_eq!(state("127.0.0.2/1"), "stale");
    let m = svc.metrics().render();
    assert_eq!(metric(&m, "aether_nodes{state=\"stale\"}"), 2.0);
    // Node 2 comes back: live again; node 1 stays silent and expires.
    send_frames(&s2, to, 2, &rec[20..21], 20..);
    wait_until(20, "frame", || svc.frames() == 41);
    clock.advance(54_999);
    svc.sweep_now();
    assert_eq!(state("127.0.0.2/1"), "stale");
    clock.advance(1);
    svc.sweep_now();
    let (st, _, _) = http_req(http, "/api/v1/nodes/127.0.0.2/1");
    assert_eq!(st, 404);
    assert_eq!(state("127.0.0.3/2"), "stale");
    let m = svc.metrics().render();
    assert_eq!(metric(&m, "aether_nodes_expired_total"), 1.0);
    assert_eq!(metric(&m, "aether_nodes{state=\"stale\"}"), 1.0);
    assert_eq!(metric(&m, "aether_nodes{state=\"live\"}"), 0.0);
    // An expired node that sends again starts from scratch.
    send_frames(&s, to, 1, &rec[..5], 500..);
    wait_until(20, "frames", || svc.frames() == 46);
    assert_eq!(get_json(http, "/api/v1/nodes/127.0.0.2/1")["frames"], 5);
    svc.shutdown();
}

fn http_req(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http(addr, "GET", path, &[], b"")
}

/// Unknown paths, wrong methods, oversized bodies and URIs are refused and counted;
/// the model and health endpoints answer; a token guards everything but health.
#[test]
fn http_api_refuses_what_it_should() {
    let model = model_bytes(Some(40), 7);
    let svc = start(&model, loopback_config());
    let a = svc.http_addr();
    assert_eq!(get_json(a, "/healthz")["status"], "ok");
    assert_eq!(get_json(a, "/readyz")["status"], "ready");
    let m = get_json(a, "/api/v1/model");
    assert_eq!(m["classes"], serde_json::json!(CLASSES));
    assert_eq!(m["features"].as_array().unwrap().len(), 16);
    assert_eq!(m["hash"].as_str().unwrap().len(), 64);
    assert_eq!(m["stream"]["horizon"], 40);
    assert_eq!(m["pattern"]["causal"], true);
    assert_eq!(m["input"]["kind"], "raw_csi");
    assert_eq!(get_json(a, "/api/v1/nodes")["nodes"], serde_json::json!([]));
    let (st, _, body) = http_req(a, "/api/v1/nope");
    assert_eq!(st, 404);
    assert!(body.contains("no such path"), "{body}");
    let (st, _, _) = http_req(a, "/api/v1/nodes/not-a-node");
    assert_eq!(st, 400);
    let (st, _, _) = http_req(a, "/api/v1/nodes/127.0.0.9/3");
    assert_eq!(st, 404);
    let (st, _, _) = http(a, "POST", "/api/v1/nodes", &[], b"{}");
    assert_eq!(st, 405);
    let (st, _, _) = http(a, "POST", "/api/v1/nodes", &[], &vec![b'x'; 100_000]);
    assert_eq!(st, 413);
    let long = format!("/api/v1/nodes?{}", "x".repeat(5000));
    let (st, _, _) = http_req(a, &long);
    assert_eq!(st, 414);
    let (st, head, body) = http_req(a, "/");
    assert_eq!(st, 200);
    assert!(head.to_lowercase().contains("text/html"));
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "external URL in the dashboard"
    );
    for asset in ["/assets/app.js", "/assets/style.css"] {
        let (st, _, body) = http_req(a, asset);
        assert_eq!(st, 200);
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "external URL in {asset}"
        );
    }
    let text = svc.metrics().render();
    for (reason, n) in [
        ("not_found", 1.0),
        ("method", 1.0),
        ("too_large", 1.0),
        ("uri_too_long", 1.0),
    ] {
        assert_eq!(
            metric(
                &text,
                &format!("aether_http_rejected_total{{reason=\"{reason}\"}}")
            ),
            n,
            "{reason}"
        );
    }
    let (st, _, body) = http_req(a, "/metrics");
    assert_eq!(st, 200);
    for name in [
        "aether_packets_received_total",
        "aether_packets_rejected_total{reason=\"crc\"}",
        "aether_frames_total",
        "aether_nodes{state=\"live\"}",
        "aether_ws_clients",
        "aether_ws_lagged_messages_total",
        "aether_queue_capacity",
    ] {
        metric(&body, name);
    }
    assert!(body.contains("aether_stage_seconds_bucket"));
    assert!(body.contains("aether_frame_latency_seconds_bucket"));
    // The single-machine service is no cluster role: no broker, no cluster metrics.
    assert!(!svc.is_gateway() && !svc.is_worker());
    assert!(!body.contains("aether_cluster_"), "{body}");
    svc.shutdown();

    // Non-loopback without a token is refused at start-up.
    let open = ServeConfig {
        http: "0.0.0.0:0".parse().unwrap(),
        ..loopback_config()
    };
    let e = aether_serve::Service::start(&model, open)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--token"), "{e}");
    // With a token: 401 without it, 200 with it; health stays open.
    let guarded = ServeConfig {
        token: Some("s3cret-token".into()),
        ..loopback_config()
    };
    let svc = start(&model, guarded);
    let a = svc.http_addr();
    assert_eq!(http_req(a, "/api/v1/nodes").0, 401);
    assert_eq!(http_req(a, "/metrics").0, 401);
    assert_eq!(
        http(
            a,
            "GET",
            "/api/v1/nodes",
            &[("Authorization", "Bearer wrong-token")],
            b""
        )
        .0,
        401
    );
    assert_eq!(
        http(
            a,
            "GET",
            "/api/v1/nodes",
            &[("Authorization", "Bearer s3cret-token")],
            b""
        )
        .0,
        200
    );
    assert_eq!(http_req(a, "/api/v1/nodes?token=s3cret-token").0, 200);
    assert_eq!(http_req(a, "/healthz").0, 200);
    assert_eq!(http_req(a, "/").0, 200);
    let text = svc.metrics().render();
    assert_eq!(
        metric(&text, "aether_http_rejected_total{reason=\"unauthorized\"}"),
        3.0
    );
    svc.shutdown();
}
