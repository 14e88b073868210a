"""A fuzz case: inputs, a straight-line program over the op table, and its outputs.

A ``Case`` is plain data, so it can be generated, shrunk, saved as JSON and replayed:

- ``inputs``: ``Input`` values, each a flat buffer with the shape, strides (in elements)
  and offset of a view into it, so transposed, sliced, negative-step and expanded
  (stride 0) layouts are kept exactly; an input of the gradient mode (grad.py) also says
  whether it requires grad;
- ``steps``: ``Step(op, args, attrs)``, one op-table call each; an argument is a
  ``Ref`` to an earlier value (inputs first, then step results, numbered from 0), a
  Python number, or None;
- ``outputs``: the refs the program returns.

``case.program`` is the program as a Python function of the input tensors (every step a
``dispatch`` call, so tracing records one node per step); ``case.tensors()`` makes fresh
input tensors. ``save_case``/``load_case`` write and read the JSON form (no pickle):

    {"format": "graphc-fuzz-case", "version": 1, "note": "...",
     "inputs": [{"dtype": "float32", "shape": [2, 3], "strides": [1, 2], "offset": 0,
                 "buffer": [0.5, "nan", -0.0, ...], "requires_grad": true}],
     "steps": [{"op": "exp", "args": [{"ref": 0}], "attrs": {}}],
     "outputs": [1]}

(``requires_grad`` is written only where it is true: a case with such an input is
checked by the gradient mode, ``grad.check_grad_case``.)
"""

from __future__ import annotations

import inspect
import json
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import dtype as dt
from ..autograd import no_grad
from ..layout import contiguous_strides, reach
from ..ops import OPS, dispatch
from ..tensor import Tensor, from_numpy

FORMAT = "graphc-fuzz-case"
VERSION = 1


class Ref(int):
    """An argument naming an earlier value of the case (inputs first, then steps)."""

    def __repr__(self) -> str:
        return f"v{int(self)}"


@dataclass
class Input:
    """A strided view (shape, strides and offset in elements) of a flat buffer."""

    buffer: np.ndarray  # 1-d, the input's dtype
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    offset: int = 0
    requires_grad: bool = False  # gradient mode: a leaf whose .grad is compared

    @property
    def dtype(self) -> dt.dtype:
        return dt.from_numpy_dtype(self.buffer.dtype)

    def array(self, buffer: np.ndarray | None = None) -> np.ndarray:
        """The view as a numpy array over ``buffer`` (default: this input's own buffer)."""
        buf = self.buffer if buffer is None else buffer
        item = buf.itemsize
        if not self.shape or 0 not in self.shape:
            return np.ndarray(self.shape, buf.dtype, buffer=buf, offset=self.offset * item,
                              strides=tuple(s * item for s in self.strides))
        return np.zeros(self.shape, buf.dtype)

    def values(self) -> np.ndarray:
        """The logical values, as a fresh contiguous array."""
        return np.array(self.array(), order="C")

    def tensor(self) -> Tensor:
        """A fresh tensor with this layout (its own copy of the buffer)."""
        return from_numpy(self.array(self.buffer.copy()))

    def with_values(self, values: np.ndarray) -> Input:
        """A contiguous input holding ``values``, requiring grad as this one does."""
        new = Input.from_values(values)
        new.requires_grad = self.requires_grad
        return new

    @property
    def contiguous(self) -> bool:
        return self.offset == 0 and self.strides == contiguous_strides(self.shape)

    @classmethod
    def of(cls, a: np.ndarray, rng: np.random.Generator | None = None) -> Input:
        """An input with ``a``'s values and ``a``'s strides; the gaps between elements hold
        junk (so a kernel that reads them gets wrong values, not zeros)."""
        a = np.asarray(a)
        item = a.itemsize
        strides = tuple(s // item for s in a.strides) if a.size else contiguous_strides(a.shape)
        lo, hi = reach(a.shape, strides) if a.size else (0, -1)
        size = hi - lo + 1
        buf = _junk(size, a.dtype, rng) if rng is not None else np.zeros(size, a.dtype)
        inp = cls(buf, tuple(a.shape), strides, -lo if a.size else 0)
        if a.size:
            inp.array()[...] = a
        return inp

    @classmethod
    def from_values(cls, values: np.ndarray) -> Input:
        """A contiguous input."""
        values = np.array(values, order="C")
        return cls(values.reshape(-1).copy(), tuple(values.shape), contiguous_strides(values.shape), 0)


def _junk(size: int, npdtype, rng: np.random.Generator) -> np.ndarray:
    if npdtype == np.bool_:
        return rng.random(size) < 0.5
    if npdtype.kind == "f":
        return (rng.standard_normal(size) * 1e3 + 777.0).astype(npdtype)
    return rng.integers(-999, 999, size).astype(npdtype)


@dataclass
class Step:
    op: str
    args: tuple
    attrs: dict = field(default_factory=dict)

    def refs(self) -> list[Ref]:
        return [a for a in self.args if isinstance(a, Ref)]

    def __str__(self) -> str:
        args = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.attrs.items()]
        return f"{self.op}({', '.join(args)})"


@dataclass
class Case:
    inputs: list[Input]
    steps: list[Step]
    outputs: list[Ref]
    note: str = ""  # where the case came from (seed and number) and what it found

    @property
    def size(self) -> tuple:
        """How big the case is (the shrinker makes this smaller)."""
        elements = sum(int(np.prod(i.shape)) for i in self.inputs)
        return (len(self.steps), len(self.outputs), len(self.inputs), elements)

    def tensors(self) -> tuple[Tensor, ...]:
        return tuple(i.tensor() for i in self.inputs)

    def program(self, *tensors):
        """Run the steps on ``tensors`` through dispatch (traceable); returns a tuple."""
        env = list(tensors)
        for step in self.steps:
            args = [env[a] if isinstance(a, Ref) else a for a in step.args]
            env.append(dispatch(OPS[step.op], *args, **step.attrs))
        return tuple(env[k] for k in self.outputs)

    def function(self):
        """``program`` with one named parameter per input (v0, v1, ...), for tracing."""
        def program(*tensors):
            return self.program(*tensors)
        params = [inspect.Parameter(f"v{k}", inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  for k in range(len(self.inputs))]
        program.__signature__ = inspect.Signature(params)
        return program

    def describe(self) -> str:
        """The case as readable lines (inputs with their layout, then the steps)."""
        lines = []
        for k, i in enumerate(self.inputs):
            layout = "" if i.contiguous else f" strides={list(i.strides)} offset={i.offset}"
            grad = " requires_grad" if i.requires_grad else ""
            lines.append(f"v{k} = input {i.dtype.name}{list(i.shape)}{layout}{grad}")
        n = len(self.inputs)
        for k, s in enumerate(self.steps):
            lines.append(f"v{n + k} = {s}")
        lines.append(f"return {', '.join(repr(r) for r in self.outputs)}")
        return "\n".join(lines)


def run_eager(case: Case) -> tuple:
    """The case's outputs in eager mode (numpy), with floating-point warnings silenced."""
    with np.errstate(all="ignore"), warnings.catch_warnings(), no_grad():
        warnings.simplefilter("ignore")
        return case.program(*case.tensors())


# ---- JSON ------------------------------------------------------------------------------

def _number(x):
    if isinstance(x, float) and not math.isfinite(x):
        return {"float": repr(x)}  # "nan", "inf", "-inf"
    return x


def _encode(x):
    """Attributes and scalar arguments as JSON (tuples, dtypes, slices and specials tagged)."""
    if isinstance(x, Ref):
        return {"ref": int(x)}
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return _number(x)
    if isinstance(x, dt.dtype):
        return {"dtype": x.name}
    if isinstance(x, tuple):
        return {"tuple": [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    if isinstance(x, slice):
        return {"slice": [_encode(x.start), _encode(x.stop), _encode(x.step)]}
    if x is Ellipsis:
        return {"ellipsis": True}
    if isinstance(x, dict):
        return {"dict": {k: _encode(v) for k, v in x.items()}}
    if isinstance(x, np.generic):
        return _encode(x.item())
    raise TypeError(f"cannot save {type(x).__name__} {x!r} in a fuzz case")


def _decode(x):
    if isinstance(x, list):
        return [_decode(v) for v in x]
    if not isinstance(x, dict):
        return x
    (tag, v), = x.items()
    if tag == "ref":
        return Ref(v)
    if tag == "float":
        return float(v)
    if tag == "dtype":
        return dt.as_dtype(v)
    if tag == "tuple":
        return tuple(_decode(e) for e in v)
    if tag == "slice":
        return slice(*(_decode(e) for e in v))
    if tag == "ellipsis":
        return Ellipsis
    if tag == "dict":
        return {k: _decode(e) for k, e in v.items()}
    raise ValueError(f"unknown tag {tag!r} in a fuzz case")


def _buffer_json(buf: np.ndarray) -> list:
    if buf.dtype.kind == "f":
        return [_number(float(v)) for v in buf.tolist()]
    return buf.tolist()


def to_json(case: Case) -> dict:
    return {
        "format": FORMAT, "version": VERSION, "note": case.note,
        "inputs": inputs_to_json(case.inputs),
        "steps": [{"op": s.op, "args": [_encode(a) for a in s.args],
                   "attrs": {k: _encode(v) for k, v in s.attrs.items()}} for s in case.steps],
        "outputs": [int(r) for r in case.outputs],
    }


def from_json(data: dict) -> Case:
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} version {VERSION} file "
                         f"(format {data.get('format')!r}, version {data.get('version')!r})")
    inputs = inputs_from_json(data["inputs"])
    steps = [Step(s["op"], tuple(_decode(a) for a in s["args"]),
                  {k: _decode(v) for k, v in s["attrs"].items()}) for s in data["steps"]]
    for s in steps:
        if s.op not in OPS:
            raise ValueError(f"the case uses op {s.op!r}, which the op table does not have")
    return Case(inputs, steps, [Ref(r) for r in data["outputs"]], data.get("note", ""))


def inputs_to_json(inputs: list[Input]) -> list[dict]:
    return [{"dtype": i.dtype.name, "shape": list(i.shape), "strides": list(i.strides),
             "offset": i.offset, "buffer": _buffer_json(i.buffer),
             **({"requires_grad": True} if i.requires_grad else {})} for i in inputs]


def inputs_from_json(items: list[dict]) -> list[Input]:
    inputs = []
    for i in items:
        d = dt.as_dtype(i["dtype"])
        values = [_decode(v) for v in i["buffer"]]
        inputs.append(Input(np.array(values, d.np).reshape(-1), tuple(i["shape"]),
                            tuple(i["strides"]), int(i["offset"]),
                            bool(i.get("requires_grad", False))))
    return inputs


def save_case(case: Case, path: str) -> str:
    """Write ``case`` as JSON to ``path`` (a file, or a directory to put a new file in)."""
    return write_json(to_json(case), path, "case")


def write_json(data: dict, path: str, prefix: str) -> str:
    """Write ``data`` to ``path``, or into the directory ``path`` as ``{prefix}_NNNN.json``
    (the first number not taken); returns the file's path."""
    if os.path.isdir(path):
        k = 0
        while os.path.exists(os.path.join(path, f"{prefix}_{k:04d}.json")):
            k += 1
        path = os.path.join(path, f"{prefix}_{k:04d}.json")
    with open(path, "w") as f:
        f.write(format_json(data))
    return path


def format_json(data: dict) -> str:
    """The JSON text of a case: one line per input, per step (or statement) and per line
    of source (diffs stay readable)."""
    lines = []
    for key, value in data.items():
        if key in ("inputs", "steps", "stmts", "source") and value:
            items = ",\n".join(f"  {json.dumps(v)}" for v in value)
            lines.append(f' {json.dumps(key)}: [\n{items}\n ]')
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def load_case(path: str):
    """The case in ``path``: a ``Case``, or a ``MutationCase`` for a mutation program's file
    (``check_case`` takes either, so one replay covers every saved repro)."""
    with open(path) as f:
        data = json.load(f)
    from . import mutation
    if data.get("format") == mutation.FORMAT:
        return mutation.from_json(data)
    return from_json(data)
