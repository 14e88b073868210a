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
from . import utils  # graphc.utils.data (DataLoader ...), graphc.utils.hooks
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
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
# running PyTorch code unchanged on the cpu: device queries, backend switches, 16-bit floats
from . import amp, backends, cuda
from .amp import autocast, is_autocast_enabled
from .backends import (are_deterministic_algorithms_enabled, get_float32_matmul_precision,
                       get_num_threads, set_float32_matmul_precision, set_num_threads,
                       use_deterministic_algorithms)
from .dtype import bfloat16, finfo, float16, iinfo
from .tensor import DeviceError

# dtype aliases, as in PyTorch: graphc.bool, graphc.float, graphc.double, graphc.long, graphc.int
bool = bool_
float = float32
double = float64
long = int64
int = int32
half = float16

__version__ = "0.1.0"


# ---- the public API: what ``dir(graphc)``, tab completion and ``from graphc import *`` show.
# Every name bound above is public, except submodules that are not API (Python binds each
# imported submodule here: layout, creation, tensor_repr ...) and the names below. Keep this
# block last in the file.
_PUBLIC_MODULES = frozenset("""
    nn optim autograd ops ir utils cuda amp backends random linalg special fft testing jit
    distributions hub onnx fx
""".split())
_NOT_PUBLIC = frozenset({"bool_", "MinMax"})  # graphc's own spellings, not torch API


def _public_names() -> list[str]:
    from types import ModuleType

    return sorted(n for n, v in globals().items()
                  if not n.startswith("_") and n not in _NOT_PUBLIC
                  and (not isinstance(v, ModuleType) or n in _PUBLIC_MODULES))


def __dir__() -> list[str]:
    return _public_names() + ["__version__"]


__all__ = _public_names()
