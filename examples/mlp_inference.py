"""Compile an MLP for inference with graphc.compile and compare it with eager mode.

Run: python3 examples/mlp_inference.py

graphc.compile(model) returns a CompiledModule: it behaves like the model (attributes,
state_dict, train/eval) but a call runs one native program of fused LLVM kernels. The
first call for an input signature (shapes, strides, dtypes, train/eval) traces and
compiles; later calls with the same signature reuse the compiled program.
"""

from __future__ import annotations

import statistics
import time

import graphc
import graphc.nn as nn

TOLERANCE = 1e-4  # float32; matmuls may sum in a different order than numpy's


def make_mlp(sizes=(256, 512, 512, 10)) -> nn.Module:
    """Linear -> ReLU -> ... -> Linear, with the sizes given."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def median_ms(fn, x, calls: int = 20) -> float:
    """Median wall time of ``fn(x)`` in milliseconds (after one warm-up call)."""
    fn(x)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> int:
    graphc.manual_seed(0)
    model = make_mlp().eval()
    compiled = graphc.compile(model)
    x = graphc.randn(64, 256)

    # Compiled graphs compute forward values only: under no_grad the call runs compiled
    # (with grad mode on and parameters requiring grad, it would run eagerly, with a warning).
    with graphc.no_grad():
        t0 = time.perf_counter()
        y_compiled = compiled(x)               # first call: trace, passes, fusion, LLVM
        first_ms = 1e3 * (time.perf_counter() - t0)
        y_eager = model(x)

        diff = (y_compiled - y_eager).abs().max().item()
        print(f"output {tuple(y_compiled.shape)}, max |compiled - eager| = {diff:.2e} "
              f"(tolerance {TOLERANCE:.0e})")
        if not diff <= TOLERANCE:
            raise SystemExit(f"FAILED: compiled output differs from eager by {diff:.3e} "
                             f"> {TOLERANCE:.0e}")

        eager_ms, compiled_ms = median_ms(model, x), median_ms(compiled, x)

    print(f"first compiled call (compile included): {first_ms:.1f} ms")
    print(f"median per call: eager {eager_ms:.3f} ms, compiled {compiled_ms:.3f} ms "
          f"({eager_ms / compiled_ms:.1f}x)")
    info = compiled.compiled
    print(f"compiled signatures: {len(info.entries)}, recompiles: {len(info.recompiles)}, "
          f"eager runs: {len(info.eager_runs)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
