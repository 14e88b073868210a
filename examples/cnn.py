"""Compile a small CNN (conv, batch norm, ReLU, pooling, linear) for inference.

Run: python3 examples/cnn.py

In eval mode BatchNorm2d normalises with its running statistics, so after tracing it
is elementwise arithmetic that fuses into the convolution's kernel. Each Conv2d becomes
pad + unfold (im2col, native copy kernels) + one BLAS matmul with the bias, batch norm
and ReLU fused after it.
"""

from __future__ import annotations

from collections import Counter

import graphc
import graphc.nn as nn

TOLERANCE = 1e-4  # float32; the compiled convolutions sum in a different order


class SmallCNN(nn.Module):
    """Two conv blocks on 3x32x32 images, then a linear classifier."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Linear(32 * 8 * 8, classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def main() -> int:
    graphc.manual_seed(0)
    model = SmallCNN()

    # A few training-mode passes give the batch norms running statistics other than
    # their initial (0, 1), so eval mode below has something to normalise with.
    with graphc.no_grad():
        for _ in range(3):
            model(2 * graphc.randn(16, 3, 32, 32) + 0.5)
    model.eval()

    compiled = graphc.compile(model)   # the same parameters and buffers: nothing is copied
    x = graphc.randn(8, 3, 32, 32)
    with graphc.no_grad():
        logits_compiled = compiled(x)
        logits_eager = model(x)
    diff = (logits_compiled - logits_eager).abs().max().item()
    print(f"logits {tuple(logits_compiled.shape)}, max |compiled - eager| = {diff:.2e} "
          f"(tolerance {TOLERANCE:.0e})")
    print("predicted classes:", logits_compiled.argmax(1).tolist())
    if compiled.compiled.eager_runs or not diff <= TOLERANCE:
        raise SystemExit(f"FAILED: compiled differs from eager by {diff:.3e} (tolerance "
                         f"{TOLERANCE:.0e}); eager runs: {compiled.compiled.eager_runs}")

    e = graphc.explain(compiled, x)    # already compiled for x: this only describes it
    kinds = Counter(k["kind"] for k in e.kernels)
    print(f"{len(e.kernels)} kernels (" + ", ".join(f"{n} {kind}" for kind, n in kinds.items())
          + f"), {len(e.fallbacks)} numpy fallbacks")
    for k in e.kernels:
        if k["kind"] == "matmul":
            print(f"  {k['name']:<16} {k['ops']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
