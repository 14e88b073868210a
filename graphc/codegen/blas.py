"""BLAS inside compiled programs: numpy's own OpenBLAS, bound into the JIT.

numpy's wheels ship OpenBLAS (``numpy.libs/libscipy_openblas64_*.so`` on Linux,
``numpy/.dylibs`` on macOS) with cblas entry points. Loading that file into LLVM's
symbol search lets a compiled program call ``cblas_sgemm`` directly, with no Python round
trip. The 64-bit-integer builds name their symbols with a ``64_`` suffix and take int64
sizes; others take int32. Where no OpenBLAS is found, matmul kernels use the backend's
own loops (slower, never wrong): ``find()`` returns None.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from functools import lru_cache

from llvmlite import ir

from .. import dtype as dt
from .target import load_library, symbol_address

_CANDIDATES = [("scipy_cblas_{}gemm64_", 64), ("cblas_{}gemm64_", 64),
               ("scipy_cblas_{}gemm", 32), ("cblas_{}gemm", 32)]
# OpenBLAS's thread count (``void set(int)``, ``int get(void)``), by build
_THREAD_CONTROLS = [("scipy_openblas_{}_num_threads64_"), ("openblas_{}_num_threads64_"),
                    ("scipy_openblas_{}_num_threads"), ("openblas_{}_num_threads")]


@dataclass(frozen=True)
class Blas:
    library: str
    sgemm: str
    dgemm: str
    int_bits: int
    set_threads: str | None = None  # where found, programs run BLAS on one thread: their
    get_threads: str | None = None  # own parallel loops split the gemms (one thread budget)

    def declare(self, module: ir.Module, d: dt.dtype) -> ir.Function:
        """The gemm of ``d`` declared in ``module`` (row-major cblas signature)."""
        name = self.sgemm if d is dt.float32 else self.dgemm
        fn = module.globals.get(name)
        if fn is not None:
            return fn
        f = ir.FloatType() if d is dt.float32 else ir.DoubleType()
        i32, n = ir.IntType(32), ir.IntType(self.int_bits)
        p = f.as_pointer()
        ty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, n, n, n, f, p, n, p, n, f, p, n])
        return ir.Function(module, ty, name)

    def thread_controls(self, module: ir.Module) -> tuple[ir.Function, ir.Function]:
        """OpenBLAS's ``set`` and ``get`` of its thread count, declared in ``module``."""
        i32 = ir.IntType(32)
        set_, get = (module.globals.get(self.set_threads), module.globals.get(self.get_threads))
        if set_ is None:
            set_ = ir.Function(module, ir.FunctionType(ir.VoidType(), [i32]), self.set_threads)
        if get is None:
            get = ir.Function(module, ir.FunctionType(i32, []), self.get_threads)
        return set_, get

    def describe(self) -> str:
        return f"{os.path.basename(self.library)} ({self.sgemm}, int{self.int_bits})"


def _library_files() -> list[str]:
    import numpy

    root = os.path.dirname(numpy.__file__)
    patterns = [os.path.join(root, "..", "numpy.libs", "*openblas*"),
                os.path.join(root, ".dylibs", "*openblas*"),
                os.path.join(root, "..", "scipy_openblas64", "lib", "*openblas*")]
    files = []
    for pattern in patterns:
        files.extend(sorted(glob.glob(pattern)))
    return files


@lru_cache(maxsize=1)
def find() -> Blas | None:
    """numpy's OpenBLAS, loaded for the JIT, or None (``GRAPHC_BLAS=0`` also gives None)."""
    if os.environ.get("GRAPHC_BLAS", "1") == "0":
        return None
    for path in _library_files():
        try:
            load_library(path)
        except RuntimeError:
            continue
        for pattern, bits in _CANDIDATES:
            s, d = pattern.format("s"), pattern.format("d")
            if symbol_address(s) and symbol_address(d):
                controls = [(c.format("set"), c.format("get")) for c in _THREAD_CONTROLS]
                found = next(((a, b) for a, b in controls
                              if symbol_address(a) and symbol_address(b)), (None, None))
                return Blas(path, s, d, bits, *found)
    return None
