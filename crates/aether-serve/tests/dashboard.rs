//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) loads the
//! page while a replay fleet runs; the DOM must show one tile per node with numbers
//! that change, then grey the tiles out when the nodes go stale. Driven over the Chrome
//! DevTools Protocol. Skipped (with a message) only when Chromium is not installed and
//! `AETHER_REQUIRE_BROWSER` is unset; CI sets it. `AETHER_SCREENSHOT=FILE` saves a PNG.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aether_serve::replay::{encode_recordings, run, ReplayConfig};
use aether_serve::ServeConfig;
use base64::Engine;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| {
            Command::new("which")
                .arg(b)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        })
}

struct Browser {
    child: Child,
    _dir: tempfile::TempDir,
    ws_url: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch(bin: &str) -> Browser {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1200,800",
        ])
        .arg(format!("--user-data-dir={}", dir.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting chromium");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let ws_url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("chromium printed its DevTools address");
    Browser {
        child,
        _dir: dir,
        ws_url,
    }
}

type Cdp =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One CDP call; returns its `result`.
async fn call(
    ws: &mut Cdp,
    id: &mut u64,
    session: Option<&str>,
    method: &str,
    params: Value,
) -> Value {
    *id += 1;
    let mut msg = json!({"id": *id, "method": method, "params": params});
    if let Some(s) = session {
        msg["sessionId"] = json!(s);
    }
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("CDP answer")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"] == json!(*id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }
}

const TILES: &str = r#"JSON.stringify([...document.querySelectorAll('[data-node]')].map(t => ({
  id: t.dataset.node,
  frames: Number(t.querySelector('.frames').textContent),
  cls: t.querySelector('.class').textContent,
  probs: [...t.querySelectorAll('.prob .value')].map(v => v.textContent).join(' '),
  stale: t.classList.contains('stale'),
})))"#;

async fn tiles(ws: &mut Cdp, id: &mut u64, s: &str) -> Vec<Value> {
    let r = call(
        ws,
        id,
        Some(s),
        "Runtime.evaluate",
        json!({"expression": TILES, "returnByValue": true}),
    )
    .await;
    serde_json::from_str(r["result"]["value"].as_str().unwrap_or("[]")).unwrap()
}

#[test]
fn dashboard_shows_a_live_fleet_in_chromium() {
    let Some(bin) = chromium() else {
        if std::env::var_os("AETHER_REQUIRE_BROWSER").is_some() {
            panic!("AETHER_REQUIRE_BROWSER is set but no chromium is installed");
        }
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    };
    let model = model_bytes(Some(64), 10);
    let cfg = ServeConfig {
        stale: Duration::from_secs(1),
        expire: Duration::from_secs(600),
        publish_hz: 20.0,
        ..loopback_config()
    };
    let svc = start(&model, cfg);
    let recs: Vec<_> = (0..6).map(|i| recording(i, 40 + i)).collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let fleet = {
        let stop = stop.clone();
        let cfg = ReplayConfig {
            to: svc.udp_addr(),
            nodes: 6,
            rate_hz: 50.0,
            looped: true,
            ..ReplayConfig::default()
        };
        std::thread::spawn(move || run(&datagrams, &cfg, &stop).unwrap())
    };
    let browser = launch(&bin);
    let url = format!("http://{}/", svc.http_addr());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let screenshot = std::env::var_os("AETHER_SCREENSHOT");
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(browser.ws_url.as_str()).await.unwrap();
        let mut id = 0;
        let t = call(&mut ws, &mut id, None, "Target.createTarget", json!({"url": url})).await;
        let target = t["targetId"].as_str().unwrap().to_string();
        let a = call(&mut ws, &mut id, None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await;
        let s = a["sessionId"].as_str().unwrap().to_string();
        // Wait for all six tiles with probabilities.
        let mut first = Vec::new();
        for _ in 0..100 {
            first = tiles(&mut ws, &mut id, &s).await;
            if first.len() == 6 && first.iter().all(|t| !t["probs"].as_str().unwrap().is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(first.len(), 6, "{first:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let second = tiles(&mut ws, &mut id, &s).await;
        assert_eq!(second.len(), 6);
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a["id"], b["id"]);
            assert!(b["frames"].as_u64() > a["frames"].as_u64(), "frames did not grow: {a} → {b}");
            assert!(!b["stale"].as_bool().unwrap());
        }
        assert!(
            first.iter().zip(&second).any(|(a, b)| a["probs"] != b["probs"]),
            "no probability changed"
        );
        let canvas = call(
            &mut ws,
            &mut id,
            Some(&s),
            "Runtime.evaluate",
            json!({"expression": "(() => { const c = document.querySelector('canvas.strip'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i+1] + d[i+2] > 0) n++; return n; })()", "returnByValue": true}),
        )
        .await;
        assert!(canvas["result"]["value"].as_u64().unwrap() > 100, "empty heat strip");
        if let Some(path) = &screenshot {
            let shot = call(&mut ws, &mut id, Some(&s), "Page.captureScreenshot", json!({"format": "png"})).await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().unwrap())
                .unwrap();
            std::fs::write(path, png).unwrap();
        }
        // Silence: every tile greys out.
        stop.store(true, Ordering::SeqCst);
        let mut stale = Vec::new();
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stale = tiles(&mut ws, &mut id, &s).await;
            if stale.iter().all(|t| t["stale"] == true) {
                break;
            }
        }
        assert!(stale.iter().all(|t| t["stale"] == true), "{stale:?}");
    });
    fleet.join().unwrap();
    drop(browser);
    svc.shutdown();
}

async fn eval(ws: &mut Cdp, id: &mut u64, s: &str, js: &str) -> Value {
    let r = call(
        ws,
        id,
        Some(s),
        "Runtime.evaluate",
        json!({"expression": js, "returnByValue": true}),
    )
    .await;
    r["result"]["value"].clone()
}

/// The label buttons: typing a class and pressing Record on a tile starts a labelled
/// segment of that node on the server, the tile shows it, Stop saves the file.
/// `AETHER_SCREENSHOT_LABEL=FILE` saves a PNG of the dashboard while recording.
#[test]
fn dashboard_label_buttons_record_a_node() {
    let Some(bin) = chromium() else {
        if std::env::var_os("AETHER_REQUIRE_BROWSER").is_some() {
            panic!("AETHER_REQUIRE_BROWSER is set but no chromium is installed");
        }
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium)");
        return;
    };
    let rec = tempfile::tempdir().unwrap();
    let cfg = ServeConfig {
        record: Some(aether_serve::record::RecordConfig::new(rec.path())),
        publish_hz: 10.0,
        ..loopback_config()
    };
    let svc = start(&model_bytes(Some(64), 10), cfg);
    let recs: Vec<_> = (0..4).map(|i| recording(i, 60 + i)).collect();
    let datagrams = encode_recordings(&recs).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let fleet = {
        let stop = stop.clone();
        let cfg = ReplayConfig {
            to: svc.udp_addr(),
            nodes: 4,
            rate_hz: 50.0,
            looped: true,
            ..ReplayConfig::default()
        };
        std::thread::spawn(move || run(&datagrams, &cfg, &stop).unwrap())
    };
    let browser = launch(&bin);
    let url = format!("http://{}/", svc.http_addr());
    let addr = svc.http_addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(browser.ws_url.as_str()).await.unwrap();
        let mut id = 0;
        let t = call(&mut ws, &mut id, None, "Target.createTarget", json!({"url": url})).await;
        let target = t["targetId"].as_str().unwrap().to_string();
        let a = call(&mut ws, &mut id, None, "Target.attachToTarget", json!({"targetId": target, "flatten": true})).await;
        let s = a["sessionId"].as_str().unwrap().to_string();
        let node = "127.0.0.2/1";
        let sel = format!("document.querySelector('[data-node=\"{node}\"]')");
        for _ in 0..100 {
            let ready = eval(&mut ws, &mut id, &s, &format!("!!{sel} && !{sel}.querySelector('form.label').hidden && document.querySelectorAll('[data-node]').length === 4")).await;
            if ready == json!(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eval(&mut ws, &mut id, &s, &format!("{sel}.querySelector('.lname').value = 'swipe'; {sel}.querySelector('.rec').click(); true")).await;
        let mut on = Value::Null;
        for _ in 0..100 {
            on = get_json(addr, &format!("/api/v1/nodes/{node}"))["label"].clone();
            if on["class"] == "swipe" && on["frames"].as_u64().unwrap_or(0) > 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(on["class"], "swipe", "{on}");
        let mut shown = Value::Null;
        for _ in 0..50 {
            shown = eval(&mut ws, &mut id, &s, &format!("{sel}.classList.contains('recording') && {sel}.querySelector('.rec').textContent")).await;
            if shown.as_str().is_some_and(|t| t.starts_with("■ Stop swipe")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(shown.as_str().is_some_and(|t| t.starts_with("■ Stop swipe")), "{shown}");
        if let Some(path) = std::env::var_os("AETHER_SCREENSHOT_LABEL") {
            let shot = call(&mut ws, &mut id, Some(&s), "Page.captureScreenshot", json!({"format": "png"})).await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().unwrap())
                .unwrap();
            std::fs::write(path, png).unwrap();
        }
        eval(&mut ws, &mut id, &s, &format!("{sel}.querySelector('.rec').click(); true")).await;
        let mut saved = Value::Null;
        for _ in 0..50 {
            saved = eval(&mut ws, &mut id, &s, &format!("{sel}.querySelector('.rec-state').textContent")).await;
            if saved.as_str().is_some_and(|t| t.starts_with("saved swipe/")) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = saved.as_str().unwrap_or_default().to_string();
        assert!(text.starts_with("saved swipe/127.0.0.2-n1_"), "{text}");
        let file = text.trim_start_matches("saved ").split(" (").next().unwrap();
        assert!(rec.path().join(file).is_file(), "{file}");
    });
    stop.store(true, Ordering::SeqCst);
    fleet.join().unwrap();
    drop(browser);
    svc.shutdown();
}
