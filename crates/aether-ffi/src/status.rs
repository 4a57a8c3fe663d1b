//! `esp_err_t` status codes (ESP-IDF values) and the typed [`Error`]
//! behind each of them.
//!
//! | code | when |
//! |---|---|
//! | `ESP_ERR_INVALID_ARG` 0x102 | NULL or misaligned pointer, `window_len` 0 or above [`crate::MAX_WINDOW`], `input_dim` / `n_classes` not the blob's, NaN/Inf in a frame, a blob that is well-formed but describes an invalid model (zero dims, bad shapes, non-finite weights, …) |
//! | `ESP_ERR_INVALID_STATE` 0x103 | classify before any frame was pushed |
//! | `ESP_ERR_INVALID_SIZE` 0x104 | truncated blob, a length field that disagrees with the buffer, sections or tensors out of bounds, size overflow |
//! | `ESP_ERR_INVALID_CRC` 0x109 | the CRC-32 footer disagrees with the bytes |
//! | `ESP_ERR_INVALID_VERSION` 0x10A | not a `.rvne` (magic) or a version other than 1 and 2 |
//! | `ESP_ERR_NOT_SUPPORTED` 0x106 | a `.rvne` that needs a feature this build does not know (unknown v1 flag bits, v2 required features or records), an int8 model beyond the integer head's limits (a width above 511) |
//! | `ESP_ERR_NO_MEM` 0x101 | the allocator refused a buffer at init |
//! | `ESP_FAIL` −1 | the forward overflowed f32 on finite input, or (host build) a caught panic |
//!
//! The blob is validated in order (magic, version, lengths, CRC, then contents); the
//! first failed check decides the code.

use core::fmt;

use aether_head::HeadError;
use aether_quant::QuantError;

/// The firmware's status type: `int32_t`.
#[allow(non_camel_case_types)]
pub type esp_err_t = i32;

/// Success.
pub const ESP_OK: esp_err_t = 0;
/// Generic failure.
pub const ESP_FAIL: esp_err_t = -1;
/// Out of memory.
pub const ESP_ERR_NO_MEM: esp_err_t = 0x101;
/// Invalid argument.
pub const ESP_ERR_INVALID_ARG: esp_err_t = 0x102;
/// Invalid state (nothing to classify yet).
pub const ESP_ERR_INVALID_STATE: esp_err_t = 0x103;
/// Invalid size (truncated or inconsistent lengths).
pub const ESP_ERR_INVALID_SIZE: esp_err_t = 0x104;
/// Operation or feature not supported.
pub const ESP_ERR_NOT_SUPPORTED: esp_err_t = 0x106;
/// CRC or checksum mismatch.
pub const ESP_ERR_INVALID_CRC: esp_err_t = 0x109;
/// Version mismatch.
pub const ESP_ERR_INVALID_VERSION: esp_err_t = 0x10A;

/// Every way a call can fail; [`Error::status`] is the code the C caller sees.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A pointer argument is NULL.
    Null {
        /// The argument's name in `ruv_temporal.h`.
        arg: &'static str,
    },
    /// A pointer argument is not aligned for its type.
    Misaligned {
        /// The argument's name in `ruv_temporal.h`.
        arg: &'static str,
    },
    /// `window_len` is 0 or above [`crate::MAX_WINDOW`].
    Window {
        /// The value given.
        got: u32,
    },
    /// `weights_len` exceeds what a slice can describe on this target.
    BlobTooLarge {
        /// The value given.
        len: usize,
    },
    /// `input_dim` is not the blob's input width.
    InputDim {
        /// The blob's `F`.
        blob: usize,
        /// The value given.
        given: u32,
    },
    /// `n_classes` is not the blob's class count.
    Classes {
        /// The blob's `C`.
        blob: usize,
        /// The value given.
        given: u32,
    },
    /// The blob is not a valid `.rvne`.
    Blob(aether_rvne::Error),
    /// The head refused the model or the input.
    Head(HeadError),
    /// The integer head refused the int8 model or the input.
    Quant(QuantError),
    /// The allocator refused a buffer at init.
    NoMem {
        /// Bytes of the refused request (`None`: the size itself overflowed).
        bytes: Option<usize>,
    },
    /// A frame holds NaN or ±Inf (the ring is unchanged).
    NonFiniteFrame {
        /// Index of the first offending feature.
        feature: usize,
    },
    /// Classify before any frame was pushed.
    NoFrames,
    /// A panic was caught at the boundary (host build only; a bug, never expected).
    Panicked,
    /// The known-answer self test computed a wrong logit.
    SelfTest {
        /// The first class whose logit is off.
        class: usize,
    },
}

impl Error {
    /// The `esp_err_t` code of this error (module docs: the table).
    pub fn status(&self) -> esp_err_t {
        match self {
            Error::Null { .. }
            | Error::Misaligned { .. }
            | Error::Window { .. }
            | Error::InputDim { .. }
            | Error::Classes { .. }
            | Error::NonFiniteFrame { .. } => ESP_ERR_INVALID_ARG,
            Error::BlobTooLarge { .. } => ESP_ERR_INVALID_SIZE,
            Error::Blob(e) => status_of_blob_error(e),
            Error::Head(e) => status_of_head_error(e),
            Error::Quant(e) => status_of_quant_error(e),
            Error::NoMem { .. } => ESP_ERR_NO_MEM,
            Error::NoFrames => ESP_ERR_INVALID_STATE,
            Error::Panicked | Error::SelfTest { .. } => ESP_FAIL,
        }
    }
}

/// The `esp_err_t` code of a `.rvne` validation error.
pub fn status_of_blob_error(e: &aether_rvne::Error) -> esp_err_t {
    use aether_rvne::Error as E;
    match e {
        E::CrcMismatch { .. } => ESP_ERR_INVALID_CRC,
        E::BadMagic { .. } | E::UnsupportedVersion { .. } | E::HeaderLength { .. } => {
            ESP_ERR_INVALID_VERSION
        }
        E::UnknownV1Flags { .. }
        | E::UnknownRequiredFeatures { .. }
        | E::UnknownRequiredRecord { .. } => ESP_ERR_NOT_SUPPORTED,
        E::Truncated { .. }
        | E::LengthMismatch { .. }
        | E::WeightsLength { .. }
        | E::SectionOutOfBounds { .. }
        | E::RecordTruncated { .. }
        | E::RecordLength { .. }
        | E::DataOffset { .. }
        | E::TableLength { .. }
        | E::TensorLength { .. }
        | E::TensorOffset { .. }
        | E::DataEnd { .. }
        | E::Overflow { .. }
        | E::TooLarge { .. } => ESP_ERR_INVALID_SIZE,
        // Well-formed and CRC-correct, but the model it describes is invalid.
        _ => ESP_ERR_INVALID_ARG,
    }
}

/// The `esp_err_t` code of a head error.
pub fn status_of_head_error(e: &HeadError) -> esp_err_t {
    match e {
        HeadError::Format { source } => status_of_blob_error(source),
        HeadError::Config { .. }
        | HeadError::MissingTensor { .. }
        | HeadError::TensorShape { .. }
        | HeadError::NonFiniteWeight { .. }
        | HeadError::FrameWidth { .. }
        | HeadError::NonFiniteInput { .. }
        | HeadError::OutputLen { .. } => ESP_ERR_INVALID_ARG,
        HeadError::EmptySequence | HeadError::NoFrames => ESP_ERR_INVALID_STATE,
        _ => ESP_FAIL,
    }
}

/// The `esp_err_t` code of an integer-head error (an int8 model outside the integer
/// path's limits is `ESP_ERR_NOT_SUPPORTED`).
pub fn status_of_quant_error(e: &QuantError) -> esp_err_t {
    match e {
        QuantError::Format { source } => status_of_blob_error(source),
        QuantError::Unsupported { .. } => ESP_ERR_NOT_SUPPORTED,
        QuantError::EmptySequence => ESP_ERR_INVALID_STATE,
        QuantError::WorkspaceMismatch | QuantError::CapacityExceeded { .. } => ESP_FAIL,
        _ => ESP_ERR_INVALID_ARG,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Null { arg } => write!(f, "argument `{arg}` is NULL"),
            Error::Misaligned { arg } => write!(f, "argument `{arg}` is not aligned for its type"),
            Error::Window { got } => write!(
                f,
                "window_len {got} is outside 1..={}",
                crate::context::MAX_WINDOW
            ),
            Error::BlobTooLarge { len } => write!(f, "weights_len {len} is too large"),
            Error::InputDim { blob, given } => write!(
                f,
                "input_dim {given} does not match the blob's input width {blob}"
            ),
            Error::Classes { blob, given } => write!(
                f,
                "n_classes {given} does not match the blob's class count {blob}"
            ),
            Error::Blob(e) => write!(f, "weight blob: {e}"),
            Error::Head(e) => write!(f, "{e}"),
            Error::Quant(e) => write!(f, "{e}"),
            Error::NoMem { bytes: Some(b) } => write!(f, "out of memory allocating {b} bytes"),
            Error::NoMem { bytes: None } => write!(f, "buffer size overflows"),
            Error::NonFiniteFrame { feature } => {
                write!(f, "frame feature {feature} is NaN or infinite")
            }
            Error::NoFrames => write!(f, "no frame pushed yet"),
            Error::Panicked => write!(f, "internal panic caught at the C boundary"),
            Error::SelfTest { class } => {
                write!(f, "self test: logit {class} differs from the known answer")
            }
        }
    }
}

impl core::error::Error for Error {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Error::Blob(e) => Some(e),
            Error::Head(e) => Some(e),
            Error::Quant(e) => Some(e),
            _ => None,
        }
    }
}

impl From<HeadError> for Error {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::Format { source } => Error::Blob(*source),
            HeadError::NoMemory { bytes, .. } => Error::NoMem { bytes },
            e => Error::Head(e),
        }
    }
}

impl From<QuantError> for Error {
    fn from(e: QuantError) -> Self {
        match e {
            QuantError::Format { source } => Error::Blob(*source),
            QuantError::NoMemory { bytes, .. } => Error::NoMem { bytes },
            e => Error::Quant(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aether_rvne::Error as E;

    #[test]
    fn codes_are_the_esp_idf_values() {
        assert_eq!(
            [
                ESP_OK,
                ESP_FAIL,
                ESP_ERR_NO_MEM,
                ESP_ERR_INVALID_ARG,
                ESP_ERR_INVALID_STATE,
                ESP_ERR_INVALID_SIZE,
                ESP_ERR_NOT_SUPPORTED,
                ESP_ERR_INVALID_CRC,
                ESP_ERR_INVALID_VERSION
            ],
            [0, -1, 0x101, 0x102, 0x103, 0x104, 0x106, 0x109, 0x10A]
        );
    }

    #[test]
    fn blob_errors_map_to_their_codes() {
        let crc = E::CrcMismatch {
            stored: 1,
            computed: 2,
        };
        assert_eq!(status_of_blob_error(&crc), ESP_ERR_INVALID_CRC);
        assert_eq!(
            status_of_blob_error(&E::UnsupportedVersion { got: 3 }),
            ESP_ERR_INVALID_VERSION
        );
        assert_eq!(
            status_of_blob_error(&E::BadMagic { got: 0 }),
            ESP_ERR_INVALID_VERSION
        );
        let t = E::Truncated {
            what: "magic",
            needed: 4,
            available: 0,
        };
        assert_eq!(status_of_blob_error(&t), ESP_ERR_INVALID_SIZE);
        assert_eq!(
            status_of_blob_error(&E::UnknownRequiredFeatures { bits: 1 << 20 }),
            ESP_ERR_NOT_SUPPORTED
        );
        assert_eq!(
            status_of_blob_error(&E::ZeroDim { field: "layers" }),
            ESP_ERR_INVALID_ARG
        );
        // A format error wrapped by the head keeps its code.
        let h = HeadError::format(crc);
        assert_eq!(status_of_head_error(&h), ESP_ERR_INVALID_CRC);
        assert_eq!(Error::from(h).status(), ESP_ERR_INVALID_CRC);
        assert_eq!(Error::from(HeadError::NumericOverflow).status(), ESP_FAIL);
        assert_eq!(Error::NoFrames.status(), ESP_ERR_INVALID_STATE);
        assert_eq!(Error::NoMem { bytes: None }.status(), ESP_ERR_NO_MEM);
        let u = QuantError::Unsupported {
            what: "model width D",
            value: 600,
            max: 511,
        };
        assert_eq!(Error::from(u).status(), ESP_ERR_NOT_SUPPORTED);
        let qcrc = QuantError::format(E::CrcMismatch {
            stored: 1,
            computed: 2,
        });
        assert_eq!(Error::from(qcrc).status(), ESP_ERR_INVALID_CRC);
    }
}
