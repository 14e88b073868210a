"""Tensor methods and Python operators, attached to ``Tensor`` from the public functions.

``x.sum(1)`` is ``graphc.sum(x, 1)``; ``x + y`` is ``graphc.add(x, y)``; ``2 - x`` is
``graphc.sub(2, x)``; ``x += y`` is ``x.add_(y)``, which writes into x's storage. Nothing
here computes: every method ends in the op dispatcher.
"""

from __future__ import annotations

from .. import dtype as dt
from ..errors import DTypeError, OpError, OpTypeError
from ..layout import size_args
from ..tensor import CPU, META, Storage, Tensor, device, require_available
from . import functions as F
from .dispatch import dispatch
from .expose import inplace
from .registry import OPS
from .subscript import getitem, setitem

# methods that are the function of the same name with the tensor first
SAME_NAME = """
    softmax log_softmax
    add sub subtract div divide true_divide floor_divide pow clamp clip lerp
    sum prod mean amax amin all any argmax argmin max min var std logsumexp norm
    matmul mm bmm dot outer gather index_select index_put index_put_
    reshape view permute transpose swapaxes swapdims t squeeze unsqueeze flatten unflatten
    narrow select unbind split chunk movedim as_strided expand broadcast_to contiguous
    tril triu sort argsort topk multinomial bernoulli cumsum cumprod scatter scatter_add
    take_along_dim index_fill index_add
    flip fliplr flipud roll repeat repeat_interleave tile diagonal diag tensor_split
    isclose allclose equal nan_to_num count_nonzero diff nonzero argwhere
""".split()  # and those an op's ``expose`` field generates (exp, mul, eq, ...: see expose.py)

# (method, function, reflected): x.__add__(y) is add(x, y); x.__radd__(y) is add(y, x)
OPERATORS = [
    ("__add__", F.add, False), ("__radd__", F.add, True),
    ("__sub__", F.sub, False), ("__rsub__", F.sub, True),
    ("__mul__", F.mul, False), ("__rmul__", F.mul, True),
    ("__truediv__", F.div, False), ("__rtruediv__", F.div, True),
    ("__floordiv__", F.floor_divide, False), ("__rfloordiv__", F.floor_divide, True),
    ("__mod__", F.remainder, False), ("__rmod__", F.remainder, True),
    ("__pow__", F.pow, False), ("__rpow__", F.pow, True),
    ("__matmul__", F.matmul, False), ("__rmatmul__", F.matmul, True),
    ("__eq__", F.eq, False), ("__ne__", F.ne, False),
    ("__lt__", F.lt, False), ("__le__", F.le, False),
    ("__gt__", F.gt, False), ("__ge__", F.ge, False),
]


def _bool_only(name, logical_fn):
    def method(self, other, reflected=False):
        for x in (self, other):
            if isinstance(x, Tensor) and x.dtype is not dt.bool_ or isinstance(x, (int, float)) \
                    and not isinstance(x, bool):
                raise DTypeError(name, "bitwise operators are supported on bool tensors only "
                                 f"(got {x.dtype if isinstance(x, Tensor) else repr(x)})")
        return logical_fn(other, self) if reflected else logical_fn(self, other)
    return method


def _operator(fn, reflected):
    if reflected:
        return lambda self, other: fn(other, self)
    return lambda self, other: fn(self, other)


def _to(self, *args, dtype=None, device=None, copy=False, non_blocking=False):
    """``to(dtype)``, ``to(device)``, ``to(other_tensor)``; returns self when nothing changes.
    ``non_blocking`` is accepted and has no effect (every copy is synchronous on the cpu)."""
    for a in args:
        if isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, (str, type(CPU))) and not _is_dtype_name(a):
            device = a
        else:
            dtype = a
    target = dt.as_dtype(dtype) if dtype is not None else self.dtype
    dev = self.device if device is None else require_available("to", device)
    if dev.type != self.device.type:  # cpu:0 is the cpu
        return _to_device(self, dev, target)
    if target is self.dtype and not copy:
        return self
    return F.cast(self, target)


def _is_dtype_name(a) -> bool:
    try:
        dt.as_dtype(a)
        return True
    except TypeError:
        return False


def _to_device(self, dev: device, target: dt.dtype):
    if dev == META:  # same geometry over a data-less storage of the same size
        return Tensor._make(Storage.meta(target, self._storage.size), self._shape, self._stride,
                            self._offset)
    raise OpError("to", "a meta tensor has no data to move to the cpu; create a cpu tensor instead")


def _requires_grad_(self, requires_grad: bool = True):
    if requires_grad and not self.dtype.is_floating_point:
        raise DTypeError("requires_grad_", f"only floating-point tensors can require gradients, "
                         f"got {self.dtype.name}")
    self.requires_grad = requires_grad
    return self


def _detach_(self):
    """Cut this tensor from the autograd graph in place (it becomes a leaf); returns self."""
    self.grad_fn = None
    self.requires_grad = False
    return self


def _new_factory(fn):
    def method(self, *size, dtype=None, device=None, requires_grad=False):
        return fn(size_args(fn.__name__, size), dtype=dtype or self.dtype,
                  device=device or self.device, requires_grad=requires_grad)
    return method


def install() -> None:
    T = Tensor
    for name in SAME_NAME:
        setattr(T, name, getattr(F, name))
    for name, fn, reflected in OPERATORS:
        setattr(T, name, _operator(fn, reflected))
    T.__neg__ = F.neg
    T.__pos__ = lambda self: self
    T.__abs__ = F.abs
    T.__invert__ = lambda self: _bool_only("__invert__", lambda a, b: F.logical_not(a))(self, None)
    T.__and__ = lambda s, o: _bool_only("__and__", F.logical_and)(s, o)
    T.__rand__ = lambda s, o: _bool_only("__and__", F.logical_and)(s, o, True)
    T.__or__ = lambda s, o: _bool_only("__or__", F.logical_or)(s, o)
    T.__ror__ = lambda s, o: _bool_only("__or__", F.logical_or)(s, o, True)
    T.__xor__ = lambda s, o: _bool_only("__xor__", F.logical_xor)(s, o)
    T.__rxor__ = lambda s, o: _bool_only("__xor__", F.logical_xor)(s, o, True)
    T.where = lambda self, condition, other: F.where(condition, self, other)
    T.__getitem__ = getitem
    T.__setitem__ = setitem

    # in-place: compute, then copy_ into self
    for name in "add sub div pow floor_divide clamp clip lerp nan_to_num".split():
        setattr(T, name + "_", inplace(getattr(F, name)))
    for name in "tril triu cumsum cumprod scatter scatter_add index_fill index_add".split():
        setattr(T, name + "_", inplace(getattr(F, name)))
    from .ordering import bernoulli_
    T.bernoulli_ = bernoulli_
    T.__iadd__ = T.add_
    T.__isub__ = T.sub_
    T.__imul__ = T.mul_
    T.__itruediv__ = T.div_
    T.__ifloordiv__ = T.floor_divide_
    T.__imod__ = T.remainder_
    T.__ipow__ = T.pow_
    T.__iand__ = lambda s, o: dispatch(OPS.copy_, s, s & o)
    T.__ior__ = lambda s, o: dispatch(OPS.copy_, s, s | o)
    T.__ixor__ = lambda s, o: dispatch(OPS.copy_, s, s ^ o)
    T.copy_ = lambda self, src: dispatch(OPS.copy_, self, F.operand(src))
    T.fill_ = lambda self, value: dispatch(OPS.copy_, self, value.item() if isinstance(
        value, Tensor) and value.ndim == 0 and not value.is_meta else value)
    T.zero_ = lambda self: dispatch(OPS.copy_, self, 0)
    T.uniform_ = lambda self, a=0.0, b=1.0, *, generator=None: dispatch(OPS.copy_, self, dispatch(
        OPS.uniform, size=tuple(self.shape), low=float(a), high=float(b), dtype=self.dtype,
        device=self.device, generator=generator))
    T.normal_ = lambda self, mean=0.0, std=1.0, *, generator=None: dispatch(
        OPS.copy_, self, dispatch(OPS.normal, size=tuple(self.shape), mean=float(mean),
                                  std=float(std), dtype=self.dtype, device=self.device,
                                  generator=generator))

    # conversions
    T.to = _to
    T.type = lambda self, dtype=None: self.dtype.name if dtype is None else _to(self, dtype)
    for name, d in (("float", dt.float32), ("double", dt.float64), ("int", dt.int32),
                    ("long", dt.int64), ("bool", dt.bool_), ("half", dt.float16),
                    ("bfloat16", dt.bfloat16)):
        setattr(T, name, lambda self, _d=d: _to(self, _d))
    T.cpu = lambda self: self if self.device == CPU else _to(self, device=CPU)
    T.requires_grad_ = _requires_grad_
    T.detach_ = _detach_
    T.view_as = lambda self, other: F.view(self, tuple(other.shape))
    T.reshape_as = lambda self, other: F.reshape(self, tuple(other.shape))
    T.expand_as = lambda self, other: F.expand(self, *tuple(other.shape))
    T.type_as = lambda self, other: _to(self, other.dtype)
    T.T = property(lambda self: F.permute(self, *reversed(range(self.ndim))))
    T.mT = property(_mT)
    T.new_zeros = _new_factory(F.zeros)
    T.new_ones = _new_factory(F.ones)
    T.new_empty = _new_factory(F.empty)
    T.new_full = lambda self, size, fill_value, *, dtype=None, device=None: F.full(
        size, fill_value, dtype=dtype or self.dtype, device=device or self.device)
    T.new_tensor = lambda self, data, *, dtype=None: _new_tensor(data, dtype or self.dtype)


def _mT(self):
    if self.ndim < 2:
        raise OpTypeError("mT", f"expects a tensor with at least 2 dims, got shape {tuple(self.shape)}")
    return F.transpose(self, -2, -1)


def _new_tensor(data, dtype):
    from ..creation import tensor

    return tensor(data, dtype=dtype)
