//! A real Mosquitto broker for the tests (own config, ephemeral loopback port, killed on
//! drop) and a recording MQTT client.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// Where Mosquitto is: on `PATH` or in `/usr/sbin` (Debian's package puts it there).
pub fn mosquitto() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

/// A running broker.
pub struct Broker {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts a broker, or `None` (with a message) when Mosquitto is not installed and
    /// `AETHER_REQUIRE_MQTT` is unset; with it set, a missing broker fails the test.
    pub fn start() -> Option<Self> {
        let Some(bin) = mosquitto() else {
            if std::env::var_os("AETHER_REQUIRE_MQTT").is_some() {
                panic!("AETHER_REQUIRE_MQTT is set but no mosquitto binary was found (apt-get install mosquitto)");
            }
            eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto); set AETHER_REQUIRE_MQTT=1 to make this a failure");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut b = Self {
            child: None,
            port,
            bin,
            dir: tempfile::tempdir().unwrap(),
        };
        b.launch();
        Some(b)
    }

    fn launch(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n",
                self.port
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap();
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < end,
                "mosquitto did not listen on {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills the broker (the clients see the connection drop).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (nothing retained survives: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Topic.
    pub topic: String,
    /// Payload as text.
    pub payload: String,
    /// The retain flag (set by the broker for retained messages sent on subscription).
    pub retain: bool,
    /// When it arrived.
    pub at: Instant,
}

/// A subscriber that keeps every message.
pub struct Sub {
    /// The messages so far.
    pub msgs: Arc<Mutex<Vec<Msg>>>,
    client: Client,
}

impl Sub {
    /// Connects to `port` and subscribes to `topics`; returns once subscribed.
    pub fn new(port: u16, id: &str, topics: &[&str]) -> Self {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut conn) = Client::new(o, 100);
        for t in topics {
            client.subscribe(*t, QoS::AtLeastOnce).unwrap();
        }
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let m = Arc::clone(&msgs);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let n = topics.len();
        std::thread::spawn(move || {
            let mut acks = 0;
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => m.lock().unwrap().push(Msg {
                        topic: p.topic.clone(),
                        payload: String::from_utf8_lossy(&p.payload).into_owned(),
                        retain: p.retain,
                        at: Instant::now(),
                    }),
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        acks += 1;
                        if acks == n {
                            let _ = ready_tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("subscribed");
        Self { msgs, client }
    }

    /// Every message so far.
    pub fn all(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// Messages on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Msg> {
        self.all()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// The last payload on `topic`.
    pub fn last(&self, topic: &str) -> Option<String> {
        self.on(topic).last().map(|m| m.payload.clone())
    }

    /// Publishes (retained or not).
    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .unwrap();
    }

    /// Waits until `f` holds for the messages so far.
    pub fn wait(&self, secs: u64, what: &str, mut f: impl FnMut(&[Msg]) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if f(&self.all()) {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; got {:#?}",
                self.all()
                    .iter()
                    .map(|m| format!("{} {}", m.topic, m.payload))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}
