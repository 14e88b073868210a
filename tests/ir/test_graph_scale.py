"""The graph's linked list: edits anywhere keep the order, membership and lint right after
many edits, iteration survives erasure, and the Interpreter drops values after their last
use. (How the time grows with the graph's size is measured by benchmarks/graph_scale.py.)"""

from __future__ import annotations

import random
import weakref

import numpy as np
import pytest

import graphc
from graphc.ir import Graph, GraphError, GraphModule, Interpreter
from graphc.ops import OPS
from graphc.passes.dce import dce


def chain(length: int, live: bool = True) -> tuple[Graph, list]:
    """x -> neg -> neg -> ... ; the output reads the last neg (or only x: a dead chain)."""
    g = Graph()
    x = g.placeholder("x")
    nodes = [x]
    for _ in range(length):
        nodes.append(g.call_function(OPS.neg, (nodes[-1],)))
    g.output(nodes[-1] if live else x)
    return g, nodes


def names(g: Graph) -> list[str]:
    return [n.name for n in g.nodes]


def test_many_random_edits_match_a_list_model():
    """Inserts before/after random nodes and erases of unread nodes, checked after every
    edit against a plain list doing the same."""
    rng = random.Random(0)
    g, nodes = chain(20)
    model = list(g.nodes)
    erased = []
    for step in range(1500):
        anchor = rng.choice(model[1:-1])  # not the placeholder, not the output
        if rng.random() < 0.55:
            at = model.index(anchor)
            if rng.random() < 0.5:
                with g.inserting_before(anchor):
                    new = g.call_function(OPS.exp, (model[0],))
                model.insert(at, new)
            else:
                with g.inserting_after(anchor):
                    new = g.call_function(OPS.exp, (model[0],))
                model.insert(at + 1, new)
        else:
            dead = [n for n in model[1:-1] if not n.users]
            if not dead:
                continue
            victim = rng.choice(dead)
            g.erase_node(victim)
            model.remove(victim)
            erased.append(victim)
        if step % 100 == 0:
            g.lint()
        assert len(g) == len(g.nodes) == len(model)
    assert list(g.nodes) == model and list(reversed(g.nodes)) == model[::-1]
    assert all(n in g.nodes for n in model) and not any(n in g.nodes for n in erased)
    assert g.nodes[0] is model[0] and g.nodes[-1] is model[-1] and g.nodes[len(model) // 2] is \
        model[len(model) // 2] and g.nodes[-3] is model[-3] and g.nodes[2:5] == model[2:5]
    assert g.nodes.index(model[7]) == 7
    g.lint()


@pytest.mark.parametrize("where", ["head", "middle", "tail"])
def test_inserting_before_and_after_keep_creation_order(where):
    g, nodes = chain(4)  # x, neg, neg_1, neg_2, neg_3, output
    anchor = {"head": nodes[0], "middle": nodes[2], "tail": nodes[-1]}[where]
    before = names(g)
    at = before.index(anchor.name)
    with g.inserting_after(anchor) as created:
        a = g.call_function(OPS.relu, (anchor,))
        b = g.call_function(OPS.exp, (a,))
    assert created == [a, b]
    assert names(g) == before[:at + 1] + [a.name, b.name] + before[at + 1:]
    assert anchor.next is a and a.next is b and b.prev is a
    with g.inserting_before(anchor) as created:
        c = g.call_function(OPS.relu, (nodes[0],))
        d = g.call_function(OPS.exp, (c,))
    assert created == [c, d]
    assert names(g) == before[:at] + [c.name, d.name, anchor.name, a.name, b.name] + before[at + 1:]
    for n in (b, a, d, c):
        g.erase_node(n)
    assert names(g) == before


def test_new_nodes_append_at_the_end_after_a_block_and_nested_blocks_report_theirs():
    g, nodes = chain(2, live=False)
    out = g.output_node
    with g.inserting_before(out) as outer:
        a = g.call_function(OPS.relu, (nodes[0],))
        with g.inserting_after(nodes[1]) as inner:
            b = g.call_function(OPS.exp, (nodes[1],))
        c = g.call_function(OPS.exp, (a,))
    assert inner == [b] and outer == [a, b, c]
    assert names(g) == ["x", "neg", b.name, "neg_1", a.name, c.name, "output"]
    g.erase_node(out)
    late = g.call_function(OPS.neg, (c,))
    assert g.nodes[-1] is late  # no block: appended
    g.output(late)
    g.lint()


def test_refused_edits_name_the_node():
    g, nodes = chain(3)
    other, other_nodes = chain(1)
    with pytest.raises(GraphError, match="not a node of this graph"):
        g.erase_node(other_nodes[1])
    dead = g.call_function(OPS.exp, (nodes[0],))
    g.erase_node(dead)
    with pytest.raises(GraphError, match="not a node of this graph"):
        g.erase_node(dead)  # erased twice
    with pytest.raises(GraphError, match="not a node of this graph"):
        with g.inserting_after(dead):
            pass
    with pytest.raises(GraphError, match="erased while inserting"):
        with g.inserting_before(nodes[3]):
            spare = g.call_function(OPS.exp, (nodes[0],))
            nodes[3].replace_all_uses_with(spare)
            g.erase_node(nodes[3])
            g.call_function(OPS.exp, (nodes[0],))


def test_erasing_while_iterating_forwards_and_backwards():
    g, nodes = chain(30, live=False)
    seen = []
    for n in g.nodes:  # erase the node we stand on and the next one when it is unread
        seen.append(n)
        if n.op == "call_function" and not n.users:
            nxt = n.next
            g.erase_node(n)
            if nxt is not None and nxt.op == "call_function" and not nxt.users:
                g.erase_node(nxt)
    assert seen[-1].op == "output" and len(set(seen)) == len(seen)
    g.lint()
    g, nodes = chain(30, live=False)
    walked = [n.name for n in reversed(g.nodes)]
    for n in reversed(g.nodes):  # dce's walk: each erase frees the node before it
        if n.op == "call_function" and not n.users:
            g.erase_node(n)
    assert names(g) == ["x", "output"] and walked[0] == "output" and walked[-1] == "x"
    g, nodes = chain(10)
    visited = []
    for n in g:  # iterating the graph itself, erasing nodes further on
        visited.append(n.name)
        if n is nodes[2]:
            g.output_node.args = (nodes[3],)
            for m in reversed(nodes[4:]):
                g.erase_node(m)
    assert visited == ["x", "neg", "neg_1", "neg_2", "output"] == names(g)
    g.lint()


def test_lint_catches_users_outside_the_graph_and_broken_links():
    g, nodes = chain(3)
    elsewhere = Graph()
    elsewhere.call_function(OPS.neg, (nodes[1],))  # a node of another graph reads neg
    with pytest.raises(GraphError, match="lists %neg as a user, which does not read it"):
        g.lint()

    g, nodes = chain(3)
    nodes[2]._next = nodes[3]._next  # the list skips a node the graph still counts
    with pytest.raises(GraphError, match="list of nodes is broken"):
        g.lint()


def test_move_and_topological_sort_of_a_long_chain():
    g, nodes = chain(5000)
    for n in nodes[1:-1:2]:  # every other node to the front: inputs after their readers
        g.move_before(n, g.nodes[1])
    with pytest.raises(GraphError, match="before it is defined"):
        g.lint()
    g.topological_sort()  # deep: no recursion
    assert list(g.nodes) == nodes + [g.output_node]
    g.lint()
    before = list(g.nodes)
    g.topological_sort()  # stable: a sorted graph stays as it is
    assert list(g.nodes) == before


def test_dce_of_a_long_dead_chain_and_placeholders_after_edits():
    g, nodes = chain(10_000, live=False)
    gm = GraphModule({}, g)
    assert dce(gm)
    assert names(g) == ["x", "output"] and not any(n in g.nodes for n in nodes[1:])
    g.lint()
    with g.inserting_before(g.output_node):
        y = g.placeholder("y")
    assert g.placeholders == [nodes[0], y]
    g.erase_node(y)
    assert g.placeholders == [nodes[0]]


class _Watching(Interpreter):
    """Records, before each node runs, whether the chain's first value is still alive and
    how many values the interpreter holds."""

    def __init__(self, gm, **kwargs):
        super().__init__(gm, **kwargs)
        self.first = None
        self.alive, self.held = [], []

    def run_node(self, node):
        self.alive.append(self.first is not None and self.first() is not None)
        self.held.append(len(self.env))
        value = super().run_node(node)
        if self.first is None and node.op == "call_function":
            self.first = weakref.ref(value._storage)
        return value


def test_the_interpreter_drops_each_value_after_its_last_use():
    g, nodes = chain(50)
    gm = GraphModule({}, g)
    x = graphc.randn(1000)
    keeping = _Watching(gm, free_values=False)
    expected = keeping.run(x)
    watching = _Watching(gm)
    got = watching.run(x)
    assert (got.numpy() == expected.numpy()).all()
    # the first intermediate dies as soon as the second neg has read it
    assert watching.alive[2] and not any(watching.alive[3:]) and max(watching.held) == 1
    assert all(keeping.alive[2:]) and max(keeping.held) == 51


def test_values_read_late_stay_until_their_last_reader():
    g = Graph()
    x = g.placeholder("x")
    a = g.call_function(OPS.exp, (x,))
    b = a
    for _ in range(4):
        b = g.call_function(OPS.neg, (b,))
    g.output(g.call_function(OPS.add, (a, b)))  # a is read again at the very end
    gm = GraphModule({}, g)
    x = graphc.randn(3)
    w = _Watching(gm)
    assert np.allclose(w.run(x).numpy(), 2 * np.exp(x.numpy()))
    assert all(w.alive[2:7]) and not w.alive[7] and max(w.held) == 2  # (7: the output)
