"""Adadelta: per-coordinate steps from running averages of squared gradients and updates."""

from __future__ import annotations

from typing import Any

from ..ops.functions import zeros_like
from .optimizer import Optimizer, ParamsT, add_scaled, add_scaled_, addcmul_, step_tensor


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012), as ``torch.optim.Adadelta``'s single-tensor implementation.

    For each parameter ``p`` with gradient ``g`` (negated when ``maximize``)::

        g = g + weight_decay * p
        v = rho * v + (1 - rho) * g * g
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta * delta
        p -= lr * delta

    State per parameter: ``"step"`` (0-d float32), ``"square_avg"`` (v), ``"acc_delta"``
    (u). ``foreach``, ``capturable`` and ``differentiable`` are accepted and change
    nothing. Example::

        opt = graphc.optim.Adadelta(model.parameters(), lr=1.0, rho=0.9)
    """

    def __init__(self, params: ParamsT, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0, foreach: bool | None = None, *, capturable: bool = False,
                 maximize: bool = False, differentiable: bool = False) -> None:
        defaults = {"lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay,
                    "maximize": maximize}
        self._check_options(defaults)
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any]) -> None:
        if not options["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {options['lr']}")
        if not 0.0 <= options["rho"] <= 1.0:
            raise ValueError(f"Invalid rho value: {options['rho']} (expected 0 <= rho <= 1)")
        if not options["eps"] >= 0.0:
            raise ValueError(f"Invalid epsilon value: {options['eps']}")
        if not options["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {options['weight_decay']}")

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, rho, eps, weight_decay = group["lr"], group["rho"], group["eps"], group["weight_decay"]
        for p in self._params_with_grad(group):
            grad = -p.grad if group["maximize"] else p.grad
            state = self.state[p]
            if "square_avg" not in state:
                state["step"] = step_tensor(state)
                state["square_avg"] = zeros_like(p)
                state["acc_delta"] = zeros_like(p)
            step_tensor(state).add_(1)
            if weight_decay != 0:
                grad = add_scaled(grad, p, weight_decay)
            square_avg, acc_delta = state["square_avg"], state["acc_delta"]
            addcmul_(square_avg.mul_(rho), grad, grad, 1 - rho)
            std = (square_avg + eps).sqrt_()
            delta = (acc_delta + eps).sqrt_().div_(std).mul_(grad)
            addcmul_(acc_delta.mul_(rho), delta, delta, 1 - rho)
            add_scaled_(p, delta, -lr)
