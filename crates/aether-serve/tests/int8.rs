//! An int8 model (docs/int8.md) served end to end: every node's every per-frame
//! probability equals the integer live stream run directly on its frames, bit for bit
//! before the softmax; the model endpoint says `int8`; a continuous (horizon 0) stream
//! is refused for an int8 model.

mod common;

use std::sync::atomic::AtomicBool;

use aether_data::features::FeatureConfig;
use aether_data::wire::RawCsiFrame;
use aether_head::math::softmax;
use aether_head::StreamSettings;
use aether_quant::quantize::{quantize, QuantizeOptions};
use aether_quant::{QLiveStream, QuantHead};
use aether_rvne::ModelFile;
use aether_serve::model::LoadedModel;
use aether_serve::replay::{encode_recordings, run, ReplayConfig};
use common::*;

fn int8_model() -> Vec<u8> {
    let float = ModelFile::from_bytes(&model_bytes(Some(48), 5)).unwrap();
    let calib: Vec<Vec<f32>> = (0..6).map(|i| features_of(&recording(i, i + 40))).collect();
    let refs: Vec<&[f32]> = calib.iter().map(|v| v.as_slice()).collect();
    let (q, _) = quantize(&float, &refs, &QuantizeOptions::default()).unwrap();
    q.to_v2_bytes().unwrap()
}

/// The per-frame probabilities of the integer live stream run directly.
fn int8_oracle(model: &[u8], frames: &[RawCsiFrame], horizon: usize) -> Vec<Vec<f32>> {
    let head = QuantHead::from_blob(model).unwrap();
    let feats = features_of(frames);
    let mut s = QLiveStream::new(&head, horizon).unwrap();
    feats
        .chunks(head.features())
        .map(|f| {
            let q = s.push(&head, f).unwrap();
            let mut l = vec![0.0f32; q.len()];
            head.logits_to_f32(q, &mut l);
            let mut p = vec![0.0; l.len()];
            softmax(&l, &mut p);
            p
        })
        .collect()
}

#[test]
fn an_int8_model_serves_a_fleet_exactly() {
    let model = int8_model();
    let svc = start(&model, loopback_config());
    let recs: Vec<Vec<RawCsiFrame>> = (0..3).map(|i| recording(i, i + 30)).collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let cfg = ReplayConfig {
        to: svc.udp_addr(),
        nodes: 4,
        rate_hz: 400.0,
        ..ReplayConfig::default()
    };
    let rep = run(&datagrams, &cfg, &AtomicBool::new(false)).unwrap();
    let total: usize = (0..4).map(|i| recs[i % 3].len()).sum();
    assert_eq!(rep.sent as usize, total);
    wait_until(30, "every frame processed", || {
        svc.frames() as usize == total
    });
    let http = svc.http_addr();
    assert_eq!(get_json(http, "/api/v1/model")["precision"], "int8");
    for (src, node_id, rec, _) in &rep.nodes {
        let id = format!("{src}/{node_id}");
        let want = int8_oracle(&model, &recs[*rec], 48);
        let v = get_json(http, &format!("/api/v1/nodes/{id}?history=4096"));
        let got: Vec<Vec<f32>> = v["history"]
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
            .collect();
        assert_eq!(got.len(), want.len(), "{id}");
        for (t, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{id}: frame {t}");
        }
    }
    svc.shutdown();
}

#[test]
fn an_int8_model_needs_a_horizon() {
    let model = int8_model();
    let ok = LoadedModel::from_bytes(&model, FeatureConfig::default(), None).unwrap();
    assert_eq!(ok.head.precision(), "int8");
    let err = LoadedModel::from_bytes(
        &model,
        FeatureConfig::default(),
        Some(StreamSettings::with_horizon(0)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("horizon"), "{err}");
}
