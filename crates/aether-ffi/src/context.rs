//! [`Context`]: the firmware's classifier state, as a safe Rust API.
//!
//! ```text
//! init:      blob ─► BlobView::parse (validate: magic, version, lengths, CRC, contents)
//!                 ─► F == input_dim, C == n_classes
//!                 ─► every buffer allocated once, fallibly (a refusal or an overflowing
//!                    size is ESP_ERR_NO_MEM, never an abort; sizes: Workspace::compact_bytes)
//!                 ─► f32 model:  TemporalHead::from_view (borrows the aligned f32 tensors)
//!                                + Workspace::compact for N frames
//!                    int8 model: aether_quant::QuantHead::from_view (borrows the i8 / i32
//!                                tensors) + QWorkspace for N frames (docs/int8.md)
//!                 ─► ring [N·F] + logits [C]
//! push:      ring[(start + len) mod N] = frame                    O(F), no allocation
//! classify:  rotate the ring in place so the oldest frame is row 0 (O(N·F)),
//!            TemporalHead::forward_compact_into(ring[..len·F]) ─► logits   no allocation
//!            (int8: QuantHead::forward_into ─► i32 logits ─► f32, exactly q·2^−shift,
//!            assembled from integers: no float arithmetic on the node)
//! ```
//!
//! The kind of model is read from the blob (v2 feature bit 10); the ABI is the same.
//!
//! The workspace is aether-head's compact layout (row-wise attention), the smallest the
//! head offers, on the host too, so the host tests run the node's code path: `x [N·D]`
//! plus, when `D < 2·Hkv·dh` (the AETHER default head), the layer inputs `h [N·D]` with
//! `Wk`/`Wv` absorbed into each query (`q·k_j = (Wk·q)·h_j + const`,
//! `Σ w_j v_j = (Σ w_j h_j)·Wv + bv`), else `k, v [N·Hkv·dh]`; the block means and a
//! few rows. Working set after init (weights excluded, they stay in the caller's
//! buffer): `4·(N·F + C)` plus the workspace; README.md has the numbers.

use alloc::vec::Vec;

use aether_head::{HeadError, TemporalHead, Workspace};
use aether_quant::{QWorkspace, QuantHead};
use aether_rvne::BlobView;

use crate::status::Error;

/// Largest `window_len` accepted (frames). Keeps every buffer size far from overflow on
/// 32-bit targets; the node's use cases need at most ~500.
pub const MAX_WINDOW: u32 = 1 << 16;

/// The head a context runs: the float head with its compact workspace, or the integer
/// head (int8 model) with its workspace and an i32 logits row.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per context, built once at init; never moved in a loop
enum Engine<'a> {
    Float {
        head: TemporalHead<'a>,
        ws: Workspace,
    },
    Int8 {
        head: QuantHead<'a>,
        ws: QWorkspace,
        q: Vec<i32>,
    },
}

/// The classifier state behind one `ruv_temporal_ctx_t`: the head (borrowing the blob),
/// a ring of the last `window` frames and all forward scratch, allocated once.
#[derive(Debug)]
pub struct Context<'a> {
    engine: Engine<'a>,
    ring: Vec<f32>,
    logits: Vec<f32>,
    features: usize,
    classes: usize,
    window: usize,
    start: usize,
    len: usize,
}

/// A zeroed `Vec<f32>` of `len`, or [`Error::NoMem`] when the allocator refuses.
fn zeroed(len: usize) -> Result<Vec<f32>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::NoMem {
        bytes: len.checked_mul(4),
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

impl<'a> Context<'a> {
    /// Validates `blob` (`.rvne` v1 or v2), checks `input_dim` and `n_classes` against
    /// it and allocates everything: the ring of `window_len` frames and all forward
    /// scratch. Aligned f32 tensors are borrowed from `blob`; the others are copied once.
    pub fn new(
        blob: &'a [u8],
        input_dim: u32,
        window_len: u32,
        n_classes: u32,
    ) -> Result<Self, Error> {
        if window_len == 0 || window_len > MAX_WINDOW {
            return Err(Error::Window { got: window_len });
        }
        let view = BlobView::parse(blob).map_err(Error::Blob)?;
        let dims = view.meta().dims;
        if usize::try_from(input_dim).ok() != Some(dims.input_dim) {
            return Err(Error::InputDim {
                blob: dims.input_dim,
                given: input_dim,
            });
        }
        if usize::try_from(n_classes).ok() != Some(dims.classes) {
            return Err(Error::Classes {
                blob: dims.classes,
                given: n_classes,
            });
        }
        let window = usize::try_from(window_len).map_err(|_| Error::Window { got: window_len })?;
        let engine = if view.is_int8() {
            let head = QuantHead::from_view(&view)?;
            let ws = QWorkspace::new(&head, window)?;
            let mut q = Vec::new();
            q.try_reserve_exact(dims.classes)
                .map_err(|_| Error::NoMem {
                    bytes: dims.classes.checked_mul(4),
                })?;
            q.resize(dims.classes, 0);
            Engine::Int8 { head, ws, q }
        } else {
            let head = TemporalHead::from_view(&view)?;
            let ws = Workspace::compact(&head, window)?;
            Engine::Float { head, ws }
        };
        let features = dims.input_dim;
        let ring = zeroed(
            window
                .checked_mul(features)
                .ok_or(Error::NoMem { bytes: None })?,
        )?;
        let logits = zeroed(dims.classes)?;
        Ok(Self {
            engine,
            ring,
            logits,
            features,
            classes: dims.classes,
            window,
            start: 0,
            len: 0,
        })
    }

    /// The float head (`None` for an int8 model).
    pub fn head(&self) -> Option<&TemporalHead<'a>> {
        match &self.engine {
            Engine::Float { head, .. } => Some(head),
            Engine::Int8 { .. } => None,
        }
    }

    /// The integer head of an int8 model (`None` for a float model).
    pub fn quant_head(&self) -> Option<&QuantHead<'a>> {
        match &self.engine {
            Engine::Int8 { head, .. } => Some(head),
            Engine::Float { .. } => None,
        }
    }

    /// Whether the blob is an int8 model (run by the integer head).
    pub fn is_int8(&self) -> bool {
        matches!(self.engine, Engine::Int8 { .. })
    }

    /// Features per frame `F`.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Classes `C`.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The window length `N`.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Frames held (`min(pushed, N)`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of every buffer the context allocated: ring, logits, workspace and weights
    /// that could not be borrowed (bookkeeping structs excluded; README.md has totals).
    pub fn buffer_bytes(&self) -> usize {
        let own = match &self.engine {
            Engine::Float { head, .. } => head.owned_weight_bytes(),
            Engine::Int8 { head, q, .. } => head.owned_bytes() + q.len() * 4,
        };
        (self.ring.len() + self.logits.len()) * 4 + self.workspace_bytes() + own
    }

    /// Bytes of the forward's workspace (the largest part of the working set).
    pub fn workspace_bytes(&self) -> usize {
        match &self.engine {
            Engine::Float { ws, .. } => ws.bytes(),
            Engine::Int8 { ws, .. } => ws.bytes(),
        }
    }

    /// The float forward's [`Workspace`] (aether-head's compact layout; `None` for an
    /// int8 model).
    pub fn workspace(&self) -> Option<&Workspace> {
        match &self.engine {
            Engine::Float { ws, .. } => Some(ws),
            Engine::Int8 { .. } => None,
        }
    }

    /// Appends one frame (`F` values), dropping the oldest when the window is full.
    /// NaN/Inf is refused and leaves the ring unchanged. O(F), no allocation.
    pub fn push(&mut self, frame: &[f32]) -> Result<(), Error> {
        let f = self.features;
        if frame.len() != f {
            return Err(Error::Head(HeadError::FrameWidth {
                expected: f,
                got: frame.len(),
            }));
        }
        if let Some(feature) = frame.iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFiniteFrame { feature });
        }
        let slot = (self.start + self.len) % self.window;
        if let Some(dst) = self.ring.chunks_exact_mut(f).nth(slot) {
            dst.copy_from_slice(frame);
        }
        if self.len < self.window {
            self.len += 1;
        } else {
            self.start = (self.start + 1) % self.window;
        }
        Ok(())
    }

    /// Logits (`C`) of the last `min(pushed, N)` frames, oldest first, into `logits`:
    /// [`TemporalHead::forward_compact_into`] (an int8 model: [`QuantHead::forward_into`],
    /// logits `q · 2^−shift`) on exactly those frames. No allocation. On error `logits` is
    /// left untouched.
    pub fn classify(&mut self, logits: &mut [f32]) -> Result<(), Error> {
        if logits.len() != self.classes {
            return Err(Error::Head(HeadError::OutputLen {
                what: "logits",
                expected: self.classes,
                got: logits.len(),
            }));
        }
        if self.len == 0 {
            return Err(Error::NoFrames);
        }
        let f = self.features;
        if self.start != 0 {
            // Only a full ring wraps; rotating puts the oldest frame first, in place.
            self.ring.rotate_left(self.start * f);
            self.start = 0;
        }
        let frames = self.ring.get(..self.len * f).unwrap_or(&[]);
        match &mut self.engine {
            Engine::Float { head, ws } => {
                head.forward_compact_into(frames, ws, &mut self.logits)?
            }
            Engine::Int8 { head, ws, q } => {
                head.forward_into(frames, ws, q)?;
                head.logits_to_f32(q, &mut self.logits);
            }
        }
        logits.copy_from_slice(&self.logits);
        Ok(())
    }

    /// The frames held, oldest first, copied into `out` (`len·F` values); for tests and
    /// diagnostics.
    pub fn frames_into(&self, out: &mut [f32]) -> Result<(), Error> {
        let f = self.features;
        if out.len() != self.len * f {
            return Err(Error::Head(HeadError::OutputLen {
                what: "frames",
                expected: self.len * f,
                got: out.len(),
            }));
        }
        for (r, dst) in out.chunks_exact_mut(f).enumerate() {
            let s = (self.start + r) % self.window;
            if let Some(src) = self.ring.chunks_exact(f).nth(s) {
                dst.copy_from_slice(src);
            }
        }
        Ok(())
    }
}
