"""Autograd: grad mode, the backward graph and engine, and a gradient checker.

Importing this package installs autograd as a dispatch hook and gives tensors
``backward()``, ``register_hook()`` and ``retain_grad()``.
"""

from ..tensor import Tensor
from .engine import backward, grad, register_hook, retain_grad
from .grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import gradcheck
from .graph import AccumulateGrad, Node

Tensor.backward = lambda self, gradient=None, retain_graph=None, create_graph=False, inputs=None: \
    backward(self, gradient, retain_graph, create_graph, inputs)
Tensor.register_hook = register_hook
Tensor.retain_grad = retain_grad
Tensor.retains_grad = property(lambda self: bool(self.__dict__.get("_retains_grad")))

__all__ = ["backward", "grad", "gradcheck", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled", "inference_mode", "Node", "AccumulateGrad"]
