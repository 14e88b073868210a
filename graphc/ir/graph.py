"""Graph: nodes in topological order, ending in one ``output``.

    g = Graph()
    x = g.placeholder("x")
    y = g.call_function(OPS.relu, (x,))
    g.output(y)
    print(g)          # graph(%x):  %relu = relu(%x)  return %relu

Nodes are created at the insertion point (the end, or inside ``inserting_before(n)`` /
``inserting_after(n)``). ``lint()`` checks every invariant; passes call it after each
rewrite in tests.

The nodes form a doubly linked list closed by a sentinel (as torch.fx keeps them): each
node holds ``_prev`` and ``_next``, and the graph's ``_root`` is both the node before the
first and the node after the last. Inserting before or after any node, erasing, moving
and membership (``node in graph.nodes``: the node's graph and a flag) are O(1), so a pass
editing every node of a 50k-node graph stays linear. An insertion-ordered dict would give
O(1) append, erase and membership, but not insertion in the middle, which is what
``inserting_before`` does for every decomposition and fold. ``graph.nodes`` is a read-only
view of the list in order (iteration, ``len``, ``in``, ``nodes[0]``, ``nodes[-1]``);
iterating it while erasing is safe, as an erased node keeps its links and is skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import keyword
import re
from collections.abc import Iterator
from typing import Any

from ..ops.registry import OpDef
from .node import Node, map_arg


class GraphError(RuntimeError):
    """A graph that breaks an invariant (found by ``lint``) or a refused edit."""


class _Root:
    """The sentinel closing the list: ``_next`` is the first node, ``_prev`` the last."""

    def __init__(self):
        self._prev = self._next = self
        self._erased = False
        self.name = "<root>"


class NodeList:
    """A read-only, live view of a graph's nodes in order.

    Iteration skips nodes erased meanwhile (so a pass may erase while it walks, forwards
    or with ``reversed``); nodes inserted ahead of the walk are visited. ``in`` and ``len``
    are O(1); ``nodes[0]`` and ``nodes[-1]`` too, other indices walk the list.
    """

    def __init__(self, graph: Graph):
        self._graph = graph

    def __iter__(self) -> Iterator[Node]:
        return self._walk("_next")

    def __reversed__(self) -> Iterator[Node]:
        return self._walk("_prev")

    def _walk(self, step: str) -> Iterator[Node]:
        root = self._graph._root
        node = getattr(root, step)
        while node is not root:
            if not node._erased:
                yield node
            node = getattr(node, step)

    def __len__(self) -> int:
        return self._graph._len

    def __contains__(self, node) -> bool:
        return isinstance(node, Node) and node.graph is self._graph and not node._erased

    def __getitem__(self, index: int | slice):
        if isinstance(index, slice):
            return list(self)[index]
        n = self._graph._len
        if not -n <= index < n:
            raise IndexError(f"node index {index} is out of range for a graph of {n} nodes")
        index %= n
        if index <= n // 2:  # walk from the nearer end
            return next(itertools.islice(iter(self), index, None))
        return next(itertools.islice(reversed(self), n - 1 - index, None))

    def index(self, node: Node) -> int:
        """The position of ``node`` (a walk: O(n); compare ``node.next`` instead)."""
        if node in self:
            for i, n in enumerate(self):
                if n is node:
                    return i
        raise ValueError(f"%{getattr(node, 'name', node)} is not a node of this graph")

    def __repr__(self) -> str:
        return f"NodeList([{', '.join(n.name for n in self)}])"


class Graph:
    def __init__(self):
        self._root = _Root()
        self._len = 0
        self._view = NodeList(self)
        self._names: dict[str, int] = {}  # base name -> next suffix
        self._used: set[str] = set()
        # where create_node puts a node: before _insert_before, or after _insert_after (which
        # then moves on to the new node, so a, b created in inserting_after(n) give n, a, b)
        self._insert_before: Node | _Root = self._root
        self._insert_after: Node | None = None
        self._created: list[Node] | None = None  # the nodes made in an inserting_* block
        self._placeholders: tuple[int, list[Node]] = (-1, [])  # (version, placeholders)
        self.version = 0  # bumped by every edit (GraphModule regenerates its code)
        self.owner = None  # a weak reference to the GraphModule that runs this graph

    @property
    def nodes(self) -> NodeList:
        """The nodes in order: a live read-only view (edit with the methods below)."""
        return self._view

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
        if self._insert_after is not None:
            self._link(node, self._insert_after)
            self._insert_after = node
        else:
            anchor = self._insert_before
            if anchor._erased:
                raise GraphError(f"cannot insert %{node.name} before %{anchor.name}: it was "
                                 "erased while inserting")
            self._link(node, anchor._prev)
        if self._created is not None:
            self._created.append(node)
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
    def inserting_before(self, node: Node) -> Iterator[list[Node]]:
        """New nodes go just before ``node``, in the order they are created. Yields the
        list of the nodes created inside the block (filled as they are).

            with graph.inserting_before(node) as created:
                ...
            for new in created: new.meta["location"] = node.meta.get("location")
        """
        self._check_member(node, "insert before")
        with self._inserting(node, None) as created:
            yield created

    @contextlib.contextmanager
    def inserting_after(self, node: Node) -> Iterator[list[Node]]:
        """New nodes go just after ``node``, in the order they are created; yields the list
        of the nodes created inside the block."""
        self._check_member(node, "insert after")
        with self._inserting(self._insert_before, node) as created:
            yield created

    @contextlib.contextmanager
    def _inserting(self, before, after) -> Iterator[list[Node]]:
        saved = self._insert_before, self._insert_after, self._created
        self._insert_before, self._insert_after = before, after
        self._created = created = []
        try:
            yield created
        finally:
            self._insert_before, self._insert_after, self._created = saved
            if self._created is not None:  # an enclosing block created these too
                self._created += created

    # ---- the linked list ---------------------------------------------------------
    def _link(self, node: Node, after: Node | _Root) -> None:
        if after is not self._root and (after._erased or after.graph is not self):
            raise GraphError(f"cannot insert %{node.name} after %{after.name}: it is not a node "
                             "of this graph (erased while inserting?)")
        node._prev, node._next = after, after._next
        after._next._prev = node
        after._next = node
        self._len += 1

    def _unlink(self, node: Node) -> None:
        # the node keeps its own links: a walk standing on it goes on to the next node
        node._prev._next = node._next
        node._next._prev = node._prev
        self._len -= 1

    def _check_member(self, node: Node, what: str) -> None:
        if node not in self.nodes:
            raise GraphError(f"cannot {what} %{node.name}: it is not a node of this graph")

    def move_before(self, node: Node, anchor: Node) -> None:
        """Move ``node`` to just before ``anchor`` (both in this graph); O(1). Moving a node
        before its inputs breaks the order; ``lint`` says so, ``topological_sort`` repairs it."""
        self._check_member(node, "move")
        self._check_member(anchor, "move before")
        if node is not anchor:
            self._unlink(node)
            self._link(node, anchor._prev)
            self.version += 1

    def move_after(self, node: Node, anchor: Node) -> None:
        """Move ``node`` to just after ``anchor`` (both in this graph); O(1)."""
        self._check_member(node, "move")
        self._check_member(anchor, "move after")
        if node is not anchor:
            self._unlink(node)
            self._link(node, anchor)
            self.version += 1

    # ---- editing -----------------------------------------------------------------
    def erase_node(self, node: Node) -> None:
        """Remove a node nobody reads (refused while it still has users)."""
        self._check_member(node, "erase")
        if node.users:
            users = ", ".join(u.name for u in node.users)
            raise GraphError(f"cannot erase %{node.name}: it is still used by {users}")
        node._set((), {})
        self._unlink(node)
        node._erased = True
        self._used.discard(node.name)
        self.version += 1

    def touch(self) -> None:
        """Record an edit made directly on a node (args, target), for GraphModule."""
        self.version += 1

    # ---- reading -----------------------------------------------------------------
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return self._len

    def find_nodes(self, op: str, target: Any = None) -> list[Node]:
        return [n for n in self.nodes if n.op == op and (target is None or n.target is target
                                                          or n.target == target)]

    @property
    def placeholders(self) -> list[Node]:
        """The inputs in order (a new list; found once per version of the graph)."""
        version, found = self._placeholders
        if version != self.version:
            found = [n for n in self.nodes if n.op == "placeholder"]
            self._placeholders = (self.version, found)
        return list(found)

    @property
    def output_node(self) -> Node:
        last = self._root._prev
        if last is not self._root and last.op == "output":
            return last  # where lint keeps it
        outs = [n for n in self.nodes if n.op == "output"]
        if len(outs) != 1:
            raise GraphError(f"a graph has exactly one output node, this one has {len(outs)}")
        return outs[0]

    def topological_sort(self) -> None:
        """Reorder the nodes so that every node comes after its inputs (stable: a node
        moves only if an input of it came later)."""
        state: dict[Node, bool] = {}  # False: its inputs are being placed; True: placed
        order: list[Node] = []
        for start in self.nodes:
            if start in state:
                continue
            state[start] = False
            stack = [(start, iter(start.all_input_nodes))]
            while stack:  # depth first, without recursion: chains are 100k nodes long
                n, inputs = stack[-1]
                i = next(inputs, None)
                if i is None:
                    stack.pop()
                    state[n] = True
                    order.append(n)
                elif i not in state:
                    state[i] = False
                    stack.append((i, iter(i.all_input_nodes)))
                elif not state[i]:
                    raise GraphError(f"the graph has a cycle through %{i.name}")
        order.sort(key=lambda n: n.op == "output")  # stable: the output last
        root = self._root
        root._prev = root._next = root
        self._len = 0
        for n in order:
            self._link(n, root._prev)
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
        outputs = 0
        prev = self._root
        for i, n in enumerate(self.nodes):
            where = f"%{n.name} (node {i})"
            if n._prev is not prev or prev._next is not n:
                raise GraphError(f"{where}: the list of nodes is broken (its links disagree "
                                 f"with %{prev.name}'s)")
            prev = n
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
                if n not in user._inputs or user not in self.nodes:
                    raise GraphError(f"{where} lists %{user.name} as a user, which does not read it")
            outputs += n.op == "output"
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
        if prev._next is not self._root or self._root._prev is not prev or len(seen) != self._len:
            raise GraphError(f"the list of nodes is broken after %{prev.name} (the graph counts "
                             f"{self._len} nodes)")
        if outputs != 1:
            raise GraphError(f"a graph has exactly one output node, this one has {outputs}")
        if prev.op != "output":
            out = next(n for n in self.nodes if n.op == "output")
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
