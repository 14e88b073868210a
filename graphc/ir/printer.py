"""The printed forms of a graph: text IR and a table. Both are APIs (golden-tested).

Text IR, one value per line with its type::

    graph(%x : f32[8, 32]):
      %fc1_weight : f32[64, 32] = get_attr[fc1.weight]
      %linear : f32[8, 64] = linear(%x, %fc1_weight, %fc1_bias)
      %relu : f32[8, 64] = relu(%linear)
      return %relu

Op attributes are shown only where they differ from the op's defaults.
"""

from __future__ import annotations

import math

from ..dtype import dtype as DType
from ..ops.registry import REQUIRED
from .node import Node


def type_str(node: Node) -> str:
    """``f32[8, 64]`` from the node's meta, or '' when shape propagation has not run."""
    shape, dtype = node.meta.get("shape"), node.meta.get("dtype")
    if shape is None or dtype is None:
        return ""
    return f"{dtype.short}[{', '.join(map(str, shape))}]"


def fmt_value(v) -> str:
    """An argument as text: %node, numbers, tuples, dtypes by name."""
    if isinstance(v, Node):
        return f"%{v.name}"
    if isinstance(v, tuple):
        inner = ", ".join(fmt_value(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {fmt_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, DType):
        return v.name
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return repr(v)


def shown_kwargs(node: Node) -> dict:
    """The kwargs worth printing: for ops, those that differ from the declared defaults."""
    if node.op != "call_function":
        return dict(node.kwargs)
    defaults = node.target.attrs
    return {k: v for k, v in node.kwargs.items()
            if k not in defaults or defaults[k] is REQUIRED or not _same(v, defaults[k])}


def _same(a, b) -> bool:
    return type(a) is type(b) and a == b


def call_text(node: Node) -> str:
    args = [fmt_value(a) for a in node.args]
    args += [f"{k}={fmt_value(v)}" for k, v in shown_kwargs(node).items()]
    joined = ", ".join(args)
    if node.op == "call_function":
        return f"{node.target.name}({joined})"
    if node.op == "call_method":
        return f"call_method[{node.target}]({joined})"
    if node.op == "call_module":
        return f"call_module[{node.target}]({joined})"
    if node.op == "get_attr":
        return f"get_attr[{node.target}]"
    return f"placeholder[{node.target}]"


def format_node(node: Node, locations: bool = False) -> str:
    if node.op == "output":
        return f"return {fmt_value(node.args[0])}"
    t = type_str(node)
    line = f"%{node.name}{' : ' + t if t else ''} = {call_text(node)}"
    if locations and node.meta.get("location"):
        line += f"  # {node.meta['location']}"
    return line


def format_graph(graph, locations: bool = False) -> str:
    params = []
    for n in graph.placeholders:
        t = type_str(n)
        params.append(f"%{n.name}{' : ' + t if t else ''}")
    lines = [f"graph({', '.join(params)}):"]
    lines += ["  " + format_node(n, locations) for n in graph.nodes if n.op != "placeholder"]
    return "\n".join(lines)


def tabular(graph) -> str:
    """One row per node: opcode, name, target, args, kwargs, type, location."""
    header = ("opcode", "name", "target", "args", "kwargs", "type", "location")
    rows = [header]
    for n in graph.nodes:
        target = n.target.name if n.op == "call_function" else str(n.target)
        rows.append((n.op, n.name, target, fmt_value(tuple(n.args)),
                     fmt_value(shown_kwargs(n)), type_str(n), n.meta.get("location", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
