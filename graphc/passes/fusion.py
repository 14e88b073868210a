"""The fusion planner: partition a decomposed graph into kernels and log every decision.

Nodes are classified by their op's flags: elementwise, reduction, matmul, view, opaque
(impure, data movement such as cat/gather/pad/unfold, module calls). Walking in
topological order, a consumer joins the group of one of its producers when a rule allows:

    elementwise <- elementwise          same shape (a larger one would recompute the producer)
    reduction   <- elementwise          the producer computes the reduction's input (prologue)
    elementwise <- reduction            on the reduced values (epilogue), or on the full rows
                                        when the reduction is over the innermost dims (row
                                        kernel: reduce, then broadcast back, one row at a time)
    reduction   <- reduction group      another reduction over the same rows
    elementwise <- matmul               same shape (bias, activation, residual: the epilogue)
    (a widening cast joins its consumers' kernel rather than its producer's: stored, it
    would double the bytes)
    view        <- elementwise/matmul   reshape-like views keep the element order: they join

Index values (``index_values``: an ``arange``, views of it, elementwise ops of them, such
as a causal mask) belong to no kernel: each kernel reading one computes it where it reads
it (an arange's element is start + i·step), so a mask broadcast over a batch is a few
integer ops per element instead of a stored buffer. One is stored, by a kernel of its own,
only where a reader cannot compute it (a graph output, an unfused op, a matmul operand;
reduction kernels compute aranges and their views, not ops of them).

Everything else starts a kernel of its own: matmul operands are materialized for BLAS,
impure ops are never fused, views that reorder or repeat elements (permute, expand,
slice) of an intermediate end its kernel, and a join that would make the kernels
depend on each other in a cycle is refused. A view of a value computed outside a kernel
(an input, a weight) is read in place by every kernel that uses it (views cost nothing,
so copying one into several kernels duplicates no work). No node is ever computed twice.

Each group becomes ``call_module[fused_i]`` holding a FusedKernel with the group's
sub-graph. ``FusionPlan`` keeps the groups and, for every producer -> consumer edge,
whether it fused, the rule that decided, and the bytes moved without and with fusion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..ir.fused import FusedKernel
from ..ir.graph import Graph
from ..ir.graph_module import GraphModule
from ..ir.node import Node, map_arg
from ..layout import same_shape
from ..ops.registry import OPS, Flag
from ..ops.rules import reduce_dims
from ..symbolic import known


def _same_size(a, b) -> bool:
    """Shapes with the same number of elements for every value of their symbolic sizes
    (decided without a guard: a fusion choice is not worth restricting a program's sizes)."""
    return known(math.prod(a), "==", math.prod(b))


def kind_of(node: Node) -> str:
    if node.op in ("placeholder", "get_attr", "output"):
        return "io"
    if node.op != "call_function":
        return "opaque"
    if node.target is OPS.arange:  # elementwise with no inputs: element i is start + i·step
        return "elementwise"
    flags = node.target.flags
    if Flag.IMPURE in flags or Flag.COMPOSITE in flags and Flag.MATMUL not in flags:
        return "opaque"
    if Flag.MATMUL in flags:
        return "matmul"
    if Flag.REDUCTION in flags:
        return "reduction"
    if Flag.ELEMENTWISE in flags:
        return "elementwise"
    if Flag.VIEW in flags:
        return "view"
    return "opaque"


def _widens(node: Node) -> bool:
    src = node.args[0] if node.args else None
    return node.target.name == "cast" and isinstance(src, Node) and \
        node.meta["dtype"].itemsize > src.meta["dtype"].itemsize


def index_values(graph: Graph) -> dict[Node, bool]:
    """The values computed from aranges alone: node -> True for an arange or a view of one
    (read like an input, by every kind of kernel), False for an elementwise op of them."""
    index: dict[Node, bool] = {}
    for n in graph.nodes:
        if n.op != "call_function":
            continue
        if n.target is OPS.arange or kind_of(n) == "view" and index.get(n.args[0]) is True:
            index[n] = True
        elif kind_of(n) == "elementwise" and n.all_input_nodes and \
                all(i in index for i in n.all_input_nodes):
            index[n] = False
    return index


INDEX_RULE = "index value: computed where the kernel reads it (nothing stored)"


def nbytes(node: Node) -> int:
    shape, dtype = node.meta.get("shape"), node.meta.get("dtype")
    return math.prod(shape) * dtype.itemsize if shape is not None and dtype is not None else 0


@dataclass
class Decision:
    producer: str
    consumer: str
    fused: bool
    rule: str
    bytes_unfused: int
    bytes_fused: int

    def __str__(self) -> str:
        mark = "fused " if self.fused else "kernel"
        return (f"{mark}  %{self.producer} -> %{self.consumer}: {self.rule} "
                f"[{self.bytes_unfused} -> {self.bytes_fused} bytes]")


@dataclass(eq=False)  # a kernel being planned: compared (and hashed) by identity
class Group:
    kind: str
    members: list[Node]
    domain: tuple                 # elementwise/matmul: the values' shape; reduction: its input
    reduced: tuple = ()           # reduction dims
    row: bool = False             # reduced dims are the innermost ones
    views_inside: bool = False    # holds reshape-like views (values of equal size, new shapes)

    def reduced_shapes(self) -> tuple[tuple, tuple]:
        keep = tuple(1 if i in self.reduced else s for i, s in enumerate(self.domain))
        drop = tuple(s for i, s in enumerate(self.domain) if i not in self.reduced)
        return keep, drop


@dataclass
class FusionPlan:
    kernels: list[tuple[str, FusedKernel, list[str]]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{len(self.kernels)} kernels"]
        for target, k, members in self.kernels:
            lines.append(f"  {target}  {k.name:<24} {k.kind:<11} {', '.join(members)}")
        lines.append("decisions (producer -> consumer):")
        lines += ["  " + str(d) for d in self.decisions]
        return "\n".join(lines)

    def bytes_moved(self) -> tuple[int, int]:
        return (sum(d.bytes_unfused for d in self.decisions),
                sum(d.bytes_fused for d in self.decisions))


def _reduction_info(node: Node) -> tuple[tuple, tuple, bool]:
    src = node.args[0]
    shape = tuple(src.meta["shape"])
    dim = node.kwargs.get("dim")
    dims = reduce_dims(node.target.name, (dim,) if isinstance(dim, int) else dim, len(shape))
    dims = tuple(d for d in dims if d < len(shape))  # a 0-d tensor's dim 0 is no dim
    row = bool(dims) and dims == tuple(range(len(shape) - len(dims), len(shape)))
    return shape, dims, row


class _Planner:
    """Walks the nodes once. Questions about paths (would a join close a cycle, does a
    kernel compute a matmul operand) are searches from the kernels in question, so their
    cost follows the kernels' neighbourhood, not the graph's size. A cycle can only run
    through nodes walked so far (later ones belong to no kernel yet), so the forward
    searches follow ``exits``: for each unit (a group, or a node in none), the walked nodes
    outside it that read it."""

    def __init__(self, gm: GraphModule):
        self.gm = gm
        self.graph = gm.graph
        self.group_of: dict[Node, Group] = {}
        self.groups: dict[int, Group] = {}  # id -> group, in the order they started
        self._pending: list[tuple] = []
        self.position = {n: i for i, n in enumerate(self.graph.nodes)}
        self.exits: dict = {}  # unit -> {walked node reading it: None} (a few since joined it)
        self.index = index_values(self.graph)  # in no kernel, unless stored (``stored``)
        self.stored: dict[Node, str] = {}      # index value -> why a kernel stores it

    # ---- the rules ---------------------------------------------------------------
    def admit(self, g: Group, node: Node, producer: Node) -> tuple[bool, str]:
        kind, shape = kind_of(node), tuple(node.meta["shape"])
        if kind == "matmul":
            return False, "consumer is a matmul: BLAS reads materialized operands"
        if kind == "view":
            if not node.target.reshape_like:
                return False, (f"{node.target.name} reorders or repeats the producer's elements: "
                               "the producer is materialized")
            if g.kind == "reduction":
                return False, "a view inside a reduction kernel is not fused"
            return True, "reshape-like view keeps the element order"
        if kind == "reduction":
            src_shape, dims, row = _reduction_info(node)
            if self.group_of.get(node.args[0]) is not g:
                return False, "the reduction reads another value than this kernel's result"
            if g.kind == "elementwise" and same_shape(src_shape, g.domain) and not g.views_inside:
                return True, "reduction prologue: the producer computes the reduction's input"
            if g.kind == "reduction" and same_shape(src_shape, g.domain) and dims == g.reduced and g.row:
                return True, "another reduction over the same rows"
            if g.kind == "matmul":
                return False, "reductions do not fuse into a matmul kernel"
            return False, "the reduction's iteration space differs from the kernel's"
        if kind != "elementwise":
            return False, f"{node.target.name} is not fused (impure or data movement)"
        if _widens(node) and g.kind != "reduction":
            return False, ("a widening cast joins its consumers' kernel instead (written here, "
                           "it would double the bytes stored)")
        if g.kind in ("elementwise", "matmul"):
            if same_shape(shape, g.domain) or g.views_inside and _same_size(shape, g.domain):
                rule = "matmul epilogue" if g.kind == "matmul" else "elementwise, same shape"
                return True, rule
            if known(math.prod(shape), ">", math.prod(g.domain)):
                return False, "consumer broadcasts the result to a larger shape (would recompute it)"
            return False, "iteration spaces differ"
        keep, drop = g.reduced_shapes()
        if same_shape(shape, keep) or same_shape(shape, drop):
            return True, "reduction epilogue on the reduced values"
        if same_shape(shape, g.domain):
            if any(self.group_of.get(i) is g and len(i.meta["shape"]) < len(g.domain)
                   for i in node.all_input_nodes):
                # a reduced value without its reduced dims broadcasts along the trailing
                # (reduced) dims, not per row: (3, 3) + x.sum(1) adds column sums
                return False, ("a reduced value without keepdim broadcasts along the trailing "
                               "dims, not per row: not fused")
            if g.row:
                return True, "reduce-then-broadcast over the innermost dims (row kernel)"
            return False, "reduce-then-broadcast over non-innermost dims is not fused"
        return False, "iteration spaces differ"

    def mergeable(self, g: Group, other: Group, node: Node) -> tuple[bool, str]:
        """Whether a second producer's kernel can merge into the kernel ``node`` joined."""
        if other.kind != "elementwise":
            return False, f"the producer's {other.kind} kernel stays separate"
        same = same_shape(other.domain, g.domain) or (
            (g.views_inside or other.views_inside) and _same_size(other.domain, g.domain))
        if not same:
            return False, "the two producers' kernels iterate over different shapes"
        if g.kind == "reduction" and not g.row:
            return False, "elementwise work over the full shape does not join a reduction over " \
                          "non-innermost dims"
        if g.kind == "reduction" and other.views_inside:
            return False, "a view inside a reduction kernel is not fused"
        anchors = [m for m in g.members if kind_of(m) in ("matmul", "reduction")]
        if g.kind == "matmul" and any(self._computes_input_of(other, a) for a in anchors):
            return False, "the other kernel computes a matmul operand: BLAS reads it materialized"
        # merged, the two kernels close a cycle if a path leaves one and comes back into
        # the other through a third
        if self._reachable(g, avoid=other).get(other) == "via" \
                or self._reachable(other, avoid=g).get(g) == "via":
            return False, "merging the kernels would make them depend on each other"
        return True, "merged with the other producer's kernel: elementwise over the same shape"

    def _merge(self, g: Group, other: Group) -> None:
        g.members.extend(other.members)
        g.views_inside = g.views_inside or other.views_inside
        for m in other.members:
            self.group_of[m] = g
        del self.groups[id(other)]
        self.exits.setdefault(g, {}).update(self.exits.pop(other, {}))

    def creates_cycle(self, g: Group, node: Node) -> bool:
        """Whether ``node`` joining ``g`` closes a cycle: an input of it from outside g
        depends on g (then g -> ... -> input -> node, in g)."""
        outside = {self._unit(i) for i in node.all_input_nodes
                   if self.group_of.get(i) is not g and kind_of(i) != "io"}
        if not outside:  # all its computed inputs are in g: no need to search
            return False
        reached = self._reachable(g)
        return any(u in reached for u in outside)

    def _unit(self, n: Node):
        """What ``n`` is part of in the graph of kernels: its group, or itself."""
        return self.group_of.get(n, n)

    def _reachable(self, start: Group, avoid=None) -> dict:
        """The units (groups, or nodes in none) that depend on ``start`` through the nodes
        walked so far: unit -> "direct" (an edge from start) or "via" (only through another
        unit). ``avoid`` is reported but not searched through."""
        reached: dict = {}
        todo = [start]
        while todo:
            unit = todo.pop()
            how = "direct" if unit is start else "via"
            exits = self.exits.get(unit, {})
            inside = []
            for user in exits:
                u = self._unit(user)
                if u is unit:
                    inside.append(user)  # it joined since (in a merge): no exit any more
                elif u is not start and reached.get(u) not in (how, "via"):  # new, or
                    reached[u] = how  # found directly before and now through another unit
                    if u is not avoid:
                        todo.append(u)
            for user in inside:
                del exits[user]
        return reached

    def _computes_input_of(self, other: Group, anchor: Node) -> bool:
        """Whether a member of ``other`` is an ancestor of ``anchor`` (searched back from
        anchor, down to other's first member: nodes before it cannot be its members)."""
        first = min(self.position[m] for m in other.members)
        seen: set[Node] = set()
        todo = list(anchor.all_input_nodes)
        while todo:
            n = todo.pop()
            if n in seen or self.position[n] < first:
                continue
            if self.group_of.get(n) is other:
                return True
            seen.add(n)
            todo.extend(n.all_input_nodes)
        return False

    def _computed_inputs(self, node: Node) -> list[Node]:
        return [i for i in node.all_input_nodes if kind_of(i) != "io"]

    # ---- the walk ----------------------------------------------------------------
    def plan(self) -> None:
        for node in self.graph.nodes:
            for i in node.all_input_nodes:
                self.exits.setdefault(self._unit(i), {})[node] = None
            kind = kind_of(node)
            if kind in ("io", "opaque"):
                self._log_unfused(node, "consumer is not fused (impure, data movement or I/O)")
                continue
            if node in self.index:  # computed by the kernels reading it (see _store_index)
                for p in node.all_input_nodes:
                    self._decide(p, node, True, INDEX_RULE)
                continue
            producers = [p for p in self._computed_inputs(node) if p in self.group_of]
            # a reduction's or matmul's kernel first: an elementwise producer's kernel can
            # merge into it afterwards, but not the other way round, so the order of the
            # arguments (x*2 - x.mean(-1) or x.mean(-1) - x*2) does not decide the kernels
            producers.sort(key=lambda p: self.group_of[p].kind == "elementwise")
            target: Group | None = None
            admitted = None
            refused: dict[Node, str] = {}
            for p in producers:  # join the first producer's kernel that admits the consumer
                g = self.group_of[p]
                ok, rule = self.admit(g, node, p)
                if ok and self.creates_cycle(g, node):
                    ok, rule = False, "joining would make the kernels depend on each other"
                if ok:
                    self._join(g, node)
                    target, admitted = g, p
                    self._decide(p, node, True, rule)
                    break
                refused[p] = rule
            for p in producers:  # the other producers' kernels may merge into it
                g = self.group_of[p]
                if p is admitted:
                    continue
                if g is target:
                    self._decide(p, node, True, "producer is in the same kernel")
                    continue
                if target is None:
                    self._decide(p, node, False, refused[p])
                    continue
                ok, rule = self.mergeable(target, g, node)
                if ok:
                    self._merge(target, g)
                self._decide(p, node, ok, rule if ok else f"{refused.get(p, '')}; {rule}".lstrip("; "))
            for p in node.all_input_nodes:
                if p in self.index:
                    self._decide(p, node, True, INDEX_RULE)
                elif kind_of(p) == "view" and p not in self.group_of:
                    self._decide(p, node, True, "view of a value computed outside the kernel: "
                                 "read in place (a free view, copied into each kernel using it)")
                elif kind_of(p) != "io" and p not in self.group_of:
                    what = p.target.name if p.op == "call_function" else p.op
                    self._decide(p, node, False, f"producer {what} is not fused (impure, data "
                                 "movement or I/O)")
            if target is None and kind != "view":
                self._start(node)
        self._store_index()

    def _store_index(self) -> None:
        """A kernel of its own for each index value some reader cannot compute. A view of
        an arange is stored through the arange (the view then reads it in place); an op
        reading a stored value is stored too (a kernel computes an index value at the
        shape it broadcasts to, which only values of aranges alone allow)."""
        for n, is_ref in self.index.items():
            reason = next(filter(None, (self._unreadable(n, is_ref, u) for u in n.users)), None)
            while reason and kind_of(n) == "view":
                n = n.args[0]
            if reason and n not in self.stored:
                self.stored[n] = reason
        for n, is_ref in list(self.index.items()):  # in topological order
            if n not in self.stored and all(i in self.index for i in n.all_input_nodes):
                continue
            del self.index[n]
            if not is_ref and n not in self.stored:
                self.stored[n] = "it reads a stored index value"
        for n in self.stored:
            self._start(n)

    def _unreadable(self, n: Node, is_ref: bool, user: Node) -> str | None:
        """Why ``user`` cannot compute the index value ``n`` in its kernel (None: it can)."""
        if user in self.index:
            return None
        g = self.group_of.get(user)
        if g is None:
            what = user.target.name if user.op == "call_function" else user.op
            return f"{what} reads it from memory"
        if kind_of(user) == "matmul":
            return "a matmul operand: BLAS reads it from memory"
        if not is_ref and g.kind == "reduction":
            return "reduction kernels compute aranges and views of them, not ops of them"
        return None

    def _start(self, node: Node) -> None:
        kind = kind_of(node)
        shape = tuple(node.meta["shape"])
        g = Group(kind, [node], shape)
        if kind == "reduction":
            g.domain, g.reduced, g.row = _reduction_info(node)
        self.groups[id(g)] = g
        self.group_of[node] = g

    def _join(self, g: Group, node: Node) -> None:
        kind = kind_of(node)
        if kind == "reduction" and g.kind == "elementwise":
            g.kind = "reduction"
            g.domain, g.reduced, g.row = _reduction_info(node)
        if kind == "view":
            g.views_inside = True
            g.domain = tuple(node.meta["shape"]) if g.kind == "elementwise" else g.domain
        g.members.append(node)
        self.group_of[node] = g
        self.exits.get(g, {}).pop(node, None)  # it read g: inside now

    def _decide(self, producer: Node, consumer: Node, fused: bool, rule: str) -> None:
        self._pending.append((producer, consumer, fused, rule))

    def decisions_with_bytes(self) -> list[Decision]:
        """Unfused, a value is written and read back (2x its size); fused, it is written
        only if something outside the kernel still reads it."""
        out = []
        exported: dict[Node, bool] = {}  # once per producer: a value may have 10k readers
        for producer, consumer, fused, rule in self._pending:
            size = 0 if kind_of(producer) == "view" else nbytes(producer)  # views move nothing
            if rule is INDEX_RULE and producer in self.stored:
                fused, rule = False, f"index value stored: {self.stored[producer]}"
            elif rule is INDEX_RULE and producer not in self.index:  # views of a stored one
                rule = "view of a stored index value: read in place"
            if producer not in exported:
                g = self.group_of.get(producer)
                exported[producer] = g is None or any(self.group_of.get(u) is not g
                                                      for u in producer.users)
            moved = 0 if rule is INDEX_RULE else size if exported[producer] else 0
            d = Decision(producer.name, consumer.name, fused, rule, 2 * size,
                         moved if fused else 2 * size)
            consumer.meta.setdefault("fusion", []).append(d)
            out.append(d)
        return out

    def _log_unfused(self, node: Node, rule: str) -> None:
        for p in node.all_input_nodes:
            if kind_of(p) in ("elementwise", "reduction", "matmul"):
                self._decide(p, node, False, rule)


def _kernel_name(g: Group, used: dict[str, int]) -> str:
    """``E_<n>``, ``R_<kept>_<reduced>`` or ``M_<m>_<n>_<k>``; the base name's second
    kernel gets ``_1``, and so on (``used``: base name -> kernels so far)."""
    if g.kind == "elementwise":
        base = f"E_{math.prod(g.domain)}"
    elif g.kind == "reduction":
        kept = math.prod(s for i, s in enumerate(g.domain) if i not in g.reduced)
        reduced = math.prod(g.domain[i] for i in g.reduced)
        base = f"R_{kept}_{reduced}"
    else:
        mm = next(m for m in g.members if kind_of(m) == "matmul")
        a, b = (x.meta["shape"] for x in mm.args[:2])
        m = math.prod(a[:-1]) if len(a) > 1 else 1
        base = f"M_{m}_{b[-1] if len(b) > 1 else 1}_{a[-1]}"
    i = used.get(base, 0)
    used[base] = i + 1
    return f"{base}_{i}" if i else base


def _input_views(node: Node, members: set, grouped: set) -> list[Node]:
    """The chain of views between a kernel and a value computed outside it. A view that
    is a member of another kernel ends the chain: that kernel computes it (as one of its
    outputs), so it is not copied here, nor erased when this kernel is built."""
    chain = []
    while node.op == "call_function" and kind_of(node) == "view" and node not in members \
            and node not in grouped:
        chain.append(node)
        node = node.args[0] if isinstance(node.args[0], Node) else None
        if node is None or node in members:
            return []
    return chain


def _build(gm: GraphModule, g: Group, name: str, index: int, grouped: set,
           position: dict[Node, int], index_nodes: dict) -> tuple[str, FusedKernel]:
    """Replace the group's nodes by one call_module; ``position`` is each node's place in
    the graph before fusion (the order of the nodes not yet replaced)."""
    graph = gm.graph
    members = set(g.members)
    # input views (and their chains) and index values are copied into the kernel; the
    # views' roots become inputs
    inside = set(members)
    todo = [i for m in g.members for i in m.all_input_nodes]
    while todo:
        i = todo.pop()
        if i in index_nodes and i not in inside:
            inside.add(i)
            todo.extend(i.all_input_nodes)
        elif i not in inside:
            inside.update(_input_views(i, members, grouped))
    order = sorted(inside, key=position.__getitem__)
    inputs = list(dict.fromkeys(i for n in order for i in n.all_input_nodes if i not in inside))
    exported = [m for m in g.members if any(u not in members for u in m.users)]
    # a reshape-like view of a value of the kernel is made outside it, from that value (the
    # kernel stored both: the same elements twice)
    views = {o: _view_chain(o, members) for o in exported}
    outputs = list(dict.fromkeys(views[o][0] if views[o][1] else o for o in exported))
    sub = Graph()
    env: dict[Node, Node] = {}
    for i, value in enumerate(inputs):
        p = sub.placeholder(f"in{i}")
        p.meta = {k: value.meta[k] for k in ("shape", "dtype", "stride") if k in value.meta}
        env[value] = p
    for n in order:
        copied = sub.create_node(n.op, n.target, map_arg(n.args, env.__getitem__),
                                 map_arg(n.kwargs, env.__getitem__), name=n.name)
        copied.meta = dict(n.meta)  # including its fusion decisions
        env[n] = copied
    sub.output(env[outputs[0]] if len(outputs) == 1 else tuple(env[o] for o in outputs))
    kernel = FusedKernel(sub, g.kind, name, g.domain, g.reduced)
    target = f"fused_{index}"
    gm.add_module(target, kernel)
    with graph.inserting_after(max(g.members, key=position.__getitem__)):
        call = graph.call_module(target, tuple(inputs))
        call.meta["kernel"] = name
        results = [call]
        if len(outputs) > 1:
            results = [graph.call_method("__getitem__", (call, k)) for k in range(len(outputs))]
    if len(outputs) == 1:
        call.meta.update({k: outputs[0].meta[k] for k in ("shape", "dtype", "stride")
                          if k in outputs[0].meta})
    result_of = dict(zip(outputs, results))
    for out, res in zip(outputs, results):
        if len(outputs) > 1:
            res.meta.update({k: out.meta[k] for k in ("shape", "dtype", "stride") if k in out.meta})
    for o, (base, chain) in views.items():
        if chain:
            value = result_of[base]
            with graph.inserting_after(value):
                for v in reversed(chain):
                    value = graph.create_node(v.op, v.target, (value, *v.args[1:]), dict(v.kwargs))
                    value.meta = dict(v.meta)
                    position[value] = position[v]  # (later kernels order their nodes by it)
            _uses_outside(o, members, value)
    for out, res in zip(outputs, results):
        _uses_outside(out, members, res)
    for n in reversed(order):
        if not n.users:
            graph.erase_node(n)
    return target, kernel


def _view_chain(node: Node, members: set) -> tuple[Node, list[Node]]:
    """(the value a chain of views inside a kernel starts from, the views, outermost
    first); no views: (node, [])."""
    chain = []
    while kind_of(node) == "view" and node.args[0] in members:
        chain.append(node)
        node = node.args[0]
    return node, chain


def _uses_outside(node: Node, members: set, value: Node) -> None:
    """Uses of ``node`` by nodes outside the kernel now read ``value``."""
    for u in list(node.users):
        if u not in members:
            u.replace_input_with(node, value)


def fuse(gm: GraphModule) -> FusionPlan:
    """Partition ``gm``'s graph into FusedKernels (in place) and return the plan."""
    for n in gm.graph.nodes:
        if n.op != "output" and "shape" not in n.meta:
            raise ValueError(f"fusion needs shapes: %{n.name} has none (run refresh_shapes)")
    planner = _Planner(gm)
    planner.plan()
    plan = FusionPlan(decisions=planner.decisions_with_bytes())
    used: dict[str, int] = {}
    groups = list(planner.groups.values())
    grouped = {m for g in groups for m in g.members}
    for i, g in enumerate(groups):
        name = _kernel_name(g, used)
        target, kernel = _build(gm, g, name, i, grouped, planner.position, planner.index)
        plan.kernels.append((target, kernel, [m.name for m in g.members]))
    gm.graph.topological_sort()
    object.__setattr__(gm, "fusion_plan", plan)
    return plan


def fusion_pass(gm: GraphModule) -> bool:
    """``fuse`` as a pass (graph -> changed)."""
    return bool(fuse(gm).kernels)
