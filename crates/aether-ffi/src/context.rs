//! [`Context`]: the firmware's classifier state, as a safe Rust API.
//!
//! ```text
//! init:      blob ─► BlobView::parse (validate: magic, version, lengths, CRC, contents)
//!                 ─► F == input_dim, C == n_classes
//!                 ─► probe the allocator for every large buffer (ESP_ERR_NO_MEM, never abort)
//!                 ─► TemporalHead::from_view (borrows the aligned f32 tensors)
//!                 ─► ring [N·F] + Workspace::compact for N frames + logits [C]
//! push:      ring[(start + len) mod N] = frame                    O(F), no allocation
//! classify:  rotate the ring in place so the oldest frame is row 0 (O(N·F)),
//!            TemporalHead::forward_compact_into(ring[..len·F]) ─► logits   no allocation
//! ```
//!
//! The workspace is aether-head's compact layout (row-wise attention), the smallest the
//! head offers, on the host too, so the host tests run the node's code path: `x [N·D]`
//! plus, when `D < 2·Hkv·dh` (the AETHER default head), the layer inputs `h [N·D]` with
//! `Wk`/`Wv` absorbed into each query (`q·k_j = (Wk·q)·h_j + const`,
//! `Σ w_j v_j = (Σ w_j h_j)·Wv + bv`), else `k, v [N·Hkv·dh]`; the block means and a
//! few rows. Working set after init (weights excluded, they stay in the caller's
//! buffer): `4·(N·F + C)` plus the workspace; README.md has the numbers.

use alloc::alloc::{alloc, dealloc, Layout};
use alloc::vec::Vec;

use aether_head::{HeadError, TemporalHead, Workspace};
use aether_rvne::BlobView;

use crate::status::Error;

/// Largest `window_len` accepted (frames). Keeps every buffer size far from overflow on
/// 32-bit targets; the node's use cases need at most ~500.
pub const MAX_WINDOW: u32 = 1 << 16;

/// The classifier state behind one `ruv_temporal_ctx_t`: the head (borrowing the blob),
/// a ring of the last `window` frames and all forward scratch, allocated once.
#[derive(Debug)]
pub struct Context<'a> {
    head: TemporalHead<'a>,
    ws: Workspace,
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

/// Asks the allocator for every large buffer init is about to create (held together,
/// then released), so a refusal becomes [`Error::NoMem`] instead of the allocation-error
/// handler, and no size can reach `Vec`'s capacity-overflow panic.
fn probe(view: &BlobView<'_>, n: usize) -> Result<(), Error> {
    let d = &view.meta().dims;
    let kv_width = d.kv_heads.checked_mul(d.head_dim);
    let copied: usize = view
        .tensors()
        .filter(|t| t.as_f32().is_none())
        .map(|t| t.len())
        .fold(0usize, usize::saturating_add);
    // Workspace::compact's choice (Workspace::compact_absorbs): the layer inputs
    // h [N·D] when D < 2·Hkv·dh, else k and v [N·Hkv·dh] each.
    let absorbs = kv_width.is_some_and(|w| d.d_model < w.saturating_mul(2));
    let per_row = if absorbs { Some(d.d_model) } else { kv_width };
    let floats = [
        n.checked_mul(d.input_dim),             // ring
        n.checked_mul(d.d_model),               // x
        per_row.and_then(|w| n.checked_mul(w)), // h, or k
        if absorbs {
            Some(0)
        } else {
            kv_width.and_then(|w| n.checked_mul(w))
        }, // v
        Some(copied),                           // weights not usable in place
        n.checked_add(d.mlp_hidden.saturating_add(64)), // attention scratch, hidden row
    ];
    struct Held {
        blocks: [(*mut u8, Layout); 6],
        count: usize,
    }
    impl Drop for Held {
        fn drop(&mut self) {
            for &(p, layout) in &self.blocks[..self.count] {
                // SAFETY: `p` was returned non-null by `alloc(layout)` below and is freed once.
                unsafe { dealloc(p, layout) };
            }
        }
    }
    let mut held = Held {
        blocks: [(core::ptr::null_mut(), Layout::new::<u8>()); 6],
        count: 0,
    };
    for f in floats {
        let f = f.ok_or(Error::NoMem { bytes: None })?;
        if f == 0 {
            continue;
        }
        let layout = Layout::array::<f32>(f).map_err(|_| Error::NoMem {
            bytes: f.checked_mul(4),
        })?;
        // SAFETY: `layout` has a non-zero size (f > 0) and a valid alignment.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return Err(Error::NoMem {
                bytes: Some(layout.size()),
            });
        }
        held.blocks[held.count] = (p, layout);
        held.count += 1;
    }
    Ok(())
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
        probe(&view, window)?;
        let head = TemporalHead::from_view(&view)?;
        let features = dims.input_dim;
        let ring = zeroed(
            window
                .checked_mul(features)
                .ok_or(Error::NoMem { bytes: None })?,
        )?;
        let ws = Workspace::compact(&head, window)?;
        let logits = zeroed(dims.classes)?;
        Ok(Self {
            head,
            ws,
            ring,
            logits,
            features,
            classes: dims.classes,
            window,
            start: 0,
            len: 0,
        })
    }

    /// The head (configuration and weights).
    pub fn head(&self) -> &TemporalHead<'a> {
        &self.head
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
        (self.ring.len() + self.logits.len()) * 4 + self.ws.bytes() + self.head.owned_weight_bytes()
    }

    /// Bytes of the forward's [`Workspace`] (the largest part of the working set).
    pub fn workspace_bytes(&self) -> usize {
        self.ws.bytes()
    }

    /// The forward's [`Workspace`] (aether-head's compact layout; see the module docs).
    pub fn workspace(&self) -> &Workspace {
        &self.ws
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
    /// [`TemporalHead::forward_compact_into`] on exactly those frames. No allocation. On error
    /// `logits` is left untouched.
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
        self.head
            .forward_compact_into(frames, &mut self.ws, &mut self.logits)?;
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
