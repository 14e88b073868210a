"""The differential fuzzer (graphc/fuzz): a CI-sized run, the replay of every saved repro,
the tolerance policy on cases whose answer is known, and the fuzzer's own machinery
(determinism, JSON, shrinking, an injected bug being found).

The long run is ``python3 -m graphc fuzz --count 10000``.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pytest

import graphc
from graphc.fuzz import (
    Case,
    Input,
    Ref,
    Step,
    check_case,
    fuzz,
    fuzzed_ops,
    generate_case,
    load_case,
    save_case,
    shrink_case,
)
from graphc.fuzz.case import from_json, run_eager, to_json
from graphc.fuzz.bounds import output_bounds
from graphc.fuzz.tolerance import compare
from graphc.ops import OPS

CI_SEED = 20240611
CI_COUNT = 300
DYNAMIC_COUNT, DYNAMIC_SEED = 120, 5  # with symbolic sizes: two compiles per graph
REPROS = pathlib.Path(__file__).resolve().parent.parent / "fuzz_repros"


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Compile into a throwaway disk cache (never the user's ~/.cache/graphc)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


# ---- the runs ------------------------------------------------------------------------------

def test_ci_sized_fuzz_run_finds_no_mismatch(tmp_path):
    summary = fuzz(CI_COUNT, seed=CI_SEED, save=str(tmp_path), progress=None)
    assert summary.count == CI_COUNT
    details = "\n\n".join(f"case {f.index}: {f.outcome}\nshrunk:\n{f.case.describe()}\n"
                          f"saved as {f.path}" for f in summary.failures)
    assert not summary.failures, f"{summary.report()}\n\n{details}"
    assert summary.invalid == 0, "the generator made cases eager rejects"


def test_ci_sized_fuzz_run_with_symbolic_sizes(tmp_path):
    """Each graph also compiled with dynamic=True, run on its inputs and on inputs with
    one size changed: the symbolic programs serve them where their guards hold."""
    summary = fuzz(DYNAMIC_COUNT, seed=DYNAMIC_SEED, save=str(tmp_path), progress=None,
                   dynamic=True)
    details = "\n\n".join(f"case {f.index}: {f.outcome}\nshrunk:\n{f.case.describe()}\n"
                          f"saved as {f.path}" for f in summary.failures)
    assert not summary.failures, f"{summary.report()}\n\n{details}"
    assert summary.dynamic["resized: served without compiling"] >= 3, summary.report()
    assert summary.dynamic["fixed sizes"] < DYNAMIC_COUNT // 2, summary.report()


def repro_files() -> list[pathlib.Path]:
    """Every saved repro but the gradient mode's (``grad_*``: test_fuzz_grad.py replays them,
    with the known bugs marked)."""
    return sorted(p for p in REPROS.glob("*.json") if not p.stem.startswith("grad_"))


@pytest.mark.parametrize("path", repro_files(), ids=lambda p: p.stem)
def test_saved_repro_passes(path):
    """Each saved failure passes now (``dynamic_*``: found with symbolic sizes, replayed so)."""
    case = load_case(str(path))
    outcome = check_case(case, dynamic=path.stem.startswith("dynamic_"))
    assert not outcome.failed, f"{path.name} ({case.note}):\n{case.describe()}\n{outcome}"
    assert outcome.kind == "ok", f"{path.name} no longer runs eagerly: {outcome}"


def test_every_fuzzable_op_is_drawn():
    """New ops in the table are fuzzed without touching the generator."""
    drawn = {s.op for i in range(2500) for s in generate_case(CI_SEED, i).steps}
    missing = sorted(op.name for op in fuzzed_ops() if op.name not in drawn)
    assert not missing, f"never drawn in 2500 cases: {missing}"


def test_skipped_ops_are_the_impure_and_data_dependent_ones():
    skipped = sorted(op.name for op in OPS if op not in fuzzed_ops())
    assert skipped == sorted(op.name for op in OPS if op.flags & {
        graphc.ops.Flag.IMPURE, graphc.ops.Flag.MUTATES, graphc.ops.Flag.RANDOM}
        or op.name == "nonzero"), skipped


# ---- the case format --------------------------------------------------------------------------

def test_generation_is_deterministic():
    for i in (0, 7, 31):
        assert json.dumps(to_json(generate_case(5, i))) == json.dumps(to_json(generate_case(5, i)))
    assert json.dumps(to_json(generate_case(5, 1))) != json.dumps(to_json(generate_case(6, 1)))


@pytest.mark.parametrize("index", range(12))
def test_cases_round_trip_through_json(index, tmp_path):
    case = generate_case(11, index)
    path = save_case(case, str(tmp_path))
    loaded = load_case(path)
    assert json.dumps(to_json(loaded)) == json.dumps(to_json(case))
    for a, b in zip(case.tensors(), loaded.tensors()):
        assert a.stride() == b.stride() and a.dtype == b.dtype
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(run_eager(case), run_eager(loaded)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_inputs_keep_their_layout_and_values():
    base = np.arange(24.0, dtype=np.float32).reshape(4, 6)
    for a in (base.T, base[::-1, 1::2], np.broadcast_to(base[:1], (3, 4, 6)), base[2:, ::-3]):
        inp = Input.of(a, np.random.default_rng(0))
        t = inp.tensor()
        np.testing.assert_array_equal(t.numpy(), a)
        assert [s * a.itemsize for s in t.stride()] == list(a.strides)


def test_a_case_file_is_plain_json_with_specials_tagged(tmp_path):
    case = Case([Input.from_values(np.array([np.nan, -np.inf, -0.0], np.float32))],
                [Step("clamp", (Ref(0), None, float("inf")))], [Ref(1)])
    text = pathlib.Path(save_case(case, str(tmp_path / "c.json"))).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    back = from_json(json.loads(text))
    assert np.signbit(back.inputs[0].buffer[2]) and back.steps[0].args[2] == float("inf")


# ---- the tolerance policy -----------------------------------------------------------------------

def bounds(fn, *arrays):
    tensors = tuple(graphc.from_numpy(np.asarray(a)) for a in arrays)
    with np.errstate(all="ignore"), warnings.catch_warnings(), graphc.no_grad():
        warnings.simplefilter("ignore")
        outs, b = output_bounds(graphc.trace(fn, *tensors), tensors)
        return b, outs


def t(values, dtype=np.float32):
    return graphc.from_numpy(np.array(values, dtype))


def test_exact_results_are_compared_bit_for_bit():
    x = np.array([1.5, -2.0, 0.0, -0.0, np.nan, np.inf], np.float32)
    (b,), (ref,) = bounds(lambda x: (graphc.maximum(x * 2.0, -x),), x)
    assert (b.err == 0).all()
    assert compare(ref, ref, b) is None
    up = ref.numpy().copy()
    up[0] = np.nextafter(up[0], np.float32(np.inf))
    assert "beyond the tolerance" in compare(t(up), ref, b)
    flipped = ref.numpy().copy()
    flipped[2] = -flipped[2]  # maximum(0.0, -0.0) is +0.0, as numpy: the sign is compared
    assert "sign of zero" in compare(t(flipped), ref, b)
    lost = ref.numpy().copy()
    lost[4] = 0.0
    assert "nan" in compare(t(lost), ref, b)


def test_transcendentals_get_a_few_ulps():
    x = np.linspace(-5, 5, 101).astype(np.float32)
    (b,), (ref,) = bounds(lambda x: (graphc.exp(x),), x)
    r = ref.numpy()
    ulp = np.spacing(np.abs(r))
    assert compare(t(r + 3 * ulp), ref, b) is None
    assert compare(t(r + 20 * ulp), ref, b) is not None


def test_sums_are_tolerated_in_proportion_to_their_length():
    rng = np.random.default_rng(0)
    short, long_ = rng.random(10, np.float32), rng.random(10_000, np.float32)
    (bs,), _ = bounds(lambda x: (x.sum(),), short)
    (bl,), _ = bounds(lambda x: (x.sum(),), long_)
    eps = np.finfo(np.float32).eps
    assert bs.err <= 10 * eps * short.sum() * 1.01
    assert bl.err >= 1000 * eps * long_.sum()


def test_results_that_depend_on_rounding_are_not_compared():
    # exp(x) > exp(y) for x within a few ulps of y: either answer is right
    x = np.array([1.0, 2.0], np.float32)
    y = np.nextafter(x, np.float32(3))
    (b,), _ = bounds(lambda x, y: (graphc.exp(x) < graphc.exp(y),), x, y)
    assert not np.isfinite(b.err).any()
    # tanh(8.8146) is 1 - 4.4e-8: numpy rounds it to 0.99999994, a 1-ulp tanh to 1.0
    (e,), _ = bounds(lambda x: (graphc.tanh(x) == 1.0,), np.array([8.814602851867676, 0.5],
                                                                    np.float32))
    assert list(np.isfinite(e.err)) == [False, True]
    # a cast of nan or of an out-of-range float to an integer is implementation-defined
    (c,), _ = bounds(lambda x: (x.to(graphc.int32),), np.array([np.nan, 3e9, 2.5], np.float32))
    assert list(np.isfinite(c.err)) == [False, False, True]


def test_the_sign_of_a_sum_of_zeros_is_free_but_its_reciprocal_is_not_compared():
    x = np.array([[-0.0, -0.0], [0.0, -0.0]], np.float32)
    (s, r), (ref, _) = bounds(lambda x: (x.sum(1), 1.0 / x.sum(1)), x)
    assert s.free_zero.all()
    assert compare(-ref, ref, s) is None
    assert not np.isfinite(r.err).any()


def test_composites_allow_for_their_reference_kernels_cancellation():
    # gelu's kernel, 0.5·x·(1 + erf(x/√2)), cancels for negative x; its decomposition
    # (what the backend compiles) is no better: both are allowed a few eps·|x|
    x = np.array([-3.3, -5.0, 1.0], np.float32)
    (b,), _ = bounds(lambda x: (graphc.nn.functional.gelu(x),), x)
    assert (b.err >= 2 * np.finfo(np.float32).eps * np.abs(x)).all()


# ---- finding and shrinking bugs ------------------------------------------------------------------

def wrong_abs(s, x):
    return x  # forgets the sign: the injected bug


def test_an_injected_codegen_bug_is_found_and_shrunk(monkeypatch, tmp_path):
    monkeypatch.setattr(OPS["abs"], "emit", wrong_abs)
    x = Input.of(np.array([[3.0, -2.0, 0.5], [1.0, 4.0, -7.0]], np.float32).T,
                 np.random.default_rng(0))
    w = Input.from_values(np.array([1.0, 2.0], np.float32))
    case = Case([x, w], [Step("exp", (Ref(0),)), Step("abs", (Ref(0),)),
                         Step("mul", (Ref(3), Ref(1))), Step("sum", (Ref(4),), {"dim": (1,)})],
                [Ref(5), Ref(2)])
    outcome = check_case(case)
    assert outcome.kind == "mismatch", outcome
    small, again = shrink_case(case, outcome)
    assert again.kind == "mismatch"
    assert [s.op for s in small.steps] == ["abs"], small.describe()
    assert len(small.inputs) == 1 and small.inputs[0].shape in ((), (1,)), small.describe()
    assert small.inputs[0].values().reshape(-1)[0] < 0
    saved = load_case(save_case(small, str(tmp_path)))
    assert check_case(saved).kind == "mismatch"
    monkeypatch.undo()
    assert check_case(saved).kind == "ok"


def test_a_case_eager_rejects_is_invalid_not_a_failure():
    case = Case([Input.from_values(np.ones(3, np.int32)), Input.from_values(np.zeros(3, np.int32))],
                [Step("remainder", (Ref(0), Ref(1)))], [Ref(2)])
    outcome = check_case(case)
    assert outcome.kind == "invalid" and not outcome.failed
