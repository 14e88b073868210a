"""Optimizers, as ``torch.optim``: SGD, Adam, AdamW on graphc tensors.

Updates run under ``no_grad`` and write into the parameters in place, so a parameter
keeps its identity and its views see every step::

    opt = graphc.optim.Adam([w, b], lr=1e-2)
    for x, y in batches:
        opt.zero_grad()
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        opt.step()
"""

from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
