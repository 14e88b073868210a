"""Adagrad: per-coordinate steps scaled by the root of the summed squared gradients."""

from __future__ import annotations

from typing import Any

from .. import dtype as dt
from ..creation import tensor
from ..ops.functions import full_like
from .optimizer import Optimizer, ParamsT, add_scaled, addcdiv_, addcmul_, step_tensor


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011), as ``torch.optim.Adagrad``'s single-tensor implementation.

    For each parameter ``p`` with gradient ``g`` (negated when ``maximize``), at step ``t``::

        g = g + weight_decay * p
        s = s + g * g
        p -= lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)

    State per parameter, made at construction as in PyTorch: ``"step"`` (0-d float32) and
    ``"sum"`` (s, starting at ``initial_accumulator_value``). Sparse gradients do not
    exist in graphc; ``foreach``, ``differentiable`` and ``fused`` are accepted and change
    nothing. Example::

        opt = graphc.optim.Adagrad(model.parameters(), lr=1e-2, lr_decay=1e-4)
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0, eps: float = 1e-10,
                 foreach: bool | None = None, *, maximize: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value, "maximize": maximize}
        self._check_options(defaults)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["step"] = tensor(0.0, dtype=dt.float32)
                state["sum"] = full_like(p, group["initial_accumulator_value"])

    def _check_options(self, options: dict[str, Any]) -> None:
        for name, label in (("lr", "learning rate"), ("lr_decay", "lr_decay value"),
                            ("weight_decay", "weight_decay value"),
                            ("initial_accumulator_value", "initial_accumulator_value value"),
                            ("eps", "epsilon value")):
            if not options[name] >= 0.0:
                raise ValueError(f"Invalid {label}: {options[name]}")

    def share_memory(self) -> None:
        """PyTorch moves the sums to shared memory for Hogwild training; graphc tensors are
        not shared between processes, so this does nothing."""

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, lr_decay, eps, weight_decay = group["lr"], group["lr_decay"], group["eps"], group["weight_decay"]
        for p in self._params_with_grad(group):
            grad = -p.grad if group["maximize"] else p.grad
            state = self.state[p]
            if "sum" not in state:  # a parameter whose state was not loaded
                state["sum"] = full_like(p, group["initial_accumulator_value"])
            step_t = step_tensor(state)
            step_t.add_(1)
            step = step_t.item()
            if weight_decay != 0:
                grad = add_scaled(grad, p, weight_decay)
            clr = lr / (1 + (step - 1) * lr_decay)
            state_sum = addcmul_(state["sum"], grad, grad)
            std = state_sum.sqrt().add_(eps)
            addcdiv_(p, grad, std, -clr)
