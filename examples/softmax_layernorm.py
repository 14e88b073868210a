"""Compile a function with @graphc.compile and ask graphc.explain what it became.

Run: python3 examples/softmax_layernorm.py

The function is single-head attention followed by a residual LayerNorm, written with
F.softmax and F.layer_norm. graphc.explain(fn, *args) compiles it for those arguments
and returns an Explanation: print(explanation) shows every stage (guards, graphs,
passes, each fusion decision, kernels, fallbacks, compile times); its fields
(.kernels, .fusion, .fallbacks, ...) hold the same as data. Here we print a few parts.
"""

from __future__ import annotations

import math

import graphc
import graphc.nn.functional as F

TOLERANCE = 1e-4  # float32; the compiled exp is a polynomial within a few ulp of numpy's


@graphc.compile
def attention_norm(q, k, v, weight, bias):
    """LayerNorm(softmax(q k^T / sqrt(d)) v + q)."""
    scores = (q @ k.mT) / math.sqrt(q.shape[-1])   # q.shape is a Python value: baked in
    out = F.softmax(scores, dim=-1) @ v
    return F.layer_norm(out + q, (q.shape[-1],), weight, bias)


def main() -> int:
    graphc.manual_seed(0)
    seq, dim = 128, 64
    q, k, v = graphc.randn(seq, dim), graphc.randn(seq, dim), graphc.randn(seq, dim)
    weight, bias = 1 + 0.1 * graphc.randn(dim), 0.1 * graphc.randn(dim)

    with graphc.no_grad():
        compiled = attention_norm(q, k, v, weight, bias)
        # The compiled function keeps the original one as __wrapped__: that is eager mode.
        eager = attention_norm.__wrapped__(q, k, v, weight, bias)
    diff = (compiled - eager).abs().max().item()
    print(f"max |compiled - eager| = {diff:.2e} (tolerance {TOLERANCE:.0e})")
    if attention_norm.eager_runs or not diff <= TOLERANCE:
        raise SystemExit(f"FAILED: compiled differs from eager by {diff:.3e} (tolerance "
                         f"{TOLERANCE:.0e}); eager runs: {attention_norm.eager_runs}")

    e = graphc.explain(attention_norm, q, k, v, weight, bias)
    print("\ntraced graph (one node per op, from the tracer):")
    print(e.graphs["traced"])

    # After decompose, softmax and layer_norm are a few primitives each (amax, exp, sum,
    # div, ...); fusion groups them into row kernels and puts elementwise epilogues
    # (the 1/sqrt(d) scale, the residual add) into the matmul kernels.
    fused = [d for d in e.fusion if d.startswith("fused")]
    boundaries = [d for d in e.fusion if d.startswith("kernel")]
    print(f"\nfusion: {len(fused)} producer -> consumer edges fused, {len(boundaries)} kept "
          "as kernel boundaries, each with its reason [bytes through memory unfused -> as planned]:")
    for d in boundaries:
        print("  " + d)

    print(f"\nkernels ({len(e.kernels)}): name says kind and shape, then the ops it runs")
    for kernel in e.kernels:
        print(f"  {kernel['name']:<14} {kernel['kind']:<10} {kernel['ops']}")
    print(f"fallbacks to numpy: {len(e.fallbacks)}")
    print("compile time per stage: " + ", ".join(f"{stage} {ms:.0f} ms"
                                                for stage, ms in e.stages_ms.items()))

    # A new shape is a guard miss: it compiles once more and says why.
    with graphc.no_grad():
        short = graphc.randn(32, dim)
        attention_norm(short, short, short, weight, bias)
    print("\n" + str(attention_norm.recompiles[-1]))
    print("print(graphc.explain(attention_norm, ...)) shows all of it.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
