"""The graph IR: Node, Graph, GraphModule, Interpreter, printing, shape propagation, export."""

from .export import GraphvizMissing, render, to_dot, to_networkx
from .graph import Graph, GraphError
from .graph_module import GraphModule
from .interpreter import Interpreter
from .node import OPCODES, Node, map_arg
from .printer import format_graph, tabular
from .shape_prop import ShapeProp, propagate_shapes

__all__ = ["Graph", "GraphError", "GraphModule", "Interpreter", "Node", "OPCODES", "map_arg",
           "format_graph", "tabular", "ShapeProp", "propagate_shapes", "to_networkx", "to_dot",
           "render", "GraphvizMissing"]
