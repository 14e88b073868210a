"""``graphc.compile``: a function or module, captured and compiled per call signature.

    model = graphc.compile(model)          # or @graphc.compile / @graphc.compile(check=True)
    with graphc.no_grad():
        y = model(x)                       # first call: trace, passes, fusion, LLVM; then cached

A call looks up its signature (guards.py); a hit runs the cached native program (one
native call). A miss traces the function on the call's inputs (tensors become graph
inputs, other arguments are baked in), compiles, and records why it compiled again.
Where capture fails (control flow on tensor values, unsupported Python) the call runs
eagerly and the reason is recorded with the user's line; ``fullgraph=True`` raises
instead. Calls that autograd must record (grad mode on and an input or weight requiring
grad) run eagerly: compiled graphs compute forward values only.

Dynamic sizes (``dynamic=True``, or by default once a dim has been seen with two sizes):
the marked dims are traced as symbols (``graphc.symbolic``) and one program, whose
kernels read those sizes per call, serves every call that fits its pattern (the
signature without those sizes) and its guards; a call that fits no program compiles one.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
import warnings
import weakref
from dataclasses import dataclass

from ..autograd.grad_mode import _state as _grad
from ..errors import OpError, WeightChanged, user_location, user_location_in, user_stacklevel
from ..nn.module import Module
from ..debug import debug_level, show
from ..tensor import Tensor
from ..codegen.sizes import SizeMismatch
from ..layout import reach
from ..passes.functionalize import FunctionalizeError, written_inputs
from ..trace import TensorSpec, TraceError, trace
from . import guards as G
from .pipeline import Unsized, compile_graph

MODES = ("static", "eager")
CACHE_LIMIT = 8


class CaptureError(RuntimeError):
    """``fullgraph=True`` and the function could not be captured as one graph."""

    def __init__(self, message: str, location: str | None):
        self.location = location
        super().__init__(message)


@dataclass
class EagerRun:
    """A call that ran eagerly, why, and the user's line."""

    reason: str
    location: str | None

    def __str__(self) -> str:
        where = f" at {self.location}" if self.location else ""
        return f"ran eagerly{where}: {self.reason}"


@dataclass
class Entry:
    """One compiled signature: the traced graph, its compiled program, its guards."""

    signature: tuple
    traced: object          # the GraphModule from the tracer
    compiled: object        # pipeline.CompiledGraph
    spec: object            # its Specialization for this signature
    guards: list
    trace_seconds: float
    example: tuple = ()     # the compiling call's arguments, tensors as weak references
    checked: bool = False
    all_tensors: bool = False  # every argument is a graph input: pass them as they are
    pattern: tuple | None = None  # with symbolic sizes: the signatures it may serve
    written: tuple = ()     # the tensor arguments (positions) the program writes into

    @property
    def stages_ms(self) -> dict[str, float]:
        """Milliseconds per compile stage: trace, then the program's (passes ... llvm)."""
        return {"trace": 1e3 * self.trace_seconds,
                **{k: 1e3 * v for k, v in self.spec.stage_seconds.items()}}


@dataclass
class _Eager:
    value: object  # what an eager run returned


class SizedPrograms:
    """A compiled function's entries with symbolic sizes: by pattern (the signature
    without the symbolic sizes), the exact signatures they have served, and the patterns
    known to compile with fixed sizes only."""

    def __init__(self):
        self.by_pattern: dict[tuple, list] = {}
        self.served: dict[tuple, Entry] = {}
        self.unsized: set[tuple] = set()
        self.miss = None  # the last call fitted a pattern but not its programs' guards

    def find(self, sig: tuple, pattern: tuple, tensors: list) -> Entry | None:
        """The entry whose guards these inputs' sizes pass, if any (then remembered under
        ``sig``); when a program of the pattern refused them, ``miss`` says why."""
        self.miss = None
        for entry in self.by_pattern.get(pattern, ()):
            try:
                entry.spec.sizes.bind(tensors)
            except SizeMismatch as e:
                self.miss = e
                continue
            if len(self.served) > 4096:
                self.served.clear()
            self.served[sig] = entry
            return entry
        return None

    def forget(self, entry: Entry) -> None:
        for sig in [s for s, e in self.served.items() if e is entry]:
            del self.served[sig]
        if entry.pattern is not None:
            self.by_pattern[entry.pattern] = [e for e in self.by_pattern[entry.pattern]
                                              if e is not entry]


class CompiledFunction:
    """What ``graphc.compile(fn)`` returns; call it like ``fn``.

    ``entries`` maps signatures to compiled graphs; ``recompiles`` and ``eager_runs``
    record, as data, each guard miss and each call that ran eagerly."""

    def __init__(self, fn, *, module: Module | None = None, mode: str = "static",
                 fullgraph: bool = False, dynamic: bool | None = None, check: bool = False,
                 cache_limit: int = CACHE_LIMIT, leaf_modules=(), passes=None):
        if mode not in MODES:
            raise ValueError(f"graphc.compile: mode must be 'static' or 'eager', got {mode!r}")
        if dynamic not in (None, True, False):
            raise ValueError(f"graphc.compile: dynamic must be True, False or None, got "
                             f"{dynamic!r}")
        if not isinstance(cache_limit, int) or cache_limit < 1:
            raise ValueError(f"graphc.compile: cache_limit must be a positive int, got "
                             f"{cache_limit!r}")
        self.fn, self.module, self.mode = fn, module, mode
        self.fullgraph, self.check, self.cache_limit = fullgraph, check, cache_limit
        self.dynamic = dynamic
        self.dynamic_dims: dict[str, set] = {}  # argument -> dims compiled with symbolic sizes
        self.static_reasons: list[EagerRun] = []  # why a dynamic compile stayed static
        self.sized = SizedPrograms()  # the entries with symbolic sizes
        self.leaf_modules, self.passes = tuple(leaf_modules), passes
        target = module.forward if module is not None else fn
        self.params = _parameters(target)
        self.names = tuple(p.name for p in self.params)
        self._arity = len(self.names)
        self.entries: dict[tuple, Entry] = {}
        self.recompiles: list[G.Recompile] = []
        self.eager_runs: list[EagerRun] = []
        self._eager: dict[tuple, EagerRun] = {}  # signatures that run eagerly, and why
        self._last: Entry | None = None
        self._warned: set[str] = set()
        functools.update_wrapper(self, target, updated=())
        if module is not None:
            self.__name__ = self.__qualname__ = type(module).__name__

    # ---- a call --------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if self.mode == "eager":
            return self._eager_call(args, kwargs)
        if kwargs or len(args) != self._arity:
            args = self._bind(args, kwargs)
        module = self.module
        try:
            sig = G.signature(args, module.training if module is not None else None)
        except TypeError as e:
            name = next((n for n, a in zip(self.names, args) if not _guardable(a)), "?")
            return self._run_eagerly(None, args, f"argument {name!r} cannot be guarded: {e}")
        entry = self.entries.get(sig) or self.sized.served.get(sig)
        if entry is None:
            if sig in self._eager:
                return self._eager_call(args, {})
            entry = self._find_sized(sig, args)
        if entry is None:
            entry = self._compile(sig, args)
            if entry is None:
                return self._eager_call(args, {})
            if type(entry) is _Eager:
                return entry.value
        if _grad.enabled and _needs_grad(args, entry.spec.params):
            return self._run_eagerly(sig, args, "autograd is recording (grad mode is on and an "
                                     "input or weight requires grad); compiled graphs compute "
                                     "values only: call under graphc.no_grad() to run compiled",
                                     remember=False)
        tensors = args if entry.all_tensors else [a for a in args if isinstance(a, Tensor)]
        if entry.written:
            shared = _sharing_memory(tensors, entry.written, entry.spec.params)
            if shared is not None:
                names = [n for n, a in zip(self.names, args) if isinstance(a, Tensor)]
                other = repr(names[shared[1]]) if type(shared[1]) is int else \
                    f"the weight {shared[1]}"
                return self._run_eagerly(None, args, (
                    f"argument {names[shared[0]]!r} shares memory with {other}, and the "
                    f"compiled program writes into {names[shared[0]]!r}; a call with such "
                    "arguments runs eagerly (pass separate tensors, e.g. .clone(), to run "
                    "compiled)"), remember=False)
        if self.check and not entry.checked:
            from .check import check_entry
            check_entry(entry, args, lambda copies: self._eager_call(tuple(copies), {}),
                        self.module)
            entry.checked = True
        try:
            return entry.spec.run(tensors)
        except WeightChanged as e:
            self._forget(entry)
            fresh = self._find_sized(sig, args)
            if fresh is not None:  # compiled since with the new weight (another size)
                return fresh.spec.run(tensors)
            self._record(G.Recompile("weight", e.attr, e.old, e.new, user_location(),
                                     "a weight replaced by a new tensor, or given a new shape "
                                     "or dtype, recompiles; update weights in place "
                                     "(w.copy_(new), optimizer steps) to keep the compiled "
                                     "graph"))
            entry = self._compile(sig, args, after_miss=False)
            if entry is None:
                return self._eager_call(args, {})
            return entry.value if type(entry) is _Eager else entry.spec.run(tensors)

    def _eager_call(self, args, kwargs):
        target = self.module if self.module is not None else self.fn
        if not kwargs and any(p.kind == p.KEYWORD_ONLY for p in self.params):
            kwargs = {p.name: a for p, a in zip(self.params, args) if p.kind == p.KEYWORD_ONLY}
            args = tuple(a for p, a in zip(self.params, args) if p.kind != p.KEYWORD_ONLY)
        return target(*args, **kwargs)

    def _run_eagerly(self, sig, args, reason: str, remember: bool = True):
        self._note_eager(sig if remember else None, EagerRun(reason, user_location()))
        return self._eager_call(args, {})

    def _note_eager(self, sig, run: EagerRun) -> None:
        """Record (once per reason in a row) and warn (once per reason) an eager run;
        with ``sig``, that signature keeps running eagerly."""
        if sig is not None:
            self._eager[sig] = run
        if not self.eager_runs or self.eager_runs[-1].reason != run.reason:
            self.eager_runs.append(run)
        self._warn_once(run.reason, f"graphc.compile: {run}")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=user_stacklevel())

    def _bind(self, args: tuple, kwargs: dict) -> tuple:
        """Arguments in parameter order (defaults filled), so a signature has one form."""
        try:
            bound = inspect.Signature(self.params).bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{self.__name__}(): {e}") from None
        bound.apply_defaults()
        return tuple(bound.arguments[n] for n in self.names)

    # ---- a miss: capture and compile -----------------------------------------------------
    def _compile(self, sig: tuple, args: tuple, after_miss: bool = True) -> Entry | _Eager | None:
        """The new entry; or, where capture failed, the eager result; None at the limit."""
        location = user_location()
        if len(self.entries) >= self.cache_limit:
            self._note_eager(sig, EagerRun(
                f"the cache limit of {self.cache_limit} compiled signatures is reached; new "
                "signatures run eagerly (raise cache_limit=, or keep the varying argument to a "
                "few sizes or values)", location))
            return None
        if after_miss and self._last is not None:
            miss = G.diagnose(self.names, self._last.signature, sig, location)
            if self.sized.miss is not None:  # a program with symbolic sizes did not fit
                miss = G.Recompile("size", miss.name, "within the compiled program's guards",
                                   str(self.sized.miss), location,
                                   "each range of sizes the guards allow compiles once (then "
                                   "is cached); the guards come from size-dependent choices "
                                   "in your code or in the compiler (GRAPHC_DEBUG=1 lists them)")
            self.sized.miss = None
            self._record(miss)
            if self.dynamic is None and miss.guard == "shape":  # seen with two sizes
                changed = G.changed_dims(self.names, self._last.signature, sig)
                for name, dims in changed.items():
                    self.dynamic_dims.setdefault(name, set()).update(dims)
                miss.suggestion = (
                    f"{miss.name} compiles with symbolic sizes from now on (a dim seen with "
                    "two sizes becomes dynamic), so its new sizes reuse one program; "
                    "dynamic=False keeps a program per size, dynamic=True makes every dim "
                    "dynamic from the first call")
        if self.dynamic is True and not self.dynamic_dims:
            self.dynamic_dims = {name: set(range(len(a._shape))) for name, a in
                                 zip(self.names, args) if isinstance(a, Tensor)}
        if self.dynamic is not False and self.dynamic_dims:
            entry = self._compile_sized(sig, args, location)
            if entry is not None:
                return entry
        tensors, concrete = [], {}
        for name, a in zip(self.names, args):
            if isinstance(a, Tensor):
                if a.is_meta:
                    raise ValueError(f"{self.__name__}(): argument {name!r} is a meta tensor; "
                                     "compiled code needs data")
                tensors.append(a)
            else:
                concrete[name] = a
        t0 = time.perf_counter()
        try:
            gm = trace(self.module if self.module is not None else self.fn, *tensors,
                       concrete_args=concrete, leaf_modules=self.leaf_modules)
        except Exception as e:  # capture failed: eager runs it (and raises the user's errors)
            return self._capture_failed(e, sig, args, location)
        trace_seconds = time.perf_counter() - t0
        if debug_level() >= 1:  # (printing a 50k-node graph is not free)
            show(1, f"{self.__name__}: traced graph", str(gm.graph))
        cg = compile_graph(gm, passes=self.passes, watch=self.module)
        try:
            spec = cg.specialize(tuple(tensors))
        except FunctionalizeError as e:  # a write the compiled program cannot express
            return self._capture_failed(e, sig, args, location)
        _show_stages(self.__name__, spec, cg)
        self._refuse_fallbacks(spec, location)
        return self._add_entry(sig, args, gm, cg, spec,
                               G.guards(self.names, sig, self.module is not None), trace_seconds)

    def _capture_failed(self, e: Exception, sig, args, location) -> _Eager:
        """Run the call eagerly, remembering why (fullgraph: raise a CaptureError)."""
        where = getattr(e, "location", None) or user_location_in(e) or location
        reason = (f"capture failed: {e}" if isinstance(e, TraceError)
                  else f"capture failed: {type(e).__name__}: {e}")
        if self.fullgraph:
            if isinstance(e, OpError) and not isinstance(e, TraceError):
                raise e  # the user's error (shapes, dtypes), not a limit of capture
            raise CaptureError(f"{self.__name__}: fullgraph=True, but {reason}", where) from e
        value = self._eager_call(args, {})  # the user's own errors surface from here
        self._note_eager(sig, EagerRun(reason, where))
        return _Eager(value)

    def _add_entry(self, sig, args, gm, cg, spec, guards, trace_seconds,
                   pattern=None) -> Entry:
        entry = Entry(sig, gm, cg, spec, guards, trace_seconds, example=tuple(
            weakref.ref(a) if isinstance(a, Tensor) else a for a in args),
            all_tensors=all(isinstance(a, Tensor) for a in args), pattern=pattern,
            written=written_inputs(spec.gm.graph))
        self.entries[sig] = entry
        if pattern is not None:
            self.sized.by_pattern.setdefault(pattern, []).append(entry)
        self._last = entry
        return entry

    def _forget(self, entry: Entry) -> None:
        """Drop a compiled entry (its weights were replaced) wherever it is looked up."""
        self.entries.pop(entry.signature, None)
        self.sized.forget(entry)

    # ---- symbolic sizes ------------------------------------------------------------------
    def _find_sized(self, sig: tuple, args: tuple) -> Entry | None:
        if not self.sized.by_pattern:
            return None
        return self.sized.find(sig, G.pattern(sig, self.names, self.dynamic_dims),
                               [a for a in args if isinstance(a, Tensor)])

    def _compile_sized(self, sig: tuple, args: tuple, location) -> Entry | None:
        """Compile with symbolic sizes for the dims in ``dynamic_dims``; None (and the
        reason recorded in ``static_reasons``) where that cannot be done."""
        from ..symbolic import ShapeEnv

        env = ShapeEnv()
        layouts, concrete, symbolic = [], {}, False
        for name, a in zip(self.names, args):
            if not isinstance(a, Tensor):
                concrete[name] = a
                continue
            dims = G.sized_dims(G.tensor_key(a), self.dynamic_dims.get(name))
            if dims:
                shape = [env.symbol(n) if d in dims else n for d, n in enumerate(a._shape)]
                layouts.append(TensorSpec(shape, a.dtype))
                symbolic = True
            else:
                layouts.append(a)
        pattern = G.pattern(sig, self.names, self.dynamic_dims)
        if not symbolic or pattern in self.sized.unsized:
            return None  # sizes 0 and 1, strided inputs, or known not to work: fixed sizes
        t0 = time.perf_counter()
        try:
            gm = trace(self.module if self.module is not None else self.fn, *layouts,
                       concrete_args=concrete, leaf_modules=self.leaf_modules)
            trace_seconds = time.perf_counter() - t0
            cg = compile_graph(gm, passes=self.passes, watch=self.module)
            metas = tuple(x.to_meta() if isinstance(x, TensorSpec) else x for x in layouts)
            spec = cg.specialize_sized(metas, env)
        except Unsized as e:  # the same for every size of this pattern: not tried again
            reason = f"compiled with fixed sizes: {e}"
            self.sized.unsized.add(pattern)
        except Exception as e:  # anything symbolic sizes do not support: fixed sizes do
            reason = f"compiled with fixed sizes: {type(e).__name__}: {e}"
        else:
            self._refuse_fallbacks(spec, location)
            named = G.guards(self.names, G.symbolic_signature(sig, metas),
                             self.module is not None)
            named += [G.Guard("size", ", ".join(sorted(set(re.findall(r"\bs\d+\b", g)))), g)
                      for g in env.guards]
            entry = self._add_entry(sig, args, gm, cg, spec, named, trace_seconds, pattern)
            if debug_level() >= 1:
                show(1, f"{self.__name__}: traced graph, symbolic sizes {env.free()}",
                     str(gm.graph) + "\nguards: " + ("; ".join(env.guards) or "none"))
            _show_stages(self.__name__, spec, cg)
            return entry
        self.static_reasons.append(EagerRun(reason, location))
        show(1, f"{self.__name__}: dynamic sizes", reason)
        return None

    def _refuse_fallbacks(self, spec, location) -> None:
        fallbacks = spec.program.fallbacks
        if fallbacks and self.fullgraph:
            listed = "; ".join(f"%{f.node.name}: {f.reason}" for f in fallbacks)
            raise CaptureError(f"{self.__name__}: fullgraph=True, but {len(fallbacks)} nodes "
                               f"have no native lowering: {listed}", location)

    def _record(self, r: G.Recompile) -> None:
        self.recompiles.append(r)
        show(1, "recompile", str(r))

    # ---- what happened -------------------------------------------------------------------
    @property
    def last(self) -> Entry:
        if self._last is None:
            raise RuntimeError(f"{self.__name__} has not been compiled yet: call it once first")
        return self._last

    def stage_text(self, stage: str) -> str:
        """One stage of the last compiled signature: graph (fused), kernels, llvm, llvm_opt
        or asm."""
        return self.last.compiled.dump(stage)

    def explain(self, *args, **kwargs):
        """What compiling for these arguments does (``graphc.explain``), as text and data."""
        from .explain import explain
        return explain(self, *args, **kwargs)

    def __repr__(self) -> str:
        return (f"<compiled {self.__name__}: mode={self.mode}, {len(self.entries)} compiled "
                f"signatures, {len(self.recompiles)} recompiles, {len(self.eager_runs)} eager "
                f"runs>")


class CompiledModule(Module):
    """What ``graphc.compile(module)`` returns: the module, compiled. Attributes, state_dict,
    train/eval, parameters and submodules are the original module's; calling it runs
    the compiled graph for the module's current mode."""

    def __init__(self, module: Module, **options):
        object.__setattr__(self, "_orig_mod", module)
        object.__setattr__(self, "_compiled", CompiledFunction(module.forward, module=module,
                                                               **options))

    def __getattr__(self, name: str):
        return getattr(object.__getattribute__(self, "_orig_mod"), name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._orig_mod, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._orig_mod, name)

    def __call__(self, *args, **kwargs):
        return self._compiled(*args, **kwargs)

    forward = __call__

    # containers (Sequential, ModuleList, ModuleDict): special methods skip __getattr__
    def __getitem__(self, index):
        return self._orig_mod[index]

    def __len__(self) -> int:
        return len(self._orig_mod)

    def __iter__(self):
        return iter(self._orig_mod)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._orig_mod)) | {"explain", "compiled"})

    @property
    def compiled(self) -> CompiledFunction:
        """The compiled callable: its entries, recompiles and eager runs."""
        return self._compiled

    def explain(self, *args, **kwargs):
        return self._compiled.explain(*args, **kwargs)

    def __repr__(self) -> str:
        return f"CompiledModule(mode={self._compiled.mode}):\n  " + \
            repr(self._orig_mod).replace("\n", "\n  ")


def compile(fn_or_module=None, *, mode: str = "static", fullgraph: bool = False,
            dynamic: bool | None = None, check: bool = False, cache_limit: int = CACHE_LIMIT,
            leaf_modules=(), passes=None):
    """Compile a function or module; usable as ``@graphc.compile`` and ``@graphc.compile(...)``.

    ``mode="eager"`` runs the same code in dynamic mode (one switch for both modes);
    ``fullgraph=True`` raises a ``CaptureError`` where capture would fall back to eager;
    ``check=True`` checks every fused kernel against a float64 interpreter on the first
    call of each signature; ``cache_limit`` bounds the compiled signatures (then calls
    run eagerly, with a warning).

        model = graphc.compile(model)
        @graphc.compile(fullgraph=True)
        def f(x, y): ...
    """
    options = dict(mode=mode, fullgraph=fullgraph, dynamic=dynamic, check=check,
                   cache_limit=cache_limit, leaf_modules=leaf_modules, passes=passes)
    if fn_or_module is None:
        return lambda f: compile(f, **options)
    if isinstance(fn_or_module, CompiledModule):
        fn_or_module = fn_or_module._orig_mod
    if isinstance(fn_or_module, Module):
        return CompiledModule(fn_or_module, **options)
    if not callable(fn_or_module):
        raise TypeError(f"graphc.compile: expected a function or a graphc.nn.Module, got "
                        f"{type(fn_or_module).__name__}")
    return CompiledFunction(fn_or_module, **options)


def compiled_function(obj) -> CompiledFunction:
    """The CompiledFunction behind ``obj``: what graphc.compile returned, or a function or
    module compiled now."""
    if isinstance(obj, CompiledModule):
        return obj.compiled
    if isinstance(obj, CompiledFunction):
        return obj
    return compiled_function(compile(obj))


# ---- helpers -------------------------------------------------------------------------------
def _parameters(fn) -> list[inspect.Parameter]:
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        name = getattr(fn, "__qualname__", fn)
        raise TypeError(f"graphc.compile: {name} takes *args or **kwargs; compiled functions "
                        "need named parameters")
    return params


def _guardable(value) -> bool:
    try:
        G.arg_key(value)
        return True
    except TypeError:
        return False


def _sharing_memory(tensors, written: tuple, params) -> tuple | None:
    """(a written argument, another argument's position or a weight's name whose memory it
    overlaps), or None."""
    for i in written:
        a = tensors[i]
        for j, b in enumerate(tensors):
            if j != i and _overlap(a, b):
                return i, j
        for p in params:
            if _overlap(a, p.tensor):
                return i, p.target
    return None


def _overlap(a: Tensor, b: Tensor) -> bool:
    """Whether the bytes two tensors reach overlap (by address: two storages may wrap one
    numpy buffer). Per call of a program that writes an argument, so plain arithmetic."""
    if not a.numel() or not b.numel():
        return False
    (alo, ahi), (blo, bhi) = _byte_reach(a), _byte_reach(b)
    return alo < bhi and blo < ahi


def _byte_reach(t: Tensor) -> tuple[int, int]:
    lo, hi = reach(t._shape, t._stride)
    size = t.dtype.itemsize
    base = t._storage.data_ptr() + t._offset * size
    return base + lo * size, base + (hi + 1) * size


def _needs_grad(args, params) -> bool:
    return any(isinstance(a, Tensor) and a.requires_grad for a in args) or \
        any(p.tensor.requires_grad for p in params)


def _show_stages(name: str, spec, cg) -> None:
    level = debug_level()
    if level >= 1:
        show(1, f"{name}: fused graph", str(spec.gm.graph))
        show(1, f"{name}: fusion plan", str(spec.plan))
    if level >= 3:
        show(3, f"{name}: kernel IR", spec.program.kernel_ir())
    if level >= 4:
        for stage in ("llvm", "llvm_opt", "asm"):
            show(4, f"{name}: {stage}", cg.dump(stage))
