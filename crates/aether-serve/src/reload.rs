//! Hot model reload (`POST /api/v1/model`, SIGHUP): the new file is validated fully
//! first — a bad one leaves the old model serving and returns the typed error — then
//! every shard swaps it in between two batches (a control message, so no packet is
//! dropped or waits on a lock) and its node streams restart on it. Each node's frames
//! are entirely on the old model or entirely on the new one; history entries carry the
//! model generation that produced them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use aether_data::features::FeatureConfig;
use aether_head::StreamSettings;
use aether_rvne::BlobView;
use crossbeam_channel::Sender;
use tokio::sync::{oneshot, watch};

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::model::{default_horizon, LoadedModel};
use crate::node::ActiveLabel;
use crate::record::{Recorder, SegmentReport};
use crate::shard::Control;

/// The serving model, readable by the API; shards get it by control message.
#[derive(Debug)]
pub struct ModelSlot {
    current: RwLock<Arc<LoadedModel>>,
    generation: AtomicU64,
    watch: watch::Sender<Arc<LoadedModel>>,
}

impl ModelSlot {
    /// A slot holding `m` as generation 0.
    pub fn new(m: Arc<LoadedModel>) -> Self {
        let (watch, _) = watch::channel(Arc::clone(&m));
        Self {
            current: RwLock::new(m),
            generation: AtomicU64::new(0),
            watch,
        }
    }

    /// The serving model.
    pub fn get(&self) -> Arc<LoadedModel> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Its generation (0 = the model the service started with).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Notified on every swap.
    pub fn subscribe(&self) -> watch::Receiver<Arc<LoadedModel>> {
        self.watch.subscribe()
    }

    fn set(&self, m: Arc<LoadedModel>, generation: u64) {
        match self.current.write() {
            Ok(mut g) => *g = Arc::clone(&m),
            Err(p) => *p.into_inner() = Arc::clone(&m),
        }
        self.generation.store(generation, Ordering::SeqCst);
        self.watch.send_replace(m);
    }
}

/// How stream settings follow a new model.
#[derive(Debug, Clone, Copy)]
pub struct ReloadSettings {
    /// Extractor of a model whose file names no features (v1).
    pub features: FeatureConfig,
    /// The stream settings the service was given (`None`: the model's default).
    pub stream: Option<StreamSettings>,
    /// Take the horizon from each new model's training window (no `--horizon` given).
    pub horizon_from_model: bool,
}

impl ReloadSettings {
    /// The stream settings for the model in `bytes` (`None`: its default).
    pub fn stream_for(&self, bytes: &[u8]) -> Option<StreamSettings> {
        match (self.stream, self.horizon_from_model) {
            (Some(mut s), true) => {
                if let Ok(v) = BlobView::parse(bytes) {
                    s.horizon = default_horizon(&v);
                }
                Some(s)
            }
            (s, _) => s,
        }
    }
}

/// Carries out reloads, one at a time.
pub struct Reloader {
    /// The model slot.
    pub slot: Arc<ModelSlot>,
    shards: Vec<Sender<Control>>,
    metrics: Arc<Metrics>,
    settings: ReloadSettings,
    recorder: Option<Arc<Recorder>>,
    busy: Mutex<()>,
}

/// What a successful reload reports.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// The new model.
    pub model: Arc<LoadedModel>,
    /// Its generation.
    pub generation: u64,
    /// The model it replaced.
    pub previous: String,
    /// Labelled segments ended because the new model's features differ (restart them).
    pub labels_ended: Vec<SegmentReport>,
}

impl Reloader {
    /// A reloader over `shards`.
    pub fn new(
        slot: Arc<ModelSlot>,
        shards: Vec<Sender<Control>>,
        metrics: Arc<Metrics>,
        settings: ReloadSettings,
        recorder: Option<Arc<Recorder>>,
    ) -> Self {
        Self {
            slot,
            shards,
            metrics,
            settings,
            recorder,
            busy: Mutex::new(()),
        }
    }

    /// Validates `bytes` fully, then swaps the model on every shard (blocking until
    /// each has; call from a blocking context). On error nothing changed.
    pub fn reload(&self, bytes: &[u8]) -> Result<Reloaded, ServeError> {
        let _one = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let model = match LoadedModel::from_bytes(
            bytes,
            self.settings.features,
            self.settings.stream_for(bytes),
        ) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                self.metrics.reload("invalid");
                tracing::warn!(error = %e, "model reload refused; the old model keeps serving");
                return Err(e);
            }
        };
        let previous = self.slot.get();
        let generation = self.slot.generation() + 1;
        let mut acks = Vec::with_capacity(self.shards.len());
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            if s.send(Control::SwapModel(Arc::clone(&model), generation, tx))
                .is_err()
            {
                self.metrics.reload("failed");
                return Err(ServeError::Config("the service is shutting down".into()));
            }
            acks.push(rx);
        }
        // Every shard answers between two batches; a stuck one would be a bug, but the
        // slot is updated regardless so the API tells the truth about the shards that did.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut ended: Vec<ActiveLabel> = Vec::new();
        for mut rx in acks {
            while std::time::Instant::now() < deadline {
                match rx.try_recv() {
                    Ok(e) => {
                        ended.extend(e);
                        break;
                    }
                    Err(oneshot::error::TryRecvError::Empty) => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(oneshot::error::TryRecvError::Closed) => break,
                }
            }
        }
        self.slot.set(Arc::clone(&model), generation);
        self.metrics
            .model_swapped(&previous.sha256, &model.sha256, generation);
        tracing::info!(
            model = %model.sha256,
            previous = %previous.sha256,
            generation,
            classes = %model.classes.join(","),
            "model reloaded"
        );
        let labels_ended = match &self.recorder {
            Some(r) => ended.iter().filter_map(|l| r.close(l.seg)).collect(),
            None => Vec::new(),
        };
        Ok(Reloaded {
            model,
            generation,
            previous: previous.sha256.clone(),
            labels_ended,
        })
    }
}
