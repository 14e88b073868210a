"""Compiled training: the same model trained eagerly and compiled, from the same seed.

Run: python3 examples/train_compiled.py [--steps N] [--width W]

The model compiled, the loop as it was:

    model = graphc.compile(model)                                # as for inference
    opt = graphc.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    loss = F.cross_entropy(model(x), y)    # compiled forward: keeps what backward needs
    loss.backward()                        # compiled backward program: grads into .grad
    opt.step(); opt.zero_grad()            # one compiled call updates every parameter

or the whole step compiled:

    @graphc.compile
    def train_step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()                    # the gradients, in the same compiled call
        opt.step(); opt.zero_grad()        # replayed after it, every call
        return loss

A call in grad mode, with weights that require grad, traces the model once more, builds one
joint forward + backward graph from the op table's gradient rules and splits it into a
forward and a backward program (values saved between them, or recomputed where that is
cheaper). The example checks that the three runs end with the same losses and accuracy,
prints what the compiled programs save and recompute, and times one step of each.
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


def train(how: str, steps: int, width: int, x, y, log=print):
    """``how``: "eager", "model" (the model compiled) or "step" (the whole step compiled)."""
    graphc.manual_seed(0)
    model = make_model(x.shape[1], width, 4)
    call = graphc.compile(model) if how == "model" else model
    opt = graphc.optim.AdamW(model.parameters(), lr=3e-3, fused=how != "eager")

    def train_step(x, y):
        loss = F.cross_entropy(call(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss

    if how == "step":
        train_step = graphc.compile(train_step)
    losses, times = [], []
    for step in range(steps):
        graphc.manual_seed(1000 + step)  # the same dropout masks in every run
        t0 = time.perf_counter()
        loss = train_step(x, y)
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            log(f"  step {step:4d}  loss {loss.item():.4f}")
    model.eval()
    with graphc.no_grad():
        accuracy = (call(x).argmax(1) == y).float().mean().item()
    return train_step if how == "step" else call, losses, accuracy, times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args(argv)
    x_np, y_np = blobs()
    x, y = graphc.from_numpy(x_np), graphc.from_numpy(y_np)

    runs = {}
    for how, title in (("eager", "eager"), ("model", "compiled model"),
                       ("step", "compiled step")):
        print(f"{title}:")
        runs[how] = train(how, args.steps, args.width, x, y)
    _, eager_losses, eager_acc, eager_times = runs["eager"]
    warm_eager = np.median(eager_times[2:])
    ok = True
    for how, title in (("model", "compiled model"), ("step", "compiled step")):
        call, losses, acc, times = runs[how]
        worst = float(np.max(np.abs(np.array(losses) - np.array(eager_losses))))
        compiled = call if how == "step" else call.compiled
        described = compiled.last_step if how == "step" else compiled.last_training
        warm = np.median(times[2:])
        print(f"\n{title}: final loss {losses[-1]:.4f} (eager {eager_losses[-1]:.4f}); max "
              f"|{how} - eager| over {args.steps} steps = {worst:.2e}; training accuracy "
              f"{acc:.1%} (eager {eager_acc:.1%})")
        print(described.describe())
        print(f"calls that ran eagerly: {len(compiled.eager_runs)}")
        print(f"one step (median after warm-up): eager {1e3 * warm_eager:.2f} ms, {title} "
              f"{1e3 * warm:.2f} ms: {warm_eager / warm:.2f}x; first step (compiling) "
              f"{times[0]:.2f} s")
        ok = ok and worst < 1e-3 and abs(acc - eager_acc) < 0.02 and not compiled.eager_runs
    print("\ncompiled training matches eager:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
