"""graphc: a PyTorch-like eager library whose programs can be captured and compiled.

Dynamic mode runs ops at once on numpy::

    import graphc
    x = graphc.randn(4, 8)
    y = graphc.softmax(x @ x.T, dim=-1)

Every op is declared once in the op table (``graphc.ops.OPS``) and every call goes
through one dispatcher, which runs it eagerly (cpu) or for shapes only (meta).
"""

from . import ops  # declares the ops and attaches the Tensor methods
from . import autograd, nn
from . import optim
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .creation import as_tensor, asarray, from_numpy, tensor
from .dtype import (bool_, float32, float64, get_default_dtype, int32, int64, promote_types,
                    result_type, set_default_dtype)
from .errors import DTypeError, OpError, OpIndexError, OpTypeError, OpValueError, ShapeError
from .ops.functions import *  # graphc.add, graphc.sum, graphc.cat, ...
from .ops.functions import MinMax
from .random import (Generator, default_generator, get_rng_state, initial_seed, manual_seed, seed,
                     set_rng_state)
from .serialization import SerializationError, load, save
from .tensor import Size, Tensor, TypedStorage, UntypedStorage, device
from .tensor_repr import set_printoptions
from .trace import TensorSpec, TraceError, trace
from . import ir
from .compiler import CaptureError, benchmark, compile, dump, explain

# dtype aliases, as in PyTorch: graphc.bool, graphc.float, graphc.double, graphc.long, graphc.int
bool = bool_
float = float32
double = float64
long = int64
int = int32

__version__ = "0.1.0"
