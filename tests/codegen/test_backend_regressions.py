"""Regression tests for backend bugs found by the op-table, random-graph and runtime tests,
and for the scheduling choices made for speed (each checked against eager)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc
import graphc.nn.functional as F
from graphc.compiler import compile_graph
from graphc.ops import OPS, dispatch
from tests.codegen.vectors import X86, lanes


def compiled(fn, *inputs):
    cg = compile_graph(graphc.trace(fn, *inputs), *inputs)
    return cg, cg(*inputs)


def same_bits(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_min_relu_keep_numpys_zero_signs_and_nans(dtype):
    a = graphc.from_numpy(np.array([0.0, -0.0, np.nan, 1.0, -np.inf, np.nan], dtype))
    b = graphc.from_numpy(np.array([-0.0, 0.0, 1.0, np.nan, -np.inf, np.nan], dtype))
    for fn in (graphc.maximum, graphc.minimum):
        _, got = compiled(fn, a, b)
        assert same_bits(got.numpy(), fn(a, b).numpy()), fn.__name__
    _, got = compiled(F.relu, a)
    assert same_bits(got.numpy(), F.relu(a).numpy())


def test_int_max_reduction_starts_below_every_value():
    x = graphc.tensor([-1, -2147483648, 0], dtype=graphc.int32)
    fn = lambda x: (x.amin().abs().amax(), x.amax(), x.amin())
    _, got = compiled(fn, x)
    for g, e in zip(got, fn(x)):
        assert same_bits(g.numpy(), e.numpy())


@pytest.mark.parametrize("shapes", [((1, 3), (3, 1)), ((3, 1), (1, 2)), ((0, 1), (1, 3)),
                                    ((2, 2, 1), (1, 2)), ((3,), (3,))])
def test_matmul_with_unit_dims_and_an_epilogue(shapes):
    a, b = graphc.randn(*shapes[0]), graphc.randn(*shapes[1])
    fn = lambda x, w: (x @ w + 1.0).relu()
    _, got = compiled(fn, a, b)
    np.testing.assert_allclose(got.numpy(), fn(a, b).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch,rows", [(40, 6), (6, 40)])
def test_batched_matmul_with_one_weight_over_a_transposed_input(batch, rows):
    """x.transpose(0, 1) @ w: BLAS runs over whichever of batch and rows is larger."""
    x, w = graphc.randn(rows, batch, 96), graphc.randn(96, 80)
    fn = lambda x, w: F.gelu(x.transpose(0, 1) @ w)
    cg, got = compiled(fn, x, w)
    assert "gemm" in cg.dump("kernels")
    np.testing.assert_allclose(got.numpy(), fn(x, w).numpy(), rtol=1e-4, atol=1e-5)


def test_small_matmuls_run_on_loops_and_match():
    model = graphc.nn.Sequential(graphc.nn.Linear(64, 64), graphc.nn.ReLU(),
                                 graphc.nn.Linear(64, 64)).eval()
    x = graphc.randn(1, 64)
    with graphc.no_grad():
        cg, got = compiled(model, x)
        expected = model(x)
    assert "gemm" not in cg.dump("kernels")
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_float32_sums_are_accurate_over_long_rows():
    """Blocked float32 partial sums, blocks added in float64: close to the exact sum."""
    rng = np.random.default_rng(0)
    x = graphc.from_numpy((rng.random((4, 1_000_003)) + 1e3).astype(np.float32))
    _, got = compiled(lambda x: (x.sum(-1), x.mean(-1), x.sum()), x)
    exact = x.numpy().astype(np.float64)
    np.testing.assert_allclose(got[0].numpy(), exact.sum(-1), rtol=2e-7)
    np.testing.assert_allclose(got[1].numpy(), exact.mean(-1), rtol=2e-7)
    np.testing.assert_allclose(got[2].numpy(), exact.sum(), rtol=2e-7)


def test_integer_pow_compiles_quickly_and_flags_negative_exponents():
    a = graphc.from_numpy(np.arange(-5, 20, dtype=np.int64))
    b = graphc.from_numpy(np.arange(25, dtype=np.int64) % 7)
    cg, got = compiled(lambda a, b: a ** b, a, b)
    assert same_bits(got.numpy(), (a ** b).numpy())
    with pytest.raises(graphc.OpValueError, match="negative integer powers"):
        cg(a, -b)


def test_logsumexp_over_an_empty_dim_is_minus_inf_and_native():
    x = graphc.from_numpy(np.zeros((0, 5), np.float32))
    fn = lambda x: graphc.logsumexp(x, dim=0)
    cg, got = compiled(fn, x)
    assert same_bits(got.numpy(), fn(x).numpy())
    assert not cg.last.program.fallbacks


def test_gelu_tanh_compiles_as_x_sigmoid_2z_and_stays_accurate_for_negative_inputs():
    x = graphc.from_numpy(np.linspace(-12, 6, 100_001).astype(np.float64))
    _, got = compiled(lambda x: F.gelu(x, approximate="tanh"), x)
    v = x.numpy()
    z = np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3)
    exact = v / (1 + np.exp(-2 * z))  # 0.5·(1 + tanh z) = sigmoid(2z), without cancellation
    np.testing.assert_allclose(got.numpy(), exact, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("n", [10, 100_000])  # a ctypes buffer, a numpy array
def test_output_memory_is_reused_only_when_nothing_refers_to_it(n):
    x = graphc.randn(n)
    cg = compile_graph(graphc.trace(lambda x: x * 2, x), x)
    a, b = cg(x), cg(x)
    assert a.data_ptr() != b.data_ptr()
    freed = a.data_ptr()
    del a
    c = cg(x)
    assert c.data_ptr() == freed  # no one held it: reused
    held = c.data_ptr()
    view, alias, storage = c.numpy(), c[1:], c.untyped_storage()
    del c
    for _ in (view, alias, storage):  # each of them keeps the memory
        d = cg(x * 3)
        assert d.data_ptr() != held and d.data_ptr() != b.data_ptr()
        np.testing.assert_array_equal(view, (x * 2).numpy())
    np.testing.assert_array_equal(b.numpy(), (x * 2).numpy())


@pytest.mark.parametrize("a_shape,transpose", [((1, 1, 1), False), ((4, 3, 5), False),
                                               ((40, 30, 50), False), ((30, 40, 50), True)])
def test_matmul_result_returned_with_its_views(a_shape, transpose):
    """A matmul kernel exporting C and views of it writes every output (a reshape of C was
    left unwritten); a Linear on a 3-D input is one product of batch·rows rows."""
    a = graphc.randn(*a_shape)
    a = a.transpose(0, 1) if transpose else a
    w = graphc.randn(60, a_shape[-1])
    fn = lambda a, w: (F.linear(a, w).reshape(-1), F.linear(a, w), F.linear(a, w).mT)
    cg, got = compiled(fn, a, w)
    for g, e in zip(got, fn(a, w)):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)
    if a_shape == (40, 30, 50):
        assert "gemm 1200x60x50" in cg.dump("kernels")


def test_small_matmul_products_are_exact_before_the_sum():
    """inf + 1e30·1e30: -inf (an exact product, as BLAS's FMA gives), not inf - inf = nan."""
    a = graphc.from_numpy(np.array([[-np.inf, 1e30]], np.float32))
    b = graphc.from_numpy(np.array([[1.0], [1e30]], np.float32))
    _, got = compiled(lambda a, b: a @ b, a, b)
    assert got.numpy()[0, 0] == -np.inf


def test_matmul_of_a_reshape_that_needs_a_copy_copies_natively():
    """ctx.transpose(1, 2).reshape(b, s, d) @ w (attention's output projection): the
    operand is copied into scratch inside the kernel, not run through numpy."""
    ctx, w = graphc.randn(2, 4, 16, 8), graphc.randn(20, 32)
    fn = lambda ctx, w: F.relu(F.linear(ctx.transpose(1, 2).reshape(2, 16, 32), w))
    cg, got = compiled(fn, ctx, w)
    assert not cg.last.program.fallbacks, cg.explain()
    np.testing.assert_allclose(got.numpy(), fn(ctx, w).numpy(), rtol=1e-5, atol=1e-5)


def test_conv_net_compiles_without_fallbacks():
    """conv2d is pad + unfold (im2col) + matmul: copy kernels and BLAS, nothing in numpy."""
    nn = graphc.nn
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 4, 3, stride=2, dilation=2)).eval()
    x = graphc.randn(2, 3, 20, 20)
    with graphc.no_grad():
        cg, got = compiled(model, x)
        expected = model(x)
    assert not cg.last.program.fallbacks, cg.explain()
    assert "copy" in cg.explain()
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.bool_])
def test_pad_and_unfold_of_strided_inputs(dtype):
    x = graphc.from_numpy((np.arange(2 * 3 * 9 * 7) % 5).astype(dtype).reshape(2, 3, 9, 7))
    x = x.permute(0, 1, 3, 2)[:, ::-1]  # transposed and negative-step
    for fn in (lambda x: F.pad(x, (1, 2, 0, 3), value=1),
               lambda x: F.unfold(x, kernel_size=(2, 3), dilation=(2, 1), stride=(1, 2))):
        try:
            expected = fn(x)
        except graphc.DTypeError:  # unfold refuses bool in eager mode too
            continue
        cg, got = compiled(fn, x)
        assert not cg.last.program.fallbacks, cg.explain()
        assert same_bits(got.numpy(), expected.numpy())


def test_outputs_share_memory_only_where_eager_results_do():
    """Passes merge x.exp() twice (CSE) and simplify clone(x) and 1 * x to x; the results
    still do not share memory with each other or the input, where eager's do not."""
    x = graphc.randn(4)
    fn = lambda x: (x.exp(), x.exp(), x.view(2, 2), x, x.clone(), 1 * x)
    _, (a, b, view, same, cloned, times_one) = compiled(fn, x)
    pointers = [t.data_ptr() for t in (a, b, cloned, times_one)]
    assert len(set(pointers)) == 4 and x.data_ptr() not in pointers
    assert view.data_ptr() == x.data_ptr() and same is x  # as eager: a view, the input itself
    expected = fn(x)
    for got, want in zip((a, b), expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)  # exp: within an ulp
    for got, want in zip((view, cloned, times_one), expected[2:3] + expected[4:]):
        assert same_bits(got.numpy(), want.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("exponent", ["python float", "0-d", "(1,)", "(6,)"])
def test_pow_one_half_of_minus_inf_and_minus_zero_is_cs_pow(dtype, exponent):
    """Found by the fuzzer (tests/fuzz_repros/pow_one_half_of_minus_inf.json): numpy
    computes a one-element exponent of 0.5 as sqrt, so eager gave pow(-inf, 0.5) = nan and
    pow(-0.0, 0.5) = -0.0 where the compiled code (C's pow) gives inf and +0.0, and eager
    itself gave inf for a longer exponent. Eager now follows C's pow whatever the size."""
    x = graphc.from_numpy(np.array([-np.inf, -0.0, 0.0, 4.0, -1.0, np.nan], dtype))
    want = np.array([np.inf, 0.0, 0.0, 2.0, np.nan, np.nan], dtype)
    if exponent == "python float":
        fn, inputs = (lambda x: x ** 0.5), (x,)
    else:
        shape = {"0-d": (), "(1,)": (1,), "(6,)": (6,)}[exponent]
        fn, inputs = (lambda x, e: x ** e), (x, graphc.from_numpy(np.full(shape, 0.5, dtype)))
    _, got = compiled(fn, *inputs)
    for result in (fn(*inputs).numpy(), got.numpy()):
        np.testing.assert_array_equal(result, want)  # nan where want has nan
        assert (np.signbit(result) == np.signbit(want))[:4].all(), result  # +0.0, not -0.0


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 4)], ids=str)
def test_a_view_computed_by_one_kernel_and_read_by_another(shape):
    """Found by the fuzzer (tests/fuzz_repros/view_read_by_two_kernels.json): the
    unsqueeze joined floor's kernel, which then merged into softmax's row kernel; the
    masked_fill kernel, built first, copied the unsqueeze in as an input view and erased
    it, so building the softmax kernel raised ValueError (unsqueeze is not in list)."""
    x = graphc.from_numpy(np.arange(np.prod(shape), dtype=np.float64).reshape(shape) * 0.7 - 1)

    def fn(x):
        y = graphc.floor(x)
        return y.unsqueeze(0).masked_fill(y.all(dim=(-3,)), 0.0), F.softmax(y, dim=-1)

    cg, got = compiled(fn, x)
    for g, e in zip(got, fn(x)):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-12)


def test_elementwise_work_with_a_reshape_stays_out_of_a_row_kernel():
    """A kernel holding a reshape merged into a row reduction's kernel, which the backend
    cannot lower: the whole kernel ran in numpy. Now they stay two native kernels."""
    x = graphc.from_numpy(np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3))
    y = graphc.from_numpy(np.linspace(-1, 1, 6, dtype=np.float32))
    fn = lambda x, y: y.amax(-1, keepdim=True) - graphc.floor(x).reshape(6) * 2.0
    cg, got = compiled(fn, x, y)
    assert not cg.last.program.fallbacks, cg.explain()
    assert same_bits(got.numpy(), fn(x, y).numpy())


@pytest.mark.parametrize("reader", ["as_strided", "view"])
@pytest.mark.parametrize("copy", ["clone", "times one", "double negation", "same-dtype cast"])
def test_views_read_the_layout_of_a_copy_the_passes_keep(copy, reader):
    """Found by the fuzzer (tests/fuzz_repros/as_strided_of_a_simplified_clone.json and
    view_of_a_simplified_clone.json): simplify replaced clone(x) by x, so as_strided with an
    absolute offset addressed the storage of the expanded x instead of the clone's, and
    view(-1) met x's transposed strides instead of the clone's contiguous ones: compiling
    raised OpIndexError or ShapeError. A copy a layout-reading view reads now stays."""
    make = {"clone": lambda v: v.clone(), "times one": lambda v: v * 1,
            "double negation": lambda v: graphc.neg(graphc.neg(v)),
            "same-dtype cast": lambda v: dispatch(OPS.cast, v, dtype=graphc.float64)}
    if reader == "as_strided":
        x = graphc.tensor(2.0, dtype=graphc.float64)
        fn = lambda x: dispatch(OPS.as_strided, make[copy](x.expand(3, 4)), size=(2, 3),
                                stride=(1, 2), storage_offset=5)
    else:
        x = graphc.arange(12, dtype=graphc.float64).reshape(3, 4).T
        fn = lambda x: make[copy](x).view(-1)
    _, got = compiled(fn, x)
    assert same_bits(got.numpy(), fn(x).numpy())


@pytest.mark.parametrize("shape, fn", [
    ((3, 3), lambda x: x + x.sum(1)),            # (3,) broadcasts along dim 1: column sums
    ((4, 4), lambda x: x * x.amax(-1).exp()),
    ((3, 3, 3), lambda x: x - x.mean(-1)),        # (3, 3) against (3, 3, 3): trailing dims
])
def test_a_reduced_value_without_keepdim_broadcasts_along_the_trailing_dims(shape, fn):
    """Found by tests/codegen/test_random_compiled.py: x + x.sum(1) on a square x was fused
    into a row kernel that added each row's own sum, but numpy broadcasting lines the
    (3,) result up with the last dim, so element (i, j) gets the sum of row j."""
    x = graphc.randn(*shape)
    _, got = compiled(fn, x)
    np.testing.assert_allclose(got.numpy(), fn(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["as_strided of as_strided", "through a transpose",
                                  "of a sliced input"])
def test_as_strided_of_a_view_made_by_as_strided_addresses_the_same_storage(case):
    """Found by the fuzzer (tests/fuzz_repros/as_strided_of_as_strided.json): the program
    keeps a copy of a view it makes in numpy (as_strided), and a second as_strided of it
    addressed the copy's storage instead of the input's, as eager does: wrong values."""
    x = graphc.from_numpy((np.arange(10) % 3).astype(np.float32))

    def strided(t, size, stride, offset):
        return dispatch(OPS.as_strided, t, size=size, stride=stride, storage_offset=offset)

    fn = {"as_strided of as_strided":
          lambda x: strided(strided(x, (3, 3), (3, 1), 1), (2, 1), (1, 2), 6),
          "through a transpose": lambda x: strided(strided(x, (3, 3), (3, 1), 1).T, (2, 2), (1, 3), 2),
          "of a sliced input": lambda x: strided(strided(x[1:], (2, 2), (2, 1), 3), (3,), (2,), 4)}[case]
    cg, got = compiled(fn, x)
    assert same_bits(got.numpy(), fn(x).numpy())
    assert same_bits(cg(x).numpy(), fn(x).numpy())  # a second call: views made again


@pytest.mark.parametrize("layout", ["transposed", "expanded"])
def test_a_view_the_inputs_strides_allow_compiles(layout):
    """Found by the fuzzer (tests/fuzz_repros/view_of_an_expanded_input.json): the passes'
    shape propagation gave placeholders contiguous strides, so x.T.view(-1), valid for a
    transposed (or stride-0) x, raised ShapeError while compiling."""
    base = graphc.from_numpy(np.arange(6, dtype=np.float32))
    x = base.reshape(2, 3).T if layout == "transposed" else base[:1].reshape(1, 1).expand(3, 2)
    fn = lambda x: x.T.view(-1) * 2.0
    _, got = compiled(fn, x)
    assert same_bits(got.numpy(), fn(x).numpy())


NORM_DATA = {  # (mean, std): rows far from zero relative to their spread
    "offset 1e4, std 0.01": (1e4, 1e-2), "offset 1e6, std 1": (1e6, 1.0),
    "offset -300, std 0.1": (-300.0, 0.1), "centred": (0.0, 1.0)}


@pytest.mark.parametrize("case", list(NORM_DATA))
def test_layer_and_group_norm_keep_the_digits_of_data_far_from_zero(case):
    # the compiled statistics are one float64 pass (x - x0); x - mean rounded to float32
    # before the subtraction used to lose the data's digits (4% off for offset 1e4)
    mean, std = NORM_DATA[case]
    v = np.random.default_rng(0).normal(mean, std, (8, 4, 256))
    x = graphc.from_numpy(v.astype(np.float32))
    xd = x.numpy().astype(np.float64)

    def reference(block):
        return (block - block.mean(-1, keepdims=True)) / np.sqrt(block.var(-1, keepdims=True) + 1e-5)
    _, got = compiled(lambda x: F.layer_norm(x, (256,), eps=1e-5), x)
    assert np.abs(got.numpy() - reference(xd)).max() < 2e-6
    _, got = compiled(lambda x: F.group_norm(x, 2, eps=1e-5), x)
    want = reference(xd.reshape(8, 2, -1)).reshape(xd.shape)
    assert np.abs(got.numpy() - want).max() < 2e-6


def test_float32_layer_norm_statistics_take_one_pass():
    x = graphc.randn(64, 512)
    cg, _ = compiled(lambda x: F.layer_norm(x, (512,)), x)
    [(_, kernel)] = cg.last.program.kernels
    text = kernel.format()
    assert text.count("reduce over") == 1 and text.count("sum=") == 2


def test_a_float32_sum_in_blocks_is_vectorized_once():
    # the loop over a row's blocks stays a loop: unrolled, LLVM vectorized each copy of the
    # block loop (softmax's exp 8 times): W2 compiled cold in 118 ms, now about 76. The max
    # and divide loops vectorize too; whether a loop is left after that depends on the
    # width (with 16 lanes LLVM unrolls them fully), so the vector loops counted are exp's
    import re

    from graphc.codegen.target import describe, emit_assembly

    x = graphc.randn(8, 1024)
    cg = compile_graph(graphc.trace(lambda x: F.softmax(x, -1), x), x, dump=True)
    optimized = {None: cg.dump("llvm_opt")}
    if X86:  # and AVX-512's 16 lanes, read (not run) on any x86 host
        avx512 = describe("skylake-avx512", vector_width="512")
        optimized[avx512] = emit_assembly(cg.dump("llvm"), avx512)[0]
    for target, ir in optimized.items():
        n = lanes(np.float32, target)
        assert '!"llvm.loop.unroll.disable"' in ir
        blocks = re.split(r"\n(?=[\w.]+:)", ir)
        exp_loops = [b for b in blocks if re.match(r"vector\.body\d*:", b) and "@llvm.fma.v" in b]
        assert len(exp_loops) == 1, (target, [b.partition(":")[0] for b in exp_loops])
        assert re.search(rf"@llvm\.maxnum\.v{n}f32", ir) and re.search(rf"fdiv [\w ]*<{n} x float>", ir)
    assert np.allclose(cg(x).numpy(), F.softmax(x, -1).numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [graphc.float32, graphc.float64])
@pytest.mark.parametrize("name", ["exp", "expm1", "sigmoid", "tanh", "erf", "silu", "gelu",
                                  "softmax", "log_softmax", "logsumexp"])
def test_a_nan_llvm_can_see_stays_nan_through_exp(name, dtype):
    # exp's 2^n factor came from fptosi(nan), which is poison: with the nan a constant of
    # the module (or 0/0 over an empty dim) LLVM folded the result to 0 (fuzz, seed 12)
    ops = {"softmax": lambda t: F.softmax(t, 0), "log_softmax": lambda t: F.log_softmax(t, 0),
           "logsumexp": lambda t: graphc.logsumexp(t, 0, keepdim=True), "gelu": F.gelu}
    op = ops[name] if name in ops else getattr(graphc, name)
    x = graphc.tensor([1.5], dtype=dtype)
    for fn in (lambda t: op(t + math.nan), lambda t: op(graphc.maximum(t, math.nan)),
               lambda t: op(t[:0].var(0, correction=0).expand(1))):
        _, got = compiled(fn, x)
        assert np.isnan(got.numpy()).all(), (name, got, fn(x))


@pytest.mark.parametrize("dtype", [graphc.float32, graphc.float64, graphc.int32])
@pytest.mark.parametrize("case", ["transpose", "permute3d", "broadcast", "twice", "odd",
                                  "contiguous"])
def test_transposed_reads_are_tiled_and_match(case, dtype):
    # an access that walks the two innermost dims in the other order is read in 16 x 16
    # tiles (x.t() * 2 on 4096 x 1024 float32: 17 ms row by row)
    shapes = {"transpose": (64, 48), "permute3d": (3, 32, 64), "broadcast": (32, 64),
              "twice": (48, 32), "odd": (40, 24), "contiguous": (64, 48)}
    fns = {"transpose": lambda x, y: x.t() * 2 + 1,
           "permute3d": lambda x, y: x.permute(0, 2, 1).exp() if x.dtype.is_floating_point
           else x.permute(0, 2, 1) - 1,
           "broadcast": lambda x, y: x.t() + y[:, None],
           "twice": lambda x, y: x.t() - x.t().t().t(),
           "odd": lambda x, y: x.t() * 3,  # 24 is not a multiple of 16: row by row
           "contiguous": lambda x, y: x * 2 + y}
    x = graphc.from_numpy((np.random.default_rng(0).standard_normal(shapes[case]) * 4)
                          .astype(dtype.np))
    y = graphc.arange(float(shapes[case][-1])).to(dtype)
    cg, got = compiled(fns[case], x, y)
    want = fns[case](x, y)
    assert got.shape == want.shape and got.dtype is want.dtype
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)
    tiled = "for i0i in 0..16" in cg.dump("kernels") or "for i1i in 0..16" in cg.dump("kernels")
    assert tiled == (case not in ("odd", "contiguous")), cg.dump("kernels")


@pytest.mark.parametrize("fn, shape, granule", [
    (lambda x: F.softmax(x, -1), (64, 8192), 1),    # 64 long rows: 2 chunks of 32, not 1 of 64
    (lambda x: F.softmax(x, -1), (256, 512), 16),   # short rows: chunks of 16 rows
    (lambda x: x.t() * 2, (1024, 1024), 1),         # 64 rows of tiles, each 16 rows long
    (lambda x: x * 2 + 1, (1 << 18,), 64),          # a flat loop: chunks of whole lines
])
def test_thread_chunks_round_to_lines_only_for_flat_loops(monkeypatch, fn, shape, granule):
    import re

    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    x = graphc.randn(*shape)
    cg = compile_graph(graphc.trace(fn, x), x, dump=True)
    calls = re.findall(r"call i32 @\S*graphc_pool_run\S*\(.*, i64 (\d+), i64 2, i64 (\d+)\)",
                       cg.dump("llvm"))
    assert calls and all(int(g) == granule for _, g in calls), calls
    np.testing.assert_allclose(cg(x).numpy(), fn(x).numpy(), rtol=1e-6, atol=1e-7)


def test_a_matmul_kernel_with_two_outputs_keeps_its_product_apart_from_them():
    """A matmul not exported by its kernel put its product into the kernel's first output
    when that had its size; the epilogue then stored that output (another value) before
    reading the product for the second output (found by the fuzzer's --grad mode, in a
    backward program)."""
    f64 = graphc.float64

    def g(v0, v1, t):
        r = v0.reciprocal()
        a = t.reshape(1, 1) @ v1.unsqueeze(1).permute(1, 0)
        b = r.unsqueeze(0).permute(1, 0) @ t.reshape(1, 1)
        return -a.squeeze(-2) * r * r, b.squeeze(-1)

    args = (graphc.tensor([1.0], dtype=f64), graphc.tensor([0.0], dtype=f64),
            graphc.tensor(1.0, dtype=f64))
    with graphc.no_grad():
        got, want = graphc.compile(g)(*args), g(*args)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _batch_norm_sums(x):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    centred = x - mean
    return mean, (centred * centred).sum(dim=(0, 2, 3)), x.amax(dim=(0, 3))


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 5, 1, 33), (1, 2, 3, 1), (3, 1, 4, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reductions_over_the_innermost_and_outer_dims_keep_their_sums_in_registers(shape, dtype):
    """Reducing (N, C, H, W) over (0, 2, 3) (batch_norm's statistics): the kept channel is
    the outer loop and each channel's values are summed in registers (a Reduce), not into
    a buffer element per channel in the innermost loop; where the innermost dim is kept,
    the sums go into memory in memory order (x.sum(0))."""
    x = graphc.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(dtype))
    x[0, 0, 0, 0] = -np.inf if shape[0] > 1 else 0.0
    cg, got = compiled(_batch_norm_sums, x)
    ir = cg.dump("kernels")
    if shape[-1] > 1:
        assert "] sum=" not in ir and "] max=" not in ir, ir
    for a, b in zip(got, _batch_norm_sums(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6 if dtype == np.float32 else 1e-12)
    cg, got = compiled(lambda t: t.sum(0), x)
    assert "] sum=" in cg.dump("kernels") or shape[0] == 1
    np.testing.assert_allclose(got.numpy(), x.sum(0).numpy(), rtol=1e-6, atol=1e-6)


def test_batch_norm_statistics_over_changing_batch_sizes():
    fn = graphc.compile(lambda t: _batch_norm_sums(t)[:2], dynamic=True)
    rng = np.random.default_rng(1)
    for n in (3, 5, 8):
        x = graphc.from_numpy(rng.standard_normal((n, 4, 6, 7)).astype(np.float32))
        with graphc.no_grad():
            got = fn(x)
        for a, b in zip(got, _batch_norm_sums(x)):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_an_elementwise_kernel_reading_a_reshaped_slice_runs_natively():
    """A reshape no strides express (merging the dims of a slice) inside an elementwise
    kernel: the slice is copied into scratch first, and the kernel runs natively (it fell
    back to numpy: max-pool's backward in a training program)."""
    def fn(x, y):
        inner = x[:, :, 1:-1, 1:-1]
        return inner.reshape(2, 3, 1, 16) * y + 1

    x, y = graphc.randn(2, 3, 6, 6), graphc.randn(2, 3, 4, 16)
    cg, got = compiled(fn, x, y)
    assert not cg.last.program.fallbacks, cg.explain()
    np.testing.assert_array_equal(got.numpy(), fn(x, y).numpy())


def _gathers(x, i, j):
    return (graphc.gather(x, 1, i) * 2, graphc.index_select(x.t(), 0, j) + 1,
            F.embedding(i, x), F.cross_entropy(x, j % 5))


@pytest.mark.parametrize("index_dtype", [graphc.int64, graphc.int32])
def test_gathers_run_natively_and_name_an_index_out_of_range(index_dtype):
    """gather, index_select and embedding are copy kernels that load each index, check it
    against its dim and copy the element (they ran in numpy); an index out of range is
    the eager error, with the op and the user's line."""
    rng = np.random.default_rng(0)
    x = graphc.from_numpy(rng.standard_normal((5, 7)).astype(np.float32))
    i = graphc.from_numpy(rng.integers(0, 5, (5, 3))).to(index_dtype)
    j = graphc.tensor([6, 0, 3, 3, 1]).to(index_dtype)
    cg, got = compiled(_gathers, x, i, j)
    assert not cg.last.program.fallbacks, cg.explain()
    for a, b in zip(got, _gathers(x, i, j)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    for bad in (graphc.full((5, 3), 7, dtype=index_dtype), graphc.full((5, 3), -1, dtype=index_dtype)):
        with pytest.raises(graphc.OpIndexError, match=r"gather: .*out of bounds for dim 1 with "
                                                      r"size 7 at test_backend_regressions"):
            cg(x, bad, j)


def test_gathers_over_changing_sizes():
    fn = graphc.compile(lambda x, i: graphc.gather(x, 1, i) + graphc.index_select(x, 1, i[0]),
                        dynamic=True)
    rng = np.random.default_rng(1)
    for n in (3, 6, 9):
        x = graphc.from_numpy(rng.standard_normal((n, n)).astype(np.float32))
        i = graphc.from_numpy(rng.integers(0, n, (n, n)))
        with graphc.no_grad():
            got = fn(x, i)
        want = graphc.gather(x, 1, i) + graphc.index_select(x, 1, i[0])
        np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("pad", [(1, 2, 0, 1), (0, 0, 3, 0), (2, 2, 2, 2, 1, 0), (0, 1)])
def test_pad_writes_each_element_once(pad):
    """pad fills only its border (boxes that do not overlap) and copies the inside: no
    fill of the whole output first (max-pool's and conv's backward pads were two passes)."""
    x = graphc.randn(2, 3, 4, 5)
    fn = lambda t: F.pad(t, pad, value=-7.0)  # noqa: E731
    cg, got = compiled(fn, x)
    np.testing.assert_array_equal(got.numpy(), fn(x).numpy())
    kernel = cg.last.program.kernels[0][1]
    written = sum(numel_of(loop) for loop in kernel.body)
    assert written == got.numel(), cg.dump("kernels")


def numel_of(stmt) -> int:
    """Elements a loop nest of stores writes."""
    from graphc.codegen.kernel_ir import Loop

    if isinstance(stmt, Loop):
        return stmt.var.extent * sum(numel_of(s) for s in stmt.body)
    return 1
