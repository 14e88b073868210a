"""Guards: what a compiled graph assumed about its call, and why a call missed.

A call's *signature* is a hashable tuple, cheap enough to build on every call: for each
argument, a tensor's shape, strides (its layout: the kernels read memory in place with
those strides) and dtype, or a Python value itself (it was baked into the graph), and
for a module its training flag. Compiled graphs are cached per signature. On a miss,
``diagnose`` compares the new signature with the last one compiled and names the first
guard that failed, its old and new value and a suggested fix.

Weights are guarded by the runtime (``codegen.runtime``): a parameter replaced on the
module (not updated in place) is a guard failure too, reported with the same record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..layout import is_contiguous
from ..symbolic import MIN_SIZE
from ..tensor import Tensor

TENSOR = "tensor"


def tensor_key(t: Tensor) -> tuple:
    st = t._storage
    return (TENSOR, t._shape, t._stride, st.dtype, st.array is None)


def arg_key(value):
    """One argument's part of the signature; raises TypeError when it cannot be guarded."""
    if isinstance(value, Tensor):
        return tensor_key(value)
    if isinstance(value, np.ndarray):
        raise TypeError("a numpy array; compiled code takes graphc tensors: pass "
                        "graphc.from_numpy(array) (it shares the array's memory)")
    if isinstance(value, (list, tuple)):
        keys = tuple(arg_key(v) for v in value)
        if any(_is_tensor(k) for k in keys):
            raise TypeError("tensors inside a list or tuple")
        return (type(value).__name__,) + keys
    hash(value)  # an unhashable value cannot be compared cheaply: not guardable
    return (type(value), value)  # 1, 1.0 and True trace differently


def _is_tensor(key) -> bool:
    return type(key) is tuple and key[:1] == (TENSOR,)


def signature(args: tuple, training) -> tuple:
    """The key a call is cached under: the training flag (None for functions), then each
    argument's key (this runs on every call: a plain tensor skips arg_key's checks)."""
    return (training,) + tuple(tensor_key(a) if type(a) is Tensor else arg_key(a) for a in args)


@dataclass
class Guard:
    """One assumption: ``kind`` (shape, dtype, layout, rank, value, training, weight,
    arguments) about ``name`` (``x``, ``x.shape[0]``, ``self.training``, ``fc1.weight``)."""

    kind: str
    name: str
    value: str

    def __str__(self) -> str:
        if self.kind == "size":  # a condition on symbolic sizes, not a value
            return f"{self.kind:<8} {self.value}"
        return f"{self.kind:<8} {self.name} == {self.value}"


@dataclass
class Recompile:
    """Why a call compiled again: the guard that failed, its old and new value, the call's
    line, and what would avoid it."""

    guard: str
    name: str
    old: str
    new: str
    location: str | None
    suggestion: str
    also: list = field(default_factory=list)  # other arguments that changed in the same call

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        also = f" (also changed: {', '.join(self.also)})" if self.also else ""
        return (f"recompile{where}: {self.guard} guard on {self.name} failed: {self.old} -> "
                f"{self.new}{also}. {self.suggestion}")

    def as_dict(self) -> dict:
        return asdict(self)


def guards(names: tuple, sig: tuple, is_module: bool) -> list[Guard]:
    """The guards a signature stands for, in the order they are checked."""
    out = []
    if is_module:
        out.append(Guard("training", "self.training", str(sig[0])))
    for name, key in zip(names, sig[1:]):
        if _is_tensor(key):
            _, shape, stride, dtype, _meta = key
            out.append(Guard("dtype", name, dtype.name))
            out.append(Guard("shape", name, str(list(shape))))
            out.append(Guard("layout", name, f"strides {tuple(stride)}"))
        else:
            out.append(Guard("value", name, _show(key)))
    return out


def diagnose(names: tuple, old: tuple, new: tuple, location: str | None) -> Recompile:
    """The first guard ``new`` fails that ``old`` passed."""
    if old[0] != new[0]:
        return Recompile("training", "self.training", str(old[0]), str(new[0]), location,
                         "train() and eval() compile separate graphs; each is cached, so "
                         "switching back does not compile again")
    if len(old) != len(new):
        return Recompile("arguments", "arguments", f"{len(old) - 1} arguments",
                         f"{len(new) - 1} arguments", location,
                         "calls with a different number of arguments compile separately")
    changed = [(name, a, b) for name, a, b in zip(names, old[1:], new[1:]) if a != b]
    if not changed:
        return Recompile("signature", "arguments", "?", "?", location, "")
    r = _first_failure(*changed[0], location)
    r.also = [name for name, _, _ in changed[1:]]
    return r


def _first_failure(name: str, a, b, location: str | None) -> Recompile:
    if _is_tensor(a) != _is_tensor(b):
        return Recompile("value", name, _show(a), _show(b), location,
                         "an argument that is a tensor in one call and not in another (an "
                         "optional argument given or omitted) compiles a graph for each")
    if not _is_tensor(a):
        return Recompile("value", name, _show(a), _show(b), location,
                         "Python values are baked into the graph; pass a value that changes "
                         "from call to call as a tensor")
    (_, sa, sta, da, _), (_, sb, stb, db, _) = a, b
    if da != db:
        return Recompile("dtype", name, da.name, db.name, location,
                         f"cast {name} to {da.name} before the call to reuse the compiled graph")
    if len(sa) != len(sb):
        return Recompile("rank", name, f"{len(sa)} dims {list(sa)}", f"{len(sb)} dims "
                         f"{list(sb)}", location, "each rank compiles its own graph")
    if sa != sb:
        dims = [i for i, (x, y) in enumerate(zip(sa, sb)) if x != y]
        d = dims[0]
        return Recompile("shape", f"{name}.shape[{d}]", str(sa[d]), str(sb[d]), location,
                         f"with dynamic=False kernels are specialised to sizes, so every new "
                         f"size of dim {d} compiles once (then is cached); dynamic=True or the "
                         f"default dynamic=None compile one program for every size of a dim "
                         f"(or pad {name}'s dim {d} to a few sizes)")
    return Recompile("layout", name, f"strides {tuple(sta)}", f"strides {tuple(stb)}",
                     location, f"the kernels read {name} in place with its strides; pass "
                     f"{name}.contiguous() to always hit the contiguous graph")


def _show(key) -> str:
    if _is_tensor(key):
        return f"tensor {key[3].name}{list(key[1])}"
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


def pattern(sig: tuple, names: tuple, dynamic_dims: dict) -> tuple:
    """The signature with each symbolic dim's size left out: the calls one program with
    symbolic sizes may serve (its guards decide)."""
    out = [sig[0]]
    for name, key in zip(names, sig[1:]):
        dims = sized_dims(key, dynamic_dims.get(name)) if _is_tensor(key) else []
        if dims:
            shape = tuple(None if d in dims else n for d, n in enumerate(key[1]))
            key = (TENSOR, shape, "contiguous", key[3], key[4])
        out.append(key)
    return tuple(out)


def symbolic_signature(sig: tuple, layouts: tuple) -> tuple:
    """``sig`` with the tensors' shapes and strides as compiled (symbols in them)."""
    out, it = [sig[0]], iter(layouts)
    for key in sig[1:]:
        if _is_tensor(key):
            t = next(it)
            key = (TENSOR, t._shape, t._stride, key[3], key[4])
        out.append(key)
    return tuple(out)


def changed_dims(names: tuple, old: tuple, new: tuple) -> dict[str, set]:
    """For each tensor argument of the same rank and dtype in both signatures, the dims
    whose size changed."""
    out = {}
    for name, a, b in zip(names, old[1:], new[1:]):
        if _is_tensor(a) and _is_tensor(b) and len(a[1]) == len(b[1]) and a[3] == b[3]:
            dims = {d for d, (x, y) in enumerate(zip(a[1], b[1])) if x != y}
            if dims:
                out[name] = dims
    return out
