"""Functionalization: compiled programs that write (in-place ops, writes through views,
writes to inputs and buffers) give eager's outputs and leave eager's inputs behind."""

import numpy as np
import pytest

import graphc
from graphc import nn
from graphc.passes import functionalize, is_functional
from graphc.tensor import tensors_in


def _issue_f(x, unused):
    y = x * 2 - 1
    y.relu_()
    y += x * 0.5
    return y * 2 - 1


def _issue_g(x, y):
    t = x + y
    x.add_(y)
    return t - x


def _issue_h(x, y):
    t = x - x
    t.add_(y)
    t.add_(y)
    return t


def _issue_k(x, y):
    t = y * x
    y.sub_(t.t())
    y.add_(t)
    return x


def _slice_write(x, y):
    z = x * 1
    z[:, 0] = y[:, 1]
    z[1:, 1:] += 1
    return z.sum(1), z


def _view_chain_write(x, y):
    z = x + 0
    v = z.view(-1)
    t = z.t()
    v.mul_(2)          # through a view made before the reads below
    t[0].add_(y[0])    # a select of a transpose
    return z, t, v * 1


def _select_row_write(x, y):
    z = x.clone()
    z[0] = 5.0
    z[-1].fill_(y.sum())
    return z


def _write_into_input_view(x, y):
    x[1:].mul_(3)
    x.t()[0] = y[0]
    return x[0] + 1


def _write_input_return_it(x, y):
    x.add_(y)
    return x


def _return_view_of_written_input(x, y):
    x.mul_(2)
    return x[1:], x.t()


def _read_before_and_after(x, y):
    a = x.exp()
    x.copy_(y)
    b = x.exp()
    x.zero_()
    return a, b, x.sum()


def _masked_and_index_put(x, y):
    z = x.clone()
    z.masked_fill_(z > 0, 0.0)
    z[graphc.tensor([0, 2])] = y[:2]
    z[z < -1] = -1.0
    return z


def _index_put_accumulate_into_input(x, y):
    x[graphc.tensor([1, 0])] += y[:2]
    return x * 1


def _broadcast_and_cast_copy(x, y):
    z = graphc.zeros(3, 3, dtype=graphc.int64)
    z.copy_(x[0] * 10)   # broadcast a row and truncate to integers
    w = x.clone()
    w.copy_(y[:, :1])
    return z, w


def _squeeze_unsqueeze_write(x, y):
    z = x.clone().unsqueeze(0)
    z.squeeze(0)[1].sub_(1)
    z[0, :, 2:] = 7.0
    return z


def _chained_inplace(x, y):
    z = x * 1
    z.add_(1).mul_(2).clamp_(min=0.5)
    return z


def _step_slice_write(x, y):
    z = x * 1
    z[::2, ::-1] = y[:2] * 10
    return z


def _copy_from_own_transpose(x, y):
    x.copy_(x.t())          # overlapping source and destination
    y[1:] = y[:-1] * 2      # a shifted copy of itself
    y.copy_(y)
    return x, y


# programs whose compiled form still has numpy steps: integer index tensors (index,
# index_put) and a reshape of a transposed value inside a fused kernel
WITH_NUMPY_STEPS = {"_masked_and_index_put", "_index_put_accumulate_into_input",
                    "_view_chain_write"}

PROGRAMS = [_issue_f, _issue_g, _issue_h, _issue_k, _slice_write, _view_chain_write,
            _select_row_write, _write_into_input_view, _write_input_return_it,
            _return_view_of_written_input, _read_before_and_after, _masked_and_index_put,
            _index_put_accumulate_into_input, _broadcast_and_cast_copy, _squeeze_unsqueeze_write,
            _chained_inplace, _step_slice_write, _copy_from_own_transpose]


def _inputs(layout: str, dtype=graphc.float32):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 3)) * 2
    b = rng.standard_normal((3, 3)) * 2
    if layout == "transposed":
        return (graphc.tensor(a, dtype=dtype).t(), graphc.tensor(b, dtype=dtype).t())
    if layout == "sliced":
        big = graphc.tensor(np.pad(a, ((0, 2), (1, 2))), dtype=dtype)
        return (big[:3, 1:4], graphc.tensor(b, dtype=dtype))
    return (graphc.tensor(a, dtype=dtype), graphc.tensor(b, dtype=dtype))


def _clone_like(t):
    """A copy with the same strides (a transposed input stays transposed)."""
    if t.is_contiguous():
        return t.clone()
    if t.t().is_contiguous():
        return t.t().clone().t()
    out = graphc.zeros(t.shape[0] + 2, t.shape[1] + 3, dtype=t.dtype)[:t.shape[0], 1:t.shape[1] + 1]
    out.copy_(t)
    return out


def _assert_same(actual, expected, what):
    a, e = tensors_in(actual), tensors_in(expected)
    assert len(a) == len(e), what
    for i, (x, y) in enumerate(zip(a, e)):
        assert tuple(x.shape) == tuple(y.shape) and x.dtype is y.dtype, f"{what} {i}"
        np.testing.assert_allclose(x.detach().numpy(), y.detach().numpy(), rtol=1e-6, atol=1e-6,
                                   err_msg=f"{what} {i}")


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced"])
@pytest.mark.parametrize("fn", PROGRAMS, ids=lambda f: f.__name__.strip("_"))
def test_compiled_writes_give_eagers_outputs_and_inputs(fn, layout):
    inputs = _inputs(layout)
    eager_in = tuple(_clone_like(t) for t in inputs)
    compiled_in = tuple(_clone_like(t) for t in inputs)
    traced_in = tuple(_clone_like(t) for t in inputs)
    with graphc.no_grad():
        expected = fn(*eager_in)
        compiled = graphc.compile(fn, fullgraph=fn.__name__ not in WITH_NUMPY_STEPS)
        actual = compiled(*compiled_in)
        gm = graphc.trace(fn, *traced_in)
        traced = gm(*tuple(_clone_like(t) for t in inputs))
    assert not compiled.eager_runs
    _assert_same(actual, expected, "output")
    _assert_same(compiled_in, eager_in, "input after the call")
    _assert_same(traced, expected, "traced output")
    # the same program again (cached) on fresh inputs
    again_in = tuple(_clone_like(t) for t in inputs)
    with graphc.no_grad():
        _assert_same(compiled(*again_in), expected, "second call's output")
    _assert_same(again_in, eager_in, "second call's input")


@pytest.mark.parametrize("fn", PROGRAMS, ids=lambda f: f.__name__.strip("_"))
def test_the_functional_graph_is_pure_and_lints(fn):
    x, y = _inputs("contiguous")
    gm = graphc.trace(fn, x, y)
    assert functionalize(gm) is True
    gm.graph.lint(gm)
    assert is_functional(gm.graph)
    assert functionalize(gm) is False  # idempotent: copy-backs stay as they are
    a, b = _inputs("contiguous")
    e1, e2 = _inputs("contiguous")
    with graphc.no_grad():
        _assert_same(gm(a, b), fn(e1, e2), "functional graph's output")
    _assert_same((a, b), (e1, e2), "functional graph's inputs")


def test_returned_views_of_written_inputs_share_the_input_memory():
    def fn(x):
        x.mul_(2)
        return x, x[1:], x.t()

    x = graphc.arange(6.).reshape(2, 3)
    with graphc.no_grad():
        out, tail, t = graphc.compile(fn, fullgraph=True)(x)
    assert out is x
    assert tail._storage is x._storage and t._storage is x._storage
    np.testing.assert_array_equal(x.numpy(), np.arange(6.).reshape(2, 3) * 2)
    before = x._version
    tail.add_(1)  # a write through the returned view changes the input, as in eager
    assert x._version > before
    np.testing.assert_array_equal(x.numpy()[1], np.array([6, 8, 10]) + 1)


def test_a_resnet_block_with_inplace_relu_and_residual_add():
    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(c)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(c)

        def forward(self, x):
            identity = x
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += identity
            return self.relu(out)

    graphc.manual_seed(0)
    block = Block(8)
    for m in (block.bn1, block.bn2):  # statistics far from the defaults, so mistakes show
        m.running_mean.copy_(graphc.randn(8) * 0.3)
        m.running_var.copy_(graphc.rand(8) + 0.5)
    block.eval()
    x = graphc.randn(2, 8, 10, 10)
    with graphc.no_grad():
        expected = block(x.clone())
        compiled = graphc.compile(block, fullgraph=True, check=True)
        actual = compiled(x.clone())
    assert not compiled.compiled.eager_runs
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)
    assert float(expected.min()) == 0.0  # the ReLUs did clip


def _twin_batchnorm_models(seed: int):
    """Two equal training-mode models whose BatchNorm writes its running statistics."""
    graphc.manual_seed(seed)
    eager = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(inplace=True))
    copy = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(inplace=True))
    copy.load_state_dict(eager.state_dict())
    return eager, copy


def test_training_batchnorm_updates_its_buffers_like_eager():
    eager, copy = _twin_batchnorm_models(1)
    compiled = graphc.compile(copy, fullgraph=True)
    for step in range(3):
        x = graphc.randn(5, 4)
        with graphc.no_grad():
            _assert_same(compiled(x.clone()), eager(x.clone()), f"step {step}")
    for (name, a), (_, b) in zip(eager.named_buffers(), copy.named_buffers()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    assert not compiled.compiled.eager_runs


def test_writes_into_a_global_tensor_compile_and_persist_as_in_eager():
    """A global tensor is state the program reads live: its writes are copied back."""
    state = graphc.zeros(3)

    def fn(x):
        state.add_(x)
        return state * 1

    compiled = graphc.compile(fn, fullgraph=True)
    with graphc.no_grad():
        first = compiled(graphc.ones(3))
        second = compiled(graphc.ones(3))
    np.testing.assert_array_equal(first.numpy(), [1, 1, 1])
    np.testing.assert_array_equal(second.numpy(), [2, 2, 2])
    np.testing.assert_array_equal(state.numpy(), [2, 2, 2])
    assert not compiled.eager_runs


def test_writes_into_a_constant_the_function_makes_run_eagerly_with_a_reason():
    def fn(x):
        t = graphc.tensor([1.0, 2.0, 3.0])
        t.add_(x)
        return t * 1

    compiled = graphc.compile(fn)
    with graphc.no_grad(), pytest.warns(UserWarning, match="writes into a constant"):
        first = compiled(graphc.ones(3))
    with graphc.no_grad():
        second = compiled(graphc.ones(3))
    np.testing.assert_array_equal(first.numpy(), [2, 3, 4])
    np.testing.assert_array_equal(second.numpy(), [2, 3, 4])
    with pytest.raises(graphc.compiler.CaptureError, match="writes into a constant"):
        with graphc.no_grad():
            graphc.compile(fn, fullgraph=True)(graphc.ones(3))


def test_check_mode_names_a_write_applied_in_the_wrong_order(monkeypatch):
    """With reads that ignore earlier writes (as fusion did before functionalization: a
    read scheduled before the write), the first call raises a CheckError instead of
    returning a wrong result, and the caller's inputs are left as they were."""
    from graphc.passes.functionalize import _Functionalizer

    monkeypatch.setattr(_Functionalizer, "read", lambda self, v: self.resolve(v)
                        if isinstance(v, graphc.ir.Node) else v)
    x, y = _inputs("contiguous")
    before = (x.clone(), y.clone())
    with graphc.no_grad(), pytest.raises(graphc.compiler.CheckError, match="differs from eager"):
        graphc.compile(_issue_g, check=True)(x, y)
    _assert_same((x, y), before, "inputs after a failed check")


def test_check_mode_leaves_inputs_and_buffers_written_once():
    eager, copy = _twin_batchnorm_models(2)
    compiled = graphc.compile(copy, check=True)
    x = graphc.randn(5, 4)
    a, b = x.clone(), x.clone()
    with graphc.no_grad():
        _assert_same(compiled(a), eager(b), "output")
    assert copy[1].num_batches_tracked.item() == 1
    for (name, t), (_, u) in zip(eager.named_buffers(), copy.named_buffers()):
        np.testing.assert_allclose(u.numpy(), t.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    with graphc.no_grad():
        z = graphc.arange(6.)
        graphc.compile(lambda t: t.mul_(2), check=True)(z)
    np.testing.assert_array_equal(z.numpy(), np.arange(6.) * 2)  # doubled once, not thrice


@pytest.mark.parametrize("alias", ["same tensor", "overlapping views", "transpose"])
def test_arguments_sharing_memory_with_a_written_one_give_eagers_result(alias):
    def fn(x, y):
        t = y * 1
        x.add_(1)
        return t + y

    def args():
        base = graphc.arange(16.).reshape(4, 4)
        if alias == "same tensor":
            return base, base
        if alias == "overlapping views":
            return base[1:], base[:3]
        return base, base.t()

    compiled = graphc.compile(fn)
    with graphc.no_grad():
        compiled(graphc.zeros(4, 4) if alias != "overlapping views" else graphc.zeros(3, 4),
                 graphc.ones(4, 4) if alias != "overlapping views" else graphc.ones(3, 4))
        e_args, c_args = args(), args()
        expected = fn(*e_args)
        with pytest.warns(UserWarning, match="shares memory"):
            got = compiled(*c_args)
    _assert_same(got, expected, "output")
    _assert_same(c_args, e_args, "arguments after")
    assert "shares memory with 'y'" in compiled.eager_runs[-1].reason


def test_disjoint_views_of_one_tensor_still_run_compiled():
    def fn(x, y):
        x.mul_(2)
        return y + 1

    base = graphc.arange(8.).reshape(2, 4)
    compiled = graphc.compile(fn)
    with graphc.no_grad():
        out = compiled(base[0], base[1])
    assert not compiled.eager_runs
    np.testing.assert_array_equal(base.numpy(), [[0, 2, 4, 6], [4, 5, 6, 7]])
    np.testing.assert_array_equal(out.numpy(), [5, 6, 7, 8])


def test_compiled_writes_bump_version_counters_as_eager_does():
    def fn(x):
        x.add_(1)
        x.mul_(2)
        return x * 1

    a, b = graphc.ones(3), graphc.ones(3)
    compiled = graphc.compile(fn)
    with graphc.no_grad():
        fn(a)
        compiled(b)
    assert b._version == a._version == 2
    # autograd notices a saved tensor written by a compiled call
    w = graphc.ones(3, requires_grad=True)
    saved = graphc.ones(3)
    y = (w * saved).sum()
    with graphc.no_grad():
        compiled(saved)
    with pytest.raises(RuntimeError, match="modified"):
        y.backward()


def test_a_custom_pass_list_without_functionalize_is_refused_for_a_writing_graph():
    from graphc.compiler import compile_graph
    from graphc.ir.graph import GraphError
    from graphc.passes import PassManager, dce

    x, y = _inputs("contiguous")
    gm = graphc.trace(_issue_g, x, y)
    with pytest.raises(GraphError, match="must start with graphc.passes.functionalize"):
        compile_graph(gm, x, y, passes=PassManager([dce]))
    pure = graphc.trace(lambda a: a * 2, x)
    np.testing.assert_array_equal(compile_graph(pure, x, passes=PassManager([dce]))(x).numpy(),
                                  (x * 2).numpy())


@pytest.mark.parametrize("fn", [_issue_k, _slice_write, _write_into_input_view,
                                _return_view_of_written_input, _chained_inplace],
                         ids=lambda f: f.__name__.strip("_"))
def test_writes_with_symbolic_sizes_serve_every_size_from_one_program(fn):
    compiled = graphc.compile(fn, dynamic=True)
    for n in (3, 5, 8):
        rng = np.random.default_rng(n)
        a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
        eager_in = (graphc.tensor(a, dtype=graphc.float32), graphc.tensor(b, dtype=graphc.float32))
        compiled_in = (graphc.tensor(a, dtype=graphc.float32), graphc.tensor(b, dtype=graphc.float32))
        with graphc.no_grad():
            _assert_same(compiled(*compiled_in), fn(*eager_in), f"output at size {n}")
        _assert_same(compiled_in, eager_in, f"inputs at size {n}")
    assert len(compiled.entries) == 1 and not compiled.eager_runs and not compiled.static_reasons


def test_a_kernel_stores_a_written_argument_in_place_only_where_that_is_safe():
    """x.relu_() compiles to one kernel writing x (no copy kernel). A kernel with several
    outputs stores one over x when every output reading x's old value is computed first
    (``with_old_value``: t + x, then x); where an output computed after x's new value is
    stored reads x's old value (``old_value_after``: x * 2 comes after x + 1), x's new
    value stays a copy after the kernel, and so does y's (one kernel, one decision)."""
    def alone(x):
        x.relu_()

    def with_old_value(x):
        t = x * 2
        x.add_(1)
        return t + x  # one kernel: t from x's old value, x's new value, their sum

    def old_value_after(x, y):
        a = x * 2
        x.add_(1)
        y.mul_(3)
        return a + y, x * y

    for fn, copies in ((alone, 0), (with_old_value, 0), (old_value_after, 2)):
        args = [graphc.randn(64, 32) for _ in range(fn.__code__.co_argcount)]
        copied = [t.clone() for t in args]
        compiled = graphc.compile(fn, fullgraph=True)
        with graphc.no_grad():
            _assert_same(compiled(*args), fn(*copied), f"{fn.__name__} output")
        for k, (a, b) in enumerate(zip(args, copied)):
            _assert_same(a, b, f"{fn.__name__} argument {k}")
        kinds = [k.kind for _, k in compiled.last.spec.program.kernels]
        assert kinds.count("copy") == copies, (fn.__name__, kinds)
        assert kinds.count("elementwise") == 1, (fn.__name__, kinds)


@pytest.mark.parametrize("aliasing", ["distinct", "same tensor", "overlapping views"])
def test_a_kernel_storing_two_arguments_in_place_is_eager_for_aliased_ones(aliasing):
    """An update writing two arguments (a momentum step) is one kernel storing over both;
    called with arguments that share memory it runs eagerly with the reason, as eager."""
    def update(p, m, g):
        m.mul_(0.9).add_(g)
        p.sub_(m * 0.1)
        return p

    def arguments(base, g):
        return {"distinct": (base[:4].clone(), base[4:].clone(), g),
                "same tensor": (base, base, g), "overlapping views": (base[:4], base[2:6], g)}[
                    aliasing]

    base, g = graphc.randn(8, 4), graphc.randn(4, 4) if aliasing != "same tensor" else None
    g = graphc.randn(8, 4) if g is None else g
    ref_base = base.clone()
    args, ref = arguments(base, g), arguments(ref_base, g.clone())
    compiled = graphc.compile(update)
    with graphc.no_grad():
        _assert_same(compiled(*args), update(*ref), "output")
    for k, (a, b) in enumerate(zip(args, ref)):
        _assert_same(a, b, f"argument {k}")
    if aliasing == "distinct":
        kinds = [k.kind for _, k in compiled.last.spec.program.kernels]
        assert kinds == ["elementwise"] and not compiled.eager_runs, kinds
    else:
        assert "shares memory" in compiled.eager_runs[0].reason


@pytest.mark.parametrize("dtype", [graphc.int32, graphc.float32, graphc.bool])
@pytest.mark.parametrize("value", [2.7, -2.7], ids=["number", "0-d tensor"])
def test_mask_writes_convert_the_value_to_the_tensors_dtype_first(dtype, value):
    def fn(x, m):
        x[m] = value if value > 0 else graphc.tensor(value)
        return x + 0

    mask = graphc.tensor(np.array([True, False, True, False]))
    a = graphc.tensor(np.array([1, -5, 3, 0]), dtype=dtype)
    b = a.clone()
    with graphc.no_grad():
        expected = fn(a, mask)
        got = graphc.compile(fn, fullgraph=True)(b, mask)
    _assert_same(got, expected, "output")
    _assert_same(b, a, "argument")


def test_an_argument_that_is_a_weight_the_program_reads_runs_eagerly():
    lin = nn.Linear(3, 3)

    class WritesItsInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            x.mul_(2)
            return self.lin(graphc.ones(1, 3))

    model = WritesItsInput()
    compiled = graphc.compile(model)
    with graphc.no_grad():
        compiled(graphc.ones(3, 3))  # compiled, with separate memory
        assert not compiled.compiled.eager_runs
        w_eager = lin.weight.clone()
        expected = WritesItsInput.forward(model, w_eager)  # eager on a copy of the weight
        lin_weight_before = lin.weight.clone()
        with pytest.warns(UserWarning, match="the weight lin.weight"):
            got = compiled(lin.weight)  # the weight itself as the argument
    w_after = lin_weight_before * 2
    _assert_same(lin.weight, w_after, "weight after")
    assert "the weight lin.weight" in compiled.compiled.eager_runs[-1].reason
    assert got.shape == expected.shape


class _BasicBlock(nn.Module):
    """A ResNet basic block as model files write it: in-place ReLU, in-place residual."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class _SmallResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.layers = nn.Sequential(_BasicBlock(8, 8, 1), _BasicBlock(8, 16, 2),
                                    _BasicBlock(16, 16, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x)))
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_a_small_resnet_compiles_whole_and_matches_eager(training):
    graphc.manual_seed(3)
    eager, twin = _SmallResNet(), _SmallResNet()
    twin.load_state_dict(eager.state_dict())
    for m in eager.modules():  # statistics away from the defaults, so a lost write shows
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(graphc.randn(m.num_features) * 0.2)
            m.running_var.copy_(graphc.rand(m.num_features) + 0.5)
    twin.load_state_dict(eager.state_dict())
    eager.train(training)
    twin.train(training)
    compiled = graphc.compile(twin, fullgraph=True)
    for step in range(2):
        x = graphc.randn(4, 3, 16, 16)
        with graphc.no_grad():
            want, got = eager(x.clone()), compiled(x.clone())
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=f"logits, step {step}")
    for (name, a), (_, b) in zip(eager.named_buffers(), twin.named_buffers()):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
    assert not compiled.compiled.eager_runs


def test_writes_through_as_strided_views_of_a_computed_value():
    def diagonal(x, y):
        z = x * 1
        z.as_strided((3,), (4,), 0).fill_(0.0)   # the diagonal of a 3 x 3
        z.view(-1).as_strided((2, 2), (3, 1), 1).mul_(y[:2, :2])
        return z, z.as_strided((3,), (4,), 0) + 1  # a read through a view made after

    def overlapping(x, y):
        z = x * 1
        z.as_strided((2, 2), (1, 1), 0).fill_(1.0)
        return z

    x, y = _inputs("contiguous")
    with graphc.no_grad():
        _assert_same(graphc.compile(diagonal)(x.clone(), y), diagonal(x.clone(), y), "diagonal")
        compiled = graphc.compile(overlapping)
        with pytest.warns(UserWarning, match="overlap"):
            _assert_same(compiled(x.clone(), y), overlapping(x.clone(), y), "overlapping")
    assert "elements overlap" in compiled.eager_runs[-1].reason
