"""The demo and every example run as a new user would run them, and say what they should."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
EAGER_WARNING = "graphc.compile: ran eagerly"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``run(*args) -> stdout``: the interpreter on ``args`` from the repo root, with a
    fresh compile cache (nothing written to ~/.cache); each command runs once per module."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path_factory.mktemp("graphc-cache")))
    env.pop("GRAPHC_DEBUG", None)  # the dumps would bury the output the tests read
    outputs: dict[tuple, str] = {}

    def run_(*args: str) -> str:
        if args not in outputs:
            done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                                  text=True, timeout=300, env=env)
            assert done.returncode == 0, done.stderr
            assert EAGER_WARNING not in done.stderr, done.stderr
            outputs[args] = done.stdout
        return outputs[args]

    return run_


def example(run, name: str) -> str:
    return run(str(ROOT / "examples" / name))


def compiled_vs_eager(out: str) -> float:
    """The ``max |compiled - eager| = ...`` every compiling example prints."""
    found = re.search(r"max \|compiled - eager\| = (\S+) \(tolerance 1e-04\)", out)
    assert found, out
    return float(found.group(1))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(run, path):
    assert run(str(path))


def test_eager_tour(run):
    out = example(run, "eager_tour.py")
    assert "meta result: tensor(..., device='meta', size=(5, 3))" in out
    assert "cannot be multiplied (8 columns vs 3 rows) at eager_tour.py:" in out


def test_trace_model(run):
    out = example(run, "trace_model.py")
    assert "max |graph - eager|: 0.0 | interpreter: 0.0" in out
    assert "specialised on: ['trace_model.py:" in out


def test_train_mlp(run):
    assert "reloaded model gives identical outputs: True" in example(run, "train_mlp.py")


def test_train_mlp_compiled_reaches_eagers_losses_and_accuracy(run):
    eager = example(run, "train_mlp.py")
    compiled = run(str(ROOT / "examples" / "train_mlp.py"), "--compile")
    pick = lambda out: re.findall(r"step +\d+ +loss (\S+)|accuracy (\S+)", out)  # noqa: E731
    got, want = pick(compiled), pick(eager)
    assert len(got) == len(want) > 3
    for (l1, a1), (l2, a2) in zip(got, want):
        assert a1 == a2
        if l1:
            assert abs(float(l1) - float(l2)) < 1e-3


def test_train_compiled(run):
    out = example(run, "train_compiled.py")
    assert "compiled training matches eager: True" in out
    assert out.count("calls that ran eagerly: 0") == 2  # the model compiled, the step compiled
    assert "saved for backward" in out and "backward program" in out
    assert "after the programs, in order: backward (gradients into .grad), AdamW.step, " \
        "AdamW.zero_grad" in out


def test_mlp_inference(run):
    out = example(run, "mlp_inference.py")
    assert "output (64, 10)," in out and compiled_vs_eager(out) <= 1e-4
    assert re.search(r"median per call: eager \d+\.\d+ ms, compiled \d+\.\d+ ms", out), out
    assert "compiled signatures: 1, recompiles: 0, eager runs: 0" in out


def test_softmax_layernorm(run):
    out = example(run, "softmax_layernorm.py")
    assert compiled_vs_eager(out) <= 1e-4
    assert "%softmax : f32[128, 128] = softmax(%div, dim=-1)" in out
    assert "kernel  %div_1 -> %matmul_1: consumer is a matmul" in out
    assert re.search(r"kernels \(5\).*\n  M_128_128_64 .*\n  R_128_128 .*amax", out), out
    assert "fallbacks to numpy: 0" in out
    assert "shape guard on q.shape[0] failed: 128 -> 32" in out


def test_cnn(run):
    out = example(run, "cnn.py")
    assert "logits (8, 10)," in out and compiled_vs_eager(out) <= 1e-4
    assert "3 matmul" in out and "0 numpy fallbacks" in out
    assert "M_16_1024_27" in out and out.count("-> relu\n") == 2  # conv + bn + relu: one kernel


def test_transformer_block(run):
    out = example(run, "transformer_block.py")
    assert "output (8, 64, 128)," in out and compiled_vs_eager(out) <= 1e-4
    assert " 0 numpy fallbacks" in out  # the padding mask's full() folds to a stride-0 constant
    assert re.search(r"eager \d+\.\d+ ms, compiled \d+\.\d+ ms, speed-up \d+\.\dx", out), out


def test_training_loop(run):
    out = example(run, "training_loop.py")
    assert "compiled signatures: 1, recompiles: 0, eager runs: 0" in out
    val_losses = [float(v) for v in re.findall(r"val loss (\d+\.\d+)", out)]
    assert len(val_losses) == 6 and val_losses[-1] < 0.5 * val_losses[0], out
    assert "loss went down: train" in out


def test_demo_runs_and_shows_each_part(run):
    out = run("-m", "graphc", "demo")
    assert "The op table:" in out and "ShapeError" in out and "at demo.py:" in out
    assert "eager:" in out and "ms per call" in out
    assert "device='meta', size=(8, 128, 256)" in out
    assert "graph(%x : f32[8, 128, 256]):" in out and "differs from eager by 0.0e+00" in out
    assert "10 kernels; intermediate traffic" in out and "call_module[fused_9]" in out
    assert "10 native kernels, 0 numpy fallbacks" in out and "kernel R_1024_256" in out
    assert "shape guard on x.shape[0] failed: 8 -> 2" in out
    assert re.search(r"compiled +\d+\.\d+ ms +\d+\.\dx (faster|slower)", out), out
    assert "copy_(%skip, %mul_1)" in out and "view_scatter(" in out
    assert "output differs by 0.0e+00, the written argument by 0.0e+00" in out
