"""Guards: what a compiled graph assumed about its call, and why a call missed.

A call's *signature* is a hashable tuple, cheap enough to build on every call: the
module's training flag (None for functions), then one key per parameter. A tensor's key
is its shape, strides (its layout: the kernels read memory in place with those strides)
and dtype; a tuple, list or dict (namedtuples and dict subclasses too) is its type, its
keys and its items' keys; any other value is itself (it was baked into the graph).
Strides that never move an address (a dim of size 1, any dim of an empty tensor) are
left out, so a cropped view ``idx[:, -8:]`` of a growing ``(1, T)`` tensor keeps one key.

Compiled graphs are cached per signature. On a miss, ``diagnose`` compares the new
signature with the nearest compiled one (dims a program with symbolic sizes covers do not
count) and names every guard that failed: the argument path (``x``, ``args[1]['mask']``,
``x.shape[2]``), the kind (training, structure, value, dtype, rank, shape, layout, size),
old and new value, and a suggested fix.

Weights are guarded by the runtime (``codegen.runtime``): a parameter replaced on the
module (not updated in place) is a guard failure too, reported with the same record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..layout import is_contiguous
from ..symbolic import MIN_SIZE
from ..tensor import Tensor

TENSOR, SEQ, MAP = "tensor", "seq", "map"  # the kinds of keys that are not a plain value


# ---- keys ------------------------------------------------------------------------------

def canonical_strides(shape: tuple, stride: tuple) -> tuple:
    """``stride`` with the strides that cannot change an address replaced by the ones a
    contiguous tensor would have there: a dim of size 1 is only ever indexed at 0, and an
    empty tensor is never read."""
    if 0 in shape:
        stride, expected = list(stride), 1
        for d in range(len(shape) - 1, -1, -1):
            stride[d] = expected
            expected *= max(shape[d], 1)
        return tuple(stride)
    out, expected = list(stride), 1
    for d in range(len(shape) - 1, -1, -1):
        if shape[d] == 1:
            out[d] = expected
        expected = out[d] * shape[d]
    return tuple(out)


_CANONICAL: dict[tuple, tuple] = {}  # (shape, strides) -> canonical strides, per call


def tensor_key(t: Tensor) -> tuple:
    shape, stride, st = t._shape, t._stride, t._storage
    if 1 in shape or 0 in shape:
        layout = (shape, stride)
        canonical = _CANONICAL.get(layout)
        if canonical is None:
            if len(_CANONICAL) > 4096:
                _CANONICAL.clear()
            canonical = _CANONICAL[layout] = canonical_strides(shape, stride)
        stride = canonical
    return (TENSOR, shape, stride, st.dtype, st.array is None)


def arg_key(value):
    """One argument's part of the signature; raises TypeError when it cannot be guarded
    (``unguardable`` then names the part that cannot)."""
    if isinstance(value, Tensor):
        return tensor_key(value)
    if isinstance(value, (tuple, list)):
        return (SEQ, type(value), tuple([arg_key(v) for v in value]))
    if isinstance(value, dict):
        return (MAP, type(value), tuple([(k, arg_key(v)) for k, v in value.items()]))
    if type(value) is float:  # 0.0 and -0.0 (and each nan) trace differently
        return (float, value.hex())
    if isinstance(value, np.ndarray):
        raise TypeError("a numpy array; compiled code takes graphc tensors: pass "
                        "graphc.from_numpy(array) (it shares the array's memory)")
    if isinstance(value, (set, frozenset)) and any(isinstance(v, Tensor) for v in value):
        raise TypeError(f"a {type(value).__name__} of tensors is not supported (it has no "
                        "order); pass a list or tuple")
    try:
        hash(value)
    except TypeError:  # an unhashable value cannot be compared cheaply: not guardable
        raise TypeError(f"a {type(value).__name__} is not supported (a Python value is baked "
                        "into the graph and compared on every call, so it must be hashable); "
                        "pass a tuple, or tensors") from None
    return (type(value), value)  # 1, 1.0 and True trace differently


def signature(args: tuple, training) -> tuple:
    """The key a call is cached under: the training flag (None for functions), then each
    argument's key (this runs on every call: a plain tensor skips arg_key's checks)."""
    return (training,) + tuple(tensor_key(a) if type(a) is Tensor else arg_key(a) for a in args)


def unguardable(names: tuple, args: tuple) -> str:
    """``argument 'x' cannot be guarded: why`` for the first part of the arguments that
    cannot be guarded (a part of one by its path: ``argument args[1]['mask'] ...``)."""
    def first(path: str, value) -> str | None:
        if isinstance(value, (tuple, list, dict)):
            for sub, v in _children(path, value):
                found = first(sub, v)
                if found:
                    return found
            return None
        try:
            arg_key(value)
        except TypeError as e:
            shown = repr(path) if path.isidentifier() else path
            return f"argument {shown} cannot be guarded: {e}"
        return None

    for name, a in zip(names, args):
        found = first(name, a)
        if found:
            return found
    return "?"


def _children(path: str, value) -> list:
    """(path, item) of a container's items, paths spelled as the tracer names them."""
    if isinstance(value, dict):
        return [(f"{path}[{k!r}]", v) for k, v in value.items()]
    fields = getattr(type(value), "_fields", None)
    return [(f"{path}.{fields[i]}" if fields else f"{path}[{i}]", v)
            for i, v in enumerate(value)]


def is_tensor(key) -> bool:
    return type(key) is tuple and key[:1] == (TENSOR,)


def _is_container(key) -> bool:
    return type(key) is tuple and len(key) == 3 and key[0] in (SEQ, MAP)


def _key_children(path: str, key) -> list:
    """(path, key) of a container key's items."""
    if key[0] == MAP:
        return [(f"{path}[{k!r}]", v) for k, v in key[2]]
    fields = getattr(key[1], "_fields", None)
    return [(f"{path}.{fields[i]}" if fields else f"{path}[{i}]", v)
            for i, v in enumerate(key[2])]


def tensor_keys(names: tuple, sig: tuple) -> list[tuple[str, tuple]]:
    """(path, key) of every tensor in a signature, in the order the program takes them."""
    out = []

    def walk(path, key):
        if is_tensor(key):
            out.append((path, key))
        elif _is_container(key):
            for sub, k in _key_children(path, key):
                walk(sub, k)

    for name, key in zip(names, sig[1:]):
        walk(name, key)
    return out


def map_tensor_keys(names: tuple, sig: tuple, fn) -> tuple:
    """``sig`` with each tensor key replaced by ``fn(path, key)``."""
    def walk(path, key):
        if is_tensor(key):
            return fn(path, key)
        if _is_container(key):
            items = [walk(sub, k) for sub, k in _key_children(path, key)]
            if key[0] == MAP:
                items = [(k, v) for (k, _), v in zip(key[2], items)]
            return (key[0], key[1], tuple(items))
        return key

    return (sig[0],) + tuple(walk(name, key) for name, key in zip(names, sig[1:]))


# ---- the guards a signature stands for -------------------------------------------------

@dataclass
class Guard:
    """One assumption: ``kind`` (shape, dtype, layout, rank, value, structure, training,
    weight, size) about ``name`` (``x``, ``args[0]['mask']``, ``self.training``)."""

    kind: str
    name: str
    value: str

    def __str__(self) -> str:
        if self.kind == "size":  # a condition on symbolic sizes, not a value
            return f"{self.kind:<8} {self.value}"
        return f"{self.kind:<8} {self.name} == {self.value}"


def guards(names: tuple, sig: tuple, is_module: bool) -> list[Guard]:
    """The guards a signature stands for, in the order they are checked."""
    out = []
    if is_module:
        out.append(Guard("training", "self.training", str(sig[0])))

    def walk(path, key):
        if is_tensor(key):
            _, shape, stride, dtype, _meta = key
            out.append(Guard("dtype", path, dtype.name))
            out.append(Guard("shape", path, str(list(shape))))
            out.append(Guard("layout", path, f"strides {tuple(stride)}"))
        elif _is_container(key):
            out.append(Guard("structure", path, _structure(key)))
            for sub, k in _key_children(path, key):
                walk(sub, k)
        else:
            out.append(Guard("value", path, _show(key)))

    for name, key in zip(names, sig[1:]):
        walk(name, key)
    return out


# ---- why a call missed -----------------------------------------------------------------

@dataclass
class Recompile:
    """Why a call compiled again: the guard that failed, its old and new value, the call's
    line, and what would avoid it. ``also`` names the other guards that failed in the same
    call (each as ``path: old -> new``)."""

    guard: str
    name: str
    old: str
    new: str
    location: str | None
    suggestion: str
    also: list = field(default_factory=list)

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        also = f" (also changed: {', '.join(self.also)})" if self.also else ""
        return (f"recompile{where}: {self.guard} guard on {self.name} failed: {self.old} -> "
                f"{self.new}{also}. {self.suggestion}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Difference:
    """One guard that failed: kind, the argument path, old and new value as text, and for
    shapes the dims that changed (of the tensor at ``path``)."""

    kind: str
    path: str
    old: str
    new: str
    dims: tuple = ()

    @property
    def name(self) -> str:
        if self.kind == "shape":
            return ", ".join(f"{self.path}.shape[{d}]" for d in self.dims)
        return self.path

    def __str__(self) -> str:
        return f"{self.name}: {self.old} -> {self.new}"


def differences(names: tuple, old: tuple, new: tuple, symbolic: dict | None = None) -> list:
    """Every guard of ``old`` that ``new`` fails, in the order they are checked.
    ``symbolic`` maps tensor paths to dims whose size ``old``'s program does not fix (a
    program with symbolic sizes): their sizes do not count, and its strides are the
    contiguous ones for any size."""
    symbolic = symbolic or {}
    out = []
    if old[0] != new[0]:
        out.append(Difference("training", "self.training", str(old[0]), str(new[0])))

    def walk(path, a, b):
        if a == b:
            return
        if is_tensor(a) and is_tensor(b):
            out.extend(_tensor_differences(path, a, b, symbolic.get(path, ())))
        elif _is_container(a) and _is_container(b):
            sa, sb = _structure(a), _structure(b)
            if sa != sb:
                out.append(Difference("structure", path, sa, sb))
                return
            for (sub, ka), (_, kb) in zip(_key_children(path, a), _key_children(path, b)):
                walk(sub, ka, kb)
        else:
            kind = "structure" if _is_container(a) or _is_container(b) else "value"
            out.append(Difference(kind, path, _show(a), _show(b)))

    for name, a, b in zip(names, old[1:], new[1:]):
        walk(name, a, b)
    return out


def _tensor_differences(path: str, a: tuple, b: tuple, free) -> list:
    (_, sa, sta, da, _), (_, sb, stb, db, _) = a, b
    if da != db:
        found = [Difference("dtype", path, da.name, db.name)]
    else:
        found = []
    if len(sa) != len(sb):
        return found + [Difference("rank", path, f"{len(sa)} dims {list(sa)}",
                                   f"{len(sb)} dims {list(sb)}")]
    dims = tuple(d for d, (x, y) in enumerate(zip(sa, sb))
                 if x != y and not (d in free and y >= MIN_SIZE))
    if dims:
        shown = [f"any size >= {MIN_SIZE}" if d in free else str(sa[d]) for d in dims]
        found.append(Difference("shape", path, ", ".join(shown),
                                ", ".join(str(sb[d]) for d in dims), dims))
    if free:  # the program takes every contiguous layout of its sizes
        same_layout = is_contiguous(sb, stb) and 0 not in sb
    elif sa != sb:  # the strides follow the sizes: a layout change is one of contiguity
        same_layout = is_contiguous(sa, sta) == is_contiguous(sb, stb)
    else:
        same_layout = sta == stb
    if not same_layout:
        found.append(Difference("layout", path, f"strides {tuple(sta)}", f"strides {tuple(stb)}"))
    return found


def symbolic_dims(names: tuple, pattern_key: tuple | None) -> dict:
    """For a program with symbolic sizes, its pattern's symbolic dims per tensor path."""
    if pattern_key is None:
        return {}
    return {path: {d for d, n in enumerate(key[1]) if n is None}
            for path, key in tensor_keys(names, pattern_key)
            if any(n is None for n in key[1])}


SUGGESTIONS = {
    "training": "train() and eval() compile separate graphs; each is cached, so switching "
                "back does not compile again",
    "structure": "the containers around the tensors (their types, lengths and dict keys) "
                 "are part of the signature: each structure compiles once (then is cached)",
    "value": "Python values are baked into the graph; pass a value that changes from call "
             "to call as a tensor",
    "optional": "an argument that is a tensor in one call and not in another (an optional "
                "argument given or omitted) compiles a graph for each",
    "rank": "each rank compiles its own graph",
}


def recompile(diffs: list, location: str | None) -> Recompile:
    """The record of a miss: the first guard that failed, the others in ``also``."""
    if not diffs:
        return Recompile("signature", "arguments", "?", "?", location, "")
    d = diffs[0]
    r = Recompile(d.kind, d.name, d.old, d.new, location, suggestion(d))
    r.also = [str(x) if x.kind not in ("value", "structure") else x.path for x in diffs[1:]]
    return r


def suggestion(d: Difference) -> str:
    if d.kind == "value" and ("tensor " in d.old) != ("tensor " in d.new):
        return SUGGESTIONS["optional"]
    if d.kind == "dtype":
        return f"cast {d.path} to {d.old} before the call to reuse the compiled graph"
    if d.kind == "layout":
        return (f"the kernels read {d.path} in place with its strides (those of size-1 dims "
                f"do not count); pass {d.path}.contiguous() to always hit the contiguous graph")
    if d.kind == "shape":
        return f"each new size of {d.name} compiles once (then is cached)"
    return SUGGESTIONS.get(d.kind, "")


def _structure(key) -> str:
    """A container key's shape, without its items: ``tuple of 2``, ``dict with keys ['a']``,
    ``Point(x, y)``."""
    kind, t, items = key
    if kind == MAP:
        return f"{t.__name__} with keys {[k for k, _ in items]}"
    fields = getattr(t, "_fields", None)
    if fields:
        return f"{t.__name__}({', '.join(fields)})"
    return f"{t.__name__} of {len(items)}"


def _show(key) -> str:
    if is_tensor(key):
        return f"tensor {key[3].name}{list(key[1])}"
    if _is_container(key):
        return _structure(key)
    if type(key) is tuple and len(key) == 2 and key[0] is float:
        return repr(float.fromhex(key[1]))
    if type(key) is tuple and len(key) == 2 and isinstance(key[0], type):
        return repr(key[1])
    return repr(key)


# ---- symbolic sizes ---------------------------------------------------------------------

def sized_dims(key: tuple, dims) -> list[int]:
    """The dims of a tensor argument that compile as symbolic sizes: the ones marked
    dynamic whose size is at least 2, in a non-empty contiguous tensor (the program
    computes its strides from its shape)."""
    _, shape, stride, _, _ = key
    if not dims or 0 in shape or not is_contiguous(shape, stride):
        return []
    return [d for d in dims if d < len(shape) and shape[d] >= MIN_SIZE]


def why_not_sized(key: tuple, dims) -> str:
    """Why ``sized_dims`` gives none of ``dims`` ('' when it gives some), to follow the
    tensor's path."""
    _, shape, stride, _, _ = key
    if sized_dims(key, dims):
        return ""
    if 0 in shape:
        return "is empty"
    if not is_contiguous(shape, stride):
        return (f"is not contiguous (strides {tuple(stride)}); symbolic sizes need "
                "contiguous inputs")
    return f"has sizes below {MIN_SIZE} there (they compile as constants)"


def pattern(sig: tuple, names: tuple, dynamic_dims: dict) -> tuple:
    """The signature with each symbolic dim's size left out: the calls one program with
    symbolic sizes may serve (its guards decide)."""
    def leave_out(path, key):
        dims = sized_dims(key, dynamic_dims.get(path))
        if not dims:
            return key
        shape = tuple(None if d in dims else n for d, n in enumerate(key[1]))
        return (TENSOR, shape, "contiguous", key[3], key[4])

    if not dynamic_dims:
        return sig
    return map_tensor_keys(names, sig, leave_out)


def symbolic_signature(sig: tuple, names: tuple, layouts: list) -> tuple:
    """``sig`` with the tensors' shapes and strides as compiled (symbols in them)."""
    it = iter(layouts)

    def compiled(path, key):
        t = next(it)
        return (TENSOR, t._shape, t._stride, key[3], key[4])

    return map_tensor_keys(names, sig, compiled)


def changed_dims(names: tuple, old: tuple, new: tuple) -> dict[str, set]:
    """For each tensor (by path) of the same rank and dtype in both signatures, the dims
    whose size changed."""
    before = dict(tensor_keys(names, old))
    out = {}
    for path, b in tensor_keys(names, new):
        a = before.get(path)
        if a is not None and len(a[1]) == len(b[1]) and a[3] == b[3]:
            dims = {d for d, (x, y) in enumerate(zip(a[1], b[1])) if x != y}
            if dims:
                out[path] = dims
    return out
