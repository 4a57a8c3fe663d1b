//! MQTT with Home Assistant discovery (`--mqtt mqtt://HOST:PORT`).
//!
//! ```text
//! shards ──try_send (bounded, drops counted)──► MQTT task ──try_publish──► rumqttc (bounded
//!                                                   ▲                      request buffer)
//!                                   model swaps ────┘  heartbeat, HA birth, (re)connects
//! ```
//!
//! The shards never wait on MQTT: each node's results reach the MQTT task at most
//! `--mqtt-hz` times a second, and only when the class or the rounded probability
//! changed; a full queue drops the event (`aether_mqtt_dropped_total{reason="queue_full"}`).
//! The task publishes a node's JSON state only when it differs from the last one it
//! published, plus every `--heartbeat`. While the broker is unreachable, node states and
//! the announcement of a newly seen node wait for the connect, which publishes `online`,
//! every discovery config and every node's availability and state as they are then; the
//! client buffers up to [`MqttConfig::buffer`] other messages (events, availability
//! changes, removals; then drops and counts them) and reconnects with exponential
//! backoff up to [`MqttConfig::reconnect_max`].
//!
//! Topics (docs/home-assistant.md): `aether/<instance>/status` (retained `online`, last
//! will `offline`), `aether/<instance>/<node>/state` (retained JSON), `…/<node>/availability`
//! (retained `online` while the node is live, `offline` when stale or expired),
//! `…/<node>/event` (`{"event_type": …}` when a node enters an event class), discovery
//! under `homeassistant/<component>/<instance>_<node>/<object>/config` (retained).

pub mod discovery;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
#[cfg(test)]
use serde_json::Value;
use serde_json::{json, Map};
use tokio::sync::{mpsc, watch};

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::model::LoadedModel;
use crate::node::NodeKey;
use discovery::{node_slug, Entities, Topics};

/// MQTT settings.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// TLS (`mqtts://`).
    pub tls: bool,
    /// CA certificate (PEM) for TLS; the system roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// The instance id: MQTT client id and the stable part of every HA identifier.
    pub instance: String,
    /// HA discovery prefix.
    pub discovery_prefix: String,
    /// Prefix of the state topics.
    pub topic_prefix: String,
    /// Every node's state is published again this often even when unchanged.
    pub heartbeat: Duration,
    /// Most state updates per node per second.
    pub hz: f64,
    /// Remove a node's entities (empty retained configs) when it expires.
    pub forget_expired: bool,
    /// Node events the shards may have queued for the MQTT task.
    pub queue: usize,
    /// Messages buffered while the broker is unreachable.
    pub buffer: usize,
    /// Longest wait between reconnection attempts (starting at 0.5 s, doubling).
    pub reconnect_max: Duration,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
}

impl MqttConfig {
    /// Settings from a broker URL `mqtt://[user[:password]@]host[:port]` (port 1883) or
    /// `mqtts://…` (TLS, port 8883), with the defaults: heartbeat 60 s, 1 update/s per
    /// node, queue 4,096 events, buffer 10,000 messages, reconnect backoff ≤ 30 s.
    pub fn from_url(url: &str, instance: &str) -> Result<Self, ServeError> {
        let bad = |m: &str| ServeError::Config(format!("--mqtt {url:?}: {m}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(bad("must start with mqtt:// or mqtts://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') {
            return Err(bad("takes no path or query"));
        }
        let (creds, hostport) = match rest.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, rest),
        };
        let (username, password) = match creds {
            Some(c) => match c.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (Some(c.to_string()), None),
            },
            None => (None, None),
        };
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match p.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if p.is_empty() => default_port,
                None => return Err(bad("bad port")),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad("bad port"))?),
                None => (hostport.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(Self {
            host,
            port,
            tls,
            ca_file: None,
            username,
            password,
            instance: instance.to_string(),
            discovery_prefix: "homeassistant".into(),
            topic_prefix: "aether".into(),
            heartbeat: Duration::from_secs(60),
            hz: 1.0,
            forget_expired: false,
            queue: 4096,
            buffer: 10_000,
            reconnect_max: Duration::from_secs(30),
            keep_alive: Duration::from_secs(30),
        })
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ServeError> {
        let bad = |m: String| Err(ServeError::Config(m));
        if !(self.hz > 0.0 && self.hz <= 100.0) {
            return bad(format!("--mqtt-hz {} must be in (0, 100]", self.hz));
        }
        if self.heartbeat < Duration::from_secs(1) {
            return bad("--heartbeat must be at least 1 s".into());
        }
        if self.queue == 0 || self.buffer == 0 {
            return bad("MQTT queue and buffer must be positive".into());
        }
        for (what, t) in [
            ("--mqtt-discovery-prefix", &self.discovery_prefix),
            ("--mqtt-topic-prefix", &self.topic_prefix),
            ("the instance id", &self.instance),
        ] {
            if t.is_empty() || t.contains(['+', '#', '\0']) || t.starts_with('/') {
                return bad(format!("{what} {t:?} is not a usable MQTT topic part"));
            }
        }
        self.options().map(|_| ())
    }

    /// The client options: last will, credentials, TLS.
    pub fn options(&self) -> Result<MqttOptions, ServeError> {
        let topics = Topics::new(&self.discovery_prefix, &self.topic_prefix, &self.instance);
        let mut o = MqttOptions::new(&self.instance, &self.host, self.port);
        o.set_keep_alive(self.keep_alive.max(Duration::from_secs(1)));
        o.set_clean_session(true);
        o.set_max_packet_size(1 << 20, 1 << 20);
        o.set_last_will(LastWill::new(
            topics.status(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(u) = &self.username {
            o.set_credentials(u, self.password.clone().unwrap_or_default());
        }
        if self.tls {
            let tls = match &self.ca_file {
                Some(p) => TlsConfiguration::Simple {
                    ca: std::fs::read(p).map_err(|e| {
                        ServeError::Config(format!("--mqtt-ca {}: {e}", p.display()))
                    })?,
                    alpn: None,
                    client_auth: None,
                },
                None => {
                    let mut roots = rustls::RootCertStore::empty();
                    for c in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(c);
                    }
                    TlsConfiguration::Rustls(Arc::new(
                        rustls::ClientConfig::builder()
                            .with_root_certificates(roots)
                            .with_no_client_auth(),
                    ))
                }
            };
            o.set_transport(Transport::tls_with_config(tls));
        }
        Ok(o)
    }
}

/// What the shards tell the MQTT task.
#[derive(Debug)]
pub enum MqttEvent {
    /// A node's latest result.
    State {
        /// The node.
        key: NodeKey,
        /// The model that produced it (states of a replaced model are ignored).
        model: Arc<LoadedModel>,
        /// Winning class.
        class: usize,
        /// Class probabilities.
        probs: Vec<f32>,
    },
    /// A node turned live (`true`) or stale.
    Live {
        /// The node.
        key: NodeKey,
        /// Live?
        live: bool,
    },
    /// A node's state was dropped.
    Expired {
        /// The node.
        key: NodeKey,
    },
}

/// The shards' side: a bounded, never-blocking sender and the rate per node.
#[derive(Debug, Clone)]
pub struct MqttSink {
    tx: mpsc::Sender<MqttEvent>,
    dropped: Counter,
    /// Minimum ms between two states of a node.
    pub every_ms: u64,
}

impl MqttSink {
    /// Queues `ev`; false (and counted) when the queue is full.
    pub fn offer(&self, ev: MqttEvent) -> bool {
        if self.tx.try_send(ev).is_ok() {
            true
        } else {
            self.dropped.inc();
            false
        }
    }
}

/// Probability rounded to a percent: what decides whether a state changed.
pub fn percent(p: f32) -> u8 {
    (p.clamp(0.0, 1.0) * 100.0).round() as u8
}

/// The JSON state of a node.
pub fn state_json(classes: &[String], class: usize, probs: &[f32]) -> String {
    let r = |p: f32| f64::from(percent(p)) / 100.0;
    let mut m = Map::new();
    for (c, p) in classes.iter().zip(probs) {
        m.insert(c.clone(), json!(r(*p)));
    }
    json!({
        "class": classes.get(class),
        "probability": r(probs.get(class).copied().unwrap_or(0.0)),
        "probs": m,
    })
    .to_string()
}

struct NodePub {
    slug: String,
    state: Option<String>,
    class: Option<usize>,
    live: bool,
    announced: Vec<(&'static str, String)>,
}

struct Task {
    cfg: MqttConfig,
    topics: Topics,
    client: AsyncClient,
    model: Arc<LoadedModel>,
    entities: Entities,
    nodes: HashMap<NodeKey, NodePub>,
    metrics: Arc<Metrics>,
    sent: HashMap<&'static str, Counter>,
    client_full: Counter,
    connected: bool,
}

impl Task {
    fn publish(&self, kind: &'static str, topic: String, retain: bool, payload: Vec<u8>) {
        let qos = if kind == "state" || kind == "event" {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => self.sent[kind].inc(),
            Err(_) => self.client_full.inc(),
        };
    }

    fn announce_node(&mut self, key: NodeKey) {
        let Some(n) = self.nodes.get_mut(&key) else {
            return;
        };
        let list = self.entities.list();
        // Entities the current model no longer has are removed.
        let stale: Vec<(&'static str, String)> = n
            .announced
            .iter()
            .filter(|e| !list.contains(e))
            .cloned()
            .collect();
        n.announced = list.clone();
        let slug = n.slug.clone();
        let live = n.live;
        let state = n.state.clone();
        for (comp, obj) in stale {
            self.publish(
                "config",
                self.topics.config(comp, &slug, &obj),
                true,
                Vec::new(),
            );
        }
        for (comp, obj) in &list {
            let c = discovery::config(
                &self.topics,
                &self.entities,
                &key,
                comp,
                obj,
                &self.model.sha256,
            );
            self.publish(
                "config",
                self.topics.config(comp, &slug, obj),
                true,
                c.to_string().into_bytes(),
            );
        }
        self.publish(
            "availability",
            self.topics.availability(&slug),
            true,
            if live { "online" } else { "offline" }.into(),
        );
        if let Some(s) = state {
            self.publish("state", self.topics.state(&slug), true, s.into_bytes());
        }
    }

    fn announce_all(&mut self, cause: &'static str) {
        self.metrics.mqtt_announce(cause);
        self.publish("status", self.topics.status(), true, "online".into());
        let keys: Vec<NodeKey> = self.nodes.keys().copied().collect();
        for k in keys {
            self.announce_node(k);
        }
    }

    fn event(&mut self, ev: MqttEvent) {
        match ev {
            MqttEvent::State {
                key,
                model,
                class,
                probs,
            } => {
                if !Arc::ptr_eq(&model, &self.model) {
                    return;
                }
                let new = !self.nodes.contains_key(&key);
                let n = self.nodes.entry(key).or_insert_with(|| NodePub {
                    slug: node_slug(&key),
                    state: None,
                    class: None,
                    live: true,
                    announced: Vec::new(),
                });
                let was_live = n.live;
                n.live = true;
                let entered = n.class != Some(class);
                n.class = Some(class);
                let s = state_json(&self.model.classes, class, &probs);
                let changed = n.state.as_deref() != Some(s.as_str());
                n.state = Some(s.clone());
                let slug = n.slug.clone();
                if !self.connected {
                    // `announce_all` on the (re)connect publishes the node as it is
                    // then; a publish now would be queued and reach the broker twice.
                } else if new {
                    self.announce_node(key);
                } else {
                    if !was_live {
                        self.publish(
                            "availability",
                            self.topics.availability(&slug),
                            true,
                            "online".into(),
                        );
                    }
                    if changed {
                        self.publish("state", self.topics.state(&slug), true, s.into_bytes());
                    }
                }
                if entered && self.entities.events.contains(&class) {
                    let e = json!({"event_type": self.model.classes[class]}).to_string();
                    self.publish("event", self.topics.event(&slug), false, e.into_bytes());
                }
            }
            MqttEvent::Live { key, live } => {
                if let Some(n) = self.nodes.get_mut(&key) {
                    if n.live != live {
                        n.live = live;
                        let t = self.topics.availability(&n.slug);
                        self.publish(
                            "availability",
                            t,
                            true,
                            if live { "online" } else { "offline" }.into(),
                        );
                    }
                }
            }
            MqttEvent::Expired { key } => {
                let forget = self.cfg.forget_expired;
                let Some(n) = self.nodes.get_mut(&key) else {
                    return;
                };
                n.live = false;
                let slug = n.slug.clone();
                if forget {
                    let n = self.nodes.remove(&key).expect("present");
                    for (comp, obj) in &n.announced {
                        self.publish(
                            "config",
                            self.topics.config(comp, &slug, obj),
                            true,
                            Vec::new(),
                        );
                    }
                    self.publish("state", self.topics.state(&slug), true, Vec::new());
                    self.publish(
                        "availability",
                        self.topics.availability(&slug),
                        true,
                        Vec::new(),
                    );
                } else {
                    self.publish(
                        "availability",
                        self.topics.availability(&slug),
                        true,
                        "offline".into(),
                    );
                }
            }
        }
    }

    fn heartbeat(&self) {
        if !self.connected {
            return;
        }
        self.publish("status", self.topics.status(), true, "online".into());
        for n in self.nodes.values() {
            self.publish(
                "availability",
                self.topics.availability(&n.slug),
                true,
                if n.live { "online" } else { "offline" }.into(),
            );
            if let Some(s) = &n.state {
                self.publish(
                    "state",
                    self.topics.state(&n.slug),
                    true,
                    s.clone().into_bytes(),
                );
            }
        }
    }

    fn swap_model(&mut self, m: Arc<LoadedModel>) {
        self.entities = Entities::of(&m.classes);
        self.model = m;
        for n in self.nodes.values_mut() {
            // The old classes mean nothing to the new model.
            n.class = None;
        }
        if self.connected {
            self.announce_all("model");
        }
    }
}

enum Note {
    Connected,
    Birth,
    Lost(String),
}

/// A running MQTT task.
pub struct Mqtt {
    /// The shards' sender.
    pub sink: MqttSink,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Mqtt {
    /// Starts the MQTT task on `rt`; the first connection is made in the background
    /// (the service runs whether or not the broker is up).
    pub fn start(
        rt: &tokio::runtime::Runtime,
        cfg: MqttConfig,
        models: watch::Receiver<Arc<LoadedModel>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ServeError> {
        cfg.validate()?;
        let opts = cfg.options()?;
        let topics = Topics::new(&cfg.discovery_prefix, &cfg.topic_prefix, &cfg.instance);
        let _g = rt.enter();
        let (client, mut el) = AsyncClient::new(opts, cfg.buffer);
        let (tx, mut rx) = mpsc::channel(cfg.queue);
        let (note_tx, mut notes) = mpsc::unbounded_channel();
        let ha_status = topics.ha_status();
        let reconnect_max = cfg.reconnect_max;
        let errors = metrics.mqtt_errors.clone();
        // The event loop: connects, reconnects with backoff, forwards what matters.
        let el_task = rt.spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(500);
                        if note_tx.send(Note::Connected).is_err() {
                            break;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if p.topic == ha_status && &p.payload[..] == b"online" {
                            let _ = note_tx.send(Note::Birth);
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(e) => {
                        errors.inc();
                        if note_tx.send(Note::Lost(e.to_string())).is_err() {
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(reconnect_max);
                    }
                }
            }
        });
        let model = models.borrow().clone();
        let mut task = Task {
            entities: Entities::of(&model.classes),
            model,
            topics,
            client,
            nodes: HashMap::new(),
            sent: ["config", "state", "availability", "event", "status"]
                .into_iter()
                .map(|k| (k, metrics.mqtt_message(k)))
                .collect(),
            client_full: metrics.mqtt_dropped("client_full"),
            metrics: Arc::clone(&metrics),
            connected: false,
            cfg: cfg.clone(),
        };
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
        let mut models = models;
        let heartbeat = cfg.heartbeat;
        let done = rt.spawn(async move {
            let mut tick = tokio::time::interval(heartbeat);
            tick.tick().await;
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(ev) => task.event(ev),
                        None => break,
                    },
                    n = notes.recv() => match n {
                        Some(Note::Connected) => {
                            task.connected = true;
                            task.metrics.mqtt_connected.set(1);
                            task.metrics.mqtt_connects.inc();
                            tracing::info!(broker = %format!("{}:{}", task.cfg.host, task.cfg.port), "MQTT connected");
                            let _ = task.client.try_subscribe(task.topics.ha_status(), QoS::AtLeastOnce);
                            task.announce_all("connect");
                        }
                        Some(Note::Birth) => {
                            tracing::info!("Home Assistant came online: announcing again");
                            task.announce_all("birth");
                        }
                        Some(Note::Lost(e)) => {
                            if task.connected {
                                tracing::warn!(error = %e, "MQTT connection lost; reconnecting with backoff");
                            }
                            task.connected = false;
                            task.metrics.mqtt_connected.set(0);
                        }
                        None => break,
                    },
                    r = models.changed() => {
                        if r.is_ok() {
                            let m = models.borrow_and_update().clone();
                            task.swap_model(m);
                        }
                    }
                    _ = tick.tick() => task.heartbeat(),
                    _ = &mut stop_rx => break,
                }
            }
            // A clean stop: `offline` (HA shows every entity unavailable), then DISCONNECT
            // (so the broker does not also send the last will).
            if task.connected {
                task.publish("status", task.topics.status(), true, "offline".into());
                let _ = task.client.try_disconnect();
                let _ = tokio::time::timeout(Duration::from_secs(2), el_task).await;
            } else {
                el_task.abort();
            }
            task.metrics.mqtt_connected.set(0);
        });
        Ok(Self {
            sink: MqttSink {
                tx,
                dropped: metrics.mqtt_dropped("queue_full"),
                every_ms: (1000.0 / cfg.hz).round() as u64,
            },
            stop: Some(stop_tx),
            done: Some(done),
        })
    }

    /// Publishes `offline`, disconnects and waits (at most a few seconds).
    pub fn stop(&mut self, rt: &tokio::runtime::Runtime) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), d).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let c = MqttConfig::from_url("mqtt://127.0.0.1:1884", "i").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.tls), ("127.0.0.1", 1884, false));
        let c = MqttConfig::from_url("mqtts://u:p%@broker.lan", "i").unwrap();
        assert_eq!((c.host.as_str(), c.port, c.tls), ("broker.lan", 8883, true));
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p%"));
        let c = MqttConfig::from_url("mqtt://[::1]:1999/", "i").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 1999));
        for bad in [
            "tcp://h",
            "mqtt://",
            "mqtt://h:x",
            "mqtt://h:0",
            "mqtt://h/topic",
            "mqtt://[::1",
        ] {
            assert!(MqttConfig::from_url(bad, "i").is_err(), "{bad}");
        }
        let mut c = MqttConfig::from_url("mqtt://h", "i").unwrap();
        assert!(c.validate().is_ok());
        c.hz = 0.0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn states_round_to_percent() {
        let classes: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
        let s: Value = serde_json::from_str(&state_json(&classes, 1, &[0.123, 0.877])).unwrap();
        assert_eq!(s["class"], "b");
        assert_eq!(s["probability"], 0.88);
        assert_eq!(s["probs"]["a"], 0.12);
        assert_eq!(percent(0.994), 99);
    }
}
