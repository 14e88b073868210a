"""Optimizers, as ``torch.optim``: SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta on graphc
tensors, and learning-rate schedules in ``graphc.optim.lr_scheduler``.

Updates run under ``no_grad`` and write into the parameters in place, so a parameter
keeps its identity and its views see every step::

    opt = graphc.optim.Adam([w, b], lr=1e-2)
    for x, y in batches:
        opt.zero_grad()
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        opt.step()

``fused=True`` (SGD, Adam, AdamW) runs each parameter group's update as one compiled program
call, bitwise equal to the eager update (``graphc.optim.fused``).
"""

from . import lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "lr_scheduler"]
