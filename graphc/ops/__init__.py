"""The op table and dispatch.

``OPS`` holds every op (``OPS.add``, ``OPS["softmax"]``, ``for op in OPS``);
``dispatch(op, *inputs, **attrs)`` runs one. Importing this package declares the ops
and attaches the Tensor methods.
"""

# functions first: the declarations use it in decompositions and gradient rules
from . import functions
from . import composites, conv, elementwise, factories, indexing, linalg, reductions, views
from . import resample
from . import activations, losses
from . import ordering, scans, scatter, triangular
from .dispatch import DispatchMode, dispatch, modes_disabled, modes_replaced, redispatch
from .expose import install_all as _install_wrappers
from .registry import APPROX, EXACT, OPS, ROUNDED, Accuracy, Flag, OpDef, Sample

_install_wrappers()  # graphc.exp, Tensor.exp ... from each op's ``expose`` field
# ... which are public functions too (graphc.__all__ reads functions.__all__)
functions.__all__ += [n for op in OPS if op.expose and op.expose.function
                      for n in (op.name, *op.expose.aliases) if n not in functions.__all__]

from .methods import install as _install_methods  # noqa: E402  (reads the wrappers above)

_install_methods()

from .custom import custom_op  # noqa: E402

__all__ = ["OPS", "Flag", "OpDef", "Sample", "DispatchMode", "dispatch", "redispatch",
           "modes_disabled", "modes_replaced", "custom_op", "Accuracy", "EXACT", "ROUNDED", "APPROX"]
