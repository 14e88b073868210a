"""Train with eager autograd; evaluate every few steps with the same model, compiled.

Run: python3 examples/training_loop.py [--steps N] [--eval-every K]

Training runs in dynamic mode: autograd records each op and Adam updates the parameters
in place. Every few steps the model is evaluated through ``graphc.compile(model)``, which
shares the model's parameters and buffers (nothing is copied): the compiled program reads
them from memory on each call, so in-place updates (optimizer steps, batch-norm running
statistics) are seen without compiling again. Assigning a new tensor to a parameter, or
calling the compiled model in another mode, would compile once more, and the reason
would be listed in ``compiled.compiled.recompiles``.
"""

from __future__ import annotations

import argparse

import graphc
import graphc.nn as nn
import graphc.nn.functional as F

TOLERANCE = 1e-4  # compiled vs eager logits, float32


def teacher_task(features: int = 16, classes: int = 4, n_train: int = 1024, n_val: int = 256):
    """Random inputs labelled by a fixed random network: a task a small MLP can learn."""
    teacher = nn.Sequential(nn.Linear(features, 32), nn.Tanh(), nn.Linear(32, classes))
    x_train, x_val = graphc.randn(n_train, features), graphc.randn(n_val, features)
    with graphc.no_grad():
        return x_train, teacher(x_train).argmax(1), x_val, teacher(x_val).argmax(1)


def make_model(features: int = 16, classes: int = 4) -> nn.Module:
    # BatchNorm1d and Dropout behave differently in train and eval mode; a compiled graph
    # is specialised to one mode (the module's training flag is one of its guards).
    return nn.Sequential(nn.Linear(features, 64), nn.BatchNorm1d(64), nn.ReLU(),
                         nn.Dropout(0.1), nn.Linear(64, classes))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=20)
    args = parser.parse_args(argv)

    graphc.manual_seed(0)
    x_train, y_train, x_val, y_val = teacher_task()
    model = make_model()
    compiled = graphc.compile(model)       # the same object underneath: same parameters
    opt = graphc.optim.Adam(model.parameters(), lr=0.01)

    def evaluate() -> tuple[float, float]:
        """Validation loss and accuracy from the compiled model; checked against eager."""
        model.eval()                       # compiled.eval() would do the same
        with graphc.no_grad():             # compiled graphs compute values, not gradients
            logits = compiled(x_val)
            diff = (logits - model(x_val)).abs().max().item()
        model.train()
        if compiled.compiled.eager_runs or not diff <= TOLERANCE:
            raise SystemExit(f"FAILED: compiled logits differ from eager by {diff:.3e} "
                             f"(tolerance {TOLERANCE:.0e}); eager runs: "
                             f"{compiled.compiled.eager_runs}")
        accuracy = (logits.argmax(1) == y_val).float().mean().item()
        return F.cross_entropy(logits, y_val).item(), accuracy

    val_loss, accuracy = evaluate()
    print(f"before training   val loss {val_loss:.4f}  val accuracy {accuracy:.1%}")
    train_losses, val_losses = [], [val_loss]
    for step in range(1, args.steps + 1):
        opt.zero_grad()
        loss = F.cross_entropy(model(x_train), y_train)   # eager: autograd records
        loss.backward()
        opt.step()                                         # in place: compiled sees it
        train_losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            val_loss, accuracy = evaluate()
            val_losses.append(val_loss)
            print(f"step {step:4d}  train loss {loss.item():.4f}  val loss {val_loss:.4f}  "
                  f"val accuracy {accuracy:.1%}")

    info = compiled.compiled
    print(f"compiled signatures: {len(info.entries)}, recompiles: {len(info.recompiles)}, "
          f"eager runs: {len(info.eager_runs)}")
    # Only eval mode was compiled, once: the optimizer's in-place updates and the batch
    # norm's running statistics needed no recompile.
    if info.recompiles or len(info.entries) != 1:
        raise SystemExit(f"FAILED: expected one compiled signature and no recompiles, got "
                         f"{len(info.entries)} signatures; recompiles: "
                         f"{[str(r) for r in info.recompiles]}")
    if not (train_losses[-1] < 0.5 * train_losses[0] and val_losses[-1] < 0.5 * val_losses[0]):
        raise SystemExit(f"FAILED: loss did not go down enough: train {train_losses[0]:.4f} -> "
                         f"{train_losses[-1]:.4f}, val {val_losses[0]:.4f} -> {val_losses[-1]:.4f}")
    print(f"loss went down: train {train_losses[0]:.3f} -> {train_losses[-1]:.3f}, "
          f"val {val_losses[0]:.3f} -> {val_losses[-1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
