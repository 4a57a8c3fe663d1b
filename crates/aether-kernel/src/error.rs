//! Typed errors of the attention kernels.

use core::fmt;

/// Every way a kernel call can refuse its input. No kernel panics on user input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// A buffer length disagrees with the shape it should hold.
    ShapeMismatch {
        /// Which argument or dimension.
        what: &'static str,
        /// The length or size the other arguments imply.
        expected: usize,
        /// The length or size given.
        got: usize,
    },
    /// A dimension that must be positive is zero.
    ZeroDim {
        /// Which dimension.
        what: &'static str,
    },
    /// `q_heads` is not a multiple of `kv_heads`.
    HeadsNotDivisible {
        /// Query heads.
        q_heads: usize,
        /// Key/value heads.
        kv_heads: usize,
    },
    /// `block_size` is zero.
    BlockSizeZero,
    /// A size computation overflowed `usize`.
    Overflow {
        /// Which size.
        what: &'static str,
    },
    /// The KV cache is full and no eviction policy was chosen.
    CapacityExceeded {
        /// The cache capacity in positions.
        capacity: usize,
    },
    /// The KV cache holds no position to attend.
    EmptyCache,
    /// A value that must be finite is NaN or infinite.
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Flat index of the first offending element.
        index: usize,
    },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::ShapeMismatch {
                what,
                expected,
                got,
            } => {
                write!(
                    f,
                    "shape mismatch in {what}: expected {expected}, got {got}"
                )
            }
            KernelError::ZeroDim { what } => write!(f, "dimension {what} must be positive"),
            KernelError::HeadsNotDivisible { q_heads, kv_heads } => write!(
                f,
                "q_heads ({q_heads}) must be a positive multiple of kv_heads ({kv_heads})"
            ),
            KernelError::BlockSizeZero => write!(f, "block_size must be positive"),
            KernelError::Overflow { what } => write!(f, "size of {what} overflows usize"),
            KernelError::CapacityExceeded { capacity } => {
                write!(
                    f,
                    "KV cache is full ({capacity} positions) and no eviction policy is set"
                )
            }
            KernelError::EmptyCache => {
                write!(f, "KV cache is empty: push a position before decoding")
            }
            KernelError::NonFinite { what, index } => {
                write!(f, "non-finite value in {what} at element {index}")
            }
        }
    }
}

impl core::error::Error for KernelError {}

/// Result alias of this crate.
pub type Result<T> = core::result::Result<T, KernelError>;
