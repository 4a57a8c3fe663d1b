"""Training and cross-validation with the options and defaults of ``aether train``.

Every keyword option is an ``aether train`` flag (``d_model`` is ``--d-model``) and is
parsed by the command line's own parser, so defaults, ranges and messages are the
command line's; ``None`` (or ``False`` for ``running_norm``) leaves the derived default.
"""

from __future__ import annotations

import operator
from typing import Any, Dict, Optional, Sequence, Tuple

from . import _aether
from .errors import ConfigError

# The options of `aether train` (TrainOpts), in the order of `aether train --help`.
TRAIN_OPTIONS = (
    "window",
    "stride",
    "epochs",
    "batch",
    "lr",
    "patience",
    "seed",
    "val",
    "threads",
    "d_model",
    "layers",
    "running_norm",
    "attention",
    "arch",
    "groups",
    "group_field",
    "aug_gain",
    "aug_offset",
    "aug_noise",
    "aug_crop",
    "aug_speed",
    "aug_mask",
    "weight_decay",
    "ema",
    "label_smoothing",
    "mixup",
    "qat_epochs",
)
_FLOATS = {
    "lr",
    "val",
    "aug_gain",
    "aug_offset",
    "aug_noise",
    "aug_crop",
    "aug_speed",
    "aug_mask",
    "weight_decay",
    "ema",
    "label_smoothing",
    "mixup",
}
_STRINGS = {"attention", "arch"}


def train_args(options: Dict[str, Any]) -> list:
    """The ``aether train`` arguments of keyword ``options`` (``None`` values left out)."""
    args = []
    for name, value in options.items():
        if name not in TRAIN_OPTIONS:
            raise TypeError(f"unexpected training option {name!r} (options: {', '.join(TRAIN_OPTIONS)})")
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "running_norm":
            if not isinstance(value, bool):
                raise ConfigError(f"running_norm: expected True or False, got {value!r}")
            if value:
                args.append(flag)
        elif name == "groups":
            groups = [value] if isinstance(value, str) else list(value)
            if groups:
                args += [flag, ",".join(str(g) for g in groups)]
        elif name in _STRINGS:
            if not isinstance(value, str):
                raise ConfigError(f"{name}: expected a string, got {value!r}")
            args += [flag, value]
        elif isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        elif name in _FLOATS:
            args += [flag, repr(float(value))]
        else:
            try:
                args += [flag, str(operator.index(value))]
            except TypeError:
                raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    return args


def train(
    ds: "_aether.Dataset",
    *,
    format: str = "v2",
    f16: bool = False,
    quiet: bool = True,
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
    groups: Optional[Sequence[str]] = None,
    group_field: int = 0,
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
) -> Tuple["_aether.Model", Dict[str, Any]]:
    """Train a model on ``ds`` exactly as ``aether train --data DS --out M.rvne`` does.

    Returns ``(model, report)``: the model whose ``.rvne`` bytes equal the command's
    output for the same data and options (``model.to_bytes()``), and the JSON report it
    writes beside it (settings, per-epoch history, validation figures). ``format`` is
    ``"v2"`` or ``"v1"`` (the bare v1 architecture), ``f16`` stores f16 weights,
    ``quiet=False`` prints the epoch lines on stderr. Options and defaults are those of
    ``aether train`` (docs/training.md); the GIL is released while training.
    """
    opts = {k: v for k, v in locals().items() if k in TRAIN_OPTIONS}
    return _aether._train(ds, train_args(opts), format=format, f16=f16, quiet=quiet)


def cross_validate(
    ds: "_aether.Dataset",
    *,
    kfold: Optional[int] = None,
    kfold_groups: bool = False,
    test_groups: Optional[Sequence[str]] = None,
    seeds: int = 1,
    int8: bool = False,
    quiet: bool = True,
    **options: Any,
) -> Dict[str, Any]:
    """Evaluate by cross-validation as ``aether train --kfold K`` (or ``--kfold-groups``,
    ``--test-groups G1,G2``) with ``--seeds S`` and ``--int8`` does; returns the report it
    writes (per-test accuracy, macro-F1, confusion, mean ± sd over seeds). ``options``
    are the training options of :func:`train`."""
    return _aether._cross_validate(
        ds,
        train_args(options),
        kfold=kfold,
        kfold_groups=kfold_groups,
        test_groups=list(test_groups or []),
        seeds=seeds,
        int8=int8,
        quiet=quiet,
    )


def kfold(ds: "_aether.Dataset", k: int = 5, **options: Any) -> Dict[str, Any]:
    """K-fold cross-validation by recording (stratified, seeded): ``aether train --kfold K``.
    Keyword options as :func:`cross_validate`."""
    return cross_validate(ds, kfold=k, **options)
