"""Shared fixtures: the `aether` binary built by cargo, a small simulated dataset folder
written by it, and a model trained by it, so tests compare Python with the CLI."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def aether_bin() -> Path:
    """The CLI: $AETHER_BIN, else target/debug/aether of this repository."""
    p = Path(os.environ.get("AETHER_BIN", REPO / "target" / "debug" / "aether"))
    if not p.is_file():
        pytest.fail(f"{p} not found: build it with `cargo build -p aether-cli` or set AETHER_BIN")
    return p


def run(*args, cwd=None) -> str:
    """Runs the CLI and returns its stdout; a failure fails the test with its stderr."""
    r = subprocess.run([str(aether_bin()), *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if r.returncode != 0:
        pytest.fail(f"aether {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def json_lines(text: str):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="session")
def cli():
    return run


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("aether")


@pytest.fixture(scope="session")
def data_dir(work) -> Path:
    """`aether simulate --task gesture --recordings 4 --seed 0`: 4 classes × 4 recordings."""
    d = work / "data"
    run("simulate", "--task", "gesture", "--recordings", 4, "--seed", 0, "--out", d)
    return d


TRAIN_ARGS = ["--epochs", "3", "--seed", "7", "--window", "64", "--stride", "32"]


@pytest.fixture(scope="session")
def cli_model(work, data_dir) -> Path:
    """A model trained by `aether train` on `data_dir` with TRAIN_ARGS."""
    out = work / "cli_model.rvne"
    run("train", "--data", data_dir, "--out", out, "--quiet", "--no-plots", *TRAIN_ARGS)
    return out


@pytest.fixture(scope="session")
def int8_model(work, cli_model, data_dir) -> Path:
    """The int8 model `aether quantize` makes of `cli_model`."""
    out = work / "cli_model.int8.rvne"
    run("quantize", "--model", cli_model, "--calib", data_dir, "--out", out)
    return out


@pytest.fixture(scope="session")
def recording_csv(data_dir) -> Path:
    """One recording of the dataset folder (a CSV with a header row)."""
    return sorted((data_dir / "wave").glob("*.csv"))[0]


def write_csv(path: Path, names, x) -> Path:
    """Writes frames `x` (float32) as a CSV with a header row; values exact (shortest repr)."""
    lines = [",".join(names)] + [",".join(str(v) for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")
    return path
