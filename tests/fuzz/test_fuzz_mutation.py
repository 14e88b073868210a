"""The fuzzer's mutation mode (graphc/fuzz/mutation*.py): programs that write in place and
through views, compiled and traced against eager. A CI-sized run, the replay of every
saved ``mutation_*`` repro, the generator's determinism and coverage, and the checker
catching injected bugs (so it cannot pass silently).

The long run is ``python3 -m graphc fuzz --mutation --count 10000``.
"""

from __future__ import annotations

import json
import pathlib
from collections import Counter

import numpy as np
import pytest

from graphc.compiler import compiled as compiled_module
from graphc.fuzz import (
    check_mutation_case,
    fuzz_mutation,
    generate_mutation_case,
    load_mutation_case,
    save_mutation_case,
    shrink_mutation_case,
)
from graphc.fuzz.case import Input
from graphc.fuzz.mutation import MutationCase, Place, Ref, Stmt, case_kinds, run_eager, to_json
from graphc.fuzz.mutation_check import FALLBACK
from graphc.ops import OPS
from graphc.trace import TraceError

CI_SEED = 20240611
CI_COUNT = 300
REPROS = pathlib.Path(__file__).resolve().parent.parent / "fuzz_repros"

# every kind of mutation the generator must draw (case_kinds names them)
KINDS = {
    # views written through
    "slice with a step", "t", "transpose", "permute", "view", "reshape", "flatten", "select",
    "unsqueeze", "squeeze", "narrow", "chain of views",
    # writes
    "masked_fill_", "copy_", "copy_ broadcasting", "copy_ with a cast", "fill_", "zero_",
    "index_put_ with indices", "index_put_ with indices +=", "index_put_ with a mask",
    "clamp_", "iadd", "isub", "imul", "idiv", "add_", "sub_", "mul_", "unary in place",
    "setitem", "setitem_iadd",
    # reads, aliasing, inputs and outputs
    "read after a write", "view made before a write, read after it", "view made after a write",
    "two places of one base written", "input written", "non-contiguous input written",
    "output is an input", "output views an input",
}


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Compile into a throwaway disk cache (never the user's ~/.cache/graphc)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


# ---- the run -------------------------------------------------------------------------------

def test_ci_sized_mutation_run_finds_no_failure(tmp_path):
    """Fails until graph capture handles mutation (the functionalization pass): the failures
    printed are shrunk by ``python3 -m graphc fuzz --mutation --count 300 --seed 20240611``."""
    summary = fuzz_mutation(CI_COUNT, seed=CI_SEED, save=str(tmp_path), shrink=False,
                            progress=None)
    assert summary.count == CI_COUNT
    details = "\n\n".join(f"case {f.index}: {f.outcome}\n{f.case.describe()}"
                          for f in summary.failures[:10])
    assert not summary.failures, f"{summary.report()}\n\n{details}"
    assert summary.invalid == 0, "the generator made programs eager rejects"
    # eager fallbacks pass nothing: only writes through bool masks (their shape depends on
    # the mask's values, which capture does not know) may fall back
    others = {why: n for why, n in summary.fallbacks.items() if "depends on tensor values" not in why}
    assert not others, summary.report()
    assert summary.passed >= CI_COUNT * 0.85, summary.report()


def repro_files() -> list[pathlib.Path]:
    return sorted(REPROS.glob("mutation_*.json"))


@pytest.mark.parametrize("path", repro_files(), ids=lambda p: p.stem)
def test_saved_mutation_repro_passes(path):
    case = load_mutation_case(str(path))
    outcome = check_mutation_case(case)
    assert outcome.kind == "ok", f"{path.name} ({case.note}):\n{case.describe()}\n{outcome}"


# ---- the generator ---------------------------------------------------------------------------

def test_generation_is_deterministic():
    for i in (0, 7, 31):
        assert json.dumps(to_json(generate_mutation_case(5, i))) == \
            json.dumps(to_json(generate_mutation_case(5, i)))
    assert generate_mutation_case(5, 1).source() != generate_mutation_case(6, 1).source()


def test_generator_covers_every_kind_of_mutation():
    counts = Counter()
    for i in range(200):
        counts.update(case_kinds(generate_mutation_case(CI_SEED, i)))
    missing = sorted(KINDS - set(counts))
    assert not missing, f"never drawn in 200 programs: {missing}\ndrawn: {dict(counts)}"


def test_generator_draws_the_dtypes_and_sizes_asked_for():
    dtypes, sizes = Counter(), Counter()
    for i in range(200):
        for inp in generate_mutation_case(CI_SEED, i).inputs:
            dtypes[inp.dtype.name] += 1
            sizes.update(inp.shape)
    assert set(dtypes) == {"float32", "float64", "int32", "int64", "bool"}, dtypes
    assert dtypes["float32"] + dtypes["float64"] > sum(dtypes.values()) / 2, dtypes
    assert sizes[0] and sizes[1], sizes


@pytest.mark.parametrize("index", range(6))
def test_cases_round_trip_through_json_and_run_as_their_source(index, tmp_path):
    case = generate_mutation_case(11, index)
    loaded = load_mutation_case(save_mutation_case(case, str(tmp_path)))
    assert loaded.source() == case.source()
    assert pathlib.Path(tmp_path, "mutation_0000.json").exists()
    for a, b in zip(case.tensors(), loaded.tensors()):
        assert a.stride() == b.stride() and a.dtype == b.dtype
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    (out_a, in_a), (out_b, in_b) = run_eager(case), run_eager(loaded)
    for a, b in zip(out_a + in_a, out_b + in_b):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ---- the checker catches what is wrong ----------------------------------------------------------

def transposed_input() -> Input:
    a = np.array([[3.0, -2.0, 0.5], [1.0, 4.0, -7.0]], np.float32)
    return Input.of(a.T, np.random.default_rng(0))


def negate_then_scale() -> MutationCase:
    """def program(v0):  v0.t().neg_();  v1 = v0 * 2.0;  return v1, v0"""
    return MutationCase([transposed_input()],
                        [Stmt("neg_", (Place(Ref(0), (("t", ()),)),)),
                         Stmt("mul", (Ref(0), 2.0), Ref(1))], [Ref(1), Ref(0)])


def wrong_neg(s, x):
    return x  # forgets the sign: the injected bug


def test_a_wrong_value_is_a_mismatch_and_shrinks(monkeypatch):
    monkeypatch.setattr(OPS["neg"], "emit", wrong_neg)
    case = negate_then_scale()
    outcome = check_mutation_case(case)
    assert outcome.kind == "mismatch" and outcome.stage == "compiled", outcome
    small, again = shrink_mutation_case(case, outcome)
    assert again.signature == outcome.signature
    assert small.size <= case.size, small.describe()


def wrap_calls(monkeypatch, after):
    """Every compiled call returns ``after(inputs, outputs)``."""
    call = compiled_module.CompiledFunction.__call__

    def patched(self, *args, **kwargs):
        return after(args, call(self, *args, **kwargs))
    monkeypatch.setattr(compiled_module.CompiledFunction, "__call__", patched)


def test_an_input_left_unwritten_is_a_mismatch(monkeypatch):
    def forget_writes(args, outs):
        for t, inp in zip(args, case.inputs):  # the inputs as they were before the call
            t.copy_(inp.tensor())
        return outs
    case = MutationCase([transposed_input()], [Stmt("iadd", (Place(Ref(0)), 1.0))], [Ref(0)])
    wrap_calls(monkeypatch, forget_writes)
    outcome = check_mutation_case(case)
    assert outcome.kind == "mismatch" and "input 0 after the call" in outcome.message, outcome


def test_an_output_that_lost_its_aliasing_is_a_mismatch(monkeypatch):
    case = MutationCase([transposed_input()],
                        [Stmt("add_", (Place(Ref(0)), 1.0)),
                         Stmt("name", (Place(Ref(0), (("select", (0, 1)),)),), Ref(1))],
                        [Ref(0), Ref(1)])
    wrap_calls(monkeypatch, lambda args, outs: tuple(o.clone() for o in outs))
    outcome = check_mutation_case(case)
    assert outcome.kind == "mismatch", outcome
    assert outcome.error == "output should share an input's memory", outcome


def test_an_output_sharing_memory_it_should_not_is_a_mismatch(monkeypatch):
    case = MutationCase([transposed_input()], [Stmt("mul", (Ref(0), 1.0), Ref(1))], [Ref(1)])
    wrap_calls(monkeypatch, lambda args, outs: (args[0],))
    outcome = check_mutation_case(case)
    assert outcome.kind == "mismatch" and "shares memory with input 0" in outcome.message


def test_a_write_through_an_output_must_reach_the_input(monkeypatch):
    """The compiled output shares the input's storage and has the right values, but is
    another view of it (row 0 where eager returns row 1 of equal rows)."""
    rows = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], np.float32)
    case = MutationCase([Input.from_values(rows)],
                        [Stmt("name", (Place(Ref(0), (("select", (0, 1)),)),), Ref(1))],
                        [Ref(1)])
    wrap_calls(monkeypatch, lambda args, outs: (args[0][0],))
    outcome = check_mutation_case(case)
    assert outcome.kind == "mismatch", outcome
    assert outcome.error == "writing through an output", outcome


def test_an_eager_fallback_is_not_a_pass(monkeypatch):
    def refuse(*args, **kwargs):
        raise TraceError("capture refused by the test")
    monkeypatch.setattr(compiled_module, "trace_bound", refuse)
    outcome = check_mutation_case(negate_then_scale())
    assert outcome.kind == FALLBACK and not outcome.failed, outcome
    assert "capture refused by the test" in outcome.message
