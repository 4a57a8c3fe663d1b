"""Export parity: Model.save / to_bytes / to_safetensors write the bytes `aether convert` writes."""

import hashlib

import pytest

import aether

REFERENCE_SHA256 = "7c6c074ef3b6b23b4d9ae2327deaade81329f003c3a52b59581492c08252d49d"


@pytest.mark.parametrize(
    "fmt,dtype,strip,flags",
    [
        ("v2", None, False, ["--to", "v2"]),
        ("v2", "f16", False, ["--to", "v2", "--dtype", "f16"]),
        ("safetensors", None, False, ["--to", "safetensors"]),
        ("safetensors", "f16", False, ["--to", "safetensors", "--dtype", "f16"]),
    ],
)
def test_save_equals_convert(cli, work, cli_model, fmt, dtype, strip, flags):
    m = aether.Model.load(cli_model)
    out = work / f"conv_{fmt}_{dtype}.bin"
    cli("convert", cli_model, out, *flags)
    assert m.to_bytes(format=fmt, dtype=dtype, strip_names=strip) == out.read_bytes()
    mine = work / f"mine_{fmt}_{dtype}.bin"
    if fmt == "safetensors":
        m.to_safetensors(mine, dtype=dtype)
    else:
        m.save(mine, format=fmt, dtype=dtype)
    assert mine.read_bytes() == out.read_bytes()


def test_reference_v1_roundtrip(cli, work):
    ref = work / "ref.rvne"
    cli("init", ref)
    assert hashlib.sha256(ref.read_bytes()).hexdigest() == REFERENCE_SHA256
    m = aether.Model.load(ref)
    assert m.to_bytes(format="v1") == ref.read_bytes()
    conv = work / "ref_v2.rvne"
    cli("convert", ref, conv, "--to", "v2")
    assert m.to_bytes(format="v2") == conv.read_bytes()
    # v2 back to v1: the same reference blob again.
    assert aether.Model.from_bytes(conv.read_bytes()).to_bytes(format="v1") == ref.read_bytes()


def test_v1_of_trained_bare_model(cli, work, data_dir):
    out = work / "bare.rvne"
    cli("train", "--data", data_dir, "--out", out, "--quiet", "--no-plots", "--format", "v1", "--epochs", "1", "--window", "64")
    m = aether.Model.load(out)
    assert m.to_bytes(format="v1") == out.read_bytes()


def test_v1_needs_strip_for_named_model(cli, work, cli_model):
    m = aether.Model.load(cli_model)
    with pytest.raises(aether.FormatError):
        m.to_bytes(format="v1")


def test_int8_only_v2(int8_model):
    m = aether.Model.load(int8_model)
    assert m.to_bytes() == int8_model.read_bytes()
    with pytest.raises(aether.FormatError, match="int8"):
        m.to_bytes(format="safetensors")


def test_bad_format_names(cli_model):
    m = aether.Model.load(cli_model)
    with pytest.raises(aether.ConfigError):
        m.to_bytes(format="onnx")
    with pytest.raises(aether.ConfigError):
        m.to_bytes(dtype="bf16")
