"""Mutation cases: random programs that write in place and through views, as data.

A ``MutationCase`` is a Python function written out as statements, so a repro is a program
a human reads (``case.source()``), and it runs as that program (``case.function()``):

    def program(v0, v1):
        v2 = v0 * 2.0
        v2.t()[1:, ::2].relu_()
        v3 = v2.view(-1)
        v2[[0, 2]] += v1
        v4 = v3 * v0.flatten()
        v0.add_(1.5)
        return v4, v0

- ``inputs``: ``case.Input`` values (flat buffer, shape, strides, offset), so inputs are
  transposed or sliced exactly as saved; parameters are named v0, v1, ...;
- ``stmts``: ``Stmt(form, operands, out)``; ``FORMS[form]`` is its Python text with
  ``{0}, {1}, ...`` for the operands, and ``out`` the variable it defines (``vN = ...``)
  or None for a statement run for its effect. An operand is a ``Ref`` (a variable), a
  ``Place`` (a variable seen through a chain of views, ``v2.t()[1:, ::2]``), a ``Key``
  (the inside of ``[...]``), a Python number or a list of ints;
- ``outputs``: the refs returned.

JSON (``save_mutation_case``/``load_mutation_case``) reuses the fuzz case's encoding:

    {"format": "graphc-fuzz-mutation-case", "version": 1, "note": "...",
     "inputs": [{"dtype": "float32", "shape": [2, 3], "strides": [1, 2], ...}],
     "stmts": [{"form": "relu_", "operands": [{"place": [2, [["t", []]]]}], "out": null}],
     "outputs": [3, 0]}

``generate_mutation_case(seed, index)`` draws a case (generator below); ``case_kinds``
names the kinds of mutation a case exercises.
"""

from __future__ import annotations

import json
import linecache
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from .. import dtype as dt
from ..autograd import no_grad
from ..tensor import Tensor
from .case import Input, Ref, _decode, _encode, inputs_from_json, inputs_to_json, write_json
from .generate import draw_array

FORMAT = "graphc-fuzz-mutation-case"
VERSION = 1

# ---- the statements a program is made of ---------------------------------------------------

# form -> Python text; {0} is the place written (or the first operand)
FORMS: dict[str, str] = {
    # pure values
    "name": "{0}",  # a view (or a variable) under a new name
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "exp": "{0}.exp()", "tanh": "{0}.tanh()", "abs": "{0}.abs()", "neg": "-{0}",
    "clone": "{0}.clone()", "contiguous": "{0}.contiguous()",
    "sum": "{0}.sum({1}, keepdim=True)", "gt": "{0} > {1}",
    "where": "graphc.where({0}, {1}, {2})", "to": "{0}.to({1})",
    # writes
    "iadd": "{0} += {1}", "isub": "{0} -= {1}", "imul": "{0} *= {1}", "idiv": "{0} /= {1}",
    "add_": "{0}.add_({1})", "sub_": "{0}.sub_({1})", "mul_": "{0}.mul_({1})",
    "relu_": "{0}.relu_()", "sigmoid_": "{0}.sigmoid_()", "neg_": "{0}.neg_()",
    "abs_": "{0}.abs_()", "exp_": "{0}.exp_()", "tanh_": "{0}.tanh_()",
    "sqrt_": "{0}.sqrt_()", "floor_": "{0}.floor_()",
    "clamp_": "{0}.clamp_({1}, {2})", "masked_fill_": "{0}.masked_fill_({1}, {2})",
    "copy_": "{0}.copy_({1})", "fill_": "{0}.fill_({1})", "zero_": "{0}.zero_()",
    "setitem": "{0}[{1}] = {2}", "setitem_iadd": "{0}[{1}] += {2}",
    "setitem_imul": "{0}[{1}] *= {2}",
}
PURE_BINARY = ("add", "sub", "mul", "div")
PURE_UNARY = ("exp", "tanh", "abs", "neg", "clone", "contiguous")
AUGMENTED = ("iadd", "isub", "imul", "idiv", "add_", "sub_", "mul_")
UNARY_INPLACE = ("relu_", "sigmoid_", "neg_", "abs_", "exp_", "tanh_", "sqrt_", "floor_")
WRITES = frozenset(AUGMENTED + UNARY_INPLACE + (
    "clamp_", "masked_fill_", "copy_", "fill_", "zero_", "setitem", "setitem_iadd",
    "setitem_imul"))

@dataclass(frozen=True)
class Key:
    """The inside of ``[...]``: ints, slices, None, Ellipsis, lists of ints, Refs."""

    items: tuple

    def __str__(self) -> str:
        return ", ".join(_key_item(k) for k in self.items) if self.items else "()"


def _key_item(k) -> str:
    if isinstance(k, slice):
        part = lambda v: "" if v is None else str(v)
        text = f"{part(k.start)}:{part(k.stop)}"
        return text + (f":{k.step}" if k.step not in (None, 1) else "")
    if k is Ellipsis:
        return "..."
    return repr(k)


@dataclass(frozen=True)
class Place:
    """A variable seen through a chain of views: ``(name, args)`` pairs, ``getitem``'s
    argument a Key."""

    ref: Ref
    views: tuple = ()

    def __str__(self) -> str:
        text = repr(self.ref)
        for name, args in self.views:
            if name == "getitem":
                text += f"[{args[0]}]"
            else:
                text += f".{name}({', '.join(repr(a) for a in args)})"
        return text


@dataclass
class Stmt:
    form: str
    operands: tuple
    out: Ref | None = None

    def refs(self) -> list[Ref]:
        """Every variable the statement reads (including through places and keys)."""
        return list(_refs_in(self.operands))

    @property
    def writes(self) -> bool:
        return self.form in WRITES

    def __str__(self) -> str:
        text = FORMS[self.form].format(*(_operand(x) for x in self.operands))
        return text if self.out is None else f"{self.out!r} = {text}"


def _refs_in(x):
    if isinstance(x, Ref):
        yield x
    elif isinstance(x, Place):
        yield x.ref
        for _, args in x.views:
            yield from _refs_in(args)
    elif isinstance(x, Key):
        yield from _refs_in(x.items)
    elif isinstance(x, tuple):
        for item in x:
            yield from _refs_in(item)


def _operand(x) -> str:
    if isinstance(x, float) and not np.isfinite(x):
        return f"float('{x!r}')"
    return str(x) if isinstance(x, (Place, Key)) else repr(x)


@dataclass
class MutationCase:
    inputs: list[Input]
    stmts: list[Stmt]
    outputs: list[Ref]
    note: str = ""

    @property
    def size(self) -> tuple:
        return (len(self.stmts), len(self.outputs), len(self.inputs))

    def source(self) -> str:
        """The program as Python source."""
        params = ", ".join(f"v{k}" for k in range(len(self.inputs)))
        body = [f"    {s}" for s in self.stmts]
        body.append(f"    return {', '.join(repr(r) for r in self.outputs)}"
                    + ("," if len(self.outputs) == 1 else ""))
        return f"def program({params}):\n" + "\n".join(body) + "\n"

    def describe(self) -> str:
        """The source, with each input's dtype, shape and layout above it."""
        lines = []
        for k, i in enumerate(self.inputs):
            layout = "" if i.contiguous else f", strides {list(i.strides)}, offset {i.offset}"
            grad = ", requires_grad" if i.requires_grad else ""
            lines.append(f"# v{k}: {i.dtype.name}{list(i.shape)}{layout}{grad}")
        return "\n".join(lines) + "\n" + self.source()

    def function(self):
        """The program as a Python function (its lines are shown in tracebacks)."""
        text = self.source()
        name = f"<mutation case {zlib.crc32(text.encode()):08x}>"
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        namespace = {"graphc": _graphc()}
        exec(compile(text, name, "exec"), namespace)  # noqa: S102 - our own generated source
        return namespace["program"]

    def tensors(self) -> tuple[Tensor, ...]:
        """Fresh input tensors, each with its saved layout and its own buffer."""
        return tuple(i.tensor() for i in self.inputs)


def _graphc():
    import graphc
    return graphc


def run_eager(case: MutationCase, tensors: tuple | None = None) -> tuple[tuple, tuple]:
    """The program's outputs in eager mode, and the inputs it ran on (now changed)."""
    tensors = case.tensors() if tensors is None else tensors
    with np.errstate(all="ignore"), warnings.catch_warnings(), no_grad():
        warnings.simplefilter("ignore")
        return case.function()(*tensors), tensors


# ---- JSON ---------------------------------------------------------------------------------

def _encode_operand(x):
    if isinstance(x, Place):
        return {"place": [int(x.ref), [[n, [_encode_operand(a) for a in args]]
                                      for n, args in x.views]]}
    if isinstance(x, Key):
        return {"key": [_encode_operand(k) for k in x.items]}
    if isinstance(x, list):
        return {"list": x}
    return _encode(x)


def _decode_operand(x):
    if isinstance(x, dict) and len(x) == 1:
        (tag, v), = x.items()
        if tag == "place":
            return Place(Ref(v[0]), tuple((n, tuple(_decode_operand(a) for a in args))
                                          for n, args in v[1]))
        if tag == "key":
            return Key(tuple(_decode_operand(k) for k in v))
        if tag == "list":
            return list(v)
    return _decode(x)


def to_json(case: MutationCase) -> dict:
    return {
        "format": FORMAT, "version": VERSION, "note": case.note,
        "inputs": inputs_to_json(case.inputs),
        "stmts": [{"form": s.form, "operands": [_encode_operand(x) for x in s.operands],
                   "out": None if s.out is None else int(s.out)} for s in case.stmts],
        "outputs": [int(r) for r in case.outputs],
        "source": case.source().splitlines(),
    }


def from_json(data: dict) -> MutationCase:
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} version {VERSION} file "
                         f"(format {data.get('format')!r}, version {data.get('version')!r})")
    inputs = inputs_from_json(data["inputs"])
    stmts = []
    for s in data["stmts"]:
        if s["form"] not in FORMS:
            raise ValueError(f"unknown statement form {s['form']!r} in a mutation case")
        stmts.append(Stmt(s["form"], tuple(_decode_operand(x) for x in s["operands"]),
                          None if s["out"] is None else Ref(s["out"])))
    return MutationCase(inputs, stmts, [Ref(r) for r in data["outputs"]], data.get("note", ""))


def save_mutation_case(case: MutationCase, path: str) -> str:
    """Write ``case`` as JSON to ``path`` (a file, or a directory: a new ``mutation_NNNN``)."""
    return write_json(to_json(case), path, "mutation")


def load_mutation_case(path: str) -> MutationCase:
    with open(path) as f:
        return from_json(json.load(f))


# ---- the generator ---------------------------------------------------------------------------

FLOAT_SCALARS = (1.0, -1.0, 2.0, 0.5, -1.5, 3.0, 0.25, 0.0)
INT_SCALARS = (1, -1, 2, 3, 0, -4)
DTYPES = (dt.float32, dt.float64, dt.int32, dt.int64, dt.bool_)
DTYPE_WEIGHTS = (0.55, 0.25, 0.08, 0.07, 0.05)
LAYOUTS = ("contiguous", "permuted", "sliced", "negative-step")
LAYOUT_WEIGHTS = (0.5, 0.25, 0.2, 0.05)


@dataclass
class _Var:
    tensor: Tensor
    is_view: bool  # made by a view of another variable (shares its storage)


class MutationGenerator:
    """Draws one case, running every statement eagerly as it is drawn (so each variable's
    shape, dtype and storage are known); a statement eager rejects is dropped."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.inputs: list[Input] = []
        self.input_refs: list[Ref] = []  # where each input sits among the variables
        self.stmts: list[Stmt] = []
        self.vars: list[_Var] = []  # numbered as made (the case numbers inputs first)
        self.namespace: dict = {}
        self.written: list[Ref] = []  # variables written, latest last

    # ---- drawing ---------------------------------------------------------------------------
    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def t(self, r: Ref) -> Tensor:
        return self.vars[r].tensor

    def pick(self, ok=lambda t: True, recent: Ref | None = None) -> Ref | None:
        """A variable, recent ones more often; ones sharing memory with ``recent`` first."""
        pool = [Ref(k) for k, v in enumerate(self.vars) if ok(v.tensor)]
        if not pool:
            return None
        if recent is not None and self.chance(0.6):
            near = [r for r in pool if self.t(r)._storage is self.t(recent)._storage]
            if near:
                return self.choice(near)
        w = np.arange(1, len(pool) + 1, dtype=float) ** 1.5
        return pool[int(self.rng.choice(len(pool), p=w / w.sum()))]

    def scalar(self, d: dt.dtype):
        if d is dt.bool_:
            return self.chance(0.5)
        if d.is_floating_point:
            return self.choice(FLOAT_SCALARS)
        return self.choice(INT_SCALARS)

    # ---- inputs ----------------------------------------------------------------------------
    def new_input(self, shape: tuple, d: dt.dtype | None = None) -> Ref:
        rng = self.rng
        if d is None:
            d = DTYPES[rng.choice(len(DTYPES), p=DTYPE_WEIGHTS)]
        layout = LAYOUTS[rng.choice(len(LAYOUTS), p=LAYOUT_WEIGHTS)]
        values = _values(rng, shape, d)
        inp = Input.of(draw_array(rng, shape, d, layout, special=False), rng)
        inp.array()[...] = values
        r = Ref(len(self.vars))
        self.inputs.append(inp)
        self.input_refs.append(r)
        self.namespace[repr(r)] = inp.tensor()
        self.vars.append(_Var(self.namespace[repr(r)], False))
        return r

    # ---- statements ------------------------------------------------------------------------
    def add(self, form: str, operands: tuple, defines: bool = False) -> Stmt | None:
        """Run the statement eagerly and keep it if eager accepts it (None if not)."""
        stmt = Stmt(form, tuple(operands), Ref(len(self.vars)) if defines else None)
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings(), no_grad():
                warnings.simplefilter("ignore")
                exec(str(stmt), {"graphc": _graphc()}, self.namespace)  # noqa: S102
            value = self.namespace[repr(stmt.out)] if defines else None
            if defines and not isinstance(value, Tensor):
                raise TypeError("not a tensor")
        except Exception:  # noqa: BLE001 - whatever eager refuses is dropped
            self._replay()
            return None
        if defines:
            is_view = any(value._storage is v.tensor._storage for v in self.vars)
            self.vars.append(_Var(value, is_view))
        self.stmts.append(stmt)
        if stmt.writes:
            self.written.append(operands[0].ref)
        return stmt

    def value(self, form: str, operands: tuple) -> Ref | None:
        """A statement defining a new variable; its ref (None if eager rejects it)."""
        stmt = self.add(form, operands, defines=True)
        return None if stmt is None else stmt.out

    def case(self, outputs: list[Ref], note: str) -> MutationCase:
        """The case, numbered as cases are: inputs first, then variables as made."""
        order = self.input_refs + [Ref(k) for k in range(len(self.vars))
                                   if k not in set(self.input_refs)]
        final = {old: Ref(new) for new, old in enumerate(order)}
        stmts = [Stmt(s.form, _renumbered(s.operands, final),
                      None if s.out is None else final[s.out]) for s in self.stmts]
        return MutationCase(list(self.inputs), stmts, [final[r] for r in outputs], note)

    def _replay(self) -> None:
        """A rejected statement may have written before it failed: run the kept ones again."""
        ns = {repr(r): i.tensor() for r, i in zip(self.input_refs, self.inputs)}
        with np.errstate(all="ignore"), warnings.catch_warnings(), no_grad():
            warnings.simplefilter("ignore")
            for s in self.stmts:
                exec(str(s), {"graphc": _graphc()}, ns)  # noqa: S102
        self.namespace = ns
        for k, v in enumerate(self.vars):
            v.tensor = ns[f"v{k}"]

    # ---- places: views to write through ----------------------------------------------------
    def place(self, r: Ref, depth: int | None = None) -> Place:
        """``r`` through 0 to 3 views (about one in three writes goes straight to ``r``)."""
        if depth is None:
            depth = self.choice((0, 0, 1, 1, 1, 2, 2, 3))
        views, t = [], self.t(r)
        for _ in range(depth):
            view = self.view_of(t)
            if view is None:
                break
            try:
                with no_grad():
                    t = _apply_view(t, view)
            except Exception:  # noqa: BLE001 - a view this layout does not allow
                break
            views.append(view)
        return Place(r, tuple(views))

    def view_of(self, t: Tensor):
        shape, n = tuple(t.shape), t.ndim
        options = []
        if n == 2:
            options += [("t", ())]
        if n >= 2:
            d0, d1 = sorted(int(x) for x in self.rng.choice(n, 2, replace=False))
            options += [("transpose", (d0, d1)),
                        ("permute", tuple(int(x) for x in self.rng.permutation(n)))]
        if n >= 1:
            d = int(self.rng.integers(n))
            options += [("getitem", (self.basic_key(shape),)), ("getitem", (self.basic_key(shape),))]
            if shape[d] > 0:
                options.append(("select", (d, int(self.rng.integers(-shape[d], shape[d])))))
                start = int(self.rng.integers(shape[d]))
                options.append(("narrow", (d, start, int(self.rng.integers(shape[d] - start + 1)))))
            options.append(("flatten", ()))
            ones = [k for k, s in enumerate(shape) if s == 1]
            if ones:
                options.append(("squeeze", (self.choice(ones),)))
        options.append(("unsqueeze", (int(self.rng.integers(-n - 1, n + 1)),)))
        size = int(np.prod(shape))
        shapes = [(-1,), (size,)] + ([(2, -1)] if size % 2 == 0 and size else []) + \
            ([(-1, 3)] if size % 3 == 0 and size else []) + [shape + (1,)]
        options += [("view", self.choice(shapes)), ("reshape", self.choice(shapes))]
        return self.choice(options) if options else None

    def basic_key(self, shape: tuple) -> Key:
        """A key of slices (with steps), ints, None and ``...``: a view."""
        items = []
        for n in shape:
            if len(items) and self.chance(0.3):
                break
            r = self.rng.random()
            if r < 0.2 and n > 0:
                items.append(int(self.rng.integers(-n, n)))
            elif r < 0.3:
                items.append(slice(None))
            elif r < 0.35:
                items.append(None)
                items.append(slice(None))
            else:
                start = self.choice((None, 0, 1, -2)) if n else None
                stop = self.choice((None, None, n - 1, -1)) if n else None
                items.append(slice(start, stop, self.choice((None, None, 2, 3))))
        if self.chance(0.15) and items:
            items = [Ellipsis] + items[len(items) // 2:]
        return Key(tuple(items) or (slice(None),))

    def mask(self, shape: tuple) -> Ref | None:
        """A bool variable of ``shape``: one there is, or ``v > c`` of a float one."""
        m = self.pick(lambda t: t.dtype is dt.bool_ and tuple(t.shape) == shape)
        if m is not None and self.chance(0.7):
            return m
        source = self.pick(lambda t: t.dtype.is_floating_point and tuple(t.shape) == shape,
                           recent=self.written[-1] if self.written else None)
        if source is None:
            return m
        return self.value("gt", (source, self.choice((0.0, 0.5, -1.0))))

    def index_key(self, shape: tuple, mask: bool) -> Key | None:
        """An advanced key: a list of distinct ints in one dim (a repeated index has no
        defined winner), or a bool mask over the leading dims."""
        if not shape:
            return None
        if mask:
            m = self.mask(shape[:int(self.rng.integers(1, len(shape) + 1))])
            return None if m is None else Key((m,))
        d = int(self.rng.integers(len(shape)))
        n = shape[d]
        if n == 0:
            return None
        k = int(self.rng.integers(1, n + 1))
        picked = [int(i) for i in self.rng.permutation(n)[:k]]
        picked = [i - n if self.chance(0.3) else i for i in picked]
        return Key((slice(None),) * d + (picked,))

    # ---- values written --------------------------------------------------------------------
    def source(self, target: Tensor, allow_cast: bool = True):
        """A value to write into ``target``: a number, or a variable (maybe a view of one)
        that broadcasts to it, maybe of another dtype."""
        shape, d = tuple(target.shape), target.dtype
        if self.chance(0.3):
            return self.scalar(d)

        def fits(t: Tensor) -> bool:
            try:
                ok = np.broadcast_shapes(tuple(t.shape), shape) == shape
            except ValueError:
                return False
            if not allow_cast:
                return ok and t.dtype is d
            return ok and (t.dtype is d or (d.is_floating_point and t.dtype is not dt.bool_))
        r = self.pick(fits, recent=self.written[-1] if self.written else None)
        if r is None or self.chance(0.2):
            small = tuple(1 if self.chance(0.3) else s for s in shape)
            if small and self.chance(0.3):
                small = small[1:]
            r = self.new_input(small, d if self.chance(0.8) or not d.is_floating_point
                               else self.choice((dt.float32, dt.float64, dt.int32)))
        if self.chance(0.3) and self.t(r).ndim == 2 and self.t(r).shape[0] == self.t(r).shape[1]:
            return Place(r, (("t", ()),))
        return r

    # ---- steps -----------------------------------------------------------------------------
    def pure(self) -> None:
        recent = self.written[-1] if self.written else None
        a = self.pick(lambda t: t.dtype is not dt.bool_, recent=recent)
        if a is None:
            return
        ta = self.t(a)
        r = self.rng.random()
        if r < 0.45:
            form = self.choice(PURE_BINARY)
            b = self.pick(lambda t: t.dtype is not dt.bool_ and _broadcasts(t, ta), recent=recent)
            other = self.scalar(ta.dtype if ta.dtype is not dt.bool_ else dt.float32) \
                if b is None or self.chance(0.3) else b
            self.value(form, (a, other) if self.chance(0.8) else (other, a))
        elif r < 0.7:
            self.value(self.choice(PURE_UNARY), (a,))
        elif r < 0.8 and ta.ndim:
            self.value("sum", (a, int(self.rng.integers(ta.ndim))))
        elif r < 0.9:
            m = self.pick(lambda t: t.dtype is dt.bool_ and _broadcasts(t, ta))
            if m is None:
                m = self.value("gt", (a, self.scalar(ta.dtype)))
            b = self.pick(lambda t: t.dtype is ta.dtype and _broadcasts(t, ta), recent=recent)
            if m is not None:
                self.value("where", (m, a, b if b is not None else self.scalar(ta.dtype)))
        else:
            self.value("to", (a, self.choice(("float32", "float64", "int32"))))

    def name_view(self) -> None:
        """A view under its own name, read (and maybe written) later."""
        r = self.pick(recent=self.written[-1] if self.written else None)
        if r is not None:
            p = self.place(r, depth=self.choice((1, 1, 2, 3)))
            if p.views:
                self.value("name", (p,))

    def write(self) -> None:
        target = self.pick_target()
        if target is None:
            return
        p = self.place(target)
        try:
            with no_grad():
                t = _apply_place(self.t(target), p)
        except Exception:  # noqa: BLE001
            return
        d = t.dtype
        kind = self.choice(("augmented", "augmented", "augmented", "augmented", "unary",
                            "unary", "clamp", "masked_fill",
                            "copy", "copy", "fill", "zero", "setitem", "setitem", "index",
                            "index", "mask"))
        numeric = d is not dt.bool_
        if kind == "augmented" and numeric:
            forms = AUGMENTED if d.is_floating_point else tuple(f for f in AUGMENTED if f != "idiv")
            self.add(self.choice(forms), (p, self.source(t)))
        elif kind == "unary" and numeric:
            unary = UNARY_INPLACE if d.is_floating_point else ("relu_", "neg_", "abs_")
            self.add(self.choice(unary), (p,))
        elif kind == "clamp" and numeric:
            lo = self.scalar(d)
            hi = None if self.chance(0.3) else self.scalar(d)
            self.add("clamp_", (p, lo, hi))
        elif kind == "masked_fill":
            m = self.mask(tuple(t.shape)[int(self.rng.integers(t.ndim + 1)):])  # broadcasts
            if m is not None:
                self.add("masked_fill_", (p, m, self.scalar(d)))
        elif kind == "copy":
            self.add("copy_", (p, self.source(t)))
        elif kind == "fill":
            self.add("fill_", (p, self.scalar(d)))
        elif kind == "zero":
            self.add("zero_", (p,))
        elif kind == "setitem" and t.ndim:
            key = self.basic_key(tuple(t.shape))
            form = "setitem" if self.chance(0.6) or not numeric else \
                self.choice(("setitem_iadd", "setitem_imul"))
            self.write_key(form, p, t, key)
        elif kind in ("index", "mask") and t.ndim:
            key = self.index_key(tuple(t.shape), mask=kind == "mask")
            if key is not None:
                form = "setitem" if self.chance(0.5) or not numeric else "setitem_iadd"
                self.write_key(form, p, t, key)

    def write_key(self, form: str, p: Place, t: Tensor, key: Key) -> None:
        try:
            with no_grad():
                part = t[_key_value(key, self.namespace)]
        except Exception:  # noqa: BLE001
            return
        value = self.source(part, allow_cast=form == "setitem")
        self.add(form, (p, key, value))

    def pick_target(self) -> Ref | None:
        """What to write: an input, a variable, a view of one (two views of one base and
        the base itself are all written, in some programs)."""
        writable = lambda t: t.numel() < 10_000
        if self.chance(0.3):
            inputs = [r for r in self.input_refs if writable(self.t(r))]
            if inputs:
                return self.choice(inputs)
        return self.pick(writable, recent=self.written[-1] if self.written and
                         self.chance(0.5) else None)


def _values(rng, shape, d: dt.dtype) -> np.ndarray:
    if d is dt.bool_:
        return rng.random(shape) < 0.5
    if d.is_floating_point:
        return np.asarray(rng.integers(-8, 9, shape) / 2 if rng.random() < 0.3
                          else rng.standard_normal(shape) * 2, d.np)
    return rng.integers(-5, 6, shape).astype(d.np)


def _broadcasts(t: Tensor, to: Tensor) -> bool:
    try:
        return np.broadcast_shapes(tuple(t.shape), tuple(to.shape)) == tuple(to.shape)
    except ValueError:
        return False


def _renumbered(x, final: dict):
    """``x`` (an operand, or a tuple of them) with every Ref mapped through ``final``."""
    if isinstance(x, Ref):
        return final[x]
    if isinstance(x, Place):
        return Place(final[x.ref], tuple((n, _renumbered(a, final)) for n, a in x.views))
    if isinstance(x, Key):
        return Key(_renumbered(x.items, final))
    if isinstance(x, tuple):
        return tuple(_renumbered(v, final) for v in x)
    return x


def _key_value(key: Key, namespace: dict):
    return tuple(namespace[repr(k)] if isinstance(k, Ref) else k for k in key.items)


def _apply_view(t: Tensor, view) -> Tensor:
    name, args = view
    return t[tuple(args[0].items)] if name == "getitem" else getattr(t, name)(*args)


def _apply_place(t: Tensor, p: Place) -> Tensor:
    for view in p.views:
        t = _apply_view(t, view)
    return t


def draw_shape(rng) -> tuple:
    ndim = int(rng.choice(4, p=(0.05, 0.3, 0.5, 0.15)))
    sizes = (0, 1, 2, 3, 4, 5)
    return tuple(int(rng.choice(sizes, p=(0.03, 0.17, 0.25, 0.25, 0.2, 0.1)))
                 for _ in range(ndim))


STEP_KINDS = ("pure", "name_view", "write")
STEP_WEIGHTS = (0.3, 0.15, 0.55)


def generate_mutation_case(seed: int, index: int, max_stmts: int = 10) -> MutationCase:
    """Case number ``index`` of the mutation stream ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, index, 0x6D757461])  # not the pure stream's cases
    g = MutationGenerator(rng)
    shape = draw_shape(rng)
    g.new_input(shape, dt.float32 if rng.random() < 0.5 else None)
    for _ in range(int(rng.integers(0, 3))):
        g.new_input(tuple(1 if rng.random() < 0.2 else s for s in shape))
    want = int(rng.integers(2, max_stmts + 1))
    if rng.random() < 0.7:  # most programs start from a value of their own
        g.pure()
    for _ in range(4 * want):
        if len(g.stmts) >= want:
            break
        getattr(g, STEP_KINDS[int(rng.choice(len(STEP_KINDS), p=STEP_WEIGHTS))])()
    return g.case(_draw_outputs(g), f"mutation seed {seed}, case {index}")


def _draw_outputs(g: MutationGenerator) -> list[Ref]:
    """The last value and what nothing read later; sometimes a written input itself, or a
    view of one (eager returns its memory)."""
    read = {r for s in g.stmts for r in s.refs()}
    defined = [s.out for s in g.stmts if s.out is not None]
    outputs = [r for r in defined if r not in read][-3:]
    if defined and defined[-1] not in outputs:
        outputs.append(defined[-1])
    written_inputs = [r for r in dict.fromkeys(g.written) if r in g.input_refs]
    if written_inputs and g.chance(0.5):
        outputs.append(g.choice(written_inputs))
    views = [Ref(k) for k, v in enumerate(g.vars) if v.is_view]
    if views and g.chance(0.4):
        outputs.append(g.choice(views))
    return outputs or [Ref(0)]


# ---- what a case exercises ----------------------------------------------------------------------

def case_kinds(case: MutationCase) -> set[str]:
    """The kinds of mutation in ``case`` (statement forms, views written through, who is
    written, what is read after a write, what is returned), found by running it eagerly
    one statement at a time."""
    kinds: set[str] = set()
    ns = {f"v{k}": t for k, t in enumerate(case.tensors())}
    inputs = [ns[f"v{k}"]._storage for k in range(len(case.inputs))]
    written: dict[int, set] = {}  # id(storage) -> the places written in it
    views_before: set[Ref] = set()  # views made of memory not yet written
    with np.errstate(all="ignore"), warnings.catch_warnings(), no_grad():
        warnings.simplefilter("ignore")
        for s in case.stmts:
            reads = [r for r in s.refs() if id(ns[repr(r)]._storage) in written]
            if reads and not s.writes:
                kinds.add("read after a write")
            if any(r in views_before for r in reads):
                kinds.add("view made before a write, read after it")
            if s.writes:
                _write_kinds(s, ns, case, kinds, written)
            exec(str(s), {"graphc": _graphc()}, ns)  # noqa: S102
            if s.out is not None and any(ns[repr(s.out)]._storage is ns[repr(r)]._storage
                                         for r in s.refs()):
                if id(ns[repr(s.out)]._storage) in written:
                    kinds.add("view made after a write")
                else:
                    views_before.add(s.out)
        for r in case.outputs:
            for k, st in enumerate(inputs):
                if ns[repr(r)]._storage is st:
                    kinds.add("output is an input" if int(r) == k else "output views an input")
    if any(len(places) >= 2 for places in written.values()):
        kinds.add("two places of one base written")
    return kinds


def _write_kinds(s: Stmt, ns: dict, case: MutationCase, kinds: set, written: dict) -> None:
    p = s.operands[0]
    place = p if isinstance(p, Place) else Place(p)
    target = ns[repr(place.ref)]
    written.setdefault(id(target._storage), set()).add(str(place))
    kinds.add(s.form if s.form not in UNARY_INPLACE else "unary in place")
    if s.form in ("iadd", "isub", "imul", "idiv"):
        kinds.add(s.form)
    for name, args in place.views:
        if name == "getitem":
            steps = [k for k in args[0].items if isinstance(k, slice) and k.step not in (None, 1)]
            kinds.add("slice with a step" if steps else "getitem view")
        else:
            kinds.add(name)
    if len(place.views) >= 2:
        kinds.add("chain of views")
    if int(place.ref) < len(case.inputs):
        kinds.add("input written")
        if not case.inputs[int(place.ref)].contiguous:
            kinds.add("non-contiguous input written")
    if s.form == "copy_" and isinstance(s.operands[1], (Ref, Place)):
        src = ns[repr(s.operands[1].ref if isinstance(s.operands[1], Place) else s.operands[1])]
        dst = _apply_place(target, place)
        if src.dtype is not dst.dtype:
            kinds.add("copy_ with a cast")
        if tuple(src.shape) != tuple(dst.shape):
            kinds.add("copy_ broadcasting")
    if s.form.startswith("setitem") and any(isinstance(k, (list, Ref)) for k in s.operands[1].items):
        mask = any(isinstance(k, Ref) for k in s.operands[1].items)
        kinds.add(("index_put_ with a mask" if mask else "index_put_ with indices")
                  + (" +=" if s.form != "setitem" else ""))
