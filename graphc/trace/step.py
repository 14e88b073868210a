"""Capturing a training step: ``loss.backward()``, optimizer and scheduler calls in a trace.

A compiled function that trains (``loss.backward(); opt.step(); opt.zero_grad()``) is
traced once more in grad mode with a ``StepCapture`` on the tracer. Its forward ops are
recorded as usual; then

- ``loss.backward()`` records where the gradient starts (the loss, and the gradient given
  for a non-scalar one) and puts a *marker* in ``.grad`` of every weight that requires
  grad: the program computes the gradients (``compiler.step`` differentiates the graph)
  and returns them; after the program ran, they are accumulated into ``.grad`` as eager's
  ``AccumulateGrad`` does (hooks included);
- ``Optimizer.step``/``zero_grad``, ``Module.zero_grad`` and ``LRScheduler.step`` are not
  run while tracing: they are recorded on a *tape*, replayed in order after the program
  on every call, so they run their own (eager, or fused native) code with the live
  learning rates, state and gradients.

What the tape cannot express is refused with a ``TraceError`` (the call then runs
eagerly, and says why): an op on a gradient (``clip_grad_norm_`` between ``backward`` and
``step``), an op reading a weight after an optimizer step, a second ``backward``, a
``backward`` with ``inputs=`` or ``create_graph=True``, an effect given a traced tensor
(``ReduceLROnPlateau.step(loss)``), an optimizer closure.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

from ..ir.shape_prop import as_meta
from ..tensor import Tensor
from .proxy import Proxy, TraceError


class BackwardInTrace(TraceError):
    """``backward()`` of a traced tensor where no step is being captured."""


class StepCapture:
    """What a step trace learned: the loss, the weights given gradient markers, the tape."""

    def __init__(self):
        self.loss = None          # the node backward() started from
        self.gradient = None      # its gradient's node (a non-scalar loss), or None
        self.marked: list[tuple[str, Tensor]] = []  # (weight target, weight) given markers
        self.markers: set = set()  # the markers' nodes
        self.tape: list = []      # ("backward",) or ("call", what, a callable)
        self.stepped = False      # an optimizer step was recorded: weights are now stale
        self._saved: dict[int, tuple[Tensor, object]] = {}  # id -> (tensor, its .grad)

    # ---- the trace's view of .grad --------------------------------------------------
    def _set_grad(self, t: Tensor, value) -> None:
        self._saved.setdefault(id(t), (t, t.grad))
        t.grad = value

    def restore(self) -> None:
        """Give every tensor whose ``.grad`` the trace changed its own back."""
        for t, grad in self._saved.values():
            t.grad = grad
        self._saved.clear()

    # ---- what the traced code does -------------------------------------------------
    def backward(self, tracer, loss: Proxy, gradient=None, retain_graph=None,
                 create_graph: bool = False, inputs=None) -> None:
        if self.loss is not None:
            raise TraceError("a second backward() in a compiled step: one backward per "
                             "compiled call is captured")
        if create_graph or inputs is not None:
            raise TraceError("backward(create_graph=True) or backward(inputs=...) in a "
                             "compiled step is not captured")
        if gradient is None and loss.numel() != 1:
            raise TraceError(f"backward() of a non-scalar output (shape {tuple(loss.shape)}) "
                             "needs a gradient")
        self.loss = loss.node
        if gradient is not None:
            self.gradient = tracer.lift(gradient).node if isinstance(gradient, Tensor) else None
            if self.gradient is None:
                raise TraceError("backward(gradient=...) needs a tensor")
        for target, value in list(tracer.attrs.items()):
            if not isinstance(value, Tensor) or not value.requires_grad \
                    or not value.dtype.is_floating_point:
                continue
            if value.grad_fn is not None:
                raise TraceError(f"{target} requires grad but is not a leaf: a compiled step "
                                 "accumulates gradients into leaves only")
            node = tracer.graph.placeholder(f"grad_marker_{len(self.marked)}")
            node.meta.update(shape=tuple(value.shape), dtype=value.dtype, stride=None)
            marker = Proxy.wrap(as_meta(value), node, tracer)
            self.markers.add(node)
            self.marked.append((target, value))
            self._set_grad(value, marker)
        self.tape.append(("backward",))

    def check_inputs(self, op_name: str, inputs, tracer) -> None:
        """Refuse an op the tape cannot order: one on a gradient, or one reading a weight
        after an optimizer step."""
        for x in inputs:
            if not isinstance(x, Tensor):
                continue
            if isinstance(x, Proxy):
                if x.node in self.markers:
                    raise TraceError(
                        f"{op_name} of a gradient after backward() (clip_grad_norm_, hand-written "
                        "updates): a compiled step hands gradients to the optimizer as they "
                        "are; run such code eagerly, or use the optimizer's options (e.g. "
                        "weight_decay)")
                weight = x.node.op == "get_attr"
            else:
                weight = id(x) in tracer._names or tracer._existed(x)
            if weight and self.stepped:
                raise TraceError(
                    f"{op_name} reads a weight after an optimizer step: a compiled step runs "
                    "the optimizer after its program, so ops after opt.step() may only use "
                    "values computed before it")

    def effect(self, obj, name: str, args: tuple, kwargs: dict, params=None):
        """An optimizer, module or scheduler call: recorded on the tape, not run now (the
        replay calls it through the object, as the user's code does)."""
        what = f"{type(obj).__name__}.{name}"
        values = list(args) + list(kwargs.values())
        if any(isinstance(v, Tensor) for v in values) or any(callable(v) for v in values):
            raise TraceError(f"{what} with a tensor or a function as argument (a closure, "
                             "ReduceLROnPlateau's metric) inside a compiled step is not "
                             "captured")
        self.tape.append(("call", what, functools.partial(_call, obj, name, args, kwargs)))
        if what.endswith(".step") and params is not None:
            self.stepped = True
        if what.endswith("zero_grad"):
            set_to_none = kwargs.get("set_to_none", args[0] if args else True)
            for p in params or ():
                if p.grad is not None:
                    if not set_to_none:
                        raise TraceError(f"{what}(set_to_none=False) in a compiled step is not "
                                         "captured: the default (set_to_none=True) is")
                    self._set_grad(p, None)


def _call(obj, name: str, args: tuple, kwargs: dict):
    return getattr(obj, name)(*args, **kwargs)


def _subclasses(cls) -> list:
    out, todo = [], [cls]
    while todo:
        c = todo.pop()
        out.append(c)
        todo.extend(c.__subclasses__())
    return out


@contextmanager
def intercept_effects(capture: StepCapture):
    """While the block runs, optimizer steps and zero_grads, module zero_grads and scheduler
    steps go to ``capture``'s tape instead of running."""
    from ..nn.module import Module
    from ..optim.lr_scheduler.base import LRScheduler
    from ..optim.optimizer import Optimizer

    def optimizer_params(opt):
        return [p for g in opt.param_groups for p in g["params"]]

    patched = []
    for base, name, params in ((Optimizer, "step", optimizer_params),
                               (Optimizer, "zero_grad", optimizer_params),
                               (Module, "zero_grad", lambda m: list(m.parameters())),
                               (LRScheduler, "step", None)):
        for cls in _subclasses(base):
            original = cls.__dict__.get(name)
            if original is None:
                continue

            def effect(obj, *args, _name=name, _params=params, **kwargs):
                return capture.effect(obj, _name, args, kwargs,
                                      _params(obj) if _params is not None else None)

            patched.append((cls, name, original))
            setattr(cls, name, effect)
    try:
        yield
    finally:
        for cls, name, original in reversed(patched):
            setattr(cls, name, original)
