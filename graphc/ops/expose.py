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


def functional(op: OpDef):
    """``graphc.nn.functional.<op>`` as PyTorch spells it: attributes may also come
    positionally (``F.leaky_relu(x, 0.2)``), and an op with an in-place form takes
    ``inplace=False`` last (``F.relu(x, inplace=True)`` writes into x and returns it)."""
    base = function(op)
    write = inplace(base) if op.expose.inplace else None
    names = tuple("input" if n == "self" else n for n in op.inputs)
    kind = inspect.Parameter
    params = [kind(n, kind.POSITIONAL_OR_KEYWORD) for n in names]
    for a, d in op.attrs.items():  # a required attribute after one with a default: keyword only
        keyword = any(p.default is not kind.empty for p in params) and d is REQUIRED
        params.append(kind(a, kind.KEYWORD_ONLY if keyword else kind.POSITIONAL_OR_KEYWORD,
                           **({} if d is REQUIRED else {"default": d})))
    if write is not None:
        params.append(kind("inplace", kind.POSITIONAL_OR_KEYWORD, default=False))
    signature = inspect.Signature(params)
    count = len(names)

    def fn(*args, **kwargs):
        if len(args) == count and not kwargs.keys() - op.attrs.keys():
            return base(*args, **kwargs)
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise OpTypeError(op.name, f"{e} (call as {op.name}{signature})") from None
        given = bound.arguments
        inputs = [given.get(n) for n in names]
        attrs = {a: given[a] for a in op.attrs if a in given}
        return (write if given.get("inplace") else base)(*inputs, **attrs)

    fn.__name__ = fn.__qualname__ = op.name
    fn.__signature__ = signature
    fn.__doc__ = base.__doc__
    fn.op = op
    return fn


def functional_inplace(op: OpDef):
    """``graphc.nn.functional.<op>_``: the in-place form, attributes positional or by name."""
    fn = functional(op)

    def fn_(input, *args, **kwargs):
        return fn(input, *args, **kwargs, inplace=True)

    fn_.__name__ = fn_.__qualname__ = op.name + "_"
    fn_.__doc__ = f"In-place {op.name}: writes the result into input and returns it."
    fn_.op = op
    return fn_


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
    functional_module = sys.modules.get("graphc.nn.functional")
    wrappers = _functional_wrappers(op) if e.functional and functional_module is not None else {}
    targets += [(functional_module, n) for n in wrappers]
    taken = [f"{getattr(t, '__name__', t)}.{n}" for t, n in targets if _defined(t, n)]
    if taken:
        raise ValueError(f"op {op.name!r}: {', '.join(taken)} already exists")
    for target, name in targets:
        if target is functional_module:
            setattr(target, name, wrappers[name])
        else:
            setattr(target, name, inplace(fn) if name == op.name + "_" and target is Tensor else fn)


def _defined(target, name: str) -> bool:
    value = getattr(target, name, None)
    return value is not None and getattr(value, "op", None) is None  # generated ones refresh


def functional_wrappers() -> dict:
    """The generated wrappers ``graphc.nn.functional`` takes (its own module asks once)."""
    return {n: fn for op in OPS if op.expose and op.expose.functional
            for n, fn in _functional_wrappers(op).items()}


def _functional_wrappers(op: OpDef) -> dict:
    """F.<name> (and its aliases), and F.<name>_ for an op with an in-place form."""
    fn = functional(op)
    out = {n: fn for n in (op.name, *op.expose.aliases)}
    if op.expose.inplace:
        out[op.name + "_"] = functional_inplace(op)
    return out


def install_all() -> None:
    for op in OPS:
        install(op)
