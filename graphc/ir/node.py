"""Node: one instruction of the graph IR.

The vocabulary is torch.fx's: ``placeholder`` (an input), ``get_attr`` (a parameter,
buffer or constant of the owning module), ``call_function`` (an op-table entry),
``call_method`` (a method on the first argument), ``call_module`` (a leaf submodule) and
``output``. Each node knows the nodes it reads (``all_input_nodes``) and the nodes that
read it (``users``), so dead-code elimination is a reverse walk.

``meta`` holds what analyses learn: ``shape``, ``dtype``, ``stride`` and ``location`` (the
user's ``file:line`` that produced the node).
"""

from __future__ import annotations

from typing import Any

OPCODES = ("placeholder", "get_attr", "call_function", "call_method", "call_module", "output")


def map_arg(value, fn):
    """Apply ``fn`` to every Node inside ``value`` (nested tuples, lists, dicts, slices)."""
    if isinstance(value, Node):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(map_arg(v, fn) for v in value)
    if isinstance(value, list):
        return [map_arg(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: map_arg(v, fn) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(map_arg(value.start, fn), map_arg(value.stop, fn), map_arg(value.step, fn))
    return value


def nodes_in(value) -> list[Node]:
    found: list[Node] = []
    map_arg(value, lambda n: found.append(n) or n)
    return found


class Node:
    """An instruction: ``name = opcode[target](*args, **kwargs)``."""

    def __init__(self, graph, name: str, op: str, target: Any, args: tuple, kwargs: dict):
        if op not in OPCODES:
            raise ValueError(f"unknown opcode {op!r}; expected one of {', '.join(OPCODES)}")
        self.graph = graph
        self.name = name
        self.op = op
        self.target = target
        self.users: dict[Node, None] = {}
        self.meta: dict[str, Any] = {}
        self._args: tuple = ()
        self._kwargs: dict = {}
        self._inputs: dict[Node, None] = {}
        self._prev = self._next = None  # the graph's linked list (graph.py)
        self._erased = False
        self._set(tuple(args), dict(kwargs))

    # ---- inputs and users --------------------------------------------------------
    @property
    def args(self) -> tuple:
        return self._args

    @args.setter
    def args(self, value) -> None:
        self._set(tuple(value), self._kwargs)

    @property
    def kwargs(self) -> dict:
        return self._kwargs

    @kwargs.setter
    def kwargs(self, value) -> None:
        self._set(self._args, dict(value))

    def _set(self, args: tuple, kwargs: dict) -> None:
        for old in self._inputs:
            old.users.pop(self, None)
        self._args, self._kwargs = args, kwargs
        self._inputs = dict.fromkeys(nodes_in(args) + nodes_in(kwargs))
        for new in self._inputs:
            new.users[self] = None

    @property
    def all_input_nodes(self) -> list[Node]:
        return list(self._inputs)

    def replace_all_uses_with(self, replacement: Node) -> list[Node]:
        """Make every user read ``replacement`` instead; returns the users changed."""
        changed = list(self.users)
        for user in changed:
            swap = lambda n: replacement if n is self else n
            user._set(map_arg(user._args, swap), map_arg(user._kwargs, swap))
        return changed

    def replace_input_with(self, old: Node, new: Node) -> None:
        swap = lambda n: new if n is old else n
        self._set(map_arg(self._args, swap), map_arg(self._kwargs, swap))

    # ---- position ----------------------------------------------------------------
    @property
    def next(self) -> Node | None:
        """The node after this one in its graph (None after the output)."""
        nxt = self._next
        return nxt if isinstance(nxt, Node) else None

    @property
    def prev(self) -> Node | None:
        """The node before this one in its graph (None before the first)."""
        prev = self._prev
        return prev if isinstance(prev, Node) else None

    # ---- describing --------------------------------------------------------------
    @property
    def shape(self) -> tuple | None:
        return self.meta.get("shape")

    @property
    def dtype(self):
        return self.meta.get("dtype")

    def is_impure(self) -> bool:
        """Whether removing this node could change what the program does."""
        from ..ops.registry import Flag

        if self.op in ("placeholder", "output"):
            return True
        if self.op == "call_function":
            return Flag.IMPURE in self.target.flags
        if self.op == "call_module":  # a fused kernel is pure; other modules may not be
            return not getattr(self.graph.module_at(self.target), "pure", False)
        return self.op == "call_method" and self.target != "__getitem__"

    def format(self) -> str:
        from .printer import format_node

        return format_node(self)

    def __repr__(self) -> str:
        return self.name
