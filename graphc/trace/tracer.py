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

import copy
import inspect
import re
from contextlib import contextmanager

from ..autograd import enable_grad, is_grad_enabled, no_grad
from ..errors import ShapeError, user_location
from ..ir.graph import Graph
from ..ir.graph_module import CAPTURED, GraphModule
from ..ir.node import map_arg
from ..ir.shape_prop import as_meta, record_meta
from ..nn.module import Module
from ..ops.dispatch import DispatchMode, modes_replaced, run_backend
from ..ops.registry import Flag, OpDef
from ..tensor import Tensor, storages_made
from .proxy import Proxy, TensorSpec, TraceError
from .step import BackwardInTrace, StepCapture, intercept_effects

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
        # a training trace runs in grad mode and marks the ops recorded without it
        # (``meta["no_grad"]``) and records ``detach()``: the joint graph needs both
        self.training = False
        # the ids of the storages made while tracing (``storages_made``), or None: tensors
        # that existed before (a global model's weights, a global tensor) are state the
        # program reads live, not constants (see ``capture``)
        self.born: set[int] | None = None
        self.step = None  # a StepCapture while a training step is traced (see trace.step)
        self.known_as: dict[int, str] = {}  # id -> the global or closure name (for names)

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
        if name is None and self._existed(x):
            name = self._names[id(x)] = self._fresh(CAPTURED)
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
        return any(isinstance(x, Proxy) or id(x) in self._names or self._existed(x)
                   for x in inputs if isinstance(x, Tensor))

    def _existed(self, x: Tensor) -> bool:
        """``x`` is not the root's and existed before the trace began: live state."""
        return self.born is not None and id(x._storage) not in self.born and not x.is_meta

    def _fresh(self, prefix: str) -> str:
        i = 0
        while f"{prefix}{i}" in self.attrs or f"{prefix}{i}" in self._taken or (
                self.root is not None and hasattr(self.root, f"{prefix}{i}")):
            i += 1
        return f"{prefix}{i}"

    def capture(self, module: Module) -> None:
        """A module the root does not hold (a global model a function calls): installed as
        ``_captured<i>`` by reference, so the program reads its weights live, as the root's
        (in-place updates seen, a replaced weight noticed)."""
        hint = self.known_as.get(id(module))
        name = self._fresh(f"{CAPTURED}_{hint}_" if hint else CAPTURED)
        self.attrs[name] = module
        for path, m in module.named_modules():
            self._module_names.setdefault(id(m), f"{name}.{path}" if path else name)
        for path, t in list(module.named_parameters()) + list(module.named_buffers()):
            self._names.setdefault(id(t), f"{name}.{path}")

    # ---- the dispatch mode -------------------------------------------------------
    def handle(self, op: OpDef, inputs: tuple, attrs: dict):
        if self.step is not None:
            self.step.check_inputs(op.name, inputs, self)
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
        if self.training and not is_grad_enabled():
            node.meta["no_grad"] = True
        if Flag.MUTATES in op.flags:
            record_meta(node, out)
            return out  # the written tensor itself (its proxy), now changed
        if op.outputs != 1:
            raise TraceError(f"{op.name}: ops with {op.outputs} outputs cannot be traced yet")
        record_meta(node, out)
        return Proxy.wrap(out, node, self)

    def backward(self, loss: Proxy, gradient, retain_graph, create_graph, inputs) -> None:
        if self.step is None:
            raise BackwardInTrace(
                f"backward() of a traced tensor (%{loss.node.name}): a compiled function runs "
                "the backward pass (and the optimizer calls after it) as a compiled step only "
                "when called with grad enabled; traced otherwise, it cannot")
        self.step.backward(self, loss, gradient, retain_graph, create_graph, inputs)

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
        if self.born is not None and id(module) not in self._module_names and module is not self.root:
            self.capture(module)
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


def trace(fn_or_module, *example_inputs, concrete_args: dict | None = None, leaf_modules=(),
          mode: str = "symbolic") -> GraphModule:
    """Capture ``fn_or_module`` into a GraphModule.

    ``example_inputs`` are tensors, meta tensors or ``TensorSpec(shape, dtype)`` (or nested
    tuples, lists and dicts of them), one per parameter that is not in ``concrete_args``,
    in order; the ones past the named parameters go to ``*args``. ``concrete_args`` fixes
    other parameters by name (their values are baked into the graph; names that are not
    parameters go to ``**kwargs``). Each tensor becomes a placeholder named by its path
    (``x``, ``args_0``, ``batch_mask``). ``leaf_modules`` is a tuple of Module classes kept
    as ``call_module``. With ``mode='example'`` the example inputs' values are used and
    the GraphModule's ``specializations`` lists the value-dependent decisions taken.

        gm = graphc.trace(model, graphc.randn(8, 32))
        print(gm.graph)
    """
    root = fn_or_module if isinstance(fn_or_module, Module) else None
    fn = fn_or_module.forward if root is not None else fn_or_module
    concrete = dict(concrete_args or {})
    params = list(inspect.signature(fn).parameters.values())
    bound, remaining = [], list(example_inputs)
    names = {p.name for p in params}
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            bound.append(tuple(_example(p.name, v) for v in remaining))
            remaining = []
        elif p.kind == p.VAR_KEYWORD:
            bound.append({k: v for k, v in concrete.items() if k not in names})
            concrete[p.name] = None  # baked, as concrete_args are
        elif p.name in concrete:
            bound.append(concrete[p.name])
        elif remaining:
            bound.append(_example(p.name, remaining.pop(0)))
        elif p.default is not p.empty:
            bound.append(p.default)
        else:
            raise TraceError(f"no example input for parameter {p.name!r} of "
                             f"{getattr(fn, '__qualname__', fn)}", location="")
    unknown = set() if any(p.kind == p.VAR_KEYWORD for p in params) else set(concrete) - names
    if remaining or unknown:
        extra = [f"{len(remaining)} extra inputs"] if remaining else []
        extra += [f"unknown concrete_args {sorted(unknown)}"] if unknown else []
        raise TraceError(f"trace: {', '.join(extra)}", location="")
    return trace_bound(fn_or_module, params, tuple(bound), root=root, baked=set(concrete),
                       leaf_modules=leaf_modules, mode=mode)


def _example(name: str, value):
    if isinstance(value, (Tensor, TensorSpec, tuple, list, dict)):
        return value
    raise TraceError(f"input {name!r} is a {type(value).__name__}, not a tensor; pass it as "
                     f"concrete_args={{{name!r}: {value!r}}}", location="")


def trace_bound(call, params: list, bound: tuple, *, root: Module | None = None, baked=(),
                leaf_modules=(), mode: str = "symbolic", training: bool = False,
                step: bool = False) -> GraphModule:
    """Capture ``call`` applied to ``bound``: one value per parameter of ``params`` (a
    tuple for ``*args``, a dict for ``**kwargs``). Every tensor or TensorSpec in a value
    (through nested tuples, lists and dicts, in order) becomes a placeholder named by its
    path; other values, and the parameters named in ``baked``, are baked into the graph.
    ``root`` is the module whose parameters and buffers are read by name (``get_attr``):
    the module itself, or the instance of a compiled method. ``training``: the call runs
    in grad mode, and the graph keeps what a backward needs to know (``detach()``, and
    ``meta["no_grad"]`` on ops recorded under ``no_grad``). ``step`` (with ``training``):
    capture a training step, ``backward()`` and optimizer calls (``trace.step``); the
    GraphModule's ``step_capture`` says what was captured."""
    if mode not in MODES:
        raise ValueError(f"trace: mode must be 'symbolic' or 'example', got {mode!r}")
    tracer = Tracer(root, mode, leaf_modules)
    tracer.training = training
    tracer.known_as = _names_in_scope(call)
    with storages_made() as born:
        tracer.born = born
        if not step:
            return _trace_with(tracer, call, params, bound, root, baked, mode, training)
        tracer.step = StepCapture()
        try:
            with intercept_effects(tracer.step):
                gm = _trace_with(tracer, call, params, bound, root, baked, mode, training)
        finally:
            tracer.step.restore()
        object.__setattr__(gm, "step_capture", tracer.step)
        return gm


def _trace_with(tracer: Tracer, call, params: list, bound: tuple, root, baked, mode: str,
                training: bool) -> GraphModule:

    def placeholder(path: str, value):
        node = tracer.graph.placeholder(re.sub(r"\W+", "_", path).strip("_") or "input")
        payload = as_meta(value) if mode == "symbolic" or isinstance(value, TensorSpec) \
            else value.detach()
        record_meta(node, payload)
        return Proxy.wrap(payload, node, tracer)

    args = tuple(a if p.name in baked else map_tensors(a, placeholder, p.name)
                 for p, a in zip(params, bound))
    positional, keywords = unbind(params, args)
    with (enable_grad() if training else no_grad()), _intercept_module_calls(tracer), tracer:
        out = call(*positional, **keywords)  # (a root module's hooks run too)
    tracer.graph.output(map_arg(_lift_output(tracer, out), lambda n: n))
    name = type(root).__name__ if call is root else getattr(call, "__name__", "GraphModule")
    gm = GraphModule(tracer.attrs, tracer.graph, class_name=name)
    gm.training = root.training if root is not None else False
    object.__setattr__(gm, "specializations", tracer.specializations)
    object.__setattr__(gm, "trace_mode", mode)
    object.__setattr__(gm, "output_structure", output_structure(out))
    tracer.graph.lint(gm)
    return gm


def scope_objects(fn, types) -> list[tuple]:
    """(namespace dict or closure cell, name, value) for each global name and closure
    variable ``fn``'s code reads whose value is an instance of ``types``."""
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    found = [(fn.__globals__, name, fn.__globals__[name]) for name in code.co_names
             if isinstance(fn.__globals__.get(name), types)]
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        value = cell_value(cell)
        if isinstance(value, types):
            found.append((cell, name, value))
    return found


def cell_value(cell):
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell
        return None


def _names_in_scope(fn) -> dict[int, str]:
    """id -> name of the modules ``fn`` reads from its globals and closure (what a trace
    calls the modules it captures: ``_captured_model_0``)."""
    found = {}
    for _, name, value in scope_objects(fn, Module):
        found.setdefault(id(value), name)
    return found


def unbind(params: list, bound: tuple) -> tuple[list, dict]:
    """(positional, keyword) arguments that call a function of ``params`` with ``bound``."""
    positional, keywords = [], {}
    for p, a in zip(params, bound):
        if p.kind == p.VAR_POSITIONAL:
            positional.extend(a)
        elif p.kind == p.VAR_KEYWORD:
            keywords.update(a)
        elif p.kind == p.KEYWORD_ONLY:
            keywords[p.name] = a
        else:
            positional.append(a)
    return positional, keywords


# ---- nested arguments and results -----------------------------------------------------------
# Tensors inside tuples (namedtuples too), lists and dicts are found in the order
# ``graphc.tensor.tensors_in`` lists them; compiled programs take them in that order.

def map_tensors(value, fn, path: str = ""):
    """``value`` with each tensor (or TensorSpec) ``t`` in its nested tuples, lists and dicts
    replaced by ``fn(path, t)``; ``path`` spells where it is (``x[1]['mask']``, ``p.pos``)."""
    if isinstance(value, (Tensor, TensorSpec)):
        return fn(path, value)
    if isinstance(value, tuple):
        fields = getattr(type(value), "_fields", None)
        items = [map_tensors(v, fn, f"{path}.{fields[i]}" if fields else f"{path}[{i}]")
                 for i, v in enumerate(value)]
        return rebuild(value, items)
    if isinstance(value, list):
        return rebuild(value, [map_tensors(v, fn, f"{path}[{i}]") for i, v in enumerate(value)])
    if isinstance(value, dict):
        return rebuild(value, [map_tensors(v, fn, f"{path}[{k!r}]") for k, v in value.items()])
    return value


def rebuild(like, items: list):
    """A container of ``like``'s type (and keys) holding ``items``."""
    t = type(like)
    if isinstance(like, dict):
        if t is dict:
            return dict(zip(like, items))
        new = copy.copy(like)  # a subclass (OrderedDict, defaultdict): its type and factory
        new.update(zip(like, items))
        return new
    if t is tuple or t is list:
        return t(items)
    if hasattr(t, "_fields"):  # a namedtuple
        return t(*items)
    return t(items)


def output_structure(value):
    """What a traced result's containers need to be given back after the graph (which
    keeps plain tuples, lists and dicts): None when that is all they are, else a tree of
    (container, children)."""
    if isinstance(value, (tuple, list, dict)):
        items = list(value.values()) if isinstance(value, dict) else list(value)
        children = [output_structure(v) for v in items]
        if type(value) in (tuple, list, dict) and not any(c is not None for c in children):
            return None
        template = rebuild(value, [None] * len(items))  # no traced values kept alive
        return template, children
    return None


def restore_structure(value, structure):
    """``value`` (a graph's result) with the container types ``structure`` recorded."""
    if structure is None:
        return value
    template, children = structure
    items = list(value.values()) if isinstance(value, dict) else list(value)
    return rebuild(template, [restore_structure(v, c) for v, c in zip(items, children)])


def _lift_output(tracer: Tracer, value):
    if isinstance(value, Tensor):
        return tracer.lift(value).node
    if isinstance(value, (tuple, list)):
        return type(value)(_lift_output(tracer, v) for v in value) \
            if type(value) in (tuple, list) else tuple(_lift_output(tracer, v) for v in value)
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
