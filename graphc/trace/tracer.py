"""``graphc.trace``: record the ops a function or module runs into a GraphModule.

The tracer is a dispatch mode. Inputs become placeholders and Proxies; every op that
reads a Proxy (or a parameter, or draws random numbers) becomes a ``call_function`` node,
computed on the Proxies' payloads to learn its shape and dtype. Parameters and buffers
become ``get_attr`` nodes, so the graph reads the live weights. Modules are inlined,
except leaf modules, which become ``call_module``. Python control flow on shapes and
other Python values runs normally and is baked into the graph.

Two modes:
- ``symbolic`` (default): payloads are meta tensors; control flow on tensor values
  raises a TraceError at the user's line.
- ``example``: payloads are the example inputs' values (like torch.jit.trace); control
  flow on values follows the example and ``gm.specializations`` lists every decision.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

from ..autograd import no_grad
from ..errors import ShapeError, user_location
from ..ir.graph import Graph
from ..ir.graph_module import GraphModule
from ..ir.node import map_arg
from ..ir.shape_prop import as_meta, record_meta
from ..nn.module import Module
from ..ops.dispatch import DispatchMode, modes_replaced, run_backend
from ..ops.registry import Flag, OpDef
from ..tensor import Tensor
from .proxy import Proxy, TensorSpec, TraceError

MODES = ("symbolic", "example")


class Tracer(DispatchMode):
    def __init__(self, root: Module | None, mode: str, leaf_modules=(), graph: Graph | None = None,
                 taken_names=(), locate: bool = True):
        if mode not in MODES:
            raise ValueError(f"trace: mode must be 'symbolic' or 'example', got {mode!r}")
        self.graph = graph if graph is not None else Graph()
        self._taken = taken_names  # attribute names the owning module already uses (``in``)
        self._next_constant = 0  # the next _tensor_constant<i> to try
        self.mode = mode
        self.root = root
        self.leaf_modules = tuple(leaf_modules)
        self.locate = locate  # record each node's user line (a pass sets its own instead)
        self.attrs: dict[str, object] = {}  # get_attr / call_module target -> object
        self._attr_proxies: dict[int, Proxy] = {}
        self._names: dict[int, str] = {}
        self._module_names: dict[int, str] = {}
        if root is not None:
            for name, t in list(root.named_parameters()) + list(root.named_buffers()):
                self._names[id(t)] = name
            self._module_names = {id(m): name for name, m in root.named_modules() if name}
        self.specializations: list[str] = []
        self._concretizing = False

    # ---- turning values into graph arguments -------------------------------------
    def _attr(self, target: str, value: Tensor) -> Proxy:
        proxy = self._attr_proxies.get(id(value))
        if proxy is None:
            node = self.graph.get_attr(target)
            self.attrs[target] = value
            payload = as_meta(value) if self.mode == "symbolic" else value.detach()
            record_meta(node, payload)
            proxy = Proxy.wrap(payload, node, self)
            self._attr_proxies[id(value)] = proxy
        return proxy

    def lift(self, x):
        """A parameter, buffer or constant tensor as a get_attr Proxy; others as they are."""
        if isinstance(x, Proxy) or not isinstance(x, Tensor):
            return x
        name = self._names.get(id(x))
        if name is None:
            i = self._next_constant
            while f"_tensor_constant{i}" in self.attrs or f"_tensor_constant{i}" in self._taken:
                i += 1
            self._next_constant = i + 1
            name = self._names[id(x)] = f"_tensor_constant{i}"
            proxy = self._attr(name, x)
            proxy.node.meta["constant"] = True  # not the module's: eager may make it anew
            return proxy
        return self._attr(name, x)

    def _uses_proxy(self, inputs) -> bool:
        return any(isinstance(x, Proxy) or id(x) in self._names for x in inputs
                   if isinstance(x, Tensor))

    # ---- the dispatch mode -------------------------------------------------------
    def handle(self, op: OpDef, inputs: tuple, attrs: dict):
        if not self._uses_proxy(inputs) and not op.flags & {Flag.FACTORY, Flag.IMPURE}:
            return run_backend(op, inputs, attrs)  # constant work: done now, once
        inputs = tuple(self.lift(x) for x in inputs)
        payload_attrs = attrs
        if Flag.FACTORY in op.flags and self.mode == "symbolic":
            payload_attrs = {**attrs, "device": "meta"}
            if str(attrs.get("device")) == "meta":  # zeros_like(proxy): the proxy's payload
                attrs = {**attrs, "device": None}  # device is not the program's
        try:
            out = run_backend(op, inputs, payload_attrs)
        except ShapeError as e:
            if "depends on" in str(e):
                raise TraceError(f"{op.name}: the result's shape depends on tensor values, which "
                                 "symbolic tracing does not know; trace with mode='example' to "
                                 "specialise on the example's values") from None
            raise
        args = tuple(x.node if isinstance(x, Proxy) else x for x in inputs)
        node = self.graph.call_function(op, args, attrs)
        if self.locate:
            node.meta["location"] = user_location()
        if Flag.MUTATES in op.flags:
            record_meta(node, out)
            return out  # the written tensor itself (its proxy), now changed
        if op.outputs != 1:
            raise TraceError(f"{op.name}: ops with {op.outputs} outputs cannot be traced yet")
        record_meta(node, out)
        return Proxy.wrap(out, node, self)

    def concretize(self, proxy: Proxy, what: str, compute):
        if self._concretizing:  # bool() asks item(): one decision, recorded once
            return compute()
        where = user_location()
        if self.mode == "symbolic":
            raise TraceError(
                f"{what} of a traced tensor (%{proxy.node.name}) needs its value, which symbolic "
                "tracing does not know: Python control flow cannot depend on tensor values. "
                "Fix the value with concrete_args=..., express the choice with graphc.where, "
                "or trace with mode='example' to specialise on the example", where)
        self._concretizing = True
        try:
            value = compute()
        finally:
            self._concretizing = False
        shown = value if not isinstance(value, list) else f"{len(value)} items"
        self.specializations.append(f"{where}: {what} of %{proxy.node.name} was {shown}")
        return value

    # ---- modules -----------------------------------------------------------------
    def call_module(self, module: Module, call, args: tuple, kwargs: dict):
        if not isinstance(module, self.leaf_modules) or id(module) not in self._module_names:
            return call(module, *args, **kwargs)
        target = self._module_names[id(module)]
        self.attrs[target] = module
        payload_out = _with_payloads(lambda: call(module, *args, **kwargs))
        node = self.graph.call_module(target, map_arg(_nodes(args), lambda n: n),
                                      _nodes(kwargs))
        node.meta["location"] = user_location()
        if isinstance(payload_out, Tensor):
            record_meta(node, payload_out)
            return Proxy.wrap(payload_out, node, self)
        if isinstance(payload_out, tuple):
            outs = []
            for i, item in enumerate(payload_out):
                if not isinstance(item, Tensor):
                    outs.append(item)
                    continue
                part = self.graph.call_method("__getitem__", (node, i))
                record_meta(part, item)
                outs.append(Proxy.wrap(item, part, self))
            return tuple(outs)
        raise TraceError(f"leaf module {target} returned {type(payload_out).__name__}; leaf "
                         "modules must return a tensor or a tuple")


def _nodes(value):
    """Proxies in an argument structure replaced by their nodes."""
    if isinstance(value, Proxy):
        return value.node
    if isinstance(value, (tuple, list)):
        return type(value)(_nodes(v) for v in value)
    if isinstance(value, dict):
        return {k: _nodes(v) for k, v in value.items()}
    return value


class _OnPayloads(DispatchMode):
    """Below the tracer, inside a leaf module: compute on payloads without recording; on
    meta payloads, the module's own (cpu) parameters take part as meta tensors."""

    def handle(self, op: OpDef, inputs: tuple, attrs: dict):
        if any(isinstance(x, Tensor) and x.is_meta for x in inputs):
            inputs = tuple(as_meta(x) for x in inputs)
        return run_backend(op, inputs, attrs)


def _with_payloads(fn):
    with modes_replaced(_OnPayloads()):
        return fn()


@contextmanager
def _intercept_module_calls(tracer: Tracer):
    original = Module.__call__

    def traced_call(module, *args, **kwargs):
        return tracer.call_module(module, original, args, kwargs)

    Module.__call__ = traced_call
    try:
        yield
    finally:
        Module.__call__ = original


def _signature(fn) -> list[inspect.Parameter]:
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        raise TraceError(f"cannot trace {getattr(fn, '__name__', fn)}: *args/**kwargs inputs are "
                         "not supported; give the function named parameters", location="")
    return params


def trace(fn_or_module, *example_inputs, concrete_args: dict | None = None, leaf_modules=(),
          mode: str = "symbolic") -> GraphModule:
    """Capture ``fn_or_module`` into a GraphModule.

    ``example_inputs`` are tensors, meta tensors or ``TensorSpec(shape, dtype)``, one per
    tensor parameter, in order; ``concrete_args`` fixes other parameters by name (their
    values are baked into the graph). ``leaf_modules`` is a tuple of Module classes kept
    as ``call_module``. With ``mode='example'`` the example inputs' values are used and
    the GraphModule's ``specializations`` lists the value-dependent decisions taken.

        gm = graphc.trace(model, graphc.randn(8, 32))
        print(gm.graph)
    """
    root = fn_or_module if isinstance(fn_or_module, Module) else None
    fn = fn_or_module.forward if root is not None else fn_or_module
    concrete = dict(concrete_args or {})
    params = _signature(fn)
    tracer = Tracer(root, mode, leaf_modules)
    args, remaining = [], list(example_inputs)
    for p in params:
        if p.name in concrete:
            args.append(concrete.pop(p.name))
        elif remaining:
            value = remaining.pop(0)
            if not isinstance(value, (Tensor, TensorSpec)):
                raise TraceError(f"input {p.name!r} is a {type(value).__name__}, not a tensor; "
                                 f"pass it as concrete_args={{{p.name!r}: {value!r}}}", location="")
            node = tracer.graph.placeholder(p.name)
            payload = as_meta(value) if mode == "symbolic" or isinstance(value, TensorSpec) \
                else value.detach()
            record_meta(node, payload)
            args.append(Proxy.wrap(payload, node, tracer))
        elif p.default is not p.empty:
            args.append(p.default)
        else:
            raise TraceError(f"no example input for parameter {p.name!r} of "
                             f"{getattr(fn, '__qualname__', fn)}", location="")
    if remaining or concrete:
        extra = [f"{len(remaining)} extra inputs"] if remaining else []
        extra += [f"unknown concrete_args {sorted(concrete)}"] if concrete else []
        raise TraceError(f"trace: {', '.join(extra)}", location="")
    positional = [a for p, a in zip(params, args) if p.kind != p.KEYWORD_ONLY]
    keywords = {p.name: a for p, a in zip(params, args) if p.kind == p.KEYWORD_ONLY}
    with no_grad(), _intercept_module_calls(tracer), tracer:  # a root module's hooks run too
        out = (root if root is not None else fn)(*positional, **keywords)
    tracer.graph.output(map_arg(_lift_output(tracer, out), lambda n: n))
    name = type(root).__name__ if root is not None else getattr(fn, "__name__", "GraphModule")
    gm = GraphModule(tracer.attrs, tracer.graph, class_name=name)
    gm.training = root.training if root is not None else False
    object.__setattr__(gm, "specializations", tracer.specializations)
    object.__setattr__(gm, "trace_mode", mode)
    tracer.graph.lint(gm)
    return gm


def _lift_output(tracer: Tracer, value):
    if isinstance(value, Tensor):
        return tracer.lift(value).node
    if isinstance(value, (tuple, list)):
        return type(value)(_lift_output(tracer, v) for v in value)
    if isinstance(value, dict):
        return {k: _lift_output(tracer, v) for k, v in value.items()}
    return value


def trace_into(gm: GraphModule, fn, args: tuple, kwargs: dict | None = None):
    """Record ``fn(*args, **kwargs)`` into ``gm.graph`` at its insertion point.

    Nodes among ``args`` (with shape/dtype meta) become Proxies; other values pass as they
    are. Returns the result with Proxies replaced by their nodes; constant tensors the
    function creates are installed on ``gm``. Used by the decomposition pass and
    ``replace_pattern``.
    """
    from ..ir.node import Node
    from ..tensor import empty_meta

    tracer = Tracer(None, "symbolic", graph=gm.graph, taken_names=_AttributesOf(gm),
                    locate=False)  # the caller places the new nodes at the replaced op's line

    def proxy(value):
        if isinstance(value, Node):
            return Proxy.wrap(empty_meta(value.meta["shape"], value.meta["dtype"]), value, tracer)
        return value

    with no_grad(), tracer:
        out = fn(*(proxy(a) for a in args), **{k: proxy(v) for k, v in (kwargs or {}).items()})
    result = _lift_output(tracer, out)
    for target, value in tracer.attrs.items():
        gm._install(target, value)
    return result


class _AttributesOf:
    """``name in _AttributesOf(gm)``: whether ``gm`` has an attribute of that name, asked
    for the few names a trace_into needs (listing every weight of the model on each call
    made decomposing a model with many weights quadratic)."""

    def __init__(self, gm: GraphModule):
        self.gm = gm

    def __contains__(self, name: str) -> bool:
        return hasattr(self.gm, name)
