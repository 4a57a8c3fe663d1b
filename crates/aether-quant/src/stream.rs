//! Bit-exact integer streaming: [`QStream`] pushes one frame through per-layer int8 KV
//! caches (and landmark means, computed when a block completes) and returns the logits
//! of every frame since the last reset; with a causal pattern they equal
//! [`QuantHead::forward`] over those frames exactly. [`QLiveStream`] runs two staggered
//! streams over a horizon `H` with the float head's restart rule (aether-head
//! `LiveStream`), what `aether serve` and `aether classify --stream` run for int8 models.
//!
//! Cost per frame: `O(L·(W + log T)·d)` sparse, `O(L·T·d)` dense; no allocation after
//! construction. Memory: `2·L·capacity·Hkv·dh` bytes of caches plus rows.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::{QuantError, Result};
use crate::forward::signature;
use crate::model::{block_mean, IntRunningNorm, KvRows, QuantHead};

#[derive(Debug, Clone)]
struct LayerCache {
    k: Vec<i8>,
    v: Vec<i8>,
    lk: Vec<i8>,
    lv: Vec<i8>,
}

/// A streaming integer classifier: one frame in, the logits of the stream so far out.
/// Detached from the head (it holds no borrow); every call takes the head and checks it
/// was built for a head of the same shape.
#[derive(Debug, Clone)]
pub struct QStream {
    sig: [usize; 8],
    capacity: usize,
    pos: usize,
    caches: Vec<LayerCache>,
    r: Vec<i32>,
    u: Vec<i16>,
    x: Vec<i16>,
    h: Vec<i16>,
    q: Vec<i16>,
    k: Vec<i8>,
    v: Vec<i8>,
    att: Vec<i16>,
    hid: Vec<i16>,
    acc: Vec<i32>,
    f: Vec<i16>,
    sum: Vec<i64>,
    pooled: Vec<i16>,
    logits: Vec<i32>,
    idx: Vec<u32>,
    scores: Vec<i32>,
    rn: IntRunningNorm,
}

impl QStream {
    /// A stream for `head` whose caches hold `capacity` positions per layer; a push
    /// beyond is [`QuantError::CapacityExceeded`]. Refuses a non-causal pattern.
    pub fn new(head: &QuantHead<'_>, capacity: usize) -> Result<Self> {
        if !head.pattern().causal {
            return Err(QuantError::NotCausal);
        }
        if capacity == 0 {
            return Err(QuantError::Config {
                what: "capacity",
                detail: "must be positive",
            });
        }
        let d = &head.meta().dims;
        let kw = head.kv_width();
        let blocks = if head.uses_landmarks() {
            capacity / head.meta().pattern.block_size
        } else {
            0
        };
        let cache_len = capacity.checked_mul(kw).ok_or(QuantError::Config {
            what: "capacity",
            detail: "cache size overflows",
        })?;
        let caches = (0..d.layers)
            .map(|_| LayerCache {
                k: vec![0; cache_len],
                v: vec![0; cache_len],
                lk: vec![0; blocks * kw],
                lv: vec![0; blocks * kw],
            })
            .collect();
        let sl = head.scratch_len(capacity);
        Ok(Self {
            sig: signature(head),
            capacity,
            pos: 0,
            caches,
            r: vec![0; d.input_dim],
            u: vec![0; d.input_dim],
            x: vec![0; d.d_model],
            h: vec![0; d.d_model],
            q: vec![0; head.q_width()],
            k: vec![0; kw],
            v: vec![0; kw],
            att: vec![0; head.q_width()],
            hid: vec![0; d.mlp_hidden],
            acc: vec![0; head.acc_width()],
            f: vec![0; d.d_model],
            sum: vec![0; d.d_model],
            pooled: vec![0; d.d_model],
            logits: vec![0; d.classes],
            idx: vec![0; sl],
            scores: vec![0; sl],
            rn: IntRunningNorm::new(if head.meta().arch.running_norm {
                d.input_dim
            } else {
                0
            }),
        })
    }

    /// Frames pushed since construction or the last reset.
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

    /// Forgets every frame: the next push is position 0 again.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.rn.reset();
        self.sum.iter_mut().for_each(|s| *s = 0);
        self.pooled.iter_mut().for_each(|s| *s = 0);
        self.logits.iter_mut().for_each(|s| *s = 0);
    }

    /// Logits (i32 at `2^−logit_shift`) after the last push (zeros before the first).
    pub fn logits(&self) -> &[i32] {
        &self.logits
    }

    /// The pooled embedding (i16 at the final scale) after the last push.
    pub fn embedding(&self) -> &[i16] {
        &self.pooled
    }

    /// Bytes of every buffer (caches and rows; weights excluded).
    pub fn bytes(&self) -> usize {
        let caches: usize = self
            .caches
            .iter()
            .map(|c| c.k.len() + c.v.len() + c.lk.len() + c.lv.len())
            .sum();
        let i16s = self.u.len()
            + self.x.len()
            + self.h.len()
            + self.q.len()
            + self.att.len()
            + self.hid.len()
            + self.f.len()
            + self.pooled.len();
        let i32s =
            self.r.len() + self.acc.len() + self.logits.len() + self.idx.len() + self.scores.len();
        caches
            + self.k.len()
            + self.v.len()
            + 2 * i16s
            + 4 * i32s
            + 8 * self.sum.len()
            + self.rn.bytes()
    }

    /// Pushes one frame (`F` values) and returns the logits of the stream so far. A frame
    /// of the wrong width or with NaN/Inf, a full stream or a different head are refused
    /// and leave the state unchanged.
    pub fn push(&mut self, head: &QuantHead<'_>, frame: &[f32]) -> Result<&[i32]> {
        if self.sig != signature(head) || self.idx.len() < head.scratch_len(self.capacity) {
            return Err(QuantError::WorkspaceMismatch);
        }
        let f = head.features();
        if frame.len() != f {
            return Err(QuantError::FrameWidth {
                expected: f,
                got: frame.len(),
            });
        }
        head.check_frames(frame)?;
        if self.pos == self.capacity {
            return Err(QuantError::CapacityExceeded {
                capacity: self.capacity,
            });
        }
        let t = self.pos;
        head.embed_row(
            t,
            frame,
            &mut self.rn,
            &mut self.r,
            &mut self.u,
            &mut self.acc,
            &mut self.x,
        )?;
        let kw = head.kv_width();
        let bs = head.meta().pattern.block_size;
        for (lw, cache) in head.layers().iter().zip(self.caches.iter_mut()) {
            let hin = head.norm_or_copy(lw.ln1.as_deref(), &self.x, &mut self.h);
            head.project_kv(lw, hin, &mut self.acc, &mut self.k, &mut self.v);
            cache.k[t * kw..(t + 1) * kw].copy_from_slice(&self.k);
            cache.v[t * kw..(t + 1) * kw].copy_from_slice(&self.v);
            if head.uses_landmarks() && (t + 1).is_multiple_of(bs) {
                let b = (t + 1) / bs - 1;
                block_mean(
                    &cache.k,
                    t + 1 - bs,
                    t + 1,
                    kw,
                    &mut cache.lk[b * kw..(b + 1) * kw],
                );
                block_mean(
                    &cache.v,
                    t + 1 - bs,
                    t + 1,
                    kw,
                    &mut cache.lv[b * kw..(b + 1) * kw],
                );
            }
            let hin = head.norm_or_copy(lw.ln1.as_deref(), &self.x, &mut self.h);
            head.project_q(lw, hin, &mut self.acc, &mut self.q);
            let src = KvRows {
                k: &cache.k,
                v: &cache.v,
                lk: &cache.lk,
                lv: &cache.lv,
                width: kw,
            };
            head.attend(
                lw,
                t,
                t + 1,
                &self.q,
                &src,
                &mut self.idx,
                &mut self.scores,
                &mut self.att,
            );
            head.finish_row(
                lw,
                &self.att,
                &mut self.x,
                &mut self.h,
                &mut self.hid,
                &mut self.acc,
            );
        }
        let n = t + 1;
        if head.pools_last() {
            head.final_row(&self.x, &mut self.pooled);
        } else {
            head.final_row(&self.x, &mut self.f);
            for (s, v) in self.sum.iter_mut().zip(&self.f) {
                *s += *v as i64;
            }
            QuantHead::pool_mean(&self.sum, n, &mut self.pooled);
        }
        head.classify_pooled(&self.pooled, &mut self.acc, &mut self.logits);
        self.pos = n;
        Ok(&self.logits)
    }
}

/// Default horizon when a model records no training window (aether-head's).
pub const DEFAULT_HORIZON: usize = 256;

/// A live integer stream over a horizon `H ≥ 2`: stream A restarts at every position
/// `t ≡ 0 (mod H)`, stream B at every `t ≡ ⌊H/2⌋ (mod H)`, and the output after frame `t`
/// is that of the one that restarted earlier, so it is [`QuantHead::forward`] over frames
/// `s..=t` exactly for the reporting stream's restart `s` (aether-head `LiveStream`'s
/// rule, same contexts). Memory: two sets of caches of `H` positions.
#[derive(Debug, Clone)]
pub struct QLiveStream {
    horizon: usize,
    a: QStream,
    b: QStream,
    t: u64,
    since: u64,
    from_b: bool,
}

impl QLiveStream {
    /// A live stream for `head` with horizon `horizon` (≥ 2; a continuous stream, horizon
    /// 0, would need cache eviction, which the integer stream does not have).
    pub fn new(head: &QuantHead<'_>, horizon: usize) -> Result<Self> {
        if horizon < 2 {
            return Err(QuantError::Config {
                what: "horizon",
                detail: "an int8 live stream needs a horizon of at least 2 (no continuous streams)",
            });
        }
        Ok(Self {
            horizon,
            a: QStream::new(head, horizon)?,
            b: QStream::new(head, horizon)?,
            t: 0,
            since: 0,
            from_b: false,
        })
    }

    /// A live stream whose next frame is at absolute position `t0` (rebuild the state by
    /// replaying the last `H` frames).
    pub fn resume_at(head: &QuantHead<'_>, horizon: usize, t0: u64) -> Result<Self> {
        let mut s = Self::new(head, horizon)?;
        s.t = t0;
        Ok(s)
    }

    /// The horizon.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Absolute position of the next frame.
    pub fn position(&self) -> u64 {
        self.t
    }

    /// Frames behind the last output.
    pub fn context(&self) -> usize {
        if self.from_b {
            self.b.len()
        } else {
            self.a.len()
        }
    }

    /// Whether the last output equals the whole forward over its context (false while a
    /// resumed stream is still warming up).
    pub fn is_exact(&self) -> bool {
        self.t == self.since || self.since >= self.horizon as u64
    }

    /// Logits after the last push (zeros before the first).
    pub fn logits(&self) -> &[i32] {
        if self.from_b {
            self.b.logits()
        } else {
            self.a.logits()
        }
    }

    /// Pooled embedding after the last push.
    pub fn embedding(&self) -> &[i16] {
        if self.from_b {
            self.b.embedding()
        } else {
            self.a.embedding()
        }
    }

    /// Bytes of both streams' buffers.
    pub fn bytes(&self) -> usize {
        self.a.bytes() + self.b.bytes()
    }

    /// Forgets every frame: the next push is position 0.
    pub fn reset(&mut self) {
        self.a.reset();
        self.b.reset();
        self.t = 0;
        self.since = 0;
        self.from_b = false;
    }

    /// Pushes one frame and returns the logits of its context. Invalid frames are refused
    /// and leave the state unchanged.
    pub fn push(&mut self, head: &QuantHead<'_>, frame: &[f32]) -> Result<&[i32]> {
        let f = head.features();
        if frame.len() != f {
            return Err(QuantError::FrameWidth {
                expected: f,
                got: frame.len(),
            });
        }
        head.check_frames(frame)?;
        let h = self.horizon as u64;
        let half = h / 2;
        if self.t.is_multiple_of(h) {
            self.a.reset();
        }
        if self.t >= half && (self.t - half).is_multiple_of(h) {
            self.b.reset();
        }
        self.a.push(head, frame)?;
        if self.t >= half {
            self.b.push(head, frame)?;
        }
        self.from_b = self.b.len() > self.a.len();
        self.t += 1;
        self.since += 1;
        Ok(self.logits())
    }
}

impl QuantHead<'_> {
    /// Whether this head can stream (a causal pattern; the dense backend uses its flag).
    pub fn can_stream(&self) -> bool {
        self.pattern().causal
    }
}
