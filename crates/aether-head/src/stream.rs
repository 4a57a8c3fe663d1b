//! Exact streaming through per-layer KV caches, and the rolling-window classifier.
//!
//! [`Stream::push`] embeds one frame at position `t` (frames since the last reset),
//! and per layer projects its row, appends `(k, v)` to that layer's cache (closing a
//! landmark block every `B` positions) and attends the new position only; then the
//! final norm, a running sum (mean pooling) or the row itself (last pooling) and the
//! classifier. With a causal pattern the output at `t` depends on frames `0..=t`
//! only, so the logits after push `i` equal [`TemporalHead::forward`] on frames
//! `0..=i` — exactly, while nothing has been evicted. Cost per frame:
//! `O(L·(W + log T)·d)` sparse, `O(L·T·d)` dense; no allocation after construction.
//!
//! [`RollingWindow`] keeps the last `N` frames in a ring and classifies them with a
//! full prefill on demand (firmware style: push at the frame rate, classify at 1 Hz).

use alloc::vec;
use alloc::vec::Vec;

use crate::attention::{attend_one, KvSource};
use crate::config::{Backend, HeadConfig, Pooling};
use crate::error::{HeadError, Result};
use crate::model::{check_frames, TemporalHead, Workspace};

/// What a [`Stream`] does when its caches are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Refuse the frame with [`HeadError::CapacityExceeded`]; the state is unchanged.
    #[default]
    Refuse,
    /// Evict the oldest position (a ring): candidates older than `capacity` positions
    /// (and landmarks older than `ceil(capacity/B) + 1` blocks) are skipped. Exactness
    /// with the full forward ends at the first eviction; positions keep counting.
    Slide,
}

#[derive(Debug, Clone)]
struct LayerCache {
    k: Vec<f32>,
    v: Vec<f32>,
    lk: Vec<f32>,
    lv: Vec<f32>,
    sum_k: Vec<f32>,
    sum_v: Vec<f32>,
}

struct CacheKv<'c> {
    c: &'c LayerCache,
    cap: usize,
    lcap: usize,
    width: usize,
}

impl KvSource for CacheKv<'_> {
    #[inline]
    fn key(&self, j: usize) -> &[f32] {
        let s = (j % self.cap) * self.width;
        &self.c.k[s..s + self.width]
    }
    #[inline]
    fn value(&self, j: usize) -> &[f32] {
        let s = (j % self.cap) * self.width;
        &self.c.v[s..s + self.width]
    }
    #[inline]
    fn lkey(&self, b: usize) -> &[f32] {
        let s = (b % self.lcap) * self.width;
        &self.c.lk[s..s + self.width]
    }
    #[inline]
    fn lvalue(&self, b: usize) -> &[f32] {
        let s = (b % self.lcap) * self.width;
        &self.c.lv[s..s + self.width]
    }
}

/// A streaming classifier: one frame in, the logits of the stream so far out.
///
/// Detached from the head (it holds no borrow) so a C context can own both; every
/// call takes the head and checks it has the configuration the stream was built for.
#[derive(Debug, Clone)]
pub struct Stream {
    cfg: HeadConfig,
    capacity: usize,
    lcap: usize,
    overflow: Overflow,
    caches: Vec<LayerCache>,
    pos: usize,
    u: Vec<f32>,
    x: Vec<f32>,
    h: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    hid: Vec<f32>,
    idx: Vec<usize>,
    scores: Vec<f32>,
    sum: Vec<f32>,
    pooled: Vec<f32>,
    logits: Vec<f32>,
}

impl Stream {
    /// A stream for `head` holding up to `capacity` positions per layer.
    ///
    /// Refuses a non-causal pattern (its outputs depend on future frames) and `capacity == 0`.
    pub fn new(head: &TemporalHead<'_>, capacity: usize, overflow: Overflow) -> Result<Self> {
        let c = head.config().clone();
        if !c.pattern.causal {
            return Err(HeadError::Config {
                what: "pattern.causal",
                detail: "streaming needs a causal pattern".into(),
            });
        }
        if capacity == 0 {
            return Err(HeadError::Config {
                what: "capacity",
                detail: "must be positive".into(),
            });
        }
        let (kw, d) = (c.kv_width(), c.d_model);
        let lcap = capacity.div_ceil(c.pattern.block_size) + 1;
        let big = |a: usize| {
            a.checked_mul(kw).ok_or(HeadError::Config {
                what: "capacity",
                detail: "cache size overflows".into(),
            })
        };
        let (ck, cl) = (big(capacity)?, big(lcap)?);
        let caches = (0..c.layers)
            .map(|_| LayerCache {
                k: vec![0.0; ck],
                v: vec![0.0; ck],
                lk: vec![0.0; cl],
                lv: vec![0.0; cl],
                sum_k: vec![0.0; kw],
                sum_v: vec![0.0; kw],
            })
            .collect();
        // Sparse: log-stride candidates grow with log T even past the capacity, but
        // every candidate is a cached position or a stored landmark.
        let sl = match c.backend {
            Backend::Sparse => c
                .pattern
                .max_edges_per_query(usize::MAX)
                .min(capacity.saturating_add(lcap)),
            Backend::Dense => capacity,
        };
        Ok(Self {
            capacity,
            lcap,
            overflow,
            caches,
            pos: 0,
            u: vec![0.0; c.features],
            x: vec![0.0; d],
            h: vec![0.0; d],
            q: vec![0.0; c.q_width()],
            k: vec![0.0; kw],
            v: vec![0.0; kw],
            att: vec![0.0; c.q_width()],
            hid: vec![0.0; c.mlp_hidden],
            idx: vec![0; sl],
            scores: vec![0.0; sl],
            sum: vec![0.0; d],
            pooled: vec![0.0; d],
            logits: vec![0.0; c.classes],
            cfg: c,
        })
    }

    /// Frames pushed since construction or the last [`Stream::reset`].
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

    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// Whether every output so far equals the full forward (nothing evicted yet).
    pub fn is_exact(&self) -> bool {
        self.pos <= self.capacity
    }

    /// Forgets every frame: the next push is position 0 again.
    pub fn reset(&mut self) {
        self.pos = 0;
        for c in &mut self.caches {
            c.sum_k.iter_mut().for_each(|x| *x = 0.0);
            c.sum_v.iter_mut().for_each(|x| *x = 0.0);
        }
        self.sum.iter_mut().for_each(|x| *x = 0.0);
        self.logits.iter_mut().for_each(|x| *x = 0.0);
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
        let caches: usize = self
            .caches
            .iter()
            .map(|c| {
                c.k.len() + c.v.len() + c.lk.len() + c.lv.len() + c.sum_k.len() + c.sum_v.len()
            })
            .sum();
        let rows = self.u.len()
            + self.x.len()
            + self.h.len()
            + self.q.len()
            + self.k.len()
            + self.v.len()
            + self.att.len()
            + self.hid.len()
            + self.scores.len()
            + self.sum.len()
            + self.pooled.len()
            + self.logits.len();
        (caches + rows) * 4 + self.idx.len() * core::mem::size_of::<usize>()
    }

    /// Pushes one frame (`F` values) and returns the logits of the stream so far.
    ///
    /// A frame of the wrong width, with NaN/Inf, a full stream under
    /// [`Overflow::Refuse`] or a different head leave the state unchanged.
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
        if self.pos >= self.capacity && self.overflow == Overflow::Refuse {
            return Err(HeadError::CapacityExceeded {
                capacity: self.capacity,
            });
        }
        let i = self.pos;
        let n = i + 1;
        let (kw, bs) = (c.kv_width(), c.pattern.block_size);
        let tok_min = n.saturating_sub(self.capacity);
        let blocks_done = n / bs;
        let blk_min = blocks_done.saturating_sub(self.lcap);
        let slot = (i % self.capacity) * kw;
        let shape = head.attn_shape();
        head.embed_row(i, frame, &mut self.u, &mut self.x);
        for (lw, cache) in head.weights().layers.iter().zip(self.caches.iter_mut()) {
            head.project_row(
                lw,
                &self.x,
                &mut self.h,
                &mut self.q,
                &mut self.k,
                &mut self.v,
            );
            cache.k[slot..slot + kw].copy_from_slice(&self.k);
            cache.v[slot..slot + kw].copy_from_slice(&self.v);
            for (s, x) in cache.sum_k.iter_mut().zip(&self.k) {
                *s += x;
            }
            for (s, x) in cache.sum_v.iter_mut().zip(&self.v) {
                *s += x;
            }
            if n % bs == 0 {
                // Block (n / B − 1) just completed: store its mean, start the next sum.
                let b = (n / bs - 1) % self.lcap;
                let cnt = bs as f32;
                for (o, s) in cache.lk[b * kw..(b + 1) * kw]
                    .iter_mut()
                    .zip(cache.sum_k.iter_mut())
                {
                    *o = *s / cnt;
                    *s = 0.0;
                }
                for (o, s) in cache.lv[b * kw..(b + 1) * kw]
                    .iter_mut()
                    .zip(cache.sum_v.iter_mut())
                {
                    *o = *s / cnt;
                    *s = 0.0;
                }
            }
            let src = CacheKv {
                c: cache,
                cap: self.capacity,
                lcap: self.lcap,
                width: kw,
            };
            attend_one(
                &c.pattern,
                c.backend,
                shape,
                i,
                n,
                tok_min,
                blk_min,
                &self.q,
                &src,
                &mut self.idx,
                &mut self.scores,
                &mut self.att,
            );
            head.finish_row(lw, &self.att, &mut self.x, &mut self.h, &mut self.hid);
        }
        head.final_row(&mut self.x);
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
    /// A rolling window of `window` frames for `head` (preallocates everything).
    pub fn new(head: &TemporalHead<'_>, window: usize) -> Result<Self> {
        if window == 0 {
            return Err(HeadError::Config {
                what: "window",
                detail: "must be positive".into(),
            });
        }
        let f = head.config().features;
        let len = window.checked_mul(f).ok_or(HeadError::Config {
            what: "window",
            detail: "size overflows".into(),
        })?;
        Ok(Self {
            cfg: head.config().clone(),
            window,
            ring: vec![0.0; len],
            start: 0,
            len: 0,
            lin: vec![0.0; len],
            ws: Workspace::new(head, window)?,
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

    /// Bytes of the ring, the linear copy and the workspace.
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
        for r in 0..self.len {
            let s = (self.start + r) % self.window;
            self.lin[r * f..(r + 1) * f].copy_from_slice(&self.ring[s * f..(s + 1) * f]);
        }
        head.forward_into(&self.lin[..self.len * f], &mut self.ws, logits)
    }
}
