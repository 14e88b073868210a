"""The demo and every example run as a new user would run them."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(path):
    assert _run(str(path))


def test_demo_runs_and_shows_each_part():
    out = _run("-m", "graphc", "demo")
    assert "The op table:" in out and "ShapeError" in out and "at cli.py:" in out
    assert "eager:" in out and "ms per call" in out
    assert "device='meta', size=(8, 128, 256)" in out
    assert "graph(%x : f32[8, 128, 256]):" in out and "differs from eager by 0.0e+00" in out
    assert "9 kernels; intermediate traffic" in out and "call_module[fused_8]" in out
