"""Device queries (graphc.cuda, graphc.backends), the cpu device spellings, and the 16-bit
floats float16 and bfloat16: storage, casts, promotion, printing, numpy, save/load, Module
casts, compute in float32, and compiled functions with 16-bit values. Against torch where
it is installed, else against numpy / ml_dtypes."""

from __future__ import annotations

import io
import warnings

import ml_dtypes
import numpy as np
import pytest

import graphc
from graphc import dtype as dt
from graphc.tensor import DeviceError

F16, BF16, F32, F64 = dt.float16, dt.bfloat16, dt.float32, dt.float64
HALVES = [F16, BF16]
NP = {F16: np.float16, BF16: ml_dtypes.bfloat16}


def torch_or_skip():
    return pytest.importorskip("torch")


def tdtype(torch, d):
    return getattr(torch, d.name)


# ---- devices ----------------------------------------------------------------------------

def test_cuda_queries_answer_as_a_cpu_only_build():
    assert graphc.cuda.is_available() is False and graphc.cuda.device_count() == 0
    assert graphc.cuda.is_bf16_supported() is False and graphc.cuda.is_initialized() is False
    for noop in (graphc.cuda.manual_seed, graphc.cuda.manual_seed_all):
        assert noop(0) is None
    assert graphc.cuda.synchronize() is None and graphc.cuda.empty_cache() is None
    assert graphc.cuda.memory_allocated() == 0
    for call in (graphc.cuda.get_device_name, graphc.cuda.current_device,
                 graphc.cuda.get_device_capability):
        with pytest.raises(AssertionError, match="graphc runs on the CPU only"):
            call()


def test_cuda_answers_match_torch():
    torch = torch_or_skip()
    assert graphc.cuda.is_available() == torch.cuda.is_available()
    assert graphc.cuda.device_count() == torch.cuda.device_count()
    assert graphc.cuda.is_bf16_supported() == torch.cuda.is_bf16_supported()
    with pytest.raises(AssertionError):
        torch.cuda.get_device_name()  # what graphc's DeviceError also is


@pytest.mark.parametrize("make", [
    lambda: graphc.zeros(2, device="cuda"), lambda: graphc.ones(2, 3, device="cuda:0"),
    lambda: graphc.randn(2, device=graphc.device("cuda")), lambda: graphc.arange(3, device="cuda"),
    lambda: graphc.tensor([1.0], device="cuda"), lambda: graphc.as_tensor([1.0], device="cuda"),
    lambda: graphc.zeros(2).to("cuda"), lambda: graphc.zeros(2).to(device="cuda:1"),
    lambda: graphc.zeros(2).cuda(), lambda: graphc.nn.Linear(2, 2).to("cuda"),
    lambda: graphc.nn.Linear(2, 2).cuda(), lambda: graphc.zeros_like(graphc.zeros(2), device="cuda"),
    lambda: graphc.zeros(2).to("mps"),
], ids=["zeros", "ones", "randn", "arange", "tensor", "as_tensor", "to", "to_kw", "Tensor.cuda",
        "Module.to", "Module.cuda", "zeros_like", "mps"])
def test_using_cuda_raises_a_clear_device_error(make):
    with pytest.raises(DeviceError, match=r"not available: graphc runs on the CPU only.*device='cpu'") as e:
        make()
    assert isinstance(e.value, AssertionError) and isinstance(e.value, RuntimeError)


def test_device_objects_as_in_torch():
    torch = pytest.importorskip("torch")
    for spec in [("cpu",), ("cpu:0",), ("cpu", 0), ("cuda",), ("cuda:1",), ("meta",)]:
        g, t = graphc.device(*spec), torch.device(*spec)
        assert (repr(g), str(g), g.type, g.index) == (repr(t), str(t), t.type, t.index)
    assert (graphc.device("cpu") == graphc.device("cpu:0")) == (torch.device("cpu") == torch.device("cpu:0"))
    assert graphc.device("cuda") == "cuda" and graphc.zeros(1).device == "cpu"
    with pytest.raises(ValueError):
        graphc.device("tpu")


FACTORIES = {
    "tensor": lambda dev: graphc.tensor([1.0, 2.0], device=dev),
    "zeros": lambda dev: graphc.zeros(2, 3, device=dev), "ones": lambda dev: graphc.ones(2, device=dev),
    "full": lambda dev: graphc.full((2,), 3.0, device=dev), "empty": lambda dev: graphc.empty(2, device=dev),
    "arange": lambda dev: graphc.arange(4, device=dev), "eye": lambda dev: graphc.eye(3, device=dev),
    "linspace": lambda dev: graphc.linspace(0, 1, 5, device=dev),
    "rand": lambda dev: graphc.rand(3, device=dev), "randn": lambda dev: graphc.randn(3, device=dev),
    "randint": lambda dev: graphc.randint(0, 5, (3,), device=dev),
    "zeros_like": lambda dev: graphc.zeros_like(graphc.ones(2), device=dev),
    "ones_like": lambda dev: graphc.ones_like(graphc.ones(2), device=dev),
    "full_like": lambda dev: graphc.full_like(graphc.ones(2), 7, device=dev),
    "rand_like": lambda dev: graphc.rand_like(graphc.ones(2), device=dev),
    "randn_like": lambda dev: graphc.randn_like(graphc.ones(2), device=dev),
    "empty_like": lambda dev: graphc.empty_like(graphc.ones(2), device=dev),
}


@pytest.mark.parametrize("dev", ["cpu", "cpu:0", graphc.device("cpu"), graphc.device("cpu", 0)],
                         ids=["cpu", "cpu:0", "device(cpu)", "device(cpu,0)"])
@pytest.mark.parametrize("name", list(FACTORIES))
def test_factories_accept_every_cpu_spelling(name, dev):
    t = FACTORIES[name](dev)
    assert t.device == graphc.device("cpu") and not t.is_meta and t.is_cuda is False


def test_tensor_device_methods():
    x = graphc.arange(6.0).reshape(2, 3)
    assert x.to("cpu") is x and x.to("cpu:0", non_blocking=True) is x and x.cpu() is x
    assert x.to(graphc.device("cpu"), F64, non_blocking=True).dtype is F64
    assert x.pin_memory() is x and x.is_pinned() is False and x.get_device() == -1
    model = graphc.nn.Linear(3, 2).to("cpu:0")
    assert model.weight.device == "cpu"


def test_backends_flags():
    b = graphc.backends
    assert b.cudnn.enabled is True and b.cudnn.benchmark is False and b.cudnn.is_available() is False
    b.cudnn.benchmark = True
    try:
        with b.cudnn.flags(enabled=False, deterministic=True):
            assert b.cudnn.enabled is False and b.cudnn.deterministic is True
        assert b.cudnn.enabled is True and b.cudnn.benchmark is True
    finally:
        b.cudnn.benchmark = False
    assert b.mps.is_available() is False and b.cuda.is_built() is False
    with b.cuda.sdp_kernel(enable_flash=False):
        assert b.cuda.flash_sdp_enabled() is False and b.cuda.math_sdp_enabled() is True
    assert b.cuda.flash_sdp_enabled() is True
    import graphc.backends.cudnn as cudnn  # the spelling training scripts use
    assert cudnn is b.cudnn


def test_matmul_precision_and_tf32_flag_follow_torch():
    torch = torch_or_skip()
    saved_g, saved_t = graphc.get_float32_matmul_precision(), torch.get_float32_matmul_precision()
    try:
        for p in ("high", "highest", "medium"):
            graphc.set_float32_matmul_precision(p)
            torch.set_float32_matmul_precision(p)
            assert graphc.get_float32_matmul_precision() == torch.get_float32_matmul_precision()
            assert graphc.backends.cuda.matmul.allow_tf32 == torch.backends.cuda.matmul.allow_tf32
        with pytest.warns(UserWarning):
            graphc.set_float32_matmul_precision("fastest")
        assert graphc.get_float32_matmul_precision() == "medium"
    finally:
        graphc.set_float32_matmul_precision(saved_g)
        torch.set_float32_matmul_precision(saved_t)


def test_deterministic_and_threads(monkeypatch):
    monkeypatch.delenv("GRAPHC_NUM_THREADS", raising=False)
    graphc.use_deterministic_algorithms(True)
    try:
        assert graphc.are_deterministic_algorithms_enabled() is True
    finally:
        graphc.use_deterministic_algorithms(False)
    assert graphc.get_num_threads() >= 1
    graphc.set_num_threads(3)  # graphc's own knob: compiled programs built from now on
    from graphc.codegen import thread_count
    assert graphc.get_num_threads() == 3 == thread_count()
    with pytest.raises(RuntimeError, match="positive integer"):
        graphc.set_num_threads(0)


# ---- float16 and bfloat16 -----------------------------------------------------------------

VALUES = [0.1, -2.5, 1e-3, 3.14159, 65504.0, 1e5, -0.0, float("inf"), float("nan"), 1 / 3]


@pytest.mark.parametrize("d", HALVES, ids=str)
def test_storage_and_casts_round_like_numpy(d):
    with np.errstate(over="ignore"):
        ref = np.array(VALUES, np.float32).astype(NP[d])
    x = graphc.tensor(VALUES, dtype=d)
    assert x.dtype is d and x.element_size() == 2 and x.is_floating_point()
    np.testing.assert_array_equal(x.float().numpy(), ref.astype(np.float32))
    y = graphc.tensor(VALUES).to(d)
    np.testing.assert_array_equal(y.float().numpy(), ref.astype(np.float32))
    method = x.half() if d is F16 else graphc.tensor(VALUES).bfloat16()
    assert method.dtype is d
    assert graphc.zeros(2, dtype=d).dtype is d and graphc.arange(3, dtype=d).tolist() == [0.0, 1.0, 2.0]
    assert graphc.tensor(VALUES, dtype=d).to(F64).dtype is F64


@pytest.mark.parametrize("d", HALVES, ids=str)
def test_casts_and_printing_match_torch(d):
    torch = torch_or_skip()
    data = [0.1, -2.5, 1e-3, 3.14159, 1e5, 1 / 3, 7.0]
    g, t = graphc.tensor(data, dtype=d), torch.tensor(data, dtype=tdtype(torch, d))
    assert g.float().tolist() == t.float().tolist()
    assert g.tolist() == t.tolist() and isinstance(g[0].item(), float)
    assert repr(g).replace("graphc", "torch") == repr(t)
    assert repr(g[1]).replace("graphc", "torch") == repr(t[1])
    ints = graphc.tensor([1, 300, 65519, -7]).to(d)
    assert ints.float().tolist() == torch.tensor([1, 300, 65519, -7]).to(tdtype(torch, d)).float().tolist()


def test_numpy_of_float16_and_refusal_for_bfloat16():
    torch = pytest.importorskip("torch")
    a = graphc.tensor([1.5, 2.0], dtype=F16).numpy()
    assert a.dtype == np.float16 and a.tolist() == [1.5, 2.0]
    assert graphc.from_numpy(np.ones(2, np.float16)).dtype is F16
    with pytest.raises(TypeError):
        torch.zeros(2, dtype=torch.bfloat16).numpy()
    with pytest.raises(TypeError, match="bfloat16.*float\\(\\)"):
        graphc.zeros(2, dtype=BF16).numpy()


def test_promotion_matches_torch():
    torch = torch_or_skip()
    dtypes = [dt.bool_, dt.int32, dt.int64, F16, BF16, F32, F64]
    for a in dtypes:
        for b in dtypes:
            expect = torch.promote_types(tdtype(torch, a) if a is not dt.bool_ else torch.bool,
                                         tdtype(torch, b) if b is not dt.bool_ else torch.bool)
            assert dt.promote_types(a, b).name == str(expect).removeprefix("torch."), (a, b)
    # tensors with dims, 0-d tensors and Python scalars
    cases = [(graphc.ones(2, dtype=F16), graphc.tensor(2.0)), (graphc.ones(2, dtype=F16), 2.5),
             (graphc.arange(2), graphc.tensor(1.0, dtype=BF16)), (graphc.ones(2, dtype=BF16), 3),
             (graphc.ones(2, dtype=F16), graphc.ones(2, dtype=BF16)),
             (graphc.ones(2, dtype=F16), graphc.ones(2))]
    for a, b in cases:
        ta = torch.tensor(a.float().tolist(), dtype=tdtype(torch, a.dtype)) if a.dtype is not dt.int64 \
            else torch.tensor(a.tolist())
        tb = b if not isinstance(b, graphc.Tensor) else torch.tensor(
            b.float().tolist(), dtype=tdtype(torch, b.dtype))
        assert (a + b).dtype.name == str((ta + tb).dtype).removeprefix("torch.")


@pytest.mark.parametrize("d", HALVES, ids=str)
def test_rand_stays_below_high_in_16_bit_floats(d):
    """Draws near 1 round up to 1.0 in 16 bits; rand's interval is [0, 1) as in torch."""
    graphc.manual_seed(0)
    for low, high in ((0.0, 1.0), (-2.0, 0.3)):
        x = graphc.empty(100_000, dtype=d).uniform_(low, high).float() if low else \
            graphc.rand(100_000, dtype=d).float()
        assert x.min().item() >= low and x.max().item() < high, (low, high)


@pytest.mark.parametrize("d", HALVES, ids=str)
def test_ops_compute_in_float32_and_round_once(d):
    rng = np.random.default_rng(0)
    a32 = rng.standard_normal((4, 5)).astype(np.float32).astype(NP[d]).astype(np.float32)
    b32 = rng.standard_normal((5, 3)).astype(np.float32).astype(NP[d]).astype(np.float32)
    a, b = graphc.tensor(a32).to(d), graphc.tensor(b32).to(d)
    rounded = lambda v: v.astype(NP[d]).astype(np.float32)  # noqa: E731
    checks = [(a * 3 + 1, rounded(a32 * np.float32(3)) + 1), (a.exp(), np.exp(a32)),
              (a @ b, a32 @ b32), (a.sum(1), a32.sum(1))]  # each op rounds its result once
    for got, want in checks:
        assert got.dtype is d
        np.testing.assert_array_equal(got.float().numpy(), rounded(want))


@pytest.mark.parametrize("d", HALVES, ids=str)
def test_ops_match_torch(d):
    torch = torch_or_skip()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    w = rng.standard_normal((4, 8)).astype(np.float32)
    g, gw = graphc.tensor(x).to(d), graphc.tensor(w).to(d)
    t, tw = torch.tensor(x).to(tdtype(torch, d)), torch.tensor(w).to(tdtype(torch, d))
    pairs = [(g + gw[0], t + tw[0]), (g * 0.5 - 1, t * 0.5 - 1), (g.exp(), t.exp()),
             (graphc.nn.functional.linear(g, gw), torch.nn.functional.linear(t, tw)),
             (graphc.softmax(g, -1), torch.softmax(t, -1)), (g.sum(-1), t.sum(-1)),
             (g.mean(), t.mean()), (graphc.relu(g), torch.relu(t)), (g.max(), t.max())]
    eps = dt.finfo(d).eps
    for got, want in pairs:
        assert got.dtype.name == str(want.dtype).removeprefix("torch.")
        np.testing.assert_allclose(got.float().numpy(), want.float().numpy(), rtol=2 * eps, atol=1e-6)


@pytest.mark.parametrize("d", HALVES, ids=str)
def test_autograd_through_half_values(d):
    w = graphc.randn(3, 4, requires_grad=True)
    x = graphc.randn(2, 4)
    y = graphc.nn.functional.linear(x.to(d), w.to(d))
    assert y.dtype is d
    y.float().sum().backward()
    assert w.grad.dtype is F32
    ref = x.to(d).float().sum(0).to(d).float().expand(3, 4)  # d(sum xW^T)/dW, rounded as d
    np.testing.assert_allclose(w.grad.numpy(), ref.numpy(), rtol=1e-2)


def test_in_place_writes_into_half_tensors():
    for d in HALVES:
        x = graphc.zeros(3, dtype=d)
        x[1] = 2.5
        x += 1
        x.copy_(x * 2)
        assert x.dtype is d and x.float().tolist() == [2.0, 7.0, 2.0]


def test_finfo_matches_torch():
    torch = torch_or_skip()
    for d in [F16, BF16, F32, F64]:
        g, t = graphc.finfo(d), torch.finfo(tdtype(torch, d))
        assert (g.bits, g.eps, g.max, g.min, g.tiny, g.resolution, g.dtype) == \
            (t.bits, t.eps, t.max, t.min, t.tiny, t.resolution, t.dtype)
    assert graphc.iinfo(graphc.int32).max == torch.iinfo(torch.int32).max


def test_save_load_keeps_half_dtypes_and_bits():
    x = graphc.tensor(VALUES)
    state = {"h": x.half(), "b": x.bfloat16(), "view": x.bfloat16()[2:], "dtype": BF16}
    buf = io.BytesIO()
    graphc.save(state, buf)
    buf.seek(0)
    back = graphc.load(buf)
    assert back["dtype"] is BF16 and back["view"].shape == (len(VALUES) - 2,)
    for k in ("h", "b"):
        assert back[k].dtype is state[k].dtype
        np.testing.assert_array_equal(back[k].float().numpy(), state[k].float().numpy())


@pytest.mark.parametrize("d", HALVES, ids=str)
def test_module_half_and_bfloat16(d):
    m = graphc.nn.Sequential(graphc.nn.Linear(4, 3), graphc.nn.BatchNorm1d(3))
    weight = m[0].weight
    (m.half() if d is F16 else m.bfloat16())
    assert m[0].weight is weight and weight.dtype is d and m[1].running_mean.dtype is d
    assert m[1].num_batches_tracked.dtype is dt.int64
    m.eval()
    assert m(graphc.randn(2, 4).to(d)).dtype is d
    m.float()
    assert weight.dtype is F32


@pytest.mark.parametrize("d", HALVES, ids=str)
def test_compiled_functions_with_half_values_run_eagerly_and_agree(d):
    f = graphc.compile(lambda x, y: (x * y + 1).sum(-1))
    x, y = graphc.randn(4, 8).to(d), graphc.randn(4, 8).to(d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = f(x, y)
        inner = graphc.compile(lambda a: (a.to(d) * 3).float())(graphc.randn(5))
    assert out.dtype is d and inner.dtype is F32
    np.testing.assert_array_equal(out.float().numpy(), ((x * y + 1).sum(-1)).float().numpy())
    assert any(d.name in r.reason and "run eagerly" in r.reason for r in f.eager_runs)
    with pytest.raises(graphc.CaptureError, match=d.name):
        graphc.compile(lambda a: a * 2, fullgraph=True)(x)
