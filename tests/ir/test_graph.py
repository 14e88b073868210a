"""Graph, Node, GraphModule and Interpreter built by hand: editing, invariants, printing."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import graphc
from graphc.ir import Graph, GraphError, GraphModule, Interpreter, propagate_shapes
from graphc.ops import OPS
from graphc.trace import TensorSpec


def small_graph():
    """y = relu(x * w) + x, returning (y, sum(y))"""
    g = Graph()
    x = g.placeholder("x")
    w = g.get_attr("w")
    m = g.call_function(OPS.mul, (x, w))
    r = g.call_function(OPS.relu, (m,))
    y = g.call_function(OPS.add, (r, x))
    s = g.call_function(OPS.sum, (y,), {"dim": (1,), "keepdim": False, "dtype": None})
    g.output((y, s))
    return g, dict(x=x, w=w, m=m, r=r, y=y, s=s)


def test_nodes_know_their_users_and_inputs():
    g, n = small_graph()
    assert list(n["x"].users) == [n["m"], n["y"]]
    assert n["y"].all_input_nodes == [n["r"], n["x"]]
    assert [node.name for node in g.nodes] == ["x", "w", "mul", "relu", "add", "sum", "output"]
    g.lint()


def test_names_are_unique_and_readable():
    g = Graph()
    x = g.placeholder("x")
    a = g.call_function(OPS.relu, (x,))
    b = g.call_function(OPS.relu, (a,))
    c = g.call_function(OPS.relu, (b,))
    assert (a.name, b.name, c.name) == ("relu", "relu_1", "relu_2")
    assert g.placeholder("self").name == "_self"  # names the generated code uses are avoided
    assert g.create_node("placeholder", "class", name="class").name == "_class"


def test_insert_replace_and_erase():
    g, n = small_graph()
    with g.inserting_after(n["r"]):
        neg = g.call_function(OPS.neg, (n["r"],))
    assert n["r"].next is neg and neg.prev is n["r"]
    changed = n["r"].replace_all_uses_with(neg)
    neg.args = (n["r"],)  # the new node itself still reads relu
    assert n["y"] in changed and n["y"].args[0] is neg
    g.lint()
    with pytest.raises(GraphError, match="still used by"):
        g.erase_node(n["r"])
    with g.inserting_before(n["y"]):
        dead = g.call_function(OPS.exp, (n["x"],))
    g.erase_node(dead)
    assert dead not in g.nodes and dead not in n["x"].users
    g.lint()


@pytest.mark.parametrize("break_it, message", [
    (lambda g, n: g.move_before(n["y"], n["m"]), "before it is defined"),
    (lambda g, n: n["x"].users.pop(n["m"]), "does not list it as a user"),
    (lambda g, n: n["r"].users.__setitem__(n["s"], None), "which does not read it"),
    (lambda g, n: g.output(n["y"]), "exactly one output"),
    (lambda g, n: setattr(n["m"], "target", "mul"), "not an op of the op table"),
    (lambda g, n: setattr(n["r"], "name", "mul"), "used twice"),
    (lambda g, n: g.call_function(OPS.exp, (n["x"],)), "must be the last"),
])
def test_lint_finds_each_broken_invariant(break_it, message):
    g, n = small_graph()
    break_it(g, n)
    with pytest.raises(GraphError, match=message):
        g.lint()


def test_lint_checks_attributes_and_meta_against_the_owner():
    g, n = small_graph()
    gm = GraphModule({"w": graphc.ones(3)}, g)
    g.lint(gm)
    n["w"].target = "missing"
    with pytest.raises(GraphError, match="no attribute 'missing'"):
        g.lint(gm)
    g2, _ = small_graph()
    with pytest.raises(GraphError, match="no shape/dtype"):
        g2.lint(require_meta=True)


def test_graph_module_runs_and_regenerates_its_code():
    g, n = small_graph()
    w = graphc.tensor([1.0, -1.0, 2.0])
    gm = GraphModule({"w": w}, g)
    x = graphc.tensor([[1.0, 2.0, 3.0]])
    y, s = gm(x)
    expected = (x * w).relu() + x
    assert y.tolist() == expected.tolist() and s.tolist() == expected.sum(1).tolist()
    assert "relu = ops.relu(mul)" in gm.code
    n["r"].target = OPS.neg  # a direct edit: tell the graph
    g.touch()
    y2, _ = gm(x)
    assert y2.tolist() == (-(x * w) + x).tolist() and "ops.neg(mul)" in gm.code
    w.mul_(2)  # the module holds the tensor itself: in-place updates are seen
    assert gm(x)[0].tolist() == (-(x * w) + x).tolist()
    with pytest.raises(TypeError, match="takes 1 inputs"):
        gm(x, x)


def test_interpreter_equals_the_generated_code_and_can_be_overridden():
    g, _ = small_graph()
    gm = GraphModule({"w": graphc.tensor([1.0, -1.0, 2.0])}, g)
    x = graphc.randn(2, 3)
    a, b = Interpreter(gm).run(x), gm(x)
    assert all(np.array_equal(p.numpy(), q.numpy()) for p, q in zip(a, b))

    class Counting(Interpreter):
        seen: list = []

        def call_function(self, node, args, kwargs):
            self.seen.append(node.target.name)
            return super().call_function(node, args, kwargs)

    Counting(gm).run(x)
    assert Counting.seen == ["mul", "relu", "add", "sum"]


def test_shape_propagation_from_specs_computes_nothing():
    g, n = small_graph()
    gm = GraphModule({"w": graphc.ones(5)}, g)
    propagate_shapes(gm, TensorSpec((4, 5), graphc.float64))
    assert n["y"].meta["shape"] == (4, 5) and n["y"].meta["dtype"] is graphc.float64
    assert n["s"].meta["shape"] == (4,)
    g.lint(gm, require_meta=True)
    assert str(g).splitlines()[0] == "graph(%x : f64[4, 5]):"


def test_copy_is_deep_and_independent():
    g, n = small_graph()
    g2, env = g.copy()
    assert [m.name for m in g2.nodes] == [m.name for m in g.nodes]
    assert env[n["y"]].args[0] is env[n["r"]] and env[n["y"]] is not n["y"]
    env[n["r"]].target = OPS.neg
    assert n["r"].target is OPS.relu
    assert str(copy.deepcopy(g)) == str(g)
    g2.lint()


def test_topological_sort_repairs_order():
    g, n = small_graph()
    g.move_before(n["m"], g.output_node)
    with pytest.raises(GraphError):
        g.lint()
    g.topological_sort()
    g.lint()
