//! The whole-window integer forward: layer by layer over a sequence held in a
//! [`QWorkspace`] (residual `x [N·D]` i16, one layer's keys and values `[N·Hkv·dh]` i8 and
//! their landmark means), no allocation after the workspace is built. Any pattern
//! (causal or not), dense or sparse.
//!
//! Per layer: first the keys and values of every position (they read `x` before the
//! layer updates it), the landmark means, then per position its query (the layer norm
//! recomputed from the unchanged `x[t]`), attention and the row's finish. The row
//! operations are [`QuantHead`]'s, the same the stream runs, so with a causal pattern
//! the logits after push `i` of a [`crate::QStream`] equal this forward over frames
//! `0..=i` bit for bit.

use alloc::vec;
use alloc::vec::Vec;

use crate::error::{try_vec, QuantError, Result};
use crate::model::{block_mean, IntRunningNorm, KvRows, QuantHead};

/// Buffers for [`QuantHead::forward_into`] on sequences up to `max_len` frames.
#[derive(Debug, Clone)]
pub struct QWorkspace {
    sig: [usize; 8],
    max_len: usize,
    pub(crate) x: Vec<i16>,
    k: Vec<i8>,
    v: Vec<i8>,
    lk: Vec<i8>,
    lv: Vec<i8>,
    r: Vec<i32>,
    u: Vec<i16>,
    h: Vec<i16>,
    q: Vec<i16>,
    att: Vec<i16>,
    hid: Vec<i16>,
    acc: Vec<i32>,
    f: Vec<i16>,
    sum: Vec<i64>,
    pooled: Vec<i16>,
    idx: Vec<u32>,
    scores: Vec<i32>,
    rn: IntRunningNorm,
}

/// What a workspace or stream was sized for (dims and pattern-dependent scratch).
pub(crate) fn signature(head: &QuantHead<'_>) -> [usize; 8] {
    let d = &head.meta().dims;
    [
        d.input_dim,
        d.d_model,
        head.q_width(),
        head.kv_width(),
        d.mlp_hidden,
        d.classes,
        head.meta().pattern.block_size,
        usize::from(head.meta().arch.running_norm) | usize::from(head.uses_landmarks()) << 1,
    ]
}

fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(QuantError::Config {
        what: "max_len",
        detail: "workspace size overflows",
    })
}

/// The sequence-dependent buffer lengths of a [`QWorkspace`], decided once for both
/// [`QWorkspace::new`] and [`QWorkspace::bytes_for`].
struct QPlan {
    max_len: usize,
    /// Residual `x [N, D]`.
    x: usize,
    /// Keys and values `[N, Hkv·dh]`, each.
    kv: usize,
    /// Landmark block means of keys and values, each.
    lm: usize,
    /// Row-wise candidate list and scores.
    sl: usize,
    /// Features of the running standardisation (0 when off).
    rn: usize,
}

impl QPlan {
    fn of(head: &QuantHead<'_>, max_len: usize) -> Result<Self> {
        let max_len = max_len.max(1);
        let d = &head.meta().dims;
        let kw = head.kv_width();
        let blocks = if head.uses_landmarks() {
            max_len.div_ceil(head.meta().pattern.block_size)
        } else {
            0
        };
        Ok(Self {
            max_len,
            x: mul(max_len, d.d_model)?,
            kv: mul(max_len, kw)?,
            lm: mul(blocks, kw)?,
            sl: head.scratch_len(max_len),
            rn: if head.meta().arch.running_norm {
                d.input_dim
            } else {
                0
            },
        })
    }
}

impl QWorkspace {
    /// Buffers for `head` on sequences of up to `max_len` frames.
    pub fn new(head: &QuantHead<'_>, max_len: usize) -> Result<Self> {
        let p = QPlan::of(head, max_len)?;
        let d = &head.meta().dims;
        Ok(Self {
            sig: signature(head),
            max_len: p.max_len,
            x: try_vec(p.x, 0, "int8 workspace x")?,
            k: try_vec(p.kv, 0, "int8 workspace k")?,
            v: try_vec(p.kv, 0, "int8 workspace v")?,
            lk: try_vec(p.lm, 0, "int8 workspace lk")?,
            lv: try_vec(p.lm, 0, "int8 workspace lv")?,
            r: try_vec(d.input_dim, 0, "int8 workspace r")?,
            u: try_vec(d.input_dim, 0, "int8 workspace u")?,
            h: try_vec(d.d_model, 0, "int8 workspace h")?,
            q: try_vec(head.q_width(), 0, "int8 workspace q")?,
            att: try_vec(head.q_width(), 0, "int8 workspace att")?,
            hid: try_vec(d.mlp_hidden, 0, "int8 workspace hid")?,
            acc: try_vec(head.acc_width(), 0, "int8 workspace acc")?,
            f: try_vec(d.d_model, 0, "int8 workspace f")?,
            sum: try_vec(d.d_model, 0, "int8 workspace sum")?,
            pooled: try_vec(d.d_model, 0, "int8 workspace pooled")?,
            idx: try_vec(p.sl, 0, "int8 workspace idx")?,
            scores: try_vec(p.sl, 0, "int8 workspace scores")?,
            rn: IntRunningNorm::try_new(p.rn)?,
        })
    }

    /// Bytes [`QWorkspace::new`] allocates for `head` at `max_len` (equal to its
    /// [`QWorkspace::bytes`]), computed without allocating.
    pub fn bytes_for(head: &QuantHead<'_>, max_len: usize) -> Result<usize> {
        let p = QPlan::of(head, max_len)?;
        let d = &head.meta().dims;
        let sum = |xs: &[usize]| xs.iter().try_fold(0usize, |a, &x| a.checked_add(x));
        let i16s = sum(&[
            p.x,
            d.input_dim, // u
            d.d_model,
            2 * head.q_width(),
            d.mlp_hidden,
            2 * d.d_model, // f, pooled
        ]);
        let i8s = sum(&[2 * p.kv, 2 * p.lm]);
        let i32s = sum(&[d.input_dim, head.acc_width(), 2 * p.sl]);
        let total = match (i16s, i8s, i32s) {
            (Some(a), Some(b), Some(c)) => a
                .checked_mul(2)
                .and_then(|a| a.checked_add(b))
                .and_then(|x| c.checked_mul(4).and_then(|c| x.checked_add(c)))
                .and_then(|x| x.checked_add(8 * d.d_model))
                .and_then(|x| x.checked_add(IntRunningNorm::bytes_for(p.rn))),
            _ => None,
        };
        total.ok_or(QuantError::Config {
            what: "max_len",
            detail: "workspace size overflows",
        })
    }

    /// Longest sequence accepted.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Bytes of every buffer (the forward's working set beyond the weights).
    pub fn bytes(&self) -> usize {
        let i16s = self.x.len()
            + self.u.len()
            + self.h.len()
            + self.q.len()
            + self.att.len()
            + self.hid.len()
            + self.f.len()
            + self.pooled.len();
        let i8s = self.k.len() + self.v.len() + self.lk.len() + self.lv.len();
        let i32s = self.r.len() + self.acc.len() + self.idx.len() + self.scores.len();
        i8s + 2 * i16s + 4 * i32s + 8 * self.sum.len() + self.rn.bytes()
    }
}

impl QuantHead<'_> {
    /// Logits (`C`, i32 at `2^−logit_shift`) of `frames` (`N·F` values, row-major, oldest
    /// first); no allocation.
    pub fn forward_into(
        &self,
        frames: &[f32],
        ws: &mut QWorkspace,
        logits: &mut [i32],
    ) -> Result<()> {
        if logits.len() != self.classes() {
            return Err(QuantError::OutputLen {
                what: "logits",
                expected: self.classes(),
                got: logits.len(),
            });
        }
        let n = self.check_frames(frames)?;
        if n == 0 {
            return Err(QuantError::EmptySequence);
        }
        if ws.sig != signature(self) || ws.idx.len() < self.scratch_len(ws.max_len) {
            return Err(QuantError::WorkspaceMismatch);
        }
        if n > ws.max_len {
            return Err(QuantError::TooLong {
                max: ws.max_len,
                got: n,
            });
        }
        let (f, d) = (self.features(), self.meta().dims.d_model);
        ws.rn.reset();
        for t in 0..n {
            self.embed_row(
                t,
                &frames[t * f..(t + 1) * f],
                &mut ws.rn,
                &mut ws.r,
                &mut ws.u,
                &mut ws.acc,
                &mut ws.x[t * d..(t + 1) * d],
            )?;
        }
        for l in 0..self.layers().len() {
            self.layer(l, n, ws);
        }
        let mut sum = core::mem::take(&mut ws.sum);
        sum.iter_mut().for_each(|s| *s = 0);
        if self.pools_last() {
            self.final_row(&ws.x[(n - 1) * d..n * d], &mut ws.pooled);
        } else {
            for t in 0..n {
                self.final_row(&ws.x[t * d..(t + 1) * d], &mut ws.f);
                for (s, v) in sum.iter_mut().zip(&ws.f) {
                    *s += *v as i64;
                }
            }
            Self::pool_mean(&sum, n, &mut ws.pooled);
        }
        ws.sum = sum;
        self.classify_pooled(&ws.pooled, &mut ws.acc, logits);
        Ok(())
    }

    /// Logits of one sequence (allocating convenience over [`QuantHead::forward_into`]).
    pub fn forward(&self, frames: &[f32]) -> Result<Vec<i32>> {
        let n = self.check_frames(frames)?;
        let mut ws = QWorkspace::new(self, n)?;
        let mut logits = vec![0; self.classes()];
        self.forward_into(frames, &mut ws, &mut logits)?;
        Ok(logits)
    }

    /// The residual `x [n·D]` after the embedding and after each layer (`L + 1` rows of
    /// `n·D`) and the logits: what the quantiser's error report compares.
    pub fn trace(&self, frames: &[f32]) -> Result<(Vec<Vec<i16>>, Vec<i32>)> {
        let n = self.check_frames(frames)?;
        if n == 0 {
            return Err(QuantError::EmptySequence);
        }
        let mut ws = QWorkspace::new(self, n)?;
        let (f, d) = (self.features(), self.meta().dims.d_model);
        for t in 0..n {
            self.embed_row(
                t,
                &frames[t * f..(t + 1) * f],
                &mut ws.rn,
                &mut ws.r,
                &mut ws.u,
                &mut ws.acc,
                &mut ws.x[t * d..(t + 1) * d],
            )?;
        }
        let mut out = vec![ws.x[..n * d].to_vec()];
        for l in 0..self.layers().len() {
            self.layer(l, n, &mut ws);
            out.push(ws.x[..n * d].to_vec());
        }
        let mut logits = vec![0; self.classes()];
        self.forward_into(frames, &mut ws, &mut logits)?;
        Ok((out, logits))
    }

    /// Layer `l` over the first `n` rows of `ws.x`, in place.
    fn layer(&self, l: usize, n: usize, ws: &mut QWorkspace) {
        let lw = &self.layers()[l];
        let (d, kw) = (self.meta().dims.d_model, self.kv_width());
        for t in 0..n {
            let hin = self.norm_or_copy(lw.ln1.as_deref(), &ws.x[t * d..(t + 1) * d], &mut ws.h);
            self.project_kv(
                lw,
                hin,
                &mut ws.acc,
                &mut ws.k[t * kw..(t + 1) * kw],
                &mut ws.v[t * kw..(t + 1) * kw],
            );
        }
        if self.uses_landmarks() {
            let bs = self.meta().pattern.block_size;
            for b in 0..n.div_ceil(bs) {
                let (lo, hi) = (b * bs, ((b + 1) * bs).min(n));
                block_mean(&ws.k, lo, hi, kw, &mut ws.lk[b * kw..(b + 1) * kw]);
                block_mean(&ws.v, lo, hi, kw, &mut ws.lv[b * kw..(b + 1) * kw]);
            }
        }
        for t in 0..n {
            let hin = self.norm_or_copy(lw.ln1.as_deref(), &ws.x[t * d..(t + 1) * d], &mut ws.h);
            self.project_q(lw, hin, &mut ws.acc, &mut ws.q);
            let src = KvRows {
                k: &ws.k,
                v: &ws.v,
                lk: &ws.lk,
                lv: &ws.lv,
                width: kw,
            };
            self.attend(
                lw,
                t,
                n,
                &ws.q,
                &src,
                &mut ws.idx,
                &mut ws.scores,
                &mut ws.att,
            );
            self.finish_row(
                lw,
                &ws.att,
                &mut ws.x[t * d..(t + 1) * d],
                &mut ws.h,
                &mut ws.hid,
                &mut ws.acc,
            );
        }
    }
}
