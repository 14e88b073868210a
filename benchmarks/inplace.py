"""What a compiled write into an argument costs: an update ``x.mul_(a).add_(b)`` of a
4096 x 1024 float32 tensor, timed in one run.

    python3 benchmarks/inplace.py

- ``eager``: graphc's eager mode (two numpy ops, each computed and copied into x);
- ``stored in place``: compiled; the fused kernel stores straight into x's memory;
- ``kernel + copy-back``: compiled with that store turned off, as a program whose
  kernel also produces another output must run it: the kernel writes a buffer, a copy
  kernel writes the buffer back into x;
- ``out of place``: compiled ``x * a + b`` returning a fresh tensor, for reference;
- ``numpy``: ``np.multiply(x, a, out=x); np.add(x, b, out=x)``.
Times are medians of interleaved rounds; ratios are against eager. Each compiled update is
checked against eager first.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import graphc  # noqa: E402
import graphc.codegen.program as program  # noqa: E402
from run import medians  # noqa: E402


def update(x):
    x.mul_(0.999).add_(0.001)


def fresh(x):
    return x * 0.999 + 0.001


def main() -> None:
    graphc.manual_seed(0)
    x = graphc.randn(4096, 1024)
    with graphc.no_grad():
        in_place = graphc.compile(update)
        by_copy = graphc.compile(lambda x: update(x))
        out_of_place = graphc.compile(fresh)
        for fn in (in_place, by_copy):
            a, b = x.clone(), x.clone()
            if fn is by_copy:  # compile it with the in-place store turned off
                saved, program._written_by_kernels = program._written_by_kernels, lambda *a: {}
            try:
                fn(a)
            finally:
                if fn is by_copy:
                    program._written_by_kernels = saved
            update(b)
            if not np.allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6):
                raise SystemExit("a compiled update differs from eager")
        out_of_place(x)
        arr = x.numpy()
        times = medians({
            "eager": lambda: update(x),
            "stored in place": lambda: in_place(x),
            "kernel + copy-back": lambda: by_copy(x),
            "out of place": lambda: out_of_place(x),
            "numpy": lambda: (np.multiply(arr, 0.999, out=arr), np.add(arr, 0.001, out=arr)),
        })
    base = times["eager"]
    print(f"{'':<20} {'ms':>8} {'vs eager':>9}")
    for name, t in times.items():
        print(f"{name:<20} {1e3 * t:8.2f} {base / t:8.1f}x")


if __name__ == "__main__":
    main()
