//! Recording and labelling from the live fleet: `POST /api/v1/label` segments hold
//! exactly the node's feature rows (the extractor run directly) in the dataset-folder
//! layout `aether train` reads, raw captures hold every datagram, the API's refusals are
//! counted; a full disk (a 64 KiB tmpfs) and a read-only one are reported in /metrics
//! and the API while the service keeps classifying, and no file is left invalid.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aether_data::dataset::{parse_csv, read_dataset_dir};
use aether_data::features::{feature_names, FeatureConfig};
use aether_data::wire::parse_capture;
use aether_serve::record::RecordConfig;
use aether_serve::ServeConfig;
use common::*;
use serde_json::{json, Value};

fn label(addr: std::net::SocketAddr, node: &str, class: Option<&str>) -> (u16, Value) {
    let body = json!({"node": node, "class": class}).to_string();
    let (status, _, text) = http(addr, "POST", "/api/v1/label", &[], body.as_bytes());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn record_cfg(dir: &Path) -> ServeConfig {
    ServeConfig {
        record: Some(RecordConfig {
            flush_every: Duration::from_millis(100),
            ..RecordConfig::new(dir)
        }),
        ..loopback_config()
    }
}

#[test]
fn labelled_segments_are_the_nodes_features_in_the_dataset_layout() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&model_bytes(Some(32), 3), record_cfg(dir.path()));
    let addr = svc.http_addr();
    let to = svc.udp_addr();
    let (a, b) = (
        UdpSocket::bind("127.0.0.2:0").unwrap(),
        UdpSocket::bind("127.0.0.3:0").unwrap(),
    );
    let (fa, fb) = (recording(0, 5), recording(1, 6));
    // Frames before the label are not in the segment.
    send_frames(&a, to, 1, &fa[..50], 0..);
    send_frames(&b, to, 2, &fb[..50], 0..);
    wait_until(10, "first frames", || svc.frames() == 100);

    // Refusals, each counted.
    assert_eq!(label(addr, "127.0.0.9/1", Some("wave")).0, 404);
    assert_eq!(label(addr, "127.0.0.2/1", Some("../x")).0, 400);
    assert_eq!(label(addr, "not a node", Some("wave")).0, 400);
    assert_eq!(label(addr, "127.0.0.2/1", None).0, 409);
    let (st, _, _) = http(addr, "POST", "/api/v1/label", &[], b"{oops");
    assert_eq!(st, 400);

    let (st, v) = label(addr, "127.0.0.2/1", Some("wave"));
    assert_eq!(st, 200, "{v}");
    let file_a = v["file"].as_str().unwrap().to_string();
    assert!(
        file_a.starts_with("wave/127.0.0.2-n1_") && file_a.ends_with(".csv"),
        "{file_a}"
    );
    assert_eq!(label(addr, "127.0.0.3/2", Some("circle")).0, 200);
    let node = get_json(addr, "/api/v1/nodes/127.0.0.2/1");
    assert_eq!(node["label"]["class"], "wave");
    send_frames(&a, to, 1, &fa[50..200], 50..);
    send_frames(&b, to, 2, &fb[50..120], 50..);
    wait_until(10, "labelled frames", || svc.frames() == 320);
    let (st, v) = label(addr, "127.0.0.2/1", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["finished"]["frames"], 150);
    assert_eq!(v["finished"]["synced"], 150);
    let (st, v) = label(addr, "127.0.0.3/2", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["finished"]["frames"], 70);

    // The segment is the extractor's output on exactly the labelled frames.
    let text = std::fs::read_to_string(dir.path().join(&file_a)).unwrap();
    let (header, rows) = parse_csv(&text, &file_a).unwrap();
    assert_eq!(header, feature_names(1, FeatureConfig::default()));
    let want = features_of(&fa[..200]);
    assert_eq!(rows.len(), 150 * header.len());
    assert_eq!(rows, want[50 * header.len()..]);
    // `aether train --data DIR` reads it: two classes, the captures skipped.
    let (ds, report) = read_dataset_dir(dir.path()).unwrap();
    assert_eq!(ds.classes, vec!["circle", "wave"]);
    assert_eq!(ds.recordings.len(), 2);
    assert!(
        report.skipped.iter().all(|(p, _)| p.contains("capture_")),
        "{:?}",
        report.skipped
    );
    // The raw captures hold every datagram of each node.
    let svc_metrics = svc.metrics().render();
    svc.shutdown();
    let cap: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("capture_127.0.0.2-n1_")
        })
        .collect();
    assert_eq!(cap.len(), 1, "{cap:?}");
    let (frames, _) = parse_capture(&std::fs::read(&cap[0]).unwrap());
    assert_eq!(frames.len(), 200);
    assert_eq!(frames[7].iq, fa[7].iq);
    assert_eq!(metric(&svc_metrics, "aether_record_rows_total"), 220.0);
    assert_eq!(
        metric(
            &svc_metrics,
            "aether_record_segments_total{reason=\"finished\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(&svc_metrics, "aether_labels_total{kind=\"start\"}"),
        3.0
    );
    assert!(
        metric(
            &svc_metrics,
            "aether_http_rejected_total{reason=\"bad_request\"}"
        ) >= 3.0
    );
    assert_eq!(
        metric(
            &svc_metrics,
            "aether_http_rejected_total{reason=\"conflict\"}"
        ),
        1.0
    );
}

#[test]
fn labels_need_recording_on() {
    let svc = start(&model_bytes(Some(32), 3), loopback_config());
    let s = UdpSocket::bind("127.0.0.4:0").unwrap();
    send_frames(&s, svc.udp_addr(), 1, &recording(0, 1)[..5], 0..);
    wait_until(10, "frames", || svc.frames() == 5);
    let (st, v) = label(svc.http_addr(), "127.0.0.4/1", Some("wave"));
    assert_eq!(st, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--record"));
    assert_eq!(
        get_json(svc.http_addr(), "/api/v1/record")["enabled"],
        false
    );
}

/// Mounts a tmpfs of `size` at `dir` (root only); `None` with a message otherwise.
fn tmpfs(dir: &Path, opts: &str) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs (needs root) at {}",
            dir.display()
        );
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_reported_and_nothing_is_left_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_m) = tmpfs(dir.path(), "size=64k") else {
        return;
    };
    let mut cfg = record_cfg(dir.path());
    if let Some(r) = &mut cfg.record {
        r.capture = false;
    }
    let svc = start(&model_bytes(Some(32), 3), cfg);
    let addr = svc.http_addr();
    let s = UdpSocket::bind("127.0.0.5:0").unwrap();
    let frames: Vec<_> = (0..6).flat_map(|i| recording(i, 40 + i)).collect();
    send_frames(&s, svc.udp_addr(), 1, &frames[..10], 0..);
    wait_until(10, "frames", || svc.frames() == 10);
    assert_eq!(label(addr, "127.0.0.5/1", Some("wave")).0, 200);
    // 100 rows synced first, then 1,690 more rows of ~16 numbers: far more than 64 KiB.
    send_frames(&s, svc.udp_addr(), 1, &frames[10..110], 10..);
    wait_until(10, "100 rows synced", || {
        metric(&svc.metrics().render(), "aether_record_rows_synced_total") == 100.0
    });
    send_frames(&s, svc.udp_addr(), 1, &frames[110..], 110..);
    wait_until(20, "every frame classified", || {
        svc.frames() == frames.len() as u64
    });
    let (st, v) = label(addr, "127.0.0.5/1", None);
    assert_eq!(st, 507, "{v}");
    assert_eq!(v["kind"], "no_space");
    let synced = v["finished"]["synced"].as_u64().unwrap();
    assert!((100..1790).contains(&synced), "{v}");
    let rec = get_json(addr, "/api/v1/record");
    assert_eq!(rec["last_error"]["kind"], "no_space");
    let m = svc.metrics().render();
    assert!(metric(&m, "aether_record_errors_total{kind=\"no_space\"}") >= 1.0);
    assert!(metric(&m, "aether_record_dropped_total{reason=\"write_failed\"}") >= 1.0);
    // What was synced is kept, as valid CSV with exactly those rows.
    let file = dir.path().join(v["finished"]["file"].as_str().unwrap());
    let text = std::fs::read_to_string(&file).unwrap();
    let (header, rows) = parse_csv(&text, "x").unwrap();
    assert_eq!(rows.len() as u64, synced * header.len() as u64);
    assert_eq!(
        rows,
        features_of(&frames)[10 * header.len()..(10 + synced as usize) * header.len()]
    );
    // The service still works: a new label on a full disk is refused with the error.
    let (st, v) = label(addr, "127.0.0.5/1", Some("circle"));
    assert!(st == 507 || st == 200, "{st} {v}");
    svc.shutdown();
}

#[test]
fn a_read_only_directory_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_m) = tmpfs(dir.path(), "size=64k,ro") else {
        return;
    };
    let err = aether_serve::Service::start(&model_bytes(Some(32), 3), record_cfg(dir.path()))
        .err()
        .expect("a read-only recording directory must be refused");
    let msg = err.to_string();
    assert!(
        msg.starts_with("recording: ") && msg.contains("Read-only"),
        "{msg}"
    );
}
