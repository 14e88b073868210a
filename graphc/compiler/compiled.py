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
import types
import warnings
import weakref
from dataclasses import dataclass, field

from ..autograd.grad_mode import _state as _grad
from ..errors import OpError, WeightChanged, user_location, user_location_in, user_stacklevel
from ..nn.module import Module
from ..debug import debug_level, show
from ..tensor import Tensor, tensors_in
from ..codegen.sizes import SizeMismatch
from ..ops.registry import Flag
from ..ir.node import nodes_in
from ..layout import reach
from ..passes.functionalize import FunctionalizeError, written_inputs
from ..trace import Proxy, TensorSpec, TraceError
from ..trace.step import BackwardInTrace
from ..trace.tracer import (cell_value, map_tensors, restore_structure, scope_objects,
                            trace_bound, unbind)
from . import guards as G
from .pipeline import Unsized, compile_graph
from ..amp import _state as _amp_state
from .. import dtype as dt

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
    returned: frozenset = frozenset()  # ... and those it returns, or returns views of
    out_structure: object = None  # the result's namedtuples, dict subclasses (tracer)
    # calls autograd records: (signature, requires_grad flags) -> forward and backward programs
    training: dict = field(default_factory=dict)

    @property
    def stages_ms(self) -> dict[str, float]:
        """Milliseconds per compile stage: trace, then the program's (passes ... llvm)."""
        return {"trace": 1e3 * self.trace_seconds,
                **{k: 1e3 * v for k, v in self.spec.stage_seconds.items()}}


@dataclass
class _Eager:
    value: object  # what an eager run returned


_EAGER, _VALUES = object(), object()  # what a training call runs when no program does
_FIXED = object()  # training programs with symbolic sizes failed: fixed sizes, per signature


class SizedPrograms:
    """A compiled function's entries with symbolic sizes: by pattern (the signature
    without the symbolic sizes), the exact signatures they have served, and the patterns
    known to compile with fixed sizes only."""

    def __init__(self):
        self.by_pattern: dict[tuple, list] = {}
        self.served: dict[tuple, Entry] = {}
        self.unsized: dict[tuple, str] = {}  # pattern -> why its sizes were all fixed
        self.miss = None  # the last call fitted a pattern but not its programs' guards
        self.miss_entry: Entry | None = None  # (the program that refused it)
        self.static_reason = ""  # why the last compile kept fixed sizes

    def find(self, sig: tuple, pattern: tuple, tensors: list) -> Entry | None:
        """The entry whose guards these inputs' sizes pass, if any (then remembered under
        ``sig``); when a program of the pattern refused them, ``miss`` says why."""
        self.miss = None
        for entry in self.by_pattern.get(pattern, ()):
            try:
                entry.spec.sizes.bind(tensors)
            except SizeMismatch as e:
                self.miss, self.miss_entry = e, entry
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
        # the module whose weights and training flag the program reads: the compiled
        # module, or the instance of a compiled method
        self.owner = module if module is not None else _instance_module(fn)
        self._target = module if module is not None else fn  # what a call runs
        self.fullgraph, self.check, self.cache_limit = fullgraph, check, cache_limit
        self.dynamic = dynamic
        self.dynamic_dims: dict[str, set] = {}  # tensor path -> dims with symbolic sizes
        self.static_reasons: list[EagerRun] = []  # why a dynamic compile stayed static
        self.sized = SizedPrograms()  # the entries with symbolic sizes
        self.leaf_modules, self.passes = tuple(leaf_modules), passes
        target = module.forward if module is not None else fn
        self.params = list(inspect.signature(target).parameters.values())
        self.names = tuple(p.name for p in self.params)
        # calls of a function with only positional parameters skip binding when complete
        self._arity = len(self.names) if all(
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in self.params) else -1
        self.entries: dict[tuple, Entry] = {}
        self.recompiles: list[G.Recompile] = []
        self.eager_runs: list[EagerRun] = []
        self.layout_copies = 0  # calls whose strided inputs were copied to reuse a program
        self._eager: dict[tuple, EagerRun] = {}  # signatures that run eagerly, and why
        self._last: Entry | None = None
        self._warned: set[str] = set()
        functools.update_wrapper(self, target, updated=())
        if module is not None:
            self.__name__ = self.__qualname__ = type(module).__name__

    # ---- a call --------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if self.mode == "eager":
            return self._target(*args, **kwargs)
        if kwargs or len(args) != self._arity:
            args = self._bind(args, kwargs)
        if _amp_state.enabled:  # the traced graph would not see autocast's casts
            return self._run_eagerly(None, args, "inside graphc.autocast: compiled graphs do not "
                                     "autocast; the call runs eagerly", remember=False)
        if self._bindings and self._rebound():
            return self(*unbind(self.params, args)[0], **unbind(self.params, args)[1])
        owner = self.owner
        try:
            sig = G.signature(args, owner.training if owner is not None else None)
        except TypeError:
            reason = G.unguardable(self.names, args)
            if self.fullgraph:
                raise CaptureError(f"{self.__name__}: fullgraph=True, but {reason}",
                                   user_location()) from None
            return self._run_eagerly(None, args, reason)
        if self.steps:
            key = sig if sig in self.steps else self._sized_step(sig, args)
            if key is not None:
                return self._run_step(sig, key, args)
            if _grad.enabled and sig not in self._eager:  # (a step: no inference program)
                return self._build_step(sig, args, user_location()).value
        entry = self.entries.get(sig) or self.sized.served.get(sig)
        if entry is None:
            if sig in self._eager:
                return self._eager_call(args, {})
            entry = self._find_sized(sig, args)
        if entry is None and self.entries:
            entry, args = self._find_contiguous(args, owner)
        if entry is None:
            entry = self._compile(sig, args)
            if entry is None:
                return self._eager_call(args, {})
            if type(entry) is _Eager:
                return entry.value
        tensors = args if entry.all_tensors else tensors_in(args)
        training = _grad.enabled and _needs_grad(tensors, entry.spec.params)
        if entry.written:
            shared = _sharing_memory(tensors, entry.written, entry.spec.params)
            if shared is not None:
                names = [path for path, _ in G.tensor_keys(self.names, sig)]
                other = repr(names[shared[1]]) if type(shared[1]) is int else \
                    f"the weight {shared[1]}"
                return self._run_eagerly(None, args, (
                    f"argument {names[shared[0]]!r} shares memory with {other}, and the "
                    f"compiled program writes into {names[shared[0]]!r}; a call with such "
                    "arguments runs eagerly (pass separate tensors, e.g. .clone(), to run "
                    "compiled)"), remember=False)
        if training:
            program = self._training_program(sig, args, tensors, entry)
            if program is _EAGER:
                return self._eager_call(args, {})
            if program is not _VALUES:
                try:
                    return restore_structure(program.run(tensors), program.out_structure)
                except WeightChanged as e:  # its programs read the replaced weight: again
                    self._forget(entry)
                    self._record(G.Recompile("weight", e.attr, e.old, e.new, user_location(),
                                             "a weight replaced by a new tensor recompiles; "
                                             "update weights in place to keep the programs"))
                    return self._eager_call(args, {}) if self._compile(
                        sig, args, after_miss=False) is None else self.__call__(
                        *unbind(self.params, args)[0], **unbind(self.params, args)[1])
        if self.check and not entry.checked:
            from .check import check_entry
            check_entry(entry, tensors, lambda copies: self._eager_call(
                self._with_tensors(args, copies), {}), self.owner)
            entry.checked = True
        try:
            if entry.out_structure is not None:  # namedtuples, dict subclasses: rebuilt
                return restore_structure(entry.spec.run(tensors), entry.out_structure)
            return entry.spec.run(tensors)
        except WeightChanged as e:
            self._forget(entry)
            fresh = self._find_sized(sig, args)
            if fresh is not None:  # compiled since with the new weight (another size)
                return restore_structure(fresh.spec.run(tensors), fresh.out_structure)
            self._record(G.Recompile("weight", e.attr, e.old, e.new, user_location(),
                                     "a weight replaced by a new tensor, or given a new shape "
                                     "or dtype, recompiles; update weights in place "
                                     "(w.copy_(new), optimizer steps) to keep the compiled "
                                     "graph"))
            entry = self._compile(sig, args, after_miss=False)
            if entry is None:
                return self._eager_call(args, {})
            if type(entry) is _Eager:
                return entry.value
            return restore_structure(entry.spec.run(tensors), entry.out_structure)

    def _training_program(self, sig, args, tensors, entry: Entry):
        """A call autograd records: the training programs for these requires_grad flags
        (built on the first such call); ``_VALUES`` where no output needs a gradient (the
        inference program serves), ``_EAGER`` where they cannot be built (and why is
        recorded). An entry with symbolic sizes first tries training programs with
        symbolic sizes, which serve every size their guards allow (``check=True`` keeps
        fixed sizes: it checks their kernels one by one)."""
        flags = (tuple(t.requires_grad for t in tensors),
                 tuple(p.tensor.requires_grad for p in entry.spec.params))
        key, symbolic = (sig, *flags), False
        if entry.pattern is not None and not self.check:
            sized = entry.training.get((entry.pattern, *flags))
            if sized is None:  # not tried yet
                key, symbolic = (entry.pattern, *flags), True
            elif sized is _VALUES or sized is not _FIXED and sized.fits(tensors):
                return sized
        program = entry.training.get(key)
        if program is not None:
            return program
        if key in self._eager:
            return _EAGER
        from .training import NothingToDifferentiate, build
        location = user_location()
        before = next((k for k in entry.training if k[0] == key[0]), None)
        if before is not None:  # the same signature with other requires_grad flags
            self._record(self._flags_changed(sig, before, key, entry, location))
        if sum(p is not _FIXED for e in self.entries.values()
               for p in e.training.values()) >= self.cache_limit:
            self._note_eager(key, EagerRun(
                f"the cache limit of {self.cache_limit} training programs is reached (one per "
                "signature and set of requires_grad flags); new ones run eagerly (raise "
                "cache_limit=, or keep batch sizes to a few)", location))
            return _EAGER
        env, layouts = self._symbolic_layouts(sig, args)[:2] if symbolic else (None, None)
        if env is None:
            key, symbolic, layouts = (sig, *flags), False, [_canonical(t) for t in tensors]
        try:
            program = build(self._target, self.params, self._with_tensors(args, layouts),
                            list(tensors), owner=self.owner, leaf_modules=self.leaf_modules,
                            passes=self.passes, check=self.check,
                            sized=symbolic and (env, _metas(layouts)))
        except NothingToDifferentiate:
            program = _VALUES
        except Exception as e:
            if symbolic:  # fixed sizes may do (and are tried from now on)
                entry.training[key] = _FIXED
                self.static_reasons.append(EagerRun(
                    "training programs compiled with fixed sizes: symbolic sizes failed: "
                    f"{type(e).__name__}: {e}", location))
                return self._training_program(sig, args, tensors, entry)
            self._note_eager(key, self._not_compiled(e, location,
                                                     "compiled training is not possible here"))
            return _EAGER
        entry.training[key] = program
        return program

    def _flags_changed(self, sig, old: tuple, new: tuple, entry: Entry, location) -> G.Recompile:
        paths = [path for path, _ in G.tensor_keys(self.names, sig)]
        names = [p.target for p in entry.spec.params]
        changed = [(n, a, b) for n, a, b in zip(paths + names, old[1] + old[2], new[1] + new[2])
                   if a != b]
        name, a, b = changed[0]
        return G.Recompile(
            "requires_grad", name, str(a), str(b), location,
            "each set of requires_grad flags of the inputs and weights has its own forward and "
            "backward programs (compiled once, then cached)",
            also=[f"{n}: {x} -> {y}" for n, x, y in changed[1:]])

    def __get__(self, obj, objtype=None):
        """``@graphc.compile`` on a method: each instance gets its own compiled method,
        whose module (when the instance is one) is read like ``graphc.compile(model)``'s."""
        if obj is None:
            return self
        key = f"__graphc_compiled_{self.__name__}"
        held = getattr(obj, "__dict__", None)
        if held is None:  # no instance dict (__slots__): compiled per instance, not kept
            return CompiledFunction(types.MethodType(self.fn, obj), **self._options())
        bound = held.get(key)
        if bound is None or bound._descriptor is not self:
            bound = CompiledFunction(types.MethodType(self.fn, obj), **self._options())
            bound._descriptor = self
            held[key] = bound  # (a cycle through the instance: collected with it)
        return bound

    _descriptor = None  # the class attribute a compiled method came from
    # (instance attributes only once used: CPython reads instances with at most 30 fast)
    # the global names and closure cells of the function holding a module or tensor when
    # it was last traced: the programs read that object (see ``_rebound``)
    _bindings: tuple = ()
    # signature -> StepProgram (a function that trains: see step.py); read-only when empty
    steps = types.MappingProxyType({})

    def __reduce__(self):
        """Pickled or deep-copied (with the module or instance holding it) as the function
        it compiles: the copy compiles afresh."""
        if self._descriptor is not None:
            return getattr, (self.fn.__self__, self.fn.__name__)
        return _compile_again, (self.fn, self.module, self._options())

    def _options(self) -> dict:
        """The options it was compiled with (for a method's instances, or a copy)."""
        return dict(mode=self.mode, fullgraph=self.fullgraph, dynamic=self.dynamic,
                    check=self.check, cache_limit=self.cache_limit,
                    leaf_modules=self.leaf_modules, passes=self.passes)

    def _eager_call(self, args, kwargs):
        """Run the function eagerly on bound arguments (what ``_bind`` returns)."""
        positional, keywords = unbind(self.params, args)
        return self._target(*positional, **keywords)

    def _with_tensors(self, args: tuple, tensors) -> tuple:
        """Bound arguments with their tensors replaced, in order, by ``tensors``."""
        it = iter(tensors)
        return tuple(map_tensors(a, lambda path, t: next(it)) for a in args)

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
        self._bind_state()
        tensors = tensors_in(args)
        keys = G.tensor_keys(self.names, sig)
        for (path, _), a in zip(keys, tensors):
            if a.is_meta:
                if isinstance(a, Proxy):  # called while a caller is traced: inlined
                    return _Eager(self._eager_call(args, {}))
                raise ValueError(f"{self.__name__}(): argument {path!r} is a meta tensor; "
                                 "compiled code needs data")
        miss = shape_miss = None
        if after_miss and self.entries:
            miss, shape_miss = self._diagnose(sig, location)
        self._grow_dynamic(sig, shape_miss)
        self.sized.static_reason = ""
        entry = None
        if self.dynamic is not False and self.dynamic_dims:
            entry = self._compile_sized(sig, args, location)
        if entry is None:
            entry = self._compile_fixed(sig, args, tensors, location)
        if miss is not None:
            if miss.guard == "shape":
                miss.suggestion = self._shape_advice(miss, sig, entry)
            self._record(miss)
        return entry

    def _compile_fixed(self, sig, args, tensors, location) -> Entry | _Eager:
        examples = [_canonical(t) for t in tensors]  # (size-1 strides as in the signature)
        t0 = time.perf_counter()
        try:
            gm = trace_bound(self._target, self.params, self._with_tensors(args, examples),
                             root=self.owner, leaf_modules=self.leaf_modules)
        except Exception as e:  # capture failed: eager runs it (and raises the user's errors)
            return self._capture_failed(e, sig, args, location)
        half = _half_precision(gm)
        if half:
            return self._capture_failed(TraceError(half, location=location or ""), sig, args, location)
        trace_seconds = time.perf_counter() - t0
        if debug_level() >= 1:  # (printing a 50k-node graph is not free)
            show(1, f"{self.__name__}: traced graph", str(gm.graph))
        cg = compile_graph(gm, passes=self.passes, watch=self.owner)
        try:
            spec = cg.specialize(tuple(examples))
        except FunctionalizeError as e:  # a write the compiled program cannot express
            return self._capture_failed(e, sig, args, location)
        _show_stages(self.__name__, spec, cg)
        self._refuse_fallbacks(spec, location)
        return self._add_entry(sig, args, gm, cg, spec,
                               G.guards(self.names, sig, self.owner is not None), trace_seconds)

    def _diagnose(self, sig: tuple, location) -> tuple[G.Recompile, dict | None]:
        """Why no program served ``sig``: the guards it fails of the nearest compiled entry
        (the fewest failures, structure counting twice; the latest of equals), dims an
        entry with symbolic sizes covers not counted; and the dims whose size changed,
        when a size is the first."""
        best = None
        for entry in reversed(list(self.entries.values())):
            free = G.symbolic_dims(self.names, entry.pattern)
            diffs = G.differences(self.names, entry.signature, sig, free)
            # (a container of another type or length is further than a changed item)
            distance = sum(2 if d.kind == "structure" else 1 for d in diffs)
            if best is None or distance < best[0]:
                best = (distance, diffs, free)
        _, diffs, free = best
        miss_of_sizes, self.sized.miss = self.sized.miss, None
        if not diffs and miss_of_sizes is not None:  # a program's size guards refused it
            names = self._sizes_in(str(miss_of_sizes), sig) or ", ".join(
                f"{path}.shape[{d}]" for path, dims in free.items() for d in sorted(dims))
            return G.Recompile("size", names, "within the compiled program's guards",
                               str(miss_of_sizes), location,
                               "each range of sizes the guards allow compiles once (then "
                               "is cached); the guards come from size-dependent choices "
                               "in your code or in the compiler (GRAPHC_DEBUG=1 lists them)"), None
        miss = G.recompile(diffs, location)
        shapes = {d.path: set(d.dims) for d in diffs if d.kind == "shape"}
        return miss, (shapes if diffs and diffs[0].kind == "shape" else None)

    def _sizes_in(self, refusal: str, sig: tuple) -> str:
        """The input dims (``x.shape[0]``) whose symbols a program's refusal names."""
        sizes = self.sized.miss_entry.spec.sizes if self.sized.miss_entry else None
        if sizes is None:
            return ""
        paths = [path for path, _ in G.tensor_keys(self.names, sig)]
        condition = refusal.split(" guard ", 1)[-1]
        named = [sizes.sources[sizes.names.index(s)] for s in sizes.env.roots(condition)]
        return ", ".join(f"{paths[k]}.shape[{d}]" for k, d in named if k < len(paths))

    def _shape_advice(self, miss: G.Recompile, sig: tuple, entry) -> str:
        """What to do about a size that changed, given how the call compiled: dynamic sizes
        are suggested only where they would serve the new sizes."""
        keys = dict(G.tensor_keys(self.names, sig))
        path = miss.name.split(".shape[")[0]
        dims = {int(d) for d in re.findall(r"\.shape\[(\d+)\]", miss.name)}
        key = keys.get(path)
        each = f"each new size of {miss.name} compiles once (then is cached)"
        if isinstance(entry, Entry) and entry.pattern is not None:
            reuse = _reuse(entry.spec.sizes.env)
            if self.dynamic is None:
                verb = "compile" if "," in miss.name else "compiles"
                return (f"{miss.name} {verb} with symbolic sizes from now on (a dim seen "
                        f"with two sizes becomes dynamic), so {reuse}; "
                        "dynamic=False keeps a program per size, dynamic=True makes every dim "
                        "dynamic from the first call")
            return f"{miss.name} is compiled with symbolic sizes: {reuse}"
        why = G.why_not_sized(key, dims) if key is not None else ""
        if self.dynamic is False:
            if why:
                return (f"with dynamic=False {each}; symbolic sizes would not help here: "
                        f"{path} {why}")
            return (f"with dynamic=False kernels are specialised to sizes, so {each}; "
                    f"dynamic=True or the default dynamic=None compile one program for every "
                    f"size of a dim (or pad {path} to a few sizes)")
        why = f"{path} {why}" if why else self.sized.static_reason or "capture failed"
        return f"{each}: it stays a fixed size, because {why}"

    def _capture_failed(self, e: Exception, sig, args, location) -> _Eager:
        """Run the call eagerly, remembering why (fullgraph: raise a CaptureError); a
        function that calls ``backward()``, called in grad mode, is a training step."""
        if isinstance(e, BackwardInTrace) and _grad.enabled:
            return self._build_step(sig, args, location)
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

    # ---- training steps ------------------------------------------------------------------
    def _build_step(self, sig, args, location) -> _Eager:
        """Compile the training step for ``sig`` and run it (eagerly where it cannot be
        compiled, saying why). As for inference, a dim seen with two sizes (or every dim,
        with ``dynamic=True``) becomes symbolic: one step then serves every size its
        guards allow (fixed sizes where that fails, and with ``check=True``)."""
        from .step import build_step

        tensors = tensors_in(args)
        if len(self.steps) >= self.cache_limit:
            return _Eager(self._run_eagerly(sig, args, (
                f"the cache limit of {self.cache_limit} compiled steps is reached; new "
                "signatures run eagerly (raise cache_limit=, or keep batch sizes to a few)")))
        self._grow_dynamic(sig, self._step_miss(sig))
        key, program, build = sig, None, functools.partial(
            build_step, self._target, self.params, owner=self.owner,
            leaf_modules=self.leaf_modules, passes=self.passes, check=self.check)
        env, layouts, pattern = self._symbolic_layouts(sig, args) if self.dynamic_dims and \
            not self.check and self.dynamic is not False else (None, None, None)
        if env is not None and ("step", pattern) not in self.sized.unsized:
            try:
                program = build(self._with_tensors(args, layouts), list(tensors),
                                sized=(env, _metas(layouts)))
                key = ("step", pattern)
            except Exception as e:  # fixed sizes may do (and the error, if any, repeats)
                self.sized.unsized[("step", pattern)] = reason = f"{type(e).__name__}: {e}"
                self.static_reasons.append(EagerRun(
                    f"the step compiled with fixed sizes: symbolic sizes failed: {reason}",
                    location))
        if program is None:
            try:
                program = build(self._with_tensors(args, [_canonical(t) for t in tensors]),
                                list(tensors))
            except Exception as e:
                run = self._not_compiled(e, location, "the training step cannot be compiled")
                value = self._eager_call(args, {})
                self._note_eager(sig, run)
                return _Eager(value)
        if not self.steps:  # (the class's read-only empty mapping, or an emptied dict)
            self.steps = {}
        self.steps[key] = program
        return _Eager(self._run_step(sig, key, args))

    def _grow_dynamic(self, sig, shape_miss: dict | None) -> None:
        """Before compiling for ``sig``: with ``dynamic=None`` the dims of ``shape_miss``
        (path -> dims whose size changed) become dynamic; with ``dynamic=True``, every dim."""
        if shape_miss is not None and self.dynamic is None:  # seen with two sizes
            for path, dims in shape_miss.items():
                self.dynamic_dims.setdefault(path, set()).update(dims)
        if self.dynamic is True and not self.dynamic_dims:
            self.dynamic_dims = {path: set(range(len(key[1])))
                                 for path, key in G.tensor_keys(self.names, sig)}

    def _step_miss(self, sig) -> dict | None:
        """The dims whose size differs from a step built before for a signature that
        differs only in sizes (as ``_diagnose`` gives them for inference entries)."""
        for old in self.steps:
            diffs = G.differences(self.names, old, sig) if old[0] != "step" else None
            if diffs and all(d.kind == "shape" for d in diffs):
                return {d.path: set(d.dims) for d in diffs}
        return None

    def _sized_step(self, sig, args):
        """The key of the step with symbolic sizes that serves ``sig``, if one does."""
        if not self.dynamic_dims:
            return None
        key = ("step", G.pattern(sig, self.names, self.dynamic_dims))
        program = self.steps.get(key)
        return key if program is not None and program.fits(tensors_in(args)) else None

    def _not_compiled(self, e: Exception, location, what: str) -> EagerRun:
        """The eager run of a call whose training programs could not be built because of
        ``e`` (with ``fullgraph=True``: raised instead, as a CaptureError for a limit of
        the compiler)."""
        if self.fullgraph and not isinstance(e, TraceError):
            raise e
        where = getattr(e, "location", None) or user_location_in(e) or location
        detail = str(e) if isinstance(e, TraceError) else f"{type(e).__name__}: {e}"
        reason = f"{what}, so the call runs eagerly: {detail}"
        if self.fullgraph:
            raise CaptureError(f"{self.__name__}: fullgraph=True, but {reason}", where) from e
        return EagerRun(reason, where)

    def _run_step(self, sig, key, args):
        """One call of the compiled step ``self.steps[key]``; built again where a weight was
        replaced or a requires_grad flag changed. Under no_grad it runs eagerly (whose
        backward() raises)."""
        if not _grad.enabled:
            return self._eager_call(args, {})
        program = self.steps[key]
        if not program.current():
            del self.steps[key]
            self._record(G.Recompile(
                "requires_grad", "a weight", "as traced", "changed", user_location(),
                "a step is compiled for one set of weights that require grad"))
            return self._build_step(sig, args, user_location()).value
        try:
            return restore_structure(program.run(tensors_in(args)), program.out_structure)
        except WeightChanged as e:
            del self.steps[key]
            self._record(G.Recompile("weight", e.attr, e.old, e.new, user_location(),
                                     "a weight replaced by a new tensor recompiles; update "
                                     "weights in place to keep the program"))
            return self._build_step(sig, args, user_location()).value

    @property
    def last_step(self):
        """The compiled step built last (``describe()`` says what it does), or None."""
        return next(reversed(self.steps.values()), None)

    def _add_entry(self, sig, args, gm, cg, spec, guards, trace_seconds,
                   pattern=None) -> Entry:
        entry = Entry(sig, gm, cg, spec, guards, trace_seconds, example=tuple(
            weakref.ref(a) if isinstance(a, Tensor) else a for a in args),
            all_tensors=all(isinstance(a, Tensor) for a in args), pattern=pattern,
            written=written_inputs(spec.gm.graph), returned=_returned_inputs(gm.graph),
            out_structure=getattr(gm, "output_structure", None))
        self.entries[sig] = entry
        if pattern is not None:
            self.sized.by_pattern.setdefault(pattern, []).append(entry)
        self._last = entry
        return entry

    def _rebound(self) -> bool:
        """Whether a global name or closure variable the function read a module or tensor
        from now names another object: then every program (traced with the old one) is
        dropped, and the change recorded as a recompile."""
        for where, key, value in self._bindings:
            now = where.get(key) if isinstance(where, dict) else cell_value(where)
            if now is not value:
                self.entries.clear()
                self.sized = SizedPrograms()
                self._eager.clear()
                self._bindings = ()
                what = "global" if isinstance(where, dict) else "closure variable"
                self._record(G.Recompile(
                    what, repr(key), f"{type(value).__name__} at {id(value):#x}",
                    f"{type(now).__name__} at {id(now):#x}", user_location(),
                    "the programs read the object it named when they were traced; "
                    "update the object in place to keep them"))
                return True
        return False

    def _bind_state(self) -> None:
        """Note the modules and tensors the function's global names and closure variables
        hold now (the trace read them: ``_rebound`` notices when one names another)."""
        if self.module is None:
            found = tuple(scope_objects(self.fn, (Module, Tensor)))
            if found or self._bindings:
                self._bindings = found

    def _forget(self, entry: Entry) -> None:
        """Drop a compiled entry (its weights were replaced) wherever it is looked up."""
        self.entries.pop(entry.signature, None)
        self.sized.forget(entry)

    def _find_contiguous(self, args: tuple, owner) -> tuple[Entry | None, tuple]:
        """(a program compiled for contiguous inputs, the arguments with the strided
        tensors copied to contiguous) when such a program serves them; else (None, args).

        A window of a growing sequence (``idx[:, -block_size:]``) has new strides on every
        step; copying it is cheaper than a program per stride. Only tensors the program
        neither writes into nor returns a view of, and that share no memory with another
        argument or a weight, are copied: eager aliasing is kept."""
        tensors = tensors_in(args)
        strided = [i for i, t in enumerate(tensors) if not t.is_contiguous()]
        if not strided:
            return None, args
        dense = list(tensors)
        for i in strided:
            dense[i] = tensors[i].contiguous()
        dense_args = self._with_tensors(args, dense)
        try:
            sig = G.signature(dense_args, owner.training if owner is not None else None)
        except TypeError:
            return None, args
        entry = self.entries.get(sig) or self.sized.served.get(sig) or \
            self._find_sized(sig, dense_args)
        if entry is None or any(i in entry.written or i in entry.returned for i in strided):
            return None, args
        if any(_overlap(tensors[i], b) for i in strided
               for b in [*tensors[:i], *tensors[i + 1:], *(p.tensor for p in entry.spec.params)]):
            return None, args  # a copy would not see the program's writes through the alias
        self.layout_copies += 1
        return entry, dense_args

    # ---- symbolic sizes ------------------------------------------------------------------
    def _find_sized(self, sig: tuple, args: tuple) -> Entry | None:
        if not self.sized.by_pattern:
            return None
        return self.sized.find(sig, G.pattern(sig, self.names, self.dynamic_dims),
                               tensors_in(args))

    def _symbolic_layouts(self, sig: tuple, args: tuple) -> tuple:
        """(a ShapeEnv, the tensor arguments' layouts with its symbols for the dims in
        ``dynamic_dims``, the pattern of the signature); the env is None where no dim
        is symbolic (sizes 0 and 1, or strided inputs)."""
        from ..symbolic import ShapeEnv

        env = ShapeEnv()
        layouts, symbolic = [], False
        for (path, key), a in zip(G.tensor_keys(self.names, sig), tensors_in(args)):
            dims = G.sized_dims(key, self.dynamic_dims.get(path))
            if dims:
                shape = [env.symbol(n) if d in dims else n for d, n in enumerate(a._shape)]
                layouts.append(TensorSpec(shape, a.dtype))
                symbolic = True
            else:
                layouts.append(_canonical(a))
        return (env if symbolic else None), layouts, G.pattern(sig, self.names, self.dynamic_dims)

    def _compile_sized(self, sig: tuple, args: tuple, location) -> Entry | None:
        """Compile with symbolic sizes for the dims in ``dynamic_dims``; None (and the
        reason recorded in ``static_reasons``) where that cannot be done."""
        env, layouts, pattern = self._symbolic_layouts(sig, args)
        if env is None:  # sizes 0 and 1, or strided inputs: fixed sizes
            return None
        if pattern in self.sized.unsized:  # known not to work: fixed sizes
            self.sized.static_reason = self.sized.unsized[pattern]
            return None
        t0 = time.perf_counter()
        try:
            gm = trace_bound(self._target, self.params, self._with_tensors(args, layouts),
                             root=self.owner, leaf_modules=self.leaf_modules)
            trace_seconds = time.perf_counter() - t0
            if _half_precision(gm):
                raise Unsized(_half_precision(gm))
            cg = compile_graph(gm, passes=self.passes, watch=self.owner)
            metas = _metas(layouts)
            spec = cg.specialize_sized(metas, env)
        except Unsized as e:  # the same for every size of this pattern: not tried again
            reason = f"compiled with fixed sizes: {e}"
            self.sized.unsized[pattern] = str(e)
            self.sized.static_reason = str(e)
        except Exception as e:  # anything symbolic sizes do not support: fixed sizes do
            reason = f"compiled with fixed sizes: {type(e).__name__}: {e}"
            self.sized.static_reason = f"symbolic sizes failed: {type(e).__name__}: {e}"
        else:
            self._refuse_fallbacks(spec, location)
            named = G.guards(self.names, G.symbolic_signature(sig, self.names, metas),
                             self.owner is not None)
            named += [G.Guard("size", ", ".join(sorted(env.roots(g))), g) for g in env.guards]
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

    @property
    def last_training(self):
        """The training programs (forward and backward) built last."""
        built = [p for e in self.entries.values() for p in e.training.values()
                 if p is not _VALUES and p is not _FIXED]
        if not built:
            raise RuntimeError(f"{self.__name__} has no training programs yet: call it once "
                               "with grad mode on and an input or weight that requires grad")
        return max(built, key=lambda p: p.serial)

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


def _reuse(env) -> str:
    """Which new sizes a program with symbolic sizes serves, as its guards say: all, the
    ones its guards allow, or (a guard pins a size computed from them) only those that
    keep that size."""
    pins = [g for g in env.guards if re.fullmatch(r".* == -?\d+", g)]
    if pins:
        why = env.specialized[0] if env.specialized else f"the guard {pins[0]}"
        return (f"its new sizes reuse one program only where its guards hold, and {len(pins)} "
                f"of them pin a size ({why}): a size that changes it compiles again "
                "(GRAPHC_DEBUG=1 lists the guards)")
    if env.guards:
        return (f"its new sizes reuse one program wherever its {len(env.guards)} size guards "
                f"hold ({'; '.join(env.guards[:2])}; GRAPHC_DEBUG=1 lists them)")
    return "its new sizes reuse one program"


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
    """The CompiledFunction behind ``obj``: what graphc.compile returned, a module's own
    after ``module.compile()``, or a function or module compiled now."""
    if isinstance(obj, Module) and obj.__dict__.get("_compiled_call") is not None:
        obj = obj.__dict__["_compiled_call"]
    if isinstance(obj, CompiledModule):
        return obj.compiled
    if isinstance(obj, CompiledFunction):
        return obj
    return compiled_function(compile(obj))


# ---- helpers -------------------------------------------------------------------------------
def _instance_module(fn) -> Module | None:
    """The module a bound method belongs to (``graphc.compile(model.generate_step)``)."""
    owner = getattr(fn, "__self__", None)
    return owner if isinstance(owner, Module) and inspect.ismethod(fn) else None


def _metas(layouts) -> tuple:
    """Symbolic layouts as a program is specialised for them: TensorSpecs as meta tensors,
    tensors (fixed sizes) as they are."""
    return tuple(x.to_meta() if isinstance(x, TensorSpec) else x for x in layouts)


def _canonical(t: Tensor) -> Tensor:
    """``t``, or a view of its memory with the strides of its size-1 dims as the signature
    spells them: the program compiled for it serves every such stride."""
    if 1 not in t._shape and 0 not in t._shape:
        return t
    stride = G.canonical_strides(t._shape, t._stride)
    if stride == t._stride:
        return t
    return Tensor._make(t._storage, t._shape, stride, t._offset, t._base)


def _returned_inputs(graph) -> frozenset[int]:
    """Positions of the tensor inputs the traced program returns, or may return a view of
    (every reshape counted as a view: with symbolic sizes, asking would be a new guard)."""
    def root(n):
        while n.op == "call_function" and n.target.flags & {Flag.VIEW, Flag.MUTATES} and n.args:
            n = n.args[0]
        return n
    roots = {root(n) for n in nodes_in(graph.output_node.args)}
    return frozenset(i for i, n in enumerate(graph.placeholders) if n in roots)


def _compile_again(fn, module, options: dict) -> CompiledFunction:
    return CompiledFunction(fn, module=module, **options)


def _sharing_memory(tensors, written: tuple, params) -> tuple | None:
    """(a written argument, another argument's position or a weight's name whose memory it
    overlaps), or None. One sweep over the byte ranges sorted by start (an optimizer's
    update writes a hundred arguments: comparing every pair cost more than the update)."""
    spans = []
    writes = set(written)
    for i, t in enumerate(tensors):
        if t.numel():
            spans.append((*_byte_reach(t), i in writes, i))
    if not spans or not writes:
        return None
    for p in params:
        if p.tensor.numel():
            spans.append((*_byte_reach(p.tensor), False, p.target))
    spans.sort(key=lambda s: s[:2])
    furthest = furthest_written = None  # (end, who) of the earlier spans reaching furthest
    for lo, hi, is_written, who in spans:
        other = furthest if is_written else furthest_written
        if other is not None and lo < other[0]:
            return (who, other[1]) if is_written else (other[1], who)
        if furthest is None or hi > furthest[0]:
            furthest = (hi, who)
        if is_written and (furthest_written is None or hi > furthest_written[0]):
            furthest_written = (hi, who)
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


def _needs_grad(tensors, params) -> bool:
    return any(a.requires_grad for a in tensors) or any(p.tensor.requires_grad for p in params)


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


def _half_precision(gm) -> str | None:
    """Why a graph cannot compile natively: a float16 or bfloat16 value (native code
    computes in float32 and float64 only). Such calls run eagerly (float32 compute,
    16-bit storage), so they never give a different result from eager code."""
    for n in gm.graph.nodes:
        d = n.meta.get("dtype")
        if d in dt.HALF_DTYPES:
            return (f"%{n.name} is {d.name}: compiled code computes in float32 and float64 only; "
                    "float16 and bfloat16 run eagerly")
    return None
