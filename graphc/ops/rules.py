"""Dtype rules and shape rules shared by many ops.

A dtype rule is ``rule(name, *inputs, **attrs) -> (casts, out_dtypes)``: for each input,
the dtype it is converted to before the kernel runs (None: leave it), and the dtype of
each output. A shape rule is ``rule(name, *inputs, **attrs) -> shape`` (a tuple of
shapes for ops with several outputs). Inputs are tensors (real or meta), Python scalars
or None; rules only read ``.shape``, ``.ndim`` and ``.dtype``. Rules validate: a bad
call raises here, before any kernel runs, in eager and meta mode alike.
"""

from __future__ import annotations

import math

from .. import dtype as dt
from ..errors import DTypeError, OpTypeError, OpValueError, ShapeError
from ..layout import broadcast_shapes, normalize_dims
from ..tensor import Tensor


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def tensors(inputs) -> list:
    return [x for x in inputs if is_tensor(x)]


def describe(x) -> str:
    """How an input reads in an error message: ``float32[3, 4]`` or ``2.5``."""
    if is_tensor(x):
        return f"{x.dtype.name}{list(x.shape)}"
    return repr(x)


def check_inputs(name: str, inputs) -> None:
    """Every input is a tensor, a Python number or None, and at least one is a tensor."""
    seen_tensor = False
    for x in inputs:
        if is_tensor(x):
            seen_tensor = True
        elif x is not None and not dt.is_scalar(x):
            raise OpTypeError(name, f"expected tensors or numbers, got {type(x).__name__} {x!r}")
    if not seen_tensor:
        raise OpTypeError(name, "expected at least one tensor argument, got only numbers "
                          f"({', '.join(describe(x) for x in inputs)})")


MAX_BYTES = (1 << 63) - 1  # the most bytes one array may span (numpy's, and int64 indexing)


def check_addressable(name: str, inputs, shapes=(), out_dtypes=()) -> None:
    """Every tensor an op computes on or makes spans at most ``MAX_BYTES``. A broadcast
    view describes elements without memory (``ones(1, 1).expand(2**32, 2**32)``); an op
    that far. Symbolic sizes pass (a program checks them per call). Per op in eager mode,
    so cheap: only an input with a stride of 0 can describe more elements than memory."""
    for x in inputs:
        if isinstance(x, Tensor):
            if 0 in x._stride:
                _check_bytes(name, "input", x._shape, x.dtype)
        elif isinstance(x, (tuple, list)):
            for t in x:
                if isinstance(t, Tensor) and 0 in t._stride:
                    _check_bytes(name, "input", t._shape, t.dtype)
    for shape, d in zip(shapes, out_dtypes):
        _check_bytes(name, "result", shape, d)


def _check_bytes(name: str, what: str, shape, d: dt.dtype) -> None:
    nbytes = math.prod(shape) * d.itemsize
    if type(nbytes) is int and nbytes > MAX_BYTES:
        raise OpValueError(name, f"the {what} {d.name}{list(shape)} spans {nbytes} bytes, "
                           "more than an array can address (2**63 - 1 bytes)")


# ---- dtype rules -------------------------------------------------------------------

def promote(name, *inputs, **attrs):
    """All inputs converted to PyTorch's result type; the output has that type."""
    check_inputs(name, inputs)
    d = dt.result_type(*inputs)
    return tuple(None if x is None else d for x in inputs), (d,)


def promote_float(name, *inputs, **attrs):
    """Like ``promote``, but integer and bool results become the default float (exp, sqrt, /)."""
    check_inputs(name, inputs)
    d = dt.to_float(dt.result_type(*inputs))
    return tuple(None if x is None else d for x in inputs), (d,)


def compare(name, *inputs, **attrs):
    """Inputs compared in their result type; the output is bool."""
    check_inputs(name, inputs)
    d = dt.result_type(*inputs)
    return tuple(d for _ in inputs), (dt.bool_,)


def logical(name, *inputs, **attrs):
    """Inputs read as truth values; the output is bool."""
    check_inputs(name, inputs)
    return tuple(dt.bool_ for _ in inputs), (dt.bool_,)


def predicate(name, *inputs, **attrs):
    """A test of each value (isnan): inputs unchanged; the output is bool."""
    check_inputs(name, inputs)
    return tuple(None for _ in inputs), (dt.bool_,)


def same_as_first(name, x, *rest, **attrs):
    """The output keeps the first input's dtype; nothing is converted."""
    if not is_tensor(x):
        raise OpTypeError(name, f"expected a tensor, got {type(x).__name__}")
    return (None,) * (1 + len(rest)), (x.dtype,)


def no_bool(rule, hint: str | None = None):
    """Reject bool results (PyTorch has no ``-`` or ``abs`` on bool tensors)."""
    def checked(name, *inputs, **attrs):
        casts, outs = rule(name, *inputs, **attrs)
        if outs[0] is dt.bool_:
            raise DTypeError(name, hint or f"not supported for bool tensors "
                             f"(got {', '.join(describe(x) for x in inputs)})")
        return casts, outs
    return checked


def no_none(rule):
    """Reject None inputs, for ops without optional operands (``x + None``); without this
    a None passes the rules, and fails in numpy (eager) or in the code generator."""
    def checked(name, *inputs, **attrs):
        reject_none(name, inputs)
        return rule(name, *inputs, **attrs)
    return checked


def reject_none(name: str, inputs) -> None:
    if any(x is None for x in inputs):
        raise OpTypeError(name, "expected tensors or numbers, got None")


def floating_only(rule):
    """Reject integer and bool tensors (softmax, var, layer_norm...), suggesting .float()."""
    def checked(name, *inputs, **attrs):
        for x in inputs:
            if is_tensor(x) and not x.dtype.is_floating_point:
                raise DTypeError(name, f"expected a floating-point tensor, got {describe(x)}; "
                                 "convert it with .float()")
        return rule(name, *inputs, **attrs)
    return checked


def fixed(*out_dtypes):
    """Inputs unchanged; outputs of the given dtypes (argmax gives int64)."""
    def rule(name, *inputs, **attrs):
        return tuple(None for _ in inputs), out_dtypes
    return rule


# ---- shape rules -------------------------------------------------------------------

def broadcast(name, *inputs, **attrs):
    return broadcast_shapes(name, *(x._shape for x in inputs if isinstance(x, Tensor)))


def same_shape(name, x, *rest, **attrs):
    return tuple(x.shape)


def reduced_shape(name, x, dim=None, keepdim=False, nonempty=False, **attrs):
    """The shape after reducing ``dim`` (None: all dims); ``nonempty`` rejects empty dims."""
    shape = tuple(x.shape)
    dims = reduce_dims(name, dim, len(shape))
    if not shape:  # a 0-d tensor reduces to itself over dim 0 or -1
        return ()
    if nonempty:
        for d in dims:
            if shape[d] == 0:
                raise ShapeError(name, f"expected reduction dim {d} to have non-zero size "
                                 f"(input shape {shape})")
    if keepdim:
        return tuple(1 if i in dims else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in dims)


def reduce_dims(name: str, dim, ndim: int) -> tuple[int, ...]:
    """Dims a reduction runs over: ``None`` and ``()`` mean all of them (as in PyTorch).
    A 0-d tensor accepts dim 0 and -1 and has no dim to reduce: ``()``."""
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(ndim))
    dims = normalize_dims(name, dim, ndim)
    return dims if ndim else ()


def require_ndim(name: str, x, allowed, what: str = "input") -> None:
    if x.ndim not in allowed:
        want = " or ".join(f"{n}-D" for n in allowed)
        raise ShapeError(name, f"expected {what} to be {want}, got shape {tuple(x.shape)}")
