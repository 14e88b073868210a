"""The LLVM target: the host's CPU, one MCJIT engine per process, and module compilation.

Measured facts this follows (see shared/DESIGN.md): the target machine is built from the
host CPU name and features (AVX2 + FMA here, not the default SSE target); one engine
owns one target machine for the whole process; optimisation uses the new pass builder at
O3; IR and assembly are dumped before ``finalize_object``.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import threading
import time
from dataclasses import dataclass

import llvmlite.binding as llvm

_lock = threading.RLock()
_engine = None
_tm = None


def _init():
    global _engine, _tm
    if _engine is not None:
        return
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    _tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                       features=llvm.get_host_cpu_features().flatten(),
                                       opt=3, jit=True)
    for lib in ("c", "m"):  # libm's functions and pthreads, for generated calls
        path = ctypes.util.find_library(lib)
        if path:
            try:
                llvm.load_library_permanently(path)
            except RuntimeError:
                pass
    _engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _tm)
    from .cache import install_object_cache

    install_object_cache(_engine)


def module_target() -> tuple[str, str]:
    """The triple and data layout generated modules declare."""
    tm = target_machine()
    return llvm.get_process_triple(), str(tm.target_data)


def target_machine():
    with _lock:
        _init()
        return _tm


def host_description() -> dict:
    """What a compiled object depends on (part of every cache key)."""
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


PREFIX = "__K__"  # generated IR names its functions with this; replaced by the content hash
_compiled: dict[str, CompiledModule] = {}  # the in-memory cache: content hash -> module


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
        mod = llvm.parse_assembly(source)
        mod.name = unique
        mod.verify()
        # a dump needs the optimised IR and assembly, so it compiles (and refreshes the entry)
        cached = cache.lookup_object(source, unique, read=not dump)
        optimized = asm = ""
        if not cached:
            pto = llvm.create_pipeline_tuning_options(speed_level=3)
            pto.loop_vectorization = True
            pto.slp_vectorization = True
            pb = llvm.create_pass_builder(_tm, pto)
            pb.getModulePassManager().run(mod, pb)
            if dump:
                optimized = str(mod)
                asm = _tm.emit_assembly(mod)
        if known is None:
            try:
                _engine.add_module(mod)
                _engine.finalize_object()
            finally:
                cache.forget(unique)
            addresses = {f: _engine.get_function_address(f.replace(PREFIX, tag)) for f in functions}
            missing = [f for f, address in addresses.items() if not address]
            if missing:  # never hand out a null function pointer
                raise RuntimeError(f"LLVM module {unique}: no code for {missing}")
        else:
            cache.forget(unique)
            addresses = known.addresses
        result = CompiledModule(name, addresses, source if dump else "", optimized, asm,
                                time.perf_counter() - t0, bool(cached))
        _compiled[tag] = result
        return result


def symbol_address(name: str) -> int:
    return llvm.address_of_symbol(name) or 0


def add_symbol(name: str, address: int) -> None:
    llvm.add_symbol(name, address)


def load_library(path: str) -> None:
    llvm.load_library_permanently(path)
