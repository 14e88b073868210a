"""The schedules that are a formula in the epoch number: LambdaLR, StepLR, MultiStepLR,
ConstantLR, LinearLR, ExponentialLR, PolynomialLR, CosineAnnealingLR (each with its
chainable form and its closed form), and MultiplicativeLR, the lambda-driven recurrence."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..optimizer import Optimizer
from .base import LRScheduler, _callable_state, _group_lrs, _load_callable_state


def _lambdas(optimizer: Optimizer, lr_lambda: Any) -> list[Callable[[int], float]]:
    if not isinstance(lr_lambda, (list, tuple)):
        return [lr_lambda] * len(optimizer.param_groups)
    if len(lr_lambda) != len(optimizer.param_groups):
        raise ValueError(f"Expected {len(optimizer.param_groups)} lr_lambdas, but got {len(lr_lambda)}")
    return list(lr_lambda)


class _LambdaScheduler(LRScheduler):
    """A schedule driven by ``lr_lambdas`` (one function per group). In the state dict, plain
    functions are not saved; callable objects save their ``__dict__``."""

    _lambdas_checked: bool = False  # whether the constructor rejects non-callables

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float] | Sequence[Callable],
                 last_epoch: int = -1) -> None:
        self.optimizer = optimizer
        self.lr_lambdas = _lambdas(optimizer, lr_lambda)
        if self._lambdas_checked:
            for fn in self.lr_lambdas:
                if not callable(fn):
                    raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        return self._state_saving_each("lr_lambdas", _callable_state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_state_each(state_dict, "lr_lambdas", _load_callable_state)


class LambdaLR(_LambdaScheduler):
    """lr = initial lr × ``lr_lambda(epoch)`` (one function, or one per group)::

        LambdaLR(opt, lr_lambda=lambda epoch: 0.95 ** epoch)
    """

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_LambdaScheduler):
    """lr ×= ``lr_lambda(epoch)`` at every step after the first."""

    _lambdas_checked = True

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        if self._is_initial:
            return _group_lrs(self.optimizer)
        return [group["lr"] * fn(self.last_epoch)
                for fn, group in zip(self.lr_lambdas, self.optimizer.param_groups)]


class StepLR(LRScheduler):
    """lr ×= ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return _group_lrs(self.optimizer)
        return self._scale_group_lrs(self.gamma)

    def _get_closed_form_lr(self) -> list[float]:
        return self._scale_base_lrs(self.gamma ** (self.last_epoch // self.step_size))


class MultiStepLR(LRScheduler):
    """lr ×= ``gamma`` at each epoch in ``milestones`` (a milestone given twice counts twice)."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        if self.last_epoch not in self.milestones:
            return _group_lrs(self.optimizer)
        return self._scale_group_lrs(self.gamma ** self.milestones[self.last_epoch])

    def _get_closed_form_lr(self) -> list[float]:
        passed = bisect_right(sorted(self.milestones.elements()), self.last_epoch)
        return self._scale_base_lrs(self.gamma ** passed)


class ConstantLR(LRScheduler):
    """lr × ``factor`` for the first ``total_iters`` epochs, then the lr itself."""

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5,
                 last_epoch: int = -1) -> None:
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        if self.last_epoch == 0:
            return self._scale_group_lrs(self.factor)
        if self.last_epoch != self.total_iters:
            return _group_lrs(self.optimizer)
        return self._scale_group_lrs(1.0 / self.factor)

    def _get_closed_form_lr(self) -> list[float]:
        done = self.last_epoch >= self.total_iters
        return self._scale_base_lrs(self.factor + done * (1 - self.factor))


class LinearLR(LRScheduler):
    """lr × a factor moving linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` epochs, then constant."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less "
                             "or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        if self.last_epoch == 0:
            return self._scale_group_lrs(self.start_factor)
        if self._is_initial or self.last_epoch > self.total_iters:
            return _group_lrs(self.optimizer)
        span = self.end_factor - self.start_factor
        # the ratio of this epoch's factor to the previous one's
        return self._scale_group_lrs(
            1.0 + span / (self.total_iters * self.start_factor + (self.last_epoch - 1) * span))

    def _get_closed_form_lr(self) -> list[float]:
        span = self.end_factor - self.start_factor
        done = min(self.total_iters, self.last_epoch)
        return self._scale_base_lrs(self.start_factor + span * done / self.total_iters)


class ExponentialLR(LRScheduler):
    """lr ×= ``gamma`` every epoch."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        if self._is_initial:
            return _group_lrs(self.optimizer)
        return self._scale_group_lrs(self.gamma)

    def _get_closed_form_lr(self) -> list[float]:
        return self._scale_base_lrs(self.gamma ** self.last_epoch)


class PolynomialLR(LRScheduler):
    """lr = initial lr × (1 - epoch / ``total_iters``) ** ``power``, then 0 (reached at
    ``total_iters``)."""

    def __init__(self, optimizer: Optimizer, total_iters: int = 5, power: float = 1.0,
                 last_epoch: int = -1) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        if self._is_initial or self.last_epoch > self.total_iters:
            return _group_lrs(self.optimizer)
        n = self.total_iters
        return self._scale_group_lrs(
            ((1.0 - self.last_epoch / n) / (1.0 - (self.last_epoch - 1) / n)) ** self.power)

    def _get_closed_form_lr(self) -> list[float]:
        done = min(self.total_iters, self.last_epoch)
        return self._scale_base_lrs((1.0 - done / self.total_iters) ** self.power)


def _cosine_annealed(base_lrs: Sequence[float], eta_min: float, t: float, period: float) -> list[float]:
    """Each base lr annealed to ``eta_min`` along half a cosine, at ``t`` of ``period``
    (shared with CosineAnnealingWarmRestarts)."""
    cos = 1 + math.cos(math.pi * t / period)
    return [eta_min + (base - eta_min) * cos / 2 for base in base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr follows half a cosine from the initial lr down to ``eta_min`` over ``T_max``
    epochs (and back up over the next ``T_max``: the curve is periodic).

    The chainable form is a recurrence on the current lr, as in PyTorch, so another
    scheduler's changes carry through; it drifts from the closed form by rounding only.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        self._warn_if_called_by_user()
        groups = self.optimizer.param_groups
        eta_min, T_max, epoch = self.eta_min, self.T_max, self.last_epoch
        if self._is_initial:
            return _group_lrs(self.optimizer)
        if self._step_count == 1 and epoch > 0:  # resumed: start from the closed form
            return self._get_closed_form_lr()
        if (epoch - 1 - T_max) % (2 * T_max) == 0:  # leaving the minimum: the rising half
            return [group["lr"] + (base - eta_min) * (1 - math.cos(math.pi / T_max)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        ratio = (1 + math.cos(math.pi * epoch / T_max)) / (1 + math.cos(math.pi * (epoch - 1) / T_max))
        return [ratio * (group["lr"] - eta_min) + eta_min for group in groups]

    def _get_closed_form_lr(self) -> list[float]:
        return _cosine_annealed(self.base_lrs, self.eta_min, self.last_epoch, self.T_max)
