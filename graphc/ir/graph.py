"""Graph: an ordered list of nodes in topological order, ending in one ``output``.

    g = Graph()
    x = g.placeholder("x")
    y = g.call_function(OPS.relu, (x,))
    g.output(y)
    print(g)          # graph(%x):  %relu = relu(%x)  return %relu

Nodes are created at the insertion point (the end, or inside ``inserting_before(n)`` /
``inserting_after(n)``). ``lint()`` checks every invariant; passes call it after each
rewrite in tests.
"""

from __future__ import annotations

import contextlib
import keyword
import re
from collections.abc import Iterator
from typing import Any

from ..ops.registry import OpDef
from .node import Node, map_arg


class GraphError(RuntimeError):
    """A graph that breaks an invariant (found by ``lint``) or a refused edit."""


class Graph:
    def __init__(self):
        self.nodes: list[Node] = []
        self._names: dict[str, int] = {}  # base name -> next suffix
        self._used: set[str] = set()
        self._insert_at: int | None = None  # None: append
        self.version = 0  # bumped by every edit (GraphModule regenerates its code)
        self.owner = None  # a weak reference to the GraphModule that runs this graph

    def module_at(self, target: str):
        """The owning module's submodule at ``target`` (None without an owner)."""
        owner = self.owner() if self.owner is not None else None
        return _resolve(owner, target, target) if owner is not None else None

    # ---- naming ------------------------------------------------------------------
    def unique_name(self, hint: str) -> str:
        """A readable name not used yet: ``relu``, ``relu_1``, ``relu_2`` ..."""
        name = re.sub(r"\W", "_", str(hint)).strip("_") or "v"
        if name[0].isdigit() or keyword.iskeyword(name) or name in _RESERVED:
            name = "_" + name
        base = re.sub(r"_\d+$", "", name) or name
        while name in self._used:
            self._names[base] = self._names.get(base, 0) + 1
            name = f"{base}_{self._names[base]}"
        self._used.add(name)
        return name

    # ---- creating nodes ----------------------------------------------------------
    def create_node(self, op: str, target: Any, args: tuple = (), kwargs: dict | None = None,
                    name: str | None = None) -> Node:
        node = Node(self, self.unique_name(name or _default_name(op, target)), op, target, args,
                    kwargs or {})
        if self._insert_at is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self._insert_at, node)
            self._insert_at += 1
        self.version += 1
        return node

    def placeholder(self, name: str) -> Node:
        return self.create_node("placeholder", name, name=name)

    def get_attr(self, target: str, name: str | None = None) -> Node:
        return self.create_node("get_attr", target, name=name or target.replace(".", "_"))

    def call_function(self, op: OpDef, args: tuple = (), kwargs: dict | None = None) -> Node:
        return self.create_node("call_function", op, args, kwargs)

    def call_method(self, method: str, args: tuple = (), kwargs: dict | None = None) -> Node:
        return self.create_node("call_method", method, args, kwargs)

    def call_module(self, target: str, args: tuple = (), kwargs: dict | None = None) -> Node:
        return self.create_node("call_module", target, args, kwargs)

    def output(self, value: Any) -> Node:
        return self.create_node("output", "output", (value,), name="output")

    @contextlib.contextmanager
    def inserting_before(self, node: Node):
        saved = self._insert_at
        self._insert_at = self.nodes.index(node)
        try:
            yield
        finally:
            self._insert_at = saved

    @contextlib.contextmanager
    def inserting_after(self, node: Node):
        saved = self._insert_at
        self._insert_at = self.nodes.index(node) + 1
        try:
            yield
        finally:
            self._insert_at = saved

    # ---- editing -----------------------------------------------------------------
    def erase_node(self, node: Node) -> None:
        """Remove a node nobody reads (refused while it still has users)."""
        if node.users:
            users = ", ".join(u.name for u in node.users)
            raise GraphError(f"cannot erase %{node.name}: it is still used by {users}")
        node._set((), {})
        self.nodes.remove(node)
        self._used.discard(node.name)
        self.version += 1

    def touch(self) -> None:
        """Record an edit made directly on a node (args, target), for GraphModule."""
        self.version += 1

    # ---- reading -----------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(list(self.nodes))

    def __len__(self) -> int:
        return len(self.nodes)

    def find_nodes(self, op: str, target: Any = None) -> list[Node]:
        return [n for n in self.nodes if n.op == op and (target is None or n.target is target
                                                          or n.target == target)]

    @property
    def placeholders(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "placeholder"]

    @property
    def output_node(self) -> Node:
        outs = [n for n in self.nodes if n.op == "output"]
        if len(outs) != 1:
            raise GraphError(f"a graph has exactly one output node, this one has {len(outs)}")
        return outs[0]

    def topological_sort(self) -> None:
        """Reorder the nodes so that every node comes after its inputs (stable)."""
        placed: set[Node] = set()
        order: list[Node] = []

        def visit(n: Node, stack: tuple = ()) -> None:
            if n in placed:
                return
            if n in stack:
                raise GraphError(f"the graph has a cycle through %{n.name}")
            for i in n.all_input_nodes:
                visit(i, stack + (n,))
            placed.add(n)
            order.append(n)
        for n in self.nodes:
            visit(n)
        out = [n for n in order if n.op == "output"]
        self.nodes = [n for n in order if n.op != "output"] + out
        self.version += 1

    def copy(self) -> tuple[Graph, dict[Node, Node]]:
        """A deep copy of the graph and the map from old nodes to new ones."""
        new = Graph()
        env: dict[Node, Node] = {}
        for n in self.nodes:
            copied = new.create_node(n.op, n.target, map_arg(n.args, env.__getitem__),
                                     map_arg(n.kwargs, env.__getitem__), name=n.name)
            copied.meta = dict(n.meta)
            env[n] = copied
        new.owner = self.owner
        return new, env

    def __deepcopy__(self, memo):
        return self.copy()[0]

    # ---- checking ----------------------------------------------------------------
    def lint(self, owner=None, require_meta: bool = False) -> None:
        """Check every invariant; raise GraphError naming the first broken one.

        Inputs are defined before use, users mirror inputs, names are unique, there is one
        output and it comes last, call_function targets are op-table entries, and (given
        ``owner``, a module) get_attr / call_module targets exist. With ``require_meta``,
        every value has a shape and dtype.
        """
        from ..ops.registry import OPS

        seen: set[Node] = set()
        names: set[str] = set()
        for i, n in enumerate(self.nodes):
            where = f"%{n.name} (node {i})"
            if n.graph is not self:
                raise GraphError(f"{where} belongs to another graph")
            if n.name in names:
                raise GraphError(f"{where}: the name is used twice")
            names.add(n.name)
            for inp in n.all_input_nodes:
                if inp not in seen:
                    raise GraphError(f"{where} reads %{inp.name} before it is defined")
                if n not in inp.users:
                    raise GraphError(f"{where} reads %{inp.name}, which does not list it as a user")
            for user in n.users:
                if n not in user.all_input_nodes or user not in self.nodes:
                    raise GraphError(f"{where} lists %{user.name} as a user, which does not read it")
            if n.op == "call_function" and (not isinstance(n.target, OpDef)
                                            or OPS._ops.get(n.target.name) is not n.target):
                raise GraphError(f"{where}: call_function target {n.target!r} is not an op of the "
                                 "op table")
            if owner is not None and n.op in ("get_attr", "call_module"):
                _resolve(owner, n.target, where)
            if require_meta and n.op != "output" and ("shape" not in n.meta or "dtype" not in n.meta):
                if n.op != "call_module" or "shape" in n.meta:
                    raise GraphError(f"{where} has no shape/dtype in its meta (run shape "
                                     "propagation)")
            seen.add(n)
        out = self.output_node
        if self.nodes[-1] is not out:
            raise GraphError(f"the output node %{out.name} must be the last node")

    # ---- printing ----------------------------------------------------------------
    def __str__(self) -> str:
        return self.format()

    def format(self, locations: bool = False) -> str:
        """The text IR; with ``locations``, each line ends with the user's file:line."""
        from .printer import format_graph

        return format_graph(self, locations)

    def print_tabular(self) -> None:
        from .printer import tabular

        print(tabular(self))


def _resolve(owner, target: str, where: str):
    obj = owner
    for part in target.split("."):
        if not hasattr(obj, part):
            raise GraphError(f"{where}: {owner.__class__.__name__} has no attribute {target!r}")
        obj = getattr(obj, part)
    return obj


def _default_name(op: str, target: Any) -> str:
    if op == "call_function":
        return target.name
    if op == "call_method":
        return str(target)
    return str(target).replace(".", "_")


_RESERVED = {"self", "ops", "graphc"}  # names the generated Python code uses itself
