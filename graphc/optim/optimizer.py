"""The optimizer base class: parameter groups, per-parameter state, and state dicts.

An optimizer holds ``param_groups`` (a list of dicts, each with ``"params"`` and every
option) and ``state`` (a dict keyed by parameter tensor). Subclasses implement
``_step_group(group)``; ``step`` runs the closure under grad mode and every group's update
under ``no_grad``, writing into the parameters in place, as ``torch.optim`` does.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from .. import dtype as dt
from ..autograd import enable_grad, no_grad
from ..creation import tensor
from ..tensor import Tensor

ParamsT = Iterable[Tensor] | Iterable[dict[str, Any]]


class _RequiredOption:
    """The default of an option every parameter group must set itself."""

    def __repr__(self) -> str:
        return "<required option>"


required = _RequiredOption()


class Optimizer:
    """Base class of all optimizers (PyTorch's ``torch.optim.Optimizer``).

    ``params`` is an iterable of tensors, or of dicts (parameter groups) that hold
    ``"params"`` and may override any option of ``defaults``::

        opt = graphc.optim.SGD([{"params": [w]}, {"params": [b], "lr": 0.1}], lr=0.01)
    """

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            "or dicts, but got a Tensor; wrap it in a list: [tensor]")
        self.defaults = defaults
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        groups = _ordered(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join(lines) + "\n)"

    # ---- parameter groups -------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (unset options take the defaults).

        Raises TypeError for a non-tensor parameter, ValueError for a parameter that is not a
        floating-point leaf, one given twice, or an invalid option.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        params = _ordered(params)
        where = f"parameter group {len(self.param_groups)}"
        if not params:
            raise ValueError(f"optimizer got an empty parameter list in {where}")
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but parameter {i} of {where} "
                                f"is a {type(p).__name__}")
            if not p.is_floating_point():
                raise ValueError(f"optimizer can only optimize floating-point Tensors, but parameter "
                                 f"{i} of {where} has dtype {p.dtype.name}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError(f"can't optimize a non-leaf Tensor (parameter {i} of {where}); "
                                 "pass the leaf it was computed from, or a .detach()ed copy")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"optimizer got a parameter more than once in {where}")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")

        group = {**param_group, "params": params}
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization "
                                 f"parameter {name}")
            group.setdefault(name, default)
        self._check_options(group)
        self.param_groups.append(group)

    def _check_options(self, options: dict[str, Any]) -> None:
        """Raise ValueError for an invalid option (subclasses check their hyperparameters)."""

    # ---- the update ------------------------------------------------------------------
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a ``.grad``; return the closure's loss (or None).

        ``closure`` re-evaluates the model and returns the loss; it runs with grad enabled,
        even when ``step`` is called inside ``no_grad``. The update itself is not recorded.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _step_group(group) or step()")

    def _params_with_grad(self, group: dict[str, Any]) -> Iterator[Tensor]:
        """The group's parameters whose ``.grad`` is set, after checking the grad's shape."""
        for p in group["params"]:
            if p.grad is None:
                continue
            if tuple(p.grad.shape) != tuple(p.shape):
                raise ValueError(f"{type(self).__name__}.step: a parameter of shape {tuple(p.shape)} "
                                 f"has a grad of shape {tuple(p.grad.shape)}")
            yield p

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients: drop them (``set_to_none=True``) or fill them with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                    continue
                if p.grad.grad_fn is not None:  # a grad built with create_graph=True
                    p.grad = p.grad.detach()
                else:
                    p.grad.requires_grad_(False)
                p.grad.zero_()

    # ---- state dicts -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The state in PyTorch's format, parameters named by their index across groups::

            {"state": {0: {"momentum_buffer": tensor}, ...},
             "param_groups": [{"lr": 0.1, ..., "params": [0, 1]}, {"lr": 0.01, ..., "params": [2]}]}

        As in PyTorch, the state tensors are the optimizer's own, not copies: steps taken after
        this call change them. Use ``copy.deepcopy`` to keep a snapshot.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for key, values in self.state.items():
            if not isinstance(key, Tensor):  # loaded state of no known parameter: kept as is
                state[key] = values
            elif id(key) in index:
                state[index[id(key)]] = dict(values)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load options and state saved by ``state_dict()``; the tensors are copied.

        The groups must match this optimizer's in number and size; saved options replace the
        groups' options (and are checked). Floating-point state tensors (except ``"step"``)
        are cast to their parameter's dtype, as in PyTorch.
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups: "
                             f"{len(saved_groups)}, but the optimizer has {len(self.param_groups)}")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"loaded state dict contains a parameter group that doesn't match the "
                                 f"size of optimizer's group: group {i} has {len(saved['params'])} "
                                 f"parameters in the state dict and {len(group['params'])} here")
        param_of = {index: p for group, saved in zip(self.param_groups, saved_groups)
                    for index, p in zip(saved["params"], group["params"])}

        state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        for index, values in state_dict["state"].items():
            p = param_of.get(index)
            if p is None:  # state of no known parameter: kept, as PyTorch does
                state[index] = copy.deepcopy(values)
            else:
                state[p] = {key: _copied(value, key, p) for key, value in values.items()}
        groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            options = copy.deepcopy({k: v for k, v in saved.items() if k != "params"})
            groups.append({**group, **options, "params": group["params"]})
            self._check_options(groups[-1])
        self.param_groups = groups
        self.state = state


def _ordered(params: Iterable) -> list:
    if isinstance(params, (set, frozenset)):
        raise TypeError("optimizer parameters need to be organized in ordered collections, but the "
                        "ordering of tensors in sets will change between runs; use a list instead")
    return list(params)


def _copied(value: Any, key: str, param: Tensor) -> Any:
    if not isinstance(value, Tensor):
        return copy.deepcopy(value)
    value = value.detach().clone()
    if key != "step" and value.is_floating_point() and value.dtype is not param.dtype:
        value = value.to(param.dtype)
    return value


# PyTorch's pointwise updates with its rounding. Its vectorised CPU kernels compute
# ``add(x, alpha=a)``, ``addcmul`` and ``lerp`` with a fused multiply-add (one rounding),
# and multiply by the scalar (cast to the tensor's dtype) before the second tensor. For
# float32 an FMA is exact here: the product of two float32 values is exact in float64, so
# only the final add rounds (to float64, then float32: a double rounding that differs from
# one rounding only when the float64 sum lands on a float32 tie). Float64 falls back to two
# roundings (a product and a sum).

def _fma(x: Tensor, y: Tensor | float, z: Tensor) -> Tensor:
    """``x * y + z`` with one rounding where possible (a new tensor of ``z``'s dtype)."""
    if z.dtype is dt.float32 and x.dtype is dt.float32:
        y64 = float(np.float32(y)) if not isinstance(y, Tensor) else y.double()
        return (x.double() * y64 + z.double()).to(dt.float32)
    return z + x * y


def add_scaled(t: Tensor, x: Tensor, alpha: float) -> Tensor:
    """``t.add(x, alpha=alpha)`` as PyTorch rounds it (a new tensor)."""
    return _fma(x, alpha, t)


def add_scaled_(t: Tensor, x: Tensor, alpha: float) -> Tensor:
    """``t.add_(x, alpha=alpha)`` as PyTorch rounds it."""
    return t.copy_(_fma(x, alpha, t))


def addcmul_(t: Tensor, t1: Tensor, t2: Tensor, value: float = 1.0) -> Tensor:
    """``t.addcmul_(t1, t2, value=value)``: ``t += value * t1 * t2``."""
    return t.copy_(_fma(t1 if value == 1 else t1 * value, t2, t))


def addcdiv_(t: Tensor, t1: Tensor, t2: Tensor, value: float = 1.0) -> Tensor:
    """``t.addcdiv_(t1, t2, value=value)``: ``t += value * t1 / t2`` (no FMA in PyTorch)."""
    return t.add_((t1 if value == 1 else t1 * value) / t2)


def lerp_(t: Tensor, end: Tensor, weight: float) -> Tensor:
    """``t.lerp_(end, weight)``: from ``t`` for small weights, from ``end`` for large ones."""
    diff = end - t
    if abs(weight) < 0.5:
        return t.copy_(_fma(diff, weight, t))
    return t.copy_(_fma(diff, -(1 - weight), end))


def times(t: Tensor, a: Tensor | float) -> Tensor:
    """``t * a``, where a Python 1 is skipped as ``t.add_(x, alpha=1)`` skips it (the same bits
    either way: the skip saves an eager op; ``a`` may be a 0-d tensor in a fused program)."""
    return t if type(a) in (int, float) and a == 1 else t * a


def step_tensor(state: dict[str, Any]) -> Tensor:
    """``state["step"]`` as the 0-d float32 tensor PyTorch keeps (a number from a hand-made
    state dict is converted)."""
    step = state.get("step", 0.0)
    if not isinstance(step, Tensor):
        step = state["step"] = tensor(float(step), dtype=dt.float32)
    return step
