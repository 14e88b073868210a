"""Shape propagation as a pass: recompute every node's shape, dtype and strides from the
placeholders' recorded specs, through meta dispatch (no data)."""

from __future__ import annotations

from ..ir.graph_module import GraphModule
from ..ir.shape_prop import propagate_shapes
from ..tensor import Tensor, empty_meta


def placeholder_specs(gm: GraphModule) -> list[Tensor]:
    specs = []
    for node in gm.graph.placeholders:
        if "shape" not in node.meta:
            raise ValueError(f"placeholder %{node.name} has no shape; trace with example inputs "
                             "or TensorSpecs first")
        specs.append(empty_meta(node.meta["shape"], node.meta["dtype"]))
    return specs


def refresh_shapes(gm: GraphModule) -> bool:
    """Recompute all meta; returns whether any shape or dtype changed."""
    before = [(n.meta.get("shape"), n.meta.get("dtype")) for n in gm.graph.nodes]
    propagate_shapes(gm, *placeholder_specs(gm))
    return before != [(n.meta.get("shape"), n.meta.get("dtype")) for n in gm.graph.nodes]
