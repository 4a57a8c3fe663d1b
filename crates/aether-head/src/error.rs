//! Typed errors of the head: every refused input names what was wrong.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use aether_kernel::KernelError;

/// Every way building or running a head can fail. Nothing in this crate panics on user input.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HeadError {
    /// An attention kernel refused its input.
    Kernel {
        /// What the head was doing.
        context: &'static str,
        /// The kernel's error.
        source: KernelError,
    },
    /// The weight file could not be read.
    Format {
        /// The format crate's error (boxed: it carries inline names and shapes).
        source: Box<aether_rvne::Error>,
    },
    /// A configuration value is invalid (zero dimension, heads not divisible, …).
    Config {
        /// Which value.
        what: &'static str,
        /// Why it is refused.
        detail: String,
    },
    /// A tensor the configuration requires is absent.
    MissingTensor {
        /// The tensor name (docs/model.md).
        name: String,
    },
    /// A tensor has the wrong number of elements.
    TensorShape {
        /// The tensor name (docs/model.md).
        name: String,
        /// Elements the configuration implies.
        expected: usize,
        /// Elements found.
        got: usize,
    },
    /// A weight is NaN or infinite.
    NonFiniteWeight {
        /// The tensor name.
        name: String,
        /// Flat index of the first offending element.
        index: usize,
    },
    /// A frame buffer is not a whole number of frames of the model's width.
    FrameWidth {
        /// The model's input width `F`.
        expected: usize,
        /// The length given (of one frame, or of the whole buffer when not a multiple of `F`).
        got: usize,
    },
    /// An input value is NaN or infinite.
    NonFiniteInput {
        /// Frame index (0-based) within the call.
        frame: usize,
        /// Feature index (0-based) within the frame.
        feature: usize,
    },
    /// A sequence with no frames cannot be pooled.
    EmptySequence,
    /// The sequence is longer than the workspace (or stream) was sized for.
    TooLong {
        /// Maximum length supported.
        max: usize,
        /// Length requested.
        got: usize,
    },
    /// The stream's KV caches are full and the eviction policy is `Error`.
    CapacityExceeded {
        /// Capacity in positions.
        capacity: usize,
    },
    /// An output buffer has the wrong length.
    OutputLen {
        /// Which output.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// The workspace was built for a different model shape.
    WorkspaceMismatch,
    /// Finite input produced a non-finite result (values too large for f32).
    NumericOverflow,
    /// A kernel refusal midway through a push left the stream inconsistent: reset it.
    StreamPoisoned,
    /// Nothing to classify yet (the rolling window or stream holds no frame).
    NoFrames,
    /// The allocator refused a buffer (or its size overflows); nothing was built.
    NoMemory {
        /// Which buffer.
        what: &'static str,
        /// Bytes requested (`None`: the size overflows).
        bytes: Option<usize>,
    },
}

/// `n` copies of `value` in a vector allocated fallibly: a refusal (or a size that
/// overflows) is [`HeadError::NoMemory`] instead of the allocation-error handler, so a
/// node gets an error code rather than an abort.
pub(crate) fn try_vec<T: Clone>(
    n: usize,
    value: T,
    what: &'static str,
) -> Result<alloc::vec::Vec<T>> {
    aether_kernel::fallible::try_filled(n, value).ok_or(HeadError::NoMemory {
        what,
        bytes: n.checked_mul(core::mem::size_of::<T>()),
    })
}

impl HeadError {
    /// Wraps a `.rvne` format error.
    pub fn format(source: aether_rvne::Error) -> Self {
        HeadError::Format {
            source: Box::new(source),
        }
    }

    /// Wraps a kernel error with what the head was doing.
    pub fn kernel(context: &'static str, source: KernelError) -> Self {
        HeadError::Kernel { context, source }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Kernel { context, source } => write!(f, "{context}: {source}"),
            HeadError::Format { source } => write!(f, "weight file: {source}"),
            HeadError::Config { what, detail } => write!(f, "invalid config {what}: {detail}"),
            HeadError::MissingTensor { name } => write!(f, "missing tensor `{name}`"),
            HeadError::TensorShape {
                name,
                expected,
                got,
            } => write!(
                f,
                "tensor `{name}` has {got} elements, the config needs {expected}"
            ),
            HeadError::NonFiniteWeight { name, index } => {
                write!(f, "tensor `{name}` has a non-finite value at element {index}")
            }
            HeadError::FrameWidth { expected, got } => write!(
                f,
                "frame width mismatch: the model takes {expected} features per frame, got {got} values"
            ),
            HeadError::NonFiniteInput { frame, feature } => write!(
                f,
                "non-finite input at frame {frame}, feature {feature}"
            ),
            HeadError::EmptySequence => write!(f, "empty sequence: at least one frame is needed"),
            HeadError::TooLong { max, got } => {
                write!(f, "sequence of {got} frames exceeds the maximum of {max}")
            }
            HeadError::CapacityExceeded { capacity } => write!(
                f,
                "stream is full ({capacity} frames) and its overflow policy refuses more"
            ),
            HeadError::OutputLen {
                what,
                expected,
                got,
            } => write!(f, "{what} buffer has length {got}, expected {expected}"),
            HeadError::WorkspaceMismatch => {
                write!(f, "workspace was built for a model of a different shape")
            }
            HeadError::NumericOverflow => {
                write!(f, "the result overflowed f32 (input values too large)")
            }
            HeadError::StreamPoisoned => {
                write!(f, "stream state is inconsistent after a failed push: reset it")
            }
            HeadError::NoFrames => write!(f, "no frames pushed yet"),
            HeadError::NoMemory { what, bytes: Some(b) } => {
                write!(f, "out of memory allocating {what} ({b} bytes)")
            }
            HeadError::NoMemory { what, bytes: None } => {
                write!(f, "the size of {what} overflows")
            }
        }
    }
}

impl core::error::Error for HeadError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            HeadError::Kernel { source, .. } => Some(source),
            HeadError::Format { source } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = core::result::Result<T, HeadError>;
