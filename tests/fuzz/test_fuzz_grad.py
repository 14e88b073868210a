"""The fuzzer's gradient mode (graphc/fuzz/grad.py, grad_tolerance.py): compiled training
against eager autograd. A CI-sized run, the replay of every saved ``grad_*`` repro, the
generator's flags, the case format, the gradient tolerance on cases whose answer is known,
and the checker catching an injected bug (so it cannot pass silently).

The long run is ``python3 -m graphc fuzz --grad --count 2000``.
"""

from __future__ import annotations

import contextlib
import json
import pathlib

import numpy as np
import pytest

import graphc
from graphc.cli import main
from graphc.fuzz import (
    Case,
    Input,
    Ref,
    Step,
    check_case,
    check_grad_case,
    fuzz_grad,
    generate_grad_case,
    load_case,
    shrink_grad_case,
)
from graphc.fuzz.case import to_json
from graphc.fuzz.grad import EAGER, NO_GRADIENT, save_grad_case, written_inputs
from graphc.fuzz.grad_tolerance import RandomRounding, compare_grad, rounding_spread
from graphc.fuzz.mutation import Key, MutationCase, Place, Stmt
from graphc.fuzz.mutation import to_json as mutation_to_json
from graphc.ops import OPS

CI_SEED = 20240611
CI_COUNT = 300
CI_STEPS = 6  # small graphs: 300 of them (each compiled three times) in well under a minute
REPROS = pathlib.Path(__file__).resolve().parent.parent / "fuzz_repros"

# the compiled-training bugs the gradient mode found, shrunk; each replays as a strict
# xfail until it is fixed (then its entry goes, and the repro guards the fix)
KNOWN_BUGS = {
}

# fixed by refusing: compiled training runs these calls eagerly (an eager run is not a pass
# elsewhere, but here it is the fix); words of the reason
REBASE = "rebase its history"  # a write that gives a tensor gradient history
RUN_EAGERLY = {
    "grad_as_strided_gradient_ignores_stride_and_offset": "as_strided",
    "grad_copy_of_a_grad_value_into_an_input_loses_its_history": REBASE,
    "grad_write_through_a_view_of_an_input_loses_its_history": REBASE,
    "grad_copy_of_a_grad_value_into_an_intermediate_loses_its_history": REBASE,
    "grad_fill_after_a_grad_write_drops_requires_grad": REBASE,
    "grad_zero_after_a_grad_write_into_an_input_is_not_refused": REBASE,
    # (eager's bug stays: the view keeps requires_grad=False; compiled no longer differs)
    "grad_eager_view_made_before_a_write_misses_requires_grad": REBASE,
}


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Compile into a throwaway disk cache (never the user's ~/.cache/graphc)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


# ---- the run --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    return fuzz_grad(CI_COUNT, seed=CI_SEED, save=str(tmp_path_factory.mktemp("grad")),
                     shrink=False, progress=None, max_steps=CI_STEPS)


def test_ci_sized_grad_run_finds_no_mismatch(ci_run):
    details = "\n\n".join(f"case {f.index}: {f.outcome}\n{f.case.describe()}"
                          for f in ci_run.failures[:10])
    assert not ci_run.failures, f"{ci_run.report()}\n\n{details}"


def test_ci_sized_grad_run_runs_compiled_and_differentiates(ci_run):
    """Most cases ran compiled and were compared; eager runs are counted apart, with their
    reasons (some calls rightly run eagerly: a boolean-mask read, whose shape depends on
    the mask's values; a write of a value requiring grad into an input; as_strided)."""
    assert ci_run.count == CI_COUNT
    compared = ci_run.passed + len(ci_run.failures)
    assert compared >= CI_COUNT * 0.85, ci_run.report()
    assert ci_run.ran_eagerly <= CI_COUNT * 0.1, ci_run.report()
    assert ci_run.no_gradient <= CI_COUNT * 0.05, ci_run.report()
    assert sum(ci_run.invalid.values()) <= CI_COUNT * 0.02, ci_run.report()
    assert 0.1 * CI_COUNT <= ci_run.programs <= 0.4 * CI_COUNT, "mutation programs drawn"


def grad_repros() -> list:
    marks = lambda p: [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[p.stem])] \
        if p.stem in KNOWN_BUGS else []
    return [pytest.param(p, id=p.stem, marks=marks(p)) for p in sorted(REPROS.glob("grad_*.json"))]


@pytest.mark.parametrize("path", grad_repros())
def test_saved_grad_repro_passes(path):
    """Each saved failure passes now, or (RUN_EAGERLY) is refused: it runs eagerly, for
    the reason the fix gave, rather than compiled and wrong."""
    case = load_case(str(path))
    assert any(i.requires_grad for i in case.inputs), f"{path.name} is not a gradient-mode case"
    outcome = check_case(case)
    assert not outcome.failed, f"{path.name} ({case.note}):\n{case.describe()}\n{outcome}"
    if path.stem in RUN_EAGERLY and outcome.kind == EAGER:
        assert RUN_EAGERLY[path.stem] in outcome.message, outcome.message
    else:
        assert outcome.kind == "ok", f"{path.name}: {outcome}"


def test_every_listed_repro_exists():
    stems = {p.stem for p in REPROS.glob("grad_*.json")}
    assert not (set(KNOWN_BUGS) | set(RUN_EAGERLY)) - stems


# ---- the cases ------------------------------------------------------------------------------

def test_generation_is_deterministic_and_flags_reaching_float_inputs():
    kinds, flagged = set(), 0
    for i in range(40):
        a, b = generate_grad_case(7, i), generate_grad_case(7, i)
        dump = mutation_to_json if isinstance(a, MutationCase) else to_json
        assert json.dumps(dump(a)) == json.dumps(dump(b))
        kinds.add(type(a).__name__)
        for inp in a.inputs:
            assert not inp.requires_grad or inp.dtype.is_floating_point
        flagged += any(inp.requires_grad for inp in a.inputs)
        if isinstance(a, MutationCase):  # eager refuses writes into a leaf that requires grad
            assert not any(a.inputs[k].requires_grad for k in written_inputs(a)), a.describe()
    assert kinds == {"Case", "MutationCase"}
    assert flagged >= 36


@pytest.mark.parametrize("index", range(6))
def test_grad_cases_round_trip_through_json(index, tmp_path):
    case = generate_grad_case(3, index)
    loaded = load_case(save_grad_case(case, str(tmp_path)))
    dump = mutation_to_json if isinstance(case, MutationCase) else to_json
    assert json.dumps(dump(loaded)) == json.dumps(dump(case))
    assert [i.requires_grad for i in loaded.inputs] == [i.requires_grad for i in case.inputs]
    assert pathlib.Path(tmp_path, "grad_0000.json").exists()


def leaf_input(values, dtype=np.float32) -> Input:
    inp = Input.from_values(np.array(values, dtype))
    inp.requires_grad = True
    return inp


def test_a_case_compiled_training_does_not_capture_runs_eagerly_not_passes():
    # a boolean-mask read: its shape depends on the mask's values
    x, m = leaf_input([1.5, -2.0, 3.0]), Input.from_values(np.array([True, False, True]))
    mask_read = Place(Ref(0), (("getitem", (Key((Ref(1),)),)),))
    case = MutationCase([x, m], [Stmt("name", (mask_read,), Ref(2)), Stmt("exp", (Ref(2),), Ref(3))],
                        [Ref(3)])
    outcome = check_grad_case(case)
    assert outcome.kind == EAGER and not outcome.failed, outcome
    assert "depends on tensor values" in outcome.message


def test_a_case_without_a_differentiable_output_is_counted_apart():
    case = Case([leaf_input([1.5, -2.0])], [Step("gt", (Ref(0), 0.0))], [Ref(1)])
    assert check_grad_case(case).kind == NO_GRADIENT


# ---- the gradient tolerance ------------------------------------------------------------------------

def grads_of(fn, *arrays, rounding=None):
    leaves = [graphc.from_numpy(np.array(a, np.float32)) for a in arrays]
    for t in leaves:
        t.requires_grad = True
    with rounding if rounding is not None else contextlib.nullcontext():
        fn(*leaves).sum().backward()
    return [t.grad for t in leaves]


def test_an_ill_conditioned_gradient_is_allowed_its_measured_rounding():
    # tanh'(3) = 1 - tanh(3)² cancels: a 4-ulp tanh moves it by about 1e-4 of itself, far
    # beyond a few ulps of the gradient's own size, which the noise measures
    x = np.array([3.0, -3.5, 0.25], np.float32)
    (ref,) = grads_of(graphc.tanh, x)
    spreads = [grads_of(graphc.tanh, x, rounding=RandomRounding(np.random.default_rng(k)))[0]
               for k in range(3)]
    spread = rounding_spread(ref, spreads)
    t = np.tanh(x.astype(np.float64))
    tanh_4ulp = 1 - (np.abs(t) - 4 * np.finfo(np.float32).eps * np.abs(t)) ** 2  # a worse tanh
    got = graphc.from_numpy(tanh_4ulp.astype(np.float32))
    assert compare_grad(got, ref, spread, steps=1) is None
    assert compare_grad(got, ref, None, steps=1) is not None, "the gradient's own scale is too tight"
    wrong = ref.numpy().copy()
    wrong[2] *= 1.01
    assert "beyond the tolerance" in compare_grad(graphc.from_numpy(wrong), ref, spread, steps=1)


def test_nan_and_none_must_agree_and_zero_signs_are_free():
    ref = graphc.from_numpy(np.array([np.nan, 0.0, 1.0], np.float32))
    assert "nan" in compare_grad(graphc.from_numpy(np.array([0.5, 0.0, 1.0], np.float32)), ref,
                                 None, steps=1)
    assert compare_grad(graphc.from_numpy(np.array([np.nan, -0.0, 1.0], np.float32)), ref, None,
                        steps=1) is None
    assert "None" in compare_grad(None, ref, None, steps=1)
    assert compare_grad(None, None, None, steps=1) is None


# ---- finding and shrinking bugs ---------------------------------------------------------------------

def wrong_sign(s, x):
    return x  # the injected bug: abs's gradient (g * sign(x)) loses its sign in compiled code


def test_an_injected_backward_bug_is_found_and_shrunk(monkeypatch, tmp_path):
    monkeypatch.setattr(OPS["sign"], "emit", wrong_sign)
    x = Input.of(np.array([[3.0, -2.0, 0.5], [1.0, 4.0, -7.0]], np.float32).T,
                 np.random.default_rng(0))
    x.requires_grad = True
    w = leaf_input([1.0, 2.0])
    case = Case([x, w], [Step("exp", (Ref(0),)), Step("abs", (Ref(0),)),
                         Step("mul", (Ref(3), Ref(1))), Step("sum", (Ref(4),), {"dim": (1,)})],
                [Ref(5), Ref(2)])
    outcome = check_grad_case(case)
    assert outcome.kind == "mismatch" and outcome.error == "grad: beyond the tolerance", outcome
    small, again = shrink_grad_case(case, outcome)
    assert again.kind == "mismatch"
    assert [s.op for s in small.steps] == ["abs"], small.describe()
    saved = load_case(save_grad_case(small, str(tmp_path)))
    assert check_case(saved).kind == "mismatch"
    monkeypatch.undo()
    assert check_case(saved).kind == "ok"


def test_the_command_line_runs_the_gradient_mode(capsys):
    status = main(["fuzz", "--grad", "--count", "3", "--seed", "1", "--no-shrink"])
    out = capsys.readouterr().out
    assert out.startswith("fuzz --grad: 3 cases"), out
    assert status == (1 if " 0 failed" not in out else 0)
