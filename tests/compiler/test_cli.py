"""``python -m graphc bench|explain|dump FILE:OBJ``: what each target kind resolves to, where
example inputs come from, the outputs of each command, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import graphc
from graphc.cli import load_target, main

REPO = Path(__file__).resolve().parents[2]

MODELS = '''
import numpy as np
import graphc
import graphc.nn as nn
import graphc.nn.functional as F


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 4)

    def forward(self, x):
        return F.softmax(self.fc2(F.gelu(self.fc1(x))), dim=-1)


class Sized(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return self.fc(x)


def build():
    graphc.manual_seed(0)
    return MLP().eval()


model = build()
compiled = graphc.compile(build())


def f(x, y):
    return (x * y).sum(-1) + graphc.exp(x).mean()


f.example_inputs = (graphc.randn(8, 16), graphc.randn(8, 16))


def takes_two(x, y):
    return x + y


def shapes_wrong(x):
    return x @ x


def branchy(x):
    return x * 2 if x.sum() > 0 else x - 1


def not_a_module():
    return graphc.ones(3)


def explodes():
    raise ValueError("boom")


number = 3


def example_inputs():
    return (graphc.randn(4, 16),)


if __name__ == "__main__":
    raise SystemExit("the CLI must not run this")
'''


@pytest.fixture
def models(tmp_path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---- targets and example inputs -------------------------------------------------------------
@pytest.mark.parametrize("name, kind, shapes", [
    ("model", "MLP", [(4, 16)]),            # an instance; the file's example_inputs()
    ("build", "MLP", [(4, 16)]),            # a factory function
    ("MLP", "MLP", [(4, 16)]),              # a Module class: a zero-argument factory
    ("compiled", "CompiledModule", [(4, 16)]),
    ("f", "function", [(8, 16), (8, 16)]),  # its own example_inputs attribute comes first
])
def test_target_kinds(models, name, kind, shapes):
    model, inputs, label = load_target(f"{models}:{name}")
    assert label == f"models.py:{name}"
    assert (type(model).__name__ if isinstance(model, graphc.nn.Module) else "function") == kind
    assert [tuple(t.shape) for t in inputs] == shapes


def test_example_inputs_on_the_module_class(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(MODELS.replace("def example_inputs():", "def unused():") +
                    "\nMLP.example_inputs = lambda self: graphc.randn(2, 16)\n")
    for name in ("MLP", "model"):
        _, inputs, _ = load_target(f"{path}:{name}")
        assert [tuple(t.shape) for t in inputs] == [(2, 16)]  # a single tensor is a 1-tuple


ERRORS = [
    ("{path}", "expected FILE:OBJ (a Python file and a name in it"),
    ("{dir}/missing.py:model", "no such file: "),
    ("{dir}:model", "is not a file"),
    ("{path}:nope", "models.py has no 'nope'; it defines MLP, Sized, build, model, compiled, f,"),
    ("{path}:Sized", "is a Module class whose constructor needs arguments (d)"),
    ("{path}:not_a_module", "takes no arguments, so it is a factory, but it returned a Tensor; "
                            "expected a graphc.nn.Module"),
    ("{path}:explodes", "models.py:explodes() raised ValueError: boom at models.py:"),
    ("{path}:number", "models.py:number is an int; expected a graphc.nn.Module instance, a "
                      "function, or a zero-argument factory returning a module"),
    ("{path}:takes_two", "models.py:takes_two takes (x, y) but models.py:example_inputs() has "
                         "1 value"),
]


@pytest.mark.parametrize("spec, message", ERRORS)
def test_wrong_targets_exit_2_with_one_line(models, capsys, spec, message):
    spec = spec.format(path=models, dir=models.parent)
    code, out, err = run(capsys, "explain", spec)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("graphc explain: error: ") and message in err, err


@pytest.mark.parametrize("source, message", [
    ("x = (\n", "bad.py:1: SyntaxError: '(' was never closed"),
    ("raise RuntimeError('nope')\n", "running {path} raised RuntimeError: nope at bad.py:1"),
    ("import graphc\ndef f(x):\n    return x\n",
     "no example inputs for bad.py:f: expected `example_inputs = (graphc.randn(8, 32),)` in "
     "bad.py"),
    ("import graphc\ndef f(x):\n    return x\nexample_inputs = 3\n",
     "bad.py:example_inputs is an int; expected a tuple of graphc tensors, or a zero-argument "
     "function returning one"),
    ("import numpy\ndef f(x):\n    return x\nexample_inputs = (numpy.ones(3),)\n",
     "bad.py:example_inputs[0] is a numpy array; expected a graphc.Tensor"),
    ("def f(x):\n    return x\ndef example_inputs():\n    return {'x': 1}\n",
     "bad.py:example_inputs() returned a dict; expected a tuple"),
])
def test_wrong_files_and_inputs_exit_2(tmp_path, capsys, source, message):
    path = tmp_path / "bad.py"
    path.write_text(source)
    code, _, err = run(capsys, "bench", f"{path}:f", "--in-process")
    assert code == 2 and err.count("\n") == 1, err
    assert message.format(path=path) in err, err


def test_a_failing_model_exits_1_naming_its_line(models, capsys):
    code, _, err = run(capsys, "explain", f"{models}:shapes_wrong")
    assert code == 1 and "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("graphc explain: error: shapes_wrong failed: ShapeError: matmul: ")
    assert last.count("models.py:") == 1  # the error names the line once


# ---- the commands -----------------------------------------------------------------------------
def test_explain_text_and_json(models, capsys, tmp_path):
    code, out, err = run(capsys, "explain", f"{models}:model")
    assert code == 0 and "tracing and compiling" in err
    for section in ("compiled", "guards (checked on every call):", "traced graph:",
                    "kernels (", "fallbacks (0):"):
        assert section in out, section

    code, out, _ = run(capsys, "explain", f"{models}:f", "--json")
    data = json.loads(out)
    assert data["compiled"] and data["kernels"] and data["graphs"]["traced"].startswith("graph(")

    code, out, _ = run(capsys, "explain", f"{models}:f", "--json", tmp_path / "e.json")
    assert code == 0 and "kernels (" in out
    assert json.loads((tmp_path / "e.json").read_text())["compiled"]


def test_bench_in_process_prints_the_table_and_writes_json(models, capsys, tmp_path):
    code, out, err = run(capsys, "bench", f"{models}:f", "--repeat", 3, "--warmup", 1,
                         "--in-process", "--json", tmp_path / "b.json")
    assert code == 0
    assert out.startswith("benchmark f: median of 3 interleaved samples after 1 warm-up calls")
    for row in ("time per call", "peak memory", "compile, cold", "compile, cached",
                "max |difference|", "matches eager", "measured in this process"):
        assert row in out, row
    for step in ("tracing and compiling (cold, in this process)", "warming up eager",
                 "timing eager and compiled 3/3", "measuring peak memory"):
        assert step in err, step
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["name"] == "f" and data["matches"] and data["repeat"] == 3


def test_bench_json_when_capture_fails(models, capsys):
    code, out, err = run(capsys, "bench", f"{models}:branchy", "--repeat", 1, "--warmup", 0,
                         "--in-process", "--json")
    assert code == 0 and "UserWarning: graphc.compile: ran eagerly" in err
    data = json.loads(out)  # strict JSON: what was not measured is null, not NaN
    assert data["cold_compile_ms"] is None and data["kernels"] == 0
    assert "capture failed" in data["eager_runs"][0]


def test_bench_times_compilation_in_fresh_processes(models, capsys):
    """The factory is rebuilt in two new processes: cold into an empty cache directory, then
    cached reading it (its LLVM code from the disk)."""
    code, out, err = run(capsys, "bench", f"{models}:build", "--repeat", 1, "--warmup", 0,
                         "--json")
    assert code == 0 and "fresh processes" in err
    data = json.loads(out)
    assert data["compile_measured_in"].startswith("fresh processes") and not data["notes"]
    assert data["cached_llvm_from"] == "disk" and data["matches"]
    for kind in ("cold", "cached"):
        assert data[f"{kind}_compile_ms"] > 0
        assert set(data["compile_stages_ms"][kind]) == {"trace", "passes", "fuse", "lower", "llvm"}


def test_dump_writes_every_stage(models, capsys, tmp_path):
    code, out, _ = run(capsys, "dump", f"{models}:model", tmp_path / "out")
    assert code == 0 and Path(out.strip()) == tmp_path / "out"
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"explain.txt", "1_traced.txt", "5_kernels.txt", "repro.py", "inputs.gcz"} <= names


def test_usage_errors_and_demo_still_listed(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench"])
    assert e.value.code == 2 and "FILE:OBJ" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0


def test_the_entry_point_runs(models):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "graphc", "explain", f"{models}:f"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("explain f: compiled")
