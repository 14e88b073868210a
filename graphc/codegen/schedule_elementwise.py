"""Elementwise kernels: one loop nest over the output's shape, dims merged where every
access allows (often a single loop), transposed accesses tiled, the outermost loop split
across threads. The same stores make the epilogues of matmul and reduction kernels."""

from __future__ import annotations

from ..ir.fused import FusedKernel
from ..ir.node import Node
from .kernel_ir import Kernel, Load, Ref, Store, numel
from .loop_space import Space, nest, tile_transposed
from .subgraph import Scratch, SubGraph, Values


class ElementwiseValues(Values):
    """Values at one element of the space: an input is read at the loops' position, or at
    the flat position unravelled into the shape a reshape inside the kernel reads it as."""

    where = "inside an elementwise kernel"
    views = True
    keep_reads = False

    def __init__(self, sub: SubGraph, space: Space):
        super().__init__(sub)
        self.space = space

    def read(self, ref: Ref, use_shape: tuple) -> Load:
        ld = Load(ref, None)
        self.space.at(ld, ref.offset, use_shape, ref.broadcast(use_shape))
        return ld


def elementwise_stores(sub: SubGraph, domain: tuple, outputs: list[Node] | None = None,
                       given: dict | None = None) -> tuple[list[Store], Space]:
    """Stores of ``outputs`` (default: all the kernel's) over ``domain``, and their space;
    ``given`` holds some nodes' values already (a matmul's result or a reduced value, read
    back from memory)."""
    space = Space(domain)
    values = ElementwiseValues(sub, space)
    values.memo.update(given or {})
    stores = []
    for out in sub.outputs if outputs is None else outputs:
        ref, shape = sub.out_refs[out], sub.shape(out)
        st = Store(ref, None, values.of(out, shape))
        space.at(st, ref.offset, shape, ref.broadcast(shape))
        stores.append(st)
    return stores, space


def schedule_elementwise(fk: FusedKernel, in_refs: list[Ref], out_refs: list[Ref],
                         scratch: Scratch | None = None) -> Kernel:
    """The kernel's loop nest; with ``scratch``, an input viewed in a way no strides
    express (a reshape of a slice) is copied into scratch first (see ``SubGraph``)."""
    sub = SubGraph(fk, in_refs, out_refs, scratch)
    domain = sub.shape(sub.outputs[0])
    stores, space = elementwise_stores(sub, domain)
    vars_ = tile_transposed(space, space.finalize())
    return Kernel(fk.name, fk.kind, list(in_refs), list(out_refs),
                  sub.copies + nest(vars_, stores), work=numel(domain))
