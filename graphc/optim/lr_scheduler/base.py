"""The scheduler base class, ``LRScheduler``, and what every schedule shares: the
per-group argument rule, the optimizer-step tracking behind the call-order warning, and
the one place that writes lrs into the parameter groups."""

from __future__ import annotations

import types
import warnings
import weakref
from collections.abc import Callable
from functools import wraps
from typing import Any

from ..optimizer import Optimizer

_EPOCH_DEPRECATION = ("The epoch parameter in `scheduler.step()` was not necessary and is being "
                     "deprecated where possible. Please use `scheduler.step()` to step the "
                     "scheduler. During the deprecation, if epoch is different from None, the "
                     "closed form is used instead of the new chainable form, where available.")


def _require_optimizer(optimizer: Any) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
    return optimizer


def _per_group(name: str, optimizer: Optimizer, value: Any) -> list:
    """One value per parameter group: a list/tuple of that length, or one value repeated."""
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{name} must have the same length as optimizer.param_groups. {name} "
                             f"has {len(value)} values, param_groups has "
                             f"{len(optimizer.param_groups)}.")
        return list(value)
    return [value] * len(optimizer.param_groups)


def _group_lrs(optimizer: Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


def _callable_state(fn: Callable | None) -> dict[str, Any] | None:
    """What a state dict keeps of a user function: nothing for a plain function (it cannot
    be saved), the ``__dict__`` of a callable object."""
    return None if fn is None or isinstance(fn, types.FunctionType) else fn.__dict__.copy()


def _load_callable_state(fn: Callable | None, state: dict[str, Any] | None) -> None:
    if state is not None:
        fn.__dict__.update(state)


def _track_optimizer_steps(optimizer: Optimizer) -> None:
    """Wrap ``optimizer.step`` once so the scheduler can tell whether it ran before its own
    first ``step()`` (the order PyTorch 1.1 and later expect)."""
    if hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        return
    owner = weakref.ref(optimizer)  # no cycle: the bound method is not stored on the instance
    step = getattr(optimizer.step, "__func__", type(optimizer).step)
    own = step is type(optimizer).step  # the class's: looked up per call (a compiled step
    # being traced replaces it for a moment, to record the call instead of running it)

    @wraps(step)
    def counted_step(*args: Any, **kwargs: Any) -> Any:
        opt = owner()
        opt._opt_called = True
        return (type(opt).step if own else step)(opt, *args, **kwargs)

    counted_step._wrapped_by_lr_sched = True
    optimizer.step = counted_step


class LRScheduler:
    """Base class: holds ``optimizer``, ``base_lrs`` and ``last_epoch`` (the number of
    ``step()`` calls; 0 right after construction, which already applied epoch 0).

    Subclasses define ``get_lr()`` (the chainable form) and may define
    ``_get_closed_form_lr()``. Pass ``last_epoch=k`` to resume: the groups must then hold
    ``initial_lr`` (an optimizer loaded from a checkpoint does).
    """

    _get_lr_called_within_step: bool = False
    _is_initial: bool = False  # true during the step made by the constructor

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        self.optimizer = _require_optimizer(optimizer)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when "
                                   "resuming scheduler with last_epoch >= 0 (load the optimizer's "
                                   "state dict first, or start with last_epoch=-1)")
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        _track_optimizer_steps(optimizer)
        self._initial_step()

    def _initial_step(self) -> None:
        """The step the constructor makes: applies epoch ``last_epoch + 1``."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer: ``last_epoch``, ``base_lrs``, the settings..."""
        return self._state_except()

    def _state_except(self, *keys: str) -> dict[str, Any]:
        """``__dict__`` without the optimizer and ``keys`` (which the caller saves its own way)."""
        return {key: value for key, value in self.__dict__.items()
                if key != "optimizer" and key not in keys}

    def _state_saving_each(self, key: str, save: Callable[[Any], Any]) -> dict[str, Any]:
        """The state dict, with the list ``self.<key>`` saved item by item by ``save``."""
        state = self._state_except(key)
        state[key] = [save(item) for item in getattr(self, key)]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)

    def _load_state_each(self, state_dict: dict[str, Any], key: str,
                         load: Callable[[Any, Any], None]) -> None:
        """Undo ``_state_saving_each``: ``load(item, saved)`` for each item of ``self.<key>``
        (the items themselves are kept, not replaced)."""
        state = dict(state_dict)
        saved = state.pop(key)
        self.__dict__.update(state)
        for item, item_state in zip(getattr(self, key), saved):
            load(item, item_state)

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step()`` set, one per parameter group."""
        return self._last_lr

    def get_lr(self) -> list[float]:
        """The chainable form: the next lrs from the groups' current ones."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_lr()")

    def step(self, epoch: int | None = None) -> None:
        """Advance one epoch (``epoch`` jumps there instead: deprecated, closed form)."""
        if self._step_count == 1:
            if not hasattr(self.optimizer.step, "_wrapped_by_lr_sched"):
                warnings.warn("Seems like `optimizer.step()` has been overridden after learning "
                              "rate scheduler initialization. Please, make sure to call "
                              "`optimizer.step()` before `lr_scheduler.step()`.", UserWarning,
                              stacklevel=2)
            elif not getattr(self.optimizer, "_opt_called", False):
                warnings.warn("Detected call of `lr_scheduler.step()` before `optimizer.step()`. "
                              "In PyTorch 1.1.0 and later, you should call them in the opposite "
                              "order: `optimizer.step()` before `lr_scheduler.step()`. Failure to "
                              "do this will result in skipping the first value of the learning "
                              "rate schedule.", UserWarning, stacklevel=2)
        self._step_count += 1
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            self._set_lrs(self.get_lr)
        else:
            self.last_epoch = epoch
            self._set_lrs(getattr(self, "_get_closed_form_lr", self.get_lr))

    def _set_lrs(self, compute: Callable[[], list[float]]) -> None:
        """Write ``compute()`` into the groups; a ``get_lr()`` it calls does not warn."""
        self._get_lr_called_within_step = True
        try:
            values = compute()
        finally:
            self._get_lr_called_within_step = False
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = _group_lrs(self.optimizer)

    def _warn_if_called_by_user(self) -> None:
        if not self._get_lr_called_within_step:
            warnings.warn("To get the last learning rate computed by the scheduler, please use "
                          "`get_last_lr()`.", UserWarning, stacklevel=3)

    def _scale_group_lrs(self, factor: float) -> list[float]:
        """The groups' current lrs × ``factor`` (the step of a chainable form)."""
        return [lr * factor for lr in _group_lrs(self.optimizer)]

    def _scale_base_lrs(self, factor: float) -> list[float]:
        """``base_lrs`` × ``factor`` (a closed form)."""
        return [base * factor for base in self.base_lrs]


_LRScheduler = LRScheduler  # PyTorch's old name
