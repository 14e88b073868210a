"""The pass manager: run passes in order and keep a history of what each one did.

A pass is a small function ``pass_(gm) -> bool`` (whether it changed the graph); it
rewrites ``gm.graph`` in place and may install constants on ``gm``. Users add their own
with ``manager.insert``/``append``.

    pm = PassManager.default()
    history = pm.run(gm, check_inputs=(x,))   # check: lint + compare outputs after each pass
    print(history)
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..debug import debug_level, show
from ..ir.graph_module import GraphModule
from ..ir.interpreter import Interpreter
from ..symbolic import is_symbolic
from ..tensor import tensors_in

Pass = Callable[[GraphModule], bool]


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    changed: bool
    ir_after: str
    ir_before: str = field(repr=False, default="")

    @property
    def diff(self) -> str:
        """The unified diff of the text IR before and after the pass ('' if unchanged).
        Made when asked: difflib grows faster than linearly with the graph."""
        if self.ir_after == self.ir_before:
            return ""
        return "\n".join(difflib.unified_diff(self.ir_before.splitlines(), self.ir_after.splitlines(),
                                              "before", "after", lineterm="", n=0))

    def summary(self) -> str:
        mark = "changed" if self.changed else "no change"
        return (f"{self.name:<20} {1e3 * self.seconds:8.2f} ms  nodes {self.nodes_before:4d} -> "
                f"{self.nodes_after:<4d} {mark}")


@dataclass
class PassHistory:
    initial_ir: str
    records: list[PassRecord] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(r.summary() for r in self.records)

    def format(self, ir: bool = False) -> str:
        """The summary; with ``ir``, each pass's diff of the text IR follows its line."""
        lines = []
        for r in self.records:
            lines.append(r.summary())
            if ir and r.diff:
                lines += ["    " + d for d in r.diff.splitlines()]
        return "\n".join(lines)


class PassCheckError(AssertionError):
    """A pass broke the graph (lint) or changed what it computes."""


def compare_outputs(actual, expected, rtol: float = 1e-5, atol: float = 1e-5, what: str = "") -> None:
    a, e = tensors_in(actual), tensors_in(expected)
    if len(a) != len(e):
        raise PassCheckError(f"{what}: {len(a)} outputs, expected {len(e)}")
    for i, (x, y) in enumerate(zip(a, e)):
        if x.shape != y.shape or x.dtype is not y.dtype:
            raise PassCheckError(f"{what}: output {i} is {x.dtype.name}{list(x.shape)}, expected "
                                 f"{y.dtype.name}{list(y.shape)}")
        xn, yn = x.detach().numpy(), y.detach().numpy()
        if x.dtype.is_floating_point:
            ok = np.allclose(xn, yn, rtol=rtol, atol=atol, equal_nan=True)
        else:
            ok = np.array_equal(xn, yn)
        if not ok:
            worst = np.nanmax(np.abs(xn.astype(np.float64) - yn.astype(np.float64))) if xn.size else 0
            raise PassCheckError(f"{what}: output {i} differs from before the passes (max abs "
                                 f"difference {worst:.3g})")


class PassManager:
    def __init__(self, passes: list[Pass] | None = None):
        self.passes: list[Pass] = list(passes or [])

    @classmethod
    def default(cls) -> PassManager:
        """functionalize -> decompose -> simplify -> cse -> constant folding -> dce -> shape
        propagation. Functionalization comes first: every later pass sees a pure graph."""
        from .constant_fold import fold_constants
        from .cse import cse
        from .dce import dce
        from .decompose import decompose
        from .functionalize import functionalize
        from .shape_prop import refresh_shapes
        from .simplify import simplify

        return cls([functionalize, decompose, simplify, cse, fold_constants, dce, refresh_shapes])

    def append(self, pass_: Pass) -> None:
        self.passes.append(pass_)

    def insert(self, index: int, pass_: Pass) -> None:
        self.passes.insert(index, pass_)

    def run(self, gm: GraphModule, check_inputs: tuple | None = None, seed: int = 0,
            rtol: float = 1e-5, atol: float = 1e-5) -> PassHistory:
        """Run every pass on ``gm``; with ``check_inputs`` (or GRAPHC_DEBUG >= 1, with random
        inputs), lint after each pass and compare the Interpreter's output with the one
        before any pass. GRAPHC_DEBUG >= 2 prints the history with each pass's IR diff (on stderr)."""
        import graphc

        symbolic = any(is_symbolic(p.meta.get("shape")) for p in gm.graph.placeholders)
        if check_inputs is None and debug_level() >= 1 and not symbolic:
            check_inputs = random_inputs(gm, seed)  # debug mode checks with random data
            # (not with symbolic sizes: the interpreter needs numbers, which would fix them)
        check = check_inputs is not None
        expected = None
        if check:
            graphc.manual_seed(seed)
            with graphc.no_grad():
                expected = Interpreter(gm).run(*check_inputs)
        history = PassHistory(str(gm.graph))
        before_ir = history.initial_ir
        for pass_ in self.passes:
            name = getattr(pass_, "__name__", type(pass_).__name__)
            n_before = len(gm.graph.nodes)
            t0 = time.perf_counter()
            changed = bool(pass_(gm))
            seconds = time.perf_counter() - t0
            if changed:
                gm.graph.touch()
            after_ir = str(gm.graph) if changed else before_ir  # a pass says what it changed
            history.records.append(PassRecord(name, seconds, n_before, len(gm.graph.nodes),
                                              changed, after_ir, before_ir))
            before_ir = after_ir
            if check or debug_level() >= 1:
                gm.graph.lint(gm)
            if check:
                graphc.manual_seed(seed)
                with graphc.no_grad():
                    compare_outputs(Interpreter(gm).run(*check_inputs), expected, rtol, atol,
                                    what=f"after pass {name}")
        if debug_level() >= 2:  # the diffs are made only to be shown
            show(2, "passes", history.format(ir=True))
        return history


def random_inputs(gm: GraphModule, seed: int = 0) -> tuple:
    """Random inputs with the placeholders' recorded shapes and dtypes."""
    import graphc

    rng = np.random.default_rng(seed)
    out = []
    for node in gm.graph.placeholders:
        shape, dtype = node.meta["shape"], node.meta["dtype"]
        if dtype.is_floating_point:
            values = rng.standard_normal(shape)
        elif dtype is graphc.bool_:
            values = rng.random(shape) < 0.5
        else:
            values = rng.integers(0, 3, shape)
        out.append(graphc.tensor(values, dtype=dtype))
    return tuple(out)
