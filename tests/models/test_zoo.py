"""The model zoo (examples/gpt.py, llama.py, resnet.py, vit.py, mnist.py), each a PyTorch
program whose imports name graphc.

For every model: eager graphc against torch running the same file (weights copied through
``state_dict``), values and gradients; compiled against eager with no eager fallback; a
few training steps against torch. Generation compiles at most twice over 100 tokens.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from tests.models.zoo import load

TOL = dict(rtol=2e-4, atol=2e-5)  # float32 through a few layers, two BLAS libraries


def _gpt(m, **kw):
    return m.GPT(m.GPTConfig(**kw))


MODELS = {
    # name: (file, constructor, input maker (framework module, numpy rng) -> inputs)
    "gpt": ("gpt", _gpt, lambda rng: (rng.integers(0, 96, (2, 12)),)),
    "gpt_tril_mask": ("gpt", lambda m: _gpt(m, use_sdpa=False),
                      lambda rng: (rng.integers(0, 96, (2, 12)),)),
    "llama": ("llama", lambda m: m.Llama(m.LlamaConfig()), lambda rng: (rng.integers(0, 128, (2, 10)),)),
    "resnet_basic": ("resnet", lambda m: m.ResNet(m.BasicBlock, [1, 1, 1, 1]),
                     lambda rng: (rng.standard_normal((2, 3, 32, 32), np.float32),)),
    "resnet_bottleneck": ("resnet", lambda m: m.ResNet(m.Bottleneck, [1, 1, 1, 1], base=8),
                          lambda rng: (rng.standard_normal((2, 3, 32, 32), np.float32),)),
    "resnet_imagenet_stem": ("resnet", lambda m: m.ResNet(m.BasicBlock, [1, 1, 1, 1],
                                                          small_inputs=False),
                             lambda rng: (rng.standard_normal((2, 3, 64, 64), np.float32),)),
    "vit": ("vit", lambda m: m.ViT(), lambda rng: (rng.standard_normal((2, 3, 32, 32), np.float32),)),
    "mnist": ("mnist", lambda m: m.Net(), lambda rng: (rng.standard_normal((4, 1, 28, 28), np.float32),)),
}


def build(name: str, framework: str):
    file, make, _ = MODELS[name]
    module = load(file, framework)
    return module, make(module)


def inputs(name: str, lib):
    arrays = MODELS[name][2](np.random.default_rng(0))
    return tuple(lib.tensor(a) for a in arrays)


def logits(out):
    return out[0] if isinstance(out, tuple) else out


def pair(name: str):
    """(torch model, graphc model with torch's weights)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    _, theirs = build(name, "torch")
    _, ours = build(name, "graphc")
    ours.load_state_dict({k: graphc.tensor(v.detach().numpy().copy())
                          for k, v in theirs.state_dict().items()})
    return torch, theirs, ours


def close(ours, theirs, what: str):
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), **TOL,
                               err_msg=what)


@pytest.mark.parametrize("name", MODELS)
def test_eager_matches_torch(name):
    torch, theirs, ours = pair(name)
    theirs.eval(), ours.eval()
    with torch.no_grad(), graphc.no_grad():
        close(logits(ours(*inputs(name, graphc))), logits(theirs(*inputs(name, torch))), name)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_match_torch(name):
    """Training mode (BatchNorm on batch statistics, running statistics updated; the zoo's
    dropout is 0 except mnist's, run in eval mode for this comparison)."""
    torch, theirs, ours = pair(name)
    if name == "mnist":
        theirs.eval(), ours.eval()
    else:
        theirs.train(), ours.train()
    ours_out, theirs_out = logits(ours(*inputs(name, graphc))), logits(theirs(*inputs(name, torch)))
    weights = np.random.default_rng(1).standard_normal(ours_out.shape).astype(np.float32)
    (ours_out * graphc.tensor(weights)).sum().backward()
    (theirs_out * torch.tensor(weights)).sum().backward()
    theirs_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        assert p.grad is not None, key
        close(p.grad, theirs_params[key].grad, f"{name}: grad of {key}")
    theirs_buffers = dict(theirs.named_buffers())
    for key, b in ours.named_buffers():
        if b.dtype.is_floating_point:
            close(b, theirs_buffers[key], f"{name}: buffer {key}")


@pytest.mark.parametrize("name", MODELS)
def test_compiled_matches_eager_without_fallback(name):
    graphc.manual_seed(0)
    _, model = build(name, "graphc")
    model.eval()
    x = inputs(name, graphc)
    compiled = graphc.compile(model)
    with graphc.no_grad():
        expected = logits(model(*x))
        got = logits(compiled(*x))
    assert compiled.compiled.eager_runs == [], compiled.compiled.eager_runs
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt", "llama", "resnet_basic", "vit", "mnist"])
def test_training_steps_match_torch(name):
    torch, theirs, ours = pair(name)
    if name == "mnist":  # its dropout draws from each library's own generator
        theirs.eval(), ours.eval()
    # SGD: Adam would turn gradients that are rounding noise (a key bias's, exactly zero in
    # exact arithmetic) into full-size steps of either sign
    opt_t = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    opt_g = graphc.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    rng = np.random.default_rng(2)
    for step in range(3):
        x = MODELS[name][2](rng)
        losses = []
        for lib, model, opt in ((torch, theirs, opt_t), (graphc, ours, opt_g)):
            opt.zero_grad()
            out = logits(model(*(lib.tensor(a) for a in x)))
            target = lib.tensor(np.arange(out.shape[0] * out.shape[1] if out.ndim == 3 else
                                          out.shape[0]) % out.shape[-1])
            loss = lib.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[1] == pytest.approx(losses[0], rel=1e-4), (name, step, losses)
    theirs_params = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        close(p, theirs_params[key], f"{name}: {key} after 3 steps")


# ---- generation -------------------------------------------------------------------------

@pytest.mark.parametrize("use_sdpa", [True, False], ids=["is_causal", "tril_buffer"])
def test_gpt_generation_compiles_at_most_twice_over_100_tokens(use_sdpa):
    m = load("gpt", "graphc")
    graphc.manual_seed(0)
    model = m.GPT(m.GPTConfig(use_sdpa=use_sdpa)).eval()
    prompt = graphc.randint(0, 96, (2, 3))
    eager = model.generate(prompt, 100, greedy=True)
    model.compile()
    compiled = model.generate(prompt, 100, greedy=True)
    stats = graphc.compiler.compiled_function(model)
    assert graphc.equal(compiled, eager)
    assert stats.eager_runs == [], stats.eager_runs
    assert len(stats.entries) <= 2, [str(r) for r in stats.recompiles]


def test_gpt_greedy_generation_matches_torch():
    torch, theirs, ours = pair("gpt")
    theirs.eval(), ours.eval()
    prompt = np.random.default_rng(3).integers(0, 96, (2, 4))
    a = theirs.generate(torch.tensor(prompt), 40, greedy=True).numpy()
    b = ours.generate(graphc.tensor(prompt), 40, greedy=True).numpy()
    np.testing.assert_array_equal(a, b)


def test_gpt_sampling_is_reproducible_with_a_generator():
    m = load("gpt", "graphc")
    graphc.manual_seed(0)
    model = m.GPT(m.GPTConfig()).eval()
    prompt = graphc.randint(0, 96, (1, 4))
    runs = [model.generate(prompt, 20, top_k=8, generator=graphc.Generator().manual_seed(5))
            for _ in range(2)]
    assert graphc.equal(runs[0], runs[1])
    assert runs[0].shape == (1, 24)


def test_gpt_optimizer_groups_and_loss_with_targets():
    m = load("gpt", "graphc")
    graphc.manual_seed(0)
    model = m.GPT(m.GPTConfig())
    opt = model.configure_optimizers(weight_decay=0.1, lr=1e-3)
    decay, no_decay = opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.dim() < 2 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    idx = graphc.randint(0, 96, (2, 8))
    _, loss = model(idx, idx)
    assert loss.ndim == 0 and np.isfinite(loss.item())


# ---- a training script -----------------------------------------------------------------

def test_mnist_script_learns():
    """DataLoader with shuffling and random_split, Adadelta + StepLR, clip_grad_norm_."""
    m = load("mnist", "graphc")
    losses, test_loss, correct, n_test = m.run(epochs=2, n=600)
    assert losses[1] < losses[0]
    assert correct >= 0.8 * n_test, (correct, n_test, losses)


def test_model_files_differ_from_torch_programs_in_imports_only():
    from tests.models.zoo import source
    for name in ("gpt", "llama", "resnet", "vit", "mnist"):
        ours, theirs = source(name, "graphc").splitlines(), source(name, "torch").splitlines()
        changed = [a for a, b in zip(ours, theirs) if a != b]
        assert changed and all(line.startswith(("import graphc", "from graphc"))
                               for line in changed), changed
