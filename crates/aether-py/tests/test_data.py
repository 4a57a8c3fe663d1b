"""Datasets, windows, simulator, captures and features equal what the CLI reads and writes."""

import numpy as np
import pytest

import aether


@pytest.fixture(scope="session")
def captures(cli, work):
    d = work / "captures"
    cli("simulate", "--task", "gesture", "--raw", "--recordings", 1, "--seed", 2, "--out", d)
    return d


def test_read_dataset_equals_simulate(data_dir):
    ds = aether.read_dataset(data_dir)
    sim = aether.simulate("gesture", recordings=4, seed=0)
    assert ds.classes == sim.classes == ["circle", "push", "swipe", "wave"]
    assert ds.feature_names == sim.feature_names and ds.n_features == 16
    assert ds.names == sim.names
    assert np.array_equal(ds.labels, sim.labels)
    assert len(ds) == 16 and ds.labels.dtype == np.int64
    for a, b in zip(ds.recordings, sim.recordings):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    assert ds.groups() == ["synthetic"] * 16
    assert ds.groups(1) == ["s0"] * 16
    x, label = ds[-1]
    assert label == 3 and np.array_equal(x, ds.recordings[-1])


def test_windows(data_dir):
    ds = aether.read_dataset(data_dir)
    X, y = aether.windows(ds, window=64, stride=32)
    X2, y2, rec = aether.windows(ds, window=64, stride=32, return_recordings=True)
    assert X.dtype == np.float32 and X.shape[1:] == (64, 16) and len(X) == len(y) == len(rec)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    first = ds.recordings[0]
    t = len(first)
    starts = list(range(0, t - 64 + 1, 32))
    if starts[-1] + 64 != t:
        starts.append(t - 64)
    assert int(np.sum(rec == 0)) == len(starts)
    for k, s in enumerate(starts):
        assert np.array_equal(X[k], first[s:s + 64])
    assert np.array_equal(y, ds.labels[rec])
    long = aether.windows(ds, window=10_000, short="pad")[0]
    assert long.shape == (16, 10_000, 16)
    assert np.array_equal(long[0, t - 1], long[0, -1])
    assert len(aether.windows(ds, window=10_000)[0]) == 0
    with pytest.raises(aether.ConfigError):
        aether.windows(ds, window=64, short="whole")
    with pytest.raises(aether.DataError):
        aether.windows(ds, window=0)


def test_features_equal_cli(cli, work, captures):
    out = work / "features"
    cli("features", "--input", captures, "--out", out)
    for cap in sorted(captures.glob("*/*.bin")):
        csv = out / cap.parent.name / (cap.stem + ".csv")
        want = np.loadtxt(csv, delimiter=",", skiprows=1, dtype=np.float64).astype(np.float32)
        header = csv.read_text().splitlines()[0].split(",")
        got, names = aether.features(cap.read_bytes(), return_names=True)
        assert names == header
        assert got.dtype == np.float32 and np.array_equal(got, want)
        assert np.array_equal(aether.features(cap), got)  # a path works too


def test_parse_capture(captures):
    cap = sorted(captures.glob("*/*.bin"))[0].read_bytes()
    frames = aether.parse_capture(cap)
    assert len(frames) > 10
    f = frames[0]
    assert f["n_antennas"] == 1 and f["n_subcarriers"] == 64 and f["freq_mhz"] == 2412
    assert f["iq"].shape == (1, 64, 2) and f["iq"].dtype == np.int8
    # The first frame's payload as on the wire: 20-byte header, then (I, Q) int8 pairs.
    assert np.array_equal(f["iq"].reshape(-1), np.frombuffer(cap[20:20 + 128], dtype=np.int8))
    assert [g["seq"] for g in frames] == sorted(g["seq"] for g in frames)
    rep = aether.capture_report(cap)
    assert rep == {"frames": len(frames), "bad_header": 0, "truncated": 0, "garbage_bytes": 0}
    # A capture cut inside its last frame: that frame is skipped and counted.
    cut = cap[:-5]
    assert len(aether.parse_capture(cut)) == len(frames) - 1
    assert aether.capture_report(cut)["truncated"] == 1
    with pytest.raises(aether.CaptureError, match="truncated"):
        aether.parse_capture(cut, strict=True)


def test_simulate_captures_match_cli(captures):
    sims = aether.simulate_captures("gesture", recordings=1, seed=2)
    assert len(sims) == 4
    for cls, name, data in sims:
        assert (captures / cls / f"{name}.bin").read_bytes() == data


def test_dataset_from_arrays_and_save(cli, work):
    rng = np.random.default_rng(1)
    recs = [rng.standard_normal((30 + i, 3)).astype(np.float32) for i in range(6)]
    ds = aether.Dataset(recs, [0, 1, 0, 1, 0, 1], classes=["a", "b"], feature_names=["x", "y", "z"],
                        names=[f"D{i % 2}_r{i}" for i in range(6)])
    assert ds.groups() == ["D0", "D1"] * 3
    out = work / "saved"
    ds.save(out)
    back = aether.read_dataset(out)
    assert back.classes == ["a", "b"] and back.feature_names == ["x", "y", "z"]
    by_name = dict(zip(back.names, back.recordings))
    for n, r in zip(ds.names, ds.recordings):
        assert np.array_equal(by_name[n], r)
    sub = ds.subset([0, 1])
    assert len(sub) == 2 and sub.names == ds.names[:2]
    with pytest.raises(FileExistsError):
        ds.save(out)
