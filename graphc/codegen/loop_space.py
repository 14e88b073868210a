"""Loop spaces: the dims of a loop nest, the accesses that index them, and the loops.

A scheduler registers each access (a Load, a Store, a Gemm's operands) with the strides
it walks over the space's dims; ``finalize`` then merges the dims every access allows to
merge (often all of them, into one loop) and gives each access its index over the
remaining loop variables.

    space = Space((64, 128))
    space.index(load, "index", ref.offset, ref.broadcast((64, 128)))
    body = nest(space.finalize(), [store])     # parallel for i0 in 0..8192: ...
"""

from __future__ import annotations

from ..layout import same_shape
from ..symbolic import is_symbolic
from .kernel_ir import Affine, Load, Loop, Ref, Store, Unravel, Var, merge_dims, numel


class _Pending:
    """An index being built: strides over the space's dims (finalised after merging)."""

    def __init__(self, offset: int, strides: list[int], unravel=None):
        self.offset, self.strides, self.unravel = offset, list(strides), unravel


class Space:
    """The dims of a loop nest; accesses register stride vectors, then dims merge. Dims of
    different ``groups`` never merge (a row reduction's row dims and column dims)."""

    def __init__(self, extents: tuple, groups: list[int] | None = None):
        self.extents = tuple(extents)
        self.groups = groups or [0] * len(extents)
        self.pending: list[tuple[object, str, _Pending]] = []
        self.vars: list[Var] = []
        self.var_groups: list[int] = []

    def index(self, holder, attr: str, offset: int, strides) -> None:
        """``holder.attr`` becomes ``offset + Σ var·stride`` over this space's dims."""
        self._add(holder, attr, _Pending(offset, strides))

    def unravel_index(self, holder, attr: str, shape: tuple, strides: tuple, offset: int) -> None:
        """``holder.attr`` reads element ``offset + Σ j·strides``, j the loops' flat
        position split along ``shape`` (a reshape inside a kernel)."""
        flat = [numel(self.extents[k + 1:]) for k in range(len(self.extents))]
        self._add(holder, attr, _Pending(0, flat, unravel=(tuple(shape), tuple(strides), offset)))

    def at(self, holder, offset: int, shape: tuple, strides) -> None:
        """``holder.index`` at the element of ``shape`` the loops are at: directly when
        ``shape`` is this space's, else through the flat position."""
        if same_shape(shape, self.extents):
            self.index(holder, "index", offset, strides)
        else:
            self.unravel_index(holder, "index", shape, strides, offset)

    def _add(self, holder, attr: str, pending: _Pending) -> None:
        self.pending.append((holder, attr, pending))
        setattr(holder, attr, pending)

    def finalize(self, names: str = "i") -> list[Var]:
        """Merge dims, name the loop variables ``names0``, ``names1``..., and give every
        registered access its index over them."""
        maps = [p.strides for _, _, p in self.pending]
        extents, merged, groups = merge_dims(list(self.extents), maps, self.groups)
        self.vars = [Var(f"{names}{k}", n) for k, n in enumerate(extents)]
        self.var_groups = groups
        for (holder, attr, p), strides in zip(self.pending, merged):
            affine = Affine(p.offset, tuple((v, s) for v, s in zip(self.vars, strides) if s))
            if p.unravel is not None:
                shape, st, off = p.unravel
                affine = Unravel(affine, shape, st, off)
            setattr(holder, attr, affine)
        return self.vars

    def group(self, g: int) -> list[Var]:
        """The loop variables of dims of group ``g`` (after ``finalize``; size-1 dims are
        gone, so a position in ``extents`` says nothing)."""
        return [v for v, k in zip(self.vars, self.var_groups) if k == g]


def nest(vars_: list[Var], body: list, parallel: bool = True) -> list:
    """Loops over ``vars_`` (outermost first) around ``body``; the outermost one is split
    across threads when ``parallel``."""
    for k in reversed(range(len(vars_))):
        body = [Loop(vars_[k], body, parallel=parallel and k == 0)]
    return body


def aligned(strides: tuple, use_shape: tuple, domain: tuple, reduced: tuple) -> list[int]:
    """Strides over ``use_shape`` placed on the domain's dims (a reduced shape without
    its reduced dims lines up with the kept ones)."""
    if len(use_shape) == len(domain):
        return list(strides)
    kept = [d for d in range(len(domain)) if d not in reduced]
    out = [0] * len(domain)
    for s, d in zip(strides, kept):
        out[d] = s
    return out


def copy_nest(src: Ref, dst_offset: int, dst: Ref, shape: tuple) -> list:
    """dst[dst_offset + Σ i·dst.strides] = src[...] over ``shape`` (a parallel loop nest)."""
    space = Space(shape)
    ld = Load(src, None)
    space.index(ld, "index", src.offset, list(src.strides))
    st = Store(dst, None, ld)
    space.index(st, "index", dst_offset, list(dst.strides))
    return nest(space.finalize("c"), [st])


# ---- tiling -----------------------------------------------------------------------------

TILE = 16  # elements per side of a tile (see tile_transposed)


def tile_transposed(space: Space, vars_: list[Var]) -> list[Var]:
    """Loops over TILE x TILE tiles of the two innermost dims when one access walks them
    in the other order (a transposed read or write): in row order, each element of the
    transposed side is on another cache line, and a line is evicted before the next
    element on it is used. Tiled, the lines of one tile stay in L1. Only when both
    extents are multiples of TILE (no remainder loops)."""
    if len(vars_) < 2:
        return vars_
    a, b = vars_[-2], vars_[-1]
    if is_symbolic((a.extent, b.extent)) or a.extent % TILE or b.extent % TILE or \
            a.extent * b.extent < 4 * TILE * TILE:
        return vars_
    maps = [dict(_affine_of(getattr(h, attr)).terms) for h, attr, _ in space.pending]
    walks_b = any(m.get(b) == 1 for m in maps)
    walks_a = any(m.get(a) == 1 and abs(m.get(b, 0)) >= TILE for m in maps)
    if not (walks_a and walks_b):
        return vars_
    ao, bo = Var(f"{a.name}o", a.extent // TILE), Var(f"{b.name}o", b.extent // TILE)
    ai, bi = Var(f"{a.name}i", TILE), Var(f"{b.name}i", TILE)
    outer_inner = {a: (ao, ai), b: (bo, bi)}

    def split(idx: Affine) -> Affine:
        terms = []
        for v, st in idx.terms:
            if v in outer_inner:
                outer, inner = outer_inner[v]
                terms += [(outer, st * TILE), (inner, st)]
            else:
                terms.append((v, st))
        return Affine(idx.offset, tuple(terms))
    for holder, attr, _ in space.pending:
        idx = getattr(holder, attr)
        if isinstance(idx, Unravel):
            idx = Unravel(split(idx.flat), idx.shape, idx.strides, idx.offset)
        else:
            idx = split(idx)
        setattr(holder, attr, idx)
    return vars_[:-2] + [ao, bo, ai, bi]


def _affine_of(idx) -> Affine:
    return idx.flat if isinstance(idx, Unravel) else idx
