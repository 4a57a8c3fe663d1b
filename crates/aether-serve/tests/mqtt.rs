//! MQTT and Home Assistant discovery against a real Mosquitto broker (started by the
//! test on an ephemeral port): discovery payloads (retained, `unique_id`,
//! `device.identifiers`, availability), only the entities the model can feed, states
//! on change and rate-limited, HA's birth message, a broker restart (the service keeps
//! classifying, reconnects and announces again), a hot reload changing the entities,
//! stale / expired nodes and `--forget-expired`. Skipped with a message only when
//! Mosquitto is missing and `AETHER_REQUIRE_MQTT` is unset.

mod common;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_serve::mqtt::MqttConfig;
use aether_serve::replay::{encode_recordings, run, ReplayConfig};
use aether_serve::{ManualClock, ServeConfig, Service};
use common::broker::{Broker, Msg, Sub};
use common::*;
use serde_json::Value;

const INST: &str = "test-inst";
const PRESENCE: [&str; 3] = ["empty", "present", "fall"];

fn mqtt_cfg(b: &Broker, hz: f64) -> MqttConfig {
    let mut m = MqttConfig::from_url(&b.url(), INST).unwrap();
    m.hz = hz;
    m.reconnect_max = Duration::from_millis(500);
    m.keep_alive = Duration::from_secs(5);
    m
}

fn json(m: &Msg) -> Value {
    serde_json::from_str(&m.payload).unwrap_or_else(|e| panic!("{}: {e}: {}", m.topic, m.payload))
}

fn configs(msgs: &[Msg]) -> Vec<&Msg> {
    msgs.iter()
        .filter(|m| m.topic.starts_with("homeassistant/") && m.topic.ends_with("/config"))
        .collect()
}

/// The node slugs of the replay fleet's first `n` nodes.
fn slugs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("127_0_0_2_n{i}")).collect()
}

fn replay(svc: &Service, nodes: usize, rate: f64, secs: f64) -> u64 {
    let recs = vec![recording(0, 1), recording(1, 2)];
    let cfg = ReplayConfig {
        to: svc.udp_addr(),
        nodes,
        rate_hz: rate,
        looped: true,
        duration: Some(Duration::from_secs_f64(secs)),
        ..ReplayConfig::default()
    };
    let d = encode_recordings(&recs).unwrap();
    run(&d, &cfg, &AtomicBool::new(false)).unwrap().sent
}

#[test]
fn discovery_states_rate_limits_birth_restart_and_reload() {
    let Some(mut broker) = Broker::start() else {
        return;
    };
    let sub = Sub::new(broker.port, "watcher", &["homeassistant/#", "aether/#"]);
    let model = model_bytes_named(&PRESENCE, Some(32), 5);
    let hz = 2.0;
    let svc = Service::start(
        &model,
        ServeConfig {
            mqtt: Some(mqtt_cfg(&broker, hz)),
            ..loopback_config()
        },
    )
    .unwrap();
    let status = format!("aether/{INST}/status");
    sub.wait(10, "online", |m| {
        m.iter().any(|m| m.topic == status && m.payload == "online")
    });

    // Two nodes at 200 frames/s for 1.5 s: every frame is classified, MQTT gets ≤ hz/s.
    let t0 = Instant::now();
    let sent = replay(&svc, 2, 200.0, 1.5);
    wait_until(20, "every frame processed", || svc.frames() == sent);
    std::thread::sleep(Duration::from_millis(700));
    let elapsed = t0.elapsed().as_secs_f64();
    let msgs = sub.all();
    let cfgs = configs(&msgs);
    for node in slugs(2) {
        let mine: Vec<&&Msg> = cfgs.iter().filter(|m| m.topic.contains(&node)).collect();
        let topics: BTreeSet<String> = mine.iter().map(|m| m.topic.clone()).collect();
        let want: BTreeSet<String> = [
            format!("homeassistant/sensor/test_inst_{node}/class/config"),
            format!("homeassistant/sensor/test_inst_{node}/probability/config"),
            format!("homeassistant/binary_sensor/test_inst_{node}/present/config"),
            format!("homeassistant/event/test_inst_{node}/activity/config"),
        ]
        .into();
        // Nothing for what the model cannot produce: no binary sensor for `empty` or `fall`.
        assert_eq!(topics, want, "{node}");
        for m in &mine {
            let c = json(m);
            assert!(c["unique_id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("aether_test_inst_{node}_")));
            assert_eq!(
                c["device"]["identifiers"][0],
                format!("aether_test_inst_{node}")
            );
            assert_eq!(c["availability"][0]["topic"], status);
            assert_eq!(
                c["availability"][1]["topic"],
                format!("aether/{INST}/{node}/availability")
            );
            assert_eq!(c["availability_mode"], "all");
            assert_eq!(c["origin"]["name"], "aether-temporal");
        }
        let class = mine
            .iter()
            .find(|m| m.topic.contains("/class/"))
            .map(|m| json(m))
            .unwrap();
        assert_eq!(class["options"], serde_json::json!(PRESENCE));
        let event = mine
            .iter()
            .find(|m| m.topic.contains("/event/"))
            .map(|m| json(m))
            .unwrap();
        assert_eq!(event["event_types"], serde_json::json!(["fall"]));
        let bin = mine
            .iter()
            .find(|m| m.topic.contains("binary_sensor"))
            .map(|m| json(m))
            .unwrap();
        assert_eq!(bin["device_class"], "presence");
        // States: valid, changed each time, at most `hz` per second (+1 for the first).
        let states: Vec<Msg> = msgs
            .iter()
            .filter(|m| m.topic == format!("aether/{INST}/{node}/state"))
            .cloned()
            .collect();
        assert!(!states.is_empty(), "{node}: no state");
        let max = (hz * elapsed).ceil() as usize + 1;
        assert!(
            states.len() <= max,
            "{node}: {} states in {elapsed:.2} s (max {max})",
            states.len()
        );
        for w in states.windows(2) {
            assert_ne!(
                w[0].payload, w[1].payload,
                "{node}: an unchanged state was sent again"
            );
        }
        for s in &states {
            let v = json(s);
            assert!(PRESENCE.contains(&v["class"].as_str().unwrap()), "{v}");
            let p = v["probability"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
        }
        assert_eq!(
            sub.last(&format!("aether/{INST}/{node}/availability"))
                .as_deref(),
            Some("online")
        );
    }
    let m = svc.metrics().render();
    assert_eq!(metric(&m, "aether_mqtt_connected"), 1.0);
    assert!(metric(&m, "aether_mqtt_messages_total{kind=\"config\"}") >= 8.0);
    assert_eq!(
        metric(&m, "aether_mqtt_dropped_total{reason=\"queue_full\"}"),
        0.0
    );

    // A fresh subscriber gets every config retained.
    let late = Sub::new(broker.port, "late", &["homeassistant/#"]);
    late.wait(5, "retained configs", |m| configs(m).len() >= 8);
    assert!(configs(&late.all()).iter().all(|m| m.retain));

    // Home Assistant's birth message: everything announced again.
    let before = configs(&sub.all()).len();
    sub.publish("homeassistant/status", "online", false);
    sub.wait(5, "re-announcement", |m| configs(m).len() >= before + 8);
    wait_until(5, "birth counted", || {
        metric(
            &svc.metrics().render(),
            "aether_mqtt_announcements_total{reason=\"birth\"}",
        ) == 1.0
    });

    // Broker restart: the service keeps classifying while it is down, reconnects with
    // backoff and announces again (the new broker kept nothing: persistence is off).
    broker.kill();
    let frames = svc.frames();
    let sent = replay(&svc, 2, 100.0, 0.5);
    wait_until(10, "frames while the broker is down", || {
        svc.frames() == frames + sent
    });
    broker.restart();
    wait_until(15, "reconnected", || {
        metric(&svc.metrics().render(), "aether_mqtt_connects_total") >= 2.0
    });
    let after = Sub::new(broker.port, "after", &["homeassistant/#", "aether/#"]);
    after.wait(10, "announced again", |m| {
        configs(m).len() >= 8 && m.iter().any(|m| m.topic == status && m.payload == "online")
    });

    // A hot reload to a model without presence classes: the binary sensor and the event
    // are removed (empty retained configs), the class sensor gets the new options.
    let gestures = model_bytes_named(&["circle", "push", "swipe"], Some(32), 6);
    svc.reload(&gestures).unwrap();
    let node = &slugs(1)[0];
    let bin_topic = format!("homeassistant/binary_sensor/test_inst_{node}/present/config");
    after.wait(10, "binary sensor removed", |m| {
        m.iter()
            .any(|m| m.topic == bin_topic && m.payload.is_empty())
    });
    let class_topic = format!("homeassistant/sensor/test_inst_{node}/class/config");
    after.wait(10, "new options", |m| {
        m.iter()
            .any(|m| m.topic == class_topic && m.payload.contains("\"swipe\""))
    });
    let ev_topic = format!("homeassistant/event/test_inst_{node}/activity/config");
    after.wait(10, "event types of gestures", |m| {
        m.iter()
            .any(|m| m.topic == ev_topic && m.payload.contains("\"circle\""))
    });
    svc.shutdown();
    // A clean stop says offline.
    after.wait(5, "offline on shutdown", |m| {
        m.iter()
            .rev()
            .find(|m| m.topic == status)
            .is_some_and(|m| m.payload == "offline")
    });
}

#[test]
fn stale_and_expired_nodes_go_offline_and_are_forgotten() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let sub = Sub::new(broker.port, "watcher2", &["homeassistant/#", "aether/#"]);
    let clock = Arc::new(ManualClock::new(5_000_000));
    let mut m = mqtt_cfg(&broker, 1.0);
    m.forget_expired = true;
    let svc = Service::start(
        &model_bytes(Some(32), 3),
        ServeConfig {
            mqtt: Some(m),
            clock: clock.clone(),
            stale: Duration::from_secs(5),
            expire: Duration::from_secs(30),
            ..loopback_config()
        },
    )
    .unwrap();
    let s = UdpSocket::bind("127.0.0.9:0").unwrap();
    let frames = recording(0, 4);
    // With the clock standing still, only the first state goes out: the rate limit holds.
    send_frames(&s, svc.udp_addr(), 3, &frames[..60], 0..);
    wait_until(10, "frames", || svc.frames() == 60);
    let node = "127_0_0_9_n3";
    let state = format!("aether/{INST}/{node}/state");
    sub.wait(10, "first state", |m| m.iter().any(|m| m.topic == state));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sub.on(&state).len(), 1);
    // Stale: the node's availability goes offline.
    clock.advance(6_000);
    svc.sweep_now();
    let avail = format!("aether/{INST}/{node}/availability");
    sub.wait(5, "offline when stale", |_| {
        sub.last(&avail).as_deref() == Some("offline")
    });
    // Frames again: online.
    send_frames(&s, svc.udp_addr(), 3, &frames[60..70], 60..);
    sub.wait(5, "online again", |_| {
        sub.last(&avail).as_deref() == Some("online")
    });
    // Expired with --forget-expired: every config of the node emptied (retained).
    clock.advance(31_000);
    svc.sweep_now();
    sub.wait(5, "configs removed", |m| {
        configs(m)
            .iter()
            .filter(|c| c.topic.contains(node) && c.payload.is_empty())
            .count()
            >= 3
    });
    let late = Sub::new(broker.port, "late2", &["homeassistant/#"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        configs(&late.all()).iter().all(|c| !c.topic.contains(node)),
        "retained configs left"
    );
    svc.shutdown();
}
