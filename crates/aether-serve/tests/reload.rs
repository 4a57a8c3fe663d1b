//! Hot model reload: swapped mid-replay, no frame is lost (frames processed == sent),
//! every frame before a node's swap point equals the old model run directly and every
//! frame after it equals the new model's stream restarted there (the extractor goes
//! on); a bad file over HTTP leaves the old model serving with a typed error.

mod common;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aether_data::wire::RawCsiFrame;
use aether_head::math::softmax;
use aether_head::{LiveStream, StreamSettings, TemporalHead};
use aether_serve::replay::{encode_recordings, run, ReplayConfig};
use aether_serve::ServeConfig;
use common::*;
use serde_json::Value;

/// Probabilities of `model` streaming `feats[from..]` from a fresh stream.
fn stream_probs(model: &[u8], feats: &[f32], from: usize, to: usize) -> Vec<Vec<f32>> {
    let head = TemporalHead::from_blob(model).unwrap();
    let d = head.config().features;
    let mut s = LiveStream::new(&head, StreamSettings::with_horizon(32)).unwrap();
    feats[from * d..to * d]
        .chunks(d)
        .map(|f| {
            let l = s.push(&head, f).unwrap();
            let mut p = vec![0.0; l.len()];
            softmax(l, &mut p);
            p
        })
        .collect()
}

#[test]
fn a_model_swapped_mid_replay_loses_no_frame_and_serves_the_new_model() {
    let old = model_bytes(Some(32), 3);
    let new = model_bytes(Some(32), 11);
    let svc = start(
        &old,
        ServeConfig {
            token: Some("reload-token".into()),
            ..loopback_config()
        },
    );
    let addr = svc.http_addr();
    let auth = [("Authorization", "Bearer reload-token")];
    let recs: Vec<Vec<RawCsiFrame>> = (0..3).map(|i| recording(i, 30 + i)).collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let cfg = ReplayConfig {
        to: svc.udp_addr(),
        nodes: 3,
        rate_hz: 250.0,
        ..ReplayConfig::default()
    };
    let fleet = std::thread::spawn(move || run(&datagrams, &cfg, &AtomicBool::new(false)).unwrap());
    std::thread::sleep(Duration::from_millis(500));

    // A bad file first: refused with the typed error, the old model keeps serving.
    let (status, _, body) = http(addr, "POST", "/api/v1/model", &auth, b"not a model");
    assert_eq!(status, 422, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "model");
    assert_eq!(v["serving"], svc.model().sha256);
    // Without the token: refused.
    let (status, _, _) = http(addr, "POST", "/api/v1/model", &[], &new);
    assert_eq!(status, 401);
    // The real swap, mid-replay.
    let (status, _, body) = http(addr, "POST", "/api/v1/model", &auth, &new);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["generation"], 1);
    let rep = fleet.join().unwrap();
    wait_until(20, "every frame processed", || svc.frames() == rep.sent);
    let m = get_json(addr, "/api/v1/model?token=reload-token");
    assert_eq!(m["hash"], aether_serve::model::sha256_hex(&new));
    assert_eq!(m["generation"], 1);

    let mut swapped = 0;
    for (src, node_id, rec, sent) in &rep.nodes {
        let id = format!("{src}/{node_id}");
        let v = get_json(
            addr,
            &format!("/api/v1/nodes/{id}?history=4096&token=reload-token"),
        );
        let hist = v["history"].as_array().unwrap();
        assert_eq!(hist.len() as u64, *sent, "{id}: frames lost");
        assert_eq!(v["frames"], *sent);
        let gens: Vec<u64> = hist.iter().map(|h| h["model"].as_u64().unwrap()).collect();
        let k = gens.iter().position(|&g| g == 1).unwrap_or(gens.len());
        assert!(
            gens[..k].iter().all(|&g| g == 0) && gens[k..].iter().all(|&g| g == 1),
            "{id}"
        );
        if k < gens.len() {
            swapped += 1;
        }
        let feats = features_of(&recs[*rec]);
        let want_old = stream_probs(&old, &feats, 0, k);
        let want_new = stream_probs(&new, &feats, k, gens.len());
        for (t, h) in hist.iter().enumerate() {
            let got: Vec<f32> = h["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap() as f32)
                .collect();
            let want = if t < k {
                &want_old[t]
            } else {
                &want_new[t - k]
            };
            for (a, b) in got.iter().zip(want) {
                assert!(
                    (a - b).abs() <= 1e-6,
                    "{id} frame {t} (swap at {k}): {got:?} vs {want:?}"
                );
            }
            if t >= k {
                assert_eq!(
                    h["position"].as_u64().unwrap() as usize,
                    t - k,
                    "{id}: stream restarted at the swap"
                );
            }
        }
    }
    assert!(swapped > 0, "the swap happened after the replay ended");
    let text = svc.metrics().render();
    assert_eq!(
        metric(&text, "aether_model_reloads_total{reason=\"ok\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "aether_model_reloads_total{reason=\"invalid\"}"),
        1.0
    );
    assert_eq!(metric(&text, "aether_model_generation"), 1.0);
    assert!(text.contains(&aether_serve::model::sha256_hex(&new)));
    assert_eq!(
        metric(
            &text,
            "aether_packets_rejected_total{reason=\"queue_full\"}"
        ),
        0.0
    );
    svc.shutdown();
}
