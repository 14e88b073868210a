"""GraphModule: a Module that owns a graph and the parameters and buffers it reads.

Calling it runs Python source generated from the graph (``gm.code``), regenerated
whenever the graph changes. Parameters are the original objects, not copies, so
in-place updates to the model's weights are seen.

    gm = graphc.trace(model, x)
    print(gm.code)
    def forward(self, x):
        fc1_weight = self.fc1.weight
        ...
"""

from __future__ import annotations

import keyword
import linecache
import math
import weakref
from typing import Any

from ..dtype import dtype as DType
from ..nn.module import Module
from ..nn.parameter import Parameter
from ..ops.dispatch import dispatch
from ..ops.registry import OPS
from ..symbolic import SymInt, bare_symbol
from ..tensor import Tensor
from .graph import Graph
from .node import Node
from .printer import shown_kwargs


class _OpCallers:
    """``ops.relu(x)`` in generated code: one dispatch call per op."""

    def __getattr__(self, name: str):
        op = OPS[name]
        fn = lambda *args, **kwargs: dispatch(op, *args, **kwargs)
        fn.__name__ = name
        setattr(self, name, fn)
        return fn


# the attribute names under which a trace holds state it found outside its root (a global
# model's modules, tensors that existed before the trace): read live, never folded
CAPTURED = "_captured"
_OPS = OP_CALLERS = _OpCallers()  # public name: for code written out of a graph (repros)


def fetch(root, target: str):
    """The attribute at dotted path ``target`` ('layers.0.weight')."""
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _path_expr(target: str) -> str:
    if all(p.isidentifier() and not keyword.iskeyword(p) for p in target.split(".")):
        return "self." + target
    return f"fetch(self, {target!r})"


class _CodeWriter:
    """Turns a graph into the source of ``forward(self, ...)``."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.constants: dict[str, Any] = {}

    def value(self, v) -> str:
        if isinstance(v, Node):
            return v.name
        if isinstance(v, tuple):
            inner = ", ".join(self.value(x) for x in v)
            return f"({inner},)" if len(v) == 1 else f"({inner})"
        if isinstance(v, list):
            return "[" + ", ".join(self.value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{self.value(k)}: {self.value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, DType):
            return f"graphc.{v.name}"
        if isinstance(v, float) and not math.isfinite(v):
            return f"float({str(v)!r})"
        if isinstance(v, slice):
            return f"slice({self.value(v.start)}, {self.value(v.stop)}, {self.value(v.step)})"
        if v is None or isinstance(v, (bool, int, float, str)):
            return repr(v)
        if isinstance(v, SymInt):  # a symbolic size: named from the inputs' shapes
            return f"({v})"
        name = f"_const{len(self.constants)}"  # anything else (a generator...) is passed in
        self.constants[name] = v
        return name

    def line(self, n: Node) -> str:
        args = [self.value(a) for a in n.args]
        kwargs = [f"{k}={self.value(v)}" for k, v in shown_kwargs(n).items()]
        call = ", ".join(args + kwargs)
        if n.op == "get_attr":
            rhs = _path_expr(n.target)
        elif n.op == "call_function":
            rhs = f"ops.{n.target.name}({call})"
        elif n.op == "call_method":
            rest = ", ".join(args[1:] + kwargs)
            rhs = f"{args[0]}.{n.target}({rest})"
        elif n.op == "call_module":
            rhs = f"{_path_expr(n.target)}({call})"
        else:
            raise AssertionError(n.op)
        where = n.meta.get("location")
        return f"    {n.name} = {rhs}" + (f"  # {where}" if where else "")

    def source(self) -> str:
        params = ", ".join(["self"] + [n.name for n in self.graph.placeholders])
        body = [f"    {s} = {p}.shape[{d}]" for s, (p, d) in _size_sources(self.graph).items()]
        body += [self.line(n) for n in self.graph.nodes if n.op not in ("placeholder", "output")]
        body.append(f"    return {self.value(self.graph.output_node.args[0])}")
        return f"def forward({params}):\n" + "\n".join(body) + "\n"


def _size_sources(graph: Graph) -> dict[str, tuple[str, int]]:
    """Each symbolic size of the inputs (``graphc.symbolic``) and the first (input, dim)
    that has it, so generated code reads the sizes of the call it runs on."""
    out: dict = {}
    for p in graph.placeholders:
        for d, n in enumerate(p.meta.get("shape", ())):
            name = bare_symbol(n)
            if name is not None and name not in out:
                out[name] = (p.name, d)
    return out


class GraphModule(Module):
    """A module whose forward is a graph. ``root`` (a Module, or a dict of name -> value)
    provides the parameters, buffers, constants and submodules the graph reads."""

    def __init__(self, root: Module | dict, graph: Graph, class_name: str = "GraphModule"):
        super().__init__()
        object.__setattr__(self, "graph", graph)
        graph.owner = weakref.ref(self)
        object.__setattr__(self, "_class_name", class_name)
        object.__setattr__(self, "_compiled_version", None)
        for n in graph.nodes:
            if n.op in ("get_attr", "call_module"):
                top = n.target.split(".", 1)[0]
                if top != n.target and top.startswith(CAPTURED):
                    # a module the trace found outside its root: held by reference (the
                    # program reads its weights live)
                    if top not in self._modules:
                        self.add_module(top, root[top] if isinstance(root, dict) else fetch(root, top))
                    continue
                value = root[n.target] if isinstance(root, dict) else fetch(root, n.target)
                self._install(n.target, value)

    def _install(self, target: str, value) -> None:
        *path, last = target.split(".")
        owner = self
        for part in path:
            if part not in owner._modules:
                owner.add_module(part, Module())
            owner = owner._modules[part]
        if isinstance(value, Module):
            owner.add_module(last, value)
        elif isinstance(value, Parameter):
            owner.register_parameter(last, value)
        elif isinstance(value, Tensor):
            # constants the compiler made are not part of the model's state
            owner.register_buffer(last, value,
                                  persistent=not last.startswith(("_tensor_constant", "_folded")))
        else:
            object.__setattr__(owner, last, value)

    # ---- generated code ----------------------------------------------------------
    def recompile(self) -> str:
        """Regenerate ``forward`` from the graph; returns the source."""
        writer = _CodeWriter(self.graph)
        source = writer.source()
        filename = f"<graphc GraphModule {id(self):x}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        import graphc

        scope = {"ops": _OPS, "graphc": graphc, "fetch": fetch, **writer.constants}
        exec(compile(source, filename, "exec"), scope)
        object.__setattr__(self, "_forward", scope["forward"])
        object.__setattr__(self, "_source", source)
        object.__setattr__(self, "_compiled_version", self.graph.version)
        return source

    def _ensure_compiled(self) -> None:
        if self._compiled_version != self.graph.version:
            self.recompile()

    @property
    def code(self) -> str:
        self._ensure_compiled()
        return self._source

    def forward(self, *args):
        self._ensure_compiled()
        expected = len(self.graph.placeholders)
        if len(args) != expected:
            names = ", ".join(n.name for n in self.graph.placeholders)
            raise TypeError(f"{self._class_name}.forward takes {expected} inputs ({names}), "
                            f"got {len(args)}")
        return self._forward(self, *args)

    def print_readable(self, print_output: bool = True) -> str:
        text = f"class {self._class_name}(graphc.nn.Module):\n" + "\n".join(
            "    " + line for line in self.code.splitlines())
        if print_output:
            print(text)
        return text

    def _get_name(self) -> str:
        return self._class_name

    def __str__(self) -> str:
        return str(self.graph)

    def __deepcopy__(self, memo):
        import copy

        root = {n.target: copy.deepcopy(fetch(self, n.target), memo)
                for n in self.graph.nodes if n.op in ("get_attr", "call_module")}
        out = GraphModule(root, self.graph.copy()[0], self._class_name)
        out.training = self.training
        return out
