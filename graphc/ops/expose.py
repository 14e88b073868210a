"""The thin wrappers an op's ``expose`` field asks for, generated from its declaration.

``graphc.exp(x)``, ``x.exp()``, ``x.exp_()`` and ``graphc.nn.functional.sigmoid(x)`` are each
one op-table call; writing them by hand meant four files to touch per op. A wrapper takes
the op's tensor inputs positionally or by name (``self`` is spelled ``input``, as in
PyTorch's functions), its attributes by keyword, and turns numpy arrays into tensors.
Functions with calling conventions of their own (``add``'s ``alpha``, ``sum``'s dims) stay
hand-written in ``functions.py``.
"""

from __future__ import annotations

import inspect
import sys

from ..errors import DTypeError, OpError, OpTypeError
from ..tensor import Tensor
from .dispatch import dispatch
from .functions import operand
from .registry import OPS, REQUIRED, OpDef


def function(op: OpDef):
    """``graphc.<op>``: inputs positional or by name, attributes by keyword."""
    names = tuple("input" if n == "self" else n for n in op.inputs)
    if op.variadic:
        raise ValueError(f"{op.name}: a variadic op has no generated wrapper")
    kind = inspect.Parameter
    params = [kind(n, kind.POSITIONAL_OR_KEYWORD) for n in names] + [
        kind(a, kind.KEYWORD_ONLY, **({} if d is REQUIRED else {"default": d}))
        for a, d in op.attrs.items()]
    signature = inspect.Signature(params)
    count = len(names)

    def fn(*args, **kwargs):
        if len(args) != count or kwargs.keys() - op.attrs.keys():  # inputs by name, or a mistake
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as e:
                raise OpTypeError(op.name, f"{e} (call as {op.name}{signature})") from None
            args = tuple(bound.arguments.get(n) for n in names)
            kwargs = {a: bound.arguments[a] for a in op.attrs if a in bound.arguments}
        return dispatch(op, *[operand(a) for a in args], **kwargs)

    fn.__name__ = fn.__qualname__ = op.name
    fn.__signature__ = signature
    fn.__doc__ = op.doc or f"Elementwise {op.name} (OPS.{op.name})."
    fn.op = op
    return fn


def inplace(fn):
    """``x.<name>_(...)``: compute ``fn(x, ...)`` and write it into x (same storage, same dtype)."""
    name = fn.__name__ + "_"

    def method(self, *args, **kwargs):
        source = self
        if _recording(self, *args, *kwargs.values()):
            source = self.clone()  # autograd saves this copy, not the tensor about to change
        result = fn(source, *args, **kwargs)
        if result.dtype.category > self.dtype.category:  # PyTorch: never float -> int in place
            raise DTypeError(name, f"the result type {result.dtype.name} cannot be cast to the "
                             f"tensor's dtype {self.dtype.name} in place; use the out-of-place op")
        if tuple(result.shape) != tuple(self.shape):
            raise OpError(name, f"the result's shape {tuple(result.shape)} does not match the "
                          f"tensor's shape {tuple(self.shape)} it is written into")
        return dispatch(OPS.copy_, self, result)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"In-place {fn.__name__}: writes the result into self."
    method.op = getattr(fn, "op", None)
    return method


def _recording(*values) -> bool:
    from ..autograd.grad_mode import is_grad_enabled

    return is_grad_enabled() and any(isinstance(v, Tensor) and v.requires_grad for v in values)


def install(op: OpDef, namespaces=()) -> None:
    """Attach ``op``'s generated wrappers: to ``graphc.ops.functions`` (and each module of
    ``namespaces``), Tensor and ``graphc.nn.functional`` (when it is loaded), as its
    ``expose`` field says."""
    from . import functions

    e = op.expose
    if e is None:
        return
    fn = function(op)
    names = (op.name, *e.aliases)
    targets = []
    if e.function:
        targets += [(m, n) for m in (functions, *namespaces) for n in names]
    if e.method:
        targets += [(Tensor, n) for n in names]
    if e.inplace:
        targets.append((Tensor, op.name + "_"))
    functional = sys.modules.get("graphc.nn.functional")
    if e.functional and functional is not None:
        targets += [(functional, n) for n in names]
    taken = [f"{getattr(t, '__name__', t)}.{n}" for t, n in targets if _defined(t, n)]
    if taken:
        raise ValueError(f"op {op.name!r}: {', '.join(taken)} already exists")
    for target, name in targets:
        setattr(target, name, inplace(fn) if name == op.name + "_" and target is Tensor else fn)


def _defined(target, name: str) -> bool:
    value = getattr(target, name, None)
    return value is not None and getattr(value, "op", None) is None  # generated ones refresh


def functional_wrappers() -> dict:
    """The generated wrappers ``graphc.nn.functional`` takes (its own module asks once)."""
    from . import functions

    return {n: getattr(functions, op.name) if op.expose.function else function(op)
            for op in OPS if op.expose and op.expose.functional
            for n in (op.name, *op.expose.aliases)}


def install_all() -> None:
    for op in OPS:
        install(op)
