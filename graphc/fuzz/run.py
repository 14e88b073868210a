"""Running cases: one case against the interpreter, and the fuzzing loop.

``check_case(case)`` runs the case eagerly (a case eager rejects is ``invalid``), traces
it, runs the traced graph in the bound interpreter (the reference values and their
tolerance bounds, tolerance.py), compiles it with the LLVM backend and calls it twice. It fails
when a stage raises where eager did not (``crash``), or when a result breaks the policy,
an input was written, a first call's result changed during the second call, or a result
shares memory with an input where the reference's does not (``mismatch``).

``fuzz(count, seed)`` checks cases ``0 .. count-1`` of the stream ``seed``, shrinks each
failure and saves it, reporting progress on stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..autograd import no_grad
from ..compiler.pipeline import compile_graph
from ..tensor import Tensor, from_numpy
from ..trace import trace
from .case import Case, run_eager, save_case
from .generate import focused, fuzzed_ops, generate_case
from .bounds import output_bounds
from .tolerance import compare

OK, INVALID, CRASH, MISMATCH = "ok", "invalid", "crash", "mismatch"


@dataclass
class Outcome:
    kind: str          # ok, invalid (eager rejects the case), crash, mismatch
    stage: str = ""    # where it went wrong: trace, interpret, compile, run, compare
    message: str = ""
    error: str = ""    # the exception's type, for crashes
    fallbacks: tuple = ()  # why nodes of the compiled program ran in numpy (explain()'s reasons)
    dynamic: tuple = ()    # what compiling with symbolic sizes did (check_dynamic)

    @property
    def failed(self) -> bool:
        return self.kind in (CRASH, MISMATCH)

    @property
    def signature(self) -> tuple:
        """What the shrinker keeps: the same kind of failure at the same stage."""
        return (self.kind, self.stage, self.error)

    def __str__(self) -> str:
        head = f"{self.kind} at {self.stage}" if self.stage else self.kind
        return f"{head}: {self.message}" if self.message else head


@contextlib.contextmanager
def _quiet():
    with np.errstate(all="ignore"), warnings.catch_warnings(), no_grad():
        warnings.simplefilter("ignore")
        yield


def _crash(stage: str, e: BaseException) -> Outcome:
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({tb[-1].filename.split('graphc/')[-1]}:{tb[-1].lineno})" if tb else ""
    return Outcome(CRASH, stage, f"{type(e).__name__}: {e}{where}", type(e).__name__)


def check_case(case: Case, dynamic: bool = False) -> Outcome:
    """Compile ``case`` and compare it with the interpreter (see the module docstring);
    with ``dynamic``, also with symbolic sizes (``check_dynamic``). A mutation program
    (mutation.py) is checked by ``check_mutation_case``, a case with inputs that require
    grad by ``grad.check_grad_case``."""
    if any(i.requires_grad for i in case.inputs):
        from .grad import check_grad_case
        return check_grad_case(case)
    from .mutation import MutationCase
    if isinstance(case, MutationCase):
        from .mutation_check import check_mutation_case
        return check_mutation_case(case)
    try:
        run_eager(case)
    except Exception as e:  # noqa: BLE001 - any refusal makes the case invalid
        return Outcome(INVALID, "eager", f"{type(e).__name__}: {e}")
    inputs = case.tensors()
    before = [t.numpy().copy() for t in inputs]
    stage = "trace"
    try:
        with _quiet():
            gm = trace(case.function(), *inputs)
            stage = "interpret"  # the reference values, with their bounds
            expected, bounds = output_bounds(gm, inputs)
            stage = "compile"
            cg = compile_graph(gm, *inputs)
            stage = "run"
            first = cg(*inputs)
            kept = [t.numpy().copy() if isinstance(t, Tensor) else t for t in first]
            second = cg(*inputs)
    except Exception as e:  # noqa: BLE001 - a crash of any kind is a finding
        return _crash(stage, e)
    problems = []
    for call, results in (("call 1", first), ("call 2", second)):
        if len(results) != len(expected):
            problems.append(f"{call}: {len(results)} outputs, expected {len(expected)}")
            continue
        for k, (got, ref, bound) in enumerate(zip(results, expected, bounds)):
            why = compare(got, ref, bound, f"{call}, output {k}")
            if why:
                problems.append(why)
            elif _aliases(got, inputs) and not _aliases(ref, inputs):
                problems.append(f"{call}, output {k}: shares memory with an input; the "
                                "reference's does not")
    for k, (t, old) in enumerate(zip(first, kept)):
        if isinstance(t, Tensor) and not np.array_equal(t.numpy(), old, equal_nan=True):
            problems.append(f"output {k} of call 1 changed during call 2")
    for k, (t, old) in enumerate(zip(inputs, before)):
        if not np.array_equal(t.numpy(), old, equal_nan=True):
            problems.append(f"input {k} was written")
    fallbacks = tuple(fb.reason for fb in cg.last.program.fallbacks)
    if problems:
        return Outcome(MISMATCH, "compare", "\n".join(problems[:4]), fallbacks=fallbacks)
    notes = ()
    if dynamic:
        outcome = check_dynamic(case, inputs, expected, bounds)
        if outcome.failed:
            return outcome
        notes = outcome.dynamic
    return Outcome(OK, fallbacks=fallbacks, dynamic=notes)


def check_dynamic(case: Case, inputs: tuple, expected, bounds) -> Outcome:
    """``graphc.compile(dynamic=True)`` on the case's inputs, then on inputs where one size
    is changed everywhere it occurs (the program compiled for the first sizes serves them
    wherever its guards hold, and must be right there): each result against the
    interpreter's. An OK outcome's ``dynamic`` says what happened."""
    from ..compiler import compile as compile_fn

    stage = "compile dynamic"
    try:
        with _quiet():
            cf = compile_fn(case.function(), dynamic=True)
            got = cf(*inputs)
            stage = "resize"
            resized = _resized(inputs, np.random.default_rng(len(case.steps)))
            try:
                case.program(*resized)  # eager decides whether the new sizes are valid
            except Exception:  # noqa: BLE001 - sizes this program does not take
                resized = None
            if resized is not None:
                stage = "interpret resized"
                gm = trace(case.function(), *resized)
                expected2, bounds2 = output_bounds(gm, resized)
                stage = "run dynamic"
                got2 = cf(*resized)
    except Exception as e:  # noqa: BLE001
        return _crash(stage, e)
    runs = [("dynamic", got, expected, bounds)]
    if resized is not None:
        sizes = ", ".join(str(list(t.shape)) for t in resized)
        runs.append((f"dynamic, resized to {sizes}", got2, expected2, bounds2))
    problems = []
    for what, results, want, bound in runs:
        for k, (g, ref, b) in enumerate(zip(results, want, bound)):
            why = compare(g, ref, b, f"{what}, output {k}")
            if why:
                problems.append(why)
    if problems:
        return Outcome(MISMATCH, "compare dynamic", "\n".join(problems[:4]))
    return Outcome(OK, dynamic=_what_happened(cf, resized is not None))


def _what_happened(cf, resized: bool) -> tuple:
    sized = [e for e in cf.entries.values() if e.spec.sizes is not None]
    notes = [f"{len(sized)} symbolic programs" if sized else "fixed sizes"]
    if resized:
        notes.append("resized: served without compiling" if len(cf.entries) == 1 else
                     "resized: compiled again")
    return tuple(notes)


def _resized(inputs: tuple, rng: np.random.Generator) -> list[Tensor]:
    """New contiguous inputs where the largest size (>= 2) is 3 larger in every dim that
    has it, with fresh values."""
    sizes = [n for t in inputs for n in t.shape if n >= 2]
    old = max(sizes, default=2)
    out = []
    for t in inputs:
        shape = tuple(n + 3 if n == old else n for n in t.shape)
        if t.dtype.is_floating_point:
            a = rng.standard_normal(shape) * 4
        elif t.dtype.name == "bool":
            a = rng.random(shape) < 0.5
        else:
            a = rng.integers(-6, 7, shape)
        out.append(from_numpy(np.ascontiguousarray(a, dtype=t.dtype.np)))
    return out


def _aliases(t, inputs) -> bool:
    return isinstance(t, Tensor) and t.numel() > 0 and any(
        x.numel() > 0 and np.shares_memory(t.numpy(), x.numpy()) for x in inputs)


@contextlib.contextmanager
def private_cache():
    """Compile into a throwaway disk cache (never the user's ~/.cache/graphc)."""
    saved = os.environ.get("GRAPHC_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="graphc-fuzz-") as tmp:
        os.environ["GRAPHC_CACHE_DIR"] = tmp
        try:
            yield tmp
        finally:
            if saved is None:
                os.environ.pop("GRAPHC_CACHE_DIR", None)
            else:
                os.environ["GRAPHC_CACHE_DIR"] = saved


# ---- the loop --------------------------------------------------------------------------------

@dataclass
class Failure:
    index: int
    outcome: Outcome
    case: Case
    path: str | None = None


@dataclass
class Summary:
    seed: int
    count: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    ops: Counter = field(default_factory=Counter)  # steps per op over all cases
    fallbacks: Counter = field(default_factory=Counter)  # numpy fallbacks by reason
    dynamic: Counter = field(default_factory=Counter)  # what symbolic sizes did, per case
    invalid: int = 0  # cases eager rejects (the generator only makes valid ones: a bug if > 0)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def report(self) -> str:
        fuzzed = {op.name for op in fuzzed_ops()}
        missed = sorted(fuzzed - set(self.ops))
        lines = [f"fuzz: {self.count} graphs (seed {self.seed}) in {self.seconds:.1f} s "
                 f"({self.rate:.1f} graphs/s), {sum(self.ops.values())} steps over "
                 f"{len(fuzzed & set(self.ops))} of {len(fuzzed)} ops; "
                 f"{len(self.failures)} failures"]
        if missed and self.count >= 500:  # in a short run most ops are simply not reached
            lines.append(f"  ops never drawn: {', '.join(missed)}")
        if self.invalid:
            lines.append(f"  {self.invalid} cases were invalid (eager rejected them)")
        if self.fallbacks:
            lines.append(f"  nodes run in numpy inside compiled programs: "
                         f"{sum(self.fallbacks.values())}; most common reasons:")
            lines += [f"    {n:6d}  {reason}" for reason, n in self.fallbacks.most_common(8)]
        if self.dynamic:
            lines.append("  with symbolic sizes: " + ", ".join(
                f"{what} {n}" for what, n in sorted(self.dynamic.items())))
        for f in self.failures:
            where = f" -> {f.path}" if f.path else ""
            first = str(f.outcome).splitlines()[0]
            lines.append(f"  case {f.index}: {first}{where}")
        return "\n".join(lines)


def fuzz(count: int, seed: int = 0, save: str | None = None, shrink: bool = True,
         progress=sys.stderr, max_steps: int = 8, every: float = 5.0,
         dynamic: bool = False, ops=()) -> Summary:
    """Check ``count`` random cases; shrink and save each failure into ``save``; with
    ``dynamic``, each case also compiles with symbolic sizes (``check_dynamic``); ``ops``
    (names) are drawn for most steps that can use them (``generate.focused``)."""
    from .shrink import shrink_case

    summary = Summary(seed)
    t0 = last = time.perf_counter()
    with private_cache(), focused(ops), contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: report
        for i in range(count):
            case = generate_case(seed, i, max_steps)
            summary.ops.update(s.op for s in case.steps)
            outcome = check_case(case, dynamic)
            summary.count += 1
            summary.fallbacks.update(outcome.fallbacks)
            summary.dynamic.update(outcome.dynamic)
            summary.invalid += outcome.kind == INVALID
            if outcome.failed:
                failure = Failure(i, outcome, case)
                if progress:
                    print(f"fuzz: case {i} failed: {outcome}", file=progress, flush=True)
                if shrink:
                    failure.case, failure.outcome = shrink_case(case, outcome, dynamic=dynamic)
                failure.case.note = f"seed {seed}, case {i}: {str(failure.outcome).splitlines()[0]}"
                if save:
                    os.makedirs(save, exist_ok=True)
                    failure.path = save_case(failure.case, save)
                summary.failures.append(failure)
                if progress:
                    print(f"fuzz: shrunk to {len(failure.case.steps)} steps:\n"
                          + _indent(failure.case.describe())
                          + (f"\nfuzz: saved {failure.path}" if failure.path else ""),
                          file=progress, flush=True)
            now = time.perf_counter()
            if progress and (now - last >= every or i == count - 1):
                last = now
                done = i + 1
                print(f"fuzz: {done}/{count} graphs, {len(summary.failures)} failures, "
                      f"{done / (now - t0):.1f} graphs/s", file=progress, flush=True)
    summary.seconds = time.perf_counter() - t0
    return summary


def numpy_node_lines(numpy_nodes: Counter, most: int = 5) -> list[str]:
    """A report's lines on the nodes compiled programs ran in numpy, by reason."""
    if not numpy_nodes:
        return []
    return [f"  nodes run in numpy inside compiled programs: {sum(numpy_nodes.values())}; "
            "most common reasons:"] + [f"    {n:6d}  {why}" for why, n in numpy_nodes.most_common(most)]


def failure_lines(failures: list[Failure], width: int) -> list[str]:
    """A report's line per failure: its case, its first problem, where it was saved."""
    return [f"  case {f.index}: {str(f.outcome).splitlines()[0][:width]}"
            + (f" -> {f.path}" if f.path else "") for f in failures]


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
