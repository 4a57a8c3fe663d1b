//! Live streams: what `aether classify --stream` and `aether serve` run per stream, with
//! one set of [`StreamSettings`] so both give the same numbers (docs/serve.md).
//!
//! A head trained on windows of `N` frames should, on a stream that runs for days,
//! classify the recent past, not the mean of everything since start-up. [`LiveStream`]
//! with a horizon `H` does that exactly and in bounded memory: two [`StreamOf`]s restart
//! in turn, stream A at every position `t ≡ 0 (mod H)`, stream B at every
//! `t ≡ ⌊H/2⌋ (mod H)`, and the output after frame `t` is that of the one that restarted
//! earlier. So the output after frame `t` *is* [`TemporalHead::forward`] over frames
//! `s ..= t` (to float rounding) for the reporting stream's restart `s`, a context of
//! `⌈H/2⌉ + 1 ..= H` frames once `t ≥ H`, every frame of the stream before that.
//! Memory is two sets of KV caches of `H` positions, no eviction; the state at any
//! time depends only on the last `H` frames and the absolute position, so it can be
//! rebuilt exactly by replaying them ([`LiveStream::resume_at`]).
//!
//! Horizon 0 runs one [`StreamOf`] from the first frame, with the given KV capacity and
//! eviction policy (exact until the first eviction; mean pooling and running
//! normalisation then cover every frame since the start).

use aether_kernel::EvictionPolicy;

use crate::error::{HeadError, Result};
use crate::model::{check_frames, TemporalHead};
use crate::stream::{Stream, StreamF16};

/// Default horizon when a model does not record its training window.
pub const DEFAULT_HORIZON: usize = 256;

/// Default KV capacity of a horizon-0 (continuous) stream.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Storage of the streams' KV caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvPrecision {
    /// f32 keys and values (exact to float rounding).
    #[default]
    F32,
    /// f16 keys and values: half the memory, outputs within f16 rounding (docs/kvcache.md).
    F16,
}

/// How a live stream is run: the settings `classify --stream` and `serve` share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// Frames of context per output (see the module docs); 0 = one continuous stream.
    pub horizon: usize,
    /// KV positions per layer of the continuous stream (horizon 0 only).
    pub capacity: usize,
    /// What the continuous stream does when its caches are full (horizon 0 only).
    pub eviction: EvictionPolicy,
    /// KV cache storage.
    pub kv: KvPrecision,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self::with_horizon(DEFAULT_HORIZON)
    }
}

impl StreamSettings {
    /// Horizon `h` with the other settings at their defaults.
    pub fn with_horizon(horizon: usize) -> Self {
        Self {
            horizon,
            capacity: DEFAULT_CAPACITY,
            eviction: EvictionPolicy::SlidingWindow,
            kv: KvPrecision::F32,
        }
    }

    /// Checks the settings: a horizon of 1 (no room for the second stream) and a zero
    /// capacity are refused.
    pub fn validate(&self) -> Result<()> {
        if self.horizon == 1 {
            return Err(HeadError::Config {
                what: "horizon",
                detail: "must be 0 (continuous) or at least 2".into(),
            });
        }
        if self.horizon == 0 && self.capacity == 0 {
            return Err(HeadError::Config {
                what: "capacity",
                detail: "must be positive".into(),
            });
        }
        if let EvictionPolicy::HeavyHitter { recent } = self.eviction {
            if self.horizon == 0 && recent >= self.capacity {
                return Err(HeadError::Config {
                    what: "eviction",
                    detail: "heavy-hitter `recent` must be below the capacity".into(),
                });
            }
        }
        Ok(())
    }

    /// Frames a replay must cover for [`LiveStream::resume_at`] to be exact afterwards
    /// (`None` for a continuous stream, whose state depends on every frame).
    pub fn state_horizon(&self) -> Option<usize> {
        (self.horizon > 0).then_some(self.horizon)
    }
}

#[derive(Debug, Clone)]
enum Inner {
    F32(Stream),
    F16(StreamF16),
}

impl Inner {
    fn new(
        head: &TemporalHead<'_>,
        capacity: usize,
        policy: EvictionPolicy,
        kv: KvPrecision,
    ) -> Result<Self> {
        Ok(match kv {
            KvPrecision::F32 => Inner::F32(Stream::new(head, capacity, policy)?),
            KvPrecision::F16 => Inner::F16(StreamF16::new(head, capacity, policy)?),
        })
    }
    fn push(&mut self, head: &TemporalHead<'_>, frame: &[f32]) -> Result<()> {
        match self {
            Inner::F32(s) => s.push(head, frame).map(|_| ()),
            Inner::F16(s) => s.push(head, frame).map(|_| ()),
        }
    }
    fn reset(&mut self) {
        match self {
            Inner::F32(s) => s.reset(),
            Inner::F16(s) => s.reset(),
        }
    }
    fn len(&self) -> usize {
        match self {
            Inner::F32(s) => s.len(),
            Inner::F16(s) => s.len(),
        }
    }
    fn logits(&self) -> &[f32] {
        match self {
            Inner::F32(s) => s.logits(),
            Inner::F16(s) => s.logits(),
        }
    }
    fn embedding(&self) -> &[f32] {
        match self {
            Inner::F32(s) => s.embedding(),
            Inner::F16(s) => s.embedding(),
        }
    }
    fn bytes(&self) -> usize {
        match self {
            Inner::F32(s) => s.bytes(),
            Inner::F16(s) => s.bytes(),
        }
    }
    fn is_exact(&self) -> bool {
        match self {
            Inner::F32(s) => s.is_exact(),
            Inner::F16(s) => s.is_exact(),
        }
    }
}

/// A stream run with [`StreamSettings`] (module docs): one frame in, the logits of its
/// context out. No allocation after construction.
#[derive(Debug, Clone)]
pub struct LiveStream {
    settings: StreamSettings,
    a: Inner,
    b: Option<Inner>,
    /// Absolute position of the next frame.
    t: u64,
    /// Frames pushed since construction, reset or resume.
    since: u64,
    /// Whether stream B reported the last output.
    from_b: bool,
}

impl LiveStream {
    /// A live stream for `head` (the head must have a causal pattern).
    pub fn new(head: &TemporalHead<'_>, settings: StreamSettings) -> Result<Self> {
        settings.validate()?;
        let (a, b) = if settings.horizon == 0 {
            (
                Inner::new(head, settings.capacity, settings.eviction, settings.kv)?,
                None,
            )
        } else {
            let h = settings.horizon;
            (
                Inner::new(head, h, EvictionPolicy::Error, settings.kv)?,
                Some(Inner::new(head, h, EvictionPolicy::Error, settings.kv)?),
            )
        };
        Ok(Self {
            settings,
            a,
            b,
            t: 0,
            since: 0,
            from_b: false,
        })
    }

    /// A live stream whose next frame is at absolute position `t0`, to rebuild a
    /// stream's state from a replay of its recent frames: after
    /// [`StreamSettings::state_horizon`] pushes its outputs equal those of a stream that
    /// saw every frame (horizon > 0 only; a continuous stream is refused).
    pub fn resume_at(head: &TemporalHead<'_>, settings: StreamSettings, t0: u64) -> Result<Self> {
        if settings.horizon == 0 && t0 > 0 {
            return Err(HeadError::Config {
                what: "horizon",
                detail: "a continuous stream (horizon 0) cannot resume mid-way".into(),
            });
        }
        let mut s = Self::new(head, settings)?;
        s.t = t0;
        Ok(s)
    }

    /// The settings.
    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    /// Absolute position of the next frame (frames pushed, plus the resume offset).
    pub fn position(&self) -> u64 {
        self.t
    }

    /// Frames behind the last output (0 before the first push).
    pub fn context(&self) -> usize {
        match (&self.b, self.from_b) {
            (Some(b), true) => b.len(),
            _ => self.a.len(),
        }
    }

    /// Whether the last output equals the whole forward over its context (false once a
    /// continuous stream has evicted, or while a resumed stream is still warming up).
    pub fn is_exact(&self) -> bool {
        let warm = match self.settings.state_horizon() {
            Some(h) => self.t == self.since || self.since >= h as u64,
            None => true,
        };
        warm && self.a.is_exact() && self.b.as_ref().is_none_or(Inner::is_exact)
    }

    /// Logits after the last push (zeros before the first).
    pub fn logits(&self) -> &[f32] {
        match (&self.b, self.from_b) {
            (Some(b), true) => b.logits(),
            _ => self.a.logits(),
        }
    }

    /// Pooled embedding after the last push.
    pub fn embedding(&self) -> &[f32] {
        match (&self.b, self.from_b) {
            (Some(b), true) => b.embedding(),
            _ => self.a.embedding(),
        }
    }

    /// Bytes of every buffer (caches and scratch of both streams).
    pub fn bytes(&self) -> usize {
        self.a.bytes() + self.b.as_ref().map_or(0, Inner::bytes)
    }

    /// Forgets every frame: the next push is position 0.
    pub fn reset(&mut self) {
        self.a.reset();
        if let Some(b) = &mut self.b {
            b.reset();
        }
        self.t = 0;
        self.since = 0;
        self.from_b = false;
    }

    /// Pushes one frame (`F` values) and returns the logits of its context.
    ///
    /// A frame of the wrong width or with NaN/Inf is refused and leaves the state
    /// unchanged; a kernel refusal (an f16 cache meeting a value beyond f16 range, a
    /// full continuous stream under [`EvictionPolicy::Error`]) is returned and the
    /// stream should be [`LiveStream::reset`].
    pub fn push(&mut self, head: &TemporalHead<'_>, frame: &[f32]) -> Result<&[f32]> {
        let f = head.config().features;
        if frame.len() != f {
            return Err(HeadError::FrameWidth {
                expected: f,
                got: frame.len(),
            });
        }
        check_frames(frame, f)?;
        let h = self.settings.horizon as u64;
        if h > 0 {
            let half = h / 2;
            if self.t.is_multiple_of(h) {
                self.a.reset();
            }
            if self.t >= half && (self.t - half).is_multiple_of(h) {
                if let Some(b) = &mut self.b {
                    b.reset();
                }
            }
        }
        self.a.push(head, frame)?;
        if h > 0 && self.t >= h / 2 {
            if let Some(b) = &mut self.b {
                b.push(head, frame)?;
            }
        }
        self.from_b = self.b.as_ref().is_some_and(|b| b.len() > self.a.len());
        self.t += 1;
        self.since += 1;
        Ok(self.logits())
    }
}
