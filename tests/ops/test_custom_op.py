"""graphc.ops.custom_op: a user's op in one declaration, on the built-ins' path.

Each op declared here goes through the same checks as the table's own ops (eager vs its
kernel, meta shapes, float32 accuracy, unsupported dtypes, compiled vs eager over every
sample, gradcheck, the fuzzer), and is removed after its test so that the table the other
tests see (and the fuzzer's streams) stay the built-ins.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphc
import graphc.fuzz
from graphc import dtype as dt
from graphc.compiler import CaptureError
from graphc.ops import OPS, Flag, Sample, custom_op
from graphc.ops.custom import remove
from tests.autograd import test_gradcheck as gradcheck_tests
from tests.codegen import test_compiled_ops as compiled_tests
from tests.ops import test_table as table_tests

ROOT = Path(__file__).resolve().parents[2]


# squareplus, (x + sqrt(x² + b)) / 2, written so that float32 neither overflows (hypot)
# nor cancels (for x < 0, b / (2·(sqrt(x² + b) - x)))

def _sqp_grad(ctx, g):
    x, b = ctx.input(0), ctx.attrs["b"]
    return (g * 0.5 * (1 + x / graphc.sqrt(x * x + b)),)


def _sqp_emit(s, x, b=4.0):
    h = s.math.libm("hypot", x, s.c(math.sqrt(b)))
    right = s.b.fmul(s.b.fadd(x, h), s.c(0.5))
    left = s.b.fdiv(s.c(b), s.b.fmul(s.c(2.0), s.b.fsub(h, x)))
    return s.b.select(s.cmp(">=", x, s.c(0.0)), right, left)


def _sqp_kernel(x, b=4.0):
    h = np.hypot(x, x.dtype.type(math.sqrt(b)))
    with np.errstate(all="ignore"):
        return np.where(x >= 0, (x + h) / 2, b / (2 * (h - x))).astype(x.dtype)


@pytest.fixture
def declare():
    """declare(name, kernel, **fields) -> the op's function; removed after the test."""
    names = []

    def make(name, kernel, **fields):
        fn = custom_op(name, kernel, **fields)
        names.append(name)
        return fn
    yield make
    for name in names:
        if name in OPS:
            remove(name)


@pytest.fixture
def squareplus(declare):
    return declare("sqp_test", _sqp_kernel, emit=_sqp_emit, grad=_sqp_grad, method=True,
                   inplace=True, functional=True, dtype_rule="floating", accuracy=("rounded", 4))


def test_one_declaration_gives_the_op_and_its_wrappers(squareplus):
    op = OPS.sqp_test
    assert op.custom and op.inputs == ("x",) and op.attrs == {"b": 4.0}
    assert Flag.ELEMENTWISE in op.flags and op.accuracy.kind == "rounded"
    x = graphc.tensor([-1.0, 0.0, 3.0])
    expected = (x.numpy() + np.sqrt(x.numpy() ** 2 + 1.0)) / 2
    for fn in (graphc.ops.sqp_test, squareplus, graphc.nn.functional.sqp_test):
        np.testing.assert_allclose(fn(x, b=1.0).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(x.sqp_test(b=1.0).numpy(), expected, rtol=1e-6)
    y = x.clone()
    assert y.sqp_test_(b=1.0) is y and np.allclose(y.numpy(), expected)
    np.testing.assert_allclose(graphc.ops.sqp_test(x=x, b=1.0).numpy(), expected, rtol=1e-6)
    with pytest.raises(graphc.OpTypeError, match=r"sqp_test: .*unexpected keyword.*beta"):
        graphc.ops.sqp_test(x, beta=1.0)
    with pytest.raises(graphc.DTypeError, match="sqp_test"):
        graphc.ops.sqp_test(graphc.tensor([1, 2]))  # "floating": ints refused


def test_removed_op_leaves_nothing_behind(declare):
    declare("sqp_gone", _sqp_kernel, emit=_sqp_emit, method=True, inplace=True)
    remove("sqp_gone")
    assert "sqp_gone" not in OPS and not hasattr(graphc.ops, "sqp_gone")
    assert not hasattr(graphc.Tensor, "sqp_gone") and not hasattr(graphc.Tensor, "sqp_gone_")
    with pytest.raises(ValueError, match="not a custom op"):
        remove("exp")
    declare("sqp_gone", _sqp_kernel)  # the name is free again


@pytest.mark.parametrize("check", ["eager_kernel", "meta", "accuracy", "unsupported"])
def test_the_op_table_checks_take_it(squareplus, check):
    op = OPS.sqp_test
    for d in op.dtypes:
        case = (op, d)
        {"eager_kernel": table_tests.test_eager_matches_kernel_reference,
         "meta": table_tests.test_meta_matches_eager,
         "accuracy": table_tests.test_float32_accuracy_against_float64,
         "unsupported": lambda c: None}[check](case)
    if check == "unsupported":
        for d in set(dt.ALL_DTYPES) - set(op.dtypes):
            table_tests.test_unsupported_dtype_is_a_clear_error((op, d))


def test_it_compiles_natively_and_matches_eager_on_every_sample(squareplus):
    """Layouts, broadcasting, scalars, empty and size-1 shapes, nan/inf: the built-ins'
    samples, compiled in one program per dtype, against eager; no fallback."""
    op = OPS.sqp_test
    for d in op.dtypes:
        compiled_tests.test_op_samples_match_eager(op, d)
        assert not compiled_tests.compiled_samples(op, d).cg.last.program.fallbacks
    compiled_tests.test_op_is_native_or_an_explained_fallback(op)


def test_it_fuses_with_built_ins_under_fullgraph(squareplus):
    @graphc.compile(fullgraph=True)
    def f(x, w):
        return graphc.ops.sqp_test(x @ w + 1.0, b=2.0).sum(-1)

    x, w = graphc.randn(32, 16), graphc.randn(16, 8)
    with graphc.no_grad():
        got = f(x, w)
        want = graphc.ops.sqp_test(x @ w + 1.0, b=2.0).sum(-1)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    e = graphc.explain(f, x, w)
    assert not e.fallbacks
    assert "matmul -> add -> sqp_test" in str(e), str(e)  # the matmul kernel's epilogue


def test_gradient_is_checked_like_the_built_ins(squareplus):
    gradcheck_tests.test_gradcheck(OPS.sqp_test)
    x = graphc.randn(5, dtype=graphc.float64, requires_grad=True)
    assert graphc.autograd.gradcheck(lambda t: graphc.ops.sqp_test(t, b=0.5), (x,))


def test_the_fuzzer_builds_programs_around_it(squareplus):
    summary = graphc.fuzz.fuzz(25, seed=3, ops=["sqp_test"], progress=None)
    assert summary.count == 25 and not summary.failures, summary.report()
    assert summary.ops["sqp_test"] >= 10, summary.ops


def test_a_decomposition_compiles_natively_without_an_emitter(declare):
    mish = declare("mish_test", lambda x: x * np.tanh(np.logaddexp(0, x)),
                   decomposition=lambda x: x * graphc.tanh(graphc.log1p(graphc.exp(x))),
                   dtype_rule="floating", domain=(-5.0, 5.0))
    assert Flag.COMPOSITE in OPS.mish_test.flags
    f = graphc.compile(lambda x: mish(x) * 2, fullgraph=True)
    x = graphc.linspace(-5, 5, 101)
    with graphc.no_grad():
        np.testing.assert_allclose(f(x).numpy(), (mish(x) * 2).numpy(), rtol=1e-5, atol=1e-6)
    assert not graphc.explain(f, x).fallbacks
    table_tests.test_decomposition_matches_kernel((OPS.mish_test, dt.float32))


def test_without_emitter_or_decomposition_it_is_a_named_fallback(declare):
    plain = declare("sqp_numpy_only", _sqp_kernel, dtype_rule="floating")
    f = graphc.compile(lambda x: plain(x + 1) * 2)
    x = graphc.randn(10)
    with graphc.no_grad():
        np.testing.assert_allclose(f(x).numpy(), (plain(x + 1) * 2).numpy(), rtol=1e-6)
    [fallback] = graphc.explain(f, x).fallbacks
    assert "sqp_numpy_only" in fallback["reason"]
    strict = graphc.compile(lambda x: plain(x), fullgraph=True)
    with graphc.no_grad(), pytest.raises(CaptureError, match="sqp_numpy_only"):
        strict(x)


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_an_op_that_is_not_elementwise(declare):
    """A row op: shape rule and samples given; its decomposition compiles natively."""
    def shape(name, x, **attrs):
        return tuple(x.shape[:-1])

    def samples(d, rng):
        return [Sample((rng.standard_normal(s).astype(d.np),), {}, str(s)) for s in
                [(4, 5), (3,), (2, 0), (0, 3)]]

    rms = declare("rms_test", lambda x: np.sqrt(np.mean(x * x, axis=-1)).astype(x.dtype),
                  elementwise=False, shape_rule=shape, samples=samples, dtype_rule="floating",
                  decomposition=lambda x: graphc.sqrt(graphc.mean(x * x, -1)))
    x = graphc.randn(6, 7)
    f = graphc.compile(rms, fullgraph=True)
    with graphc.no_grad():
        np.testing.assert_allclose(f(x).numpy(), rms(x).numpy(), rtol=1e-5)
    assert graphc.ops.rms_test(graphc.empty(3, 4, device="meta")).shape == (3,)
    for d in OPS.rms_test.dtypes:
        compiled_tests.test_op_samples_match_eager(OPS.rms_test, d)


@pytest.mark.parametrize("fields, message", [
    (dict(name="exp"), "already declared"),
    (dict(name="not a name"), "identifier"),
    (dict(emit=lambda s, x: x, elementwise=False, shape_rule=lambda n, x: x.shape,
          samples=lambda d, r: []), "only elementwise ops"),
    (dict(emit=lambda s, x, y: x), "emitter must take"),
    (dict(elementwise=False), "needs a shape_rule"),
    (dict(name="shape", method=True), "Tensor.shape already exists"),
    (dict(kernel=lambda *xs: xs[0]), "must be named"),
    (dict(kernel=lambda b=1.0: b), "takes no tensor input"),
])
def test_bad_declarations_are_clear_errors(fields, message):
    fields = {"name": "sqp_bad", "kernel": _sqp_kernel, **fields}
    name = fields.pop("name")
    with pytest.raises(ValueError, match=re.escape(message)):
        custom_op(name, fields.pop("kernel"), **fields)
    assert name == "exp" or name not in OPS


def test_readme_example_runs_as_written(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Your own ops"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    script = tmp_path / "example.py"
    script.write_text(code)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, env={**__import__("os").environ,
                                                     "GRAPHC_CACHE_DIR": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert "tensor([" in run.stdout and "(128, 128) (64, 128)" in run.stdout, run.stdout


def test_its_inplace_method_compiles_with_writes_through_views(squareplus):
    """x.sqp_test_() on an argument, through a view of it, and on an aliased pair of views:
    compiled results and the arguments afterwards are eager's."""
    def program(x, y):
        x.sqp_test_(b=1.0)
        x[:, 0].sqp_test_(b=2.0)
        y.t()[1:].sqp_test_()
        return x * 2 + y

    base = graphc.randn(6, 4)
    for make in (lambda: (base.clone(), base.clone().t().contiguous().t()),  # y transposed
                 lambda: (lambda b: (b[:3], b[3:].t().t()))(base.clone())):  # disjoint views
        ex, ey = make()
        cx, cy = make()
        want = program(ex, ey)
        with graphc.no_grad():
            got = graphc.compile(program)(cx, cy)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cx.numpy(), ex.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(cy.numpy(), ey.numpy(), rtol=1e-5, atol=1e-6)
