"""The op table and dispatch.

``OPS`` holds every op (``OPS.add``, ``OPS["softmax"]``, ``for op in OPS``);
``dispatch(op, *inputs, **attrs)`` runs one. Importing this package declares the ops
and attaches the Tensor methods.
"""

# functions first: the declarations use it in decompositions and gradient rules
from . import functions
from . import composites, conv, elementwise, factories, indexing, linalg, reductions, views
from .dispatch import DispatchMode, dispatch, modes_disabled, modes_replaced, redispatch
from .methods import install as _install_methods
from .registry import OPS, Flag, OpDef, Sample

_install_methods()

__all__ = ["OPS", "Flag", "OpDef", "Sample", "DispatchMode", "dispatch", "redispatch",
           "modes_disabled", "modes_replaced"]
