"""graphc.optim without PyTorch: convergence, closed-form steps, the Optimizer API, errors.

``test_optim_torch.py`` compares every update with torch.optim step by step.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc.optim import SGD, Adam, AdamW, Optimizer


def param(values, dtype=graphc.float64):
    return graphc.tensor(values, dtype=dtype).requires_grad_()


def set_grad(p, values):
    p.grad = graphc.tensor(values, dtype=p.dtype)


def values(t) -> np.ndarray:
    return t.detach().numpy().copy()


# ---- training converges ---------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1),
    lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    lambda ps: Adam(ps, lr=0.05),
    lambda ps: Adam(ps, lr=0.05, amsgrad=True),
    lambda ps: AdamW(ps, lr=0.05, weight_decay=1e-4),
], ids=["sgd", "sgd-nesterov", "adam", "adam-amsgrad", "adamw"])
@pytest.mark.parametrize("dtype", [graphc.float32, graphc.float64], ids=["float32", "float64"])
def test_linear_regression_converges(make, dtype):
    rng = np.random.default_rng(0)
    X = graphc.tensor(rng.standard_normal((64, 3)), dtype=dtype)
    w_true = np.array([1.5, -2.0, 0.5])
    y = X @ graphc.tensor(w_true, dtype=dtype) + 0.25
    w, b = graphc.zeros(3, dtype=dtype).requires_grad_(), graphc.zeros(1, dtype=dtype).requires_grad_()
    opt = make([w, b])
    for _ in range(300):
        opt.zero_grad()
        loss = ((X @ w + b - y) ** 2).mean()
        loss.backward()
        opt.step()
    assert loss.item() < 1e-3
    np.testing.assert_allclose(values(w), w_true, atol=0.02)
    np.testing.assert_allclose(values(b), [0.25], atol=0.02)
    assert w.dtype is dtype and w.is_leaf and w.requires_grad


# ---- closed-form steps (an independent reference) ------------------------------------

def test_sgd_momentum_dampening_by_hand():
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)
    g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
    set_grad(p, g1)
    opt.step()
    buf = g1 + 0.1 * np.array([1.0, -2.0])  # first step: buf = grad, no dampening
    p1 = np.array([1.0, -2.0]) - 0.1 * buf
    np.testing.assert_allclose(values(p), p1, rtol=1e-12)
    set_grad(p, g2)
    opt.step()
    buf = 0.9 * buf + 0.5 * (g2 + 0.1 * p1)
    np.testing.assert_allclose(values(p), p1 - 0.1 * buf, rtol=1e-12)
    np.testing.assert_allclose(values(opt.state[p]["momentum_buffer"]), buf, rtol=1e-12)


def test_adam_first_step_moves_by_lr_times_sign():
    p = param([1.0, 1.0, 1.0])
    opt = Adam([p], lr=0.01, eps=0.0)
    set_grad(p, [3.0, -0.5, 1e-3])
    opt.step()  # bias-corrected m / sqrt(v) = g / |g| on the first step
    np.testing.assert_allclose(values(p), [0.99, 1.01, 0.99], rtol=1e-12)
    assert opt.state[p]["step"].item() == 1.0


def test_adamw_decay_is_decoupled():
    p, q = param([2.0]), param([2.0])
    adamw, adam = AdamW([p], lr=0.1, weight_decay=0.5, eps=0.0), Adam([q], lr=0.1, eps=0.0)
    for opt, t in ((adamw, p), (adam, q)):
        set_grad(t, [4.0])
        opt.step()
    # AdamW: p * (1 - lr * wd) then the plain Adam step
    np.testing.assert_allclose(values(p), [2.0 * (1 - 0.05) - 0.1], rtol=1e-12)
    np.testing.assert_allclose(values(q), [2.0 - 0.1], rtol=1e-12)


def test_step_writes_in_place_and_skips_params_without_grad():
    p, frozen = param([[1.0, 2.0], [3.0, 4.0]]), param([5.0])
    row = p[0]  # a view: must see the update
    opt = Adam([p, frozen], lr=0.1)
    set_grad(p, [[1.0, 1.0], [1.0, 1.0]])
    opt.step()
    assert opt.param_groups[0]["params"][0] is p
    np.testing.assert_allclose(values(row), [0.9, 1.9], rtol=1e-7)
    assert p.is_leaf and p.requires_grad and p.grad_fn is None
    assert values(frozen).tolist() == [5.0] and frozen not in opt.state
    assert opt.state[p]["exp_avg"].dtype is graphc.float64


# ---- zero_grad, closure, param groups ---------------------------------------------------

def test_zero_grad_set_to_none():
    p = param([1.0, 2.0])
    set_grad(p, [3.0, 4.0])
    SGD([p]).zero_grad()
    assert p.grad is None


def test_zero_grad_in_place():
    p = param([1.0, 2.0])
    set_grad(p, [3.0, 4.0])
    grad = p.grad
    SGD([p]).zero_grad(set_to_none=False)
    assert p.grad is grad and values(grad).tolist() == [0.0, 0.0]


def test_step_with_closure_runs_it_with_grad_enabled():
    p = param([3.0])
    opt = SGD([p], lr=0.25)
    calls = []

    def closure():
        calls.append(graphc.is_grad_enabled())
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    with graphc.no_grad():
        loss = opt.step(closure)
    assert calls == [True] and loss.item() == 9.0
    np.testing.assert_allclose(values(p), [3.0 - 0.25 * 6.0])


def test_param_groups_and_add_param_group():
    a, b, c = param([1.0]), param([1.0]), param([1.0])
    opt = SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.0)
    opt.add_param_group({"params": [c], "lr": 0.01, "momentum": 0.5})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5, 0.01]
    assert opt.param_groups[2]["dampening"] == 0 and opt.param_groups[2]["momentum"] == 0.5
    for t in (a, b, c):
        set_grad(t, [1.0])
    opt.step()
    np.testing.assert_allclose([values(t)[0] for t in (a, b, c)], [0.9, 0.5, 0.99])
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_repr_lists_group_options():
    text = repr(SGD([param([1.0])], lr=0.5, momentum=0.9))
    assert text.startswith("SGD (\nParameter Group 0\n") and "    lr: 0.5\n" in text
    assert "    momentum: 0.9\n" in text and text.endswith(")")


# ---- state dicts ---------------------------------------------------------------------

def _run(opt, params, grads):
    for g in grads:
        for p, gp in zip(params, g):
            set_grad(p, gp)
        opt.step()


@pytest.mark.parametrize("cls, options", [
    (SGD, {"momentum": 0.9, "nesterov": True}), (Adam, {"amsgrad": True}), (AdamW, {})])
def test_state_dict_round_trip(cls, options):
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal(3), rng.standard_normal(2)] for _ in range(6)]
    start = [rng.standard_normal(3), rng.standard_normal(2)]
    ps = [param(v) for v in start]
    opt = cls([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.05}], lr=0.1, **options)
    _run(opt, ps, grads[:3])

    saved = opt.state_dict()
    assert [g["params"] for g in saved["param_groups"]] == [[0], [1]]
    assert saved["param_groups"][1]["lr"] == 0.05 and set(saved["state"]) == {0, 1}
    qs = [param(values(p)) for p in ps]
    other = cls([{"params": [qs[0]]}, {"params": [qs[1]]}], lr=0.7, **options)
    other.load_state_dict(saved)
    assert [g["lr"] for g in other.param_groups] == [0.1, 0.05]
    assert other.param_groups[0]["params"][0] is qs[0]
    for key, value in other.state[qs[0]].items():  # copies, not the original's tensors
        assert value is not opt.state[ps[0]][key]
        np.testing.assert_array_equal(values(value), values(opt.state[ps[0]][key]))

    _run(opt, ps, grads[3:])
    _run(other, qs, grads[3:])
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(values(p), values(q))


def test_load_state_dict_casts_state_to_the_param_dtype():
    p = param([1.0, 2.0], dtype=graphc.float64)
    opt = Adam([p])
    set_grad(p, [1.0, 1.0])
    opt.step()
    q = param([1.0, 2.0], dtype=graphc.float32)
    other = Adam([q])
    other.load_state_dict(opt.state_dict())
    assert other.state[q]["exp_avg"].dtype is graphc.float32
    assert other.state[q]["step"].dtype is graphc.float32 and other.state[q]["step"].item() == 1.0


def test_load_state_dict_accepts_a_number_as_adam_step():
    runs = []
    for step in (graphc.tensor(2.0), 2):
        p = param([1.0])
        opt = Adam([p], lr=0.1)
        opt.load_state_dict({"state": {0: {"step": step, "exp_avg": graphc.tensor([0.5]),
                                           "exp_avg_sq": graphc.tensor([0.25])}},
                             "param_groups": [{**opt.param_groups[0], "params": [0]}]})
        set_grad(p, [1.0])
        opt.step()
        assert opt.state[p]["step"].item() == 3.0
        runs.append(values(p))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0][0] != values(param([1.0]))[0] - 0.1  # not a first step


def test_load_state_dict_checks_the_loaded_options():
    saved = SGD([param([1.0])]).state_dict()
    saved["param_groups"][0]["lr"] = -1.0
    with pytest.raises(ValueError, match="Invalid learning rate: -1.0"):
        SGD([param([1.0])]).load_state_dict(saved)


def test_load_state_dict_rejects_other_groups():
    a, b = param([1.0]), param([1.0])
    saved = SGD([{"params": [a]}, {"params": [b]}]).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        SGD([param([1.0])]).load_state_dict(saved)
    with pytest.raises(ValueError, match="doesn't match the size"):
        SGD([{"params": [param([1.0]), param([2.0])]}, {"params": [param([1.0])]}]).load_state_dict(saved)


# ---- invalid arguments -------------------------------------------------------------------

P = param([1.0])

INVALID = [
    (lambda: SGD(P), TypeError, "iterable of Tensors or dicts"),
    (lambda: SGD([]), ValueError, "empty parameter list"),
    (lambda: SGD([P, [1.0]]), TypeError, "can only optimize Tensors"),
    (lambda: SGD([graphc.tensor([1, 2])]), ValueError, "floating-point"),
    (lambda: SGD([P * 2]), ValueError, "non-leaf"),
    (lambda: SGD([P, P]), ValueError, "more than once"),
    (lambda: SGD([{"params": [P]}, {"params": [P]}]), ValueError, "more than one parameter group"),
    (lambda: SGD({P}), TypeError, "ordered collections"),
    (lambda: SGD([{"params": {P}}]), TypeError, "ordered collections"),
    (lambda: SGD([P], lr=-0.1), ValueError, "Invalid learning rate: -0.1"),
    (lambda: SGD([{"params": [P], "lr": -1.0}]), ValueError, "Invalid learning rate: -1.0"),
    (lambda: SGD([P], momentum=-0.5), ValueError, "Invalid momentum value"),
    (lambda: SGD([P], weight_decay=-1), ValueError, "Invalid weight_decay value"),
    (lambda: SGD([P], nesterov=True), ValueError, "Nesterov momentum requires a momentum"),
    (lambda: SGD([P], momentum=0.9, dampening=0.1, nesterov=True), ValueError, "zero dampening"),
    (lambda: Adam([P], lr=-1e-3), ValueError, "Invalid learning rate"),
    (lambda: Adam([P], betas=(1.0, 0.999)), ValueError, "Invalid beta parameter at index 0"),
    (lambda: Adam([P], betas=(0.9, -0.1)), ValueError, "Invalid beta parameter at index 1"),
    (lambda: Adam([P], eps=-1e-8), ValueError, "Invalid epsilon value"),
    (lambda: AdamW([P], weight_decay=-0.01), ValueError, "Invalid weight_decay value"),
    (lambda: Optimizer([P], {"lr": graphc.optim.optimizer.required}), ValueError,
     "didn't specify a value of required optimization parameter lr"),
]


@pytest.mark.parametrize("make, error, match", INVALID, ids=[m for _, _, m in INVALID])
def test_invalid_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_grad_of_the_wrong_shape():
    p = param([1.0, 2.0])
    p.grad = graphc.tensor([1.0, 2.0, 3.0], dtype=graphc.float64)
    with pytest.raises(ValueError, match=r"shape \(2,\) has a grad of shape \(3,\)"):
        SGD([p]).step()
