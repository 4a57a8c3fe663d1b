"""Inference parity: Python logits, probabilities and streams equal `aether classify`
(bit for bit) and the Rust forward; exact streaming equals forward."""

import numpy as np
import pytest

import aether
from conftest import json_lines, write_csv


def csv_frames(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64).astype(np.float32)


def test_metadata(cli_model, data_dir):
    m = aether.Model.load(cli_model)
    assert m.classes == ["circle", "push", "swipe", "wave"]
    assert m.n_classes == 4
    assert m.features == 16 and len(m.feature_names) == 16
    assert (m.window, m.stride) == (64, 32)
    assert m.default_horizon == 64
    info = m.info()
    assert info["version"] == 2 and info["int8"] is False
    assert info["dims"]["input_dim"] == 16 and info["dims"]["classes"] == 4
    assert info["metadata"]["data.window"] == "64"
    assert aether.Model.from_bytes(cli_model.read_bytes()).to_bytes() == cli_model.read_bytes()


def test_forward_equals_classify(cli, cli_model, recording_csv):
    m = aether.Model.load(cli_model)
    x = csv_frames(recording_csv)
    out = cli("classify", "--model", cli_model, "--input", recording_csv, "--json")
    ref = json_lines(out)[0]
    logits = m.forward(x)
    assert logits.shape == (4,) and logits.dtype == np.float32
    assert np.array_equal(logits, np.array(ref["logits"], dtype=np.float32))
    assert np.array_equal(m.predict_proba(x), np.array(ref["probabilities"], dtype=np.float32))
    assert m.classes[m.predict(x)] == ref["class"]


def test_stream_equals_classify_stream(cli, cli_model, recording_csv):
    m = aether.Model.load(cli_model)
    x = csv_frames(recording_csv)[:150]
    short = write_csv(recording_csv.parent.parent / "short.csv", m.feature_names, x)
    assert np.array_equal(csv_frames(short), x)
    ref = json_lines(cli("classify", "--model", cli_model, "--input", short, "--stream", "--json"))
    s = m.stream(horizon=m.default_horizon)
    for i, frame in enumerate(x):
        got = s.push(frame)
        assert np.array_equal(got, np.array(ref[i]["logits"], dtype=np.float32)), i
        assert s.context == ref[i]["context"]
    s2 = m.stream(horizon=m.default_horizon)
    assert np.array_equal(s2.push_many(x), np.array([r["logits"] for r in ref], dtype=np.float32))


def test_exact_stream_equals_forward(cli_model, recording_csv):
    m = aether.Model.load(cli_model)
    x = csv_frames(recording_csv)[:100]
    s = m.stream()
    for t in range(len(x)):
        got = s.push(x[t])
        want = m.forward(x[: t + 1])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert s.position == 100 and s.context == 100
    s.reset()
    assert s.position == 0
    np.testing.assert_allclose(s.push_many(x)[-1], m.forward(x), rtol=0, atol=1e-5)


def test_batch_equals_single(cli_model, recording_csv):
    m = aether.Model.load(cli_model)
    x = csv_frames(recording_csv)
    b = np.stack([x[:64], x[32:96], x[-64:]])
    out = m.forward(b)
    assert out.shape == (3, 4)
    for i in range(3):
        assert np.array_equal(out[i], m.forward(b[i]))
    assert m.predict_proba(b).shape == (3, 4)
    assert m.predict(b).shape == (3,)
    e = m.embed(b)
    assert e.shape == (3, m.info()["dims"]["d_model"])
    assert np.array_equal(e[1], m.embed(b[1]))


def test_float_dtypes_converted(cli_model, recording_csv):
    m = aether.Model.load(cli_model)
    x = csv_frames(recording_csv)[:64]
    ref = m.forward(x)
    assert np.array_equal(m.forward(x.astype(np.float64)), ref)
    assert np.array_equal(m.forward(x.tolist()), ref)
    x16 = x.astype(np.float16)
    assert np.array_equal(m.forward(x16), m.forward(x16.astype(np.float32)))


def test_int8_equals_classify(cli, int8_model, recording_csv):
    m = aether.Model.load(int8_model)
    assert m.is_int8 and m.info()["int8"]
    x = csv_frames(recording_csv)[:120]
    short = write_csv(recording_csv.parent.parent / "short8.csv", m.feature_names, x)
    ref = json_lines(cli("classify", "--model", int8_model, "--input", short, "--json"))[0]
    assert np.array_equal(m.forward(x), np.array(ref["logits"], dtype=np.float32))
    ref_s = json_lines(cli("classify", "--model", int8_model, "--input", short, "--stream", "--json"))
    got = m.stream(horizon=m.default_horizon).push_many(x)
    assert np.array_equal(got, np.array([r["logits"] for r in ref_s], dtype=np.float32))
    # The integer stream is bit-exact: push-by-push equals the whole-window forward.
    s = m.stream()
    for t in range(0, 40):
        assert np.array_equal(s.push(x[t]), m.forward(x[: t + 1]))


def test_recording_logits_vote(cli_model, recording_csv):
    m = aether.Model.load(cli_model)
    x = csv_frames(recording_csv)
    t = len(x)
    starts = list(range(0, t - 64 + 1, 32))
    if starts[-1] + 64 != t:
        starts.append(t - 64)
    want = np.mean(np.stack([m.forward(x[s:s + 64]).astype(np.float64) for s in starts]), axis=0)
    assert np.array_equal(m.recording_logits(x), want.astype(np.float32))


def test_pickle_roundtrip(cli_model):
    import pickle

    m = aether.Model.load(cli_model)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.to_bytes() == m.to_bytes()


def test_quantize_equals_cli(cli_model, int8_model, data_dir):
    m = aether.Model.load(cli_model)
    q = aether.quantize(m, aether.read_dataset(data_dir))
    assert q.is_int8 and q.info()["metadata"]["int8.float_model"] == str(cli_model)
    assert q.to_bytes() == int8_model.read_bytes()
    with pytest.raises(aether.FormatError, match="int8"):
        aether.quantize(q, aether.read_dataset(data_dir))
