"""The bound analysis behind the tolerance policy (tolerance.py): every node's value as a
``Bound`` (a float64 centre, an error bound, free zeros), computed next to the
Interpreter by one rule per op family (the op table's flags choose it).

    outs, bounds = output_bounds(gm, inputs)   # gm's outputs, and one Bound for each
    compare(got, ref, bounds[0])               # tolerance.compare: None, or why not
"""

from __future__ import annotations

import inspect
import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np

from .. import dtype as dt
from ..ir.graph_module import GraphModule
from ..ir.interpreter import Interpreter
from ..ir.node import Node
from ..ops import Flag, dispatch
from ..ops.registry import OpDef
from ..ops.rules import reduce_dims
from ..tensor import Storage, Tensor
from .tolerance import (
    APPROX,
    EXACT,
    INDEX_INPUT_NAMES,
    accuracy,
    reduction_kind,
)

# ---- bounds -------------------------------------------------------------------------------

@dataclass
class Bound:
    """What a value may be: ``center`` (float64 for floats, the value itself for ints and
    bools), ``err`` (>= 0; inf: not determined), ``free_zero`` (an exact zero of any sign)."""

    center: np.ndarray
    err: np.ndarray
    free_zero: np.ndarray

    @property
    def exact(self) -> np.ndarray:
        return (self.err == 0) & ~self.free_zero

    @property
    def known(self) -> np.ndarray:
        return np.isfinite(self.err)


def _float(d) -> bool:
    return np.dtype(d).kind == "f"


def _f64(a) -> np.ndarray:
    return np.asarray(a, np.float64)


def exact_bound(a: np.ndarray) -> Bound:
    a = np.asarray(a)
    center = _f64(a) if _float(a.dtype) else a.copy()
    return Bound(center, np.zeros(a.shape), np.zeros(a.shape, bool))


def _info(d):
    d = np.dtype(d)
    if d == np.float32:
        return np.finfo(np.float32)
    return np.finfo(np.float64)


def ulp_terms(center: np.ndarray, d) -> np.ndarray:
    """One ulp of ``center`` in dtype ``d``: eps·|x| plus the smallest subnormal."""
    fi = _info(d)
    mag = np.where(np.isfinite(center), np.abs(center), 0.0)
    return float(fi.eps) * mag + float(fi.smallest_subnormal)


def _clean(err: np.ndarray) -> np.ndarray:
    """nan bounds (inf - inf) become inf: not determined."""
    err = _f64(err)
    return np.where(np.isnan(err), np.inf, err)


def _saturate(center: np.ndarray, err: np.ndarray, d) -> tuple[np.ndarray, np.ndarray]:
    """Follow the dtype's overflow: a centre beyond its range by more than E overflows to
    inf; one within E of the threshold is not determined."""
    maxfin = float(_info(d).max)
    with np.errstate(all="ignore"):
        big = np.isfinite(center) & (np.abs(center) + err > maxfin)
        sure = big & (np.abs(center) - err > maxfin)
        unsure = big & ~sure & (np.abs(center) > maxfin)
        center = np.where(sure, np.copysign(np.inf, center), center)
        err = np.where(sure, 0.0, np.where(unsure, np.inf, err))
    return center, err


# ---- evaluating kernels at boxes ----------------------------------------------------------

def _upcast_attrs(attrs: dict) -> dict:
    return {k: (dt.float64 if v is dt.float32 else v) for k, v in attrs.items()}


def _call(op: OpDef, arrays: list, attrs: dict) -> np.ndarray:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(op.kernel(*arrays, **attrs))


class _Arg:
    """One input of a node as the analysis sees it: its native array (after the dtype
    rule's conversion), its bound (converted the same way), or a non-tensor value."""

    def __init__(self, value, bound: Bound | None, cast, name: str):
        self.name = name
        self.tensor = isinstance(value, Tensor)
        self.value = value
        self.bound = bound
        if self.tensor:
            native = value.numpy()
            self.native = native if cast is None else native.astype(cast.np)
            if bound is not None and _float(self.native.dtype) and _float(native.dtype):
                self.center = bound.center  # an inexact float keeps its float64 centre
            else:  # exact conversions (int to float rounds as the native code does)
                self.center = _f64(self.native) if _float(self.native.dtype) else self.native
        elif cast is not None and value is not None and not isinstance(value, (tuple, list)):
            self.native = np.asarray(value, cast.np)
            self.center = _f64(self.native) if _float(self.native.dtype) else self.native
        else:
            self.native = self.center = value

    @property
    def is_index(self) -> bool:
        return any(word in self.name for word in INDEX_INPUT_NAMES)

    @property
    def is_float(self) -> bool:
        return isinstance(self.native, np.ndarray) and _float(self.native.dtype)

    def err(self) -> np.ndarray:
        if self.bound is None:
            return np.zeros(np.shape(self.native))
        return self.bound.err

    def free(self) -> np.ndarray:
        if self.bound is None:
            return np.zeros(np.shape(self.native), bool)
        return self.bound.free_zero


def _corners(arg: _Arg) -> list[np.ndarray] | None:
    """The values an input may take at the corners of its box (None: it is exact)."""
    if not isinstance(arg.native, np.ndarray):
        return None
    err = np.broadcast_to(arg.err(), np.shape(arg.native))
    free = np.broadcast_to(arg.free(), np.shape(arg.native))
    if not (err.any() or free.any()):
        return None
    if arg.is_float:
        c = arg.center
        unknown = ~np.isfinite(err)
        lo = np.where(free & (err == 0), -0.0, np.where(unknown, -np.inf, c - err))
        hi = np.where(free & (err == 0), 0.0, np.where(unknown, np.inf, c + err))
        if unknown.any():  # not determined: it may be any value, nan included
            return [lo, hi, np.where(unknown, np.nan, c)]
        return [lo, hi]
    if arg.native.dtype == np.bool_:
        unknown = ~np.isfinite(err) | (err > 0)
        return [arg.native & ~unknown, arg.native | unknown]
    return None  # an inexact integer: handled by the caller (not determined)


def _box_values(op: OpDef, args: list[_Arg], attrs: dict) -> tuple[np.ndarray, list] | None:
    """The op at the centre and at the corners of its inputs' boxes, and at points inside
    along each float input (a box may hide an extremum, a jump of remainder's sawtooth,
    or a pole at zero); None if the op refuses a point (an integer division by a
    maybe-zero)."""
    corner_sets = [_corners(a) for a in args]
    varying = [k for k, c in enumerate(corner_sets) if c is not None]
    centers = [a.center for a in args]
    points = []
    for choice in itertools.product(*[corner_sets[k] for k in varying]):
        point = list(centers)
        for k, v in zip(varying, choice):
            point[k] = v
        points.append(point)
    for k in varying:
        if args[k].is_float:
            lo, hi = corner_sets[k][:2]
            with np.errstate(invalid="ignore"):  # inf - inf: a box with no inside
                inside = [lo + t * (hi - lo) for t in np.linspace(0.0, 1.0, 9)[1:-1]]
                # zero, where the box holds it: the pole of div, log, pow (0 / 0 is nan)
                crosses = (lo <= 0) & (hi >= 0)
                inside += [np.where(crosses, zero, centers[k]) for zero in (0.0, -0.0)]
            for value in inside:
                point = list(centers)
                point[k] = value
                points.append(point)
    try:
        return _call(op, centers, attrs), [_call(op, point, attrs) for point in points]
    except Exception:  # noqa: BLE001 - any refusal: the result is not determined
        return None


# ---- the analysis ---------------------------------------------------------------------------

class BoundInterpreter(Interpreter):
    """Runs a graph as the Interpreter does (the reference values) and computes every
    node's ``Bound`` alongside. ``input_bounds`` are the placeholders' (default: exact)."""

    def __init__(self, module, graph=None, input_bounds: list[Bound] | None = None):
        super().__init__(module, graph)
        self.bounds: dict[Node, Bound] = {}
        self.input_bounds = input_bounds

    def run_node(self, node: Node):
        value = super().run_node(node)
        if node.op == "output":
            return value
        if isinstance(value, Tensor):
            if node.op == "call_function":
                bound = self.bound_of(node, value)
            elif node.op == "placeholder" and self.input_bounds is not None:
                bound = self.input_bounds[self.graph.placeholders.index(node)]
            else:  # inputs, constants and weights
                bound = exact_bound(value.numpy())
            self.bounds[node] = bound
        return value

    def bound(self, x) -> Bound | None:
        return self.bounds.get(x) if isinstance(x, Node) else None

    def bound_of(self, node: Node, out: Tensor) -> Bound:
        op: OpDef = node.target
        args = [self.env[a] if isinstance(a, Node) else a for a in node.args]
        attrs = {k: (self.env[v] if isinstance(v, Node) else v) for k, v in node.kwargs.items()}
        attrs = op.bind_attrs(attrs)
        if Flag.VIEW in op.flags:
            return self.view(op, node, args, attrs, out)
        if Flag.COMPOSITE in op.flags and op.decomposition is not None:
            return self.composite(op, node, args, attrs, out)
        casts, _ = op.dtype_rule(op.name, *args, **attrs)
        names = _input_names(op, len(args))
        wrapped = [_Arg(v, self.bound(a), c, n)
                   for v, a, c, n in zip(args, node.args, casts, names)]
        native = out.numpy()
        if Flag.ELEMENTWISE in op.flags:
            return elementwise_bound(op, wrapped, attrs, native)
        if Flag.REDUCTION in op.flags:
            return reduction_bound(op, wrapped, attrs, native)
        if Flag.MATMUL in op.flags:
            return matmul_bound(wrapped, native)
        return movement_bound(op, wrapped, attrs, native)

    def composite(self, op: OpDef, node: Node, args, attrs, out: Tensor) -> Bound:
        """Through the op's decomposition (what the backend compiles), plus the error of
        the reference, which is the composite's own kernel (its ``reference_ulps``)."""
        from ..trace import trace

        at = [k for k, a in enumerate(args) if isinstance(a, Tensor)]

        def decomposed(*tensors):
            full = list(args)
            for k, t in zip(at, tensors):
                full[k] = t
            return op.decomposition(*full, **attrs)

        decomposed.__signature__ = inspect.Signature(
            [inspect.Parameter(f"x{k}", inspect.Parameter.POSITIONAL_OR_KEYWORD) for k in at])
        sub = trace(decomposed, *[args[k] for k in at])
        inner = BoundInterpreter(sub, input_bounds=[
            self.bound(node.args[k]) or exact_bound(args[k].numpy()) for k in at])
        inner.run(*[args[k] for k in at])
        result = sub.graph.output_node.args[0]
        bound = inner.bounds.get(result) if isinstance(result, Node) else None
        native = out.numpy()
        if bound is None or bound.center.shape != native.shape:
            return Bound(native.copy(), np.full(native.shape, np.inf), np.zeros(native.shape, bool))
        ulps = accuracy(op).reference_ulps
        if ulps and _float(native.dtype):
            scale = np.where(np.isfinite(bound.center), np.abs(bound.center), 0.0)
            for k in at:
                c = _f64(np.broadcast_to(self.bound(node.args[k]).center if self.bound(
                    node.args[k]) else args[k].numpy(), native.shape))
                scale = np.maximum(scale, np.where(np.isfinite(c), np.abs(c), 0.0))
            err = bound.err + ulps * ulp_terms(scale, native.dtype)
            bound = Bound(bound.center, err, bound.free_zero & (err == 0))
        return bound

    def view(self, op: OpDef, node: Node, args, attrs, out: Tensor) -> Bound:
        """The same view of the bound: the view op applied to storage indices."""
        x = args[0]
        bound = self.bound(node.args[0])
        st = x._storage
        index = Tensor._make(Storage.from_array(np.arange(st.size, dtype=np.int64)),
                             x._shape, x._stride, x._offset)
        picked = dispatch(op, index, *args[1:], **attrs).numpy()
        where = index.numpy()

        def moved(values, gap):
            flat = np.full(st.size, gap, values.dtype)
            flat[where] = values
            return flat[picked]
        return Bound(moved(bound.center, 0), moved(bound.err, np.inf),
                     moved(bound.free_zero, False))


def _input_names(op: OpDef, n: int) -> list[str]:
    names = [s.lstrip("*") for s in op.inputs]
    if op.variadic:
        names = names[:-1] + [names[-1]] * (n - len(names) + 1)
    return (names + [""] * n)[:n]


def _pow_jumps(args: list[_Arg], shape) -> np.ndarray:
    """Where ``pow(base, e)`` jumps inside the error box, which its corners miss: a base
    that may be negative and an inexact exponent whose box holds an integer (a negative
    base gives nan at every other exponent). ``pow(x, x.sum(0))`` with a sum 1 ulp from 3."""
    if len(args) < 2 or not args[1].is_float or not isinstance(args[1].native, np.ndarray):
        return np.zeros(shape, bool)
    base, exp = args[0], args[1]
    b_c = np.broadcast_to(_f64(base.center), shape) if isinstance(base.native, np.ndarray) \
        else np.full(shape, float(base.center))
    b_e = np.broadcast_to(base.err(), shape) if isinstance(base.native, np.ndarray) else 0.0
    e_c, e_e = np.broadcast_to(_f64(exp.center), shape), np.broadcast_to(exp.err(), shape)
    with np.errstate(all="ignore"):
        holds_integer = (e_e > 0) & (np.floor(e_c + e_e) >= np.ceil(e_c - e_e))
        return holds_integer & (b_c - b_e < 0)


def elementwise_bound(op: OpDef, args: list[_Arg], attrs: dict, native: np.ndarray) -> Bound:
    shape = native.shape
    unknown = np.zeros(shape, bool)
    exact_in = np.ones(shape, bool)  # every input exactly known here
    free_in = np.zeros(shape, bool)  # some input a free zero here
    for a in args:
        if isinstance(a.native, np.ndarray) and a.bound is not None:
            e, f = np.broadcast_to(a.err(), shape), np.broadcast_to(a.free(), shape)
            exact_in &= (e == 0) & ~f
            free_in |= f
            if not a.is_float and a.native.dtype != np.bool_:
                unknown |= e != 0  # an integer that is not determined
    box = _box_values(op, args, _upcast_attrs(attrs))
    if box is None:
        return Bound(native.copy() if not _float(native.dtype) else _f64(native),
                     np.full(shape, np.inf), np.zeros(shape, bool))
    center, values = np.broadcast_to(box[0], shape), [np.broadcast_to(v, shape) for v in box[1]]
    if not _float(native.dtype):
        unknown |= _undetermined(op, args, values, native)
        return Bound(native.copy(), np.where(unknown, np.inf, 0.0), np.zeros(shape, bool))

    kind, ulps = accuracy(op).kind, accuracy(op).ulps
    center = _f64(center)
    nan_c = np.isnan(center)
    spread = np.zeros(shape)
    with np.errstate(all="ignore"):
        for v in values:
            v = _f64(v)
            nan_v = np.isnan(v)
            unknown |= nan_v != nan_c
            same = (v == center) | (nan_v & nan_c)
            spread = np.maximum(spread, np.where(same, 0.0, np.abs(v - center)))
        scale = np.abs(center)
        if accuracy(op).operand_scaled:
            for a in args:
                if a.is_float:
                    scale = np.maximum(scale, np.abs(np.broadcast_to(_f64(a.center), shape)))
        local = ulps * ulp_terms(np.where(np.isnan(scale), 0.0, scale), native.dtype)
        err = _clean(spread) + (local if kind != EXACT else 0.0)
    if op.name == "pow":
        unknown |= _pow_jumps(args, shape)
    unknown |= ~np.isfinite(err)
    center, err = _saturate(center, err, native.dtype)
    if kind != APPROX:  # IEEE defines these: exact inputs give the reference's bits
        center = np.where(exact_in, _f64(native), center)
        err = np.where(exact_in, 0.0, err)
    elif native.dtype == np.float64:  # overflow of a transcendental: the last ulp decides
        inputs_finite, big = np.ones(shape, bool), np.zeros(shape, bool)
        for a in args:
            if a.is_float:
                c = np.broadcast_to(_f64(a.center), shape)
                inputs_finite &= np.isfinite(c)
                big |= np.abs(c) >= 1
        unknown |= np.isinf(center) & inputs_finite & big
    err = np.where(unknown, np.inf, err)
    return Bound(center, err, (err == 0) & (center == 0) & free_in)


def _undetermined(op: OpDef, args: list[_Arg], values: list, native: np.ndarray) -> np.ndarray:
    """Where an integer or bool result may be another one within the inputs' errors."""
    shape = native.shape
    unknown = np.zeros(shape, bool)
    for v in values:
        unknown |= v != native
    # eq/ne may flip inside the boxes without flipping at their corners: two float
    # operands whose boxes overlap may compare either way
    floats = [a for a in args if a.is_float]
    for i, a in enumerate(floats):
        for b in floats[i + 1:]:
            ca, cb = np.broadcast_to(a.center, shape), np.broadcast_to(b.center, shape)
            width = np.broadcast_to(a.err(), shape) + np.broadcast_to(b.err(), shape)
            with np.errstate(invalid="ignore"):
                unknown |= (width > 0) & ~(np.abs(ca - cb) > width)
    if op.name == "cast" and floats and native.dtype != np.bool_:
        info = np.iinfo(native.dtype)  # nan, inf and out-of-range floats: implementation-defined
        c = np.broadcast_to(floats[0].center, shape)
        with np.errstate(all="ignore"):
            unknown |= ~np.isfinite(c) | (c < info.min) | (c >= info.max + 1.0)
    return unknown


def _slices(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``a`` as (kept elements, reduced elements)."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a.reshape(1, 1)
    kept = [d for d in range(a.ndim) if d not in axes]
    moved = np.transpose(a, kept + list(axes))
    return moved.reshape(math.prod(a.shape[d] for d in kept), math.prod(a.shape[d] for d in axes))


def reduction_bound(op: OpDef, args: list[_Arg], attrs: dict, native: np.ndarray) -> Bound:
    x = args[0]
    kind = reduction_kind(op)
    dim = attrs.get("dim")
    ndim = np.ndim(x.native)
    axes = reduce_dims(op.name, dim, ndim) if ndim else ()
    shape = native.shape
    c = _slices(np.broadcast_to(x.center, np.shape(x.native)), axes)
    e = _slices(np.broadcast_to(x.err(), np.shape(x.native)), axes)
    f = _slices(np.broadcast_to(x.free(), np.shape(x.native)), axes)
    n = c.shape[1]

    def out(center, err, free=None):
        center, err = np.asarray(center).reshape(shape), _clean(err).reshape(shape)
        free = np.zeros(shape, bool) if free is None else np.asarray(free).reshape(shape)
        return Bound(center, err, free & (err == 0))

    any_unknown = ~np.isfinite(e).all(axis=1) if n else np.zeros(c.shape[0], bool)
    inexact = (e != 0).any(axis=1) | f.any(axis=1) if n else np.zeros(c.shape[0], bool)
    if kind == "index":
        return out(native.copy(), _index_err(op, x, c, e, any_unknown))
    if kind == "logical":
        if x.is_float:
            with np.errstate(invalid="ignore"):
                certain = (e == 0) | (np.abs(c) > e) | np.isnan(c)
        else:
            certain = e == 0
        sure = certain.all(axis=1) if n else np.ones(c.shape[0], bool)
        return out(native.copy(), np.where(sure, 0.0, np.inf))
    if not _float(native.dtype):
        return out(native.copy(), np.where(inexact, np.inf, 0.0))

    fi = _info(native.dtype)
    c = _f64(c) if x.is_float else _f64(np.asarray(c).astype(native.dtype))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "select":
            pick = np.max if op.name == "amax" else np.min
            center = pick(c, axis=1) if n else np.zeros(c.shape[0])
            lo = pick(c - e, axis=1) if n else center
            hi = pick(c + e, axis=1) if n else center
            err = np.maximum(np.abs(hi - center), np.abs(center - lo))
            err = np.where((hi == center) & (lo == center), 0.0, err)
            err = np.where(np.isnan(center) & ~inexact, 0.0, err)
            center = np.where(inexact, center, _f64(native).reshape(-1))
            return out(center, np.where(any_unknown, np.inf, err), center == 0)
        finite = np.where(np.isfinite(c), np.abs(c), 0.0)
        if kind == "prod":
            center = np.prod(c, axis=1)
            mags = np.abs(c) + e
            # each rounding adds eps relative, or half a subnormal step below the normal
            # range (where only factors below 1 follow: else order_matters below)
            err = (np.prod(mags, axis=1) - np.prod(np.abs(c), axis=1)
                   + n * (float(fi.eps) * np.prod(mags, axis=1) + float(fi.smallest_subnormal)))
            # whether a partial product over- or underflows depends on the order
            big = np.prod(np.where(finite > 1, finite, 1.0), axis=1)
            small = np.prod(np.where((finite < 1) & (finite > 0), finite, 1.0), axis=1)
            order_matters = (big > fi.max) | ((small < fi.tiny) & (big > 1))
            err = np.where(order_matters | any_unknown, np.inf, err)
            center, err = _saturate(center, err, native.dtype)
            return out(center, err)
        # sums, and reductions the policy does not know
        center = np.sum(c, axis=1)
        total = np.sum(finite, axis=1)
        err = np.sum(e, axis=1) + n * float(fi.eps) * total
        err = np.where(any_unknown | (total > fi.max), np.inf, err)
        center, err = _saturate(center, err, native.dtype)
        return out(center, err, center == 0)


def _index_err(op: OpDef, x: _Arg, c, e, any_unknown) -> np.ndarray:
    """argmax/argmin: not determined where another element may reach the extreme."""
    err = np.where(any_unknown, np.inf, 0.0)
    if not x.is_float or c.shape[1] == 0:
        inexact = (e != 0).any(axis=1) if c.shape[1] else np.zeros(c.shape[0], bool)
        return np.where(inexact, np.inf, err)
    c = _f64(c)
    sign = 1.0 if op.name == "argmax" else -1.0
    with np.errstate(all="ignore"):
        v = sign * c
        has_nan = np.isnan(v).any(axis=1)
        best = np.nanargmax(np.where(np.isnan(v), -np.inf, v), axis=1) if c.shape[1] else 0
        rows = np.arange(c.shape[0])
        top = v[rows, best] - e[rows, best]
        reach = v + e >= top[:, None]
        reach[rows, best] = False
        contested = reach.any(axis=1) & (e != 0).any(axis=1)
        # a nan decides alone (the first nan wins) unless some element may be nan
        contested = np.where(has_nan, (e != 0).any(axis=1), contested)
    return np.where(contested, np.inf, err)


def matmul_bound(args: list[_Arg], native: np.ndarray) -> Bound:
    a, b = args[0], args[1]
    shape = native.shape
    ea, eb = np.broadcast_to(a.err(), np.shape(a.native)), np.broadcast_to(b.err(), np.shape(b.native))
    if not _float(native.dtype):
        ua, ub = _f64(ea != 0), _f64(eb != 0)
        with np.errstate(all="ignore"):
            u = np.matmul(ua, np.ones_like(ub)) + np.matmul(np.ones_like(ua), ub)
        return Bound(native.copy(), np.where(np.asarray(u).reshape(shape) > 0, np.inf, 0.0),
                     np.zeros(shape, bool))
    fi = _info(native.dtype)
    ca, cb = _f64(a.center), _f64(b.center)
    k = np.shape(a.native)[-1]
    with np.errstate(all="ignore"):
        center = np.matmul(ca, cb)
        mag = np.matmul(np.abs(ca), np.abs(cb))
        err = (np.matmul(np.abs(ca), eb) + np.matmul(ea, np.abs(cb)) + np.matmul(ea, eb)
               + k * (float(fi.eps) * mag + float(fi.smallest_subnormal)))
    center, err, mag = (np.asarray(v, np.float64).reshape(shape) for v in (center, err, mag))
    # products or partial sums beyond the range overflow in one accumulation order or
    # precision and not in another (the backend multiplies small matmuls in float64)
    err = np.where(np.isfinite(mag) & (mag <= fi.max), _clean(err), np.inf)
    center, err = _saturate(center, err, native.dtype)
    return Bound(center, err, (err == 0) & (center == 0))


def movement_bound(op: OpDef, args: list[_Arg], attrs: dict, native: np.ndarray) -> Bound:
    """Data movement (and ops the policy does not know): the op applied to the bounds.

    The op runs on arrays standing in for its data inputs (index inputs stay as they
    are): on the errors minus on zeros moves the errors (and sums them where the op sums);
    on ones minus on zeros counts how many values land in each element."""
    shape = native.shape
    data = {k for k, a in enumerate(args) if a.tensor and not a.is_index}
    index = [a for a in args if a.tensor and a.is_index]
    if any(np.any(a.err() != 0) for a in index):
        return Bound(native.copy(), np.full(shape, np.inf), np.zeros(shape, bool))
    if not data:
        return exact_bound(native)
    attrs64 = _upcast_attrs(attrs)

    def apply(make) -> np.ndarray:
        arrays = [make(a) if k in data else (a.center if a.tensor else a.native)
                  for k, a in enumerate(args)]
        return _f64(_call(op, arrays, attrs64)).reshape(shape)

    def spread(make) -> np.ndarray:  # the op on ``make`` minus the op on zeros
        return apply(make) - apply(lambda a: np.zeros(np.shape(a.native)))

    with np.errstate(all="ignore"):
        err = _clean(np.abs(spread(lambda a: _f64(np.broadcast_to(a.err(), a.native.shape)))))
        count = spread(lambda a: np.ones(np.shape(a.native)))
        free = spread(lambda a: _f64(np.broadcast_to(a.free(), a.native.shape)))
    if not _float(native.dtype):
        return Bound(native.copy(), np.where(err != 0, np.inf, 0.0), np.zeros(shape, bool))
    center = apply(lambda a: a.center)
    summed = count > 1
    if summed.any():  # several values added into one element: the rounding of a sum
        mags = apply(lambda a: np.abs(_f64(a.center)))
        err = err + np.where(summed, count * ulp_terms(mags, native.dtype), 0.0)
    exact = (err == 0) & ~summed
    center = np.where(exact, _f64(native), center)
    return Bound(center, err, (free != 0) & (err == 0) & (center == 0))


def output_bounds(gm: GraphModule, inputs: tuple) -> tuple[tuple, list[Bound]]:
    """``gm``'s outputs on ``inputs`` (as a tuple; the interpreter computes them on the
    way) and the bound of each."""
    interp = BoundInterpreter(gm)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outs = interp.run(*inputs)
    nodes = gm.graph.output_node.args[0]
    nodes = nodes if isinstance(nodes, (tuple, list)) else (nodes,)
    outs = outs if isinstance(outs, tuple) else (outs,)
    bounds = []
    for n, value in zip(nodes, outs):
        b = interp.bounds.get(n) if isinstance(n, Node) else None
        bounds.append(b if b is not None else exact_bound(value.numpy()))
    return outs, bounds
