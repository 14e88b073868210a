"""The LLVM target: which CPU code is generated for, one MCJIT engine per process, and
module compilation.

The target in use is the host's CPU and features, or what these variables say (read once
per process, see ``current``):

    GRAPHC_CPU           an LLVM CPU name (haswell, x86-64-v3, znver4, skylake-avx512, ...);
                         the code then uses that CPU's features instead of the host's
    GRAPHC_CPU_FEATURES  +feature/-feature items applied on top (+avx2,+fma,-avx512f)
    GRAPHC_VECTOR_WIDTH  256, 512 or host: LLVM's prefer-vector-width on every generated
                         function (host: LLVM's tuning for the CPU); by default 512 where
                         the CPU has AVX-512 (measured faster), host elsewhere

A forced target whose code would use ISA features this CPU lacks is refused before the
JIT exists (it would die of SIGILL). ``describe`` builds any other target, and
``emit_assembly`` compiles IR text for it to assembly without running it:

    t = describe("skylake-avx512", vector_width="512")
    optimized_ir, asm = emit_assembly(cg.dump("llvm"), t)   # zmm registers, never executed

Measured facts this follows (see shared/DESIGN.md): the target machine is built from the
CPU name and features (the default target is 4-wide SSE without FMA); an engine owns
its target machine (never shared); optimisation uses the new pass builder at O3; IR and
assembly are dumped before ``finalize_object``. Engines are rotated so that memory stays
bounded when a process compiles many graphs (``_Engine``).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes.util
import functools
import hashlib
import os
import re
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field, replace

import llvmlite.binding as llvm
from llvmlite.binding import ffi

_lock = threading.RLock()
_tm = None       # optimisation, data layout and assembly; never owned by an engine
_current = None  # the engine new modules are added to

MODULES_PER_ENGINE = 128  # then a fresh engine; a retired one is freed with its last module
RECENT = 256              # compiled modules kept alive for in-process reuse

CPU_VAR, FEATURES_VAR, WIDTH_VAR = "GRAPHC_CPU", "GRAPHC_CPU_FEATURES", "GRAPHC_VECTOR_WIDTH"
VECTOR_WIDTHS = ("256", "512", "host")
# The vector width unless GRAPHC_VECTOR_WIDTH says otherwise: 512 bits where the target has
# AVX-512, "host" (LLVM's tuning: the CPU's widest) elsewhere. Measured by
# benchmarks/vector_width.py on a Sapphire Rapids host (LLVM's own choice there is 256, for the
# clock drop of 512-bit code): 512 bits ran W1 1.31-1.35x and W2 1.17-1.20x faster, W3, W4 and
# W6 within 4%, the 4 us W5 0.87-0.89x (three 64x64 matvec kernels); geometric mean 1.05-1.06x.
AVX512_VECTOR_WIDTH = "512"
# what explain() and the benchmark headers show of a target's features, by architecture
NOTABLE_FEATURES = {"x86_64": ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq",
                               "avx512vl", "avx512fp16"),
                    "aarch64": ("neon", "fullfp16", "dotprod", "sve", "sve2")}
# x86 instructions LLVM emits only for their own intrinsics, which graphc never calls: a
# forced target may have them where this CPU does not (virtual machines hide some: this
# znver3 VM lacks mwaitx, pku, rdpru and wbnoinvd, which LLVM's znver3 has)
INTRINSIC_ONLY = frozenset({"mwaitx", "pku", "rdpru", "wbnoinvd", "rtm", "sgx", "ptwrite",
                            "waitpkg", "serialize", "hreset", "uintr", "enqcmd", "movdiri",
                            "movdir64b", "cldemote", "tsxldtrk", "kl", "widekl", "pconfig",
                            "lwp", "usermsr"})


class TargetError(RuntimeError):
    """A GRAPHC_CPU / GRAPHC_CPU_FEATURES / GRAPHC_VECTOR_WIDTH value LLVM does not know,
    or a forced target whose code this CPU cannot run."""


@dataclass(frozen=True)
class Target:
    """What generated code is compiled for. ``features`` is given to LLVM on top of the
    CPU's own (the host's full list when the CPU is the host's); ``overrides`` are the
    ``(variable, value)`` pairs of the environment that chose it."""

    triple: str
    cpu: str
    features: str = ""
    vector_width: str = "host"
    overrides: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict:
        return {"triple": self.triple, "cpu": self.cpu, "features": self.features,
                "vector_width": self.vector_width}

    @property
    def arch(self) -> str:
        return self.triple.partition("-")[0]

    def machine(self, jit: bool = False):
        """A new LLVM target machine (each engine owns its own); TargetError for a CPU or
        feature name LLVM does not know (LLVM itself only warns on stderr, then ends the
        process with an LLVM ERROR once it emits code for an unknown CPU)."""
        _initialize(self.triple)
        with _stderr_of_llvm() as warnings:
            tm = llvm.Target.from_triple(self.triple).create_target_machine(
                cpu=self.cpu, features=self.features, opt=3, jit=jit)
        unknown = re.findall(r"'([^']*)' is not a recognized (processor|feature)", warnings[0])
        if unknown:
            raise TargetError(f"{self._set_by()}LLVM {llvm.llvm_version_info[0]} knows no "
                              + ", ".join(f"{kind} {name!r}" for name, kind in dict.fromkeys(unknown))
                              + f" for {self.triple}")
        if warnings[0]:
            sys.stderr.write(warnings[0])  # not ours to hide
        return tm

    def function_attributes(self) -> str:
        """What every generated function carries for this target (LLVM IR attributes)."""
        if self.vector_width == "host":
            return ""
        return f'"prefer-vector-width"="{self.vector_width}"'

    def has(self, *features: str) -> frozenset[str]:
        """Which of ``features`` this target's code may use (LLVM feature names)."""
        return _features_on(self, tuple(sorted(features)))

    def vector_bits(self) -> int:
        """The width LLVM vectorizes a float32 loop to for this target (a probe, compiled once
        per target, never run): 128, 256 or 512 on x86; 0 where it does not vectorize."""
        return _vector_bits(self)

    def missing_here(self) -> list[str]:
        """The ISA features this target's code may use that this CPU lacks."""
        if (self.cpu, self.features) == (llvm.get_host_cpu_name(),
                                         llvm.get_host_cpu_features().flatten()):
            return []  # the host's own CPU and features
        if self.arch != llvm.get_process_triple().partition("-")[0]:
            return ["the architecture " + self.arch]
        absent = [k for k, on in llvm.get_host_cpu_features().items()
                  if not on and k not in INTRINSIC_ONLY]
        return sorted(self.has(*absent))

    def check_runs_here(self) -> None:
        """TargetError unless this CPU can run code compiled for this target."""
        missing = self.missing_here()
        if missing:
            unset = [k for k, _ in self.overrides if k != WIDTH_VAR]
            raise TargetError(
                f"{self._set_by()}code for {self.cpu} needs {', '.join(missing)}, which this "
                f"CPU ({llvm.get_host_cpu_name()}) lacks: running it would crash (SIGILL). "
                + (f"Unset {' and '.join(unset)}, or turn" if unset else "Turn")
                + f" the features off with {FEATURES_VAR}=" + ",".join("-" + f for f in missing)
                + ". graphc.codegen.target.emit_assembly shows a CPU's code without running it.")

    def summary(self) -> str:
        """One line for explain() and benchmark headers: the CPU, its notable features,
        the vector width, and which of them came from GRAPHC_* variables."""
        given = dict(self.overrides)
        cpu = self.cpu
        if CPU_VAR in given:
            cpu += f" ({CPU_VAR})"
        elif (self.triple, cpu) == (llvm.get_process_triple(), llvm.get_host_cpu_name()):
            cpu += " (this host)"
        notable = NOTABLE_FEATURES.get(self.arch, ())
        on = self.has(*notable)
        features = " ".join(f for f in notable if f in on) or "no notable features"
        if FEATURES_VAR in given:
            features += f" ({FEATURES_VAR}={given[FEATURES_VAR]})"
        if WIDTH_VAR in given:
            why = f"{WIDTH_VAR}={given[WIDTH_VAR]}"
        elif self.vector_width == "host":
            why = "LLVM's choice for the CPU"
        else:
            why = "graphc's default with AVX-512"
        bits = self.vector_bits()
        width = f"{bits}-bit vectors" if bits else "no vectors"
        return f"{self.triple}, cpu {cpu}, {features}, {width} ({why})"

    def _set_by(self) -> str:
        """``GRAPHC_CPU=znver4: `` (the variables that chose this target), to start an error."""
        given = [f"{k}={v}" for k, v in self.overrides if k != WIDTH_VAR]
        return f"{', '.join(given)}: " if given else ""


def describe(cpu: str | None = None, features: str = "", vector_width: str | None = None,
             triple: str | None = None) -> Target:
    """A target, without touching the process's engine: ``cpu`` None is the host's CPU
    with the host's features (on this process's triple; "generic" on another), ``features``
    are +name/-name items applied on top, ``vector_width`` None is graphc's default for
    them (``AVX512_VECTOR_WIDTH`` with AVX-512, else "host"). Names are checked when it is
    used (``machine``, ``emit_assembly``)."""
    triple = triple or llvm.get_process_triple()
    base = ""
    if cpu is None and triple == llvm.get_process_triple():
        cpu, base = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    features = _feature_items(features, "features")
    if vector_width not in (None, *VECTOR_WIDTHS):
        raise TargetError(f"vector_width must be one of {', '.join(VECTOR_WIDTHS)}, got "
                          f"{vector_width!r}")
    t = Target(triple, cpu or "generic", ",".join(filter(None, (base, features))))
    return replace(t, vector_width=vector_width or _default_width(t))


def _default_width(t: Target) -> str:
    return AVX512_VECTOR_WIDTH if t.arch == "x86_64" and t.has("avx512f") else "host"


def from_environment(environ=os.environ) -> Target:
    """The target GRAPHC_CPU, GRAPHC_CPU_FEATURES and GRAPHC_VECTOR_WIDTH ask for (the host's
    where they are unset or empty)."""
    given = {k: environ[k].strip() for k in (CPU_VAR, FEATURES_VAR, WIDTH_VAR)
             if environ.get(k, "").strip()}
    width = given.get(WIDTH_VAR)
    if width not in (None, *VECTOR_WIDTHS):
        raise TargetError(f"{WIDTH_VAR} must be one of {', '.join(VECTOR_WIDTHS)}, got {width!r}")
    t = describe(given.get(CPU_VAR), _feature_items(given.get(FEATURES_VAR, ""), FEATURES_VAR),
                 width or "host")
    t = replace(t, overrides=tuple(given.items()))
    # (the default needs the CPU's features: read once the overrides are there to name in
    # the error of an unknown CPU or feature)
    return t if width else replace(t, vector_width=_default_width(t))


@functools.cache
def current() -> Target:
    """The target this process compiles for: ``from_environment``, read and checked once.
    (Whether this CPU can run its code is checked before the JIT is made: ``_init``.)"""
    t = from_environment()
    t.machine()  # names LLVM does not know fail here, not as garbage code later
    return t


def _feature_items(text: str, what: str) -> str:
    items = [item.strip() for item in text.split(",") if item.strip()]
    bad = [item for item in items if not re.fullmatch(r"[+-][\w.-]+", item)]
    if bad:
        raise TargetError(f"{what} must be comma-separated +feature or -feature items "
                          f"(e.g. +avx2,+fma,-avx512f), got {text!r}")
    return ",".join(items)


@contextlib.contextmanager
def _stderr_of_llvm():
    """What LLVM writes on file descriptor 2 meanwhile, in ``[text]`` (its warnings about
    unknown CPU and feature names are not errors it reports)."""
    sys.stderr.flush()
    saved = os.dup(2)
    out = [""]
    try:
        with tempfile.TemporaryFile() as f:
            os.dup2(f.fileno(), 2)
            try:
                yield out
            finally:
                os.dup2(saved, 2)
                f.seek(0)
                out[0] = f.read().decode(errors="replace")
    finally:
        os.close(saved)


@functools.cache
def _initialize(triple: str) -> None:
    if triple.partition("-")[0] == llvm.get_process_triple().partition("-")[0]:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
    else:  # another architecture's code, for reading only
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()


@functools.cache
def _features_on(target: Target, features: tuple[str, ...]) -> frozenset[str]:
    """Which ``features`` the target's code may use. LLVM has no query for a CPU's
    features, but its inliner asks one: a function compiled with more features is never
    inlined into one with fewer. So each feature gets a function with the target's features
    plus it, called from one with the target's own; the calls inlined are the answer."""
    if not features:
        return frozenset()
    text = ["@sink = global i32 0"]
    for i, name in enumerate(features):
        extra = ",".join(filter(None, (target.features, "+" + name)))
        text.append(f'define internal void @f{i}() #{i} {{\n  store volatile i32 {i}, ptr @sink\n'
                    f'  ret void\n}}\nattributes #{i} = {{ "target-features"="{extra}" }}')
    calls = "".join(f"  call void @f{i}()\n" for i in range(len(features)))
    text.append(f"define void @probe() {{\n{calls}  ret void\n}}")
    optimized, _ = _compile("\n".join(text), target, speed_level=1, assembly=False)
    probe = optimized[optimized.index("@probe"):]
    return frozenset(name for i, name in enumerate(features) if f"@f{i}()" not in probe)


_VECTOR_PROBE = """
define void @probe(ptr noalias %out, ptr noalias %in, i64 %n) {
entry:
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %p = getelementptr float, ptr %in, i64 %i
  %x = load float, ptr %p
  %y = fmul float %x, 3.0
  %q = getelementptr float, ptr %out, i64 %i
  store float %y, ptr %q
  %next = add i64 %i, 1
  %done = icmp eq i64 %next, %n
  br i1 %done, label %exit, label %loop
exit:
  ret void
}
"""


@functools.cache
def _vector_bits(target: Target) -> int:
    optimized, _ = _compile(_VECTOR_PROBE, target, assembly=False)
    # a scalable vector (SVE) counts its minimum: <vscale x 4 x float> is 128 bits or more
    return 32 * max(map(int, re.findall(r"<(?:vscale x )?(\d+) x float>", optimized)), default=0)


def emit_assembly(text: str, target: Target | None = None) -> tuple[str, str]:
    """LLVM IR ``text`` optimised as the JIT would for ``target`` (default: the one in
    use) and compiled to assembly, never executed: ``(optimized IR, assembly)``. Any CPU
    of any architecture in LLVM's build can be read this way, e.g. the IR of
    ``cg.dump("llvm")`` for ``describe("znver4")`` on a machine without AVX-512."""
    return _compile(text, target or current())


def _compile(text: str, target: Target, speed_level: int = 3,
             assembly: bool = True) -> tuple[str, str]:
    tm = target.machine()
    context = llvm.create_context()
    try:
        mod = llvm.parse_assembly(with_function_attributes(text, target.function_attributes()),
                                  context=context)
        mod.triple = target.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
        _optimize(mod, tm, speed_level)
        return str(mod), tm.emit_assembly(mod) if assembly else ""
    finally:
        mod = None
        context.close()


def with_function_attributes(text: str, attributes: str) -> str:
    """``text`` with ``attributes`` (e.g. ``"prefer-vector-width"="256"``) on every
    function it defines, written right after the parameter list."""
    if not attributes:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("define "):
            end = _parameters_end(line)
            lines[i] = f"{line[:end]} {attributes}{line[end:]}"
    return "\n".join(lines)


def _parameters_end(line: str) -> int:
    """The index just past the ``)`` that closes a ``define`` line's parameter list
    (parameter types may hold parentheses; quoted names are skipped)."""
    depth, quoted = 0, False
    for i in range(line.index("@"), len(line)):
        c = line[i]
        if c == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"no parameter list in {line!r}")


class _Engine:
    """An MCJIT engine with its own target machine (an engine owns the one it is given;
    sharing one between engines crashed). MCJIT never frees a module's memory while its
    engine lives, so after MODULES_PER_ENGINE modules new ones go to a fresh engine, and a
    retired engine (with all its code) is freed once no compiled module refers to it."""

    def __init__(self):
        from .cache import install_object_cache

        # its own LLVM context too: constants and types interned in a context live as
        # long as it, and the global one would grow with every distinct module
        self.context = llvm.create_context()
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly("", context=self.context),
                                                 current().machine(jit=True))
        install_object_cache(self.engine)
        self.modules = 0

    def __del__(self):
        self.engine.close()  # the engine and its modules, before the context they live in
        self.context.close()


def _init():
    global _tm, _current
    if _current is not None:
        return
    target = current()
    target.check_runs_here()  # before any code of it exists
    _tm = target.machine(jit=True)
    for lib in ("c", "m"):  # libm's functions and pthreads, for generated calls
        path = ctypes.util.find_library(lib)
        if path:
            try:
                llvm.load_library_permanently(path)
            except RuntimeError:
                pass
    _current = _Engine()
    _start_pool(target)


def _start_pool(target: Target) -> None:
    """Compile the worker pool (``pool``) and make ``graphc_pool_run`` a symbol programs
    link to. Its engine is never freed: a worker may be spinning in its code at exit."""
    from . import pool

    triple, layout = target.triple, str(_tm.target_data)
    mod = llvm.parse_assembly(with_function_attributes(pool.pool_ir(triple, layout),
                                                      target.function_attributes()))
    mod.verify()
    _optimize(mod, _tm)
    engine = llvm.create_mcjit_compiler(mod, target.machine(jit=True))
    engine.finalize_object()
    add_symbol(pool.RUN, engine.get_function_address(pool.RUN))
    globals_ = {name: engine.get_global_value_address(name)
                for name in pool.RESET + ("pool_mutex", "pool_cond")}
    engine.detach()  # (and with it the module and target machine it owns)
    os.register_at_fork(after_in_child=lambda: pool.reset_after_fork(globals_.__getitem__))


def module_target() -> tuple[str, str]:
    """The triple and data layout generated modules declare."""
    tm = target_machine()
    return current().triple, str(tm.target_data)


def target_machine():
    with _lock:
        _init()
        return _tm


@functools.cache
def host_description() -> dict:
    """What a compiled object depends on (part of every cache key): the target in use
    (triple, CPU, features, vector width; ``current``) and LLVM's version; asked once."""
    return {**current().as_dict(), "llvm": ".".join(map(str, llvm.llvm_version_info))}


@dataclass
class CompiledModule:
    """Addresses of a compiled module's functions, and what compiling it produced."""

    name: str
    addresses: dict[str, int]
    ir: str = ""            # the IR we generated
    optimized_ir: str = ""  # after the O3 pipeline
    assembly: str = ""
    seconds: float = 0.0
    from_cache: bool = False
    engine: object = field(default=None, repr=False)  # keeps the code alive while referenced


PREFIX = "__K__"  # generated IR names its functions with this; replaced by the content hash
# the in-memory cache: content hash -> module, while something uses it or it is recent
_compiled: weakref.WeakValueDictionary[str, CompiledModule] = weakref.WeakValueDictionary()
_recent: collections.deque = collections.deque(maxlen=RECENT)


def compile_ir(template: str, name: str, functions: list[str], dump: bool = False) -> CompiledModule:
    """Optimise and JIT-compile LLVM IR text; return its functions' addresses.

    Symbols in ``template`` and ``functions`` start with ``PREFIX``, which becomes a hash
    of the text: the same module compiled twice in a process is compiled once (in-memory
    cache), and across processes its object code is found in the disk cache. ``dump``
    keeps the IR before and after optimisation and the assembly (a few ms more).
    """
    from . import cache

    tag = "k" + hashlib.sha256(template.encode()).hexdigest()[:16]
    with _lock:
        _init()
        known = _compiled.get(tag)
        if known is not None and (known.assembly or not dump):
            return known
        t0 = time.perf_counter()
        source = template.replace(PREFIX, tag)
        unique = f"{name}.{tag}"
        global _current
        if known is None and _current.modules >= MODULES_PER_ENGINE:
            _current = _Engine()
        owner = _current if known is None else known.engine
        # with the target's function attributes; ``source`` (the dump) is the same for any target
        mod = llvm.parse_assembly(with_function_attributes(source, current().function_attributes()),
                                  context=owner.context)
        mod.name = unique
        mod.verify()
        # a dump needs the optimised IR and assembly, so it compiles (and refreshes the entry);
        # object code on disk is used only if it defines this module's functions
        symbols = [f.replace(PREFIX, tag) for f in functions]
        cached = cache.lookup_object(source, unique, symbols, read=not dump)
        optimized = asm = ""
        if not cached:
            _optimize(mod, _tm)
            if dump:
                optimized = str(mod)
                asm = _tm.emit_assembly(mod)
        if known is None:
            engine = owner.engine
            try:
                engine.add_module(mod)
                owner.modules += 1
                engine.finalize_object()
            finally:
                cache.forget(unique)
            addresses = {f: engine.get_function_address(f.replace(PREFIX, tag)) for f in functions}
            missing = [f for f, address in addresses.items() if not address]
            if missing:  # never hand out a null function pointer
                raise RuntimeError(f"LLVM module {unique}: no code for {missing}")
        else:
            cache.forget(unique)
            addresses = known.addresses
        result = CompiledModule(name, addresses, source if dump else "", optimized, asm,
                                time.perf_counter() - t0, bool(cached), owner)
        _compiled[tag] = result
        _recent.append(result)
        return result


def _optimize(mod, tm, speed_level: int = 3) -> None:
    """The O3 pipeline (or ``speed_level``) with both vectorizers, on a fresh pass builder.

    llvmlite 0.50's ``ModulePassManager`` never frees itself: ``ObjectRef._dispose`` (a
    no-op) comes before ``NewPassManager._dispose`` in its MRO, so each O3 pipeline
    (about 70 KiB) would stay allocated for the life of the process. It is disposed here
    explicitly. A pass builder is not reused: each run registers callbacks in it that
    point into that run's stack frame.
    """
    pto = llvm.create_pipeline_tuning_options(speed_level=speed_level)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    try:
        mpm.run(mod, pb)
    finally:
        if not mpm.closed and type(mpm)._dispose is ffi.ObjectRef._dispose:
            llvm.newpassmanagers.NewPassManager._dispose(mpm)
            mpm.detach()
        pb.close()


def symbol_address(name: str) -> int:
    return llvm.address_of_symbol(name) or 0


def add_symbol(name: str, address: int) -> None:
    llvm.add_symbol(name, address)


def load_library(path: str) -> None:
    llvm.load_library_permanently(path)
