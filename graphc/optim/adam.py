"""Adam and AdamW: adaptive moment estimation, with L2 or decoupled weight decay."""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import dtype as dt
from ..creation import tensor
from ..ops.functions import maximum, zeros_like
from ..tensor import Tensor
from .fused import FusedGroups, check_fused_options, in_dtype, next_step
from .optimizer import Optimizer, ParamsT, times


class Adam(FusedGroups, Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam``'s single-tensor implementation.

    For each parameter ``p`` with gradient ``g`` (negated when ``maximize``), at step ``t``::

        g = g + weight_decay * p          (or p *= 1 - lr * weight_decay when decoupled)
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        v_hat = max(v_hat, v) with amsgrad, else v
        p -= lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

    State per parameter: ``"step"`` (a 0-d float32 tensor), ``"exp_avg"`` (m),
    ``"exp_avg_sq"`` (v) and, with amsgrad, ``"max_exp_avg_sq"``. ``fused=True`` updates each
    parameter group with one compiled program call (``graphc.optim.fused``), bitwise equal to
    the eager update, with the same state; ``foreach``, ``capturable`` and ``differentiable``
    are accepted and change nothing (``fused=True`` refuses ``foreach`` and ``differentiable``,
    as PyTorch does). Example::

        opt = graphc.optim.Adam(params, lr=1e-3, betas=(0.9, 0.999))
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "foreach": foreach,
                    "capturable": capturable, "differentiable": differentiable, "fused": fused,
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
        check_fused_options(options, type(self).__name__)

    def _step_group(self, group: dict[str, Any]) -> None:
        lr, weight_decay, amsgrad = group["lr"], group["weight_decay"], group["amsgrad"]
        beta1, beta2 = group["betas"]
        s = AdamScalars(weight_decay, 1 - lr * weight_decay, 1 - beta1, beta2, 1 - beta2, group["eps"])
        decay = None if weight_decay == 0 else "decoupled" if group["decoupled_weight_decay"] else "l2"
        params = list(self._params_with_grad(group))
        states = [self._state_of(p, amsgrad) for p in params]
        if group["fused"]:
            if params:
                self._run_fused(group, adam_update_all_, params, self._fused_grads(params),
                                [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
                                [st["max_exp_avg_sq"] for st in states] if amsgrad else None,
                                [st["step"] for st in states], self._corrections(group, states),
                                self._scalars_of(s), group["maximize"], decay)
            return
        for p, state in zip(params, states):
            state["step"].add_(1)
            adam_update_(p, p.grad, state["exp_avg"], state["exp_avg_sq"],
                         state["max_exp_avg_sq"] if amsgrad else None, s,
                         bias_correction(group, state["step"].item()),
                         maximize=group["maximize"], decay=decay)

    def _corrections(self, group: dict[str, Any], states: list[dict[str, Any]]) -> list:
        """Each parameter's bias corrections for its coming step, as 0-d tensors (one set per
        step count: parameters that started together share them)."""
        by_step: dict[float, BiasCorrection] = {}
        out = []
        for state in states:
            step = next_step(state["step"])
            if step not in by_step:
                by_step[step] = self._scalars_of(bias_correction(group, step))
            out.append(by_step[step])
        return out

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
    moments. The default ``weight_decay`` is 1e-2. ``fused=True`` as in ``Adam``. Example::

        opt = graphc.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As ``Optimizer.load_state_dict``; the weight decay stays decoupled (as in PyTorch)."""
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


class AdamScalars(NamedTuple):
    """The numbers an Adam update reads besides its bias corrections: Python floats in the
    eager step, 0-d tensors in the fused program."""

    weight_decay: Any
    decay: Any  # 1 - lr * weight_decay: decoupled weight decay's factor
    one_minus_beta1: Any
    beta2: Any
    one_minus_beta2: Any
    eps: Any


class BiasCorrection(NamedTuple):
    """The numbers that change with the step count ``t``."""

    step_size: Any  # -lr / (1 - beta1**t)
    sqrt_bc2: Any   # sqrt(1 - beta2**t)


def bias_correction(group: dict[str, Any], step: float) -> BiasCorrection:
    """Python floats, as in PyTorch's non-capturable path."""
    beta1, beta2 = group["betas"]
    return BiasCorrection(-group["lr"] / (1 - beta1 ** step), (1 - beta2 ** step) ** 0.5)


def adam_update_(p: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor,
                 max_exp_avg_sq: Tensor | None, s: AdamScalars, bc: BiasCorrection, *,
                 maximize: bool, decay: str | None) -> None:
    """Update ``p`` and its moments in place from ``grad`` (its step count is counted by the
    caller). ``decay`` is None, ``"l2"`` or ``"decoupled"``; ``max_exp_avg_sq`` is given with
    amsgrad."""
    if maximize:
        grad = -grad
    if decay == "decoupled":
        p.mul_(s.decay)
    elif decay == "l2":
        grad = grad + times(p, s.weight_decay)
    exp_avg.lerp_(grad, s.one_minus_beta1)
    exp_avg_sq.mul_(s.beta2).add_(times(grad * grad, s.one_minus_beta2))
    second_moment = exp_avg_sq
    if max_exp_avg_sq is not None:
        second_moment = max_exp_avg_sq.copy_(maximum(max_exp_avg_sq, exp_avg_sq))
    denom = (second_moment.sqrt() / bc.sqrt_bc2).add_(s.eps)
    p.add_(exp_avg / denom * bc.step_size)


def adam_update_all_(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                     exp_avg_sqs: list[Tensor], max_exp_avg_sqs: list[Tensor] | None,
                     steps: list[Tensor], corrections: list[BiasCorrection], s: AdamScalars,
                     maximize: bool, decay: str | None) -> None:
    """Adam's update of a parameter group, in place: the body of the fused program (the
    numbers are 0-d float64 tensors; ``max_exp_avg_sqs`` is None without amsgrad)."""
    for i, p in enumerate(params):
        steps[i].add_(1)
        adam_update_(p, grads[i], exp_avgs[i], exp_avg_sqs[i],
                     max_exp_avg_sqs[i] if max_exp_avg_sqs is not None else None,
                     in_dtype(s, p.dtype), in_dtype(corrections[i], p.dtype),
                     maximize=maximize, decay=decay)
