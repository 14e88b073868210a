"""Compile a transformer encoder block for inference and time it against eager mode.

Run: python3 examples/transformer_block.py

nn.TransformerEncoderLayer is multi-head self-attention and a feed-forward block, each
with a residual connection and LayerNorm. In eval mode its dropouts are identities, so
the traced graph is matmuls, softmax, layer norms and elementwise ops: the compiler
fuses the elementwise work into the matmuls' epilogues and the row reductions.
"""

from __future__ import annotations

import statistics
import time

import graphc
import graphc.nn as nn

TOLERANCE = 1e-4  # float32; compiled exp and matmuls round differently from numpy


def median_ms(fn, *args, calls: int = 10, **kwargs) -> float:
    """Median wall time of ``fn(*args, **kwargs)`` in milliseconds, after one warm-up."""
    fn(*args, **kwargs)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> int:
    graphc.manual_seed(0)
    batch, seq, d_model = 8, 64, 128
    block = nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=4 * d_model,
                                       activation="gelu", batch_first=True).eval()
    compiled = graphc.compile(block)

    x = graphc.randn(batch, seq, d_model)
    # True marks padding positions that attention must ignore: the last sequence has 48
    # real tokens. The mask is a tensor argument, so other masks of this shape reuse the
    # compiled graph.
    padding = graphc.zeros(batch, seq, dtype=graphc.bool)
    padding[batch - 1, 48:] = True

    with graphc.no_grad():
        t0 = time.perf_counter()
        y_compiled = compiled(x, src_key_padding_mask=padding)
        compile_ms = 1e3 * (time.perf_counter() - t0)
        y_eager = block(x, src_key_padding_mask=padding)
        diff = (y_compiled - y_eager).abs().max().item()
        print(f"output {tuple(y_compiled.shape)}, max |compiled - eager| = {diff:.2e} "
              f"(tolerance {TOLERANCE:.0e})")
        if compiled.compiled.eager_runs or not diff <= TOLERANCE:
            raise SystemExit(f"FAILED: compiled differs from eager by {diff:.3e} (tolerance "
                             f"{TOLERANCE:.0e}); eager runs: {compiled.compiled.eager_runs}")

        eager_ms = median_ms(block, x, src_key_padding_mask=padding)
        compiled_ms = median_ms(compiled, x, src_key_padding_mask=padding)

    e = graphc.explain(compiled, x, src_key_padding_mask=padding)
    print(f"first call (trace + compile): {compile_ms:.0f} ms; {len(e.kernels)} kernels, "
          f"{len(e.fallbacks)} numpy fallbacks")
    print(f"median per call: eager {eager_ms:.2f} ms, compiled {compiled_ms:.2f} ms, "
          f"speed-up {eager_ms / compiled_ms:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
