"""RMSprop: gradient steps divided by a running root-mean-square of the gradients."""

from __future__ import annotations

from typing import Any

from ..ops.functions import zeros_like
from .optimizer import (Optimizer, ParamsT, add_scaled, add_scaled_, addcdiv_, addcmul_, lerp_,
                        step_tensor)


class RMSprop(Optimizer):
    """RMSprop (Hinton), as ``torch.optim.RMSprop``'s single-tensor implementation.

    For each parameter ``p`` with gradient ``g`` (negated when ``maximize``)::

        g = g + weight_decay * p
        v = alpha * v + (1 - alpha) * g * g
        avg = sqrt(v - m * m) + eps   with centered (m = lerp(m, g, 1 - alpha)),
              sqrt(v) + eps           otherwise
        b = momentum * b + g / avg;  p -= lr * b      with momentum > 0,
        p -= lr * g / avg                              otherwise

    State per parameter: ``"step"`` (0-d float32), ``"square_avg"`` (v), and
    ``"momentum_buffer"`` (b) with momentum, ``"grad_avg"`` (m) when centered.
    ``foreach``, ``capturable`` and ``differentiable`` are accepted and change nothing.
    Example::

        opt = graphc.optim.RMSprop(model.parameters(), lr=1e-2, alpha=0.99, momentum=0.9)
    """

    def __init__(self, params: ParamsT, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False,
                 capturable: bool = False, foreach: bool | None = None, maximize: bool = False,
                 differentiable: bool = False) -> None:
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                    "momentum": momentum, "centered": centered, "maximize": maximize}
        self._check_options(defaults)
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any]) -> None:
        for name, label in (("lr", "learning rate"), ("eps", "epsilon value"),
                            ("momentum", "momentum value"), ("weight_decay", "weight_decay value"),
                            ("alpha", "alpha value")):
            if not options[name] >= 0.0:
                raise ValueError(f"Invalid {label}: {options[name]}")

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        weight_decay, momentum, centered = group["weight_decay"], group["momentum"], group["centered"]
        for p in self._params_with_grad(group):
            grad = -p.grad if group["maximize"] else p.grad
            state = self._state_of(p, momentum, centered)
            state["step"].add_(1)
            if weight_decay != 0:
                grad = add_scaled(grad, p, weight_decay)
            square_avg = state["square_avg"]
            addcmul_(square_avg.mul_(alpha), grad, grad, 1 - alpha)
            if centered:
                grad_avg = lerp_(state["grad_avg"], grad, 1 - alpha)
                avg = addcmul_(square_avg.clone(), grad_avg, grad_avg, -1).sqrt_()
            else:
                avg = square_avg.sqrt()
            avg.add_(eps)
            if momentum > 0:
                buf = state["momentum_buffer"]
                addcdiv_(buf.mul_(momentum), grad, avg)
                add_scaled_(p, buf, -lr)
            else:
                addcdiv_(p, grad, avg, -lr)

    def _state_of(self, p, momentum: float, centered: bool) -> dict[str, Any]:
        """The parameter's state, created on its first step; buffers for options switched on
        later are added then (zeros)."""
        state = self.state[p]
        step_tensor(state)
        if "square_avg" not in state:
            state["square_avg"] = zeros_like(p)
        if momentum > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = zeros_like(p)
        if centered and "grad_avg" not in state:
            state["grad_avg"] = zeros_like(p)
        return state
