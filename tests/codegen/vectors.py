"""What tests expect of generated vector code, derived from a target (by default the one in
use: the host's, or GRAPHC_CPU's), never from one CPU: lanes from the width LLVM vectorizes
to for that target, register names from that width on x86."""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest

from graphc.codegen import target as T

X86 = platform.machine().lower() in ("x86_64", "amd64")
needs_x86 = pytest.mark.skipif(not X86, reason=f"reads x86-64 assembly; this machine is "
                                               f"{platform.machine()}")
REGISTERS = {128: "xmm", 256: "ymm", 512: "zmm"}  # x86's vector registers by width in bits
# the transcendentals are FMA polynomials: without hardware FMA (x86 before Haswell) each
# llvm.fma becomes libm calls, not packed instructions; AArch64 always has it
HAS_FMA = not X86 or bool(T.current().has("fma"))
needs_fma = pytest.mark.skipif(not HAS_FMA, reason="the target in use has no FMA: the "
                               "transcendentals' llvm.fma become libm calls")


def lanes(dtype, target: T.Target | None = None) -> int:
    """How many elements of ``dtype`` one vector of ``target`` holds."""
    return (target or T.current()).vector_bits() // (8 * np.dtype(dtype).itemsize)


def vector_lanes(ir: str, dtype) -> set[int]:
    """The lane counts of the ``dtype`` vectors in LLVM IR text (a scalable vector's minimum)."""
    name = {4: "float", 8: "double"}[np.dtype(dtype).itemsize]
    return {int(n) for n in re.findall(rf"<(?:vscale x )?(\d+) x {name}>", ir)}


def packed(asm: str, pattern: str, dtype, bits: int) -> bool:
    """Whether x86 assembly has an instruction matching ``pattern`` (``{t}`` stands for
    ps/pd) on ``bits``-wide registers."""
    t = "ps" if np.dtype(dtype) == np.float32 else "pd"
    line = rf"^\s*(?:{pattern.format(t=t)})\s+[^\n]*%{REGISTERS[bits]}"
    return re.search(line, asm, re.M) is not None
