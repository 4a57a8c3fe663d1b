"""aether — a sparse-attention temporal head for WiFi CSI sensing.

Python bindings of aether-temporal: load ``.rvne`` models and run them (``forward``,
``predict_proba``, ``embed``, exact streaming), read, simulate and window datasets,
turn raw node captures into features, train and evaluate with the pipeline and
defaults of ``aether train`` / ``aether eval``, and export to ``.rvne`` v1/v2 and
safetensors. Results equal the ``aether`` command and the Rust API bit for bit.

>>> import numpy as np, aether
>>> m = aether.Model.load("model.rvne")                     # doctest: +SKIP
>>> logits = m.forward(np.zeros((64, m.features), np.float32))  # doctest: +SKIP

Input arrays: C-contiguous float32 is read in place; float16/float64 are converted to
float32 (round to nearest); other dtypes raise :class:`DTypeError`, non-contiguous
arrays :class:`LayoutError`, NaN/Inf :class:`DataError`. See docs/python.md.
"""

from . import errors
from .errors import (
    AetherError,
    CaptureError,
    ConfigError,
    DataError,
    DTypeError,
    FormatError,
    LayoutError,
    ShapeError,
    StreamError,
    TrainError,
)
from ._aether import (
    Dataset,
    Model,
    Stream,
    __version__,
    capture_report,
    evaluate,
    features,
    parse_capture,
    quantize,
    read_dataset,
    simulate,
    simulate_captures,
    windows,
)
from ._train import cross_validate, kfold, train
from .sklearn import TemporalClassifier

__all__ = [
    "AetherError",
    "CaptureError",
    "ConfigError",
    "DataError",
    "DTypeError",
    "Dataset",
    "FormatError",
    "LayoutError",
    "Model",
    "ShapeError",
    "Stream",
    "StreamError",
    "TrainError",
    "__version__",
    "TemporalClassifier",
    "capture_report",
    "cross_validate",
    "errors",
    "evaluate",
    "features",
    "kfold",
    "parse_capture",
    "quantize",
    "read_dataset",
    "simulate",
    "simulate_captures",
    "train",
    "windows",
]
