//! Typed errors of the integer head: every refused input names what was wrong.

use alloc::boxed::Box;
use core::fmt;

/// Every way loading or running the integer head can fail. Nothing panics on user input.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum QuantError {
    /// The weight file could not be read.
    Format {
        /// The format crate's error (boxed: it carries inline names and shapes).
        source: Box<aether_rvne::Error>,
    },
    /// The blob is a float model (run it with aether-head) or lacks int8 tables.
    NotInt8,
    /// The model is valid but outside what the integer path supports.
    Unsupported {
        /// What.
        what: &'static str,
        /// The offending value.
        value: usize,
        /// The largest supported value.
        max: usize,
    },
    /// A frame buffer is not a whole number of frames of the model's width.
    FrameWidth {
        /// The model's input width `F`.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// An input value is NaN or infinite.
    NonFiniteInput {
        /// Frame index.
        frame: usize,
        /// Feature index.
        feature: usize,
    },
    /// An empty sequence was given.
    EmptySequence,
    /// A sequence is longer than the workspace was built for.
    TooLong {
        /// Frames the workspace holds.
        max: usize,
        /// Frames given.
        got: usize,
    },
    /// A stream's caches are full.
    CapacityExceeded {
        /// Positions each cache holds.
        capacity: usize,
    },
    /// An output slice has the wrong length.
    OutputLen {
        /// Which output.
        what: &'static str,
        /// Elements expected.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// A workspace or stream was built for another model.
    WorkspaceMismatch,
    /// A streaming pattern must be causal.
    NotCausal,
    /// A setting is invalid (zero capacity, horizon 1, …).
    Config {
        /// Which setting.
        what: &'static str,
        /// Why.
        detail: &'static str,
    },
    /// The allocator refused a buffer (or its size overflows); nothing was built.
    NoMemory {
        /// Which buffer.
        what: &'static str,
        /// Bytes requested (`None`: the size overflows).
        bytes: Option<usize>,
    },
}

impl QuantError {
    /// Wraps a format error.
    pub fn format(source: aether_rvne::Error) -> Self {
        QuantError::Format {
            source: Box::new(source),
        }
    }
}

impl From<aether_rvne::Error> for QuantError {
    fn from(e: aether_rvne::Error) -> Self {
        QuantError::format(e)
    }
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use QuantError::*;
        match self {
            Format { source } => write!(f, "model file: {source}"),
            NotInt8 => write!(
                f,
                "not an int8 model: a float model runs on the float head (aether-head)"
            ),
            Unsupported { what, value, max } => write!(
                f,
                "the integer head does not support {what} {value} (at most {max})"
            ),
            FrameWidth { expected, got } => write!(
                f,
                "frames of {expected} values expected, got a buffer of {got}"
            ),
            NonFiniteInput { frame, feature } => write!(
                f,
                "input frame {frame}, feature {feature} is NaN or infinite"
            ),
            EmptySequence => write!(f, "empty sequence"),
            TooLong { max, got } => {
                write!(f, "sequence of {got} frames, the workspace holds {max}")
            }
            CapacityExceeded { capacity } => write!(f, "stream caches full ({capacity} positions)"),
            OutputLen {
                what,
                expected,
                got,
            } => write!(f, "{what}: {got} elements given, {expected} expected"),
            WorkspaceMismatch => write!(f, "workspace or stream built for another model"),
            NotCausal => write!(f, "streaming needs a causal pattern"),
            Config { what, detail } => write!(f, "{what}: {detail}"),
            NoMemory {
                what,
                bytes: Some(b),
            } => write!(f, "out of memory allocating {what} ({b} bytes)"),
            NoMemory { what, bytes: None } => write!(f, "the size of {what} overflows"),
        }
    }
}

impl core::error::Error for QuantError {}

/// Result with [`QuantError`].
pub type Result<T> = core::result::Result<T, QuantError>;

/// `n` copies of `value` in a vector allocated fallibly: a refusal (or a size that
/// overflows) is [`QuantError::NoMemory`] instead of the allocation-error handler.
pub(crate) fn try_vec<T: Clone>(
    n: usize,
    value: T,
    what: &'static str,
) -> Result<alloc::vec::Vec<T>> {
    aether_kernel::fallible::try_filled(n, value).ok_or(QuantError::NoMemory {
        what,
        bytes: n.checked_mul(core::mem::size_of::<T>()),
    })
}
