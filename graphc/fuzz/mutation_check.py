"""Checking mutation cases (mutation.py): compiled and traced against eager, with effects.

``check_mutation_case(case)`` runs the program eagerly on fresh inputs (a program eager
rejects is ``invalid``), then:

- ``graphc.trace(program)`` called on other fresh inputs must give eager's outputs and
  leave the inputs as eager leaves them, bit for bit (the same numpy kernels run); if not,
  the outcome is a ``mismatch`` at stage ``trace``;
- ``graphc.compile(program, fullgraph=True)`` is called twice, each time on fresh inputs
  (the second call runs the cached program). Where fullgraph refuses, the plain compile
  runs instead: if its call ran eagerly (capture failed), the outcome is ``fallback``
  (``eager fallback``: not a pass, not a failure); if some nodes ran in numpy inside the
  compiled program, that is counted, as the pure fuzzer counts it;
- each output, and each input after the call, is compared with eager's under the
  tolerance policy (tolerance.py), with bounds from the trace (memory_bounds.py);
- an output that is eager's input or a view of one must share that input's storage in
  the compiled program, and writing through it must change the input as in eager; an
  output must not share an input's memory where eager's does not; call 1's outputs must
  not change during call 2.

``fuzz_mutation(count, seed)`` checks cases ``0 .. count-1`` of the stream, shrinks each
failure (``shrink_mutation_case``) and saves it as ``mutation_NNNN.json``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from ..tensor import Tensor, from_numpy
from ..trace import trace
from .case import Case
from .memory_bounds import memory_bounds
from .mutation import (
    MutationCase,
    Place,
    Ref,
    Stmt,
    _renumbered,
    case_kinds,
    generate_mutation_case,
    run_eager,
    save_mutation_case,
)
from .run import (
    INVALID,
    MISMATCH,
    OK,
    Failure,
    Outcome,
    _crash,
    _indent,
    _quiet,
    failure_lines,
    numpy_node_lines,
    private_cache,
)
from .shrink import _simpler_layouts, _simpler_values, greedy, score
from .tolerance import compare

FALLBACK = "fallback"  # the compiled call ran eagerly: neither a pass nor a failure


def check_mutation_case(case: MutationCase) -> Outcome:
    """Compile and trace ``case`` and compare both with eager (see the module docstring).
    An OK outcome's ``fallbacks`` are the reasons nodes ran in numpy."""
    from ..compiler import CaptureError, compile as compile_fn

    try:
        fn = case.function()
        eager_out, eager_in = run_eager(case)
    except Exception as e:  # noqa: BLE001 - any refusal makes the case invalid
        return Outcome(INVALID, "eager", f"{type(e).__name__}: {e}")
    eager_out = tuple(eager_out)
    numpy_nodes: tuple = ()
    stage = "compile"
    try:
        with _quiet():
            cf = compile_fn(fn, fullgraph=True)
            try:
                first = cf(*(args1 := case.tensors()))
            except CaptureError:
                cf = compile_fn(fn)
                first = cf(*(args1 := case.tensors()))
                if cf.eager_runs:
                    reason = re.sub(r" \(at <mutation case [^)]*\)", "", cf.eager_runs[0].reason)
                    return Outcome(FALLBACK, "compile", f"eager fallback: {reason}")
                numpy_nodes = tuple(f.reason for f in cf.last.spec.program.fallbacks)
            kept = [t.numpy().copy() if isinstance(t, Tensor) else t for t in first]
            stage = "run"
            second = cf(*(args2 := case.tensors()))
    except Exception as e:  # noqa: BLE001 - a crash of any kind is a finding
        return _crash(stage, e)

    stage = "trace"
    try:
        with _quiet():
            gm = trace(fn, *case.tensors())
            traced_out = gm(*(traced_in := case.tensors()))
            stage = "interpret"
            _, out_bounds, in_bounds = memory_bounds(gm, case.tensors())
    except Exception as e:  # noqa: BLE001
        return _crash(stage, e)
    wrong = _exactly(traced_out, eager_out, "trace, output") + \
        _exactly(traced_in, eager_in, "trace, input")
    if wrong:
        return Outcome(MISMATCH, "trace", "\n".join(wrong[:4]), "input" if "input" in wrong[0]
                       else "output", fallbacks=numpy_nodes)

    problems = []
    for call, results, args in (("call 1", first, args1), ("call 2", second, args2)):
        problems += _compared(call, results, args, eager_out, eager_in, out_bounds, in_bounds)
    for k, (t, old) in enumerate(zip(first, kept)):
        if isinstance(t, Tensor) and not np.array_equal(t.numpy(), old, equal_nan=True):
            problems.append(f"output {k} of call 1 changed during call 2")
    if not problems:
        problems = _written_through(first, args1, eager_out, eager_in)
    if problems:
        return Outcome(MISMATCH, "compiled", "\n".join(problems[:4]), problem_class(problems[0]),
                       fallbacks=numpy_nodes)
    return Outcome(OK, fallbacks=numpy_nodes)


def problem_class(problem: str) -> str:
    """What kind of wrong a problem line reports (the shrinker keeps it: a wrong value
    must not shrink into a wrong sign of zero, nor into an aliasing problem)."""
    for words, kind in (("eager returns input", "output should share an input's memory"),
                        ("shares memory with input", "output shares an input's memory"),
                        ("writing into it", "writing through an output"),
                        ("changed during call 2", "output changed by the next call")):
        if words in problem:
            return kind
    where = "input after the call" if "after the call" in problem else "output"
    found = re.search(r"elements ([^;]*);", problem)
    return f"{where}: {found.group(1) if found else problem.split(': ', 1)[-1].split(' ')[0]}"


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, but any nan equals any nan."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind != "f":
        return bool(np.array_equal(a, b))
    return bool(np.array_equal(a, b, equal_nan=True) and
                np.array_equal(np.signbit(a), np.signbit(b)))


def _exactly(got, want, what: str) -> list[str]:
    if len(got) != len(want):
        return [f"{what}s: {len(got)}, eager has {len(want)}"]
    out = []
    for k, (g, w) in enumerate(zip(got, want)):
        if not isinstance(g, Tensor) or not _same(g.numpy(), w.numpy()):
            shown = g.numpy().tolist() if isinstance(g, Tensor) else g
            out.append(f"{what} {k}: {shown}, eager {w.numpy().tolist()}")
    return out


def _input_of(t, inputs) -> int | None:
    """The input whose storage ``t`` shares (None if none, or if ``t`` is empty)."""
    if not isinstance(t, Tensor) or t.numel() == 0:
        return None
    return next((j for j, x in enumerate(inputs) if t._storage is x._storage), None)


def _compared(call: str, results, args, eager_out, eager_in, out_bounds, in_bounds) -> list:
    if len(results) != len(eager_out):
        return [f"{call}: {len(results)} outputs, eager has {len(eager_out)}"]
    problems = []
    for k, (got, ref, bound) in enumerate(zip(results, eager_out, out_bounds)):
        why = compare(got, ref, bound, f"{call}, output {k}")
        if why:
            problems.append(why)
        want, have = _input_of(ref, eager_in), _input_of(got, args)
        if want is not None and have != want:
            problems.append(f"{call}, output {k}: eager returns input {want} or a view of it "
                            f"(the same memory); the compiled output "
                            + ("has memory of its own" if have is None else f"is input {have}'s"))
        elif want is None and have is not None:
            problems.append(f"{call}, output {k}: shares memory with input {have}; eager's "
                            "does not")
    for k, (got, ref, bound) in enumerate(zip(args, eager_in, in_bounds)):
        why = compare(got, ref, bound, f"{call}, input {k} after the call")
        if why:
            problems.append(why)
    return problems


def _written_through(results, args, eager_out, eager_in) -> list[str]:
    """Write the same pattern into each output that is (a view of) an input, in eager's
    results and in the compiled ones: the inputs must change alike."""
    problems = []
    for k, (got, ref) in enumerate(zip(results, eager_out)):
        j = _input_of(ref, eager_in)
        if j is None or ref.numel() == 0:
            continue
        before_e, before_c = eager_in[j].numpy().copy(), args[j].numpy().copy()
        pattern = from_numpy(_pattern(tuple(ref.shape), ref.numpy().dtype))
        with _quiet():
            ref.copy_(pattern)
            got.copy_(pattern)
        after_e, after_c = eager_in[j].numpy(), args[j].numpy()
        changed = ~((before_e == after_e) | ((before_e != before_e) & (after_e != after_e)))
        if not (np.array_equal(after_c[changed], after_e[changed]) and
                _same(after_c[~changed], before_c[~changed])):
            problems.append(f"output {k} is input {j} or a view of it: writing into it "
                            f"changed input {j} to {after_c.tolist()}, eager to "
                            f"{after_e.tolist()}")
    return problems


def _pattern(shape: tuple, npdtype) -> np.ndarray:
    n = int(np.prod(shape))
    if npdtype == np.bool_:
        return (np.arange(n) % 3 == 0).reshape(shape)
    return (np.arange(n) % 7 + 40).astype(npdtype).reshape(shape)


# ---- shrinking -------------------------------------------------------------------------------

def mutation_score(case: MutationCase) -> tuple:
    """Smaller is simpler: statements, views, outputs, then the inputs as shrink.score sees
    them (count, elements, dims, strided ones, values)."""
    views = sum(len(x.views) for s in case.stmts for x in s.operands if isinstance(x, Place))
    return (len(case.stmts), views, len(case.outputs)) + score(_shell(case))[2:]


def _shell(case: MutationCase) -> Case:
    """The inputs as a pure fuzz case, so shrink.py's input variants apply."""
    return Case(case.inputs, [], [], case.note)


def _fewer_outputs(case: MutationCase):
    if len(case.outputs) > 1:
        for r in case.outputs:
            yield replace(case, outputs=[r])
        for k in range(len(case.outputs)):
            yield replace(case, outputs=case.outputs[:k] + case.outputs[k + 1:])


def _fewer_stmts(case: MutationCase):
    n = len(case.stmts)
    for size in dict.fromkeys((n // 2, n // 4, 1)):
        for start in range(n - size, -1, -max(size, 1)):
            if size:
                yield replace(case, stmts=case.stmts[:start] + case.stmts[start + size:])


def _fewer_views(case: MutationCase):
    for k, s in enumerate(case.stmts):
        for j, x in enumerate(s.operands):
            if isinstance(x, Place) and x.views:
                for cut in range(len(x.views)):
                    ops = list(s.operands)
                    ops[j] = Place(x.ref, x.views[:cut] + x.views[cut + 1:])
                    stmts = list(case.stmts)
                    stmts[k] = Stmt(s.form, tuple(ops), s.out)
                    yield replace(case, stmts=stmts)


def _fewer_inputs(case: MutationCase):
    """Without the inputs no statement and no output reads (variables renumbered)."""
    used = {int(r) for s in case.stmts for r in s.refs()} | {int(r) for r in case.outputs}
    unused = [k for k in range(len(case.inputs)) if k not in used]
    if unused:
        keep = [k for k in range(len(case.inputs)) if k not in unused]
        order = keep + [int(s.out) for s in case.stmts if s.out is not None]
        final = {Ref(old): Ref(new) for new, old in enumerate(order)}
        final.update({Ref(k): Ref(-1) for k in unused})
        stmts = [Stmt(s.form, _renumbered(s.operands, final),
                      None if s.out is None else final[s.out]) for s in case.stmts]
        yield MutationCase([case.inputs[k] for k in keep], stmts,
                           [final[r] for r in case.outputs], case.note)


def _simpler_inputs(case: MutationCase):
    for shell in (*_simpler_layouts(_shell(case)), *_simpler_values(_shell(case))):
        yield replace(case, inputs=shell.inputs)


VARIANTS = (_fewer_outputs, _fewer_stmts, _fewer_inputs, _fewer_views, _simpler_inputs)


def shrink_mutation_case(case: MutationCase, outcome: Outcome, attempts: int = 150,
                         seconds: float = 60.0) -> tuple[MutationCase, Outcome]:
    """The smallest variant of ``case`` found that fails like ``outcome``, and its outcome.
    A variant that removes a variable still read is invalid, so it is not kept."""
    return greedy(case, outcome, VARIANTS, mutation_score, check_mutation_case, attempts,
                  seconds, valid=_defined)


def _defined(case: MutationCase) -> bool:
    """Whether every variable read is defined before (a cheap test before compiling)."""
    known = set(range(len(case.inputs)))
    for s in case.stmts:
        if any(int(r) not in known for r in s.refs()):
            return False
        if s.out is not None:
            known.add(int(s.out))
    return all(int(r) in known for r in case.outputs)


# ---- the loop ---------------------------------------------------------------------------------

@dataclass
class MutationSummary:
    seed: int
    count: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    passed: int = 0
    fallbacks: Counter = field(default_factory=Counter)  # eager fallbacks by reason
    numpy_nodes: Counter = field(default_factory=Counter)  # nodes run in numpy, by reason
    kinds: Counter = field(default_factory=Counter)  # cases per kind of mutation
    invalid: int = 0

    @property
    def eager_fallbacks(self) -> int:
        return sum(self.fallbacks.values())

    def report(self) -> str:
        stages = Counter(f.outcome.stage for f in self.failures)
        rate = self.count / self.seconds if self.seconds else 0.0
        classes = Counter(f"{f.outcome.stage}: {f.outcome.error}" for f in self.failures)
        lines = [f"fuzz --mutation: {self.count} programs (seed {self.seed}) in "
                 f"{self.seconds:.1f} s ({rate:.1f}/s): {self.passed} passed, "
                 f"{len(self.failures)} failed, {self.eager_fallbacks} eager fallbacks"]
        if self.failures:
            lines.append("  failures by stage: " + ", ".join(
                f"{stage} {n}" for stage, n in sorted(stages.items())) + "; by kind (first "
                "problem of each, shrunk):")
            lines += [f"    {n:6d}  {kind}" for kind, n in classes.most_common()]
        if self.invalid:
            lines.append(f"  {self.invalid} programs were invalid (eager rejected them)")
        if self.fallbacks:
            lines.append("  eager fallbacks (the compiled call ran eagerly), by reason:")
            lines += [f"    {n:6d}  {why}" for why, n in self.fallbacks.most_common(5)]
        return "\n".join(lines + numpy_node_lines(self.numpy_nodes)
                         + failure_lines(self.failures, 200))


def fuzz_mutation(count: int, seed: int = 0, save: str | None = None, shrink: bool = True,
                  progress=sys.stderr, max_stmts: int = 10, every: float = 5.0,
                  kinds: bool = False) -> MutationSummary:
    """Check ``count`` random mutation programs; shrink and save each failure into ``save``
    (``mutation_NNNN.json``); with ``kinds``, count the kinds of mutation drawn."""
    summary = MutationSummary(seed)
    t0 = last = time.perf_counter()
    with private_cache():
        try:
            for i in range(count):
                case = generate_mutation_case(seed, i, max_stmts)
                if kinds:
                    summary.kinds.update(case_kinds(case))
                outcome = check_mutation_case(case)
                summary.count += 1
                summary.numpy_nodes.update(outcome.fallbacks)
                summary.invalid += outcome.kind == INVALID
                summary.passed += outcome.kind == OK
                if outcome.kind == FALLBACK:
                    summary.fallbacks[outcome.message] += 1
                if outcome.failed:
                    summary.failures.append(_failure(i, case, outcome, seed, save, shrink,
                                                     progress))
                now = time.perf_counter()
                if progress and (now - last >= every or i == count - 1):
                    last = now
                    print(f"fuzz --mutation: {i + 1}/{count} programs, {len(summary.failures)} "
                          f"failures, {summary.eager_fallbacks} eager fallbacks",
                          file=progress, flush=True)
        except KeyboardInterrupt:  # Ctrl-C: report what was done
            pass
    summary.seconds = time.perf_counter() - t0
    return summary


def _failure(i: int, case: MutationCase, outcome: Outcome, seed: int, save, shrink: bool,
             progress) -> Failure:
    failure = Failure(i, outcome, case)
    if progress:
        print(f"fuzz --mutation: case {i} failed: {outcome}", file=progress, flush=True)
    if shrink:
        failure.case, failure.outcome = shrink_mutation_case(case, outcome)
    failure.case.note = f"mutation seed {seed}, case {i}: {str(failure.outcome).splitlines()[0]}"
    if save:
        os.makedirs(save, exist_ok=True)
        failure.path = save_mutation_case(failure.case, save)
    if progress:
        print(f"fuzz --mutation: shrunk to {len(failure.case.stmts)} statements:\n"
              + _indent(failure.case.describe())
              + (f"\nfuzz --mutation: saved {failure.path}" if failure.path else ""),
              file=progress, flush=True)
    return failure

