"""Copy kernels: nodes that only move data (a copy-back into an input or weight, a reshape
that needs a copy, view_scatter, pad, unfold) as copy loops, no arithmetic."""

from __future__ import annotations

from ..ir.node import Node
from ..layout import same_shape
from ..ops.conv import _pad_widths, _window_args
from ..symbolic import is_symbolic
from ..tensor import Storage, Tensor
from .kernel_ir import Const, Indirect, Kernel, Load, Ref, Store, contiguous, numel
from .loop_space import Space, copy_nest, nest
from .subgraph import Unsupported

def _name(shape: tuple, n: Node) -> str:
    return f"C_{'_'.join(map(str, shape))}_{n.name}"


def schedule_copy_back(n: Node, src: Ref, dst: Ref) -> Kernel:
    """A copy-back (``copy_(input, value)`` at the end of a functional graph): a copy loop
    into the input's or weight's own memory, in its layout."""
    if src.slot == dst.slot:  # the value reads the memory it overwrites (x.copy_(x.t()))
        raise Unsupported("the copied value is read from the memory it overwrites")
    shape = tuple(n.meta["shape"])
    return Kernel(_name(shape, n), "copy", [src], [dst], copy_nest(src, dst.offset, dst, shape),
                  work=numel(shape))


def schedule_reshape_copy(n: Node, src: Ref, out: Ref) -> Kernel:
    """A reshape that needs a copy (no view of the layout exists): the elements in
    row-major order into out, which is contiguous."""
    shape = tuple(src.shape)
    body = copy_nest(src, out.offset, contiguous(out.slot, shape, out.dtype), shape)
    return Kernel(_name(shape, n), "copy", [src], [out], body, work=numel(shape))


def schedule_scatter(n: Node, base: Ref, src: Ref, out: Ref) -> Kernel:
    """view_scatter as two copy loops: base into out, then src into out's window."""
    size, stride = tuple(n.kwargs["size"]), tuple(n.kwargs["stride"])
    if src.dtype is not out.dtype or base.dtype is not out.dtype:
        raise Unsupported("view_scatter with a conversion")
    if not same_shape(tuple(src.shape), size):
        raise Unsupported("view_scatter of a broadcast source")
    shape = tuple(n.meta["shape"])
    window = Ref(out.slot, out.offset, size, stride, out.dtype)
    body = copy_nest(base, out.offset, out, shape) + \
        copy_nest(src, out.offset + n.kwargs["storage_offset"], window, size)
    return Kernel(_name(shape, n), "copy", [base, src], [out], body,
                  work=numel(shape) + numel(size))


def schedule_gather(n: Node, src: Ref, out: Ref) -> Kernel:
    """pad and unfold (im2col) as copy loops (Unsupported for another op)."""
    if n.target.name not in GATHERS:
        raise Unsupported(f"{n.target.name} has no LLVM lowering")
    out_shape = tuple(n.meta["shape"])
    return Kernel(_name(out_shape, n), "copy", [src], [out], GATHERS[n.target.name](n, src, out),
                  work=numel(out_shape))


def _unfold(n: Node, src: Ref, out: Ref) -> list:
    """A copy of a strided window view of the input: no arithmetic, no bounds checks."""
    x = Tensor._make(Storage.meta(src.dtype, 1), src.shape, src.strides)
    w = {"dilation": 1, "padding": 0, "stride": 1,
         **dict(zip(("kernel_size", "dilation", "padding", "stride"), n.args[1:])), **n.kwargs}
    k, d, p, s, (oh, ow) = _window_args("unfold", x, w["kernel_size"], w["dilation"],
                                        w["padding"], w["stride"])
    if p != (0, 0):
        raise Unsupported("unfold with padding (pad first)")
    sn, sc, sh, sw = src.strides
    domain = (src.shape[0], src.shape[1], k[0], k[1], oh, ow)
    window = Ref(src.slot, src.offset, domain,
                 (sn, sc, d[0] * sh, d[1] * sw, s[0] * sh, s[1] * sw), src.dtype)
    return copy_nest(window, out.offset, contiguous(out.slot, domain, out.dtype), domain)


def _pad(n: Node, src: Ref, out: Ref) -> list:
    """Fill the border, then copy the inside: each element is written once."""
    w = {"pad": (), "value": 0.0, **dict(zip(("pad", "value"), n.args[1:])), **n.kwargs}
    widths = _pad_widths("pad", len(src.shape), w["pad"])
    value = w["value"]
    value = Const(value if out.dtype.is_floating_point else int(value), out.dtype)
    shape = tuple(n.meta["shape"])
    fills = []
    for k, (start, extents) in enumerate(_border(shape, widths)):
        fill = Store(out, None, value)
        space = Space(extents)
        space.index(fill, "index", out.offset + sum(a * st for a, st in zip(start, out.strides)),
                    list(out.strides))
        fills += nest(space.finalize(f"f{k}_"), [fill])
    inside = out.offset + sum(lo * st for (lo, _), st in zip(widths, out.strides))
    return fills + copy_nest(src, inside, out, src.shape)


def _border(shape: tuple, widths: list) -> list[tuple[tuple, tuple]]:
    """The border of a padded ``shape`` as boxes (start, extents) that do not overlap: for
    each dim, its low and high widths, over the inside of the dims before it and all of
    the dims after it. One box, the whole shape, where a size is symbolic."""
    if is_symbolic((shape, widths)):
        return [((0,) * len(shape), shape)]
    boxes = []
    for d, (lo, hi) in enumerate(widths):
        inside = [(a, n - a - b) for (a, b), n in zip(widths[:d], shape[:d])]
        after = [(0, n) for n in shape[d + 1:]]
        for first, size in ((0, lo), (shape[d] - hi, hi)):
            dims = inside + [(first, size)] + after
            if size and all(e for _, e in dims):
                boxes.append((tuple(a for a, _ in dims), tuple(e for _, e in dims)))
    return boxes


def schedule_indexed(n: Node, src: Ref, index: Ref, out: Ref, site: int) -> Kernel:
    """gather and index_select as copy loops over the output: each element's index is
    loaded, checked against its dim (an error naming the op otherwise), and the source
    element at it copied."""
    shape = tuple(n.meta["shape"])
    if len(src.shape) == 0 or len(shape) != len(src.shape):
        raise Unsupported(f"{n.target.name} of this shape")
    d = n.kwargs["dim"] % len(src.shape)
    if n.target.name == "gather":
        index_strides = list(index.broadcast(shape))
    else:  # index_select: a 1-d index along dim
        index_strides = [index.strides[0] if k == d and index.shape else 0
                         for k in range(len(shape))]
    space = Space(shape)
    k = Load(index, None)
    space.index(k, "index", index.offset, index_strides)
    value = Load(src, None)
    space.index(value, "index", src.offset, [0 if j == d else st
                                            for j, st in enumerate(src.strides)])
    store = Store(out, None, value)
    space.index(store, "index", out.offset, list(out.strides))
    loops = space.finalize("g")
    value.index = Indirect(value.index, k, src.strides[d], src.shape[d], site)
    return Kernel(_name(shape, n), "copy", [src, index], [out], nest(loops, [store]),
                  work=numel(shape))


# the index maps of the ops the op table marks ``gather`` (checked when the backend loads)
GATHERS = {"unfold": _unfold, "pad": _pad}
