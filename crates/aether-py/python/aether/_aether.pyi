"""Type stubs of the native module ``aether._aether`` (re-exported by ``aether``).

Input arrays: a C-contiguous float32 array is read in place; float16 / float64 /
longdouble are converted to float32 (round to nearest; a finite value beyond the float32
range becomes infinite and is refused); lists go through ``numpy.asarray`` first; other
dtypes raise ``DTypeError``, non-contiguous arrays ``LayoutError``, NaN/Inf ``DataError``.
"""

import os
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.ArrayLike
PathLike = Union[str, "os.PathLike[str]"]
CaptureLike = Union[bytes, bytearray, memoryview, PathLike]

class Model:
    """A ``.rvne`` model (v1 or v2; float, or int8 from ``aether quantize``).

    Runs on the inference head of ``aether classify`` / ``aether eval``: results equal
    theirs bit for bit. Immutable and thread-safe; the GIL is released during compute.
    """

    @staticmethod
    def load(path: PathLike) -> "Model":
        """Reads a model file. Raises ``FormatError`` (naming the file) for a corrupt or
        invalid file, ``OSError`` when it cannot be read."""
    @staticmethod
    def from_bytes(data: bytes) -> "Model":
        """Builds a model from the bytes of a ``.rvne`` file."""
    @property
    def classes(self) -> List[str]:
        """Class names (from the file, else ``class0``, ``class1``, ...)."""
    @property
    def n_classes(self) -> int:
        """Number of classes ``C``."""
    @property
    def features(self) -> int:
        """Input features per frame ``D``."""
    @property
    def feature_names(self) -> List[str]:
        """Feature names (empty when the file names none, e.g. v1)."""
    @property
    def window(self) -> Optional[int]:
        """The training window stored in the model (``data.window``), or None."""
    @property
    def stride(self) -> Optional[int]:
        """The training stride stored in the model (``data.stride``), or None."""
    @property
    def default_horizon(self) -> int:
        """The stream horizon ``aether classify --stream`` / ``aether serve`` use (the
        training window, else 256)."""
    @property
    def is_int8(self) -> bool:
        """Whether the model runs on the integer (int8) head."""
    def info(self) -> Dict[str, Any]:
        """Everything the file says: ``version``, ``dtype``, ``int8``, ``bytes``, ``crc32``,
        ``dims``, ``architecture``, ``pattern``, ``class_names``, ``feature_names``,
        ``window``, ``stride``, ``default_horizon``, ``metadata``."""
    def forward(self, x: ArrayLike) -> npt.NDArray[np.float32]:
        """Logits: ``(C,)`` for frames ``(N, D)``, ``(B, C)`` for a batch ``(B, N, D)``
        (windows in parallel)."""
    def predict_proba(self, x: ArrayLike) -> npt.NDArray[np.float32]:
        """Class probabilities (softmax of the logits, as ``aether classify`` prints)."""
    def predict(self, x: ArrayLike) -> Union[int, npt.NDArray[np.int64]]:
        """The class index (first maximum): an int for ``(N, D)``, ``(B,)`` for a batch."""
    def embed(self, x: ArrayLike) -> npt.NDArray[np.float32]:
        """Pooled embedding ``(d_model,)`` or ``(B, d_model)``; float models only
        (``FormatError`` for int8)."""
    def recording_logits(
        self, x: ArrayLike, window: Optional[int] = None, stride: Optional[int] = None
    ) -> npt.NDArray[np.float32]:
        """Logits ``(C,)`` of a whole recording ``(T, D)`` as ``aether eval`` scores it:
        windows (default: the stored window and stride; whole without them) averaged."""
    def stream(
        self,
        horizon: int = 0,
        capacity: int = 4096,
        eviction: Literal["sliding", "heavy-hitter", "error"] = "sliding",
        recent: int = 64,
        kv: Literal["f32", "f16"] = "f32",
    ) -> "Stream":
        """A stream. ``horizon=0``: one exact stream from the first frame (``push``
        returns the logits of all frames so far, ``forward`` to float rounding, bit-exact
        on int8) up to ``capacity`` positions, then ``eviction``. ``horizon=H >= 2``: the
        bounded live stream of ``aether classify --stream`` / ``aether serve`` (bit for
        bit; ``horizon=model.default_horizon`` for their defaults)."""
    def to_bytes(
        self,
        format: Literal["v2", "v1", "safetensors"] = "v2",
        dtype: Optional[Literal["f32", "f16"]] = None,
        strip_names: bool = False,
    ) -> bytes:
        """The model in ``format`` with ``dtype`` weights (default: as stored); the bytes
        of ``aether convert --to FORMAT [--dtype D] [--strip-names]``. ``strip_names``
        drops names and metadata (needed for v1 of a named model)."""
    def save(
        self,
        path: PathLike,
        format: Literal["v2", "v1", "safetensors"] = "v2",
        dtype: Optional[Literal["f32", "f16"]] = None,
        strip_names: bool = False,
    ) -> None:
        """Writes ``to_bytes(format, dtype, strip_names)`` to ``path``."""
    def to_safetensors(self, path: PathLike, dtype: Optional[Literal["f32", "f16"]] = None) -> None:
        """Writes safetensors: docs/model.md tensor names, the model JSON in the
        ``aether`` metadata entry (``aether convert`` reads it back)."""

class Stream:
    """A stream over a model: one frame in, the logits after it out."""

    def push(self, frame: ArrayLike) -> npt.NDArray[np.float32]:
        """Pushes one frame ``(D,)``; returns the logits ``(C,)`` after it. A refused frame
        (wrong width, NaN) leaves the stream unchanged."""
    def push_many(self, frames: ArrayLike) -> npt.NDArray[np.float32]:
        """Pushes frames ``(T, D)`` in order; returns the logits after each ``(T, C)``."""
    @property
    def logits(self) -> npt.NDArray[np.float32]:
        """Logits after the last push (zeros before the first)."""
    @property
    def probabilities(self) -> npt.NDArray[np.float32]:
        """Softmax of ``logits``."""
    @property
    def position(self) -> int:
        """Frames pushed since creation or the last ``reset``."""
    @property
    def context(self) -> int:
        """Frames behind the last output."""
    def reset(self) -> None:
        """Forgets every frame."""

class Dataset:
    """Labelled recordings: the ``DATA/<class>/<recording>.csv`` folder in memory."""

    def __init__(
        self,
        recordings: List[ArrayLike],
        labels: Sequence[int],
        classes: Optional[Sequence[str]] = None,
        feature_names: Optional[Sequence[str]] = None,
        names: Optional[Sequence[str]] = None,
    ) -> None:
        """From ``(T_i, D)`` arrays and class indices; defaults ``class0..``, ``f0..``,
        ``rec00000..``. Validated as ``aether train`` validates a folder."""
    @property
    def classes(self) -> List[str]: ...
    @property
    def feature_names(self) -> List[str]: ...
    @property
    def n_features(self) -> int: ...
    @property
    def names(self) -> List[str]:
        """Recording names (``_``-separated fields are groups / domains)."""
    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """Class index per recording."""
    @property
    def recordings(self) -> List[npt.NDArray[np.float32]]:
        """The recordings ``(T_i, D)`` (copies)."""
    @property
    def skipped(self) -> List[str]:
        """Entries the folder reader skipped, ``"path: reason"``."""
    def groups(self, field: int = 0) -> List[str]:
        """Field ``field`` of each recording name split at ``_`` (``aether train --group-field``)."""
    def subset(self, indices: Sequence[int]) -> "Dataset": ...
    def save(self, path: PathLike) -> None:
        """Writes the dataset folder (exact values); ``path`` must be missing or empty."""
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> Tuple[npt.NDArray[np.float32], int]: ...

def read_dataset(path: PathLike) -> Dataset:
    """Reads a dataset folder or ``.npy`` directory as ``aether train`` / ``eval`` do."""

def simulate(
    task: Literal["gesture", "fall", "breathing", "anomaly"],
    recordings: Optional[int] = None,
    seed: int = 0,
    bands: int = 10,
    gain: bool = True,
    motion: int = 5,
) -> Dataset:
    """The dataset ``aether simulate --task TASK [--recordings N] [--seed S]`` writes."""

def simulate_captures(task: str, recordings: int = 1, seed: int = 0) -> List[Tuple[str, str, bytes]]:
    """Raw captures ``(class, recording name, bytes)`` as ``aether simulate --raw`` writes."""

@overload
def windows(
    ds: Dataset, window: int, stride: Optional[int] = None, short: Literal["skip", "pad"] = "skip",
    return_recordings: Literal[False] = False,
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]: ...
@overload
def windows(
    ds: Dataset, window: int, stride: Optional[int] = None, short: Literal["skip", "pad"] = "skip",
    return_recordings: Literal[True] = ...,
) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64], npt.NDArray[np.int64]]: ...

@overload
def features(
    capture: CaptureLike, bands: int = 10, gain: bool = True, motion: int = 5,
    return_names: Literal[False] = False,
) -> npt.NDArray[np.float32]: ...
@overload
def features(
    capture: CaptureLike, bands: int = 10, gain: bool = True, motion: int = 5,
    return_names: Literal[True] = ...,
) -> Tuple[npt.NDArray[np.float32], List[str]]: ...

def parse_capture(capture: CaptureLike, strict: bool = False) -> List[Dict[str, Any]]:
    """Frames of a raw capture: header fields and ``iq`` int8 ``(n_antennas, n_subcarriers, 2)``."""

def capture_report(capture: CaptureLike) -> Dict[str, int]:
    """``frames``, ``bad_header``, ``truncated``, ``garbage_bytes`` of parsing a capture."""

def evaluate(
    model: Model, ds: Dataset, window: Optional[int] = None, stride: Optional[int] = None,
    groups: Sequence[str] = ..., group_field: int = 0,
) -> Dict[str, Any]:
    """``aether eval --json``: accuracy per recording, macro-F1, confusion, per class,
    window-level figures."""

def quantize(
    model: Model, calib: Dataset, calib_windows: int = 512, window: Optional[int] = None,
    stride: Optional[int] = None, groups: Sequence[str] = ..., group_field: int = 0,
    source: Optional[str] = None,
) -> Model:
    """The int8 model of ``aether quantize --model M --calib DS`` (same calibration
    windows; ``source``, default the path ``model`` was loaded from, is recorded as
    ``int8.float_model``: with the same string the bytes are the command's)."""

def _train(ds: Dataset, args: List[str], format: str = "v2", f16: bool = False, quiet: bool = True) -> Tuple[Model, Dict[str, Any]]: ...
def _cross_validate(
    ds: Dataset, args: List[str], kfold: Optional[int] = None, kfold_groups: bool = False,
    test_groups: List[str] = ..., seeds: int = 1, int8: bool = False, quiet: bool = True,
) -> Dict[str, Any]: ...
