"""Neural-network building blocks (PyTorch's ``torch.nn``).

``Module`` and ``Parameter`` are the base; the layers live in ``graphc/nn/modules/``;
``graphc.nn.functional`` holds the functions and ``graphc.nn.init`` the initialisers.

    >>> from graphc import nn
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
"""

from . import functional
from . import init
from .module import Module
from .modules import *
from .modules import __all__ as _layers
from .parameter import Buffer, Parameter
from . import utils  # clip_grad_norm_, parameters_to_vector, ...

__all__ = ["functional", "init", "utils", "Module", "Parameter", "Buffer", *_layers]
