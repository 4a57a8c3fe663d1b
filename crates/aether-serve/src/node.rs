//! One node's state: its sequence trackers, streaming feature extractor, live stream,
//! latest result and a bounded history of per-frame results.

use std::net::{IpAddr, SocketAddr};

use crate::model::NodeStream;
use aether_data::features::FeatureStream;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::seq::SeqTracker;

/// A node: source address + the `node_id` byte of its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// Source IP address.
    pub addr: IpAddr,
    /// `node_id` from the packets.
    pub node_id: u8,
}

impl NodeKey {
    /// The id used by the API: `<addr>/<node_id>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.addr, self.node_id)
    }

    /// Parses `<addr>/<node_id>`.
    pub fn parse(id: &str) -> Option<Self> {
        let (a, n) = id.rsplit_once('/')?;
        Some(Self {
            addr: a.parse().ok()?,
            node_id: n.parse().ok()?,
        })
    }
}

/// A classification a node computed itself (`0xC5110007`).
#[derive(Debug, Clone, Serialize)]
pub struct NodeResult {
    /// Winning class index.
    pub argmax: u8,
    /// Its name when the node's class count matches the model's.
    pub class: Option<String>,
    /// Classes the node's model has.
    pub n_classes: u16,
    /// Logit of the winner.
    pub top_logit: f32,
    /// Margin to the second best.
    pub top1_minus_top2: f32,
    /// The packet's sequence number.
    pub seq: u32,
    /// The node's timestamp, µs.
    pub ts_us: u64,
    /// When it arrived, ms since the epoch.
    pub at_ms: u64,
}

/// Ring of the last `cap` per-frame results.
#[derive(Debug, Clone)]
pub struct History {
    cap: usize,
    classes: usize,
    head: usize,
    len: usize,
    probs: Vec<f32>,
    meta: Vec<(u64, u64, u32, u64, u64)>,
}

impl History {
    /// A ring of `cap` results of `classes` probabilities.
    pub fn new(cap: usize, classes: usize) -> Self {
        Self {
            cap,
            classes,
            head: 0,
            len: 0,
            probs: vec![0.0; cap * classes],
            meta: vec![(0, 0, 0, 0, 0); cap],
        }
    }

    /// Appends the result of node frame `frame` (stream position `pos`, sequence
    /// `seq`, at `at_ms`, by model generation `model`).
    pub fn push(&mut self, frame: u64, pos: u64, seq: u32, at_ms: u64, model: u64, probs: &[f32]) {
        if self.cap == 0 {
            return;
        }
        let slot = (self.head + self.len) % self.cap;
        self.probs[slot * self.classes..(slot + 1) * self.classes].copy_from_slice(probs);
        self.meta[slot] = (frame, pos, seq, at_ms, model);
        if self.len < self.cap {
            self.len += 1;
        } else {
            self.head = (self.head + 1) % self.cap;
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The last `n` results, oldest first, as JSON objects.
    pub fn json(&self, n: usize) -> Vec<Value> {
        let n = n.min(self.len);
        (self.len - n..self.len)
            .map(|i| {
                let s = (self.head + i) % self.cap;
                let (frame, pos, seq, at, model) = self.meta[s];
                serde_json::json!({
                    "frame": frame,
                    "position": pos,
                    "seq": seq,
                    "at_ms": at,
                    "model": model,
                    "probs": &self.probs[s * self.classes..(s + 1) * self.classes],
                })
            })
            .collect()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.probs.len() * 4 + self.meta.len() * 40
    }
}

/// A labelled segment being recorded from a node (`POST /api/v1/label`).
#[derive(Debug, Clone, Serialize)]
pub struct ActiveLabel {
    /// The recorder's segment id.
    #[serde(skip)]
    pub seg: u64,
    /// The class.
    pub class: String,
    /// The file, relative to the recording directory.
    pub file: String,
    /// When it started, ms since the epoch.
    pub started_ms: u64,
    /// Frames handed to the recorder.
    pub frames: u64,
    /// Frames the recorder's full queue refused.
    pub dropped: u64,
}

/// Raw-CSI state of a node.
#[derive(Debug)]
pub struct CsiState {
    /// The streaming extractor (its shape is the node's frame shape).
    pub fs: FeatureStream,
    /// Sequence numbers of raw CSI packets.
    pub seq: SeqTracker,
    /// A different shape seen in a row: `(antennas, subcarriers, count)`.
    pub pending_shape: Option<(u8, u16, u32)>,
}

/// Everything the service holds for one node.
#[derive(Debug)]
pub struct Node {
    /// The key.
    pub key: NodeKey,
    /// `<addr>/<node_id>`.
    pub id: String,
    /// Where its last packet came from (for `--reply`).
    pub src: SocketAddr,
    /// First packet, ms since the epoch.
    pub first_seen_ms: u64,
    /// Last accepted frame or packet, ms since the epoch.
    pub last_seen_ms: u64,
    /// Frames that reached the stream.
    pub frames: u64,
    /// Packets missing in gaps.
    pub lost: u64,
    /// Stream restarts.
    pub resets: u64,
    /// Packets of this node refused (bad content, duplicates, late).
    pub rejected: u64,
    /// Raw CSI state.
    pub csi: Option<CsiState>,
    /// Sequence numbers of feature-state packets (16 bits).
    pub fs_seq: SeqTracker,
    /// Sequence numbers of classification packets.
    pub cls_seq: SeqTracker,
    /// The live stream through the head.
    pub stream: Option<NodeStream>,
    /// Class probabilities after the last frame.
    pub probs: Vec<f32>,
    /// Class of the last frame.
    pub class: Option<usize>,
    /// The node's own last classification.
    pub node_result: Option<NodeResult>,
    /// Per-frame results.
    pub history: History,
    /// When an update was last published, ms.
    pub last_publish_ms: u64,
    /// Class in the last published update.
    pub published_class: Option<usize>,
    /// Whether the last sweep saw it stale.
    pub stale: bool,
    /// The labelled segment being recorded.
    pub label: Option<ActiveLabel>,
    /// When a state was last handed to MQTT, ms.
    pub mqtt_at_ms: u64,
    /// Class in the last state handed to MQTT.
    pub mqtt_class: Option<usize>,
    /// Rounded probability in the last state handed to MQTT.
    pub mqtt_pct: u8,
    /// Model generation of the node's stream.
    pub generation: u64,
    /// Gateway and worker bookkeeping (docs/scaling.md).
    pub cluster: crate::cluster::NodeCluster,
}

impl Node {
    /// A node first seen at `now_ms`.
    pub fn new(key: NodeKey, src: SocketAddr, now_ms: u64, classes: usize, history: usize) -> Self {
        Self {
            key,
            id: key.id(),
            src,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            frames: 0,
            lost: 0,
            resets: 0,
            rejected: 0,
            csi: None,
            fs_seq: SeqTracker::new(16),
            cls_seq: SeqTracker::new(32),
            stream: None,
            probs: vec![0.0; classes],
            class: None,
            node_result: None,
            history: History::new(history, classes),
            last_publish_ms: 0,
            published_class: None,
            stale: false,
            label: None,
            mqtt_at_ms: 0,
            mqtt_class: None,
            mqtt_pct: 0,
            generation: 0,
            cluster: crate::cluster::NodeCluster::default(),
        }
    }

    /// Restarts the stream and extractor (the next frame is position 0).
    pub fn reset_stream(&mut self) {
        if let Some(s) = &mut self.stream {
            s.reset();
        }
        if let Some(c) = &mut self.csi {
            c.fs.reset();
        }
    }

    /// Bytes of the node's state (streams, extractor, history, names).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.id.capacity()
            + self.stream.as_ref().map_or(0, NodeStream::bytes)
            + self.csi.as_ref().map_or(0, |c| c.fs.bytes())
            + self.history.bytes()
            + self.probs.capacity() * 4
    }

    /// `"live"` or `"stale"`.
    pub fn state(&self, now_ms: u64, stale_ms: u64) -> &'static str {
        if now_ms.saturating_sub(self.last_seen_ms) > stale_ms {
            "stale"
        } else {
            "live"
        }
    }

    /// The node as `GET /api/v1/nodes` shows it.
    pub fn view(&self, classes: &[String], now_ms: u64, stale_ms: u64) -> Value {
        let mut probs = Map::new();
        if self.class.is_some() {
            for (c, p) in classes.iter().zip(&self.probs) {
                probs.insert(c.clone(), Value::from(*p));
            }
        }
        let class = match (self.class, &self.node_result) {
            (Some(c), _) => Value::from(classes[c].clone()),
            (None, Some(r)) => r.class.clone().map_or(Value::Null, Value::from),
            _ => Value::Null,
        };
        let source = match (self.class, &self.node_result) {
            (Some(_), _) => "stream",
            (None, Some(_)) => "node",
            _ => "none",
        };
        serde_json::json!({
            "id": self.id,
            "addr": self.key.addr.to_string(),
            "node_id": self.key.node_id,
            "frames": self.frames,
            "class": class,
            "probs": probs,
            "last_seen_ms": self.last_seen_ms,
            "state": self.state(now_ms, stale_ms),
            "source": source,
            "context": self.stream.as_ref().map_or(0, NodeStream::context),
            "position": self.stream.as_ref().map_or(0, NodeStream::position),
            "lost": self.lost,
            "resets": self.resets,
            "rejected": self.rejected,
            "shape": self.csi.as_ref().map(|c| [c.fs.shape().0, c.fs.shape().1]),
            "node_result": self.node_result,
            "first_seen_ms": self.first_seen_ms,
            "bytes": self.bytes(),
            "label": self.label,
            "model_generation": self.generation,
            "partition": self.cluster.partition,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for id in ["127.0.0.1/7", "::1/255", "10.1.2.3/0"] {
            assert_eq!(NodeKey::parse(id).unwrap().id(), id);
        }
        for bad in ["127.0.0.1", "127.0.0.1/256", "x/1", "/1", "127.0.0.1/-1"] {
            assert!(NodeKey::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn history_keeps_the_last_results() {
        let mut h = History::new(3, 2);
        for i in 0..5u64 {
            h.push(i, i, i as u32, 100 + i, 0, &[i as f32, 1.0 - i as f32]);
        }
        let j = h.json(10);
        assert_eq!(j.len(), 3);
        assert_eq!(j[0]["frame"], 2);
        assert_eq!(j[2]["frame"], 4);
        assert_eq!(j[2]["probs"][0], 4.0);
        assert_eq!(h.json(1)[0]["frame"], 4);
        h.clear();
        assert!(h.json(5).is_empty());
        let mut z = History::new(0, 2);
        z.push(1, 1, 1, 1, 0, &[0.5, 0.5]);
        assert!(z.json(3).is_empty());
    }
}
