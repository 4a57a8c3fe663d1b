//! [`Transport`] on NATS JetStream (async-nats).
//!
//! | what | JetStream object |
//! |---|---|
//! | partition `p`'s log | stream `AETHER_CSI_<p>`, subjects `aether.csi.<p>.*`, limits retention: `max_msgs_per_subject` = `--retain`, `max_age` = `--retain-age`, `duplicate_window` = `--dedup-window` |
//! | its reader | durable pull consumer `aether-worker`, ack policy *all*, recreated by every new owner to start after the committed floor |
//! | a replay | an ephemeral pull consumer from the first retained frame, no acks |
//! | results | stream `AETHER_RESULTS`, subjects `aether.result.*`, `max_msgs_per_subject` = `--result-retain` |
//! | leases | key-value bucket `aether_leases` (history 1, `max_age` = the lease TTL), key `p<p>`: create = take, update on the revision = renew, delete on the revision = release |
//! | the gateway's declaration | key-value bucket `aether_cluster`, key `settings`: `{"partitions": P, "retain": K}` |

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, Context, GetStreamErrorKind};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, LastRawMessageErrorKind};
use async_nats::jetstream::ErrorCode;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::OnceCell;

use super::transport::{
    AckRef, Cursor, Declared, LogMsg, Outgoing, PendingAck, Resume, TFuture, Target, Transport,
    TransportError,
};
use super::{csi_subject, result_subject, CONSUMER, CSI_PREFIX, CSI_STREAM, LEASE_BUCKET};
use super::{RESULT_PREFIX, RESULT_STREAM, SETTINGS_BUCKET};

fn broker(e: impl std::fmt::Display) -> TransportError {
    TransportError::Broker(e.to_string())
}

fn stream_name(p: u32) -> String {
    format!("{CSI_STREAM}_{p}")
}

/// A connection to a NATS server with JetStream.
pub struct NatsTransport {
    client: async_nats::Client,
    js: Context,
    results: OnceCell<stream::Stream>,
    leases: OnceCell<kv::Store>,
    settings: OnceCell<kv::Store>,
}

impl NatsTransport {
    /// Connects to `url` as `name` (fails after 5 s; reconnects on its own afterwards).
    pub async fn connect(url: &str, name: &str) -> Result<Arc<Self>, TransportError> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| TransportError::Broker(format!("connecting to {url}: {e}")))?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(1 << 16)
            .build(client.clone());
        Ok(Arc::new(Self {
            client,
            js,
            results: OnceCell::new(),
            leases: OnceCell::new(),
            settings: OnceCell::new(),
        }))
    }

    /// The key-value bucket `name` (history 1, entries living `max_age`; 0 = forever),
    /// created if missing. Created as its stream directly: the client's bucket creation
    /// asks for account details a 2.9 server answers in an older form.
    async fn bucket(&self, name: &str, max_age: Duration) -> Result<kv::Store, TransportError> {
        if let Ok(s) = self.js.get_key_value(name).await {
            return Ok(s);
        }
        let cfg = stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        };
        if let Err(e) = self.js.create_stream(cfg).await {
            // Another process may have created it meanwhile.
            return self
                .js
                .get_key_value(name)
                .await
                .map_err(|_| TransportError::Broker(format!("creating the bucket {name}: {e}")));
        }
        self.js.get_key_value(name).await.map_err(broker)
    }

    async fn settings_store(&self) -> Result<&kv::Store, TransportError> {
        self.settings
            .get_or_try_init(|| self.bucket(SETTINGS_BUCKET, Duration::ZERO))
            .await
    }

    async fn lease_store(&self) -> Result<&kv::Store, TransportError> {
        self.leases
            .get()
            .ok_or_else(|| TransportError::Config("the lease bucket is not set up".into()))
    }

    async fn results_stream(&self) -> Result<&stream::Stream, TransportError> {
        self.results
            .get_or_try_init(|| async { self.js.get_stream(RESULT_STREAM).await.map_err(broker) })
            .await
    }

    async fn partition_stream(&self, p: u32) -> Result<Option<stream::Stream>, TransportError> {
        match self.js.get_stream(stream_name(p)).await {
            Ok(s) => Ok(Some(s)),
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(j)
                    if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(broker(e)),
            },
        }
    }
}

/// Reads a pull consumer's messages.
struct NatsCursor {
    msgs: pull::Stream,
    /// A replay: ends at the message the broker reports nothing after.
    replay: bool,
    done: bool,
}

fn log_msg(m: async_nats::jetstream::Message) -> Result<LogMsg, TransportError> {
    let info = m.info().map_err(broker)?;
    let (seq, pending) = (info.stream_sequence, info.pending);
    let ack = AckRef(
        m.reply
            .as_ref()
            .map(|r| r.to_string())
            .ok_or_else(|| broker("a JetStream message without a reply subject"))?,
    );
    Ok(LogMsg {
        seq,
        payload: m.payload.clone(),
        ack,
        pending,
    })
}

impl Cursor for NatsCursor {
    fn next_batch(&mut self, max: usize, wait: Duration) -> TFuture<'_, Vec<LogMsg>> {
        async move {
            let mut out = Vec::new();
            if self.done {
                return Ok(out);
            }
            let first = match tokio::time::timeout(wait, self.msgs.next()).await {
                Err(_) => return Ok(out),
                Ok(None) => {
                    self.done = true;
                    return Ok(out);
                }
                Ok(Some(m)) => m.map_err(broker)?,
            };
            let m = log_msg(first)?;
            let mut last_pending = m.pending;
            out.push(m);
            while out.len() < max && !(self.replay && last_pending == 0) {
                match self.msgs.next().now_or_never() {
                    Some(Some(Ok(m))) => {
                        let m = log_msg(m)?;
                        last_pending = m.pending;
                        out.push(m);
                    }
                    Some(Some(Err(e))) => return Err(broker(e)),
                    _ => break,
                }
            }
            if self.replay && last_pending == 0 {
                self.done = true;
            }
            Ok(out)
        }
        .boxed()
    }
}

/// A cursor that has nothing (a replay of an empty log).
struct Empty;

impl Cursor for Empty {
    fn next_batch(&mut self, _: usize, _: Duration) -> TFuture<'_, Vec<LogMsg>> {
        async { Ok(Vec::new()) }.boxed()
    }
}

impl Transport for NatsTransport {
    fn setup_gateway(
        &self,
        declared: Declared,
        retain_age: Duration,
        dedup: Duration,
    ) -> TFuture<'_, ()> {
        async move {
            let store = self.settings_store().await?;
            if let Some(v) = store.get("settings").await.map_err(broker)? {
                if let Some(d) = parse_declared(&v) {
                    if d.partitions != declared.partitions {
                        return Err(TransportError::Config(format!(
                            "the cluster has {} partitions (declared in the {SETTINGS_BUCKET} bucket); this gateway has {}: use the same count, or delete the cluster's streams and buckets to repartition",
                            d.partitions, declared.partitions
                        )));
                    }
                }
            }
            for p in 0..declared.partitions {
                let cfg = stream::Config {
                    name: stream_name(p),
                    subjects: vec![format!("{CSI_PREFIX}.{p}.*")],
                    max_messages_per_subject: declared.retain,
                    max_age: retain_age,
                    duplicate_window: dedup.min(retain_age),
                    discard: DiscardPolicy::Old,
                    ..Default::default()
                };
                match self.partition_stream(p).await? {
                    None => {
                        self.js.create_stream(cfg).await.map_err(broker)?;
                    }
                    Some(mut s) => {
                        let have = s.info().await.map_err(broker)?.config.clone();
                        if have.max_messages_per_subject != cfg.max_messages_per_subject
                            || have.max_age != cfg.max_age
                            || have.duplicate_window != cfg.duplicate_window
                        {
                            let new = stream::Config {
                                max_messages_per_subject: cfg.max_messages_per_subject,
                                max_age: cfg.max_age,
                                duplicate_window: cfg.duplicate_window,
                                ..have
                            };
                            self.js.update_stream(new).await.map_err(broker)?;
                        }
                    }
                }
            }
            let v = serde_json::json!({"partitions": declared.partitions, "retain": declared.retain});
            store
                .put("settings", Bytes::from(v.to_string()))
                .await
                .map_err(broker)?;
            Ok(())
        }
        .boxed()
    }

    fn setup_worker(
        &self,
        result_retain: i64,
        lease_ttl: Duration,
        dedup: Duration,
    ) -> TFuture<'_, (Duration, Option<Declared>)> {
        async move {
            let cfg = stream::Config {
                name: RESULT_STREAM.into(),
                subjects: vec![format!("{RESULT_PREFIX}.*")],
                max_messages_per_subject: result_retain,
                duplicate_window: dedup,
                discard: DiscardPolicy::Old,
                ..Default::default()
            };
            self.js.get_or_create_stream(cfg).await.map_err(broker)?;
            let store = self.bucket(LEASE_BUCKET, lease_ttl).await?;
            let ttl = store.status().await.map_err(broker)?.info.config.max_age;
            let _ = self.leases.set(store);
            let ttl = if ttl.is_zero() { lease_ttl } else { ttl };
            let declared = self.declared().await?;
            Ok((ttl, declared))
        }
        .boxed()
    }

    fn declared(&self) -> TFuture<'_, Option<Declared>> {
        async move {
            let store = self.settings_store().await?;
            Ok(store
                .get("settings")
                .await
                .map_err(broker)?
                .and_then(|v| parse_declared(&v)))
        }
        .boxed()
    }

    fn send(&self, msg: &Outgoing) -> TFuture<'_, PendingAck> {
        let subject = match &msg.target {
            Target::Frame { partition, token } => csi_subject(*partition, token),
            Target::Result { token } => result_subject(token),
        };
        let publish = PublishMessage::build()
            .payload(msg.payload.clone())
            .message_id(&msg.id);
        async move {
            let fut = self
                .js
                .send_publish(subject, publish)
                .await
                .map_err(broker)?;
            let ack: PendingAck =
                async move { fut.await.map(|a| a.duplicate).map_err(broker) }.boxed();
            Ok(ack)
        }
        .boxed()
    }

    fn last_result(&self, token: &str) -> TFuture<'_, Option<String>> {
        let subject = result_subject(token);
        async move {
            let s = self.results_stream().await?;
            match s.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => Ok(m
                    .headers
                    .get(async_nats::header::NATS_MESSAGE_ID)
                    .map(|v| v.as_str().to_string())),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                Err(e) => Err(broker(e)),
            }
        }
        .boxed()
    }

    fn resume(&self, partition: u32) -> TFuture<'_, Option<Resume>> {
        async move {
            let Some(mut s) = self.partition_stream(partition).await? else {
                return Ok(None);
            };
            let k = s
                .info()
                .await
                .map_err(broker)?
                .config
                .max_messages_per_subject;
            let retain = (k > 0).then_some(k as u64);
            match s.consumer_info(CONSUMER).await {
                Ok(i) => Ok(Some(Resume {
                    committed: i.ack_floor.stream_sequence,
                    delivered: i.delivered.stream_sequence,
                    existed: true,
                    retain,
                })),
                Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(Some(Resume {
                    retain,
                    ..Resume::default()
                })),
                Err(e) => match e.kind() {
                    ConsumerInfoErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND =>
                    {
                        Ok(Some(Resume {
                            retain,
                            ..Resume::default()
                        }))
                    }
                    _ => Err(broker(e)),
                },
            }
        }
        .boxed()
    }

    fn replay(&self, partition: u32, upto: u64) -> TFuture<'_, Box<dyn Cursor>> {
        async move {
            let s = self
                .partition_stream(partition)
                .await?
                .ok_or_else(|| broker("the partition's stream is gone"))?;
            let c = s
                .create_consumer(pull::Config {
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::None,
                    inactive_threshold: Duration::from_secs(30),
                    ..Default::default()
                })
                .await
                .map_err(broker)?;
            if c.cached_info().num_pending == 0 || upto == 0 {
                return Ok(Box::new(Empty) as Box<dyn Cursor>);
            }
            let msgs = c
                .stream()
                .max_messages_per_batch(1024)
                .messages()
                .await
                .map_err(broker)?;
            Ok(Box::new(NatsCursor {
                msgs,
                replay: true,
                done: false,
            }) as Box<dyn Cursor>)
        }
        .boxed()
    }

    fn consume(
        &self,
        partition: u32,
        after: u64,
        ack_wait: Duration,
        max_pending: usize,
    ) -> TFuture<'_, Box<dyn Cursor>> {
        async move {
            let s = self
                .partition_stream(partition)
                .await?
                .ok_or_else(|| broker("the partition's stream is gone"))?;
            // The previous owner's reader goes: the new one starts after the committed floor.
            let _ = s.delete_consumer(CONSUMER).await;
            let c = s
                .create_consumer(pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    deliver_policy: if after == 0 {
                        DeliverPolicy::All
                    } else {
                        DeliverPolicy::ByStartSequence {
                            start_sequence: after + 1,
                        }
                    },
                    ack_policy: AckPolicy::All,
                    ack_wait,
                    max_ack_pending: max_pending as i64,
                    ..Default::default()
                })
                .await
                .map_err(broker)?;
            let msgs = c
                .stream()
                .max_messages_per_batch(256)
                .messages()
                .await
                .map_err(broker)?;
            Ok(Box::new(NatsCursor {
                msgs,
                replay: false,
                done: false,
            }) as Box<dyn Cursor>)
        }
        .boxed()
    }

    fn commit(&self, ack: &AckRef) -> TFuture<'_, ()> {
        let subject = ack.0.clone();
        async move {
            self.client
                .publish(subject, Bytes::from_static(b"+ACK"))
                .await
                .map_err(broker)
        }
        .boxed()
    }

    fn acquire(&self, partition: u32, owner: &str) -> TFuture<'_, Option<u64>> {
        let value = Bytes::from(owner.to_string());
        async move {
            let store = self.lease_store().await?;
            match store.create(format!("p{partition}"), value).await {
                Ok(rev) => Ok(Some(rev)),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(broker(e)),
            }
        }
        .boxed()
    }

    fn renew(&self, partition: u32, owner: &str, revision: u64) -> TFuture<'_, Option<u64>> {
        let value = Bytes::from(owner.to_string());
        async move {
            let store = self.lease_store().await?;
            match store.update(format!("p{partition}"), value, revision).await {
                Ok(rev) => Ok(Some(rev)),
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(broker(e)),
            }
        }
        .boxed()
    }

    fn release(&self, partition: u32, revision: u64) -> TFuture<'_, ()> {
        async move {
            let store = self.lease_store().await?;
            store
                .delete_expect_revision(format!("p{partition}"), Some(revision))
                .await
                .map_err(broker)?;
            Ok(())
        }
        .boxed()
    }
}

fn parse_declared(v: &[u8]) -> Option<Declared> {
    let j: serde_json::Value = serde_json::from_slice(v).ok()?;
    Some(Declared {
        partitions: u32::try_from(j["partitions"].as_u64()?).ok()?,
        retain: j["retain"].as_i64()?,
    })
}
