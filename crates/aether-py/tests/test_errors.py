"""Bad input raises a specific exception class naming the problem, never a crash."""

import numpy as np
import pytest

import aether


@pytest.fixture(scope="module")
def model(cli_model):
    return aether.Model.load(cli_model)


@pytest.fixture(scope="module")
def x(model):
    return np.random.default_rng(0).standard_normal((40, model.features)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64, object])
def test_wrong_dtype(model, x, dtype):
    with pytest.raises(aether.DTypeError, match="dtype") as e:
        model.forward(x.astype(dtype))
    assert isinstance(e.value, TypeError) and isinstance(e.value, aether.AetherError)


def test_strings_refused(model):
    with pytest.raises(aether.DTypeError):
        model.forward([["a", "b"]])


@pytest.mark.parametrize("shape", [(16,), (40, 15), (40, 17), (0, 16), (2, 3, 4, 16), (0, 40, 16)])
def test_wrong_shape(model, shape):
    with pytest.raises(aether.ShapeError) as e:
        model.forward(np.zeros(shape, np.float32))
    assert isinstance(e.value, ValueError)


def test_non_finite(model, x):
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[7, 3] = bad
        with pytest.raises(aether.DataError, match="frame 7, feature 3"):
            model.forward(y)
    big = x.astype(np.float64)
    big[0, 0] = 1e300  # finite in float64, infinite as float32
    with pytest.raises(aether.DataError):
        model.forward(big)


def test_non_contiguous(model, x):
    for bad in (x[::2], np.asfortranarray(np.stack([x, x])), x.T.copy().T, np.zeros((40, 32), np.float32)[:, ::2]):
        with pytest.raises(aether.LayoutError, match="contiguous"):
            model.forward(bad)
    assert np.array_equal(model.forward(np.ascontiguousarray(x[::2])), model.forward(x[::2].copy()))


def test_corrupt_files(tmp_path, cli_model):
    good = cli_model.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    cases = {
        "empty": b"",
        "magic": b"XXXX" + good[4:],
        "truncated": good[: len(good) // 3],
        "crc": bytes(flipped),
        "text": b"time,a,b\n1,2,3\n",
    }
    for name, data in cases.items():
        with pytest.raises(aether.FormatError):
            aether.Model.from_bytes(data)
        p = tmp_path / f"{name}.rvne"
        p.write_bytes(data)
        with pytest.raises(aether.FormatError, match=str(p.name)):
            aether.Model.load(p)
    with pytest.raises(FileNotFoundError):
        aether.Model.load(tmp_path / "missing.rvne")


def test_stream_errors(model, x):
    s = model.stream()
    with pytest.raises(aether.ShapeError):
        s.push(x[:2])
    with pytest.raises(aether.DataError):
        s.push(np.full(model.features, np.nan, np.float32))
    assert s.position == 0  # refused frames leave the stream unchanged
    full = model.stream(capacity=5, eviction="error")
    full.push_many(x[:5])
    with pytest.raises(aether.StreamError):
        full.push(x[5])
    with pytest.raises(aether.ConfigError):
        model.stream(horizon=1)
    with pytest.raises(aether.ConfigError):
        model.stream(eviction="random")


def test_truncated_capture():
    with pytest.raises(aether.CaptureError):
        aether.features(b"")
    header = (0xC5110001).to_bytes(4, "little") + bytes([1, 1]) + (64).to_bytes(2, "little") + bytes(12)
    truncated = header + bytes(50)  # 64 subcarriers need 128 payload bytes
    with pytest.raises(aether.CaptureError, match="no complete"):
        aether.parse_capture(truncated)
    with pytest.raises(aether.CaptureError):
        aether.features(truncated)
    with pytest.raises(TypeError):
        aether.features(12345)


def test_dataset_errors(tmp_path):
    with pytest.raises(OSError):
        aether.read_dataset(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "r.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "r.csv").write_text("x,y\n1,oops\n")
    with pytest.raises(aether.DataError, match="oops"):
        aether.read_dataset(tmp_path)
    with pytest.raises(aether.ShapeError):
        aether.Dataset([np.zeros((3, 2), np.float32)], [0, 1])
    with pytest.raises(aether.DataError):
        aether.Dataset([np.zeros((3, 2), np.float32), np.full((3, 2), np.nan, np.float32)], [0, 1])


def test_int8_has_no_embedding(int8_model, x):
    m = aether.Model.load(int8_model)
    with pytest.raises(aether.FormatError, match="int8"):
        m.embed(x)


def test_exceptions_derive_from_builtins():
    assert issubclass(aether.ShapeError, ValueError)
    assert issubclass(aether.DTypeError, TypeError)
    assert issubclass(aether.StreamError, RuntimeError)
    for name in aether.errors.__all__:
        assert issubclass(getattr(aether, name), aether.AetherError)


def test_unaligned_and_big_endian(model, x):
    ref = model.forward(x)
    buf = b"\0" + x.tobytes()
    unaligned = np.frombuffer(buf, dtype=np.float32, offset=1).reshape(x.shape)
    assert not unaligned.flags.aligned
    assert np.array_equal(model.forward(unaligned), ref)
    assert np.array_equal(model.forward(x.astype(">f4")), ref)
    buf64 = b"\0" + x.astype(np.float64).tobytes()
    un64 = np.frombuffer(buf64, dtype=np.float64, offset=1).reshape(x.shape)
    assert np.array_equal(model.forward(un64), ref)


def test_limits(model, tmp_path):
    with pytest.raises(aether.ConfigError, match="capacity"):
        model.stream(capacity=1 << 40)
    with pytest.raises(aether.ConfigError, match="horizon"):
        model.stream(horizon=1 << 40)
    with pytest.raises(aether.ConfigError, match="recordings"):
        aether.simulate("gesture", recordings=0)
    with pytest.raises(aether.ConfigError, match="bands"):
        aether.features(b"\0", bands=0)
    with pytest.raises(aether.ConfigError):
        aether.simulate("juggling")
    ds = aether.Dataset([np.zeros((30, 4), np.float32), np.ones((30, 4), np.float32)], [0, 1])
    with pytest.raises(aether.ConfigError, match="memory"):
        aether.windows(ds, window=1 << 40, short="pad")
    missing = tmp_path / "nothing.rvne"
    with pytest.raises(FileNotFoundError) as e:
        aether.Model.load(missing)
    assert e.value.filename == str(missing)
    with pytest.raises(FileNotFoundError):
        aether.features(tmp_path / "nothing.bin")
