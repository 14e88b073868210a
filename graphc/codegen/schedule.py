"""Scheduling: a FusedKernel's sub-graph and the layouts of its inputs and outputs become
a loop nest in kernel IR. One module per kernel kind, over a shared loop space
(``loop_space``) and one builder of expressions (``subgraph.Values``):

- elementwise (``schedule_elementwise``): one loop nest over the output's shape, dims
  merged where every access allows (often a single loop), the outermost loop split
  across threads;
- reductions (``schedule_reduce``): over the innermost dims, a parallel loop over rows
  with one pass per level of dependent reductions; over other dims, accumulation into a
  buffer in memory order, then an epilogue loop over the reduced values;
- matmul (``schedule_matmul``): BLAS gemm per batch position (else a dot-product loop),
  then the epilogue as an elementwise loop;
- data movement (``schedule_copy``): copy-backs, reshape copies, view_scatter, pad, unfold.

A kernel that cannot be scheduled raises ``Unsupported``; the program then runs that
kernel through its numpy kernels and lists it as a fallback.
"""

from __future__ import annotations

from ..ir.fused import FusedKernel
from .kernel_ir import Kernel, Ref
from .schedule_elementwise import schedule_elementwise
from .schedule_matmul import Matmul
from .schedule_reduce import Accumulation, RowReduction
from .subgraph import Scratch


def schedule(fk: FusedKernel, in_refs: list[Ref], out_refs: list[Ref], scratch: Scratch,
             use_blas: bool = True, gemm_threads: int = 0) -> Kernel:
    """The kernel IR for one fused kernel (raises Unsupported when there is none);
    ``gemm_threads``: see ``Matmul``."""
    if fk.kind == "elementwise":
        return schedule_elementwise(fk, in_refs, out_refs, scratch)
    if fk.kind != "reduction":
        return Matmul(fk, in_refs, out_refs, scratch, use_blas, gemm_threads).kernel()
    domain, reduced = tuple(fk.domain), tuple(fk.reduced_dims)
    if reduced and _innermost_reduced(domain, reduced):
        return RowReduction(fk, in_refs, out_refs, scratch).kernel()
    return Accumulation(fk, in_refs, out_refs, scratch).kernel()


def _innermost_reduced(domain: tuple, reduced: tuple) -> bool:
    """Whether the innermost dim (of more than one element) is reduced: then each kept
    position's values are runs along that dim, reduced in registers, with kept dims
    outside (batch_norm's (N, C, H, W) over (0, 2, 3)); else the kept dims are the
    contiguous ones, and the inner loop runs over them accumulating into memory."""
    inner = [d for d, n in enumerate(domain) if not (type(n) is int and n == 1)]
    return bool(inner) and inner[-1] in reduced
