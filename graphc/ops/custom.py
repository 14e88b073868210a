"""``graphc.ops.custom_op``: a user's op in one declaration, on the same path as built-ins.

::

    @graphc.ops.custom_op("squareplus", emit=lambda s, x, b=4.0: ..., grad=...)
    def squareplus(x, b=4.0):          # the numpy kernel; its signature names the inputs
        return (x + np.sqrt(x * x + b)) / 2   # (no default) and attributes (with one)

The op lands in the op table (``OPS.squareplus``) as an ``OpDef`` like any other, so it is
traced, decomposed (given a ``decomposition``), fused and compiled natively (given an
``emit``; else a fallback with the reason), differentiated (given a ``grad``), and taken by
the op tests and the fuzzer through its samples. Its wrappers are generated as for
built-ins: ``graphc.ops.<name>``, and ``Tensor.<name>`` / ``graphc.nn.functional.<name>``
when asked.
"""

from __future__ import annotations

import inspect
import sys

from .. import dtype as dt
from ..tensor import Tensor
from . import samples as _samples
from .expose import install
from .registry import APPROX, OPS, REQUIRED, Accuracy, Expose, Flag, OpDef
from .rules import broadcast, floating_only, no_none, predicate, promote, promote_float, same_as_first

# dtype rules by name: (rule, input dtypes the samples try)
DTYPE_RULES = {
    "float": (promote_float, dt.ALL_DTYPES),            # ints and bools compute in float (exp)
    "floating": (floating_only(promote_float), dt.FLOAT_DTYPES),  # float inputs only
    "promote": (promote, dt.ALL_DTYPES),                # PyTorch's promotion (add, maximum)
    "same": (same_as_first, dt.ALL_DTYPES),             # the first input's dtype (floor)
    "bool": (predicate, dt.ALL_DTYPES),                 # a test of each value (isnan)
}
DEFAULT_ACCURACY = Accuracy(APPROX, 16)


def custom_op(name: str, kernel=None, *, emit=None, grad=None, decomposition=None,
              dtype_rule="float", shape_rule=None, elementwise: bool = True, samples=None,
              domain=None, attr_sets=None, dtypes=None, accuracy=None, method: bool = False,
              inplace: bool = False, functional: bool = False, doc: str | None = None):
    """Declare an op; returns its function (``graphc.ops.<name>``). Used as a decorator
    when ``kernel`` is omitted.

    - ``kernel``: numpy, ``kernel(*arrays, **attrs) -> array``. Its parameters without a
      default are the tensor inputs; those with one are attributes (keyword arguments of
      the op; a keyword-only parameter without a default is a required attribute).
    - ``emit``: the LLVM scalar emitter of an elementwise op, ``emit(s, *inputs, **attrs)``,
      written with the backend's ``Scalar`` helpers (``s.b`` the IR builder, ``s.c(1.0)``
      a constant, ``s.math.exp(x)``, ``s.intrinsic("sqrt", x)``, ``s.maximum(a, b)`` ...);
      inputs arrive converted to the compute dtype.
    - ``decomposition``: the op written with graphc ops (inputs and attributes as the
      kernel's); the compiler decomposes it before fusion.
    - ``grad``: ``grad(ctx, g)`` returns one gradient (or None) per input, in graphc ops;
      ``ctx.input(i)``, ``ctx.output``, ``ctx.attrs``, ``ctx.needs(i)``.
    - ``dtype_rule``: "float" (default), "floating", "promote", "same", "bool", or a
      rule ``(name, *inputs, **attrs) -> (input casts, output dtypes)``.
    - ``shape_rule``: ``(name, *inputs, **attrs) -> shape``; broadcasting for elementwise
      ops (the default), required otherwise, as are ``samples``.
    - ``samples``: ``(dtype, rng) -> list[Sample]``; elementwise ops get the built-ins'
      (layouts, broadcasting, scalars, empty, nan/inf) over ``domain`` with ``attr_sets``.
    - ``accuracy``: ``Accuracy(kind, ulps)``: how far the compiled result may be from
      float64 (tests, fuzzer); 16 ulp of a transcendental by default.
    - ``method`` / ``inplace`` / ``functional``: also ``Tensor.<name>``, ``Tensor.<name>_``
      (computes, then writes into the tensor) / ``graphc.nn.functional.<name>``.
    """
    if kernel is None:
        return lambda k: custom_op(name, k, emit=emit, grad=grad, decomposition=decomposition,
                                   dtype_rule=dtype_rule, shape_rule=shape_rule,
                                   elementwise=elementwise, samples=samples, domain=domain,
                                   attr_sets=attr_sets, dtypes=dtypes, accuracy=accuracy,
                                   method=method, inplace=inplace, functional=functional,
                                   doc=doc)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"custom_op: the name must be a Python identifier, got {name!r}")
    if name in OPS:
        raise ValueError(f"custom_op: an op named {name!r} is already declared")
    inputs, attrs = _signature(name, kernel)
    rule, default_dtypes = DTYPE_RULES[dtype_rule] if isinstance(dtype_rule, str) else \
        (dtype_rule, dt.ALL_DTYPES)
    if elementwise:
        shape_rule = shape_rule or broadcast
        samples = samples or _samples.elementwise(len(inputs), domain, attr_sets=attr_sets)
    elif shape_rule is None or samples is None:
        raise ValueError(f"custom_op {name!r}: an op that is not elementwise needs a shape_rule "
                         "and samples")
    flags = {Flag.ELEMENTWISE} if elementwise else set()
    if decomposition is not None:
        flags.add(Flag.COMPOSITE)
    if isinstance(accuracy, tuple):
        accuracy = Accuracy(*accuracy)
    op = OpDef(name=name, inputs=inputs, kernel=kernel, dtype_rule=no_none(rule),
               shape_rule=shape_rule, attrs=attrs, flags=flags, decomposition=decomposition,
               samples=samples, dtypes=tuple(dtypes or default_dtypes), emit=emit, grad=grad,
               doc=doc or inspect.getdoc(kernel) or "", custom=True,
               accuracy=accuracy or (DEFAULT_ACCURACY if elementwise else None),
               expose=Expose(method=method, inplace=inplace, functional=functional))
    op.check_emitter()
    OPS.register(op)
    try:
        install(op, namespaces=(sys.modules[__package__],))
    except ValueError:
        OPS.unregister(name)
        raise
    return getattr(sys.modules[__package__], name)


def remove(name: str) -> None:
    """Undeclare a custom op and its wrappers (a script re-run in a notebook, a test)."""
    from .. import nn
    from . import functions

    op = OPS[name] if name in OPS else None
    if op is None or not op.custom:
        raise ValueError(f"remove: {name!r} is not a custom op")
    OPS.unregister(name)
    names = (name, *op.expose.aliases)
    for target in (sys.modules[__package__], functions, nn.functional):
        for n in names:
            if getattr(getattr(target, n, None), "op", None) is op:
                delattr(target, n)
    for n in (*names, name + "_"):
        if getattr(getattr(Tensor, n, None), "op", None) is op:
            delattr(Tensor, n)


def _signature(name: str, kernel) -> tuple[tuple[str, ...], dict]:
    inputs, attrs = [], {}
    kind = inspect.Parameter
    for p in inspect.signature(kernel).parameters.values():
        if p.kind in (kind.VAR_POSITIONAL, kind.VAR_KEYWORD):
            raise ValueError(f"custom_op {name!r}: the kernel's parameters must be named "
                             f"(got {p})")
        if p.default is not kind.empty or p.kind is kind.KEYWORD_ONLY:
            attrs[p.name] = REQUIRED if p.default is kind.empty else p.default
        elif attrs:
            raise ValueError(f"custom_op {name!r}: input {p.name!r} comes after an attribute")
        else:
            inputs.append(p.name)
    if not inputs:
        raise ValueError(f"custom_op {name!r}: the kernel takes no tensor input")
    return tuple(inputs), attrs


__all__ = ["custom_op", "remove", "Accuracy", "OpDef"]
