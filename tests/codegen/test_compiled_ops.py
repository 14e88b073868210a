"""Every op of the table compiled by the llvmlite backend, against eager graphc.

* the op table: every sample of every (op, dtype), compiled and compared with eager
  (shape, dtype, values, and memory of its own wherever eager's result has its own);
* layouts: elementwise ops, reductions, normalisations and matmul on transposed, stepped,
  negative-step, expanded (stride 0), offset, empty and size-1 inputs holding nan, ±inf,
  -0.0, denormals and huge values (a program is specialised to its inputs' strides);
* fallbacks are never silent: every node the program does not run natively is named by
  ``explain()``.

A compile costs far more than a run, so a test puts all its cases into ONE graph (each
case its own placeholders, the graph returning a tuple of every result): one LLVM
compile per test. A failure lists every case that differs, by op and description.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest

import graphc
from graphc import dtype as dt
from graphc.compiler import CompiledGraph, compile_graph
from graphc.ir import Graph, GraphModule
from graphc.ir.fused import FusedKernel
from graphc.ops import OPS, Flag, dispatch
from graphc.ops.registry import OpDef
from graphc.ops.samples import array
from tests.helpers import as_list, assert_same, case_id, op_cases, samples_of, to_graphc


@pytest.fixture(autouse=True, scope="module")
def private_cache_dir(tmp_path_factory):
    """Compile into a cache of this module's own (never the user's ~/.cache/graphc)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("graphc-cache")))
        yield


# ---- tolerances ------------------------------------------------------------------------------

# Floats compare with rtol = atol = TOLERANCE[dtype], nan equal to nan; ints and bools exactly.
TOLERANCE = {dt.float32: 1e-5, dt.float64: 1e-12}

# Ops that need more, with the reason: op name -> {dtype: rtol = atol}. None does so far:
# float32 sums accumulate in float64 natively and pairwise in float32 eagerly, and the
# samples' sums stay well within 1e-5 of each other.
WIDER_TOLERANCE: dict[str, dict[dt.dtype, float]] = {}


def tolerance(op: OpDef, d: dt.dtype) -> float:
    return WIDER_TOLERANCE.get(op.name, {}).get(d, TOLERANCE[d])


# ---- one graph for many cases ----------------------------------------------------------------

@dataclass
class Case:
    """One call of an op: arguments (tensors become placeholders), attributes, a description."""

    op: OpDef
    args: tuple
    attrs: dict
    desc: str


def batch_graph(cases: list[Case]) -> tuple[GraphModule, list[graphc.Tensor]]:
    """One graph calling every case on placeholders of its own; returns a tuple of results."""
    graph, inputs = Graph(), []

    def arg(x):
        if isinstance(x, graphc.Tensor):
            inputs.append(x)
            return graph.placeholder(f"x{len(inputs) - 1}")
        return x

    results = [graph.call_function(c.op, tuple(arg(a) for a in c.args), dict(c.attrs))
               for c in cases]
    graph.output(tuple(results))
    graph.lint()
    return GraphModule({}, graph), inputs


def aliases(out: graphc.Tensor, case: Case) -> bool:
    """Whether ``out`` shares memory with a tensor argument of ``case``."""
    return any(np.shares_memory(out.numpy(), x.numpy())
               for x in case.args if isinstance(x, graphc.Tensor))


def difference(case: Case, actual, expected) -> str | None:
    """Why a compiled result differs from eager (None when it matches)."""
    actual, expected = as_list(actual), as_list(expected)
    where = f"{case.op.name} [{case.desc}]"
    if len(actual) != len(expected):
        return f"{where}: {len(actual)} outputs, eager gives {len(expected)}"
    for a, e in zip(actual, expected):
        if aliases(a, case) and not aliases(e, case):
            return f"{where}: the result shares memory with an input; eager's has its own"
        floating = e.dtype.is_floating_point
        tol = tolerance(case.op, e.dtype) if floating else 0.0
        try:
            assert_same(a.numpy(), e.numpy(), exact=not floating, rtol=tol, atol=tol, msg=where)
        except AssertionError as error:
            return str(error).strip()
    return None


@dataclass
class Run:
    """Cases compiled as one graph and run once, with eager's results."""

    cases: list[Case]
    cg: CompiledGraph
    actual: tuple
    expected: list


def run_compiled(cases: list[Case]) -> Run:
    assert cases, "no cases to compile"
    expected = [dispatch(c.op, *c.args, **c.attrs) for c in cases]
    gm, inputs = batch_graph(cases)
    cg = compile_graph(gm, *inputs)
    return Run(cases, cg, cg(*inputs), expected)


def assert_matches_eager(run: Run) -> None:
    """Each case's compiled results against eager's; a failure lists every case that differs."""
    assert len(run.actual) == len(run.cases)
    failures = [d for c, a, e in zip(run.cases, run.actual, run.expected)
                if (d := difference(c, a, e))]
    if failures:
        pytest.fail(f"{len(failures)} of {len(run.cases)} cases differ from eager:\n" +
                    "\n\n".join(failures))


def assert_compiled_matches_eager(cases: list[Case]) -> CompiledGraph:
    run = run_compiled(cases)
    assert_matches_eager(run)
    return run.cg


# ---- the op table -------------------------------------------------------------------------------

SKIPPED_FLAGS = {Flag.MUTATES, Flag.RANDOM}  # writes and random draws are not graph values


def compiled_op(op: OpDef) -> bool:
    """Ops whose result size depends on the data (nonzero) are not graph values either:
    capture refuses them (test_a_data_dependent_size_runs_eagerly_with_the_reason)."""
    return not op.flags & SKIPPED_FLAGS and not all(
        s.data_dependent for s in samples_of(op, op.dtypes[0]))


@functools.cache
def compiled_samples(op: OpDef, d: dt.dtype) -> Run:
    """All samples of (op, dtype) compiled as one graph and run (once per session)."""
    return run_compiled([Case(op, tuple(to_graphc(x) for x in s.inputs), s.attrs, s.desc)
                         for s in samples_of(op, d) if not s.data_dependent])


@pytest.mark.parametrize("op, d", [pytest.param(op, d, id=case_id((op, d)))
                                   for op, d in op_cases(compiled_op)])
def test_op_samples_match_eager(op, d):
    assert_matches_eager(compiled_samples(op, d))


# ---- fallbacks are never silent -----------------------------------------------------------------

def listed_fallbacks(cg: CompiledGraph) -> dict[str, str]:
    """The fallbacks ``explain()`` lists: name -> reason."""
    listed = {}
    for line in cg.explain().splitlines():
        if line.startswith("  fallback "):
            name, _, reason = line.split(maxsplit=1)[1].partition(" numpy: ")
            listed[name.strip()] = reason.strip()
    return listed


def listed_name(n) -> str:
    """The name ``explain()`` gives a node: a fused kernel's kernel name, else the node's."""
    module = n.graph.module_at(n.target) if n.op == "call_module" else None
    return module.name if isinstance(module, FusedKernel) else n.name


@pytest.mark.parametrize("op", [pytest.param(op, id=op.name) for op in OPS if compiled_op(op)])
def test_op_is_native_or_an_explained_fallback(op):
    """Every node of the lowered graph runs in a native kernel, is a view of native memory,
    or is named (with a reason) in ``explain()``; in particular every node of ``op``."""
    for d in op.dtypes:
        cg = compiled_samples(op, d).cg
        spec = cg.last
        program = spec.program
        listed = listed_fallbacks(cg)
        assert f"{len(program.fallbacks)} fallbacks" in cg.explain()
        assert len(listed) == len(program.fallbacks), cg.explain()
        assert all(listed.values()), f"a fallback without a reason: {listed}"
        native = {name for name, _ in program.kernels}
        fallen = {fb.node for fb in program.fallbacks}
        for n in spec.gm.graph.nodes:
            if n.op in ("placeholder", "get_attr", "output"):
                continue  # inputs, weights and folded constants: memory, not work
            if n.op == "call_method" and n.target == "__getitem__":
                n = n.args[0]  # one output of a kernel or a fallback: accounted with it
            if n.op == "call_function" and Flag.VIEW in n.target.flags and n not in fallen:
                assert n in program.refs, f"{d.name}: view %{n.name} has no memory"
                continue  # a view: strides over memory a kernel or the caller owns
            assert n.name in native or listed_name(n) in listed, (
                f"{d.name}: %{n.name} ({n.op} {n.target}) neither runs natively nor is "
                f"listed by explain():\n{cg.explain()}")


# Ops whose samples do not all run natively, pinned: a new op that silently falls back, or
# one of these that gains a lowering, fails here (update the list with the reason).
NO_LOWERING = {  # no native kernel at all: numpy runs them inside compiled programs
    "cat", "stack", "index", "index_put", "view_scatter",
    # a sort, scans and a scatter by index: numpy kernels (sequential or data-dependent order)
    "argsort", "cumsum", "cumprod", "scatter",
    "assert_true",  # a check that raises: run by numpy, in order, on every call
}
SOME_SAMPLES = {  # native for most samples; the reason for the others
    "as_strided": "as_strided sets an absolute storage offset",
    "unfold": "unfold with padding (pad first)",
    "argmax": "over several dims, or non-innermost dims",
    "argmin": "over several dims, or non-innermost dims",
    "softmax": "a sum before a non-innermost reduction",
    "log_softmax": "a sum before a non-innermost reduction",
    "logsumexp": "a reduction over non-innermost dims",
    "var": "a sum before a non-innermost reduction",
    "std": "a sum before a non-innermost reduction",
    "norm": "a sum before a non-innermost reduction",
    "group_norm": "a reduction over non-innermost dims",
    "cross_entropy": "a non-innermost sum (its gather and index_select are native)",
    "nll_loss": "a non-innermost sum (its gather and index_select are native)",
    "index_fill": "every sample: its index_put (no lowering)",
    "index_add": "every sample: its index_put (no lowering)",
}


def test_ops_that_fall_back_are_pinned():
    falls_back = {}
    for op in OPS:
        if compiled_op(op):
            reasons = {fb.reason for d in op.dtypes
                       for fb in compiled_samples(op, d).cg.last.program.fallbacks}
            if reasons:
                falls_back[op.name] = reasons
    assert set(falls_back) == NO_LOWERING | set(SOME_SAMPLES), (
        f"ops that fall back: {sorted(falls_back)}, pinned: {sorted(NO_LOWERING | set(SOME_SAMPLES))}")
    for name in NO_LOWERING:
        assert falls_back[name] == {f"{name} has no LLVM lowering"}, (name, falls_back[name])


def test_every_elementwise_op_has_an_emitter_or_a_decomposition():
    """An elementwise op compiles into fused kernels only through one of them."""
    missing = [op.name for op in OPS.with_flag(Flag.ELEMENTWISE)
               if op.emit is None and op.decomposition is None and Flag.MUTATES not in op.flags]
    assert not missing, f"elementwise ops without a native lowering: {missing}"


# ---- layouts and special values ---------------------------------------------------------------
# The op table's samples already cover contiguous, transposed, step-2 and reversed-last-dim
# inputs, broadcasting, 0-d, empty and size-1 shapes. These tests add stride patterns the
# samples lack (reversed outer dims, offsets, stride 0, permuted 3-d), with the special
# values at random places in every input.

SPECIALS = {  # nan, ±inf, -0.0, two denormals, two huge values
    dt.float32: (np.nan, np.inf, -np.inf, -0.0, 1e-40, -1e-42, 1e30, -3e29),
    dt.float64: (np.nan, np.inf, -np.inf, -0.0, 1e-310, -1e-315, 1e300, -3e299),
}


def values(rng, shape, d: dt.dtype, low=-3.0, high=3.0, specials=True,
           nonzero=False) -> np.ndarray:
    """Random values; floats get the special values at random places (as many as fit);
    ``nonzero`` draws magnitudes from [1, high] with a random sign (divisors)."""
    if nonzero and d is dt.bool_:
        a = np.ones(shape, bool)
    elif nonzero:
        a = array(rng, shape, d, 1.0, high)
        a = np.asarray(a * np.where(rng.random(shape) < 0.5, -1, 1), d.np)
    else:
        a = array(rng, shape, d, low, high)
    if specials and d.is_floating_point and a.size:
        where = rng.permutation(a.size)[:len(SPECIALS[d])]
        a.reshape(-1)[where] = SPECIALS[d][:len(where)]
    return a


def layouts(rng, d: dt.dtype, shape=(4, 6), **value_kw) -> dict[str, graphc.Tensor]:
    """Tensors of a 2-d ``shape``, each with non-contiguous strides and values of its own."""
    rows, cols = shape

    def new(*s):
        return graphc.from_numpy(values(rng, s, d, **value_kw))

    big = np.zeros((rows + 2, 2 * cols + 3), d.np)
    big[1:1 + rows, 3::2] = values(rng, shape, d, **value_kw)
    return {
        "transposed": new(cols, rows).T,
        "offset, step 2": graphc.from_numpy(big)[1:1 + rows, 3::2],
        "reversed rows": new(rows, cols)[::-1],
        "reversed, transposed": new(cols, rows)[::-1].T,
        "expanded rows": new(1, cols).expand(rows, cols),
        "expanded cols": new(rows, 1).expand(rows, cols),
    }


def odd_shapes(rng, d: dt.dtype, **value_kw) -> dict[str, graphc.Tensor]:
    """Empty, size-1, 3-d and 1-d tensors, none of them contiguous."""
    def new(*s):
        return graphc.from_numpy(values(rng, s, d, **value_kw))

    return {
        "empty (0, 5) transposed": new(5, 0).T,
        "size-1 (1, 6) reversed": new(1, 6)[:, ::-1],
        "(2, 3, 4) permuted": new(4, 2, 3).permute(1, 2, 0),
        "(7,) reversed": new(7)[::-1],
    }


def strided_inputs(rng, d: dt.dtype, **value_kw) -> dict[str, graphc.Tensor]:
    return {**layouts(rng, d, **value_kw), **odd_shapes(rng, d, **value_kw)}


# ops whose layout cases may run partly through numpy, and why (as explain() says)
PARTLY_NUMPY = {
    "argmax": "argmax over several dims, and over non-innermost dims",
    "argmin": "argmin over several dims, and over non-innermost dims",
    "softmax": "amax and sum before a non-innermost reduction (dim=0)",
    "log_softmax": "amax and sum before a non-innermost reduction (dim=0)",
}


def assert_native_matches_eager(cases: list[Case]) -> None:
    """Compiled equals eager, and the cases ran natively (not eager compared with itself)."""
    cg = assert_compiled_matches_eager(cases)
    program = cg.last.program
    if any(c.op.name in PARTLY_NUMPY for c in cases):
        assert program.kernels, f"nothing ran natively:\n{cg.explain()}"
    else:
        assert not program.fallbacks, f"unexpected fallbacks:\n{cg.explain()}"


def rotated(names: list, k: int) -> list:
    return names[k:] + names[:k]


def layout_params(ops, dtypes_of) -> list:
    return [pytest.param(op, d, id=case_id((op, d))) for op in ops for d in dtypes_of(op)]


def floats(op: OpDef) -> list[dt.dtype]:
    return [d for d in op.dtypes if d.is_floating_point]


def elementwise_ops(arity: int) -> list[OpDef]:
    return [op for op in OPS if Flag.ELEMENTWISE in op.flags and compiled_op(op)
            and len(op.inputs) == arity]


# attribute sets tried for each op (the first is the default); no casts to integers,
# because nan and inf have no integer value
ATTRS = {
    "cast": [{"dtype": dt.bool_}, {"dtype": dt.float32}, {"dtype": dt.float64}],
    "round": [{}, {"decimals": 2}],
    "gelu": [{}, {"approximate": "tanh"}],
    "div": [{}, {"rounding_mode": "floor"}, {"rounding_mode": "trunc"}],
    "threshold": [{"threshold": 0.5, "value": -2.0}],
    "hardtanh": [{}, {"min_val": 0.0, "max_val": 6.0}],
    "leaky_relu": [{}, {"negative_slope": 0.2}],
    "elu": [{}, {"alpha": 0.5}],
    "celu": [{}, {"alpha": 2.0}],
}


def attr_sets(op: OpDef) -> list[dict]:
    return ATTRS.get(op.name, [{}])


@pytest.mark.parametrize("op, d", layout_params(elementwise_ops(1), floats))
def test_unary_layouts(op, d):
    rng = np.random.default_rng(0)
    cases = [Case(op, (x,), attrs, f"{name} {attrs}")
             for attrs in attr_sets(op) for name, x in strided_inputs(rng, d).items()]
    assert_native_matches_eager(cases)


INTEGER_DIVISION = {"div", "remainder"}
SECOND_INPUT = {"div": {"nonzero": True}, "remainder": {"nonzero": True},
                "pow": {"low": 0.0, "high": 3.0}}  # nonzero divisors, small exponents


def arithmetic_dtypes(op: OpDef) -> list[dt.dtype]:
    """Floats; integers too for division (rounding, overflow) and clamp. (Integer pow is
    left to the op table: it compiles slowly.)"""
    ints = (dt.int32, dt.int64) if op.name in INTEGER_DIVISION else \
        (dt.int32,) if op.name == "clamp" else ()
    return [d for d in op.dtypes if d.is_floating_point or d in ints]


def binary_pairs(rng, d: dt.dtype, second: dict) -> list[tuple[str, graphc.Tensor, graphc.Tensor]]:
    """(description, x, y): every layout on each side once, then broadcasts of odd shapes."""
    def x(*shape):
        return graphc.from_numpy(values(rng, shape, d))

    def y(*shape):
        return graphc.from_numpy(values(rng, shape, d, **second))

    xs, ys = layouts(rng, d), layouts(rng, d, **second)
    names = list(xs)
    return [(f"{a} with {b}", xs[a], ys[b]) for a, b in zip(names, rotated(names, 1))] + [
        ("(4, 1) with (6,) reversed", x(4, 1), y(6)[::-1]),
        ("empty (0, 5) transposed with (5,) step 2", x(5, 0).T, y(10)[::2]),
        ("(2, 3, 4) permuted with (4,) reversed", x(4, 2, 3).permute(1, 2, 0), y(4)[::-1]),
        ("0-d with expanded cols", x(), ys["expanded cols"]),
        ("(1, 1) expanded with (2, 3, 4) permuted", x(1, 1).expand(3, 1),
         y(4, 2, 3).permute(1, 2, 0)),
    ]


def integer_extremes(d: dt.dtype) -> tuple[graphc.Tensor, graphc.Tensor]:
    """The smallest and largest integers divided by -1 and others (reversed layout)."""
    info = np.iinfo(d.np)
    x = np.array([info.min, info.max, info.min, -7, 7, 0], d.np)
    y = np.array([-1, -1, 1, 2, -2, 3], d.np)
    return graphc.from_numpy(x[::-1].copy())[::-1], graphc.from_numpy(y[::-1].copy())[::-1]


@pytest.mark.parametrize("op, d", layout_params(elementwise_ops(2), arithmetic_dtypes))
def test_binary_layouts(op, d):
    rng = np.random.default_rng(1)
    pairs = binary_pairs(rng, d, SECOND_INPUT.get(op.name, {}))
    if op.name in INTEGER_DIVISION and not d.is_floating_point:
        pairs.append(("integer extremes", *integer_extremes(d)))
    cases = [Case(op, (x, y), attrs, f"{desc} {attrs}")
             for attrs in attr_sets(op) for desc, x, y in pairs]
    assert_native_matches_eager(cases)


@pytest.mark.parametrize("d", [dt.bool_, dt.int32, dt.float32, dt.float64], ids=lambda d: d.name)
def test_where_layouts(d):
    rng = np.random.default_rng(2)
    conditions, xs, ys = layouts(rng, dt.bool_), layouts(rng, d), layouts(rng, d)
    names = list(xs)
    cases = [Case(OPS.where, (conditions[c], xs[x], ys[y]), {}, f"{c}, {x}, {y}")
             for c, x, y in zip(names, rotated(names, 1), rotated(names, 3))]
    cases.append(Case(OPS.where, (conditions["transposed"][:, :1], xs["reversed rows"], 1), {},
                      "condition (4, 1), scalar other"))
    assert_native_matches_eager(cases)


@pytest.mark.parametrize("op, d", layout_params([OPS.clamp, OPS.lerp], arithmetic_dtypes))
def test_ternary_layouts(op, d):
    rng = np.random.default_rng(3)
    third = {"low": 0.0, "high": 1.0} if op is OPS.lerp else {}
    xs, ys, zs = layouts(rng, d), layouts(rng, d), layouts(rng, d, **third)
    names = list(xs)
    cases = [Case(op, (xs[a], ys[b], zs[c]), {}, f"{a}, {b}, {c}")
             for a, b, c in zip(names, rotated(names, 2), rotated(names, 5))]
    assert_native_matches_eager(cases)


# ---- reductions -----------------------------------------------------------------------------

REDUCTIONS = [op for op in OPS if Flag.REDUCTION in op.flags and compiled_op(op)]
NO_IDENTITY = {"amax", "amin", "argmax", "argmin"}  # refuse to reduce an empty dim
SINGLE_DIM = {"argmax", "argmin"}  # dim is one int or None


def reduction_dtypes(op: OpDef) -> list[dt.dtype]:
    """Floats; int32 too for the reductions that keep integers (sum, amax, argmax...)."""
    keeps_ints = op.name in ("sum", "prod", "amax", "amin", "argmax", "argmin")
    return [d for d in op.dtypes if d.is_floating_point or (keeps_ints and d is dt.int32)]


def reduction_attrs(op: OpDef, x: graphc.Tensor, k: int) -> list[dict]:
    """Two dim/keepdim sets for ``x`` (rotating with ``k``): over all dims, the first, the
    last, or the first and last; keepdim alternates."""
    n = x.ndim
    options = list(dict.fromkeys([None] + ([(0,), (n - 1,)] if n else []) +
                                 ([(0, n - 1)] if n > 1 else [])))
    if op.name in SINGLE_DIM:
        options = [dim for dim in options if dim is None or len(dim) == 1]
    if op.name in NO_IDENTITY:
        options = [dim for dim in options
                   if all(x.shape[j] for j in (range(n) if dim is None else dim))]
    picked = [options[(k + j) % len(options)] for j in range(min(2, len(options)))]
    return [{"dim": dim[0] if dim is not None and op.name in SINGLE_DIM else dim,
             "keepdim": (k + j) % 2 == 1} for j, dim in enumerate(picked)]


@pytest.mark.parametrize("op, d", layout_params(REDUCTIONS, reduction_dtypes))
def test_reduction_layouts(op, d):
    rng = np.random.default_rng(4)
    # prod gets no specials: huge and denormal factors over- or underflow depending on
    # the order of the products (eager multiplies float32 in float32)
    inputs = strided_inputs(rng, d, specials=op.name != "prod")
    cases = [Case(op, (x,), attrs, f"{name} {attrs}")
             for k, (name, x) in enumerate(inputs.items()) for attrs in reduction_attrs(op, x, k)]
    assert_native_matches_eager(cases)


# ---- normalisations and matmul -----------------------------------------------------------------

@pytest.mark.parametrize("op, d", layout_params([OPS.softmax, OPS.log_softmax], floats))
def test_softmax_layouts(op, d):
    rng = np.random.default_rng(5)
    cases = [Case(op, (x,), {"dim": dim}, f"{name} dim={dim}")
             for k, (name, x) in enumerate(strided_inputs(rng, d).items())
             for dim in ((0, -1) if k % 2 else (-1,))]
    assert_native_matches_eager(cases)


@pytest.mark.parametrize("d", [dt.float32, dt.float64], ids=lambda d: d.name)
def test_layer_norm_layouts(d):
    rng = np.random.default_rng(6)
    weight = graphc.from_numpy(values(rng, (6,), d, specials=False))[::-1]
    bias = graphc.from_numpy(values(rng, (1,), d, specials=False)).expand(6)
    cases = []
    for name, x in strided_inputs(rng, d).items():
        n = x.shape[-1]
        cases.append(Case(OPS.layer_norm, (x, None, None), {"normalized_shape": (n,)}, name))
        if n == 6:
            cases.append(Case(OPS.layer_norm, (x, weight, bias), {"normalized_shape": (6,)},
                              f"{name}, reversed weight, expanded bias"))
    assert_native_matches_eager(cases)


@pytest.mark.parametrize("d", [dt.int32, dt.int64, dt.float32, dt.float64], ids=lambda d: d.name)
def test_matmul_layouts(d):
    rng = np.random.default_rng(7)
    a, b = layouts(rng, d, (4, 5), specials=False), layouts(rng, d, (5, 3), specials=False)
    names = list(a)
    cases = [Case(OPS.matmul, (a[x], b[y]), {}, f"{x} @ {y}")
             for k in (0, 1) for x, y in zip(names, rotated(names, k))]

    def new(*shape):
        return graphc.from_numpy(values(rng, shape, d, specials=False))

    batched = new(4, 2, 5).permute(1, 0, 2)
    cases += [
        Case(OPS.matmul, (batched, new(1, 5, 3).expand(2, 5, 3)), {}, "permuted @ expanded batch"),
        Case(OPS.matmul, (new(5)[::-1], b["transposed"]), {}, "reversed vector @ transposed"),
        Case(OPS.matmul, (a["reversed, transposed"], new(10)[::2]), {}, "matrix @ step 2 vector"),
        Case(OPS.matmul, (new(5, 0).T, b["reversed rows"]), {}, "no rows"),
        Case(OPS.matmul, (new(5, 4)[:0].T, new(0, 3)), {}, "empty contraction"),
        Case(OPS.bmm, (batched, new(2, 3, 5).permute(0, 2, 1)), {}, "bmm of permuted"),
        Case(OPS.linear, (a["reversed rows"], new(5, 3).T, new(3)[::-1]), {},
             "linear, transposed weight, reversed bias"),
    ]
    assert_native_matches_eager(cases)


# ---- one graph, two layouts ------------------------------------------------------------------

def test_contiguous_then_transposed_input_specialises_twice():
    def f(x):
        return graphc.exp(x).sum(1), graphc.softmax(x * 2.0, dim=-1), x.amax(0), x + 1.0

    rng = np.random.default_rng(8)
    x = graphc.from_numpy(values(rng, (5, 7), dt.float32, specials=False))
    xt = graphc.from_numpy(values(rng, (7, 5), dt.float32, specials=False)).T
    cg = compile_graph(graphc.trace(f, x), x)
    for inputs in (x, xt, x):
        for actual, expected in zip(cg(inputs), f(inputs)):
            assert_same(actual.numpy(), expected.numpy(), exact=False, rtol=1e-5, atol=1e-6)
    assert len(cg.specializations) == 2
    assert {sig[0][1] for sig in cg.specializations} == {(7, 1), (1, 5)}
    for spec in cg.specializations.values():
        assert spec.program.kernels and not spec.program.fallbacks, spec.program.explain()


def test_a_data_dependent_size_runs_eagerly_with_the_reason():
    f = graphc.compile(lambda x: graphc.nonzero(x > 0) * 2)
    x = graphc.tensor([[1.0, -1.0], [0.5, 2.0]])
    with graphc.no_grad(), pytest.warns(UserWarning, match="nonzero: the result's shape"):
        got = f(x)
    assert got.tolist() == (graphc.nonzero(x > 0) * 2).tolist()
    assert len(f.eager_runs) == 1 and "depends on tensor values" in str(f.eager_runs[0])
