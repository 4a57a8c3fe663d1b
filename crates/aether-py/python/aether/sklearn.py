"""A scikit-learn style estimator over :func:`aether.train`.

``TemporalClassifier`` follows the estimator conventions (``fit`` / ``predict`` /
``predict_proba`` / ``score``, parameters stored verbatim by ``__init__``,
``get_params`` / ``set_params``), so it works in ``sklearn.model_selection``
(``cross_val_score``, ``GridSearchCV``). scikit-learn itself is optional: with it
installed the class derives from ``BaseEstimator`` and ``ClassifierMixin``.

A sample is one recording ``(T, D)``: ``X`` is a 3-D array ``(n, T, D)`` or a list of
``(T_i, D)`` arrays. ``fit`` trains on the recordings as ``aether train`` trains on a
dataset folder (windows, validation split by recording, early stopping); ``predict_proba``
scores each recording as ``aether eval`` does (its windows vote with averaged logits).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from . import _aether
from ._train import TRAIN_OPTIONS, train

try:  # scikit-learn is optional
    from sklearn.base import BaseEstimator as _Base  # type: ignore[import-untyped]
    from sklearn.base import ClassifierMixin as _Mixin  # type: ignore[import-untyped]

    _BASES: tuple = (_Mixin, _Base)
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    _BASES = (object,)


def _recordings(X: Any) -> list:
    if isinstance(X, np.ndarray):
        if X.ndim != 3:
            from .errors import ShapeError

            raise ShapeError(f"X: shape {X.shape}; expected (n_recordings, T, D) or a list of (T, D) arrays")
        return [np.ascontiguousarray(x) for x in X]
    return [np.ascontiguousarray(x) for x in X]


class TemporalClassifier(*_BASES):  # type: ignore[misc]
    """Classifier of whole recordings with an aether temporal head.

    Parameters are the training options of :func:`aether.train` (same names, same
    defaults: ``None`` derives them from the data as ``aether train`` does).

    Attributes after ``fit``: ``classes_`` (the sorted labels), ``model_``
    (:class:`aether.Model`), ``report_`` (the training report), ``n_features_in_``.
    """

    def __init__(
        self,
        window: Optional[int] = None,
        stride: Optional[int] = None,
        epochs: Optional[int] = None,
        batch: Optional[int] = None,
        lr: Optional[float] = None,
        patience: Optional[int] = None,
        seed: int = 0,
        val: float = 0.2,
        threads: int = 0,
        d_model: Optional[int] = None,
        layers: Optional[int] = None,
        running_norm: bool = False,
        attention: str = "sparse",
        arch: str = "full",
        aug_gain: float = 0.0,
        aug_offset: float = 0.0,
        aug_noise: float = 0.0,
        aug_crop: float = 1.0,
        aug_speed: float = 0.0,
        aug_mask: float = 0.0,
        weight_decay: float = 0.01,
        ema: float = 0.0,
        label_smoothing: float = 0.0,
        mixup: float = 0.0,
        qat_epochs: int = 0,
    ) -> None:
        self.window = window
        self.stride = stride
        self.epochs = epochs
        self.batch = batch
        self.lr = lr
        self.patience = patience
        self.seed = seed
        self.val = val
        self.threads = threads
        self.d_model = d_model
        self.layers = layers
        self.running_norm = running_norm
        self.attention = attention
        self.arch = arch
        self.aug_gain = aug_gain
        self.aug_offset = aug_offset
        self.aug_noise = aug_noise
        self.aug_crop = aug_crop
        self.aug_speed = aug_speed
        self.aug_mask = aug_mask
        self.weight_decay = weight_decay
        self.ema = ema
        self.label_smoothing = label_smoothing
        self.mixup = mixup
        self.qat_epochs = qat_epochs

    _PARAMS = tuple(n for n in TRAIN_OPTIONS if n not in ("groups", "group_field"))

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor parameters (scikit-learn convention)."""
        return {n: getattr(self, n) for n in self._PARAMS}

    def set_params(self, **params: Any) -> "TemporalClassifier":
        """Sets constructor parameters (scikit-learn convention)."""
        for n, v in params.items():
            if n not in self._PARAMS:
                raise ValueError(f"invalid parameter {n!r} for TemporalClassifier")
            setattr(self, n, v)
        return self

    def fit(self, X: Any, y: Sequence[Any], names: Optional[Sequence[str]] = None) -> "TemporalClassifier":
        """Trains on recordings ``X`` with labels ``y`` (any sortable labels).

        ``names`` (optional) are the recordings' names; their ``_``-separated fields are
        the groups (domains) of the dataset.
        """
        recs = _recordings(X)
        labels = np.asarray(y)
        if len(recs) != len(labels):
            from .errors import ShapeError

            raise ShapeError(f"{len(recs)} recordings but {len(labels)} labels")
        self.classes_ = np.unique(labels)
        idx = np.searchsorted(self.classes_, labels)
        ds = _aether.Dataset(
            recs,
            [int(i) for i in idx],
            classes=[str(c) for c in self.classes_],
            names=None if names is None else [str(n) for n in names],
        )
        self.model_, self.report_ = train(ds, **self.get_params())
        self.n_features_in_ = ds.n_features
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            try:
                from sklearn.exceptions import NotFittedError  # type: ignore[import-untyped]
            except ImportError:  # pragma: no cover
                NotFittedError = RuntimeError  # type: ignore[assignment,misc]
            raise NotFittedError("this TemporalClassifier is not fitted yet; call fit(X, y) first")

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-recording logits ``(n, C)``: each recording's windows' logits averaged."""
        self._check_fitted()
        return np.stack([self.model_.recording_logits(x) for x in _recordings(X)])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n, C)`` (softmax of :meth:`decision_function`)."""
        z = self.decision_function(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The predicted label of each recording (as ``aether eval`` votes)."""
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]

    def score(self, X: Any, y: Sequence[Any], sample_weight: Any = None) -> float:
        """Accuracy per recording."""
        truth = np.asarray(y)
        pred = self.predict(X)
        if sample_weight is None:
            return float(np.mean(pred == truth))
        w = np.asarray(sample_weight, dtype=np.float64)
        return float(np.sum(w * (pred == truth)) / np.sum(w))
