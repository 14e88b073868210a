"""The LLVM target: the host's CPU, one MCJIT engine per process, and module compilation.

Measured facts this follows (see shared/DESIGN.md): the target machine is built from the
host CPU name and features (AVX2 + FMA here, not the default SSE target); an engine owns
its target machine (never shared); optimisation uses the new pass builder at O3; IR and
assembly are dumped before ``finalize_object``. Engines are rotated so that memory stays
bounded when a process compiles many graphs (``_Engine``).
"""

from __future__ import annotations

import collections
import ctypes.util
import functools
import hashlib
import threading
import time
import weakref
from dataclasses import dataclass, field

import llvmlite.binding as llvm
from llvmlite.binding import ffi

_lock = threading.RLock()
_tm = None       # optimisation, data layout and assembly; never owned by an engine
_current = None  # the engine new modules are added to

MODULES_PER_ENGINE = 128  # then a fresh engine; a retired one is freed with its last module
RECENT = 256              # compiled modules kept alive for in-process reuse


def _host_target_machine():
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                        features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, jit=True)


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
                                                 _host_target_machine())
        install_object_cache(self.engine)
        self.modules = 0

    def __del__(self):
        self.engine.close()  # the engine and its modules, before the context they live in
        self.context.close()


def _init():
    global _tm, _current
    if _current is not None:
        return
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    _tm = _host_target_machine()
    for lib in ("c", "m"):  # libm's functions and pthreads, for generated calls
        path = ctypes.util.find_library(lib)
        if path:
            try:
                llvm.load_library_permanently(path)
            except RuntimeError:
                pass
    _current = _Engine()


def module_target() -> tuple[str, str]:
    """The triple and data layout generated modules declare."""
    tm = target_machine()
    return llvm.get_process_triple(), str(tm.target_data)


def target_machine():
    with _lock:
        _init()
        return _tm


@functools.cache
def host_description() -> dict:
    """What a compiled object depends on (part of every cache key); asked once."""
    return {"triple": llvm.get_process_triple(), "cpu": llvm.get_host_cpu_name(),
            "features": llvm.get_host_cpu_features().flatten(),
            "llvm": ".".join(map(str, llvm.llvm_version_info))}


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
        mod = llvm.parse_assembly(source, context=owner.context)
        mod.name = unique
        mod.verify()
        # a dump needs the optimised IR and assembly, so it compiles (and refreshes the entry);
        # object code on disk is used only if it defines this module's functions
        symbols = [f.replace(PREFIX, tag) for f in functions]
        cached = cache.lookup_object(source, unique, symbols, read=not dump)
        optimized = asm = ""
        if not cached:
            _optimize(mod)
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


def _optimize(mod) -> None:
    """The O3 pipeline with both vectorizers, on a fresh pass builder.

    llvmlite 0.50's ``ModulePassManager`` never frees itself: ``ObjectRef._dispose`` (a
    no-op) comes before ``NewPassManager._dispose`` in its MRO, so each O3 pipeline
    (about 70 KiB) would stay allocated for the life of the process. It is disposed here
    explicitly. A pass builder is not reused: each run registers callbacks in it that
    point into that run's stack frame.
    """
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(_tm, pto)
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
