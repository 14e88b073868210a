"""Train a small MLP on three interleaved spirals, then save, reload and check it.

Run: python3 examples/train_mlp.py [--steps N] [--out model.graphc] [--compile]

Dynamic mode by default: autograd records each op, Adam updates the parameters in place,
and graphc.save writes a zip of JSON metadata and raw tensor bytes (no pickle). With
--compile the model is ``graphc.compile``d (compiled forward and backward programs) and
Adam runs ``fused=True`` (one compiled update of every parameter); the losses and the
accuracy are eager's, to rounding.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

import graphc
import graphc.nn as nn
import graphc.nn.functional as F


def spirals(n_per_class: int = 200, classes: int = 3, seed: int = 0):
    """Points on `classes` interleaved spiral arms with a little noise (numpy only)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = np.linspace(c * 4.0, (c + 1) * 4.0, n_per_class) + rng.normal(0, 0.2, n_per_class)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(n_per_class, c))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                         nn.Linear(64, 3))


def train(steps: int = 400, seed: int = 0, log=print, compiled: bool = False):
    graphc.manual_seed(seed)
    x_np, y_np = spirals(seed=seed)
    x, y = graphc.from_numpy(x_np), graphc.from_numpy(y_np)
    model = make_model()
    call = graphc.compile(model) if compiled else model
    opt = graphc.optim.Adam(model.parameters(), lr=0.01, fused=compiled)
    losses = []
    for step in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(call(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == steps - 1:
            log(f"step {step:4d}  loss {loss.item():.4f}")
    with graphc.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    return model, losses, accuracy, x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--out", default=None, help="where to save the model (default: a temp file)")
    parser.add_argument("--compile", action="store_true",
                        help="train compiled: graphc.compile(model) and Adam(fused=True)")
    args = parser.parse_args(argv)

    model, losses, accuracy, x = train(args.steps, compiled=args.compile)
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, training accuracy {accuracy:.1%}")

    path = args.out or os.path.join(tempfile.mkdtemp(), "spirals_mlp.graphc")
    graphc.save(model.state_dict(), path)
    restored = make_model()
    restored.load_state_dict(graphc.load(path))
    model.eval()
    restored.eval()
    with graphc.no_grad():
        same = np.array_equal(model(x).numpy(), restored(x).numpy())
    print(f"saved to {path} ({os.path.getsize(path)} bytes); reloaded model gives identical "
          f"outputs: {same}")
    return 0 if same and losses[-1] < 0.2 else 1


if __name__ == "__main__":
    raise SystemExit(main())
