//! Home Assistant MQTT discovery: which entities a model can feed, their topics and
//! their config payloads (docs/home-assistant.md shows examples).
//!
//! Per node, one HA *device* (`identifiers: ["aether_<instance>_<node slug>"]`) with:
//! - `sensor` **class**: the current class (`device_class: enum`, `options` = the model's
//!   classes), every class probability as attributes;
//! - `sensor` **probability**: the winning class's probability, %, rate-limited;
//! - `binary_sensor` per presence/motion/occupancy class (only when the model has one and
//!   at least one other class to be `off`);
//! - `event` **activity**: `event_types` = the model's event-like classes (fall, gestures),
//!   fired when a node enters one of them (only when the model has any).
//!
//! Nothing is announced for a class the model cannot produce.

use serde_json::{json, Value};

use crate::node::NodeKey;

/// Words that make a class a presence / motion / occupancy state: `(word, device_class)`.
const BINARY_WORDS: [(&str, &str); 10] = [
    ("presence", "presence"),
    ("present", "presence"),
    ("person", "presence"),
    ("people", "presence"),
    ("human", "presence"),
    ("occupied", "occupancy"),
    ("occupancy", "occupancy"),
    ("motion", "motion"),
    ("moving", "motion"),
    ("movement", "motion"),
];

/// Leading words that negate a state class (`no_motion`, `not_present`, `empty`).
const NEGATIONS: [&str; 8] = [
    "no", "not", "non", "none", "empty", "absent", "vacant", "idle",
];

/// Words of event-like classes: falls and gestures.
const EVENT_WORDS: [&str; 21] = [
    "fall", "fell", "sit", "stand", "wave", "swipe", "push", "pull", "circle", "clap", "tap",
    "knock", "kick", "punch", "jump", "gesture", "flick", "pinch", "zoom", "slide", "draw",
];

fn words(class: &str) -> Vec<String> {
    class
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The HA `device_class` of a binary state class (`present` → `presence`), or `None`
/// when the class is not one (or is negated: `no_motion`, `empty`).
pub fn binary_class(class: &str) -> Option<&'static str> {
    let w = words(class);
    if w.first().is_some_and(|f| NEGATIONS.contains(&f.as_str())) {
        return None;
    }
    w.iter()
        .find_map(|x| BINARY_WORDS.iter().find(|(k, _)| k == x).map(|(_, d)| *d))
}

/// Whether a class names an event (a fall, a gesture) rather than a lasting state.
pub fn is_event(class: &str) -> bool {
    words(class)
        .iter()
        .any(|w| EVENT_WORDS.contains(&w.as_str()))
}

/// What a model can feed: class names and which of them are binary states or events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entities {
    /// Every class, in index order.
    pub classes: Vec<String>,
    /// `(class index, device_class)` of each presence/motion/occupancy class.
    pub binary: Vec<(usize, &'static str)>,
    /// Indices of the event-like classes.
    pub events: Vec<usize>,
}

impl Entities {
    /// The entities of a model with `classes`.
    pub fn of(classes: &[String]) -> Self {
        let mut binary: Vec<(usize, &'static str)> = classes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| binary_class(c).map(|d| (i, d)))
            .collect();
        // A binary sensor needs a class in which it is off.
        if binary.len() == classes.len() {
            binary.clear();
        }
        let events = (0..classes.len())
            .filter(|&i| is_event(&classes[i]))
            .collect();
        Self {
            classes: classes.to_vec(),
            binary,
            events,
        }
    }

    /// `(component, object id)` of every entity of a node, in announcement order.
    pub fn list(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("sensor", "class".to_string()),
            ("sensor", "probability".to_string()),
        ];
        for (i, _) in &self.binary {
            v.push(("binary_sensor", slug(&self.classes[*i])));
        }
        if !self.events.is_empty() {
            v.push(("event", "activity".to_string()));
        }
        v
    }
}

/// `[a-z0-9_]` form of a name (HA topic and id segments).
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let t = out.trim_matches('_');
    if t.is_empty() {
        "x".into()
    } else {
        t.to_string()
    }
}

/// The slug of a node: `127.0.0.2/5` → `127_0_0_2_n5`, `::1/0` → `1_n0`.
pub fn node_slug(key: &NodeKey) -> String {
    format!("{}_n{}", slug(&key.addr.to_string()), key.node_id)
}

/// The topics of one service instance.
#[derive(Debug, Clone)]
pub struct Topics {
    /// HA discovery prefix (`homeassistant`).
    pub discovery: String,
    /// Base of the state topics (`aether/<instance>`).
    pub base: String,
    /// The instance id (also the MQTT client id).
    pub instance: String,
}

impl Topics {
    /// Topics under `prefix/<instance>` with discovery under `discovery`.
    pub fn new(discovery: &str, prefix: &str, instance: &str) -> Self {
        Self {
            discovery: discovery.to_string(),
            base: format!("{prefix}/{instance}"),
            instance: instance.to_string(),
        }
    }

    /// The service's availability topic (`online`, last will `offline`).
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// HA's birth / last-will topic.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery)
    }

    /// A node's JSON state topic.
    pub fn state(&self, node: &str) -> String {
        format!("{}/{node}/state", self.base)
    }

    /// A node's availability (`online` while live, `offline` when stale or expired).
    pub fn availability(&self, node: &str) -> String {
        format!("{}/{node}/availability", self.base)
    }

    /// A node's event topic (not retained).
    pub fn event(&self, node: &str) -> String {
        format!("{}/{node}/event", self.base)
    }

    /// The discovery config topic of one entity.
    pub fn config(&self, component: &str, node: &str, object: &str) -> String {
        format!(
            "{}/{component}/{}_{node}/{object}/config",
            self.discovery,
            slug(&self.instance)
        )
    }
}

/// The `origin` block of every config.
pub fn origin() -> Value {
    json!({
        "name": "aether-temporal",
        "sw_version": env!("CARGO_PKG_VERSION"),
        "support_url": "https://github.com/aether-temporal/aether-temporal",
    })
}

/// The config payload of entity `(component, object)` of node `key`.
pub fn config(
    t: &Topics,
    e: &Entities,
    key: &NodeKey,
    component: &str,
    object: &str,
    model_hash: &str,
) -> Value {
    let node = node_slug(key);
    let inst = slug(&t.instance);
    let mut v = json!({
        "unique_id": format!("aether_{inst}_{node}_{object}"),
        "object_id": format!("aether_{node}_{object}"),
        "availability": [
            {"topic": t.status()},
            {"topic": t.availability(&node)},
        ],
        "availability_mode": "all",
        "device": {
            "identifiers": [format!("aether_{inst}_{node}")],
            "name": format!("aether node {}", key.id()),
            "manufacturer": "aether-temporal",
            "model": "WiFi CSI sensing node",
            "sw_version": format!("model {}", &model_hash[..model_hash.len().min(12)]),
        },
        "origin": origin(),
    });
    let o = v.as_object_mut().expect("object");
    match (component, object) {
        ("sensor", "class") => {
            o.insert("name".into(), json!("Class"));
            o.insert("state_topic".into(), json!(t.state(&node)));
            o.insert("value_template".into(), json!("{{ value_json.class }}"));
            o.insert("device_class".into(), json!("enum"));
            o.insert("options".into(), json!(e.classes));
            o.insert("icon".into(), json!("mdi:wifi"));
            o.insert("json_attributes_topic".into(), json!(t.state(&node)));
            o.insert(
                "json_attributes_template".into(),
                json!("{{ {'probability': value_json.probability, 'probs': value_json.probs} | tojson }}"),
            );
        }
        ("sensor", "probability") => {
            o.insert("name".into(), json!("Probability"));
            o.insert("state_topic".into(), json!(t.state(&node)));
            o.insert(
                "value_template".into(),
                json!("{{ (value_json.probability * 100) | round(0) }}"),
            );
            o.insert("unit_of_measurement".into(), json!("%"));
            o.insert("state_class".into(), json!("measurement"));
            o.insert("icon".into(), json!("mdi:percent"));
        }
        ("event", _) => {
            let types: Vec<&str> = e.events.iter().map(|&i| e.classes[i].as_str()).collect();
            o.insert("name".into(), json!("Activity"));
            o.insert("state_topic".into(), json!(t.event(&node)));
            o.insert("event_types".into(), json!(types));
            if types
                .iter()
                .all(|c| !words(c).iter().any(|w| w == "fall" || w == "fell"))
            {
                o.insert("device_class".into(), json!("motion"));
            }
        }
        ("binary_sensor", obj) => {
            let (i, dc) = e
                .binary
                .iter()
                .find(|(i, _)| slug(&e.classes[*i]) == obj)
                .copied()
                .unwrap_or((0, "presence"));
            let class = &e.classes[i];
            o.insert("name".into(), json!(class_title(class)));
            o.insert("state_topic".into(), json!(t.state(&node)));
            o.insert(
                "value_template".into(),
                json!(format!(
                    "{{{{ 'ON' if value_json.class == '{}' else 'OFF' }}}}",
                    class.replace('\'', "\\'")
                )),
            );
            o.insert("device_class".into(), json!(dc));
        }
        _ => {}
    }
    v
}

/// `sit_down` → `Sit down`.
fn class_title(c: &str) -> String {
    let s = c.replace(['_', '-'], " ");
    let mut ch = s.chars();
    match ch.next() {
        Some(f) => f.to_uppercase().collect::<String>() + ch.as_str(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn binary_and_event_classes_follow_the_names() {
        assert_eq!(binary_class("present"), Some("presence"));
        assert_eq!(binary_class("Motion"), Some("motion"));
        assert_eq!(binary_class("room-occupied"), Some("occupancy"));
        for neg in ["no_motion", "not_present", "empty", "absent", "wave"] {
            assert_eq!(binary_class(neg), None, "{neg}");
        }
        let e = Entities::of(&names(&["empty", "present"]));
        assert_eq!(e.binary, vec![(1, "presence")]);
        assert!(e.events.is_empty());
        assert_eq!(e.list().len(), 3);
        // Every class "positive": nothing would ever be off, so no binary sensor.
        assert!(Entities::of(&names(&["motion", "presence"]))
            .binary
            .is_empty());
        let g = Entities::of(&names(&["circle", "push", "swipe", "wave"]));
        assert_eq!(g.events, vec![0, 1, 2, 3]);
        assert!(g.binary.is_empty());
        let f = Entities::of(&names(&["fall", "nothing", "sit_down"]));
        assert_eq!(f.events, vec![0, 2]);
        let b = Entities::of(&names(&["apnea", "normal", "shallow"]));
        assert!(b.events.is_empty() && b.binary.is_empty());
        assert_eq!(
            b.list(),
            vec![("sensor", "class".into()), ("sensor", "probability".into())]
        );
    }

    #[test]
    fn configs_carry_ids_availability_and_only_model_classes() {
        let t = Topics::new("homeassistant", "aether", "aether-0123abcd");
        let key = NodeKey::parse("127.0.0.2/5").unwrap();
        assert_eq!(node_slug(&key), "127_0_0_2_n5");
        assert_eq!(node_slug(&NodeKey::parse("::1/0").unwrap()), "1_n0");
        let e = Entities::of(&names(&["fall", "nothing", "sit_down"]));
        let c = config(&t, &e, &key, "sensor", "class", "abcdef0123456789");
        assert_eq!(c["unique_id"], "aether_aether_0123abcd_127_0_0_2_n5_class");
        assert_eq!(
            c["device"]["identifiers"][0],
            "aether_aether_0123abcd_127_0_0_2_n5"
        );
        assert_eq!(c["options"], json!(["fall", "nothing", "sit_down"]));
        assert_eq!(
            c["availability"][0]["topic"],
            "aether/aether-0123abcd/status"
        );
        assert_eq!(c["origin"]["name"], "aether-temporal");
        let ev = config(&t, &e, &key, "event", "activity", "ab");
        assert_eq!(ev["event_types"], json!(["fall", "sit_down"]));
        assert_eq!(
            t.config("event", "127_0_0_2_n5", "activity"),
            "homeassistant/event/aether_0123abcd_127_0_0_2_n5/activity/config"
        );
        let p = Entities::of(&names(&["empty", "present"]));
        let b = config(&t, &p, &key, "binary_sensor", "present", "ab");
        assert_eq!(b["device_class"], "presence");
        assert_eq!(
            b["value_template"],
            "{{ 'ON' if value_json.class == 'present' else 'OFF' }}"
        );
    }
}
