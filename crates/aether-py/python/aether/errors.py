"""Exception classes of the ``aether`` module.

Every error raised by the native code is one of these classes. Each derives from
:class:`AetherError` and from the builtin exception its kind matches, so code that
catches ``ValueError`` or ``TypeError`` keeps working::

    AetherError (Exception)
    ├── FormatError  (ValueError)    a corrupt or invalid model file; a format that cannot hold the model
    ├── ShapeError   (ValueError)    wrong array rank / frame width, no frames, too long
    ├── LayoutError  (ValueError)    an array that is not C-contiguous
    ├── DTypeError   (TypeError)     an array whose dtype is not a floating-point type
    ├── DataError    (ValueError)    NaN or infinite values, an invalid dataset or CSV file
    ├── CaptureError (ValueError)    a raw CSI capture without a usable frame
    ├── StreamError  (RuntimeError)  a full stream (eviction "error") or one poisoned by a failure
    ├── ConfigError  (ValueError)    an invalid option value
    └── TrainError   (RuntimeError)  training failed

File-system errors stay :class:`OSError` (``FileNotFoundError``, ...).
"""

__all__ = [
    "AetherError",
    "FormatError",
    "ShapeError",
    "LayoutError",
    "DTypeError",
    "DataError",
    "CaptureError",
    "StreamError",
    "ConfigError",
    "TrainError",
]


class AetherError(Exception):
    """Base class of every aether error."""


class FormatError(AetherError, ValueError):
    """A model file (.rvne, safetensors) is corrupt or invalid, or cannot be written in the requested format."""


class ShapeError(AetherError, ValueError):
    """An array has the wrong shape: rank, frame width, no frames, or too long."""


class LayoutError(AetherError, ValueError):
    """An array is not C-contiguous; pass ``numpy.ascontiguousarray(x)``."""


class DTypeError(AetherError, TypeError):
    """An array's dtype is not a floating-point type (integers, bool, complex, object, strings)."""


class DataError(AetherError, ValueError):
    """Input values (NaN, Inf) or a dataset are invalid."""


class CaptureError(AetherError, ValueError):
    """A raw CSI capture yields no usable frame (or, with ``strict=True``, skipped some)."""


class StreamError(AetherError, RuntimeError):
    """A stream cannot take the frame: full under eviction ``"error"``, or poisoned by an earlier failure (``reset()`` it)."""


class ConfigError(AetherError, ValueError):
    """An option value is invalid."""


class TrainError(AetherError, RuntimeError):
    """Training failed (no windows, diverged, ...)."""
