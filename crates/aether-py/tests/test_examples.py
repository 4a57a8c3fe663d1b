"""The PyTorch interop example, run when torch is installed (an optional dependency)."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, aether_bin


def test_torch_interop(tmp_path):
    pytest.importorskip("torch")
    env = dict(os.environ, AETHER_BIN=str(aether_bin()))
    r = subprocess.run([sys.executable, str(REPO / "examples" / "python" / "torch_interop.py"), "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "logits agree with the fine-tuned PyTorch module" in r.stdout
