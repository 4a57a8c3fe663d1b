//! The HTTP side: JSON API, WebSocket live stream, Prometheus metrics and the embedded
//! dashboard (axum). Handlers are thin: node data comes from the shards over their
//! control channels, live updates from the [`Hub`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use crossbeam_channel::Sender;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot, watch};

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::LoadedModel;
use crate::node::NodeKey;
use crate::shard::Control;

/// Longest request URI accepted, bytes.
pub const MAX_URI: usize = 2048;

/// What the handlers share.
pub struct AppState {
    /// The model.
    pub model: Arc<LoadedModel>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Live updates.
    pub hub: Arc<Hub>,
    /// Control channel of every shard.
    pub shards: Vec<Sender<Control>>,
    /// Bearer token, if required.
    pub token: Option<String>,
    /// Largest request body, bytes.
    pub max_body: usize,
    /// History length per node.
    pub history: usize,
    /// Updates per node per second on the WebSocket.
    pub publish_hz: f64,
    /// Stale after, ms.
    pub stale_ms: u64,
    /// UDP address the service listens on.
    pub udp: String,
    /// Set while the service accepts traffic.
    pub ready: Arc<AtomicBool>,
    /// Flips to `true` at shutdown (WebSocket clients are told and closed).
    pub shutdown: watch::Receiver<bool>,
}

type St = State<Arc<AppState>>;

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": msg.into(), "status": status.as_u16()})),
    )
        .into_response()
}

/// The router with every route and the guard middleware.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{id}", get(node_by_id))
        .route("/api/v1/nodes/{addr}/{node_id}", get(node_by_parts))
        .route("/api/v1/model", get(model))
        .route("/api/v1/stream", get(stream))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Constant-time equality of two byte strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn token_of(req: &Request) -> Option<String> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        return v
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(str::to_string);
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .map(str::to_string)
    })
}

/// URI length, body size and bearer token checks; counts every refusal.
async fn guard(State(st): St, req: Request, next: Next) -> Response {
    st.metrics.http_requests.inc();
    if req.uri().to_string().len() > MAX_URI {
        st.metrics.http_rejected("uri_too_long");
        return error(
            StatusCode::URI_TOO_LONG,
            format!("URI longer than {MAX_URI} bytes"),
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.is_some_and(|n| n > st.max_body as u64) || chunked {
        st.metrics.http_rejected("too_large");
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are limited to {} bytes", st.max_body),
        );
    }
    let path = req.uri().path();
    let open = matches!(path, "/" | "/healthz" | "/readyz") || path.starts_with("/assets/");
    if let (Some(t), false) = (&st.token, open) {
        let ok = token_of(&req).is_some_and(|g| same(g.as_bytes(), t.as_bytes()));
        if !ok {
            st.metrics.http_rejected("unauthorized");
            let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    let r = next.run(req).await;
    if r.status() == StatusCode::METHOD_NOT_ALLOWED {
        st.metrics.http_rejected("method");
    }
    r
}

async fn not_found(State(st): St, req: Request) -> Response {
    st.metrics.http_rejected("not_found");
    error(
        StatusCode::NOT_FOUND,
        format!("no such path: {}", req.uri().path()),
    )
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("../assets/index.html"),
    )
        .into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../assets/app.js"),
    )
        .into_response()
}

async fn style_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../assets/style.css"),
    )
        .into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(st): St) -> Response {
    if st.ready.load(Ordering::SeqCst) {
        Json(json!({"status": "ready"})).into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(st): St) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// Asks every shard and gathers the answers (2 s timeout per shard).
async fn ask<T: Send + 'static>(
    st: &AppState,
    make: impl Fn(oneshot::Sender<T>) -> Control,
) -> Result<Vec<T>, Response> {
    let mut rx = Vec::with_capacity(st.shards.len());
    for s in &st.shards {
        let (tx, r) = oneshot::channel();
        if s.send(make(tx)).is_err() {
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"));
        }
        rx.push(r);
    }
    let mut out = Vec::with_capacity(rx.len());
    for r in rx {
        match tokio::time::timeout(Duration::from_secs(2), r).await {
            Ok(Ok(v)) => out.push(v),
            _ => {
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "a shard did not answer",
                ))
            }
        }
    }
    Ok(out)
}

async fn nodes(State(st): St) -> Response {
    match ask(&st, Control::List).await {
        Ok(parts) => {
            let mut all: Vec<Value> = parts.into_iter().flatten().collect();
            all.sort_by(|a, b| {
                let key = |v: &Value| NodeKey::parse(v["id"].as_str().unwrap_or_default());
                key(a).cmp(&key(b))
            });
            Json(json!({"count": all.len(), "nodes": all})).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    history: Option<usize>,
}

async fn node_by_parts(
    State(st): St,
    Path((addr, node_id)): Path<(String, String)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    one_node(&st, &format!("{addr}/{node_id}"), q.history).await
}

async fn node_by_id(
    State(st): St,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    one_node(&st, &id, q.history).await
}

async fn one_node(st: &AppState, id: &str, history: Option<usize>) -> Response {
    let Some(key) = NodeKey::parse(id) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a node id (<address>/<node_id 0-255>)"),
        );
    };
    let n = history.unwrap_or(64).min(st.history);
    match ask(st, |tx| Control::Get(key, n, tx)).await {
        Ok(parts) => match parts.into_iter().flatten().next() {
            Some(v) => Json(v).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no node {id}")),
        },
        Err(r) => r,
    }
}

/// The model's description (`GET /api/v1/model`).
pub fn model_json(m: &LoadedModel, udp: &str) -> Value {
    let c = m.head.config();
    let p = &c.pattern;
    let input = match m.input {
        crate::model::ModelInput::RawCsi { features, antennas } => json!({
            "kind": "raw_csi", "antennas": antennas, "bands": features.bands,
            "gain": features.gain, "motion_lags": features.motion,
        }),
        other => json!({"kind": other.name()}),
    };
    json!({
        "classes": m.classes,
        "features": m.features,
        "dims": {"features": c.features, "d_model": c.d_model, "layers": c.layers,
                 "q_heads": c.q_heads, "kv_heads": c.kv_heads, "head_dim": c.head_dim,
                 "classes": c.classes, "mlp_hidden": c.mlp_hidden},
        "pattern": {"window": p.window, "block_size": p.block_size, "global_tokens": p.global_tokens,
                    "causal": p.causal, "log_stride": p.log_stride, "landmarks": p.landmarks},
        "hash": m.sha256,
        "sha256": m.sha256,
        "version": m.version,
        "bytes": m.file_bytes,
        "input": input,
        "stream": {
            "horizon": m.stream.horizon, "capacity": m.stream.capacity,
            "eviction": format!("{:?}", m.stream.eviction),
            "kv": format!("{:?}", m.stream.kv).to_lowercase(),
        },
        "udp": udp,
    })
}

async fn model(State(st): St) -> Json<Value> {
    Json(model_json(&st.model, &st.udp))
}

async fn stream(State(st): St, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| ws_client(socket, st))
}

async fn ws_client(mut socket: WebSocket, st: Arc<AppState>) {
    st.metrics.ws_clients.inc();
    let mut rx = st.hub.subscribe();
    let mut shutdown = st.shutdown.clone();
    let hello = json!({
        "type": "hello",
        "classes": st.model.classes,
        "model": st.model.sha256,
        "publish_hz": st.publish_hz,
        "stale_ms": st.stale_ms,
    });
    let mut open = socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_ok();
    while open {
        tokio::select! {
            m = rx.recv() => match m {
                Ok(msg) => {
                    open = socket.send(Message::Text(msg.as_ref().into())).await.is_ok();
                    if open {
                        st.metrics.ws_messages.inc();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    st.metrics.ws_lagged.inc_by(n);
                    let note = json!({"type": "lagged", "missed": n});
                    open = socket.send(Message::Text(note.to_string().into())).await.is_ok();
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    let _ = socket
                        .send(Message::Text(json!({"type": "shutdown"}).to_string().into()))
                        .await;
                    let _ = socket
                        .send(Message::Close(Some(CloseFrame {
                            code: 1001,
                            reason: "server shutting down".into(),
                        })))
                        .await;
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    st.metrics.ws_clients.dec();
}
