"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

from typing import Any

from .. import dtype as dt
from ..creation import tensor
from ..ops.functions import maximum, zeros_like
from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``'s single-tensor implementation.

    For each parameter ``p`` with gradient ``g`` (negated when ``maximize``), at step ``t``::

        g = g + weight_decay * p          (or p *= 1 - lr * weight_decay when decoupled)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        v_hat = max(v_hat, v) with amsgrad, else v
        p -= lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    State per parameter: ``"step"`` (a 0-d float32 tensor), ``"exp_avg"`` (m),
    ``"exp_avg_sq"`` (v) and, with amsgrad, ``"max_exp_avg_sq"``. Example::

        opt = graphc.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999))
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize,
                    "decoupled_weight_decay": decoupled_weight_decay}
        self._check_options(defaults)
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any]) -> None:
        if not options["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {options['lr']}")
        if not options["eps"] >= 0.0:
            raise ValueError(f"Invalid epsilon value: {options['eps']}")
        betas = options["betas"]
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta} (expected 0 <= beta < 1)")
        if not options["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {options['weight_decay']}")

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, eps, weight_decay, amsgrad = group["lr"], group["eps"], group["weight_decay"], group["amsgrad"]
        beta1, beta2 = group["betas"]
        for p in self._params_with_grad(group):
            grad = -p.grad if group["maximize"] else p.grad
            state = self._state_of(p, amsgrad)
            step_t, exp_avg, exp_avg_sq = state["step"], state["exp_avg"], state["exp_avg_sq"]
            step_t.add_(1)
            if weight_decay != 0:
                if group["decoupled_weight_decay"]:
                    p.mul_(1 - lr * weight_decay)
                else:
                    grad = grad.add(p, alpha=weight_decay)

            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).add_(grad * grad, alpha=1 - beta2)

            # the bias corrections are Python floats, as in PyTorch's non-capturable path
            step = step_t.item()
            bias_correction1 = 1 - beta1 ** step
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            second_moment = exp_avg_sq
            if amsgrad:
                second_moment = state["max_exp_avg_sq"]
                second_moment.copy_(maximum(second_moment, exp_avg_sq))
            denom = (second_moment.sqrt() / bias_correction2_sqrt).add_(eps)
            p.add_(exp_avg / denom, alpha=-lr / bias_correction1)

    def _state_of(self, p: Tensor, amsgrad: bool) -> dict[str, Any]:
        """The parameter's state, created on its first step (zero moments, step 0)."""
        state = self.state[p]
        if not state:
            state["step"] = tensor(0.0, dtype=dt.float32)
            state["exp_avg"] = zeros_like(p)
            state["exp_avg_sq"] = zeros_like(p)
        elif not isinstance(state["step"], Tensor):  # a number, from a hand-written state dict
            state["step"] = tensor(float(state["step"]), dtype=dt.float32)
        if amsgrad and "max_exp_avg_sq" not in state:  # also when amsgrad is switched on later
            state["max_exp_avg_sq"] = zeros_like(p)
        return state


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``.

    Before the Adam update, ``p *= 1 - lr * weight_decay``; the decay never enters the
    moments. The default ``weight_decay`` is 1e-2. Example::

        opt = graphc.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``Optimizer.load_state_dict``; the weight decay stays decoupled (as in PyTorch)."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
