"""Graphs outside graphc: a networkx DiGraph, DOT text, and a picture through graphviz."""

from __future__ import annotations

import shutil
import subprocess

import networkx as nx

from .printer import call_text, type_str


def to_networkx(graph) -> nx.DiGraph:
    """One networkx node per graph node (keyed by name), an edge per input it reads."""
    g = nx.DiGraph()
    for n in graph.nodes:
        g.add_node(n.name, opcode=n.op,
                   target=n.target.name if n.op == "call_function" else str(n.target),
                   shape=n.meta.get("shape"), dtype=getattr(n.meta.get("dtype"), "name", None),
                   location=n.meta.get("location"))
    for n in graph.nodes:
        for i in n.all_input_nodes:
            g.add_edge(i.name, n.name)
    return g


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _quote(text: str) -> str:
    return '"' + _escape(text) + '"'


_SHAPES = {"placeholder": "ellipse", "output": "ellipse", "get_attr": "note"}


def to_dot(graph, name: str = "graph") -> str:
    """The graph in graphviz's DOT language (one box per node, labelled with its IR)."""
    lines = [f"digraph {_quote(name)} {{", '  node [shape=box, fontname="monospace"];']
    for n in graph.nodes:
        parts = ["return" if n.op == "output" else f"%{n.name} = {call_text(n)}"]
        if type_str(n):
            parts.append(type_str(n))
        label = "\\n".join(_escape(p) for p in parts)  # DOT's line break inside a label
        lines.append(f'  {_quote(n.name)} [label="{label}", shape={_SHAPES.get(n.op, "box")}];')
    for n in graph.nodes:
        for i in n.all_input_nodes:
            lines.append(f"  {_quote(i.name)} -> {_quote(n.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


class GraphvizMissing(RuntimeError):
    """graphviz's ``dot`` program is not installed."""


def render(graph, path: str, fmt: str | None = None) -> str:
    """Draw the graph to ``path`` (SVG or PNG, from the extension) with graphviz's ``dot``."""
    fmt = fmt or path.rsplit(".", 1)[-1].lower()
    if fmt not in ("svg", "png", "pdf"):
        raise ValueError(f"render: format must be svg, png or pdf, got {fmt!r}")
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing("render: graphviz's `dot` program is not installed (on Debian: "
                              "apt-get install graphviz); to_dot() gives the DOT text to draw "
                              "elsewhere")
    subprocess.run([dot, f"-T{fmt}", "-o", path], input=to_dot(graph).encode(), check=True,
                   capture_output=True, timeout=60)
    return path
