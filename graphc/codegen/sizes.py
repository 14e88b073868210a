"""Binding a symbolic program's sizes to one call.

A program compiled with symbolic sizes (``graphc.symbolic``) has shapes, strides, buffer
sizes and output layouts that are polynomials of its size symbols. ``SizeBinding`` reads
the symbols' values off a call's inputs (the first input dim that is exactly a symbol),
computes the derived symbols from them (``d0 = (s0 - 1) // 2``, in the order they were
made), refuses values below 2 for either kind (the compiler decided on that bound), checks
every input's shape and strides against the compiled layout and the program's guards, and
gives the call's concrete layout: the table's size slots, the bytes each buffer needs, and
each value's Ref with integers. Layouts are cached per distinct set of values (the most
recently used ``MAX_LAYOUTS``, in an ``LRUCache``, which also bounds the runtime's pools
of output memory by bytes), so a repeated size costs one dict lookup after reading the
inputs' shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..symbolic import bare_symbol, is_symbolic
from .kernel_ir import Ref

MAX_LAYOUTS = 64  # cached concrete layouts per program (distinct size values)


class LRUCache:
    """A dict bounded by the total weight of its values (bytes, or 1 per entry): storing
    past ``budget`` drops the least recently used entries, but never the one just stored.

        cache = LRUCache(budget=1 << 20)
        cache.put(key, value, weight=nbytes)
        cache.get(key)  # the value (now the most recently used), or None
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.total = 0
        self._entries: dict = {}  # key -> (value, weight), least recently used first

    def get(self, key):
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._entries[key] = entry
        return entry[0]

    def put(self, key, value, weight: int = 1) -> None:
        """Store (or re-weigh) ``value`` under ``key`` as the most recently used."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.total -= old[1]
        self._entries[key] = (value, weight)
        self.total += weight
        while self.total > self.budget and len(self._entries) > 1:
            self.total -= self._entries.pop(next(iter(self._entries)))[1]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries


class SizeMismatch(ValueError):
    """A call's inputs do not fit the program: another size than compiled, or a guard
    (a decision taken at compile time) that does not hold for these sizes."""


@dataclass
class Layout:
    """One call's concrete sizes."""

    values: tuple           # the symbols' values, in order s0, s1, ...
    expected: list          # (input k, shape, strides) each input must have
    nbytes: dict            # slot -> bytes (outputs, buffers, scratch)
    refs: dict              # Node -> Ref with integers
    prepared: object = None  # what the runtime derives from it once (see Specialization)


class SizeBinding:
    """``given``: the symbols' values come with each call (``bind(inputs, values)``), from
    the program that made its inputs (a backward program from its forward, whose inputs
    carry sizes the backward's may not), so no input needs to carry them."""

    def __init__(self, program, placeholders: list, given: bool = False):
        env = program.shape_env
        self.env = env
        self.names = list(env.hints)
        self.size_slots = [(k, s.index) for k, s in enumerate(program.slots) if s.kind == "size"]
        self.sources: list[tuple[int, int]] = [None] * len(self.names)  # (input, dim)
        self.inputs = []  # (input k, shape, strides) as compiled, possibly symbolic
        for k, p in enumerate(placeholders):
            ref = program.refs.get(p)
            if ref is None:
                continue
            self.inputs.append((k, ref.shape, ref.strides))
            for d, n in enumerate(ref.shape):
                name = bare_symbol(n)
                if name in env.derived:
                    continue
                if name is not None and self.sources[self.names.index(name)] is None:
                    self.sources[self.names.index(name)] = (k, d)
        missing = [n for n, src in zip(self.names, self.sources)
                   if src is None and n not in env.derived]
        if missing and not given:
            raise ValueError(f"symbolic sizes {missing} are not the size of any input dim")
        # the sizes, read off the inputs or computed from the ones before (text built here
        # from polynomials): lambda inputs: ((s0 := inputs[0]._shape[2]), (d0 := (s0 - 1) // 2),)
        self.values_of = None  # given: the values come with each call
        if not given:
            read = [env.definition(name) if src is None else
                    f"inputs[{src[0]}]._shape[{src[1]}]"
                    for name, src in zip(self.names, self.sources)]
            self.values_of = eval("lambda inputs: (" + "".join(
                f"({name} := {value}), " for name, value in zip(self.names, read)) + ")", {})
        env.frozen = True  # from here on, a decision on a symbol is a bug, not a guard
        self.guards = env.checker()
        self.check_inputs = env.evaluator([(shape, strides) for _, shape, strides in self.inputs])
        sized = {k: s.nbytes for k, s in enumerate(program.slots)  # (per thread: all threads')
                 if s.kind in ("output", "buffer", "scratch")}
        self.slot_order = list(sized)
        self.nbytes = env.evaluator([sized[k] for k in self.slot_order])
        self.symbolic_refs = {n: r for n, r in program.refs.items()
                              if is_symbolic((r.offset, r.shape, r.strides))}
        self.ref_values = env.evaluator([(r.offset, r.shape, r.strides)
                                         for r in self.symbolic_refs.values()])
        self.static_refs = {n: r for n, r in program.refs.items() if n not in self.symbolic_refs}
        self.layouts = LRUCache(MAX_LAYOUTS)  # values -> Layout, one unit of weight each
        slot_dtype = {r.slot: r.dtype for r in program.refs.values()}
        self.outputs = [(k, slot_dtype[k]) for k, s in enumerate(program.slots)
                        if s.kind == "output"]  # (slot, dtype), sized per call

    def bind(self, inputs, values: tuple | None = None) -> Layout:
        if values is None:
            if self.values_of is None:
                raise SizeMismatch("this program's sizes come with the call (from the "
                                   "program that made its inputs); none were given")
            values = self.values_of(inputs)
        layout = self.layouts.get(values)
        if layout is None:
            layout = self._layout(values)
        for k, shape, strides in layout.expected:
            t = inputs[k]
            if t._shape != shape or (t._stride != strides and _matters(shape, t._stride, strides)):
                raise SizeMismatch(f"input {k} has shape {list(t._shape)} and strides "
                                   f"{t._stride}; this program takes shape {list(shape)} with "
                                   f"strides {strides}")
        return layout

    def _layout(self, values: tuple) -> Layout:
        if min(values) < 2:
            names = dict(zip(self.names, values))
            low = [n for n in self.env.derived if names[n] < 2]
            if low:  # (_sizes_in in compiler/compiled.py reads the text after " guard ")
                raise SizeMismatch(f"sizes {names} fail the program's guard {low[0]} >= 2 "
                                   f"({low[0]} = {self.env.definition(low[0])} was "
                                   f"{self.env.hints[low[0]]} when compiled)")
            raise SizeMismatch(f"sizes {names}: symbolic sizes are at least 2 (sizes 0 and 1 "
                               "compile as constants)")
        if not self.guards(*values):
            names = dict(zip(self.names, values))
            failed = next(g for g in self.env.guards if not eval(g, {}, names))
            raise SizeMismatch(f"sizes {names} fail the program's guard {failed}")
        expected = [(k, tuple(shape), tuple(strides)) for (k, _, _), (shape, strides) in
                    zip(self.inputs, self.check_inputs(*values))]
        nbytes = dict(zip(self.slot_order, self.nbytes(*values)))
        refs = dict(self.static_refs)
        for (n, r), (offset, shape, strides) in zip(self.symbolic_refs.items(),
                                                    self.ref_values(*values)):
            refs[n] = Ref(r.slot, offset, tuple(shape), tuple(strides), r.dtype)
        layout = Layout(values, expected, nbytes, refs)
        self.layouts.put(values, layout)
        return layout


def _matters(shape, actual, wanted) -> bool:
    """Strides differ somewhere they are used (a dim of size 1 has any stride, and a
    tensor with no elements any strides)."""
    return 0 not in shape and any(n != 1 and a != w for n, a, w in zip(shape, actual, wanted))
