"""graphc.amp: autocast (which ops change dtype, against torch's CPU autocast) and GradScaler."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc
from graphc import dtype as dt
import graphc.nn.functional as F

BF16, F16, F32, F64 = dt.bfloat16, dt.float16, dt.float32, dt.float64


def data(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_matmul_and_linear_run_in_the_autocast_dtype():
    x, w, b = graphc.tensor(data(3, 8)), graphc.tensor(data(4, 8, seed=1)), graphc.tensor(data(4, seed=2))
    with graphc.autocast(device_type="cpu", dtype=BF16):
        assert graphc.is_autocast_enabled("cpu") and graphc.amp.get_autocast_dtype("cpu") is BF16
        lin, mm = F.linear(x, w, b), x @ w.T
        bmm = graphc.bmm(x[None], w.T[None])
        kept = (x.exp(), x + 1, graphc.softmax(x, -1))
        loss = F.mse_loss(lin, graphc.zeros(3, 4))
        doubles = x.double() @ w.double().T
    assert lin.dtype is BF16 and mm.dtype is BF16 and bmm.dtype is BF16
    assert all(k.dtype is F32 for k in kept) and loss.dtype is F32 and doubles.dtype is F64
    # the same values as running the op on inputs rounded to bfloat16
    ref = F.linear(x.bfloat16(), w.bfloat16(), b.bfloat16())
    np.testing.assert_array_equal(lin.float().numpy(), ref.float().numpy())
    assert (x @ w.T).dtype is F32 and not graphc.is_autocast_enabled("cpu")


def test_autocast_matches_torch():
    torch = pytest.importorskip("torch")
    x, w, b = data(3, 8), data(4, 8, seed=1), data(4, seed=2)
    img, k = data(1, 2, 6, 6, seed=3), data(3, 2, 3, 3, seed=4)
    q = data(2, 5, 8, seed=5)
    target = np.random.default_rng(6).integers(0, 4, 3)
    for dtype in (BF16, F16):
        tdt = getattr(torch, dtype.name)
        with graphc.autocast("cpu", dtype=dtype):
            g = {"linear": F.linear(graphc.tensor(x), graphc.tensor(w), graphc.tensor(b)),
                 "matmul": graphc.tensor(x) @ graphc.tensor(w).T,
                 "conv2d": F.conv2d(graphc.tensor(img), graphc.tensor(k)),
                 "sdpa": F.scaled_dot_product_attention(*(graphc.tensor(q),) * 3),
                 "cross_entropy": F.cross_entropy(F.linear(graphc.tensor(x), graphc.tensor(w)),
                                                  graphc.tensor(target)),
                 "addmm": graphc.addmm(graphc.tensor(b), graphc.tensor(x), graphc.tensor(w).T),
                 "nll_loss": F.nll_loss(F.linear(graphc.tensor(x), graphc.tensor(w)),
                                        graphc.tensor(target)),
                 "l1_loss": F.l1_loss(F.linear(graphc.tensor(x), graphc.tensor(w)),
                                      graphc.tensor(x[:, :4])),
                 "exp": graphc.tensor(x).exp()}
        with torch.autocast("cpu", dtype=tdt):
            t = {"linear": torch.nn.functional.linear(torch.tensor(x), torch.tensor(w), torch.tensor(b)),
                 "matmul": torch.tensor(x) @ torch.tensor(w).T,
                 "conv2d": torch.nn.functional.conv2d(torch.tensor(img), torch.tensor(k)),
                 "sdpa": torch.nn.functional.scaled_dot_product_attention(*(torch.tensor(q),) * 3),
                 "cross_entropy": torch.nn.functional.cross_entropy(
                     torch.nn.functional.linear(torch.tensor(x), torch.tensor(w)), torch.tensor(target)),
                 "addmm": torch.addmm(torch.tensor(b), torch.tensor(x), torch.tensor(w).T),
                 "nll_loss": torch.nn.functional.nll_loss(
                     torch.nn.functional.linear(torch.tensor(x), torch.tensor(w)), torch.tensor(target)),
                 "l1_loss": torch.nn.functional.l1_loss(
                     torch.nn.functional.linear(torch.tensor(x), torch.tensor(w)), torch.tensor(x[:, :4])),
                 "exp": torch.tensor(x).exp()}
        for name in g:
            assert g[name].dtype.name == str(t[name].dtype).removeprefix("torch."), (dtype, name)
            eps = dt.finfo(g[name].dtype).eps
            # inputs round the same way; the products may differ by a rounding of the result
            np.testing.assert_allclose(g[name].float().numpy(), t[name].float().numpy(),
                                       rtol=4 * eps, atol=4 * eps, err_msg=f"{dtype} {name}")
        assert graphc.is_autocast_enabled() == torch.is_autocast_enabled()  # no argument: CUDA


def test_nesting_disabling_and_decorator():
    x = graphc.randn(2, 3)
    with graphc.autocast("cpu"):
        with graphc.autocast("cpu", enabled=False):
            assert (x @ x.T).dtype is F32 and not graphc.is_autocast_enabled("cpu")
        with graphc.amp.autocast("cpu", dtype=F16):
            assert (x @ x.T).dtype is F16
        assert (x @ x.T).dtype is BF16

    @graphc.autocast(device_type="cpu")
    def product(a):
        return a @ a.T

    assert product(x).dtype is BF16 and (x @ x.T).dtype is F32


def test_unavailable_device_or_dtype_warns_and_disables():
    x = graphc.randn(2, 3)
    with pytest.warns(UserWarning, match="not available"):
        ctx = graphc.autocast("cuda")
    with ctx:
        assert (x @ x.T).dtype is F32
    with pytest.warns(UserWarning, match="bfloat16 or float16"):
        ctx = graphc.autocast("cpu", dtype=F64)
    with ctx:
        assert (x @ x.T).dtype is F32
    with pytest.raises(RuntimeError, match="device_type"):
        graphc.autocast("gpu")


def test_gradients_reach_float32_weights():
    model = graphc.nn.Linear(3, 2)
    x = graphc.randn(4, 3)
    with graphc.autocast("cpu"):
        out = model(x)
        loss = F.mse_loss(out, graphc.zeros(4, 2))
    loss.backward()
    assert out.dtype is BF16 and model.weight.grad.dtype is F32
    # the same gradient as the explicit casts autocast stands for
    w = model.weight.detach().clone().requires_grad_()
    ref = F.mse_loss(F.linear(x.bfloat16(), w.bfloat16(), model.bias.detach().bfloat16()).float(),
                     graphc.zeros(4, 2))
    ref.backward()
    np.testing.assert_allclose(model.weight.grad.numpy(), w.grad.numpy(), rtol=1e-6)


def test_compiled_function_inside_autocast_runs_eagerly():
    f = graphc.compile(lambda a, b: a @ b)
    a, b = graphc.randn(3, 4), graphc.randn(4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert f(a, b).dtype is F32
        with graphc.autocast("cpu"):
            out = f(a, b)
    assert out.dtype is BF16 and "autocast" in f.eager_runs[-1].reason


def _train_step(scaler, model, opt, x):
    opt.zero_grad()
    loss = model(x).sum()
    scaler.scale(loss).backward()
    result = scaler.step(opt)
    scaler.update()
    return loss, result


def test_disabled_grad_scaler_passes_through():
    model = graphc.nn.Linear(3, 1)
    opt = graphc.optim.SGD(model.parameters(), lr=0.1)
    x = graphc.randn(2, 3)
    with pytest.warns(UserWarning, match="not available"):
        cuda_scaler = graphc.amp.GradScaler()  # device="cuda" by default, as in PyTorch
    for scaler in (graphc.amp.GradScaler("cpu", enabled=False), cuda_scaler):
        assert not scaler.is_enabled() and scaler.get_scale() == 1.0
        loss = model(x).sum()
        assert scaler.scale(loss) is loss
        before = model.weight.detach().clone()
        opt.zero_grad()
        loss.backward()
        expected = before - 0.1 * model.weight.grad
        scaler.step(opt)
        scaler.update()
        np.testing.assert_allclose(model.weight.detach().numpy(), expected.numpy(), rtol=1e-6)


def test_grad_scaler_matches_torch():
    torch = pytest.importorskip("torch")
    w0 = data(1, 3)
    xs = [data(2, 3, seed=s) for s in range(4)]
    xs[1][0, 0] = np.inf  # one step with an inf gradient: skipped, scale backs off
    g_model, t_model = graphc.nn.Linear(3, 1, bias=False), torch.nn.Linear(3, 1, bias=False)
    with graphc.no_grad():
        g_model.weight.copy_(graphc.tensor(w0))
    with torch.no_grad():
        t_model.weight.copy_(torch.tensor(w0))
    g_opt = graphc.optim.SGD(g_model.parameters(), lr=0.1)
    t_opt = torch.optim.SGD(t_model.parameters(), lr=0.1)
    g_s = graphc.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    t_s = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=2)
    for x in xs:
        _train_step(g_s, g_model, g_opt, graphc.tensor(x))
        _train_step(t_s, t_model, t_opt, torch.tensor(x))
        assert g_s.get_scale() == t_s.get_scale()
        np.testing.assert_allclose(g_model.weight.detach().numpy(), t_model.weight.detach().numpy(),
                                   rtol=1e-6)


def test_grad_scaler_unscale_once_per_step():
    model = graphc.nn.Linear(2, 1)
    opt = graphc.optim.SGD(model.parameters(), lr=0.1)
    scaler = graphc.amp.GradScaler("cpu", init_scale=8.0)
    scaler.scale(model(graphc.ones(1, 2)).sum()).backward()
    scaler.unscale_(opt)
    np.testing.assert_allclose(model.weight.grad.numpy(), [[1.0, 1.0]])
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    scaler.update()
    assert scaler.state_dict()["scale"] == 8.0
