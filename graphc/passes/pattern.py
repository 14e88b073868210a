"""``replace_pattern``: rewrite every occurrence of a traced pattern by a traced replacement.

    def pattern(x, w):
        return graphc.relu(x @ w)

    def replacement(x, w):
        return graphc.clamp(x @ w, min=0.0)

    matches = replace_pattern(gm, pattern, replacement)

Both functions are traced (with 2x2 example inputs, or ``example_inputs``); attributes
must equal the graph's, so shape-dependent ones (reshape sizes) need matching examples. A match is
a set of graph nodes with the pattern's ops, attributes and wiring; the pattern's inputs
match any value (the same value each time an input is reused), and no matched node but
the last may be read outside the match.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir.graph import Graph
from ..ir.graph_module import GraphModule
from ..ir.node import Node
from ..trace.proxy import TensorSpec
from ..trace.tracer import trace, trace_into
from .cse import key_of


@dataclass
class Match:
    anchor: Node                      # the graph node matching the pattern's result
    nodes: list[Node]                 # every matched graph node
    inputs: dict[str, Node]           # pattern input name -> graph value


def _pattern_graph(fn, example_inputs) -> Graph:
    gm = trace(fn, *example_inputs)
    return gm.graph


def _match(p: Node, g, binding: dict, matched: dict) -> bool:
    if p.op == "placeholder":
        if p.name in binding:
            return binding[p.name] is g
        binding[p.name] = g
        return True
    if not isinstance(g, Node) or p.op != g.op or p.target is not g.target:
        return False
    if p in matched:
        return matched[p] is g
    if len(p.args) != len(g.args) or key_of(p.kwargs) != key_of(g.kwargs):
        return False
    matched[p] = g
    for pa, ga in zip(p.args, g.args):
        if isinstance(pa, Node):
            if not _match(pa, ga, binding, matched):
                return False
        elif key_of(pa) != key_of(ga):
            return False
    return True


def find_matches(gm: GraphModule, pattern: Graph) -> list[Match]:
    out_value = pattern.output_node.args[0]
    if not isinstance(out_value, Node):
        raise ValueError("replace_pattern: the pattern must return one tensor")
    matches, taken = [], set()
    for node in gm.graph.nodes:
        binding: dict = {}
        matched: dict = {}
        if not _match(out_value, node, binding, matched):
            continue
        nodes = list(matched.values())
        if any(n in taken for n in nodes):
            continue
        inner = [n for n in nodes if n is not node]
        if any(u not in nodes for n in inner for u in n.users):
            continue  # an intermediate is read outside the match: it must stay
        matches.append(Match(node, nodes, binding))
        taken.update(nodes)
    return matches


def replace_pattern(gm: GraphModule, pattern, replacement, example_inputs=None) -> list[Match]:
    """Replace every match of ``pattern`` in ``gm`` by ``replacement``; return the matches."""
    import inspect

    n_args = len(inspect.signature(pattern).parameters)
    examples = example_inputs or tuple(TensorSpec((2, 2)) for _ in range(n_args))
    pattern_graph = _pattern_graph(pattern, examples)
    names = [p.name for p in pattern_graph.placeholders]
    matches = find_matches(gm, pattern_graph)
    for m in matches:
        with gm.graph.inserting_before(m.anchor):
            new = trace_into(gm, replacement, tuple(m.inputs[n] for n in names))
        if isinstance(new, Node):
            new.meta.setdefault("location", m.anchor.meta.get("location"))
        m.anchor.replace_all_uses_with(new)
        _erase_unread(gm.graph, m.nodes)
    if matches:
        gm.graph.touch()
    return matches


def _erase_unread(graph: Graph, nodes: list[Node]) -> None:
    """Erase the nodes nobody reads, then those only they read, and so on (a walk over the
    match, not over the graph)."""
    left = dict.fromkeys(nodes)
    dead = [n for n in left if not n.users]
    while dead:
        n = dead.pop()
        inputs = n.all_input_nodes
        graph.erase_node(n)
        del left[n]
        dead += [i for i in inputs if i in left and not i.users]
