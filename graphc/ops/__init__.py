"""The op table and dispatch.

``OPS`` holds every op (``OPS.add``, ``OPS["softmax"]``, ``for op in OPS``);
``dispatch(op, *inputs, **attrs)`` runs one. Importing this package declares the ops
and attaches the Tensor methods.
"""

from . import (  # noqa: F401
           composites,
           elementwise,
           factories,
           functions,  # noqa: F401  (first: declarations refer to it lazily)
           indexing,
           linalg,
           reductions,
           views,
)
from .dispatch import DispatchMode, dispatch, modes_disabled, redispatch
from .methods import install as _install_methods
from .registry import OPS, Flag, OpDef, Sample

_install_methods()

__all__ = ["OPS", "Flag", "OpDef", "Sample", "DispatchMode", "dispatch", "redispatch",
           "modes_disabled"]
