"""graphc.optim against torch.optim: the same parameters and gradients, step by step.

Runs only when torch is installed; ``test_optim.py`` needs no torch.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc

torch = pytest.importorskip("torch")

STEPS = 5
# gradients shrink and grow between steps, so AMSGrad's running maximum differs from Adam
SCALES = [3.0, 0.1, 1.0, 0.05, 2.0]
SHAPES = [(3, 4), (4,), (2,)]
TOLERANCE = {"float32": 1e-5, "float64": 1e-6}

CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1, "maximize": True}),
    ("SGD", {"lr": 0.05, "weight_decay": 0.2, "nesterov": True, "momentum": 0.9}),
    ("Adam", {}),
    ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    ("Adam", {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    ("AdamW", {}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "betas": (0.5, 0.9), "maximize": True}),
]

GROUPS = {  # two parameter groups with different options
    "SGD": ({"lr": 0.1, "momentum": 0.9}, {"lr": 0.01, "momentum": 0.5, "nesterov": True}),
    "Adam": ({"lr": 0.01}, {"lr": 0.1, "amsgrad": True, "betas": (0.5, 0.9)}),
    "AdamW": ({"lr": 0.01, "weight_decay": 0.3}, {"lr": 0.05}),
}


def case_id(case) -> str:
    name, options = case
    return name + "".join(f"-{k}={v}" for k, v in options.items())


def gradients(dtype: str, seed: int) -> list[list[np.ndarray | None]]:
    """One gradient per parameter and step; the last parameter has none on steps 1 and 3."""
    rng = np.random.default_rng(seed)
    steps = []
    for step, scale in enumerate(SCALES[:STEPS]):
        grads = [(scale * rng.standard_normal(s)).astype(dtype) for s in SHAPES]
        if step in (1, 3):
            grads[-1] = None
        steps.append(grads)
    return steps


class Pair:
    """The same optimizer over the same parameters in graphc and in torch."""

    def __init__(self, name: str, groups: list[dict], dtype: str, seed: int = 0):
        rng = np.random.default_rng(seed + 100)
        self.start = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        self.g = [graphc.from_numpy(a.copy()).requires_grad_() for a in self.start]
        self.t = [torch.from_numpy(a.copy()).requires_grad_() for a in self.start]
        # the first group holds every parameter but the last, the second group the last one
        split = [(0, len(SHAPES) - 1), (len(SHAPES) - 1, len(SHAPES))] if len(groups) == 2 \
            else [(0, len(SHAPES))]
        self.opt_g = getattr(graphc.optim, name)(
            [{"params": self.g[a:b], **options} for (a, b), options in zip(split, groups)])
        self.opt_t = getattr(torch.optim, name)(
            [{"params": self.t[a:b], **options} for (a, b), options in zip(split, groups)])

    def step(self, grads: list[np.ndarray | None]) -> None:
        for pg, pt, grad in zip(self.g, self.t, grads):
            pg.grad = None if grad is None else graphc.from_numpy(grad.copy())
            pt.grad = None if grad is None else torch.from_numpy(grad.copy())
        self.opt_g.step()
        self.opt_t.step()

    def assert_close(self, tol: float, where: str) -> None:
        for i, (pg, pt) in enumerate(zip(self.g, self.t)):
            np.testing.assert_allclose(pg.detach().numpy(), pt.detach().numpy(), rtol=tol, atol=tol,
                                       err_msg=f"parameter {i} {where}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_steps_match_torch(case, dtype):
    name, options = case
    pair = Pair(name, [options], dtype)
    for step, grads in enumerate(gradients(dtype, seed=1)):
        pair.step(grads)
        pair.assert_close(TOLERANCE[dtype], f"after step {step + 1}")
    for pg, start in zip(pair.g, pair.start):  # the run moved every parameter
        assert not np.allclose(pg.detach().numpy(), start)
        assert pg.dtype.name == dtype and pg.is_leaf


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(GROUPS))
def test_two_param_groups_match_torch(name, dtype):
    pair = Pair(name, list(GROUPS[name]), dtype, seed=2)
    for step, grads in enumerate(gradients(dtype, seed=3)):
        pair.step(grads)
        pair.assert_close(TOLERANCE[dtype], f"after step {step + 1}")


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_state_dict_matches_torch_format(name):
    pair = Pair(name, list(GROUPS[name]), "float64", seed=4)
    for grads in gradients("float64", seed=5):
        pair.step(grads)
    ours, theirs = pair.opt_g.state_dict(), pair.opt_t.state_dict()
    assert [g["params"] for g in ours["param_groups"]] == [g["params"] for g in theirs["param_groups"]]
    for group, torch_group in zip(ours["param_groups"], theirs["param_groups"]):
        assert {k: v for k, v in group.items() if k != "params"} == \
            {k: torch_group[k] for k in group if k != "params"}
    assert sorted(ours["state"]) == sorted(theirs["state"])
    for index, state in ours["state"].items():
        assert sorted(state) == sorted(theirs["state"][index])
        for key, value in state.items():
            expected = theirs["state"][index][key]
            assert value.dtype.name == str(expected.dtype).removeprefix("torch.")
            np.testing.assert_allclose(value.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6,
                                       err_msg=f"state[{index}][{key!r}]")
