"""Random valid graphs over the op table, seeded and deterministic.

``generate_case(seed, index)`` draws case number ``index`` of the stream ``seed`` (the
same pair always gives the same case, whatever was drawn before). A case starts from a
few inputs whose shapes broadcast against one base shape, then adds steps; each step is
run eagerly as it is drawn, so every value's shape, dtype and numbers are known, and a
step eager rejects (a bad shape, an integer division by zero) is dropped.

Which ops, and how their arguments are made, comes from the op table:

- every op without the IMPURE, MUTATES or RANDOM flag and with one output is fuzzed;
- ELEMENTWISE ops take values from the pool, fresh inputs of broadcastable shapes, or
  Python numbers, where the op's samples show numbers or None are accepted; a position
  that is a bool tensor in every sample (``where``'s condition, ``masked_fill``'s mask)
  gets bools; attributes are drawn from the attribute sets of the op's samples;
- REDUCTION ops reduce over no dim (all), one or two random dims, negative or not, with
  or without keepdim; whether ``dim`` is an int or a tuple, and the other attributes,
  come from the samples; a reduction's result may be combined with the value it reduced
  by a binary elementwise op (``x - x.amax(1)``: broadcast back, with or without keepdim);
- VIEW ops, matmuls (matmul, bmm, linear), the row-wise composites (softmax,
  log_softmax, layer_norm) and cat/stack have makers that draw attributes fitting the
  value they are applied to, so they chain; a step may also repeat an earlier one
  (common subexpressions), and an output may appear twice;
- every op (including any op added to the table later) is also drawn through its own
  samples: the sample's arrays become inputs (float data takes special values), or a
  pool value of the same shape and dtype stands in for one, and its result joins the
  pool.

Inputs are float32, float64, int32, int64 or bool; contiguous, permuted, sliced with
steps and an offset, negative-step, or expanded (stride 0); float inputs may hold nan,
±inf, ±0.0, subnormals, huge values and values near exp's overflow; integer inputs their
extremes. Shapes are small (compiles stay fast); about one case in 40 has a dim of a few
hundred, so kernels split over threads, and some have an empty dim.
"""

from __future__ import annotations

import contextlib

import functools
import math
import warnings

import numpy as np

from .. import dtype as dt
from ..autograd import no_grad
from ..errors import OpError
from ..ops import OPS, Flag, dispatch
from ..ops.registry import OpDef
from ..tensor import Tensor
from .case import Case, Input, Ref, Step

SKIP_FLAGS = frozenset({Flag.IMPURE, Flag.MUTATES, Flag.RANDOM})
DTYPES = (dt.float32, dt.float64, dt.int32, dt.int64, dt.bool_)
DTYPE_WEIGHTS = (0.4, 0.2, 0.15, 0.1, 0.15)
MAX_ELEMENTS = 200_000

# float specials, per dtype: nan, infinities, signed zeros, subnormals, huge, near exp's
# overflow, tiny, and halves (ties for rounding)
SPECIALS = {
    np.dtype(np.float32): (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -3e-42, 1e30, -2e35, 88.5, -103.0,
                 1e-7, 0.5, -2.5, 3.4e38),
    np.dtype(np.float64): (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-310, -5e-320, 1e300, -2e305, 709.5,
                 -745.0, 1e-16, 0.5, -2.5, 1.7e308),
}
FLOAT_SCALARS = (0.0, -0.0, 1.0, -1.0, 2.0, 0.5, -1.5, 3.0, 1e-3, 100.0, 1e30, math.nan,
                 math.inf, -math.inf)
INT_SCALARS = (0, 1, -1, 2, 3, -7, 5)


def fuzzable(op: OpDef) -> bool:
    return not (op.flags & SKIP_FLAGS) and op.outputs == 1 and op.samples is not None \
        and not data_dependent(op)


_DATA_DEPENDENT: dict[str, bool] = {}


def data_dependent(op: OpDef) -> bool:
    """Whether every sample's output size depends on its values (nonzero): a compiled
    program runs such an op eagerly, so there is nothing to compare."""
    if op.name not in _DATA_DEPENDENT:
        drawn = op.samples(op.dtypes[0], np.random.default_rng(0)) if op.samples else []
        _DATA_DEPENDENT[op.name] = bool(drawn) and all(s.data_dependent for s in drawn)
    return _DATA_DEPENDENT[op.name]


def fuzzed_ops() -> list[OpDef]:
    return [op for op in OPS if fuzzable(op)]


FOCUS: frozenset[str] = frozenset()  # ops to build the programs around (``focused``)


@contextlib.contextmanager
def focused(names):
    """Draw the ops of ``names`` for 3 of 4 steps that can use them (a custom op, or ops
    under suspicion); the other steps keep the whole table around them."""
    global FOCUS
    unknown = [n for n in names if n not in OPS or not fuzzable(OPS[n])]
    if unknown:
        raise ValueError(f"fuzz: no fuzzable op named {', '.join(map(repr, unknown))}")
    saved, FOCUS = FOCUS, frozenset(names)
    try:
        yield
    finally:
        FOCUS = saved


# ---- what the op table's samples say about an op ----------------------------------------

class Profile:
    """An op's arguments as its samples use them: per position, whether numbers and None
    appear and whether tensors there are always bool; the attribute sets per dtype."""

    def __init__(self, op: OpDef):
        self.samples: dict[dt.dtype, list] = {}
        for d in op.dtypes:
            rng = np.random.default_rng(0)
            self.samples[d] = [s for s in op.samples(d, rng) if not s.data_dependent]
        n = len(op.inputs)
        self.scalar_ok = [False] * n
        self.none_ok = [False] * n
        bools = [[] for _ in range(n)]
        for d, samples in self.samples.items():
            for s in samples:
                for i, x in enumerate(s.inputs[:n]):
                    if x is None:
                        self.none_ok[i] = True
                    elif isinstance(x, np.ndarray):
                        if d is not dt.bool_:
                            bools[i].append(x.dtype == np.bool_)
                    else:
                        self.scalar_ok[i] = True
        self.bool_only = [bool(b) and all(b) for b in bools]
        self.attr_sets = {d: _distinct([s.attrs for s in ss]) or [{}]
                          for d, ss in self.samples.items()}

    def attrs(self, d: dt.dtype, rng) -> dict:
        sets = self.attr_sets.get(d) or [{}]
        return dict(sets[rng.integers(len(sets))])

    @property
    def dim_is_int(self) -> bool:
        dims = [s.attrs["dim"] for ss in self.samples.values() for s in ss
                if s.attrs.get("dim") is not None]
        return bool(dims) and all(isinstance(v, int) for v in dims)


def _distinct(dicts: list[dict]) -> list[dict]:
    seen, out = set(), []
    for a in dicts:
        key = repr(sorted(a.items(), key=lambda kv: kv[0]))
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out


@functools.cache
def profile(op: OpDef) -> Profile:
    return Profile(op)


# ---- input values and layouts -------------------------------------------------------------

def draw_values(rng, shape, d: dt.dtype, special: bool) -> np.ndarray:
    """Random values of dtype ``d``; ``special`` mixes in specials (floats) or extremes."""
    shape = tuple(shape)
    if d is dt.bool_:
        return rng.random(shape) < 0.5
    if not d.is_floating_point:
        a = rng.integers(-8, 9, shape).astype(d.np)
        if special and a.size:
            info = np.iinfo(d.np)
            picks = np.array([0, -1, 1, info.min, info.max, info.max // 3, info.min + 1], d.np)
            mask = rng.random(shape) < 0.25
            a[mask] = rng.choice(picks, int(mask.sum()))
        return a
    style = rng.integers(4)
    if style == 0:  # halves: exact arithmetic, ties for rounding
        a = rng.integers(-8, 9, shape) / 2
    else:
        a = rng.standard_normal(shape) * [1.0, 0.3, 3.0, 30.0][rng.integers(4)]
    a = np.asarray(a, d.np)
    if special and a.size:
        mask = rng.random(shape) < 0.25
        picks = np.array(SPECIALS[np.dtype(d.np)], d.np)
        a[mask] = rng.choice(picks, int(mask.sum()))
    return a


LAYOUTS = ("contiguous", "permuted", "sliced", "negative-step", "expanded")
LAYOUT_WEIGHTS = (0.4, 0.15, 0.15, 0.15, 0.15)


def draw_array(rng, shape, d: dt.dtype, layout: str, special: bool) -> np.ndarray:
    """Values of ``shape`` whose memory layout is ``layout``."""
    shape = tuple(shape)
    n = len(shape)
    if layout == "expanded" and any(s > 1 for s in shape):
        small = tuple(1 if s > 1 and rng.random() < 0.6 else s for s in shape)
        if small == shape:
            small = tuple(1 if s > 1 else s for s in shape)
        return np.broadcast_to(draw_values(rng, small, d, special), shape)
    values = draw_values(rng, shape, d, special)
    if layout == "permuted" and n >= 2:
        order = [int(k) for k in rng.permutation(n)]
        if order == sorted(order):
            order = order[::-1]
        return np.ascontiguousarray(values.transpose(order)).transpose(np.argsort(order))
    if layout in ("sliced", "negative-step") and n >= 1:
        steps = [int(s) for s in rng.integers(1, 4, n)]
        starts = [int(s) for s in rng.integers(0, 3, n)]
        big = np.zeros(tuple(st + max(m, 1) * s + 1 for m, s, st in zip(shape, steps, starts)),
                       values.dtype)
        if layout == "sliced":
            index = tuple(slice(st, st + m * s, s) for m, s, st in zip(shape, steps, starts))
        else:
            index = tuple(slice(st + (m - 1) * s, st - 1 if st else None, -s) if m else slice(0, 0)
                          for m, s, st in zip(shape, steps, starts))
        view = big[index]
        view[...] = values
        return view
    return values


# ---- the generator --------------------------------------------------------------------------

class Generator:
    """Draws one case: a pool of values (inputs, then step results), run eagerly."""

    def __init__(self, rng: np.random.Generator, base_shape: tuple[int, ...],
                 dtype_weights: tuple = DTYPE_WEIGHTS):
        self.rng = rng
        self.base = base_shape
        self.dtype_weights = dtype_weights  # of DTYPES, for inputs drawn without a dtype
        self.inputs: list[Input] = []
        self.steps: list[Step] = []
        self.values: list[Tensor] = []  # every value, by the order it was made in
        self.input_ids: list[int] = []

    # ---- the pool ----------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def ops(self, keep=lambda op: True) -> list[OpDef]:
        """The fuzzable ops ``keep`` accepts; mostly the focused ones among them, if any."""
        pool = [op for op in fuzzed_ops() if keep(op)]
        focus = [op for op in pool if op.name in FOCUS]
        return focus if focus and self.chance(0.75) else pool

    def new_input(self, shape, d: dt.dtype | None = None, layout: str | None = None,
                  special: bool | None = None) -> Ref:
        rng = self.rng
        if d is None:
            d = DTYPES[rng.choice(len(DTYPES), p=self.dtype_weights)]
        if layout is None:
            layout = LAYOUTS[rng.choice(len(LAYOUTS), p=LAYOUT_WEIGHTS)]
        if special is None:
            special = self.chance(0.35)
        return self.add_input(Input.of(draw_array(rng, shape, d, layout, special), rng))

    def add_input(self, inp: Input) -> Ref:
        self.inputs.append(inp)
        self.values.append(inp.tensor())
        self.input_ids.append(len(self.values) - 1)
        return Ref(len(self.values) - 1)

    def step(self, op: OpDef, args: list, attrs: dict | None = None) -> Ref | None:
        """Add ``op(*args, **attrs)`` if eager accepts it; its ref (None if rejected).
        Refs here number the pool in the order values were made."""
        attrs = attrs or {}
        with np.errstate(all="ignore"), warnings.catch_warnings(), no_grad():
            warnings.simplefilter("ignore")
            try:
                out = dispatch(op, *[self.values[a] if isinstance(a, Ref) else a for a in args],
                               **attrs)
            except (OpError, ValueError, TypeError, IndexError, ZeroDivisionError,
                    OverflowError, KeyError):
                return None
        if not isinstance(out, Tensor) or out.numel() > MAX_ELEMENTS:
            return None
        self.steps.append(Step(op.name, tuple(args), dict(attrs)))
        self.values.append(out)
        return Ref(len(self.values) - 1)

    def case(self, outputs: list[Ref], note: str) -> Case:
        """The case, numbered as cases are: inputs first, then steps (the pool numbers
        values in the order they were made)."""
        inputs = set(self.input_ids)
        step_ids = [k for k in range(len(self.values)) if k not in inputs]
        final = {old: Ref(new) for new, old in enumerate(self.input_ids + step_ids)}
        renumber = lambda a: final[a] if isinstance(a, Ref) else a
        steps = [Step(s.op, tuple(renumber(a) for a in s.args), s.attrs) for s in self.steps]
        return Case(list(self.inputs), steps, [final[r] for r in outputs], note)

    def refs(self, ok=lambda t: True) -> list[Ref]:
        return [Ref(k) for k, t in enumerate(self.values) if ok(t)]

    def pick(self, ok=lambda t: True) -> Ref | None:
        """A value from the pool, recent ones more often (so steps chain)."""
        pool = self.refs(ok)
        if not pool:
            return None
        inputs = set(self.input_ids)
        weights = np.arange(1, len(pool) + 1, dtype=float) ** 2 * \
            np.array([1.0 if r in inputs else 4.0 for r in pool])
        return pool[int(self.rng.choice(len(pool), p=weights / weights.sum()))]

    def shape(self, r: Ref) -> tuple:
        return tuple(self.values[r].shape)

    def dtype(self, r: Ref) -> dt.dtype:
        return self.values[r].dtype

    def broadcastable(self, shape: tuple) -> tuple:
        """``shape`` with some dims set to 1 and maybe some leading dims dropped."""
        out = [1 if self.chance(0.25) else s for s in shape]
        if out and self.chance(0.3):
            out = out[int(self.rng.integers(len(out) + 1)):]
        return tuple(out)

    def scalar_for(self, d: dt.dtype):
        if d is dt.bool_:
            return self.chance(0.5)
        if d.is_floating_point:
            return self.choice(FLOAT_SCALARS)
        return self.choice(INT_SCALARS) if self.chance(0.8) else self.choice((0.5, 2.0, -1.5))

    # ---- steps -------------------------------------------------------------------------
    def elementwise(self) -> None:
        op = self.choice(self.ops(lambda op: Flag.ELEMENTWISE in op.flags))
        prof = profile(op)
        n = len(op.inputs)
        main_pos = next((i for i in range(n) if not prof.bool_only[i]), 0)
        v = self.pick(lambda t: t.dtype in op.dtypes)
        if v is None:
            return
        d, shape = self.dtype(v), self.shape(v)
        args: list = [None] * n
        args[main_pos] = v
        for i in range(n):
            if i == main_pos:
                continue
            if prof.bool_only[i]:
                args[i] = self.operand(shape, dt.bool_)
            elif prof.none_ok[i] and self.chance(0.3):
                args[i] = None
            elif prof.scalar_ok[i] and self.chance(0.3):
                args[i] = self.scalar_for(d)
            else:
                other = d if self.chance(0.7) else self.choice(op.dtypes)
                args[i] = self.operand(shape, other)
        self.step(op, args, prof.attrs(d, self.rng))

    def operand(self, shape: tuple, d: dt.dtype):
        """A tensor broadcasting with ``shape``: from the pool or a fresh input."""
        def fits(t: Tensor) -> bool:
            try:
                return np.broadcast_shapes(shape, tuple(t.shape)) == shape and t.dtype is d
            except ValueError:
                return False
        if self.chance(0.5):
            r = self.pick(fits)
            if r is not None:
                return r
        return self.new_input(self.broadcastable(shape), d)

    def reduction(self) -> None:
        op = self.choice(self.ops(lambda op: Flag.REDUCTION in op.flags))
        prof = profile(op)
        v = self.pick(lambda t: t.dtype in op.dtypes)
        if v is None:
            return
        ndim = len(self.shape(v))
        attrs = {k: val for k, val in prof.attrs(self.dtype(v), self.rng).items()
                 if k not in ("dim", "keepdim")}
        if ndim == 0 or self.chance(0.2):
            dim = None
        elif prof.dim_is_int:
            dim = int(self.rng.integers(-ndim, ndim))
        else:
            k = 1 if ndim == 1 or self.chance(0.6) else 2
            dims = sorted(int(x) for x in self.rng.choice(ndim, k, replace=False))
            dim = tuple(x - ndim if self.chance(0.3) else x for x in dims)
        if "dim" in op.attrs:
            attrs["dim"] = dim
        if "keepdim" in op.attrs:
            attrs["keepdim"] = self.chance(0.4)
        self.step(op, [v], attrs)

    def reduce_back(self) -> None:
        """A value combined with a reduction of itself (x - x.amax(dim), x / x.sum(dim)),
        the pattern of row kernels; without keepdim the reduced value broadcasts against
        the trailing dims, as numpy lines shapes up."""
        v = self.pick(lambda t: t.ndim >= 1)
        if v is None:
            return
        d, ndim = self.dtype(v), len(self.shape(v))
        reductions = self.ops(lambda op: Flag.REDUCTION in op.flags and d in op.dtypes)
        binaries = self.ops(lambda op: Flag.ELEMENTWISE in op.flags and len(op.inputs) == 2
                            and not any(profile(op).bool_only))
        if not reductions:
            return
        op = self.choice(reductions)
        attrs = {k: val for k, val in profile(op).attrs(d, self.rng).items()
                 if k not in ("dim", "keepdim")}
        if profile(op).dim_is_int:
            attrs["dim"] = int(self.rng.integers(-ndim, ndim))
        else:
            k = 1 if ndim == 1 or self.chance(0.7) else 2
            attrs["dim"] = tuple(sorted(int(x) for x in self.rng.choice(ndim, k, replace=False)))
        attrs["keepdim"] = self.chance(0.5)
        r = self.step(op, [v], attrs)
        if r is not None:
            combine = self.choice(binaries)
            self.step(combine, [v, r] if self.chance(0.7) else [r, v],
                      profile(combine).attrs(d, self.rng))

    def view(self) -> None:
        v = self.pick()
        if v is None:
            return
        name = self.choice(sorted(VIEW_ATTRS))
        attrs = VIEW_ATTRS[name](self, v)
        if attrs is not None:
            self.step(OPS[name], [v], attrs)

    def matmul(self) -> None:
        numeric = lambda t: t.dtype in OPS.matmul.dtypes and t.ndim >= 1 and t.shape[-1] <= 64
        v = self.pick(numeric)
        if v is None:
            return
        shape, d = self.shape(v), self.dtype(v)
        n, m = shape[-1], int(self.rng.integers(1, 7))
        kind = self.choice(["matmul", "matmul", "linear", "bmm"])
        if kind == "bmm":
            if len(shape) != 3:
                return
            w = self.new_input((shape[0], n, m), d, special=False)
            self.step(OPS.bmm, [v, w])
        elif kind == "linear":
            w = self.new_input((m, n), d, special=False)
            bias = self.new_input((m,), d, special=False) if self.chance(0.6) else None
            self.step(OPS.linear, [v, w, bias])
        else:
            fits = lambda t: t.dtype is d and ((t.ndim == 1 and t.shape[0] == n) or
                                               (t.ndim >= 2 and t.shape[-2] == n))
            w = self.pick(fits) if self.chance(0.3) else None
            if w is None:
                wshape = (n,) if self.chance(0.15) else (n, m)
                if len(shape) >= 3 and self.chance(0.3):
                    wshape = shape[:-2] + (n, m)
                w = self.new_input(wshape, d, special=self.chance(0.15))
            self.step(OPS.matmul, [v, w] if self.chance(0.85) else [w, v])

    def rows(self) -> None:
        v = self.pick(lambda t: t.dtype.is_floating_point and t.ndim >= 1)
        if v is None:
            return
        shape, d = self.shape(v), self.dtype(v)
        kind = self.choice(["softmax", "log_softmax", "layer_norm"])
        if kind == "layer_norm":
            k = 1 if len(shape) == 1 or self.chance(0.7) else 2
            normalized = shape[-k:]
            weight = self.new_input(normalized, d, special=False) if self.chance(0.5) else None
            bias = self.new_input(normalized, d, special=False) if self.chance(0.5) else None
            self.step(OPS.layer_norm, [v, weight, bias], {"normalized_shape": normalized})
        else:
            dim = int(self.rng.integers(-len(shape), len(shape)))
            self.step(OPS[kind], [v], {"dim": dim})

    def join(self) -> None:
        """cat or stack of a value with pool values or inputs of a fitting shape."""
        v = self.pick(lambda t: t.ndim >= 1)
        if v is None:
            return
        shape, d = self.shape(v), self.dtype(v)
        op = OPS.cat if self.chance(0.6) else OPS.stack
        dim = int(self.rng.integers(-len(shape), len(shape)))
        parts = [v]
        for _ in range(int(self.rng.integers(1, 3))):
            other = list(shape)
            if op is OPS.cat:
                other[dim] = int(self.rng.integers(0, 4))
            want = tuple(other)
            same = self.refs(lambda t, want=want: tuple(t.shape) == want and t.dtype is d)
            parts.append(self.choice(same) if same and self.chance(0.5)
                         else self.new_input(want, d))
        self.step(op, parts, {"dim": dim if op is OPS.cat else int(self.rng.integers(
            -len(shape) - 1, len(shape) + 1))})

    def repeat(self) -> None:
        """An earlier step again, on the same arguments (CSE merges the two)."""
        if self.steps:
            s = self.choice(self.steps)
            self.step(OPS[s.op], list(s.args), dict(s.attrs))

    def from_samples(self) -> None:
        """Any op, called as one of its own samples (inputs may come from the pool)."""
        op = self.choice(self.ops())
        d = self.choice(list(profile(op).samples))
        rng = np.random.default_rng(int(self.rng.integers(2 ** 32)))
        samples = [s for s in op.samples(d, rng) if not s.data_dependent]
        if not samples:
            return
        s = self.choice(samples)
        args = []
        for x in s.inputs:
            if not isinstance(x, np.ndarray):
                args.append(x)
                continue
            if x.dtype.kind == "f":  # data (integer and bool inputs may be indices or masks)
                same = self.refs(lambda t, x=x: tuple(t.shape) == x.shape and t.dtype.np == x.dtype)
                if same and self.chance(0.5):
                    args.append(self.choice(same))
                    continue
            inp = Input.of(x, self.rng)
            if x.dtype.kind == "f" and x.size and self.chance(0.3):
                _add_specials(self.rng, inp)
            args.append(self.add_input(inp))
        self.step(op, args, dict(s.attrs))


def _add_specials(rng, inp: Input) -> None:
    """Special values at some places of a float input (its layout kept)."""
    view = inp.array()
    values = view.copy()
    flat = values.reshape(-1)
    mask = rng.random(flat.shape) < 0.25
    flat[mask] = rng.choice(np.array(SPECIALS[values.dtype], values.dtype), int(mask.sum()))
    view[...] = values


# ---- view attributes that fit a value ----------------------------------------------------------

def _permute(g: Generator, v: Ref):
    n = len(g.shape(v))
    return {"dims": tuple(int(k) for k in g.rng.permutation(n))} if n else None


def _reshape(g: Generator, v: Ref):
    shape = g.shape(v)
    n = math.prod(shape)
    options = [(-1,), (n,)]
    if len(shape) >= 2:
        k = int(g.rng.integers(len(shape) - 1))
        options.append(shape[:k] + (shape[k] * shape[k + 1],) + shape[k + 2:])
    for f in (2, 3):
        if n and n % f == 0:
            options.append((f, -1))
            options.append((-1, f))
    options.append(shape + (1,))
    options.append((1,) + shape)
    return {"size": tuple(int(s) for s in g.choice(options))}


def _expand(g: Generator, v: Ref):
    shape = g.shape(v)
    size = tuple(int(g.rng.integers(1, 4)) if s == 1 else (s if g.chance(0.7) else -1)
                 for s in shape)
    if g.chance(0.3):
        size = (int(g.rng.integers(1, 4)),) + size
    return {"size": size}


def _squeeze(g: Generator, v: Ref):
    shape = g.shape(v)
    ones = [k for k, s in enumerate(shape) if s == 1]
    if not ones or g.chance(0.3):
        return {"dim": None}
    return {"dim": g.choice(ones)}


def _unsqueeze(g: Generator, v: Ref):
    n = len(g.shape(v))
    return {"dim": int(g.rng.integers(-n - 1, n + 1))}


def _select(g: Generator, v: Ref):
    shape = g.shape(v)
    dims = [k for k, s in enumerate(shape) if s > 0]
    if not dims:
        return None
    d = g.choice(dims)
    return {"dim": d, "index": int(g.rng.integers(-shape[d], shape[d]))}


def _slice(g: Generator, v: Ref):
    shape = g.shape(v)
    if not shape:
        return None
    d = int(g.rng.integers(len(shape)))
    n = shape[d]
    step = g.choice([1, 1, 2, 3, -1, -2])
    start = None if g.chance(0.4) else int(g.rng.integers(-n - 1, n + 2))
    end = None if g.chance(0.4) else int(g.rng.integers(-n - 1, n + 2))
    return {"dim": d, "start": start, "end": end, "step": step}


def _as_strided(g: Generator, v: Ref):
    t = g.values[v]
    n = t.numel()
    if not t.is_contiguous() or n < 2:
        return None
    rows = int(g.rng.integers(1, 4))
    cols = int(g.rng.integers(1, 4))
    s0, s1 = int(g.rng.integers(0, 3)), int(g.rng.integers(0, 3))
    extent = (rows - 1) * s0 + (cols - 1) * s1
    if extent >= n:
        return None
    offset = t.storage_offset() + int(g.rng.integers(0, n - extent))
    return {"size": (rows, cols), "stride": (s0, s1), "storage_offset": offset}


VIEW_ATTRS = {"permute": _permute, "reshape": _reshape, "view": _reshape, "expand": _expand,
              "squeeze": _squeeze, "unsqueeze": _unsqueeze, "select": _select,
              "slice": _slice, "as_strided": _as_strided}

STEP_KINDS = ("elementwise", "reduction", "reduce_back", "view", "matmul", "rows", "join",
              "repeat", "from_samples")
STEP_WEIGHTS = (0.32, 0.1, 0.08, 0.14, 0.08, 0.07, 0.04, 0.02, 0.15)


def draw_base_shape(rng: np.random.Generator) -> tuple[int, ...]:
    ndim = int(rng.choice(5, p=(0.05, 0.2, 0.4, 0.3, 0.05)))
    sizes = (1, 2, 3, 4, 5, 6, 7, 8)
    shape = [int(rng.choice(sizes, p=(0.15, 0.15, 0.2, 0.15, 0.15, 0.08, 0.07, 0.05)))
             for _ in range(ndim)]
    if shape and rng.random() < 0.025:  # a dim of a few hundred: kernels split over threads
        shape[int(rng.integers(len(shape)))] = int(rng.integers(200, 700))
    elif shape and rng.random() < 0.03:
        shape[int(rng.integers(len(shape)))] = 0
    return tuple(shape)


def generate_case(seed: int, index: int, max_steps: int = 8,
                  dtype_weights: tuple = DTYPE_WEIGHTS) -> Case:
    """Case number ``index`` of the stream ``seed`` (deterministic); ``dtype_weights``
    (of ``DTYPES``) for inputs whose dtype is not decided by the op they feed."""
    rng = np.random.default_rng([seed, index])
    g = Generator(rng, draw_base_shape(rng), dtype_weights)
    g.new_input(g.base)
    for _ in range(int(rng.integers(0, 3))):
        g.new_input(g.broadcastable(g.base))
    want = int(rng.integers(1, max_steps + 1))
    for _ in range(4 * want):
        if len(g.steps) >= want:
            break
        kind = STEP_KINDS[int(rng.choice(len(STEP_KINDS), p=STEP_WEIGHTS))]
        getattr(g, kind)()
    # every value no later step reads is an output (so no step is dead code), and
    # sometimes a value that is also read later, or an input
    used = {a for s in g.steps for a in s.refs()}
    made = [Ref(k) for k in range(len(g.values)) if k not in set(g.input_ids)]
    outputs = [r for r in made if r not in used] or [Ref(len(g.values) - 1)]
    if rng.random() < 0.3:  # also read later, an input, or an output twice
        outputs.append(Ref(int(rng.integers(len(g.values)))))
    return g.case(outputs, note=f"seed {seed}, case {index}")
