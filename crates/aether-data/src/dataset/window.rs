//! Cutting recordings into windows: length, stride and the short-recording policy.

use super::{DataError, Dataset};

impl Dataset {
    /// Cuts every recording into windows (see [`WindowConfig`]).
    pub fn windows(&self, cfg: WindowConfig) -> Result<(Vec<Window>, Vec<usize>), DataError> {
        if cfg.len == 0 || cfg.stride == 0 {
            return Err(DataError::BadWindow {
                len: cfg.len,
                stride: cfg.stride,
            });
        }
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for (i, _) in self.recordings.iter().enumerate() {
            let t = self.len_of(i);
            if t < cfg.len {
                match cfg.short {
                    ShortPolicy::Skip => skipped.push(i),
                    ShortPolicy::Whole => out.push(Window {
                        recording: i,
                        start: 0,
                        frames: t,
                        len: t,
                    }),
                    ShortPolicy::Pad => out.push(Window {
                        recording: i,
                        start: 0,
                        frames: t,
                        len: cfg.len,
                    }),
                }
                continue;
            }
            let mut start = 0;
            loop {
                out.push(Window {
                    recording: i,
                    start,
                    frames: cfg.len,
                    len: cfg.len,
                });
                if start + cfg.len == t {
                    break;
                }
                start = if start + cfg.stride + cfg.len <= t {
                    start + cfg.stride
                } else {
                    t - cfg.len
                };
            }
        }
        Ok((out, skipped))
    }

    /// Copies window `w` into `out` as `w.len × D` row-major; a padded window
    /// repeats its last frame.
    pub fn window_data(&self, w: &Window, out: &mut Vec<f32>) {
        let d = self.dim();
        let r = &self.recordings[w.recording];
        out.clear();
        out.extend_from_slice(&r.frames[w.start * d..(w.start + w.frames) * d]);
        if w.frames > 0 {
            let last = (w.start + w.frames - 1) * d;
            for _ in w.frames..w.len {
                out.extend_from_slice(&r.frames[last..last + d]);
            }
        }
    }
}

/// What to do with a recording shorter than the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShortPolicy {
    /// Skip it (its index is returned by [`Dataset::windows`]).
    Skip,
    /// One window of the whole recording (shorter than `len`).
    #[default]
    Whole,
    /// One window padded to `len` by repeating the last frame.
    Pad,
}

/// Window length, stride and the short-recording policy.
///
/// Windows start at `0, stride, 2·stride, …` while they fit; if frames remain
/// after the last one, a final window ending at the last frame is added, so
/// every frame is covered when `stride ≤ len` (and the last frame always is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Window length in frames.
    pub len: usize,
    /// Stride in frames.
    pub stride: usize,
    /// Policy for recordings shorter than `len`.
    pub short: ShortPolicy,
}

/// One window: frames `start .. start + frames` of a recording, presented as
/// `len` frames (`len > frames` only when padded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Recording index.
    pub recording: usize,
    /// First frame.
    pub start: usize,
    /// Frames taken from the recording.
    pub frames: usize,
    /// Frames presented (after padding).
    pub len: usize,
}
