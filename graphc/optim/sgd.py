"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..ops.functions import where, zeros_like
from ..tensor import Tensor
from .fused import FusedGroups, check_fused_options, in_dtype
from .optimizer import Optimizer, ParamsT, times


class SGD(FusedGroups, Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g`` (negated when ``maximize``)::

        g = g + weight_decay * p
        buf = g (first step)  or  momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov)  or  buf
        p -= lr * g

    The momentum buffer is ``state[p]["momentum_buffer"]``. ``fused=True`` updates each
    parameter group with one compiled program call (``graphc.optim.fused``), bitwise equal to
    the eager update, with the same state; ``foreach`` and ``differentiable`` are accepted and
    change nothing (``fused=True`` refuses them, as PyTorch does). Example::

        opt = graphc.optim.SGD([w, b], lr=0.1, momentum=0.9)
        opt.zero_grad(); loss_fn(w, b).backward(); opt.step()
    """

    def __init__(self, params: ParamsT, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening,
                    "weight_decay": weight_decay, "nesterov": nesterov, "maximize": maximize,
                    "foreach": foreach, "differentiable": differentiable, "fused": fused}
        self._check_options(defaults)
        super().__init__(params, defaults)

    def _check_options(self, options: dict[str, Any]) -> None:
        if not options["lr"] >= 0.0:
            raise ValueError(f"Invalid learning rate: {options['lr']}")
        if not options["momentum"] >= 0.0:
            raise ValueError(f"Invalid momentum value: {options['momentum']}")
        if not options["weight_decay"] >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {options['weight_decay']}")
        if options["nesterov"] and (options["momentum"] <= 0 or options["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening "
                             f"(got momentum={options['momentum']}, dampening={options['dampening']})")
        check_fused_options(options, "SGD")

    def _step_group(self, group: dict[str, Any]) -> None:
        s = SGDScalars(-group["lr"], group["weight_decay"], group["momentum"], 1 - group["dampening"])
        flags = {"momentum": group["momentum"] != 0, "maximize": group["maximize"],
                 "decay": group["weight_decay"] != 0, "nesterov": group["nesterov"]}
        params = list(self._params_with_grad(group))
        if group["fused"]:
            if params:
                self._run_fused(group, sgd_update_all_, params, self._fused_grads(params),
                                *self._fused_buffers(params, flags["momentum"]),
                                self._scalars_of(s), flags)
            return
        for p in params:
            buf = self.state[p].get("momentum_buffer") if flags["momentum"] else None
            buf = sgd_update_(p, p.grad, buf, s, **flags)
            if buf is not None:
                self.state[p]["momentum_buffer"] = buf

    def _fused_buffers(self, params: list[Tensor], momentum: bool) -> tuple[list | None, list | None]:
        """The momentum buffers (new ones are zeros) and, for each, a 0-d bool tensor saying it
        is new; (None, None) without momentum."""
        if not momentum:
            return None, None
        bufs, firsts = [], []
        for p in params:
            state = self.state[p]
            firsts.append(self._scalar("momentum_buffer" not in state))
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = zeros_like(p)
            bufs.append(state["momentum_buffer"])
        return bufs, firsts


class SGDScalars(NamedTuple):
    """The numbers an SGD update reads: Python floats in the eager step, 0-d tensors in the
    fused program."""

    neg_lr: Any
    weight_decay: Any
    momentum: Any
    dampened: Any  # 1 - dampening


def sgd_update_(p: Tensor, grad: Tensor, buf: Tensor | None, s: SGDScalars, *, momentum: bool,
                maximize: bool, decay: bool, nesterov: bool, first: Tensor | None = None) -> Tensor | None:
    """Update ``p`` in place from ``grad``; return its momentum buffer (None without momentum).

    On a buffer's first step it takes the gradient as it is. Eagerly that step has no buffer
    (``buf`` is None) and makes one; in the fused program every buffer exists (a new one is
    zeros) and ``first`` (a 0-d bool tensor) selects, so one program serves every step.
    """
    if maximize:
        grad = -grad
    if decay:
        grad = grad + times(p, s.weight_decay)
    if momentum:
        if first is not None:
            buf.copy_(where(first, grad, buf * s.momentum + times(grad, s.dampened)))
        elif buf is None:
            buf = grad.clone()
        else:
            buf.mul_(s.momentum).add_(times(grad, s.dampened))
        grad = grad + times(buf, s.momentum) if nesterov else buf
    p.add_(grad * s.neg_lr)
    return buf


def sgd_update_all_(params: list[Tensor], grads: list[Tensor], bufs: list[Tensor] | None,
                    firsts: list[Tensor] | None, s: SGDScalars, flags: dict[str, bool]) -> None:
    """SGD's update of a parameter group, in place: the body of the fused program (``s`` holds
    0-d float64 tensors; ``bufs`` and ``firsts`` are None without momentum; ``flags`` are
    ``sgd_update_``'s)."""
    for i, p in enumerate(params):
        sgd_update_(p, grads[i], bufs[i] if bufs else None, in_dtype(s, p.dtype),
                    first=firsts[i] if firsts else None, **flags)
