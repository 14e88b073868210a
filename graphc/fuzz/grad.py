"""The fuzzer's gradient mode: compiled training against eager autograd.

A gradient-mode case is a graph case (case.py) or a mutation program (mutation.py, whose
in-place writes then land on intermediates) where some float inputs require grad
(``Input.requires_grad``). ``check_grad_case(case)`` runs it on fresh inputs, twice
compiled (the second call reuses the forward and backward programs the first built) and
once compiled with ``dynamic=True`` (every dim symbolic: training programs with symbolic
sizes, or fixed ones where those cannot be built):

- eagerly with autograd: the outputs, then ``loss = sum((out * tangent).sum())`` over the
  float outputs that require grad, ``loss.backward()``;
- through ``graphc.compile(program)``, with the same tangents.

It compares, under the tolerance policy (tolerance.py; bounds from the traced program):
each output; whether each output requires grad; each input's value after the call (a
mutation program may write into inputs that do not require grad); and every input's
``.grad``: None in both or a tensor of eager's shape and dtype in both, nan exactly where
eager's is nan, ±inf where eager's is, and elsewhere within the gradient tolerance.

Outcomes: ``ok``; ``mismatch`` or ``crash`` (a stage raised where eager did not);
``eager`` (the compiled call ran eagerly, ``cf.eager_runs`` says why: not a pass);
``no gradient`` (no output requires grad in eager, so nothing was differentiated);
``invalid`` (eager autograd refuses the case: its forward or backward raises).

The gradient tolerance (grad_tolerance.py) is measured per element: eager autograd runs
again with every rounding the policy allows drawn at random, and a gradient element may
differ from eager's by a few times as much as it moved there.

``fuzz_grad(count, seed)`` checks cases ``0 .. count-1`` of the stream ``seed``, shrinks
each failure and saves it as ``grad_NNNN.json``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from ..autograd import no_grad
from ..tensor import Tensor, from_numpy
from ..trace import trace
from .bounds import output_bounds
from .case import Case, save_case, to_json, write_json
from .generate import focused, generate_case
from .grad_tolerance import RUNS, RandomRounding, compare_grad, rounding_spread
from .memory_bounds import memory_bounds
from .mutation import MutationCase, generate_mutation_case
from .mutation import to_json as mutation_to_json
from .run import (
    INVALID,
    MISMATCH,
    OK,
    Failure,
    Outcome,
    _crash,
    _indent,
    failure_lines,
    numpy_node_lines,
    private_cache,
)
from .tolerance import compare

EAGER = "eager"            # the compiled call ran eagerly (cf.eager_runs): not a pass
NO_GRADIENT = "no gradient"  # no output requires grad in eager: nothing was differentiated
# the compiled calls checked: twice with fixed sizes, once with every dim symbolic
CALLS = ("call 1", "call 2", "call with symbolic sizes")

GRAD_PROBABILITY = 0.8     # each float input reaching an output requires grad (others: 0.2)
REDRAWS = 3                # cases where no input reaches an output are drawn again
MUTATION_SHARE = 0.25      # cases drawn as mutation programs (in-place writes on intermediates)
# of generate.DTYPES (float32, float64, int32, int64, bool): mostly floats, so that most
# cases have something to differentiate
DTYPE_WEIGHTS = (0.55, 0.3, 0.05, 0.05, 0.05)
TANGENT_SEED = 0x74616E67


# ---- cases --------------------------------------------------------------------------------

def generate_grad_case(seed: int, index: int, max_steps: int = 8) -> Case | MutationCase:
    """Case number ``index`` of the gradient stream ``seed`` (deterministic): a graph case
    or, one time in four, a mutation program, with some float inputs requiring grad.

    Most inputs that reach an output differentiably require grad (at least one), a few
    that do not reach one too (their .grad stays None); never one the program writes into
    (eager refuses an in-place write into a leaf that requires grad). A case where no
    input reaches an output is drawn again (up to three times)."""
    rng = np.random.default_rng([seed, index, 0x67726164])
    mutation = rng.random() < MUTATION_SHARE
    for attempt in range(REDRAWS + 1):
        redrawn = seed if attempt == 0 else int(rng.integers(2 ** 62))
        if mutation:
            case = generate_mutation_case(redrawn, index, max_steps + 2)
            written = written_inputs(case)
        else:
            case = generate_case(redrawn, index, max_steps, DTYPE_WEIGHTS)
            written = set()
        floats = [k for k, i in enumerate(case.inputs)
                  if i.dtype.is_floating_point and k not in written]
        reaching = reaching_inputs(case, floats)
        if reaching:
            break
    wanted = {k for k in floats if rng.random() < (GRAD_PROBABILITY if k in reaching else 0.2)}
    if reaching and not wanted.intersection(reaching):
        wanted.add(reaching[int(rng.integers(len(reaching)))])
    case.inputs = [replace(i, requires_grad=k in wanted) for k, i in enumerate(case.inputs)]
    case.note = f"grad seed {seed}, case {index}" + (f" (drawn again: {attempt})" if attempt else "")
    return case


def reaching_inputs(case, candidates: list[int]) -> list[int]:
    """The inputs of ``candidates`` whose gradient eager computes when all of them require
    grad (they reach a float output differentiably)."""
    flagged = replace(case, inputs=[replace(i, requires_grad=k in candidates)
                                    for k, i in enumerate(case.inputs)])
    try:
        run = _forward_backward(flagged.function(), flagged)
    except Exception:  # noqa: BLE001 - eager refuses: the check will say so
        return []
    return [k for k in candidates if run.grads[k] is not None]


def written_inputs(case: MutationCase) -> set[int]:
    """The inputs a mutation program writes into (directly or through a view)."""
    tensors = case.tensors()
    before = [t._storage.version for t in tensors]
    with _quiet(), no_grad():
        try:
            case.function()(*tensors)
        except Exception:  # noqa: BLE001 - an invalid program: the check says so
            return set()
    return {k for k, (t, v) in enumerate(zip(tensors, before)) if t._storage.version != v}


def tangent(k: int, shape: tuple, dtype) -> Tensor:
    """The gradient fed to output ``k`` (standard normal values; fixed by k and the shape,
    so a saved case replays, and a shrunk one keeps its tangents)."""
    rng = np.random.default_rng([TANGENT_SEED, k, *shape])
    return from_numpy(np.asarray(rng.standard_normal(shape), dtype.np))


def save_grad_case(case: Case | MutationCase, path: str) -> str:
    """Write ``case`` as JSON (a file, or a directory: a new ``grad_NNNN.json``)."""
    if isinstance(case, MutationCase):
        return write_json(mutation_to_json(case), path, "grad")
    if not os.path.isdir(path):
        return save_case(case, path)
    return write_json(to_json(case), path, "grad")


# ---- running one case -----------------------------------------------------------------------

@contextlib.contextmanager
def _quiet():
    """Floating-point warnings silenced; grad mode left as it is."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclass
class _Run:
    outputs: tuple
    inputs: tuple       # after the call
    grads: list         # each input's .grad (None where it has none or needs none)


def _leaves(case) -> tuple[Tensor, ...]:
    tensors = case.tensors()
    for t, i in zip(tensors, case.inputs):
        if i.requires_grad:
            t.requires_grad = True
    return tensors


def _forward_backward(fn, case, rounding: RandomRounding | None = None) -> _Run:
    tensors = _leaves(case)
    with _quiet(), rounding or contextlib.nullcontext():
        outputs = fn(*tensors)
        outputs = tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
        terms = [(o * tangent(k, tuple(o.shape), o.dtype)).sum() for k, o in enumerate(outputs)
                 if isinstance(o, Tensor) and o.dtype.is_floating_point and o.requires_grad]
        if terms:
            sum(terms).backward()
    return _Run(outputs, tensors, [t.grad for t in tensors])


def check_grad_case(case: Case | MutationCase) -> Outcome:
    """Compiled training against eager autograd (see the module docstring)."""
    from ..compiler import compile as compile_fn

    try:
        fn = case.function()
        eager = _forward_backward(fn, case)
    except Exception as e:  # noqa: BLE001 - eager autograd refuses the case
        return Outcome(INVALID, "eager", f"{type(e).__name__}: {e}")
    stage = "compile"
    try:
        cf, sized = compile_fn(fn), compile_fn(fn, dynamic=True)
        runs = []
        for call, compiled in zip(CALLS, (cf, cf, sized)):
            stage = call
            runs.append(_forward_backward(compiled, case))
        for compiled in (cf, sized):
            if compiled.eager_runs:
                return Outcome(EAGER, "compile", reason_of(compiled.eager_runs[0].reason))
        stage = "trace"  # the bounds of the outputs (and of the inputs written)
        with _quiet(), no_grad():
            gm = trace(fn, *case.tensors())
            stage = "interpret"
            if isinstance(case, MutationCase):
                _, out_bounds, in_bounds = memory_bounds(gm, case.tensors())
            else:
                _, out_bounds = output_bounds(gm, case.tensors())
                in_bounds = None
    except Exception as e:  # noqa: BLE001 - a crash of any kind is a finding
        return _crash(stage, e)
    fallbacks = _numpy_nodes(cf)
    spreads = _spreads(fn, case, eager)
    problems = []
    for call, run in zip(CALLS, runs):
        problems += _compared(call, run, eager, out_bounds, in_bounds, case, spreads)
    if problems:
        return Outcome(MISMATCH, "compare", "\n".join(problems[:4]), problem_class(problems[0]),
                       fallbacks=fallbacks)
    if not any(isinstance(o, Tensor) and o.requires_grad for o in eager.outputs):
        return Outcome(NO_GRADIENT, fallbacks=fallbacks)
    return Outcome(OK, fallbacks=fallbacks)


def _numpy_nodes(cf) -> tuple:
    """Why nodes of the compiled programs (inference, forward, backward) ran in numpy."""
    programs = [e.spec.program for e in cf.entries.values()]
    with contextlib.suppress(RuntimeError):  # no training program (nothing to differentiate)
        training = cf.last_training
        programs += [g.last.program for g in (training.forward, training.backward)
                     if g.last is not None]
    return tuple(fb.reason for p in programs for fb in p.fallbacks)


def reason_of(reason: str) -> str:
    """An eager run's reason without what names one program's nodes and lines, so that
    reasons group: ``%index_3`` -> ``%_``, locations dropped."""
    reason = re.sub(r" \(at [^)]*\)", "", reason)
    reason = re.sub(r" at <mutation case [^>]*>:\d+", "", reason)
    return re.sub(r"%\w+", "%_", reason)


def _spreads(fn, case, eager: _Run) -> list:
    """``rounding_spread`` of each input's gradient (grad_tolerance.py)."""
    rng = np.random.default_rng([TANGENT_SEED, len(case.inputs)])
    runs, free = [], False
    for run in range(RUNS):
        rounding = RandomRounding(rng, run)
        try:
            runs.append(_forward_backward(fn, case, rounding))
        except Exception:  # noqa: BLE001 - a rounding eager refuses tells nothing
            pass
        free |= rounding.undetermined
    return [rounding_spread(ref, [r.grads[k] for r in runs], free)
            for k, ref in enumerate(eager.grads)]


def _compared(call: str, run: _Run, eager: _Run, out_bounds, in_bounds, case, spreads) -> list:
    if len(run.outputs) != len(eager.outputs):
        return [f"{call}: {len(run.outputs)} outputs, eager has {len(eager.outputs)}"]
    problems = []
    for k, (got, ref, bound) in enumerate(zip(run.outputs, eager.outputs, out_bounds)):
        if isinstance(got, Tensor) and isinstance(ref, Tensor) and \
                got.requires_grad != ref.requires_grad:
            problems.append(f"{call}, output {k}: requires_grad is {got.requires_grad}, eager's "
                            f"is {ref.requires_grad}")
        why = compare(_detached(got), ref.detach(), bound, f"{call}, output {k}")
        if why:
            problems.append(why)
    if in_bounds is not None:
        for k, (got, ref, bound) in enumerate(zip(run.inputs, eager.inputs, in_bounds)):
            if not case.inputs[k].requires_grad:
                why = compare(got.detach(), ref.detach(), bound, f"{call}, input {k} after the call")
                if why:
                    problems.append(why)
    steps = len(case.stmts if isinstance(case, MutationCase) else case.steps)
    for k, (got, ref) in enumerate(zip(run.grads, eager.grads)):
        why = compare_grad(got, ref, spreads[k], steps, f"{call}, grad of input {k}")
        if why:
            problems.append(why)
    return problems


def _detached(t):
    return t.detach() if isinstance(t, Tensor) else t


def problem_class(problem: str) -> str:
    """What kind of wrong a problem line reports (the shrinker keeps it)."""
    what = "grad" if ", grad of input" in problem else "input after the call" \
        if "after the call" in problem else "output"
    if "requires_grad" in problem:
        return "output requires_grad"
    if "is None" in problem:
        return "grad None in one only"
    found = re.search(r"elements ([^;]*);", problem)
    return f"{what}: {found.group(1) if found else problem.split(': ', 1)[-1].split(' ')[0]}"


# ---- shrinking ------------------------------------------------------------------------------

def shrink_grad_case(case: Case | MutationCase, outcome: Outcome, attempts: int = 400,
                     seconds: float = 180.0):
    """The smallest variant of ``case`` found that fails like ``outcome``, and its outcome:
    shrink.py's variants for a graph case, mutation_check's for a program, each with
    inputs no longer requiring grad."""
    from .mutation_check import VARIANTS, _defined, _shell, mutation_score
    from .shrink import _fewer_grads, greedy, shrink_case

    if not isinstance(case, MutationCase):
        return shrink_case(case, outcome, attempts, seconds)

    def fewer_grads(c: MutationCase):
        for shell in _fewer_grads(_shell(c)):
            yield replace(c, inputs=shell.inputs)

    return greedy(case, outcome, VARIANTS + (fewer_grads,), mutation_score, check_grad_case,
                  attempts, seconds, valid=_defined)


# ---- the loop -----------------------------------------------------------------------------------

@dataclass
class GradSummary:
    seed: int
    count: int = 0
    seconds: float = 0.0
    passed: int = 0
    failures: list[Failure] = field(default_factory=list)
    eager: Counter = field(default_factory=Counter)     # ran eagerly, by reason
    invalid: Counter = field(default_factory=Counter)   # eager autograd refused, by reason
    no_gradient: int = 0
    programs: int = 0  # of the cases, mutation programs
    numpy_nodes: Counter = field(default_factory=Counter)  # nodes run in numpy, by reason

    @property
    def ran_eagerly(self) -> int:
        return sum(self.eager.values())

    def report(self) -> str:
        rate = self.count / self.seconds if self.seconds else 0.0
        lines = [f"fuzz --grad: {self.count} cases ({self.count - self.programs} graphs, "
                 f"{self.programs} mutation programs; seed {self.seed}) in {self.seconds:.1f} s "
                 f"({rate:.1f}/s): {self.passed} passed, {len(self.failures)} failed, "
                 f"{self.ran_eagerly} ran eagerly, {self.no_gradient} had no gradient, "
                 f"{sum(self.invalid.values())} invalid"]
        if self.eager:
            lines.append("  ran eagerly (not passes), by reason:")
            lines += [f"    {n:6d}  {why[:300]}" for why, n in self.eager.most_common()]
        if self.invalid:
            lines.append("  invalid (eager autograd refused them), by reason:")
            lines += [f"    {n:6d}  {why[:200]}" for why, n in self.invalid.most_common(8)]
        return "\n".join(lines + numpy_node_lines(self.numpy_nodes)
                         + failure_lines(self.failures, 300))


def fuzz_grad(count: int, seed: int = 0, save: str | None = None, shrink: bool = True,
              progress=sys.stderr, max_steps: int = 8, every: float = 5.0,
              ops=()) -> GradSummary:
    """Check ``count`` random gradient-mode cases; shrink and save each failure into
    ``save`` (``grad_NNNN.json``); ``ops`` as ``fuzz``'s."""
    summary = GradSummary(seed)
    t0 = last = time.perf_counter()
    with private_cache(), focused(ops), contextlib.suppress(KeyboardInterrupt):
        for i in range(count):
            case = generate_grad_case(seed, i, max_steps)
            outcome = check_grad_case(case)
            summary.count += 1
            summary.programs += isinstance(case, MutationCase)
            summary.numpy_nodes.update(outcome.fallbacks)
            summary.passed += outcome.kind == OK
            summary.no_gradient += outcome.kind == NO_GRADIENT
            if outcome.kind == EAGER:
                summary.eager[outcome.message] += 1
            elif outcome.kind == INVALID:
                summary.invalid[reason_of(outcome.message)] += 1
            elif outcome.failed:
                summary.failures.append(_failure(i, case, outcome, seed, save, shrink, progress))
            now = time.perf_counter()
            if progress and (now - last >= every or i == count - 1):
                last = now
                print(f"fuzz --grad: {i + 1}/{count} cases, {len(summary.failures)} failures, "
                      f"{summary.ran_eagerly} ran eagerly", file=progress, flush=True)
    summary.seconds = time.perf_counter() - t0
    return summary


def _failure(i: int, case, outcome: Outcome, seed: int, save, shrink: bool, progress) -> Failure:
    failure = Failure(i, outcome, case)
    if progress:
        print(f"fuzz --grad: case {i} failed: {outcome}", file=progress, flush=True)
    if shrink:
        failure.case, failure.outcome = shrink_grad_case(case, outcome)
    failure.case.note = f"grad seed {seed}, case {i}: {str(failure.outcome).splitlines()[0]}"
    if save:
        os.makedirs(save, exist_ok=True)
        failure.path = save_grad_case(failure.case, save)
    if progress:
        print("fuzz --grad: shrunk to:\n" + _indent(failure.case.describe())
              + (f"\nfuzz --grad: saved {failure.path}" if failure.path else ""),
              file=progress, flush=True)
    return failure

