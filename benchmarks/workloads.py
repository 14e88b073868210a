"""The six workloads of the backend's benchmark: a graphc model, inputs, and a numpy version.

Each ``Workload`` builds its graphc model and inputs (seeded), a numpy function computing
the same thing the way a numpy user would write it, and optionally torch and JAX versions
(only when those are installed). The compiled graph is checked against eager before timing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import graphc
import graphc.nn as nn
import graphc.nn.functional as F


@dataclass
class Workload:
    name: str
    title: str
    model: object                  # a graphc function or Module
    inputs: tuple                  # graphc tensors
    numpy_fn: object | None        # (numpy arrays) -> array
    target: float | None = None    # compiled vs numpy speed-up the issue asks for
    torch_fn: object | None = None  # builds (torch_callable, torch_inputs) lazily
    jax_fn: object | None = None
    extra: dict = field(default_factory=dict)

    def numpy_inputs(self):
        return tuple(t.numpy() for t in self.inputs)


# ---- W1: elementwise chain -----------------------------------------------------------------
def w1_graphc(x):
    return F.gelu(x * 1.5 + 0.25, approximate="tanh") * graphc.sigmoid(x)


def w1_numpy(x):
    y = x * np.float32(1.5) + np.float32(0.25)
    c = np.float32(math.sqrt(2 / math.pi))
    g = np.float32(0.5) * y * (np.float32(1) + np.tanh(c * (y + np.float32(0.044715) * y * y * y)))
    return g * (np.float32(1) / (np.float32(1) + np.exp(-x)))


def w1_torch(torch):
    return lambda x: torch.nn.functional.gelu(x * 1.5 + 0.25, approximate="tanh") * torch.sigmoid(x)


def w1_jax(jnp, jax):
    return lambda x: jax.nn.gelu(x * 1.5 + 0.25, approximate=True) * jax.nn.sigmoid(x)


# ---- W2: softmax over rows -----------------------------------------------------------------
def w2_graphc(x):
    return F.softmax(x, dim=-1)


def w2_numpy(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---- W3: layer_norm ------------------------------------------------------------------------
def w3_numpy(x, w, b):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(1e-5)) * w + b


# ---- W4/W5: MLP ----------------------------------------------------------------------------
def mlp(width: int) -> nn.Module:
    layers = []
    for _ in range(3):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def mlp_numpy(model):
    weights = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy())
               for m in model if isinstance(m, nn.Linear)]

    def run(x):
        for w, b in weights:
            x = np.maximum(x @ w + b, np.float32(0))
        return x
    return run


def build(names=None) -> list[Workload]:
    graphc.manual_seed(0)
    out = []
    want = lambda n: names is None or n in names

    if want("W1"):
        x = graphc.randn(4_194_304)
        out.append(Workload("W1", "gelu_tanh(x*1.5+0.25)*sigmoid(x), 4M f32", w1_graphc, (x,),
                            w1_numpy, 12.0, torch_fn=w1_torch, jax_fn=w1_jax))
    if want("W2"):
        x = graphc.randn(4096, 1024)
        out.append(Workload("W2", "softmax(x, -1), 4096x1024 f32", w2_graphc, (x,), w2_numpy, 6.0,
                            torch_fn=lambda torch: (lambda x: torch.softmax(x, -1)),
                            jax_fn=lambda jnp, jax: (lambda x: jax.nn.softmax(x, axis=-1))))
    if want("W3"):
        ln = nn.LayerNorm(1024, eps=1e-5).eval()
        with graphc.no_grad():
            ln.weight.copy_(graphc.randn(1024))
            ln.bias.copy_(graphc.randn(1024))
        x = graphc.randn(4096, 1024)
        w, b = ln.weight.detach().numpy(), ln.bias.detach().numpy()
        out.append(Workload(
            "W3", "layer_norm(x, 1024, w, b), 4096x1024 f32", ln, (x,),
            lambda x: w3_numpy(x, w, b), 9.0,
            torch_fn=lambda torch: _torch_layer_norm(torch, w, b),
            jax_fn=lambda jnp, jax: (lambda x: (x - x.mean(-1, keepdims=True)) * jax.lax.rsqrt(
                x.var(-1, keepdims=True) + 1e-5) * w + b)))
    for name, width, batch, target in (("W4", 1024, 256, 0.95), ("W5", 64, 1, 2.0)):
        if want(name):
            model = mlp(width)
            x = graphc.randn(batch, width)
            out.append(Workload(name, f"3x(Linear {width}->{width} + ReLU), batch {batch}", model, (x,),
                                mlp_numpy(model), target, torch_fn=_torch_mlp(model),
                                jax_fn=_jax_mlp(model)))
    if want("W6"):
        layer = nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, dropout=0.0,
                                           batch_first=True).eval()
        x = graphc.randn(8, 128, 256)
        out.append(Workload("W6", "TransformerEncoderLayer(256, 4 heads), 8x128 tokens", layer, (x,),
                            None, None, torch_fn=_torch_encoder(layer)))
    return out


def _torch_encoder(layer):
    def make(torch):
        t = torch.nn.TransformerEncoderLayer(256, 4, dim_feedforward=1024, dropout=0.0,
                                             batch_first=True).eval()
        t.load_state_dict({k: torch.from_numpy(v.detach().numpy().copy())
                           for k, v in layer.state_dict().items()})
        return t
    return make


def _torch_layer_norm(torch, w, b):
    tw, tb = torch.from_numpy(w), torch.from_numpy(b)
    return lambda x: torch.nn.functional.layer_norm(x, (1024,), tw, tb, 1e-5)


def _torch_mlp(model):
    def make(torch):
        layers = [m for m in model if isinstance(m, nn.Linear)]
        ws = [(torch.from_numpy(m.weight.detach().numpy()), torch.from_numpy(m.bias.detach().numpy()))
              for m in layers]

        def run(x):
            for w, b in ws:
                x = torch.relu(torch.nn.functional.linear(x, w, b))
            return x
        return run
    return make


def _jax_mlp(model):
    def make(jnp, jax):
        ws = [(jnp.asarray(m.weight.detach().numpy().T), jnp.asarray(m.bias.detach().numpy()))
              for m in model if isinstance(m, nn.Linear)]

        def run(x):
            for w, b in ws:
                x = jax.nn.relu(x @ w + b)
            return x
        return run
    return make
