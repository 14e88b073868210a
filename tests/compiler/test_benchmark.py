"""graphc.benchmark: the result's fields and table, output comparison, peak memory, where
compile times were measured and the fallbacks when a fresh process cannot rebuild the model.
No test asserts a timing: only that values are positive and finite, and what they say."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

import graphc
import graphc.nn as nn
from graphc.compiler.model_file import load_model
from graphc.compiler.benchmark import CHILD_ENV, BenchmarkResult, compare, peak_bytes, rebuild_source

from .test_cli import MODELS  # a file of models: MLP, build(), model, f, ...

STAGES = {"trace", "passes", "fuse", "lower", "llvm"}


def mlp() -> nn.Module:
    graphc.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4)).eval()


def check_numbers(r: BenchmarkResult) -> None:
    for name in ("eager_ms", "compiled_ms", "speedup", "cold_compile_ms", "cached_compile_ms",
                 "init_ms"):
        value = getattr(r, name)
        assert math.isfinite(value) and value > 0, (name, value)
    assert r.speedup == pytest.approx(r.eager_ms / r.compiled_ms)
    assert r.eager_peak_bytes > 0 and r.compiled_peak_bytes >= r.compiled_workspace_bytes >= 0
    assert r.matches and 0 <= r.max_abs_diff < 1e-5
    assert r.kernels >= 1 and r.fallbacks == 0 and not r.eager_runs
    for kind in ("cold", "cached"):
        stages = r.compile_stages_ms[kind]
        assert set(stages) == STAGES and all(v >= 0 for v in stages.values())
        assert sum(stages.values()) == pytest.approx(getattr(r, f"{kind}_compile_ms"))
    assert set(r.calls_per_sample) == {"eager", "compiled"}
    assert all(n >= 1 for n in r.calls_per_sample.values())


def test_fields_table_and_as_dict(capsys):
    model = mlp()
    x = graphc.randn(8, 16)
    r = graphc.benchmark(model, x, repeat=3, warmup=1)  # a local: no fresh process can build it
    check_numbers(r)
    assert r.name == "Sequential" and (r.repeat, r.warmup) == (3, 1)
    assert r.compile_measured_in.startswith("this process")
    assert r.cached_llvm_from == "memory"  # the second compile in one process
    assert r.as_dict() == dataclasses.asdict(r)
    assert set(r.as_dict()) == {f.name for f in dataclasses.fields(BenchmarkResult)}

    printed = capsys.readouterr().out
    assert printed == str(r) + "\n"
    lines = printed.splitlines()
    assert lines[0].startswith("benchmark Sequential: median of 3 interleaved samples after 1 "
                               "warm-up calls, under no_grad")
    rows = {line.split("  ")[1].strip(): line for line in lines[1:] if line.startswith("  ")
            and line.split("  ")[1].strip()}
    assert "faster" in rows["time per call"] or "slower" in rows["time per call"]
    assert "workspace held between calls" in rows["peak memory"]
    assert "llvm" in rows["compile, cold"] and "LLVM code from memory" in rows["compile, cached"]
    assert "matches eager" in rows["max |difference|"]
    assert f"{r.kernels}  native, 0 fallbacks" in rows["kernels"]
    assert "compile times measured in this process" in printed
    assert "note: the model is not a global of an importable module" in printed

    r = graphc.benchmark(graphc.compile(model), x, repeat=1, warmup=0, verbose=False,
                         fresh_processes=False)
    assert capsys.readouterr().out == ""
    assert r.name == "Sequential" and r.matches  # the compiled wrapper's original


def test_a_function_and_a_training_module():
    r = graphc.benchmark(lambda x, y: (x * y).sum(-1) + graphc.exp(x).mean(),
                         graphc.randn(8, 16), graphc.randn(8, 16), repeat=2, warmup=1,
                         verbose=False, fresh_processes=False)
    check_numbers(r)
    r = graphc.benchmark(mlp().train(), graphc.randn(4, 16), repeat=1, warmup=0, verbose=False,
                         fresh_processes=False)
    assert any("training mode" in n for n in r.notes)


def test_a_function_that_writes_its_input_is_compared_on_copies():
    def scale_in_place(x):
        x.mul_(2)
        return x + 1

    x = graphc.ones(64)
    r = graphc.benchmark(scale_in_place, x, repeat=1, warmup=0, verbose=False,
                         fresh_processes=False)
    assert r.matches and r.max_abs_diff == 0.0  # not the doubled input of the other run


def test_capture_failure_is_reported_not_hidden():
    def branchy(x):
        return x * 2 if x.sum() > 0 else x - 1

    with pytest.warns(UserWarning, match="capture failed"):
        r = graphc.benchmark(branchy, graphc.ones(3), repeat=1, warmup=0, verbose=False,
                             fresh_processes=False)
    assert r.eager_runs and "capture failed" in r.eager_runs[0]
    assert r.kernels == 0 and math.isnan(r.cold_compile_ms)
    assert any("the cold compile ran eagerly" in n for n in r.notes)
    assert "compiled calls ran eagerly" in str(r)


def test_fresh_process_failure_falls_back_to_this_process(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(MODELS)
    model = load_model(f"{path}:model")
    r = graphc.benchmark(model, graphc.randn(2, 16), repeat=1, warmup=0, verbose=False,
                         source=f"{path}:no_such_name")
    assert r.compile_measured_in.startswith("this process")
    assert any("in a fresh process failed" in n and "has no 'no_such_name'" in n
               for n in r.notes), r.notes
    check_numbers(r)


def test_rebuild_source_finds_globals_of_a_loaded_file(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(MODELS)
    model = load_model(f"{path}:model")
    assert rebuild_source(model) == f"{path}:model"
    assert rebuild_source(load_model(f"{path}:f")) == f"{path}:f"
    assert rebuild_source(load_model(f"{path}:MLP")) is None  # a new instance: no global
    assert rebuild_source(mlp()) is None


def test_compare_walks_outputs_and_checks_structure():
    a, b = graphc.tensor([1.0, float("nan"), 3.0]), graphc.tensor([1.0, float("nan"), 3.5])
    assert compare(a, a) == (0.0, True)  # NaNs in the same places match
    inf = graphc.tensor([float("inf"), -float("inf")])
    assert compare(inf, inf) == (0.0, True) and compare(inf, -inf) == (math.inf, False)
    assert compare((a, {"k": [a]}), (a, {"k": [b]})) == (0.5, False)
    assert compare(a, graphc.tensor([1.0, 2.0, 3.0]))[0] == math.inf
    assert compare(a, a[:2]) == (math.inf, False)
    assert compare((a,), (a, a)) == (math.inf, False)
    assert compare(a, a.double()) == (0.0, False)  # same values, another dtype
    big = graphc.tensor([1e6])
    assert compare(big, big + 1)[1]  # within 1e-4 of the output's scale
    assert not compare(big, big + 1000)[1]


def test_peak_bytes_sees_numpy_allocations():
    assert peak_bytes(lambda: np.ones(250_000)) >= 2_000_000
    assert peak_bytes(lambda: None) < 10_000


def test_arguments_are_checked(monkeypatch):
    with pytest.raises(ValueError, match="repeat must be a positive int"):
        graphc.benchmark(mlp(), graphc.randn(2, 16), repeat=0)
    with pytest.raises(ValueError, match="warmup must be an int >= 0"):
        graphc.benchmark(mlp(), graphc.randn(2, 16), warmup=-1)
    with pytest.raises(TypeError, match="expected a function or a graphc.nn.Module"):
        graphc.benchmark(3, graphc.randn(2, 16))
    monkeypatch.setenv(CHILD_ENV, "1")  # a file rebuilt in a fresh process calls benchmark
    with pytest.raises(RuntimeError, match="if __name__ == "):
        graphc.benchmark(mlp(), graphc.randn(2, 16))



def test_a_cold_compile_answered_from_memory_says_so():
    salt = 1.0 + time.time() % 1  # a constant of its own: no other test compiled this program

    def model(x):
        return graphc.tanh(x * salt)

    x = graphc.randn(5, 16)
    first = graphc.benchmark(model, x, repeat=1, warmup=0, verbose=False, fresh_processes=False)
    again = graphc.benchmark(model, x, repeat=1, warmup=0, verbose=False, fresh_processes=False)
    assert not any("found its code in memory" in n for n in first.notes)
    assert any("found its code in memory" in n for n in again.notes)
