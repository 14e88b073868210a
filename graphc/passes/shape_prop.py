"""Shape propagation as a pass: recompute every node's shape, dtype and strides from the
placeholders' recorded specs, through meta dispatch (no data)."""

from __future__ import annotations

from ..ir.graph_module import GraphModule
from ..ir.shape_prop import propagate_shapes
from ..layout import reach
from ..tensor import Storage, Tensor, empty_meta


def placeholder_specs(gm: GraphModule) -> list[Tensor]:
    """Meta tensors for the placeholders: their recorded shape, dtype and strides (a
    ``view`` of a transposed or expanded input is valid or not by its strides)."""
    specs = []
    for node in gm.graph.placeholders:
        if "shape" not in node.meta:
            raise ValueError(f"placeholder %{node.name} has no shape; trace with example inputs "
                             "or TensorSpecs first")
        specs.append(_meta_spec(node.meta["shape"], node.meta["dtype"], node.meta.get("stride")))
    return specs


def _meta_spec(shape, dtype, stride) -> Tensor:
    shape = tuple(shape)
    if stride is None or len(stride) != len(shape) or 0 in shape:
        return empty_meta(shape, dtype)
    lo, hi = reach(shape, stride)
    return Tensor._make(Storage.meta(dtype, hi - lo + 1), shape, tuple(stride), -lo)


def refresh_shapes(gm: GraphModule) -> bool:
    """Recompute all meta; returns whether any shape or dtype changed."""
    before = [(n.meta.get("shape"), n.meta.get("dtype")) for n in gm.graph.nodes]
    propagate_shapes(gm, *placeholder_specs(gm))
    return before != [(n.meta.get("shape"), n.meta.get("dtype")) for n in gm.graph.nodes]
