//! The WebSocket live stream: a client that does not read loses old messages and is
//! told so, without slowing another client or ingestion; shutdown finishes every
//! received frame and tells clients before closing.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aether_serve::replay::{encode_recordings, run, ReplayConfig};
use aether_serve::ServeConfig;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects to the live stream; `small_buffer` shrinks the receive buffer so an unread
/// client backs up quickly.
async fn connect(addr: SocketAddr, small_buffer: bool) -> Ws {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if small_buffer {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    sock.connect(&addr.into()).unwrap();
    sock.set_nonblocking(true).unwrap();
    let tcp = tokio::net::TcpStream::from_std(sock.into()).unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/api/v1/stream"), tcp)
        .await
        .unwrap();
    ws
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    next_json_within(ws, 10).await
}

async fn next_json_within(ws: &mut Ws, secs: u64) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(secs), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[test]
fn a_client_that_does_not_read_lags_alone() {
    let model = model_bytes(Some(64), 8);
    let cfg = ServeConfig {
        ws_buffer: 2048,
        publish_hz: 1000.0,
        ..loopback_config()
    };
    let svc = start(&model, cfg);
    let http = svc.http_addr();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (fast_count, fast_lagged, slow_lagged, slow_total) = rt.block_on(async {
        let mut fast = connect(http, false).await;
        let mut slow = connect(http, true).await;
        assert_eq!(next_json(&mut fast).await.unwrap()["type"], "hello");
        assert_eq!(next_json(&mut slow).await.unwrap()["type"], "hello");
        let reader = tokio::spawn(async move {
            let (mut n, mut lag) = (0u64, 0u64);
            while let Some(m) = next_json_within(&mut fast, 2).await {
                match m["type"].as_str() {
                    Some("node") => n += 1,
                    Some("lagged") => lag += m["missed"].as_u64().unwrap(),
                    _ => {}
                }
                if n + lag >= 12_000 {
                    break;
                }
            }
            (n, lag)
        });
        let recs: Vec<_> = (0..4).map(|i| recording(i, i)).collect();
        let datagrams = encode_recordings(&recs).unwrap();
        let to = svc.udp_addr();
        let sent = tokio::task::spawn_blocking(move || {
            let cfg = ReplayConfig {
                to,
                nodes: 40,
                rate_hz: 300.0,
                ..ReplayConfig::default()
            };
            run(&datagrams, &cfg, &AtomicBool::new(false)).unwrap().sent
        })
        .await
        .unwrap();
        let (n, lag) = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("the fast client kept receiving")
            .unwrap();
        // Ingestion never waited for the slow client.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while svc.frames() < sent && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(svc.frames(), sent);
        // Now the slow client reads: it missed messages and was told.
        let (mut slow_lag, mut slow_n) = (0u64, 0u64);
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_millis(500), slow.next()).await
        {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                slow_n += 1;
                if v["type"] == "lagged" {
                    slow_lag += v["missed"].as_u64().unwrap();
                }
            }
        }
        let _ = slow.close(None).await;
        (n, lag, slow_lag, slow_n)
    });
    assert!(
        fast_count >= 9_000,
        "fast client got {fast_count} updates, lagged {fast_lagged}; slow lagged {slow_lagged}"
    );
    assert!(
        slow_lagged > 0,
        "the slow client was never told it lagged ({slow_total} messages)"
    );
    assert!(
        fast_lagged < slow_lagged,
        "fast {fast_lagged} vs slow {slow_lagged}"
    );
    let m = svc.metrics().render();
    let lagged = metric(&m, "aether_ws_lagged_messages_total");
    assert!(lagged >= slow_lagged as f64, "{lagged} < {slow_lagged}");
    drop(rt);
    svc.shutdown();
}

#[test]
fn shutdown_finishes_frames_and_tells_clients() {
    let model = model_bytes(Some(64), 9);
    let svc = start(&model, loopback_config());
    let http = svc.http_addr();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut ws = rt.block_on(connect(http, false));
    assert_eq!(rt.block_on(next_json(&mut ws)).unwrap()["type"], "hello");
    let rec = recording(1, 2);
    let s = UdpSocket::bind("127.0.0.2:0").unwrap();
    for (i, f) in rec.iter().enumerate() {
        let mut f = f.clone();
        f.seq = i as u32;
        s.send_to(&f.encode().unwrap(), svc.udp_addr()).unwrap();
    }
    let metrics = svc.metrics().clone();
    let stopper = std::thread::spawn(move || svc.shutdown());
    let (saw_shutdown, close_code) = rt.block_on(async {
        let mut saw = false;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    saw |= v["type"] == "shutdown";
                }
                Ok(Some(Ok(Message::Close(f)))) => return (saw, f.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => {}
                _ => return (saw, None),
            }
        }
    });
    stopper.join().unwrap();
    assert!(saw_shutdown);
    assert_eq!(close_code, Some(1001));
    assert_eq!(
        metrics.frames.get(),
        rec.len() as u64,
        "every received frame was processed"
    );
}
