"""Shape propagation: run a graph on meta tensors and record each value's shape, dtype
and strides in ``node.meta`` — no data, no compute."""

from __future__ import annotations

from typing import Any

from ..layout import reach
from ..tensor import Storage, Tensor, empty_meta
from .interpreter import Interpreter
from .node import Node


def as_meta(x) -> Any:
    """A meta tensor with x's shape, dtype and strides (specs and meta tensors pass
    through). Its storage is x's own extent, not the storage around x: a program reads
    an input through the input's elements only, and a later call's input may sit in a
    smaller storage (so ``as_strided`` reaching past x is refused, and runs eagerly)."""
    if isinstance(x, Tensor):
        if x.is_meta:
            return x
        shape, stride = x._shape, x._stride
        if 0 in shape:
            return empty_meta(shape, x.dtype)
        lo, hi = reach(shape, stride)
        return Tensor._make(Storage.meta(x.dtype, hi - lo + 1), shape, stride, -lo)
    spec_to_meta = getattr(x, "to_meta", None)
    return spec_to_meta() if spec_to_meta is not None else x


def record_meta(node: Node, value) -> None:
    if isinstance(value, Tensor):
        node.meta["shape"] = tuple(value.shape)
        node.meta["dtype"] = value.dtype
        node.meta["stride"] = value.stride()


class ShapeProp(Interpreter):
    """``ShapeProp(gm).run(*inputs_or_specs)`` fills ``shape``/``dtype``/``stride`` meta."""

    def run_node(self, node: Node) -> Any:
        value = super().run_node(node)
        record_meta(node, value)
        return value

    def get_attr(self, node: Node, args, kwargs) -> Any:
        return as_meta(super().get_attr(node, args, kwargs))

    def call_function(self, node: Node, args, kwargs) -> Any:
        from ..ops.registry import Flag

        if Flag.FACTORY in node.target.flags:  # make the tensor on the meta device
            kwargs = {**kwargs, "device": "meta"}
        return super().call_function(node, args, kwargs)

    def call_module(self, node: Node, args, kwargs) -> Any:
        from ..autograd import no_grad

        with no_grad():
            return super().call_module(node, args, kwargs)


def propagate_shapes(gm, *inputs) -> None:
    """Record every node's shape and dtype for inputs given as tensors, meta tensors or
    ``TensorSpec``s (only their shapes and dtypes are used)."""
    from ..autograd import no_grad

    with no_grad():
        ShapeProp(gm).run(*(as_meta(x) for x in inputs))
