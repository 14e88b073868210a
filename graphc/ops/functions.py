"""The public functions (``graphc.add``, ``graphc.sum``, ``graphc.cat`` ...).

Each one turns PyTorch's calling conventions (positional dims, ``alpha=``, several
spellings of a shape) into one op-table call, ``dispatch(OPS.<op>, *inputs, **attrs)``.
Tensor methods and operators (``graphc/ops/methods.py``) call these same functions.
"""

from __future__ import annotations

import builtins
import math
import operator
from collections import namedtuple

import numpy as np

from .. import dtype as dt
from ..errors import OpTypeError, OpValueError, ShapeError
from ..layout import as_shape, infer_size, normalize_dim, size_args
from ..tensor import Tensor, from_numpy
from .dispatch import dispatch
from .registry import OPS

# The public, torch-named functions: what ``from graphc.ops.functions import *`` (and so
# ``graphc``) takes. Adding a public function? Append its name here (or in an
# ``__all__ +=`` after its import at the end of this file). Generated op wrappers
# (``expose``) are added by graphc/ops/__init__.py; helpers (operand, cast, view_scatter,
# pad ...: not torch.<name> API) stay out.
__all__ = """
    softmax log_softmax add sub subtract rsub true_divide floor_divide div divide pow where
    clamp clip lerp sum prod mean amax amin all any argmax argmin max min var std logsumexp norm
    matmul mm bmm dot outer ger cat concat concatenate stack gather index_select index_put
    index_put_ reshape permute transpose swapaxes swapdims t squeeze unsqueeze flatten
    unflatten narrow select unbind split chunk movedim as_strided broadcast_to conv2d
    max_pool2d full zeros ones empty zeros_like ones_like full_like empty_like arange linspace
    eye rand randn randint rand_like randn_like normal
""".split()


def operand(x):
    """numpy arrays take part in ops as tensors (zero-copy); everything else passes as is."""
    return from_numpy(x) if isinstance(x, np.ndarray) else x


def _dims(dim):
    """A reduction's ``dim`` as an op attribute: None, or a tuple of ints."""
    if dim is None:
        return None
    if isinstance(dim, (tuple, list)):
        return tuple(operator.index(d) for d in dim)
    return (operator.index(dim),)


# ---- elementwise -------------------------------------------------------------------

# neg, exp, sigmoid, mul, eq ... (one op-table call each) are generated from their
# declarations' ``expose`` field (graphc/ops/expose.py)


def softmax(input, dim: int, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim``, computed stably."""
    return dispatch(OPS.softmax, input, dim=dim, dtype=None if dtype is None else dt.as_dtype(dtype))


def log_softmax(input, dim: int, dtype=None):
    """x - logsumexp(x) along ``dim``."""
    return dispatch(OPS.log_softmax, input, dim=dim,
                    dtype=None if dtype is None else dt.as_dtype(dtype))


def _scaled(other, alpha):
    return other if alpha == 1 else dispatch(OPS.mul, other, alpha)


def add(input, other, *, alpha=1):
    """input + alpha × other."""
    return dispatch(OPS.add, operand(input), _scaled(operand(other), alpha))


def sub(input, other, *, alpha=1):
    """input - alpha × other."""
    return dispatch(OPS.sub, operand(input), _scaled(operand(other), alpha))


subtract = sub


def rsub(input, other, *, alpha=1):
    """other - alpha × input."""
    return dispatch(OPS.sub, operand(other), _scaled(operand(input), alpha))


def _binary(name, *, op_name=None, **fixed_attrs):
    op_name = op_name or name

    def fn(input, other):
        return dispatch(OPS[op_name], operand(input), operand(other), **fixed_attrs)
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"Elementwise {name} with broadcasting and PyTorch's promotion (OPS.{op_name})."
    return fn


true_divide = _binary("true_divide", op_name="div")
floor_divide = _binary("floor_divide", op_name="div", rounding_mode="floor")


def div(input, other, *, rounding_mode: str | None = None):
    """Division; ``rounding_mode`` None (true division), 'trunc' or 'floor'."""
    return dispatch(OPS.div, operand(input), operand(other), rounding_mode=rounding_mode)


divide = div


def pow(input, exponent):
    """input ** exponent (either may be a number)."""
    return dispatch(OPS.pow, operand(input), operand(exponent))


def where(condition, input=None, other=None):
    """``input`` where ``condition`` holds, else ``other`` (numbers allowed for both)."""
    if input is None and other is None:
        raise OpTypeError("where", "where(condition) without values is not supported; use "
                          "condition.nonzero()-style indexing (x[condition]) instead")
    return dispatch(OPS.where, operand(condition), operand(input), operand(other))


def clamp(input, min=None, max=None):
    """Limit values to [min, max] (either bound may be omitted; a tensor bound broadcasts)."""
    return dispatch(OPS.clamp, input, operand(min), operand(max))


clip = clamp


def lerp(input, end, weight):
    """input + weight × (end - input)."""
    return dispatch(OPS.lerp, input, operand(end), operand(weight))


def cast(input, dtype):
    """A copy converted to ``dtype`` (the op behind ``.to(dtype)``, ``.float()``...)."""
    return dispatch(OPS.cast, input, dtype=dt.as_dtype(dtype))


# ---- reductions --------------------------------------------------------------------

def sum(input, dim=None, keepdim: bool = False, *, dtype=None):
    """Sum over ``dim`` (an int, a tuple, or None for all dims). Integers sum in int64."""
    return dispatch(OPS.sum, input, dim=_dims(dim), keepdim=keepdim,
                    dtype=None if dtype is None else dt.as_dtype(dtype))


def prod(input, dim=None, keepdim: bool = False, *, dtype=None):
    return dispatch(OPS.prod, input, dim=_dims(dim), keepdim=keepdim,
                    dtype=None if dtype is None else dt.as_dtype(dtype))


def mean(input, dim=None, keepdim: bool = False, *, dtype=None):
    """Mean over ``dim``; the input must be floating point unless ``dtype`` is given."""
    return dispatch(OPS.mean, input, dim=_dims(dim), keepdim=keepdim,
                    dtype=None if dtype is None else dt.as_dtype(dtype))


def amax(input, dim=(), keepdim: bool = False):
    return dispatch(OPS.amax, input, dim=_dims(dim), keepdim=keepdim)


def amin(input, dim=(), keepdim: bool = False):
    return dispatch(OPS.amin, input, dim=_dims(dim), keepdim=keepdim)


def all(input, dim=None, keepdim: bool = False):
    return dispatch(OPS.all, input, dim=_dims(dim), keepdim=keepdim)


def any(input, dim=None, keepdim: bool = False):
    return dispatch(OPS.any, input, dim=_dims(dim), keepdim=keepdim)


def argmax(input, dim=None, keepdim: bool = False):
    """Index of the largest value (of the flattened tensor when ``dim`` is None)."""
    return dispatch(OPS.argmax, input, dim=None if dim is None else operator.index(dim),
                    keepdim=keepdim)


def argmin(input, dim=None, keepdim: bool = False):
    return dispatch(OPS.argmin, input, dim=None if dim is None else operator.index(dim),
                    keepdim=keepdim)


MinMax = namedtuple("MinMax", ["values", "indices"])


def _extreme(values_fn, index_fn, elementwise_op, input, dim, keepdim, other):
    if isinstance(dim, Tensor) or other is not None:  # max(a, b): elementwise
        return dispatch(elementwise_op, operand(input), operand(dim if other is None else other))
    if dim is None:
        return values_fn(input)
    return MinMax(values_fn(input, dim, keepdim), index_fn(input, dim, keepdim))


def max(input, dim=None, keepdim: bool = False, *, other=None):
    """``max(x)``: the largest value; ``max(x, dim)``: (values, indices); ``max(x, y)``: maximum."""
    return _extreme(amax, argmax, OPS.maximum, input, dim, keepdim, other)


def min(input, dim=None, keepdim: bool = False, *, other=None):
    """``min(x)``: the smallest value; ``min(x, dim)``: (values, indices); ``min(x, y)``: minimum."""
    return _extreme(amin, argmin, OPS.minimum, input, dim, keepdim, other)


def _correction(name, unbiased, correction):
    if unbiased is not None and correction is not None:
        raise OpTypeError(name, "pass either unbiased or correction, not both")
    if correction is not None:
        return correction
    return 1 if unbiased is None or unbiased else 0


def var(input, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None):
    """Variance over ``dim``; ``correction=1`` (default) divides by N - 1."""
    if isinstance(dim, bool):  # var(x, False): the old positional `unbiased`
        dim, unbiased = None, dim
    return dispatch(OPS.var, input, dim=_dims(dim), keepdim=keepdim,
                    correction=_correction("var", unbiased, correction))


def std(input, dim=None, unbiased: bool | None = None, keepdim: bool = False, *, correction=None):
    """Standard deviation over ``dim``; ``correction=1`` (default) divides by N - 1."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    return dispatch(OPS.std, input, dim=_dims(dim), keepdim=keepdim,
                    correction=_correction("std", unbiased, correction))


def logsumexp(input, dim, keepdim: bool = False):
    return dispatch(OPS.logsumexp, input, dim=_dims(dim), keepdim=keepdim)


def norm(input, p="fro", dim=None, keepdim: bool = False):
    """Vector p-norm over ``dim`` (all dims by default); p is a number, inf, -inf or 'fro'."""
    if p == "fro" or p is None:
        p = 2.0
    elif isinstance(p, str):
        raise OpValueError("norm", f"p must be a number, inf, -inf or 'fro', got {p!r}")
    return dispatch(OPS.norm, input, p=float(p), dim=_dims(dim), keepdim=keepdim)


# ---- matrix products ---------------------------------------------------------------

def matmul(input, other):
    """Matrix product with numpy's rules for 1-D operands and broadcast batch dims."""
    return dispatch(OPS.matmul, operand(input), operand(other))


def _require_ndim(name: str, ndim: int, *tensors) -> None:
    if any(isinstance(x, Tensor) and x.ndim != ndim for x in tensors):
        shapes = " and ".join(str(tuple(x.shape)) for x in tensors if isinstance(x, Tensor))
        raise ShapeError(name, f"expected {ndim}-D tensors, got shapes {shapes}")


def mm(input, mat2):
    """2-D matrix product."""
    _require_ndim("mm", 2, input, mat2)
    return matmul(input, mat2)


def bmm(input, mat2):
    """Batched 2-D matrix product of two 3-D tensors with the same batch size."""
    return dispatch(OPS.bmm, input, mat2)


def dot(input, other):
    """Inner product of two 1-D tensors."""
    _require_ndim("dot", 1, input, other)
    return matmul(input, other)


def outer(input, vec2):
    return dispatch(OPS.outer, input, operand(vec2))


ger = outer


# ---- joining, gathering ------------------------------------------------------------

def _tensor_seq(name, tensors):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise OpTypeError(name, f"expected a list or tuple of tensors, got {type(tensors).__name__}")
    return tuple(operand(t) for t in tensors)


def cat(tensors, dim: int = 0):
    """Join tensors along an existing dim (dtypes promote)."""
    return dispatch(OPS.cat, *_tensor_seq("cat", tensors), dim=dim)


concat = concatenate = cat


def stack(tensors, dim: int = 0):
    """Join tensors of one shape along a new dim."""
    return dispatch(OPS.stack, *_tensor_seq("stack", tensors), dim=dim)


def gather(input, dim: int, index):
    return dispatch(OPS.gather, input, operand(index), dim=dim)


def index_select(input, dim: int, index):
    return dispatch(OPS.index_select, input, operand(index), dim=dim)


def _key_spec(indices) -> tuple[tuple, list]:
    """PyTorch's index tuple (tensors, None for a full dim) -> (spec, index tensors)."""
    spec, tensors = [], []
    for t in indices:
        if t is None:
            spec.append(None)
        else:
            spec.append(len(tensors))
            tensors.append(operand(t))
    return tuple(spec), tensors


def index_put(input, indices, values, accumulate: bool = False):
    """A copy of ``input`` with ``input[indices] = values`` (``+=`` with ``accumulate``).

    ``indices`` is a tuple of index tensors, one per leading dim (None: the whole dim).
    """
    spec, tensors = _key_spec(indices)
    return dispatch(OPS.index_put, input, operand(values), *tensors, spec=spec,
                    accumulate=accumulate)


def index_put_(input, indices, values, accumulate: bool = False):
    """``input[indices] = values`` in place (``+=`` with ``accumulate``); returns input."""
    spec, tensors = _key_spec(indices)
    return dispatch(OPS.index_put_, input, operand(values), *tensors, spec=spec,
                    accumulate=accumulate)


# ---- views -------------------------------------------------------------------------

def reshape(input, *shape):
    """Same data in a new shape: a view when the layout allows, else a copy."""
    return dispatch(OPS.reshape, input, size=size_args("reshape", shape))


def view(input, *shape):
    return dispatch(OPS.view, input, size=size_args("view", shape))


def permute(input, *dims):
    return dispatch(OPS.permute, input, dims=size_args("permute", dims) if dims else ())


def transpose(input, dim0: int, dim1: int):
    """Swap two dims (a view)."""
    n = input.ndim
    d0, d1 = normalize_dim("transpose", dim0, n), normalize_dim("transpose", dim1, n)
    order = list(range(n))
    if n:
        order[d0], order[d1] = order[d1], order[d0]
    return permute(input, *order) if n else input


swapaxes = swapdims = transpose


def t(input):
    """Transpose a tensor of at most 2 dims."""
    if input.ndim > 2:
        raise ShapeError("t", f"expects a tensor with <= 2 dims, got shape {tuple(input.shape)}; "
                         "use transpose(dim0, dim1) or .mT")
    return transpose(input, 0, 1) if input.ndim == 2 else input


def squeeze(input, dim=None):
    """Remove size-1 dims (all of them, or those among ``dim`` that have size 1)."""
    return dispatch(OPS.squeeze, input, dim=_dims(dim))


def unsqueeze(input, dim: int):
    return dispatch(OPS.unsqueeze, input, dim=dim)


def flatten(input, start_dim: int = 0, end_dim: int = -1):
    """Merge dims start_dim..end_dim into one (a view when the layout allows)."""
    n = input.ndim
    if n == 0:
        return reshape(input, 1)
    s, e = normalize_dim("flatten", start_dim, n), normalize_dim("flatten", end_dim, n)
    if s > e:
        raise ShapeError("flatten", f"start_dim {start_dim} comes after end_dim {end_dim}")
    if s == e:
        return input
    shape = tuple(input.shape)
    return reshape(input, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def unflatten(input, dim: int, sizes):
    d = normalize_dim("unflatten", dim, input.ndim)
    shape = tuple(input.shape)
    sizes = infer_size("unflatten", as_shape("unflatten", sizes), shape[d])
    return view(input, shape[:d] + sizes + shape[d + 1:])


def narrow(input, dim: int, start: int, length: int):
    """``length`` positions of ``dim`` from ``start`` (a view)."""
    d = normalize_dim("narrow", dim, input.ndim)
    size = input.shape[d]
    if start < 0:
        start += size
    if not (0 <= start <= size and 0 <= length and start + length <= size):
        raise OpValueError("narrow", f"start ({start}) + length ({length}) exceeds dim {d} of "
                           f"size {size}")
    return dispatch(OPS.slice, input, dim=d, start=start, end=start + length, step=1)


def select(input, dim: int, index: int):
    return dispatch(OPS.select, input, dim=dim, index=operator.index(index))


def unbind(input, dim: int = 0):
    """A tuple of views, one per position of ``dim``."""
    d = normalize_dim("unbind", dim, input.ndim)
    return tuple(select(input, d, i) for i in range(input.shape[d]))


def split(tensor, split_size_or_sections, dim: int = 0):
    """Views of ``split_size`` along ``dim`` (the last may be smaller), or of the given sizes."""
    d = normalize_dim("split", dim, tensor.ndim)
    size = tensor.shape[d]
    if not isinstance(split_size_or_sections, (list, tuple)):  # an int, or a symbolic one
        step = split_size_or_sections
        if step <= 0 and size:
            raise OpValueError("split", f"split_size must be positive, got {step}")
        bounds = [(s, builtins.min(s + step, size)) for s in range(0, size, step)] if size else [(0, 0)]
    else:
        sections = list(split_size_or_sections)
        if builtins.sum(sections) != size:
            raise ShapeError("split", f"sections {sections} do not add up to the size {size} of "
                             f"dim {d}")
        starts = np.cumsum([0] + sections[:-1]).tolist()
        bounds = [(s, s + n) for s, n in zip(starts, sections)]
    return tuple(dispatch(OPS.slice, tensor, dim=d, start=s, end=e, step=1) for s, e in bounds)


def chunk(input, chunks: int, dim: int = 0):
    """Split into ``chunks`` views of equal size (ceil); fewer when the dim is too short."""
    if chunks <= 0:
        raise OpValueError("chunk", f"chunks must be positive, got {chunks}")
    d = normalize_dim("chunk", dim, input.ndim)
    size = input.shape[d]
    return split(input, builtins.max(-(-size // chunks), 1), d)


def movedim(input, source, destination):
    src = [normalize_dim("movedim", s, input.ndim) for s in _dims(source)]
    dst = [normalize_dim("movedim", s, input.ndim) for s in _dims(destination)]
    order = [i for i in range(input.ndim) if i not in src]
    for s, d in sorted(zip(dst, src)):
        order.insert(s, d)
    return permute(input, *order)


def as_strided(input, size, stride, storage_offset=None):
    return dispatch(OPS.as_strided, input, size=as_shape("as_strided", size),
                    stride=as_shape("as_strided", stride), storage_offset=storage_offset)


def view_scatter(input, src, size, stride, storage_offset=0):
    """A contiguous copy of ``input`` with ``src`` written where ``as_strided(size, stride,
    offset)`` of that copy lies: the pure form of a write through a view (PyTorch's
    ``as_strided_scatter`` of ``input.contiguous()``)."""
    return dispatch(OPS.view_scatter, input, operand(src),
                    size=as_shape("view_scatter", size),
                    stride=as_shape("view_scatter", stride), storage_offset=storage_offset)


def expand(input, *sizes):
    return dispatch(OPS.expand, input, size=size_args("expand", sizes))


def broadcast_to(input, shape):
    return expand(input, *as_shape("broadcast_to", shape))


def contiguous(input):
    """``input`` itself if contiguous, else a contiguous copy."""
    return input if input.is_contiguous() else dispatch(OPS.clone, input)


# ---- spatial (N, C, H, W) ops ------------------------------------------------------

def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _batched(fn, input, *args, **kwargs):
    """Run a 4-D op on a 3-D (unbatched) input as a batch of one."""
    if isinstance(input, Tensor) and input.ndim == 3:
        return squeeze(fn(unsqueeze(input, 0), *args, **kwargs), 0)
    return fn(input, *args, **kwargs)


def pad(input, pad, mode: str = "constant", value=None):
    """Padding; ``pad`` holds (before, after) pairs starting from the last dim. ``mode`` is
    'constant' (``value``), or 'reflect', 'replicate', 'circular' for 1 to 3 trailing dims."""
    if mode != "constant":
        op = {"reflect": OPS.reflection_pad, "replicate": OPS.replication_pad,
              "circular": OPS.circular_pad}.get(mode)
        if op is None or value is not None:
            raise OpValueError("pad", f"mode must be 'constant', 'reflect', 'replicate' or "
                               f"'circular' (only 'constant' takes a value), got mode={mode!r}"
                               f"{'' if value is None else f', value={value!r}'}")
        return dispatch(op, input, pad=tuple(pad))
    return dispatch(OPS.pad, input, pad=tuple(pad), value=0.0 if value is None else value)


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: (N, C, H, W) -> (N, C·kh·kw, L)."""
    return dispatch(OPS.unfold, input, kernel_size=_pair(kernel_size), dilation=_pair(dilation),
                    padding=_pair(padding), stride=_pair(stride))


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """col2im: (N, C·kh·kw, L) -> (N, C, H, W), summing where windows overlap."""
    return dispatch(OPS.fold, input, output_size=_pair(output_size),
                    kernel_size=_pair(kernel_size), dilation=_pair(dilation),
                    padding=_pair(padding), stride=_pair(stride))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """2-D convolution (cross-correlation) of (N, C, H, W) or (C, H, W) input."""
    return _batched(lambda x: dispatch(
        OPS.conv2d, x, weight, bias, stride=_pair(stride), dilation=_pair(dilation), groups=groups,
        padding=padding if isinstance(padding, str) else _pair(padding)), input)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    if return_indices:
        raise OpValueError("max_pool2d", "return_indices=True is not supported")
    return _batched(lambda x: dispatch(
        OPS.max_pool2d, x, kernel_size=_pair(kernel_size), padding=_pair(padding),
        stride=None if stride is None else _pair(stride), dilation=_pair(dilation),
        ceil_mode=ceil_mode), input)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None):
    return _batched(lambda x: dispatch(
        OPS.avg_pool2d, x, kernel_size=_pair(kernel_size), padding=_pair(padding),
        stride=None if stride is None else _pair(stride), ceil_mode=ceil_mode,
        count_include_pad=count_include_pad, divisor_override=divisor_override), input)


def adaptive_avg_pool2d(input, output_size):
    size = (output_size, output_size) if isinstance(output_size, int) or output_size is None \
        else tuple(output_size)
    return _batched(lambda x: dispatch(OPS.adaptive_avg_pool2d, x, output_size=size), input)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale=None, enable_gqa: bool = False, *,
                                 generator=None):
    """softmax(query @ keyᵀ · scale + mask) @ value (dropout_p > 0 drops attention weights);
    ``enable_gqa``: key and value heads (dim -3) repeat for each group of query heads."""
    if enable_gqa:
        key, value = _repeat_heads(query, key), _repeat_heads(query, value)
    if dropout_p == 0.0:
        return dispatch(OPS.scaled_dot_product_attention, query, key, value, attn_mask,
                        is_causal=is_causal, scale=scale)
    s = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = matmul(query, transpose(key, -2, -1)) * s
    if is_causal:
        attn_mask = tril_mask(query.shape[-2], key.shape[-2])
    if attn_mask is not None:
        scores = where(attn_mask, scores, -math.inf) if attn_mask.dtype is dt.bool_ \
            else scores + attn_mask
    weights = dispatch(OPS.dropout, softmax(scores, -1), p=float(dropout_p), generator=generator)
    return matmul(weights, value)


def _repeat_heads(query, kv):
    """kv's heads (dim -3) each repeated Hq / Hkv times in place (repeat_interleave)."""
    if query.ndim < 3 or kv.ndim < 3 or query.shape[-3] % kv.shape[-3]:
        raise ShapeError("scaled_dot_product_attention", f"enable_gqa needs (..., heads, L, E) inputs "
                         f"with query heads a multiple of key/value heads, got query "
                         f"{tuple(query.shape)} and {tuple(kv.shape)}")
    *batch, heads, length, e = kv.shape
    groups = query.shape[-3] // heads
    grown = expand(unsqueeze(kv, -3), *batch, heads, groups, length, e)
    return reshape(grown, *batch, heads * groups, length, e)


def tril_mask(rows: int, cols: int) -> Tensor:
    """A bool (rows, cols) mask that keeps the diagonal and below (causal attention)."""
    return from_numpy(np.tril(np.ones((rows, cols), bool)))


# ---- factories (ops with no tensor inputs) ---------------------------------------

def _float_dtype(dtype):
    return dt.get_default_dtype() if dtype is None else dt.as_dtype(dtype)


def _finish(t: Tensor, requires_grad: bool) -> Tensor:
    if requires_grad:
        t.requires_grad_(True)
    return t


def full(size, fill_value, *, dtype=None, device=None, requires_grad: bool = False):
    """A tensor of ``size`` filled with ``fill_value`` (dtype from the value by default)."""
    if dtype is None:
        if isinstance(fill_value, Tensor):
            fill_value = fill_value.item()
        dtype = dt.scalar_dtype(fill_value)
    shape = as_shape("full", size)
    return _finish(dispatch(OPS.full, size=shape, fill_value=fill_value,
                            dtype=dt.as_dtype(dtype), device=device), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad: bool = False):
    return full(size_args("zeros", size), 0, dtype=_float_dtype(dtype), device=device,
                requires_grad=requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False):
    return full(size_args("ones", size), 1, dtype=_float_dtype(dtype), device=device,
                requires_grad=requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False):
    """A new tensor; graphc fills it with zeros (PyTorch leaves it uninitialised)."""
    return _finish(dispatch(OPS.empty, size=size_args("empty", size), dtype=_float_dtype(dtype),
                            device=device), requires_grad)


def _like(input, dtype, device):
    return (dt.as_dtype(dtype) if dtype is not None else input.dtype,
            device if device is not None else input.device)


def zeros_like(input, *, dtype=None, device=None, requires_grad: bool = False):
    d, dev = _like(input, dtype, device)
    return full(tuple(input.shape), 0, dtype=d, device=dev, requires_grad=requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad: bool = False):
    d, dev = _like(input, dtype, device)
    return full(tuple(input.shape), 1, dtype=d, device=dev, requires_grad=requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad: bool = False):
    d, dev = _like(input, dtype, device)
    return full(tuple(input.shape), fill_value, dtype=d, device=dev, requires_grad=requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad: bool = False):
    d, dev = _like(input, dtype, device)
    return empty(tuple(input.shape), dtype=d, device=dev, requires_grad=requires_grad)


def arange(start=0, end=None, step=1, *, dtype=None, device=None, requires_grad: bool = False):
    """``arange(end)`` or ``arange(start, end, step)``; int64 unless a bound is a float."""
    if end is None:
        start, end = 0, start
    values = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    if dtype is None:
        floating = builtins.any(dt.scalar_category(v) == dt.FLOATING for v in values)
        dtype = dt.get_default_dtype() if floating else dt.int64
    start, end, step = values
    return _finish(dispatch(OPS.arange, start=start, end=end, step=step,
                            dtype=dt.as_dtype(dtype), device=device), requires_grad)


def linspace(start, end, steps: int, *, dtype=None, device=None, requires_grad: bool = False):
    return _finish(dispatch(OPS.linspace, start=float(start), end=float(end),
                            steps=operator.index(steps), dtype=_float_dtype(dtype),
                            device=device), requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, device=None, requires_grad: bool = False):
    return _finish(dispatch(OPS.eye, n=n, m=m, dtype=_float_dtype(dtype), device=device),
                   requires_grad)


def rand(*size, dtype=None, device=None, generator=None, requires_grad: bool = False):
    """Uniform values in [0, 1)."""
    return _finish(dispatch(OPS.uniform, size=size_args("rand", size), dtype=_float_dtype(dtype),
                            device=device, generator=generator), requires_grad)


def randn(*size, dtype=None, device=None, generator=None, requires_grad: bool = False):
    """Standard normal values."""
    return _finish(dispatch(OPS.normal, size=size_args("randn", size), dtype=_float_dtype(dtype),
                            device=device, generator=generator), requires_grad)


def randint(low, high=None, size=None, *, dtype=None, device=None, generator=None,
            requires_grad: bool = False):
    """Integers in [low, high): ``randint(high, size)`` or ``randint(low, high, size)``."""
    if size is None:
        low, high, size = 0, low, high
    if size is None:
        raise OpTypeError("randint", "size is required, e.g. randint(0, 10, (3,))")
    return _finish(dispatch(OPS.randint, size=as_shape("randint", size), low=int(low),
                            high=int(high), dtype=dt.int64 if dtype is None else dt.as_dtype(dtype),
                            device=device, generator=generator), requires_grad)


def rand_like(input, *, dtype=None, device=None, generator=None):
    d, dev = _like(input, dtype, device)
    return rand(tuple(input.shape), dtype=d, device=dev, generator=generator)


def randn_like(input, *, dtype=None, device=None, generator=None):
    d, dev = _like(input, dtype, device)
    return randn(tuple(input.shape), dtype=d, device=dev, generator=generator)


def normal(mean=0.0, std=1.0, size=None, *, dtype=None, device=None, generator=None):
    """Normal values: ``normal(mean, std, size)`` with numbers, or elementwise with tensors."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        like = mean if isinstance(mean, Tensor) else std
        shape = like.shape if size is None else size
        if isinstance(mean, Tensor) and isinstance(std, Tensor):
            from ..layout import broadcast_shapes
            shape = broadcast_shapes("normal", tuple(mean.shape), tuple(std.shape))
        z = randn(tuple(shape), dtype=like.dtype, device=like.device, generator=generator)
        return add(dispatch(OPS.mul, z, std), mean)
    if size is None:
        raise OpTypeError("normal", "size is required when mean and std are numbers")
    return dispatch(OPS.normal, size=as_shape("normal", size), mean=float(mean), std=float(std),
                    dtype=_float_dtype(dtype), device=device, generator=generator)


# functions declared beside their ops, in modules of their own
from .numerics import (allclose, count_nonzero, diff, equal, isclose,  # noqa: E402, F401
                       nan_to_num, std_mean, var_mean)
from .products import einsum  # noqa: E402, F401
from .queries import (_assert, argwhere, is_floating_point, is_tensor,  # noqa: E402, F401
                      nonzero, numel)
from .shaping import (diag, diagonal, flip, fliplr, flipud, meshgrid, repeat,  # noqa: E402, F401
                      repeat_interleave, roll, tensor_split, tile)
from .ordering import (Sorted, TopK, argsort, bernoulli, multinomial,  # noqa: E402, F401
                       randperm, sort, topk)
from .scans import cumprod, cumsum  # noqa: E402, F401
from .scatter import (index_add, index_fill, scatter, scatter_add,  # noqa: E402, F401
                      take_along_dim)
from .triangular import tril, triu  # noqa: E402, F401

__all__ += """
    allclose count_nonzero diff equal isclose nan_to_num std_mean var_mean einsum
    _assert argwhere nonzero is_floating_point is_tensor numel diag diagonal flip fliplr flipud meshgrid
    repeat_interleave roll tensor_split tile
    sort argsort topk multinomial randperm bernoulli cumsum cumprod scatter scatter_add
    take_along_dim index_fill index_add tril triu
""".split()  # (repeat is Tensor.repeat only, as in PyTorch)
