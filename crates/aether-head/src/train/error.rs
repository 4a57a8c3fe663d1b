//! The typed error of training, evaluation and export.

use core::fmt;

/// Every way a training call can refuse its input.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TrainError {
    /// An inconsistent architecture or training setting.
    Config {
        /// The setting (`epochs`, `kv_heads`, `architecture`, …).
        what: &'static str,
        /// Why it is refused.
        detail: String,
    },
    /// A window whose frame buffer is empty or not a multiple of the feature count.
    WindowShape {
        /// Index of the window in the slice given.
        index: usize,
        /// Length of its frame buffer.
        len: usize,
        /// Features per frame expected.
        features: usize,
    },
    /// A window label outside `0..classes`.
    Label {
        /// Index of the window in the slice given.
        index: usize,
        /// The label.
        label: usize,
        /// Number of classes.
        classes: usize,
    },
    /// A NaN or infinite input value.
    NonFinite {
        /// What held it.
        what: String,
        /// Flat index of the first offending element.
        index: usize,
    },
    /// No training windows were given.
    Empty,
    /// Slices that must have equal lengths do not.
    LengthMismatch {
        /// Which argument.
        what: &'static str,
        /// The length implied by the other arguments.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// The loss or a gradient became non-finite (learning rate too high?).
    Diverged {
        /// Epoch (0-based) where it happened.
        epoch: usize,
    },
    /// The model cannot be written in the requested format.
    Export(String),
    /// An attention kernel refused its input.
    Kernel(aether_kernel::KernelError),
}

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainError::Config { what, detail } => {
                write!(f, "invalid configuration: {what} {detail}")
            }
            TrainError::WindowShape {
                index,
                len,
                features,
            } => write!(
                f,
                "window {index}: {len} values is not a positive multiple of {features} features"
            ),
            TrainError::Label {
                index,
                label,
                classes,
            } => write!(
                f,
                "window {index}: label {label} out of range for {classes} classes"
            ),
            TrainError::NonFinite { what, index } => {
                write!(f, "non-finite value in {what} at element {index}")
            }
            TrainError::Empty => write!(f, "no training windows"),
            TrainError::LengthMismatch {
                what,
                expected,
                got,
            } => write!(f, "length of {what}: expected {expected}, got {got}"),
            TrainError::Diverged { epoch } => write!(
                f,
                "training diverged in epoch {epoch}: non-finite loss or gradient (lower the learning rate)"
            ),
            TrainError::Export(m) => write!(f, "cannot export: {m}"),
            TrainError::Kernel(e) => write!(f, "attention kernel: {e}"),
        }
    }
}

impl std::error::Error for TrainError {}

impl TrainError {
    /// A [`TrainError::Config`] for `what`, refused because of `detail`.
    pub fn config(what: &'static str, detail: impl Into<String>) -> Self {
        TrainError::Config {
            what,
            detail: detail.into(),
        }
    }
}

impl From<crate::HeadError> for TrainError {
    /// A head configuration error keeps its setting and reason; anything else a head
    /// refuses while training (a format or shape error) is an export failure.
    fn from(e: crate::HeadError) -> Self {
        match e {
            crate::HeadError::Config { what, detail } => TrainError::Config { what, detail },
            other => TrainError::Export(other.to_string()),
        }
    }
}

impl From<aether_kernel::KernelError> for TrainError {
    fn from(e: aether_kernel::KernelError) -> Self {
        TrainError::Kernel(e)
    }
}
