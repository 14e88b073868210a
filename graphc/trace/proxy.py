"""Proxy: the tensor a traced program sees. It is a real ``Tensor`` (shape, dtype, strides
are exact) whose values are either absent (symbolic tracing: a meta tensor) or the
example's (example-input tracing), and which remembers the graph node that made it.

Everything that would turn a traced tensor into a Python value (``bool``, ``int``,
``float``, ``.item()``, ``len``, iteration) goes through the tracer: symbolic tracing
refuses with a ``TraceError`` at the user's line; example tracing answers with the
example's value and records the decision it specialised on.
"""

from __future__ import annotations

from ..dtype import dtype as DType
from ..dtype import float32
from ..errors import user_location
from ..tensor import Tensor, empty_meta


class TraceError(RuntimeError):
    """A program cannot be traced as written; the message names the user's line."""

    def __init__(self, message: str, location: str | None = None):
        self.location = location if location is not None else user_location()
        super().__init__(f"{message} (at {self.location})" if self.location else message)


class TensorSpec:
    """Shape and dtype of an input, for tracing without example data."""

    def __init__(self, shape, dtype: DType = float32):
        self.shape = tuple(shape)
        self.dtype = dtype

    def to_meta(self) -> Tensor:
        return empty_meta(self.shape, self.dtype)

    def __repr__(self) -> str:
        return f"TensorSpec({self.shape}, {self.dtype})"


class Proxy(Tensor):
    """A traced tensor: ``.node`` is the graph node whose value it stands for."""

    @classmethod
    def wrap(cls, payload: Tensor, node, tracer) -> Proxy:
        p = cls._make(payload._storage, payload._shape, payload._stride, payload._offset,
                      payload._base)
        p.__dict__["node"] = node
        p.__dict__["tracer"] = tracer
        return p

    @property
    def node(self):
        return self.__dict__["node"]

    @property
    def tracer(self):
        return self.__dict__["tracer"]

    # ---- values Python would need: ask the tracer ----------------------------------
    def _value(self, what: str, compute):
        return self.tracer.concretize(self, what, compute)

    def __bool__(self) -> bool:
        return self._value("bool()", lambda: Tensor.__bool__(self))

    def __int__(self) -> int:
        return self._value("int()", lambda: Tensor.__int__(self))

    def __float__(self) -> float:
        return self._value("float()", lambda: Tensor.__float__(self))

    def __index__(self) -> int:
        return self._value("using it as an index", lambda: Tensor.__index__(self))

    def item(self):
        return self._value(".item()", lambda: Tensor.item(self))

    def tolist(self):
        return self._value(".tolist()", lambda: Tensor.tolist(self))

    def numpy(self, *, force: bool = False):
        return self._value(".numpy()", lambda: Tensor.numpy(self, force=True))

    def __array__(self, dtype=None, copy=None):
        return self._value("conversion to a numpy array", lambda: Tensor.__array__(self, dtype))

    def __len__(self) -> int:
        return self._value("len()", lambda: Tensor.__len__(self))

    def __iter__(self):
        return iter(self._value("iteration", lambda: list(Tensor.__iter__(self))))

    # ---- identity-like methods: the same value in the graph ------------------------
    def detach(self) -> Proxy:
        if self.tracer.training:  # the joint graph must know where gradients stop
            from ..ops.dispatch import dispatch
            from ..ops.registry import OPS
            return dispatch(OPS.detach, self)
        return self

    @property
    def data(self) -> Proxy:
        return self.detach()

    def requires_grad_(self, requires_grad: bool = True) -> Proxy:
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        return self.tracer.backward(self, gradient, retain_graph, create_graph, inputs)

    def __repr__(self) -> str:
        from ..ir.printer import type_str

        return f"Proxy(%{self.node.name} : {type_str(self.node)})"

    def __deepcopy__(self, memo):
        return self
