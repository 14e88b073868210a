"""Running a graphc module and the same PyTorch module side by side.

torch is imported inside the functions, so importing this file needs no torch; the test
modules that use it start with ``torch = pytest.importorskip("torch")``.
"""

from __future__ import annotations

import numpy as np

import graphc

TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}


def load_from_torch(module, torch_module) -> None:
    """Copy ``torch_module``'s state_dict into ``module`` by key (through numpy)."""
    state = {k: graphc.from_numpy(v.detach().numpy().copy()) for k, v in torch_module.state_dict().items()}
    module.load_state_dict(state)


def twins(make, torch_make, dtype: str = "float64"):
    """(graphc module, torch module) with torch's initial values, both in ``dtype``."""
    import torch

    tm = torch_make().to(getattr(torch, dtype))
    gm = make().to(getattr(graphc, dtype))
    load_from_torch(gm, tm)
    return gm, tm


def _flat(out) -> list:
    if isinstance(out, (tuple, list)):
        return [o for item in out for o in _flat(item)]
    return [] if out is None else [out]


def _to(framework: str, x, requires_grad: bool):
    import torch

    if not isinstance(x, np.ndarray):
        return x
    t = torch.from_numpy(x.copy()) if framework == "torch" else graphc.from_numpy(x.copy())
    if requires_grad and x.dtype.kind == "f":
        t.requires_grad_(True)
    return t


def assert_close(actual, expected, dtype: str, what: str) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), equal_nan=True,
                               err_msg=what, **TOLERANCE[dtype])


def check_against_torch(module, torch_module, *inputs: np.ndarray, dtype: str = "float64",
                        kwargs: dict | None = None, seed: int = 0) -> list:
    """Forward both modules on the same inputs (numpy arrays; float ones get gradients), compare
    every output, backward one random upstream gradient per output, and compare the gradients
    of the float inputs and of every parameter (by name). Returns graphc's outputs."""
    kwargs = kwargs or {}
    g_in = [_to("graphc", x, True) for x in inputs]
    t_in = [_to("torch", x, True) for x in inputs]
    g_out = _flat(module(*g_in, **{k: _to("graphc", v, False) for k, v in kwargs.items()}))
    t_out = _flat(torch_module(*t_in, **{k: _to("torch", v, False) for k, v in kwargs.items()}))
    assert len(g_out) == len(t_out), f"{len(g_out)} outputs vs torch's {len(t_out)}"
    rng = np.random.default_rng(seed)
    g_loss = t_loss = 0
    for i, (g, t) in enumerate(zip(g_out, t_out)):
        assert tuple(g.shape) == tuple(t.shape), f"output {i}: shape {tuple(g.shape)} vs {tuple(t.shape)}"
        assert_close(g.detach().numpy(), t.detach().numpy(), dtype, f"output {i}")
        upstream = rng.standard_normal(tuple(t.shape)).astype(dtype)
        if t.requires_grad:
            g_loss = g_loss + (g * graphc.from_numpy(upstream)).sum()
            t_loss = t_loss + (t * _to("torch", upstream, False)).sum()
    if isinstance(t_loss, int):
        return g_out
    g_loss.backward()
    t_loss.backward()
    for i, (g, t) in enumerate(zip(g_in, t_in)):
        if getattr(t, "requires_grad", False):
            assert_close(g.grad.numpy(), t.grad.numpy(), dtype, f"gradient of input {i}")
    t_params = dict(torch_module.named_parameters())
    g_params = dict(module.named_parameters())
    assert list(g_params) == list(t_params)
    for name, p in g_params.items():
        expected = t_params[name].grad
        if expected is None:
            assert p.grad is None or not p.grad.numpy().any(), name
        else:
            assert p.grad is not None, f"no gradient reached parameter {name}"
            assert_close(p.grad.numpy(), expected.numpy(), dtype, f"gradient of {name}")
    return g_out
