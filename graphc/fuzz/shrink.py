"""Shrinking a failing case to a small one that fails the same way.

``shrink_case(case, outcome)`` tries simpler variants of the case and keeps any that
still fails with the same signature (same kind, stage and exception type), until none
of the variants helps or the budget is spent. Variants, biggest cuts first:

- keep one output only;
- cut the graph at a step: the step's eager value becomes a (contiguous) input, so
  everything above it goes;
- bypass a step: its users read one of its tensor arguments instead;
- shrink a dim of an input (to 1, to half, by one), alone or in every input that has
  the same size there (so broadcasting keeps working);
- make an input contiguous;
- (gradient mode) stop an input requiring grad;
- simplify an input's values: zeros, ones, finite values only, integers, one half of
  the elements zeroed;
- simplify a scalar argument (to 0 or 1) and drop optional arguments (to None).

Steps no output needs and inputs no step reads are removed after every change.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .case import Case, Input, Ref, Step, run_eager
from .run import Outcome, check_case


def score(case: Case) -> tuple:
    """Smaller is simpler: steps, outputs, inputs, elements, dims, strided inputs, values."""
    strided = sum(not i.contiguous for i in case.inputs)
    fancy = 0
    for i in case.inputs:
        v = i.values()
        if v.dtype == np.bool_:
            fancy += int(v.sum())
        elif v.dtype.kind == "f":
            with np.errstate(all="ignore"):
                fancy += int((~np.isin(v, (0.0, 1.0))).sum()) + int((v != np.round(v)).sum())
        else:
            fancy += int((~np.isin(v, (0, 1))).sum())
    scalars = sum(1 for s in case.steps for a in s.args
                  if isinstance(a, (int, float)) and not isinstance(a, Ref) and a not in (0, 1))
    grads = sum(i.requires_grad for i in case.inputs)
    return case.size + (sum(len(i.shape) for i in case.inputs), strided, fancy, scalars, grads)


def prune(case: Case) -> Case:
    """Without the steps no output needs and the inputs nothing reads (refs renumbered)."""
    n_in = len(case.inputs)
    needed = set(int(r) for r in case.outputs)
    for k in range(len(case.steps) - 1, -1, -1):
        if n_in + k in needed:
            needed.update(int(a) for a in case.steps[k].refs())
    keep_in = [k for k in range(n_in) if k in needed]
    keep_steps = [k for k in range(len(case.steps)) if n_in + k in needed]
    final = {old: Ref(new) for new, old in enumerate(keep_in + [n_in + k for k in keep_steps])}
    renumber = lambda a: final[int(a)] if isinstance(a, Ref) else a
    steps = [Step(case.steps[k].op, tuple(renumber(a) for a in case.steps[k].args),
                  case.steps[k].attrs) for k in keep_steps]
    return Case([case.inputs[k] for k in keep_in], steps,
                [final[int(r)] for r in case.outputs], case.note)


def _with_steps(case: Case, steps: list[Step], outputs=None) -> Case:
    return prune(Case(case.inputs, steps, list(case.outputs if outputs is None else outputs),
                      case.note))


def _substitute(case: Case, old: int, new: int) -> Case:
    """Users of value ``old`` read value ``new`` instead."""
    swap = lambda a: Ref(new) if isinstance(a, Ref) and a == old else a
    steps = [Step(s.op, tuple(swap(a) for a in s.args), s.attrs) for s in case.steps]
    return _with_steps(case, steps, [swap(r) for r in case.outputs])


# ---- variants ----------------------------------------------------------------------------

def _fewer_outputs(case: Case):
    if len(case.outputs) > 1:
        for r in case.outputs:
            yield _with_steps(case, case.steps, [r])
        for k in range(len(case.outputs)):
            yield _with_steps(case, case.steps, case.outputs[:k] + case.outputs[k + 1:])


def _cuts(case: Case):
    """A step's eager value as a new input, in place of the step (in a gradient-mode
    case, a float one requires grad, as the step's value did if anything is to reach it)."""
    if not case.steps:
        return
    try:
        values = _all_values(case)
    except Exception:  # noqa: BLE001 - the case is checked again anyway
        return
    n_in = len(case.inputs)
    grad = any(i.requires_grad for i in case.inputs)
    for k in range(len(case.steps) - 1, -1, -1):
        arr = values[n_in + k]
        cut = Input.from_values(arr)
        cut.requires_grad = grad and arr.dtype.kind == "f"
        inputs = case.inputs + [cut]
        new = len(inputs) - 1
        # the new input sits after the old ones: shift the step refs by one
        shift = lambda a: Ref(a + 1) if isinstance(a, Ref) and a >= n_in else a
        steps = [Step(s.op, tuple(shift(a) for a in s.args), s.attrs) for s in case.steps]
        outputs = [shift(r) for r in case.outputs]
        moved = Case(inputs, steps, outputs, case.note)
        yield _substitute(moved, n_in + 1 + k, new)


def _all_values(case: Case) -> list[np.ndarray]:
    """Every value of the case in eager mode, as contiguous numpy arrays."""
    probe = Case(case.inputs, case.steps, [Ref(k) for k in range(len(case.inputs) + len(case.steps))])
    return [np.array(t.numpy(), order="C") for t in run_eager(probe)]


def _bypasses(case: Case):
    n_in = len(case.inputs)
    for k in range(len(case.steps) - 1, -1, -1):
        for a in dict.fromkeys(case.steps[k].refs()):
            yield _substitute(case, n_in + k, int(a))


def _sliced(inp: Input, dim: int, part: slice) -> Input:
    v = inp.values()
    index = [slice(None)] * v.ndim
    index[dim] = part
    return inp.with_values(v[tuple(index)])


def _smaller_shapes(case: Case):
    for i, inp in enumerate(case.inputs):
        for d, n in enumerate(inp.shape):
            for size in dict.fromkeys((1, n // 2, n - 1)):
                if not 0 < size < n:
                    continue
                for part in (slice(0, size), slice(n - size, n)):
                    # every input with the same size at the same dim from the right
                    back = len(inp.shape) - d
                    together = list(case.inputs)
                    for j, other in enumerate(case.inputs):
                        od = len(other.shape) - back
                        if od >= 0 and other.shape[od] == n:
                            together[j] = _sliced(other, od, part)
                    yield Case(together, case.steps, case.outputs, case.note)
                    alone = list(case.inputs)
                    alone[i] = _sliced(inp, d, part)
                    yield Case(alone, case.steps, case.outputs, case.note)
        for d, n in enumerate(inp.shape):
            if n == 1:  # one dim fewer
                inputs = list(case.inputs)
                inputs[i] = inp.with_values(inp.values().reshape(inp.shape[:d] + inp.shape[d + 1:]))
                yield Case(inputs, case.steps, case.outputs, case.note)


def _simpler_layouts(case: Case):
    for i, inp in enumerate(case.inputs):
        if not inp.contiguous:
            inputs = list(case.inputs)
            inputs[i] = inp.with_values(inp.values())
            yield Case(inputs, case.steps, case.outputs, case.note)


def _fewer_grads(case: Case):
    for i, inp in enumerate(case.inputs):
        if inp.requires_grad:
            inputs = list(case.inputs)
            inputs[i] = replace(inp, requires_grad=False)
            yield Case(inputs, case.steps, case.outputs, case.note)


def _simpler_values(case: Case):
    for i, inp in enumerate(case.inputs):
        v = inp.values()
        if not v.size:
            continue
        options = [np.zeros_like(v), np.ones_like(v)]
        if v.dtype.kind == "f":
            with np.errstate(all="ignore"):
                options.append(np.where(np.isfinite(v), v, 0).astype(v.dtype))
                options.append(np.round(np.clip(np.nan_to_num(v), -8, 8)).astype(v.dtype))
        flat = v.reshape(-1)
        half = flat.size // 2
        for part in (slice(0, half), slice(half, None)) if flat.size > 1 else ():
            w = flat.copy()
            w[part] = 0
            options.append(w.reshape(v.shape))
        if flat.size <= 8:
            for k in range(flat.size):
                w = flat.copy()
                w[k] = 0
                options.append(w.reshape(v.shape))
        for w in options:
            inputs = list(case.inputs)
            inputs[i] = inp.with_values(w)
            yield Case(inputs, case.steps, case.outputs, case.note)


def _simpler_arguments(case: Case):
    for k, s in enumerate(case.steps):
        for j, a in enumerate(s.args):
            options = []
            if isinstance(a, Ref):
                options = [None] if j > 0 else []
            elif isinstance(a, bool) or a is None:
                continue
            elif isinstance(a, (int, float)):
                options = [type(a)(0), type(a)(1)]
            for new in options:
                if new == a and type(new) is type(a):
                    continue
                args = list(s.args)
                args[j] = new
                steps = list(case.steps)
                steps[k] = Step(s.op, tuple(args), s.attrs)
                yield _with_steps(case, steps)


VARIANTS = (_fewer_outputs, _cuts, _bypasses, _smaller_shapes, _simpler_layouts, _fewer_grads,
            _simpler_values, _simpler_arguments)


def shrink_case(case: Case, outcome: Outcome, attempts: int = 400,
                seconds: float = 180.0, dynamic: bool = False) -> tuple[Case, Outcome]:
    """The smallest variant of ``case`` found that fails like ``outcome`` (checked with
    symbolic sizes too when ``dynamic``), and its outcome."""
    signature = outcome.signature
    best, best_score = prune(case), score(case)
    if score(best) < best_score:  # pruning removed something: check it still fails
        o = check_case(best, dynamic)
        if o.failed and o.signature == signature:
            outcome, best_score = o, score(best)
        else:
            best = case
    return greedy(best, outcome, VARIANTS, score, lambda c: check_case(c, dynamic), attempts,
                  seconds, best_score)


def greedy(case, outcome: Outcome, variants, score, check, attempts: int, seconds: float,
           best_score=None, valid=lambda c: True):
    """Take the first variant (of ``variants``' generators, in order) that scores lower, is
    ``valid`` and fails like ``outcome``; repeat until none does, ``attempts`` checks are
    spent or ``seconds`` pass. Returns the smallest case found and its outcome."""
    signature = outcome.signature
    best = case
    best_score = score(case) if best_score is None else best_score
    deadline, tried, improved = time.perf_counter() + seconds, 0, True
    while improved and tried < attempts and time.perf_counter() < deadline:
        improved = False
        for make in variants:
            for candidate in make(best):
                if tried >= attempts or time.perf_counter() >= deadline:
                    break
                s = score(candidate)
                if s >= best_score or not valid(candidate):
                    continue
                tried += 1
                o = check(candidate)
                if o.failed and o.signature == signature:
                    best, best_score, outcome, improved = candidate, s, o, True
                    break
            if improved:
                break
    return best, outcome
