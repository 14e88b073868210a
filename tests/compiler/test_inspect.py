"""Understanding a compiled function: explain (text and data), check mode catching a broken
kernel, dumps with a repro script that runs, and GRAPHC_DEBUG levels."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.compiler import CheckError
from graphc.ops import OPS


def block(x, w, b):
    h = F.layer_norm(x @ w, (w.shape[1],))  # line 21
    return F.softmax(h + b, dim=-1) * 2      # line 22


def inputs():
    graphc.manual_seed(0)
    return graphc.randn(16, 8), graphc.randn(8, 12), graphc.randn(12)


def test_explain_as_text_and_data():
    e = graphc.explain(block, *inputs())
    assert e.compiled and not e.fallbacks and not e.eager_runs
    text = str(e)
    for section in ("guards (checked on every call):", "traced graph:", "passes:",
                    "fusion decisions", "optimized graph:", "kernels (", "fallbacks (0)",
                    "time per stage: trace"):
        assert section in text, section
    assert "shape    x == [16, 8]" in text and "dtype    w == float32" in text
    names = [k["name"] for k in e.kernels]
    assert any(n.startswith("M_16_12_8") for n in names) and any(n.startswith("R_16_12")
                                                                for n in names)
    matmul = next(k for k in e.kernels if k["name"].startswith("M_"))
    assert matmul["flops"] >= 2 * 16 * 12 * 8  # 2·M·N·K plus the epilogue
    assert matmul["bytes"] >= 4 * (16 * 8 + 8 * 12 + 16 * 12)
    assert set(e.stages_ms) == {"trace", "passes", "fuse", "lower", "llvm"}
    assert all(v >= 0 for v in e.stages_ms.values())
    assert any("->" in d for d in e.fusion)
    json.dumps(e.as_dict())  # plain data


def test_explain_names_fallbacks_and_eager_runs():
    e = graphc.explain(lambda x: graphc.cat([x.exp(), x]) * 2, graphc.randn(3))
    assert [f["node"] for f in e.fallbacks] == ["cat"]
    assert e.fallbacks[0]["reason"] and e.fallbacks[0]["location"].startswith("test_inspect.py:")
    assert "%cat:" in str(e)

    def branchy(x):
        return x if x.sum() > 0 else -x

    with pytest.warns(UserWarning, match="capture failed"):
        e = graphc.explain(branchy, graphc.randn(3))
    assert not e.compiled and "capture failed" in e.eager_runs[0]
    assert "runs eagerly" in str(e)


def test_explain_of_a_compiled_module_includes_weights_and_recompiles():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU()).eval()
    cm = graphc.compile(model)
    with graphc.no_grad():
        cm(graphc.randn(2, 4))
    e = cm.explain(graphc.randn(3, 4))
    assert "weight   0.weight is the tensor compiled with" in str(e)
    assert e.recompiles[0]["name"] == "input.shape[0]"


def test_explain_a_plain_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2)).eval()
    e = graphc.explain(model, graphc.randn(2, 3, 10, 10))
    assert e.compiled and e.name == "Sequential"
    assert not any(k["name"].startswith("C_") and "pad" in k["name"] for k in e.kernels)


def test_check_mode_passes_a_correct_graph():
    f = graphc.compile(block, check=True)
    x, w, b = inputs()
    got = f(x, w, b)
    assert (got - block(x, w, b)).abs().max().item() < 1e-5
    assert f.last.checked


def test_check_mode_names_a_deliberately_broken_kernel(monkeypatch):
    exp = OPS["exp"].emit

    def off_by_a_bit(s, x):  # exp, 0.01 too large: a wrong kernel
        value = exp(s, x)
        return s.b.fadd(value, s.c(0.01)) if s.is_float else value

    monkeypatch.setattr(OPS["exp"], "emit", off_by_a_bit)
    f = graphc.compile(block, check=True)
    with pytest.raises(CheckError) as info:
        f(*inputs())
    e = info.value
    assert e.kernel.startswith("R_16_12") and "exp" in str(e)
    assert "test_inspect.py:22" in e.locations  # softmax's line (the kernel fuses both lines)
    assert "differs from the float64 reference" in str(e) and "%exp" in e.subgraph
    unchecked = graphc.compile(block)  # without check mode the error would be silent
    x, w, b = inputs()
    assert (unchecked(x, w, b) - block(x, w, b)).abs().max().item() > 1e-4


def test_dump_of_a_program_that_writes_its_inputs(tmp_path):
    """dump runs the program on copies (the caller's tensors stay as they were) and saves
    the inputs before any write; the repro runs eager and compiled on fresh loads."""
    def scale(x, y):
        x.mul_(2)
        y[0] = 5.0
        return x + y

    x, y = graphc.ones(4), graphc.zeros(4)
    compiled = graphc.compile(scale)
    with graphc.no_grad():
        compiled(x.clone(), y.clone())
    out = graphc.dump(compiled, str(tmp_path / "dump"), x, y)
    assert x.tolist() == [1.0] * 4 and y.tolist() == [0.0] * 4
    assert graphc.load(os.path.join(out, "inputs.gcz"))[0].tolist() == [1.0] * 4
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(graphc.__file__))}
    run = subprocess.run([sys.executable, os.path.join(out, "repro.py")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "compiled vs eager: 1 outputs agree" in run.stdout
    assert "the rebuilt graph (eager) vs the original code: 1 outputs agree" in run.stdout


def test_dump_writes_every_stage_and_a_repro_that_runs(tmp_path):
    model = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.LayerNorm(8), nn.Linear(8, 3)).eval()
    cm = graphc.compile(model)
    x = graphc.randn(5, 6)
    with graphc.no_grad():
        cm(x)
    out = graphc.dump(cm, str(tmp_path / "dump"))
    files = sorted(os.listdir(out))
    assert files == ["1_traced.txt", "2_passes.txt", "3_fusion.txt", "4_optimized.txt",
                     "5_kernels.txt", "6_llvm.ll", "7_llvm_opt.ll", "8_asm.s", "expected.gcz",
                     "explain.txt", "inputs.gcz", "repro.py", "weights.gcz"]
    read = lambda name: open(os.path.join(out, name)).read()
    assert "kernel M_5_8_6" in read("5_kernels.txt")
    assert "define" in read("6_llvm.ll") and "define" in read("7_llvm_opt.ll")
    assert "ret" in read("8_asm.s")
    assert "decompose" in read("2_passes.txt")
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(graphc.__file__))}
    run = subprocess.run([sys.executable, os.path.join(out, "repro.py")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "compiled vs eager: 1 outputs agree" in run.stdout
    assert "the rebuilt graph (eager) vs the original code: 1 outputs agree" in run.stdout
    # the repro checks its rebuilt graph against the saved outputs of the original code
    source = read("repro.py").replace("ops.gelu(", "ops.relu(", 1)
    assert source != read("repro.py")
    open(os.path.join(out, "repro.py"), "w").write(source)
    run = subprocess.run([sys.executable, os.path.join(out, "repro.py")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 1 and "original code: output 0 MISMATCH" in run.stdout


def test_dump_needs_inputs_or_a_call(tmp_path):
    f = graphc.compile(lambda x: x + 1)
    with pytest.raises(ValueError, match="has not been called yet; pass example inputs"):
        graphc.dump(f, str(tmp_path))
    assert graphc.dump(f, str(tmp_path), graphc.ones(3)) == str(tmp_path)


@pytest.mark.parametrize("level, expected, absent", [
    (1, ["traced graph", "fused graph", "recompile"], ["passes", "kernel IR", "llvm_opt"]),
    (2, ["passes", "decompose"], ["kernel IR"]),
    (3, ["kernel IR", "kernel E_"], ["llvm_opt"]),
    (4, ["llvm_opt", "define", "asm"], []),
])
def test_graphc_debug_levels(monkeypatch, capsys, level, expected, absent):
    monkeypatch.setenv("GRAPHC_DEBUG", str(level))
    f = graphc.compile(lambda x: (x * 2).exp())
    f(graphc.ones(3))
    f(graphc.ones(4))
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, text
    for text in absent:
        assert f"] {text}" not in err and f": {text} " not in err, text


def test_a_compiled_function_does_not_keep_its_inputs_alive(tmp_path):
    import gc
    import weakref

    f = graphc.compile(lambda x: x * 2)
    x = graphc.randn(1000)
    f(x)
    gone = weakref.ref(x)
    del x
    gc.collect()
    assert gone() is None
    with pytest.raises(ValueError, match="the tensors <lambda> was compiled with are gone"):
        graphc.dump(f, str(tmp_path))
