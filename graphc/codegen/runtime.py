"""Running a compiled program: one native call per run.

A ``Specialization`` is a program compiled for one input signature (shapes, strides,
dtypes; see ``graphc.compiler.pipeline`` for how it is made). A call fills the pointer
table (inputs, weights, fresh outputs), calls ``main`` once and wraps the outputs;
intermediate buffers and scratch are allocated once per specialisation and reused.
Nothing runs in Python per kernel, except the fallbacks ``Program.explain()`` lists.
"""

from __future__ import annotations

import ctypes
from contextlib import nullcontext
import sys
import threading
import weakref
import time
from ctypes import addressof
from operator import is_

import numpy as np

from .. import dtype as dt
from ..errors import OpIndexError, OpValueError, WeightChanged
from ..ir.aliasing import COPY_BACK
from ..ir.graph_module import GraphModule, fetch
from ..ir.interpreter import Interpreter
from ..nn.module import Module
from ..ir.node import Node, map_arg
from ..ops.registry import Flag
from ..tensor import Storage, Tensor
from .emitters import ERR_INDEX, ERR_INTEGER_DIVISION, ERR_NEGATIVE_POWER, ERROR_SITE_SHIFT
from .program import Program
from .sizes import LRUCache, SizeBinding
from ..symbolic import concrete, sizes_bound
from .target import PREFIX

MAIN_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p)
CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64)
ERR_CALLBACK = 1 << 30  # a fallback raised; the exception is re-raised after main returns
ALIGN = 64
SMALL_OUTPUT = 1 << 16  # bytes; outputs up to this size are ctypes buffers (zero-filled)
POOL_BYTES = 16 << 20  # output memory kept for reuse, or twice one call's outputs if more


def _aligned_empty(nbytes: int) -> np.ndarray:
    raw = np.empty(nbytes + ALIGN, np.uint8)
    skip = (-raw.__array_interface__["data"][0]) % ALIGN
    return raw[skip:skip + nbytes]


def _owner(root, target: str):
    """The module holding attribute ``target`` and the attribute's name (None if absent)."""
    *path, attr = target.split(".")
    try:
        return (fetch(root, ".".join(path)) if path else root), attr
    except AttributeError:
        return None, attr


def _address(t: Tensor) -> int:
    return t._storage.data_ptr() + t._offset * t._storage.dtype.itemsize



def _holder(owner, attr: str) -> dict | None:
    """The dict an attribute lives in (a module's registry or its __dict__)."""
    for name in ("_parameters", "_buffers"):
        d = owner.__dict__.get(name)
        if d is not None and attr in d:
            return d
    return owner.__dict__ if attr in owner.__dict__ else None


def _describe(t) -> str:
    if not isinstance(t, Tensor):
        return type(t).__name__
    return f"{t._storage.dtype.name}{list(t._shape)} id {id(t):#x}"


class _Param:
    """A weight the program reads: where it is set, and what it was compiled with."""

    __slots__ = ("slot", "target", "owner", "attr", "holder", "tensor", "storage", "layout")

    def __init__(self, slot: int, target: str, owner, attr: str, tensor: Tensor):
        self.slot, self.target, self.owner, self.attr, self.tensor = slot, target, owner, attr, tensor
        self.holder = _holder(owner, attr) if owner is not None else None
        self.storage = tensor._storage
        self.layout = (tensor._shape, tensor._stride, tensor._storage.dtype)

    def current(self) -> bool:
        """Still the same tensor over the same memory (the common case, checked per call)."""
        return self.holder is not None and self.holder.get(self.attr) is self.tensor \
            and self.tensor._storage is self.storage

    def refresh(self, table) -> None:
        """The slow path: explain a replaced weight, or follow a ``.data =`` swap."""
        now = getattr(self.owner, self.attr, None) if self.owner is not None else None
        if now is not self.tensor:
            raise WeightChanged(
                f"compiled graph: attribute {self.attr!r} was replaced after compiling (a new "
                f"tensor, not an in-place update); compile again", self.target,
                _describe(self.tensor), _describe(now))
        t = self.tensor
        if (t._shape, t._stride, t._storage.dtype) != self.layout:
            raise WeightChanged(
                f"compiled graph: {self.attr!r} changed from shape {list(self.layout[0])} "
                f"{self.layout[2]} to {list(t._shape)} {t._storage.dtype} after compiling; "
                f"compile again", self.target, f"{self.layout[2].name}{list(self.layout[0])}",
                f"{t._storage.dtype.name}{list(t._shape)}")
        self.storage = t._storage
        table[self.slot] = _address(t)


def _written(gm: GraphModule, params: list) -> tuple:
    """What the program's copy-backs write: (input position or weight, eager's write count)."""
    position = {p: k for k, p in enumerate(gm.graph.placeholders)}
    by_target = {p.target: p for p in params}
    writes = []
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.meta.get(COPY_BACK):
            dst, count = n.args[0], n.meta.get("writes", 1)
            writes.append((position[dst] if dst.op == "placeholder"
                           else by_target[dst.target], count))
    return tuple(writes)


def _count_writes(writes: tuple, inputs) -> None:
    """Bump the version counters of what the program wrote, as eager's writes would (so
    autograd notices a tensor it saved being changed)."""
    for where, count in writes:
        t = inputs[where] if type(where) is int else where.tensor
        t._storage.version += count


PROFILED: weakref.WeakSet = weakref.WeakSet()  # programs compiled with GRAPHC_PROFILE


def profile_rows() -> list[tuple[str, str, str, int, float]]:
    """(program, step, kind, calls, seconds) of every live program compiled with
    ``GRAPHC_PROFILE=1``, slowest first."""
    rows = [(spec.program.name,) + row for spec in list(PROFILED)
            for row in spec.program.profile(spec.profile_counts)]
    return sorted(rows, key=lambda r: -r[4])


class _Call:
    """One call's state that its fallbacks (Python, called from the native program) read:
    the inputs, the fresh outputs, the layout of its sizes (symbolic programs), and the
    values and views the fallbacks made."""

    __slots__ = ("inputs", "outputs", "layout", "env", "views")

    def __init__(self, inputs: tuple, outputs: dict, layout=None):
        self.inputs, self.outputs, self.layout = inputs, outputs, layout
        self.env: dict[Node, object] = {}
        self.views: dict[Node, Tensor] = {}


class Specialization:
    """A program compiled for one input signature, with its buffers.

    ``compiled`` is the native code, or a function that makes it (LLVM runs then on the
    first call, or when ``compiled`` is first read: a program that is never called, such
    as the inference program of a function only ever trained, costs no LLVM time)."""

    def __init__(self, gm: GraphModule, source: GraphModule, program: Program, compiled,
                 stages: dict[str, float], history=None, plan=None, watch=None,
                 copied: frozenset = frozenset(), sizes_given: bool = False):
        self.gm = gm
        self.program = program
        self.stage_seconds = stages  # passes, fuse, lower, llvm
        self.history, self.plan = history, plan  # the pass history and the fusion plan
        self._compiled = None
        if callable(compiled):
            self._make_code = compiled
            self.main = self._compile_and_call
        else:
            self.compiled = compiled
        slots = program.slots
        self.table = (ctypes.c_void_p * max(len(slots), 1))()
        self.table_address = ctypes.addressof(self.table)
        self.lock = threading.Lock()
        self.inputs = [(k, s.index, program.refs[gm.graph.placeholders[s.index]].dtype.itemsize)
                       for k, s in enumerate(slots) if s.kind == "input"]
        self.argument = {p: k for k, p in enumerate(gm.graph.placeholders)}  # node -> position
        self.params: list[_Param] = []
        self.arrays: dict[int, np.ndarray] = {}  # slot -> flat bytes (buffers, scratch)
        slot_dtype = {ref.slot: ref.dtype for ref in program.refs.values()}
        # a program with symbolic sizes learns them per call (see sizes.py)
        self.sizes = SizeBinding(program, gm.graph.placeholders, sizes_given) \
            if program.shape_env is not None else None
        if self.sizes is not None:
            self.run = self._run_sized  # (no test on the fixed-size path)
        self.output_slots = [  # (slot, dtype, elements, buffer type for small ones)
            (k, slot_dtype[k], s.nbytes // slot_dtype[k].itemsize,
             ctypes.c_byte * s.nbytes if s.nbytes <= SMALL_OUTPUT else None)
            for k, s in enumerate(slots) if s.kind == "output" and self.sizes is None]
        out = program.outputs  # one output that is a fresh buffer: no structure to rebuild
        ref = program.refs.get(out) if isinstance(out, Node) else None
        self._direct = ref if ref is not None and slots[ref.slot].kind == "output" else None
        self._fill_table(watch if watch is not None else source)
        self.interpreter = Interpreter(gm)
        self._swaps = self._changes = -1  # the first call runs the full check
        # outputs' memory, reused: per slot, or per (slot, elements) with symbolic sizes,
        # where each distinct size would otherwise keep its own memory for ever
        fixed = 0 if self.sizes is not None else sum(s.nbytes for s in slots
                                                      if s.kind == "output")
        self._pools = LRUCache(max(POOL_BYTES, 2 * fixed))
        self._fallbacks = bool(program.fallbacks)
        self._copied = copied  # output positions returned as copies (see pipeline)
        self._watch = ([p.holder if p.holder is not None else {} for p in self.params],
                       [p.attr for p in self.params], [p.tensor for p in self.params])
        self._error: BaseException | None = None
        self._call = _Call((), {})  # what the fallbacks of the current call see
        self._writes = _written(gm, self.params)

    @property
    def compiled(self):
        """The native code (compiled by LLVM now if it has not been)."""
        if self._compiled is None:
            t0 = time.perf_counter()
            self.compiled = self._make_code()
            self.stage_seconds["llvm"] = time.perf_counter() - t0
        return self._compiled

    @compiled.setter
    def compiled(self, code) -> None:
        self._compiled = code
        self.main = MAIN_TYPE(code.addresses[PREFIX + "main"])

    @property
    def compile_seconds(self) -> float:
        return sum(self.stage_seconds.values())

    def _compile_and_call(self, table_address: int) -> int:
        return MAIN_TYPE(self.compiled.addresses[PREFIX + "main"])(table_address)

    def _fill_table(self, watched) -> None:
        """The pointer table's entries that do not change per call: the weights (looked up
        by name in ``watched``, where the user sees them), the buffers and scratch of a
        program with fixed sizes, and the fallbacks' callback."""
        for k, s in enumerate(self.program.slots):
            if s.kind == "param":
                tensor = fetch(self.gm, s.target)
                owner, attr = _owner(watched, s.target)
                if owner is None or getattr(owner, attr, None) is not tensor:
                    owner, attr = _owner(self.gm, s.target)  # made by a pass (a folded constant)
                self.params.append(_Param(k, s.target, owner, attr, tensor))
                self.table[k] = _address(tensor)
            elif s.kind in ("buffer", "scratch") and self.sizes is None:
                self.arrays[k] = _aligned_empty(s.nbytes)
                self.table[k] = self.arrays[k].__array_interface__["data"][0]
            elif s.kind == "profile":
                self.profile_counts = np.zeros(s.nbytes // 8, np.int64)
                self.table[k] = self.profile_counts.__array_interface__["data"][0]
                PROFILED.add(self)
            elif s.kind == "callback":
                self._callback = CALLBACK_TYPE(self._run_fallback)
                self.table[k] = ctypes.cast(self._callback, ctypes.c_void_p).value

    def _params_current(self) -> bool:
        """Every weight is the tensor and storage compiled with. Per call: when no module
        attribute was assigned and no tensor's memory swapped since the last full check,
        two comparisons; else the full check (C-level loops over the weights)."""
        if self._changes == Module.changes and self._swaps == Tensor.data_swaps:
            return True
        holders, attrs, tensors = self._watch
        if not all(map(is_, map(dict.get, holders, attrs), tensors)):
            return False
        if not all(p.current() for p in self.params):
            return False
        self._changes, self._swaps = Module.changes, Tensor.data_swaps
        return True

    # ---- one call ------------------------------------------------------------------------
    def run(self, inputs: tuple):
        with self.lock:
            table = self.table
            self._set_inputs(table, inputs)
            outputs = {}  # slot -> a fresh storage per call
            for slot, d, count, small in self.output_slots:
                st = outputs[slot] = self._output_storage(slot, d, count, small)
                table[slot] = st._address
            if self._fallbacks:
                self._call = _Call(inputs, outputs)
            code = self.main(self.table_address)
            if code:
                self._raise(code)
            if self._writes:
                _count_writes(self._writes, inputs)
            if self._direct is not None:
                ref = self._direct
                return Tensor._make(outputs[ref.slot], ref.shape, ref.strides, ref.offset)
            return self._outputs(inputs, outputs)

    def _set_inputs(self, table, inputs: tuple) -> None:
        """The inputs' addresses into the table, and the weights' where one changed."""
        for slot, k, itemsize in self.inputs:
            t = inputs[k]
            st = t._storage
            table[slot] = (st._address or st.data_ptr()) + t._offset * itemsize
        if self.params and not self._params_current():
            for p in self.params:
                if not p.current():
                    p.refresh(table)

    def _run_sized(self, inputs: tuple, values: tuple | None = None):
        """``run`` for a program with symbolic sizes: bind them to this call's inputs, then
        size the buffers, fill the size slots and lay out the outputs."""
        with self.lock:
            layout = self.sizes.bind(inputs, values)
            if layout.prepared is None:
                layout.prepared = self._prepare(layout)
            outs, buffers, direct = layout.prepared
            table = self.table
            for slot, k in self.sizes.size_slots:
                table[slot] = layout.values[k]
            self._set_inputs(table, inputs)
            arrays = self.arrays
            for slot, nbytes in buffers:
                if slot not in arrays or len(arrays[slot]) < nbytes:
                    arrays[slot] = _aligned_empty(nbytes)  # grows, never shrinks
                    table[slot] = arrays[slot].__array_interface__["data"][0]
            outputs = {}
            for slot, d, count, small in outs:
                st = outputs[slot] = self._output_storage((slot, count), d, count, small)
                table[slot] = st._address
            if self._fallbacks:
                self._call = _Call(inputs, outputs, layout)
            code = self.main(self.table_address)
            if code:
                self._raise(code)
            if self._writes:
                _count_writes(self._writes, inputs)
            if direct is not None:
                return Tensor._make(outputs[direct.slot], direct.shape, direct.strides,
                                    direct.offset)
            return self._outputs(inputs, outputs, layout.refs)

    def _prepare(self, layout) -> tuple:
        """What a call with ``layout``'s sizes needs, derived once per distinct sizes: the
        outputs (slot, dtype, elements, small buffer type), the buffers' bytes, and the
        output's Ref when it is one fresh buffer."""
        outs = [(slot, d, layout.nbytes[slot] // d.itemsize, ctypes.c_byte * layout.nbytes[slot]
                 if layout.nbytes[slot] <= SMALL_OUTPUT else None)
                for slot, d in self.sizes.outputs]
        buffers = [(slot, max(n, 1)) for slot, n in layout.nbytes.items()
                   if self.program.slots[slot].kind != "output"]
        direct = None
        if self._direct is not None:
            direct = layout.refs[self.program.outputs]
        # the pools hold at least two calls' worth of this size's outputs
        need = 2 * sum(layout.nbytes[slot] for slot, _ in self.sizes.outputs)
        self._pools.budget = max(self._pools.budget, need)
        return outs, buffers, direct

    def _output_storage(self, key, d, count: int, small) -> Storage:
        """Memory for an output: an earlier call's that nothing refers to any more (no
        tensor, no numpy view), else new. Reuse saves the allocation, and for large
        outputs the page faults: fresh memory costs one per 4 KiB when first touched."""
        pool = self._pools.get(key)
        if pool is None:
            pool = []
            self._pools.put(key, pool, 0)
        for st in pool:  # refcounts: the pool, this loop, the argument (and st.array)
            if sys.getrefcount(st) == 3 and sys.getrefcount(st.array) == 2:
                st.version = 0
                return st
        if small is not None:  # a ctypes buffer: its address costs less to find
            buf = small()
            st = Storage(np.frombuffer(buf, d.np), d, count)
            st._address = addressof(buf)
        else:
            st = Storage(np.empty(count, d.np), d, count)
            st.data_ptr()
        if len(pool) < 2:
            pool.append(st)
            self._pools.put(key, pool, len(pool) * count * d.itemsize)
        return st

    def _raise(self, code: int):
        if code == ERR_CALLBACK:
            error, self._error = self._error, None
            raise error
        kind, site = code & ((1 << ERROR_SITE_SHIFT) - 1), code >> ERROR_SITE_SHIFT
        s = self.program.sites[site - 1] if 0 < site <= len(self.program.sites) else None
        op = s.op if s else "compiled graph"
        where = s.location if s else None
        if kind == ERR_INTEGER_DIVISION:
            raise OpValueError(op, "integer division by zero", where)
        if kind == ERR_INDEX:
            raise OpIndexError(op, f"an index is out of bounds for {s.detail if s else 'its dim'}",
                               where)
        if kind == ERR_NEGATIVE_POWER:
            raise OpValueError(op, "integers to negative integer powers are not allowed; "
                               "convert the base to float first", where)
        raise RuntimeError(f"compiled graph failed with error code {code}")

    # ---- values as tensors ---------------------------------------------------------------
    def _flat(self, slot: int, d: dt.dtype, inputs, outputs) -> tuple[np.ndarray, int]:
        """A typed flat array over a slot's memory and the element the slot points at."""
        kind = self.program.slots[slot].kind
        owner = self._slot_tensor(slot, inputs)
        if owner is not None:
            return owner._storage.array, owner._offset
        raw = outputs[slot].array.view(np.uint8) if kind == "output" else self.arrays[slot]
        usable = raw[:len(raw) - len(raw) % d.itemsize]
        return usable.view(d.np), 0

    def _slot_tensor(self, slot: int, inputs) -> Tensor | None:
        """The input or weight a slot points into (None for the program's own memory)."""
        kind = self.program.slots[slot].kind
        if kind == "input":
            return inputs[self.program.slots[slot].index]
        if kind == "param":
            return next(p.tensor for p in self.params if p.slot == slot)
        return None

    def tensor(self, ref, inputs, outputs) -> Tensor:
        storage = outputs.get(ref.slot)
        if storage is not None and storage.dtype is ref.dtype:  # a fresh output
            return Tensor._make(storage, ref.shape, ref.strides, ref.offset)
        owner = self._slot_tensor(ref.slot, inputs)
        if owner is not None and owner.dtype is ref.dtype:  # a view of an input or a weight:
            # on its storage, so it shares eager's version counter
            return Tensor._make(owner._storage, ref.shape, ref.strides, owner._offset + ref.offset)
        flat, base = self._flat(ref.slot, ref.dtype, inputs, outputs)
        storage = Storage(flat, ref.dtype, flat.shape[0])
        return Tensor._make(storage, ref.shape, ref.strides, base + ref.offset)

    def _value(self, n: Node, inputs, outputs, refs=None):
        if refs is None:
            refs = self._refs()
        if n in self._call.env:
            return self._call.env[n]
        if n.op == "placeholder" and n not in refs:
            return inputs[self.argument[n]]
        if n.op == "get_attr" and n not in refs:
            return fetch(self.gm, n.target)
        return self.tensor(refs[n], inputs, outputs)

    def _outputs(self, inputs, outputs, refs=None):
        """The graph's outputs as tensors (``refs``: this call's layout of a program with
        symbolic sizes)."""
        position = iter(range(1 << 62))

        all_refs = refs if refs is not None else self.program.refs

        def value(n: Node):
            internal = False
            if n.op == "placeholder":
                t = inputs[self.argument[n]]
            elif n.op == "get_attr":
                t = fetch(self.gm, n.target)
            elif self._call.views and self._view_chain(n)[1] in self._call.views:
                t = self._fallback_arg(n, inputs, outputs)  # eager's view, made again
            else:
                t = self._value(n, inputs, outputs, refs)
                ref = all_refs.get(n)
                internal = ref is not None and \
                    self.program.slots[ref.slot].kind in ("buffer", "scratch")
            # a value in the program's own buffers is overwritten by the next call
            copy = (next(position) in self._copied or internal) and isinstance(t, Tensor)
            return t.detach().clone() if copy else t
        return map_arg(self.program.outputs, value)

    def _view_chain(self, a: Node) -> tuple[list, Node]:
        """The views from ``a`` down to the first node that is not a view, or that a
        fallback made (in ``_views``): (the views, that node)."""
        chain, root = [], a
        views = self._call.views
        while root not in views and root.op == "call_function" and \
                Flag.VIEW in root.target.flags and isinstance(root.args[0], Node):
            chain.append(root)
            root = root.args[0]
        return chain, root

    def _fallback_arg(self, a: Node, inputs, outputs):
        """A fallback's argument. A view of a view an earlier fallback made (as_strided
        of as_strided) is made again from that view, not read from the copy the program
        keeps of it: as_strided addresses the storage, and the copy's is not eager's."""
        chain, root = self._view_chain(a)
        if root not in self._call.views:
            return self._value(a, inputs, outputs)
        t = self._call.views[root]
        with self._sizes_bound():
            for v in reversed(chain):
                rest, kwargs = concrete((v.args[1:], v.kwargs))
                t = self.interpreter.call_function(v, (t, *rest), kwargs)
        return t

    def _refs(self) -> dict:
        """Where each value lives in the current call (with symbolic sizes: its layout)."""
        layout = self._call.layout
        return layout.refs if layout is not None else self.program.refs

    def _sizes_bound(self):
        """This call's symbolic sizes, for Python code running the graph's nodes."""
        layout = self._call.layout
        return sizes_bound(dict(zip(self.sizes.names, layout.values))) if layout is not None \
            else nullcontext()

    def _run_fallback(self, step: int) -> int:
        try:
            _, fb = self.program.steps[step]
            n = fb.node
            call = self._call
            inputs, outputs = call.inputs, call.outputs
            with self._sizes_bound():  # symbolic sizes in the arguments: this call's
                args = map_arg(n.args, lambda a: self._fallback_arg(a, inputs, outputs))
                kwargs = map_arg(n.kwargs, lambda a: self._fallback_arg(a, inputs, outputs))
                args, kwargs = concrete((args, kwargs))
                result = getattr(self.interpreter, n.op)(n, args, kwargs)
            if n.op == "call_function" and Flag.VIEW in n.target.flags:
                call.views[n] = result
            if n in self.program.env_nodes:
                call.env[n] = result
                for u in n.users:
                    if u in self.program.refs and u.op == "call_method":
                        self._store(u, result[u.args[1]], inputs, outputs)
            else:
                self._store(n, result, inputs, outputs)
            return 0
        except BaseException as e:  # re-raised by run() with its traceback
            self._error = e
            return ERR_CALLBACK

    def _store(self, n: Node, result, inputs, outputs) -> None:
        dst = self.tensor(self._refs()[n], inputs, outputs)
        if not isinstance(result, Tensor):
            raise TypeError(f"%{n.name}: expected a tensor from the fallback, got "
                            f"{type(result).__name__}")
        np.copyto(dst.numpy(), result.numpy(), casting="unsafe")
