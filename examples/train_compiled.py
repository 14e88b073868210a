"""Compiled training: the same model trained eagerly and compiled, from the same seed.

Run: python3 examples/train_compiled.py [--steps N] [--width W]

    model = graphc.compile(model)                                # as for inference
    opt = graphc.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    loss = F.cross_entropy(model(x), y)    # compiled forward: keeps what backward needs
    loss.backward()                        # compiled backward program: grads into .grad
    opt.step(); opt.zero_grad()            # one compiled call updates every parameter

A call in grad mode, with weights that require grad, traces the model once more, builds one
joint forward + backward graph from the op table's gradient rules and splits it into a
forward and a backward program (values saved between them, or recomputed where that is
cheaper). The example checks that both runs end with the same losses and accuracy, prints
what the compiled programs save and recompute, and times one step of each.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import graphc
import graphc.nn as nn
import graphc.nn.functional as F


def blobs(n: int = 512, features: int = 32, classes: int = 4, seed: int = 0):
    """Gaussian clusters, one per class, in ``features`` dims (numpy only)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (classes, features))
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.normal(0, 6.0, (n, features))
    return x.astype(np.float32), y.astype(np.int64)


def make_model(features: int, width: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(features, width), nn.LayerNorm(width), nn.GELU(),
                         nn.Dropout(0.1), nn.Linear(width, width), nn.ReLU(inplace=True),
                         nn.Linear(width, classes))


def train(compiled: bool, steps: int, width: int, x, y, log=print):
    graphc.manual_seed(0)
    model = make_model(x.shape[1], width, 4)
    call = graphc.compile(model) if compiled else model
    opt = graphc.optim.AdamW(model.parameters(), lr=3e-3, fused=compiled)
    losses, times = [], []
    for step in range(steps):
        graphc.manual_seed(1000 + step)  # the same dropout masks in both runs
        t0 = time.perf_counter()
        loss = F.cross_entropy(call(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"  step {step:4d}  loss {loss.item():.4f}")
    model.eval()
    with graphc.no_grad():
        accuracy = (call(x).argmax(1) == y).float().mean().item()
    return model, call, losses, accuracy, times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args(argv)
    x_np, y_np = blobs()
    x, y = graphc.from_numpy(x_np), graphc.from_numpy(y_np)

    print("eager:")
    _, _, eager_losses, eager_acc, eager_times = train(False, args.steps, args.width, x, y)
    print("compiled:")
    _, call, losses, acc, times = train(True, args.steps, args.width, x, y)

    worst = float(np.max(np.abs(np.array(losses) - np.array(eager_losses))))
    print(f"final loss: eager {eager_losses[-1]:.4f}, compiled {losses[-1]:.4f}; "
          f"max |compiled - eager| over {args.steps} steps = {worst:.2e}")
    print(f"training accuracy: eager {eager_acc:.1%}, compiled {acc:.1%}")
    program = call.compiled.last_training
    print(program.describe())
    eager_runs = call.compiled.eager_runs
    print(f"calls that ran eagerly: {len(eager_runs)}")
    warm_eager, warm = np.median(eager_times[2:]), np.median(times[2:])
    print(f"one step (median after warm-up): eager {1e3 * warm_eager:.2f} ms, compiled "
          f"{1e3 * warm:.2f} ms: {warm_eager / warm:.2f}x; first compiled step (compiling) "
          f"{times[0]:.2f} s")
    ok = worst < 1e-3 and abs(acc - eager_acc) < 0.02 and not eager_runs
    print("compiled training matches eager:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
