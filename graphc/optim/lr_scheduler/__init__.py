"""Learning-rate schedules, as ``torch.optim.lr_scheduler``.

A scheduler rewrites ``group["lr"]`` of its optimizer's parameter groups each time
``step()`` is called (once per epoch, or per batch for OneCycleLR/CyclicLR), after
``optimizer.step()``::

    opt = graphc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = graphc.optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    for epoch in range(100):
        train_one_epoch(model, opt)
        sched.step()

Two forms, as in PyTorch, and the values follow the same float arithmetic:
- ``get_lr()`` is *chainable*: it derives the new lr from the group's current lr, so
  several schedulers on one optimizer compose (each multiplies in its factor).
- ``_get_closed_form_lr()`` computes the lr from ``base_lrs`` and ``last_epoch`` alone; it
  is used by the deprecated ``step(epoch)`` and when SequentialLR reaches a milestone.

``base_lrs`` are the groups' ``initial_lr`` (set on construction when absent). A
scheduler's ``state_dict()`` is its ``__dict__`` without the optimizer (and without
lambdas, which are functions).

Where things are: ``base`` (``LRScheduler`` and what every schedule shares),
``closed_form`` (LambdaLR, MultiplicativeLR, StepLR, MultiStepLR, ConstantLR, LinearLR,
ExponentialLR, PolynomialLR, CosineAnnealingLR), ``composed`` (SequentialLR,
ChainedScheduler), ``cyclic`` (CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts),
``plateau`` (ReduceLROnPlateau).
"""

from .base import LRScheduler, _LRScheduler
from .closed_form import (ConstantLR, CosineAnnealingLR, ExponentialLR, LambdaLR, LinearLR,
                          MultiplicativeLR, MultiStepLR, PolynomialLR, StepLR)
from .composed import ChainedScheduler, SequentialLR
from .cyclic import CosineAnnealingWarmRestarts, CyclicLR, OneCycleLR
from .plateau import ReduceLROnPlateau

__all__ = ["LRScheduler", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR",
           "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "SequentialLR",
           "ChainedScheduler", "ReduceLROnPlateau", "CyclicLR", "CosineAnnealingWarmRestarts",
           "OneCycleLR"]
