//! Exact streaming through per-layer KV caches, and the rolling-window classifier.
//!
//! [`StreamOf::push`] embeds one frame at position `t` (frames since the last reset),
//! and per layer projects its row, appends `(k, v)` to that layer's kernel
//! [`KvCacheOf`] and decodes the new position only; then the final norm, a running sum
//! (mean pooling) or the row itself (last pooling) and the classifier. With a causal
//! pattern the output at `t` depends on frames `0..=t` only, so the logits after push
//! `i` equal [`TemporalHead::forward`] on frames `0..=i` (to float rounding) while
//! nothing has been evicted. Cost per frame: `O(L·(W + log T)·d)` sparse, `O(L·T·d)`
//! dense (a dense head decodes with a saturated pattern: every cached position, no
//! landmarks). No allocation after construction.
//!
//! A full cache follows the kernel's [`EvictionPolicy`]: `Error` refuses the frame
//! (state unchanged), `SlidingWindow` drops the oldest position, `HeavyHitter` drops the
//! least-attended ones. After the first eviction the outputs are no longer those of the
//! full forward ([`StreamOf::is_exact`]); positions keep counting.
//!
//! [`RollingWindow`] keeps the last `N` frames in a ring and classifies them with a
//! full prefill on demand (firmware style: push at the frame rate, classify at 1 Hz).

use alloc::vec;
use alloc::vec::Vec;

use aether_kernel::{EvictionPolicy, KvCacheOf, KvElem, SparsePattern};

use crate::config::{AttentionBackend, HeadConfig, Pooling};
use crate::error::{HeadError, Result};
use crate::math::RunningNorm;
use crate::model::{check_frames, TemporalHead, Workspace};

/// A stream with f32 KV caches.
pub type Stream = StreamOf<f32>;

/// A stream with f16 KV caches (half the cache memory; outputs within f16 rounding).
pub type StreamF16 = StreamOf<half::f16>;

/// A streaming classifier: one frame in, the logits of the stream so far out.
///
/// Detached from the head (it holds no borrow) so a C context can own both; every
/// call takes the head and checks it has the configuration the stream was built for.
#[derive(Debug, Clone)]
pub struct StreamOf<S: KvElem> {
    cfg: HeadConfig,
    decode_pattern: SparsePattern,
    capacity: usize,
    policy: EvictionPolicy,
    caches: Vec<KvCacheOf<S>>,
    pos: usize,
    poisoned: bool,
    u: Vec<f32>,
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    hid: Vec<f32>,
    sum: Vec<f32>,
    pooled: Vec<f32>,
    logits: Vec<f32>,
    rn: RunningNorm,
}

impl<S: KvElem> StreamOf<S> {
    /// A stream for `head` whose caches hold `capacity` positions per layer and apply
    /// `policy` when full.
    ///
    /// Refuses a non-causal pattern (its outputs depend on future frames) and `capacity == 0`.
    pub fn new(head: &TemporalHead<'_>, capacity: usize, policy: EvictionPolicy) -> Result<Self> {
        let c = head.config().clone();
        if !c.pattern.causal {
            return Err(HeadError::Config {
                what: "pattern.causal",
                detail: "streaming needs a causal pattern".into(),
            });
        }
        let decode_pattern = match c.attention {
            AttentionBackend::Sparse => c.pattern.clone(),
            AttentionBackend::Dense => SparsePattern {
                window: usize::MAX,
                block_size: c.pattern.block_size,
                global_tokens: Vec::new(),
                causal: true,
                log_stride: false,
                landmarks: false,
            },
        };
        let mut caches = Vec::with_capacity(c.layers);
        for _ in 0..c.layers {
            let mut cache = KvCacheOf::<S>::try_with_policy(
                capacity,
                c.kv_heads,
                c.head_dim,
                c.pattern.block_size,
                policy,
            )
            .map_err(|e| HeadError::kernel("creating a stream cache", e))?;
            cache
                .reserve_decode(&decode_pattern, c.q_heads)
                .map_err(|e| HeadError::kernel("sizing the decode scratch", e))?;
            caches.push(cache);
        }
        let (kw, d) = (c.kv_width(), c.d_model);
        Ok(Self {
            decode_pattern,
            capacity,
            policy,
            caches,
            pos: 0,
            poisoned: false,
            u: vec![0.0; c.features],
            x: vec![0.0; d],
            h: vec![0.0; d],
            q: vec![0.0; c.q_width()],
            k: vec![0.0; kw],
            v: vec![0.0; kw],
            att: vec![0.0; c.q_width()],
            hid: vec![0.0; c.mlp_hidden],
            sum: vec![0.0; d],
            pooled: vec![0.0; d],
            logits: vec![0.0; c.classes],
            rn: RunningNorm::new(if c.running_norm { c.features } else { 0 }),
            cfg: c,
        })
    }

    /// Frames pushed since construction or the last [`StreamOf::reset`].
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether no frame was pushed since the last reset.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Positions each layer's cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The eviction policy of the caches.
    pub fn policy(&self) -> EvictionPolicy {
        self.policy
    }

    /// Whether every output so far equals the full forward (nothing evicted yet).
    pub fn is_exact(&self) -> bool {
        self.caches.iter().all(|c| c.len() == c.total())
    }

    /// Forgets every frame: the next push is position 0 again.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.poisoned = false;
        self.caches.iter_mut().for_each(|c| c.reset());
        self.sum.iter_mut().for_each(|x| *x = 0.0);
        self.pooled.iter_mut().for_each(|x| *x = 0.0);
        self.logits.iter_mut().for_each(|x| *x = 0.0);
        self.rn.reset();
    }

    /// Logits after the last push (zeros before the first).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// The pooled embedding after the last push.
    pub fn embedding(&self) -> &[f32] {
        &self.pooled
    }

    /// Bytes of every buffer the stream holds (caches and scratch; weights excluded).
    pub fn bytes(&self) -> usize {
        let caches: usize = self.caches.iter().map(|c| c.bytes()).sum();
        let rows = self.u.len()
            + self.x.len()
            + self.h.len()
            + self.q.len()
            + self.k.len()
            + self.v.len()
            + self.att.len()
            + self.hid.len()
            + self.sum.len()
            + self.pooled.len()
            + self.logits.len();
        caches + rows * 4 + self.rn.bytes()
    }

    /// Pushes one frame (`F` values) and returns the logits of the stream so far.
    ///
    /// A frame of the wrong width or with NaN/Inf, a full stream under
    /// [`EvictionPolicy::Error`] or a different head are refused and leave the state
    /// unchanged. A kernel refusal midway (an f16 cache meeting a value beyond f16
    /// range) leaves the stream unusable until [`StreamOf::reset`].
    pub fn push(&mut self, head: &TemporalHead<'_>, frame: &[f32]) -> Result<&[f32]> {
        let c = head.config();
        if c != &self.cfg {
            return Err(HeadError::WorkspaceMismatch);
        }
        if frame.len() != c.features {
            return Err(HeadError::FrameWidth {
                expected: c.features,
                got: frame.len(),
            });
        }
        check_frames(frame, c.features)?;
        if self.poisoned {
            return Err(HeadError::StreamPoisoned);
        }
        if self.policy == EvictionPolicy::Error
            && self.caches.iter().any(|c| c.len() == self.capacity)
        {
            return Err(HeadError::CapacityExceeded {
                capacity: self.capacity,
            });
        }
        let i = self.pos;
        head.embed_row(i, frame, &mut self.rn, &mut self.u, &mut self.x);
        for (lw, cache) in head.weights().layers.iter().zip(self.caches.iter_mut()) {
            head.project_row(
                lw,
                &self.x,
                &mut self.h,
                &mut self.q,
                &mut self.k,
                &mut self.v,
            );
            let r = cache
                .push(&self.k, &self.v)
                .and_then(|_| cache.decode(&self.decode_pattern, &self.q, &mut self.att));
            if let Err(e) = r {
                self.poisoned = true;
                return Err(HeadError::kernel("stream push", e));
            }
            head.finish_row(lw, &self.att, &mut self.x, &mut self.h, &mut self.hid);
        }
        head.final_row(&mut self.x);
        let n = i + 1;
        match c.pooling {
            Pooling::Mean => {
                for (s, x) in self.sum.iter_mut().zip(&self.x) {
                    *s += x;
                }
                let cnt = n as f32;
                for (p, s) in self.pooled.iter_mut().zip(&self.sum) {
                    *p = *s / cnt;
                }
            }
            Pooling::Last => self.pooled.copy_from_slice(&self.x),
        }
        head.classify_pooled(&self.pooled, &mut self.logits);
        self.pos = n;
        if self.logits.iter().any(|x| !x.is_finite()) {
            return Err(HeadError::NumericOverflow);
        }
        Ok(&self.logits)
    }
}

/// Classifies the last `N` frames on demand: pushes are O(F) copies into a ring,
/// [`RollingWindow::classify`] runs a full forward (positions 0..N of the window).
#[derive(Debug, Clone)]
pub struct RollingWindow {
    cfg: HeadConfig,
    window: usize,
    ring: Vec<f32>,
    start: usize,
    len: usize,
    lin: Vec<f32>,
    ws: Workspace,
}

impl RollingWindow {
    /// A rolling window of `window` frames for `head` (preallocates everything; kernel
    /// SIMD attention, see [`Workspace::new`]).
    pub fn new(head: &TemporalHead<'_>, window: usize) -> Result<Self> {
        Self::build(head, window, false)
    }

    /// Like [`RollingWindow::new`] with the low-memory [`Workspace::compact`] layout;
    /// classify rotates the ring in place (time order) instead of copying it.
    pub fn compact(head: &TemporalHead<'_>, window: usize) -> Result<Self> {
        Self::build(head, window, true)
    }

    fn build(head: &TemporalHead<'_>, window: usize, compact: bool) -> Result<Self> {
        if window == 0 {
            return Err(HeadError::Config {
                what: "window",
                detail: "must be positive".into(),
            });
        }
        let f = head.config().features;
        let len = window.checked_mul(f).ok_or_else(|| HeadError::Config {
            what: "window",
            detail: "size overflows".into(),
        })?;
        Ok(Self {
            cfg: head.config().clone(),
            window,
            ring: vec![0.0; len],
            start: 0,
            len: 0,
            lin: if compact { Vec::new() } else { vec![0.0; len] },
            ws: if compact {
                Workspace::compact(head, window)?
            } else {
                Workspace::new(head, window)?
            },
        })
    }

    /// Frames currently held (≤ the window).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the window is full.
    pub fn is_full(&self) -> bool {
        self.len == self.window
    }

    /// The window length `N`.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Bytes of the ring, the linear copy (none when compact) and the workspace.
    pub fn bytes(&self) -> usize {
        (self.ring.len() + self.lin.len()) * 4 + self.ws.bytes()
    }

    /// Forgets every frame.
    pub fn reset(&mut self) {
        self.start = 0;
        self.len = 0;
    }

    /// Appends one frame (`F` values), dropping the oldest when full. Invalid frames
    /// are refused and leave the window unchanged.
    pub fn push(&mut self, frame: &[f32]) -> Result<()> {
        let f = self.cfg.features;
        if frame.len() != f {
            return Err(HeadError::FrameWidth {
                expected: f,
                got: frame.len(),
            });
        }
        check_frames(frame, f)?;
        let slot = (self.start + self.len) % self.window;
        self.ring[slot * f..(slot + 1) * f].copy_from_slice(frame);
        if self.len < self.window {
            self.len += 1;
        } else {
            self.start = (self.start + 1) % self.window;
        }
        Ok(())
    }

    /// Logits of the frames held, oldest first, as one sequence; no allocation.
    pub fn classify(&mut self, head: &TemporalHead<'_>, logits: &mut [f32]) -> Result<()> {
        if head.config() != &self.cfg {
            return Err(HeadError::WorkspaceMismatch);
        }
        if self.len == 0 {
            return Err(HeadError::NoFrames);
        }
        let f = self.cfg.features;
        if self.lin.is_empty() {
            // Compact: only a full ring wraps; rotating it puts the oldest frame first.
            if self.start != 0 {
                self.ring.rotate_left(self.start * f);
                self.start = 0;
            }
            return head.forward_compact_into(&self.ring[..self.len * f], &mut self.ws, logits);
        }
        for r in 0..self.len {
            let s = (self.start + r) % self.window;
            self.lin[r * f..(r + 1) * f].copy_from_slice(&self.ring[s * f..(s + 1) * f]);
        }
        head.forward_into(&self.lin[..self.len * f], &mut self.ws, logits)
    }
}
