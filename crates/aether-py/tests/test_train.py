"""Training parity: aether.train / evaluate / kfold run the pipeline of `aether train`,
`aether eval` and `aether train --kfold` and give the same bytes and figures."""

import json

import numpy as np
import pytest

import aether
from conftest import TRAIN_ARGS

# TRAIN_ARGS as keyword options.
TRAIN_KW = dict(epochs=3, seed=7, window=64, stride=32)


def strip_timing(v):
    """The report without wall-clock figures (seconds, windows per second)."""
    if isinstance(v, dict):
        return {k: strip_timing(x) for k, x in v.items() if k not in ("seconds", "windows_per_sec")}
    if isinstance(v, list):
        return [strip_timing(x) for x in v]
    return v


def test_train_equals_cli_bytes(work, data_dir, cli_model):
    assert TRAIN_ARGS == ["--epochs", "3", "--seed", "7", "--window", "64", "--stride", "32"]
    ds = aether.read_dataset(data_dir)
    model, report = aether.train(ds, **TRAIN_KW)
    assert model.to_bytes() == cli_model.read_bytes()
    cli_report = json.loads(cli_model.with_suffix(".json").read_text())
    for k in ("data", "model", "skipped"):
        cli_report.pop(k)
    assert strip_timing(report) == strip_timing(cli_report)
    # The simulated dataset in memory is the same data: the same model again.
    sim_model, _ = aether.train(aether.simulate("gesture", recordings=4, seed=0), **TRAIN_KW)
    assert sim_model.to_bytes() == cli_model.read_bytes()


def test_train_v1_f16_and_seed(cli, work, data_dir):
    ds = aether.read_dataset(data_dir)
    out = work / "v1f16.rvne"
    cli("train", "--data", data_dir, "--out", out, "--quiet", "--no-plots", "--format", "v1", "--f16",
        "--epochs", "2", "--seed", "11", "--window", "48")
    model, report = aether.train(ds, format="v1", f16=True, epochs=2, seed=11, window=48)
    assert model.to_bytes(format="v1") == out.read_bytes()
    assert model.info()["version"] == 1 and report["format"] == "v1"
    other, _ = aether.train(ds, format="v1", f16=True, epochs=2, seed=12, window=48)
    assert other.to_bytes(format="v1") != out.read_bytes()
    out2 = work / "rn.rvne"
    cli("train", "--data", data_dir, "--out", out2, "--quiet", "--no-plots", "--epochs", "2", "--seed", "3",
        "--running-norm", "--aug-noise", "0.1", "--lr", "0.002", "--d-model", "16", "--val", "0.25")
    rn, _ = aether.train(ds, epochs=2, seed=3, running_norm=True, aug_noise=0.1, lr=0.002, d_model=16, val=0.25)
    assert rn.to_bytes() == out2.read_bytes() and rn.info()["architecture"]["running_norm"]


def test_train_qat_equals_cli_bytes(cli, work, data_dir):
    out = work / "qat.rvne"
    cli("train", "--data", data_dir, "--out", out, "--quiet", "--no-plots", "--epochs", "2", "--seed", "5",
        "--window", "48", "--d-model", "16", "--qat-epochs", "2")
    ds = aether.read_dataset(data_dir)
    model, report = aether.train(ds, epochs=2, seed=5, window=48, d_model=16, qat_epochs=2)
    assert model.to_bytes() == out.read_bytes()
    assert report["config"]["qat_epochs"] == 2 and model.info()["metadata"]["train.qat_epochs"] == "2"
    plain, _ = aether.train(ds, epochs=2, seed=5, window=48, d_model=16)
    assert plain.to_bytes() != out.read_bytes()


def test_evaluate_equals_cli_eval(cli, cli_model, data_dir):
    ref = json.loads(cli("eval", "--model", cli_model, "--data", data_dir, "--json"))
    ref.pop("model")
    ref.pop("data")
    got = aether.evaluate(aether.Model.load(cli_model), aether.read_dataset(data_dir))
    assert got == ref
    ref2 = json.loads(cli("eval", "--model", cli_model, "--data", data_dir, "--json", "--window", "40", "--stride", "40"))
    got2 = aether.evaluate(aether.Model.load(cli_model), aether.read_dataset(data_dir), window=40, stride=40)
    assert got2["window"] == 40 and got2["accuracy"] == ref2["accuracy"] and got2["windows"] == ref2["windows"]


def test_evaluate_int8_equals_cli(cli, int8_model, data_dir):
    ref = json.loads(cli("eval", "--model", int8_model, "--data", data_dir, "--json"))
    got = aether.evaluate(aether.Model.load(int8_model), aether.read_dataset(data_dir))
    assert got["confusion"] == ref["confusion"] and got["windows"] == ref["windows"]


def test_kfold_equals_cli(cli, work, data_dir):
    out = work / "cv.json"
    cli("train", "--data", data_dir, "--out", out, "--quiet", "--kfold", 2, "--epochs", 1, "--window", 64, "--seed", 5)
    ref = json.loads(out.read_text())
    ref.pop("data", None)
    got = aether.kfold(aether.read_dataset(data_dir), k=2, epochs=1, window=64, seed=5)
    assert strip_timing(got) == strip_timing(ref)


def test_evaluate_checks_classes(cli_model):
    rng = np.random.default_rng(0)
    ds = aether.Dataset([rng.standard_normal((20, 16)).astype(np.float32) for _ in range(4)], [0, 1, 0, 1])
    with pytest.raises(aether.DataError, match="classes"):
        aether.evaluate(aether.Model.load(cli_model), ds)


def test_train_option_errors(data_dir):
    ds = aether.read_dataset(data_dir)
    with pytest.raises(aether.ConfigError, match="epochs"):
        aether.train(ds, epochs=0)
    with pytest.raises(aether.ConfigError, match="lr"):
        aether.train(ds, lr=2.0)
    with pytest.raises(aether.ConfigError, match="arch"):
        aether.train(ds, arch="nonsense")
    with pytest.raises(aether.ConfigError):
        aether.train(ds, epochs=True)
    with pytest.raises(TypeError):
        aether.train(ds, epoch=3)
    with pytest.raises(aether.ConfigError):
        aether.cross_validate(ds)
    with pytest.raises(aether.ConfigError, match="nope"):
        aether.train(ds, groups=["nope"], epochs=1)


def test_sklearn_cross_val_score():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    ds = aether.simulate("gesture", recordings=3, seed=4)
    X = [r for r in ds.recordings]
    y = np.array(ds.classes)[ds.labels]
    clf = aether.TemporalClassifier(epochs=2, window=64, seed=1)
    assert clone(clf).get_params() == clf.get_params()
    scores = cross_val_score(clf, X, y, cv=3)
    assert scores.shape == (3,) and np.all((0 <= scores) & (scores <= 1))
    clf.fit(X, y)
    assert list(clf.classes_) == sorted(ds.classes)
    p = clf.predict_proba(X)
    assert p.shape == (12, 4) and np.allclose(p.sum(axis=1), 1)
    assert set(clf.predict(X)) <= set(ds.classes)
    # predict is the vote of `aether eval`: the same accuracy.
    ev = aether.evaluate(clf.model_, aether.Dataset(X, list(np.searchsorted(clf.classes_, y)),
                                                    classes=list(clf.classes_)))
    assert clf.score(X, y) == pytest.approx(ev["accuracy"])
