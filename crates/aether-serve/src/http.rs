//! The HTTP side: JSON API, WebSocket live stream, Prometheus metrics and the embedded
//! dashboard (axum). Handlers are thin: node data comes from the shards over their
//! control channels, live updates from the [`Hub`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
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
use crate::node::{ActiveLabel, NodeKey};
use crate::record::{check_label, Recorder, WriteError, WriteErrorKind};
use crate::reload::{ModelSlot, Reloader};
use crate::shard::Control;

/// Longest request URI accepted, bytes.
pub const MAX_URI: usize = 2048;

/// What the handlers share.
pub struct AppState {
    /// The serving model.
    pub models: Arc<ModelSlot>,
    /// Hot reloads.
    pub reloader: Arc<Reloader>,
    /// The recorder (`--record`).
    pub recorder: Option<Arc<Recorder>>,
    /// Largest body of `POST /api/v1/model`, bytes.
    pub max_model_bytes: usize,
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
    /// The service's clock.
    pub clock: Arc<dyn crate::clock::Clock>,
}

impl AppState {
    fn clock_ms(&self) -> u64 {
        self.clock.now_ms()
    }
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
        .route("/api/v1/model", get(model).post(post_model))
        .route("/api/v1/label", axum::routing::post(post_label))
        .route("/api/v1/record", get(record_status))
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
    // Only the model upload may be large.
    let limit = if req.method() == Method::POST && req.uri().path() == "/api/v1/model" {
        st.max_model_bytes
    } else {
        st.max_body
    };
    if declared.is_some_and(|n| n > limit as u64) || chunked {
        st.metrics.http_rejected("too_large");
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request bodies are limited to {limit} bytes here"),
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
    let c = &m.meta.dims;
    let p = &m.meta.pattern;
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
        "dims": {"features": c.input_dim, "d_model": c.d_model, "layers": c.layers,
                 "q_heads": c.q_heads, "kv_heads": c.kv_heads, "head_dim": c.head_dim,
                 "classes": c.classes, "mlp_hidden": c.mlp_hidden},
        "precision": m.head.precision(),
        "pattern": {"window": p.window, "block_size": p.block_size, "global_tokens": p.globals(),
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
    let mut v = model_json(&st.models.get(), &st.udp);
    v["generation"] = Value::from(st.models.generation());
    Json(v)
}

/// Changes (reload, labels) need the bearer token when one is set (the guard checked
/// it), else a loopback client: without a token, nobody on the network may swap the
/// model or write to the disk, even with `--insecure`.
fn may_change(st: &AppState, peer: SocketAddr) -> Result<(), Response> {
    if st.token.is_some() || peer.ip().is_loopback() {
        return Ok(());
    }
    st.metrics.http_rejected("forbidden");
    Err(error(
        StatusCode::FORBIDDEN,
        "changes need --token (bearer) or a loopback client",
    ))
}

fn refuse(st: &AppState, status: StatusCode, reason: &'static str, msg: String) -> Response {
    st.metrics.http_rejected(reason);
    error(status, msg)
}

/// `POST /api/v1/model` with the `.rvne` bytes: validate fully, then swap.
async fn post_model(
    State(st): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if let Err(r) = may_change(&st, peer) {
        return r;
    }
    let body = match axum::body::to_bytes(req.into_body(), st.max_model_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                &st,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("models are limited to {} bytes", st.max_model_bytes),
            )
        }
    };
    if body.is_empty() {
        return refuse(
            &st,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send the .rvne file as the request body".into(),
        );
    }
    let rl = Arc::clone(&st.reloader);
    match tokio::task::spawn_blocking(move || rl.reload(&body)).await {
        Ok(Ok(r)) => {
            let mut v = model_json(&r.model, &st.udp);
            v["generation"] = Value::from(r.generation);
            v["previous"] = Value::from(r.previous);
            v["labels_ended"] = serde_json::to_value(&r.labels_ended).unwrap_or_default();
            Json(v).into_response()
        }
        Ok(Err(e)) => {
            st.metrics.http_rejected("invalid_model");
            let kind = match e {
                crate::ServeError::Model(_) => "model",
                crate::ServeError::Config(_) => "config",
                _ => "other",
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"error": e.to_string(), "kind": kind, "status": 422,
                            "serving": st.models.get().sha256})),
            )
                .into_response()
        }
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the reload task failed"),
    }
}

#[derive(Deserialize)]
struct LabelBody {
    node: String,
    #[serde(default)]
    class: Option<String>,
}

fn write_failed(st: &AppState, e: &WriteError, extra: Value) -> Response {
    st.metrics.http_rejected("record_failed");
    let status = match e.kind {
        WriteErrorKind::NoSpace => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut v = json!({"error": e.message, "kind": e.kind, "status": status.as_u16()});
    if let (Some(o), Value::Object(x)) = (v.as_object_mut(), extra) {
        o.extend(x);
    }
    (status, Json(v)).into_response()
}

async fn set_label(
    st: &AppState,
    key: NodeKey,
    label: Option<ActiveLabel>,
) -> Result<Option<Option<ActiveLabel>>, Response> {
    let mut out = None;
    for part in ask(st, |tx| Control::Label(key, label.clone(), tx)).await? {
        if part.is_some() {
            out = part;
        }
    }
    Ok(out)
}

/// `POST /api/v1/label {"node": "<id>", "class": "wave" | null}`: starts (or switches)
/// or stops a labelled segment of a node.
async fn post_label(
    State(st): St,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    if let Err(r) = may_change(&st, peer) {
        return r;
    }
    let Some(rec) = st.recorder.clone() else {
        return refuse(
            &st,
            StatusCode::CONFLICT,
            "conflict",
            "recording is off: start the service with --record DIR".into(),
        );
    };
    let b: LabelBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                &st,
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                "expected {{\"node\": \"<address>/<node_id>\", \"class\": \"<name>\" | null}}: {e}"
            ),
            )
        }
    };
    let Some(key) = NodeKey::parse(&b.node) else {
        return refuse(
            &st,
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{:?} is not a node id (<address>/<node_id 0-255>)", b.node),
        );
    };
    if let Some(c) = &b.class {
        if let Err(e) = check_label(c) {
            return refuse(&st, StatusCode::BAD_REQUEST, "bad_request", e);
        }
    }
    let id = key.id();
    let unknown = |st: &AppState| {
        refuse(
            st,
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no node {id}"),
        )
    };
    match b.class {
        Some(class) => {
            st.metrics.label("start");
            // The node must exist before a file is made for it.
            match ask(&st, |tx| Control::Get(key, 0, tx)).await {
                Ok(parts) if parts.iter().any(Option::is_some) => {}
                Ok(_) => return unknown(&st),
                Err(r) => return r,
            }
            let header = st.models.get().record_header();
            if header.is_empty() {
                return refuse(
                    &st,
                    StatusCode::CONFLICT,
                    "conflict",
                    "the model's inputs are not frames a node sends: nothing to record".into(),
                );
            }
            let (r2, c2) = (Arc::clone(&rec), class.clone());
            let opened = tokio::task::spawn_blocking(move || r2.open(&c2, &key, header)).await;
            let (seg, file) = match opened {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return write_failed(&st, &e, json!({"node": id})),
                Err(_) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the recording task failed",
                    )
                }
            };
            let label = ActiveLabel {
                seg,
                class: class.clone(),
                file: file.clone(),
                started_ms: st.clock_ms(),
                frames: 0,
                dropped: 0,
            };
            let before = match set_label(&st, key, Some(label)).await {
                Ok(Some(before)) => before,
                other => {
                    let r2 = Arc::clone(&rec);
                    let _ = tokio::task::spawn_blocking(move || r2.close(seg)).await;
                    return match other {
                        Err(r) => r,
                        _ => unknown(&st),
                    };
                }
            };
            let previous = match before {
                Some(p) => {
                    let r2 = Arc::clone(&rec);
                    tokio::task::spawn_blocking(move || r2.close(p.seg))
                        .await
                        .ok()
                        .flatten()
                }
                None => None,
            };
            tracing::info!(node = %id, %class, %file, "labelled segment started");
            Json(json!({"node": id, "class": class, "file": file, "previous": previous}))
                .into_response()
        }
        None => {
            st.metrics.label("stop");
            let before = match set_label(&st, key, None).await {
                Ok(Some(b)) => b,
                Ok(None) => return unknown(&st),
                Err(r) => return r,
            };
            let Some(l) = before else {
                return refuse(
                    &st,
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("no labelled segment is being recorded from {id}"),
                );
            };
            let r2 = Arc::clone(&rec);
            let seg = l.seg;
            let report = tokio::task::spawn_blocking(move || r2.close(seg))
                .await
                .ok()
                .flatten();
            let finished = json!({
                "file": l.file, "class": l.class, "frames": l.frames, "dropped": l.dropped,
                "written": report.as_ref().map(|r| r.frames),
                "synced": report.as_ref().map(|r| r.synced),
            });
            if let Some(e) = report.as_ref().and_then(|r| r.error.clone()) {
                return write_failed(&st, &e, json!({"node": id, "finished": finished}));
            }
            tracing::info!(node = %id, file = %l.file, frames = l.frames, "labelled segment finished");
            Json(json!({"node": id, "class": Value::Null, "finished": finished})).into_response()
        }
    }
}

async fn record_status(State(st): St) -> Json<Value> {
    Json(match &st.recorder {
        Some(r) => r.view(),
        None => json!({"enabled": false}),
    })
}

async fn stream(State(st): St, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| ws_client(socket, st))
}

async fn ws_client(mut socket: WebSocket, st: Arc<AppState>) {
    st.metrics.ws_clients.inc();
    let mut rx = st.hub.subscribe();
    let mut shutdown = st.shutdown.clone();
    let m = st.models.get();
    let hello = json!({
        "type": "hello",
        "classes": m.classes,
        "model": m.sha256,
        "recording": st.recorder.is_some(),
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
