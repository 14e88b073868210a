"""An MNIST-style CNN and its train/test loop, written as PyTorch code.

Run: python3 examples/mnist.py

Only the imports below name graphc (tests/models/ also runs this file with torch). The
data are synthetic 28x28 "digits" (no download): each class is a bright bar at its own
place, plus noise, so a few epochs learn it. The loop is the usual one: a DataLoader
with shuffling, Adadelta with a StepLR schedule, gradient clipping, and a test pass
under no_grad counting correct predictions.
"""

from __future__ import annotations

import graphc as torch
import graphc.nn as nn
import graphc.nn.functional as F
import graphc.optim as optim
from graphc.optim.lr_scheduler import StepLR
from graphc.utils.data import DataLoader, TensorDataset, random_split


class Net(nn.Module):
    def __init__(self, c1: int = 8, c2: int = 16, hidden: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, 1)
        self.conv2 = nn.Conv2d(c1, c2, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(c2 * 12 * 12, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def synthetic_digits(n: int, generator) -> TensorDataset:
    """n noisy 1x28x28 images; class c has a bright horizontal bar at rows 2c+4, 2c+5."""
    labels = torch.randint(0, 10, (n,), generator=generator)
    images = 0.3 * torch.randn(n, 1, 28, 28, generator=generator)
    rows = torch.arange(28).view(1, 28, 1)
    bar = ((rows - 2 * labels.view(n, 1, 1) - 4) // 2 == 0).float()  # (n, 28, 1)
    images = images + bar.unsqueeze(1)
    return TensorDataset(images, labels)


def train(model, loader, optimizer, epoch: int, log_every: int = 0) -> float:
    model.train()
    total = 0.0
    for batch, (data, target) in enumerate(loader):
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
        total += loss.item()
        if log_every and batch % log_every == 0:
            print(f"epoch {epoch} [{batch * len(data)}/{len(loader.dataset)}] "
                  f"loss {loss.item():.4f}")
    return total / len(loader)


def test(model, loader) -> tuple[float, int]:
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in loader:
            output = model(data)
            loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    return loss / len(loader.dataset), correct


def run(epochs: int = 2, n: int = 600, seed: int = 1, log_every: int = 0):
    """Train and test from ``seed``; returns (per-epoch train losses, test loss, correct)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train_set, test_set = random_split(synthetic_digits(n, g), [0.8, 0.2], generator=g)
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=g)
    test_loader = DataLoader(test_set, batch_size=200)
    model = Net()
    optimizer = optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
    losses = []
    for epoch in range(1, epochs + 1):
        losses.append(train(model, train_loader, optimizer, epoch, log_every))
        scheduler.step()
    test_loss, correct = test(model, test_loader)
    return losses, test_loss, correct, len(test_set)


def main() -> int:
    losses, test_loss, correct, n_test = run(log_every=5)
    print(f"train loss per epoch: {', '.join(f'{x:.4f}' for x in losses)}")
    print(f"test: average loss {test_loss:.4f}, accuracy {correct}/{n_test}")
    return 0 if correct > 0.8 * n_test else 1


if __name__ == "__main__":
    raise SystemExit(main())
