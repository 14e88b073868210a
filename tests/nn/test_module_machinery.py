"""Module machinery beyond forward: load_state_dict (assign, per-module overrides, hooks,
metadata), state_dict hooks and extra state, non-persistent buffers, full backward hooks,
conversions; and graphc.nn.utils (gradient clipping, parameter vectors). Each against a
hand computation, and against torch where torch is installed."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import pytest

import graphc
from graphc import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.register_buffer("count", graphc.zeros(()))
        self.register_buffer("cache", graphc.zeros(2), persistent=False)

    def forward(self, x):
        return self.fc(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(2, 3)
        self.block = Block()

    def forward(self, x):
        return self.block(self.embed(x))


# ---- state_dict metadata and hooks -------------------------------------------------------

def test_state_dict_metadata_has_every_module_prefix_and_version():
    state = Net().state_dict()
    assert state._metadata == OrderedDict(
        [("", {"version": 1}), ("embed", {"version": 1}), ("block", {"version": 1}),
         ("block.fc", {"version": 1})])


def test_metadata_matches_torchs():
    torch = pytest.importorskip("torch")
    tnet = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Sequential(torch.nn.Linear(3, 1)))
    gnet = nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Linear(3, 1)))
    assert dict(gnet.state_dict()._metadata) == dict(tnet.state_dict()._metadata)
    assert list(gnet.state_dict()) == list(tnet.state_dict())


class Versioned(nn.Module):
    """Version 2 renamed ``w`` to ``weight``: older checkpoints load through the override."""

    _version = 2

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(graphc.zeros(2))
        self.seen = []

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        self.seen.append((prefix, dict(local_metadata)))
        version = local_metadata.get("version")
        if (version is None or version < 2) and prefix + "w" in state_dict:
            state_dict[prefix + "weight"] = state_dict.pop(prefix + "w")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


def test_load_from_state_dict_override_renames_legacy_keys():
    model = nn.Sequential(nn.Linear(2, 2), Versioned())
    legacy = {k: v for k, v in model.state_dict().items()}
    legacy["1.w"] = legacy.pop("1.weight").add(5.0)  # an old checkpoint: no metadata, old name
    caller_copy = dict(legacy)
    assert model.load_state_dict(legacy) == ([], [])
    assert model[1].weight.tolist() == [5.0, 5.0]
    assert model[1].seen == [("1.", {})]
    assert legacy == caller_copy  # the override edited load_state_dict's own copy

    current = model.state_dict()
    assert current._metadata["1"] == {"version": 2}
    model[1].seen.clear()
    model.load_state_dict(current)
    assert model[1].seen == [("1.", {"version": 2})]


def test_load_pre_hooks_run_per_module_with_their_prefix():
    net = Net()
    calls = []

    def rename(state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        calls.append(prefix)
        if prefix + "old_weight" in state_dict:
            state_dict[prefix + "weight"] = state_dict.pop(prefix + "old_weight")

    net.block.fc._register_load_state_dict_pre_hook(rename)
    state = net.state_dict()
    state["block.fc.old_weight"] = state.pop("block.fc.weight").add(1.0)
    net.load_state_dict(state)
    assert calls == ["block.fc."]
    np.testing.assert_array_equal(net.block.fc.weight.numpy(force=True), state["block.fc.old_weight"].numpy())

    with_module = []
    handle = net.embed.register_load_state_dict_pre_hook(
        lambda module, sd, prefix, *rest: with_module.append((module, prefix)))
    net.load_state_dict(net.state_dict())
    assert with_module == [(net.embed, "embed.")]
    handle.remove()
    net.load_state_dict(net.state_dict())
    assert len(with_module) == 1


def test_load_post_hook_can_clear_incompatible_keys():
    net = Net()
    seen = []

    def forgive(module, keys):
        seen.append((list(keys.missing_keys), list(keys.unexpected_keys)))
        keys.missing_keys.clear()
        keys.unexpected_keys[:] = [k for k in keys.unexpected_keys if k != "extra"]

    net.register_load_state_dict_post_hook(forgive)
    state = net.state_dict()
    del state["block.count"]
    state["extra"] = graphc.zeros(1)
    assert net.load_state_dict(state) == ([], [])  # strict, yet no error: the hook cleared them
    assert seen == [(["block.count"], ["extra"])]

    net.register_load_state_dict_post_hook(lambda m, k: "not None")
    with pytest.raises(AssertionError, match="must return None"):
        net.load_state_dict(net.state_dict())


def test_state_dict_hooks():
    net = Net()
    pre = []
    net.block.register_state_dict_pre_hook(lambda module, prefix, keep_vars: pre.append(prefix))

    def add_key(module, state_dict, prefix, local_metadata):
        state_dict[prefix + "note"] = graphc.tensor(float(local_metadata["version"]))

    net.block.register_state_dict_post_hook(add_key)
    state = net.state_dict()
    assert pre == ["block."] and state["block.note"].item() == 1.0
    net.block.register_state_dict_post_hook(lambda *args: {})
    with pytest.raises(RuntimeError, match="post-hook must return None"):
        net.state_dict()

    replaced = Net()
    replaced._register_state_dict_hook(lambda m, sd, prefix, meta: OrderedDict(only=graphc.zeros(1)))
    assert list(replaced.state_dict()) == ["only"]


class Counter(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.calls = 0

    def get_extra_state(self):
        return {"calls": self.calls}

    def set_extra_state(self, state):
        self.calls = state["calls"]


def test_extra_state_round_trips_through_save_and_load(tmp_path):
    a = Counter()
    a.calls = 7
    state = a.state_dict()
    assert list(state) == ["_extra_state", "lin.weight", "lin.bias"]  # own state, then children
    graphc.save(state, tmp_path / "ckpt.gc")
    b = Counter()
    b.load_state_dict(graphc.load(tmp_path / "ckpt.gc"))
    assert b.calls == 7
    del state["_extra_state"]
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "_extra_state"'):
        b.load_state_dict(state)
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "_extra_state"'):
        nn.Linear(1, 1).load_state_dict({**nn.Linear(1, 1).state_dict(), "_extra_state": 1})


# ---- load_state_dict(assign=True) ------------------------------------------------------

def test_assign_makes_the_given_tensors_the_modules_own():
    lin = nn.Linear(2, 2)
    lin.register_buffer("steps", graphc.zeros(()))
    lin.weight.requires_grad_(False)
    weight, bias = graphc.ones(2, 2, dtype=graphc.float64), graphc.zeros(2)
    steps = graphc.tensor(3.0)
    lin.load_state_dict({"weight": weight, "bias": bias, "steps": steps}, assign=True)
    assert isinstance(lin.weight, nn.Parameter) and isinstance(lin.bias, nn.Parameter)
    assert lin.weight.dtype is graphc.float64  # the state dict's dtype is kept
    assert lin.weight.data_ptr() == weight.data_ptr()  # same memory, not a copy
    assert lin.weight.requires_grad is False and lin.bias.requires_grad is True
    assert lin.steps is steps
    with graphc.no_grad():
        weight.fill_(2.0)
    assert lin.weight.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_assign_matches_torch():
    torch = pytest.importorskip("torch")
    for lib in (torch, graphc):
        lin = lib.nn.Linear(2, 2)
        lin.bias.requires_grad_(False)
        given = lib.nn.Parameter(lib.ones(2), requires_grad=True)
        lin.load_state_dict({"weight": lib.zeros(2, 2), "bias": given}, assign=True)
        assert lin.bias is given and given.requires_grad is False
        assert type(lin.weight).__name__ == "Parameter" and lin.weight.requires_grad


def test_zero_dim_parameter_loads_from_a_one_element_tensor():
    m = nn.Module()
    m.scale = nn.Parameter(graphc.tensor(1.0))
    m.load_state_dict({"scale": graphc.tensor([4.0])})
    assert m.scale.shape == () and m.scale.item() == 4.0


# ---- non-persistent buffers --------------------------------------------------------------

def test_non_persistent_buffer_round_trip():
    net = Net()
    assert "block.cache" not in net.state_dict()
    assert "block.cache" in dict(net.named_buffers())
    net.double()
    assert net.block.cache.dtype is graphc.float64  # moved by .to() like any buffer
    state = net.state_dict()
    with graphc.no_grad():
        net.block.cache.fill_(3.0)
    net.load_state_dict(state)
    assert net.block.cache.tolist() == [3.0, 3.0]  # loading leaves it alone
    state["block.cache"] = graphc.zeros(2)
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "block.cache"'):
        net.load_state_dict(state)


# ---- full backward hooks -------------------------------------------------------------------

class TwoInTwoOut(nn.Module):
    def forward(self, x, y, scale=3.0):
        return x * 2, y * scale, 5


def record_hooks(lib, module, log):
    module.register_full_backward_pre_hook(lambda m, go: log.append(("pre", go)))
    module.register_full_backward_hook(lambda m, gi, go: log.append(("full", gi, go)))


def as_lists(value):
    """Hook logs as plain data: tensors become lists; tuples, strings and None stay."""
    if isinstance(value, (tuple, list)):
        return tuple(as_lists(v) for v in value)
    if value is None or isinstance(value, str):
        return value
    return value.tolist()


def assert_same_log(got, want):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            assert_same_log(g, w)
    elif want is None or isinstance(want, str):
        assert got == want
    else:
        np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float), rtol=1e-6,
                                   atol=1e-6)


def test_full_backward_hook_sees_input_and_output_grads_by_hand():
    m = TwoInTwoOut()
    log = []
    record_hooks(graphc, m, log)
    x, y = graphc.ones(2, requires_grad=True), graphc.ones(2, requires_grad=True)
    a, b, c = m(x, y)
    assert a.grad_fn.name() == "BackwardHookFunctionBackward" and c == 5
    (a * graphc.tensor([1.0, 2.0])).sum().backward()
    # d/dx = 2 * [1, 2]; y got no gradient: zeros in grad_input, None in grad_output
    assert as_lists(log) == (("pre", ([1.0, 2.0], None, None)),
                             ("full", ([2.0, 4.0], [0.0, 0.0]), ([1.0, 2.0], None, None)))
    assert x.grad.tolist() == [2.0, 4.0] and y.grad.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("scenario", ["both-inputs", "one-input", "no-input", "replace", "linear",
                                      "pre-replace", "nested"])
def test_full_backward_hooks_match_torch(scenario):
    torch = pytest.importorskip("torch")
    results = []
    for lib in (torch, graphc):
        log = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = lib.tensor([1.0, 2.0], requires_grad=True)
            y = lib.tensor([3.0, -1.0], requires_grad=True)
            if scenario in ("both-inputs", "one-input", "no-input"):
                m = type("TwoInTwoOut", (lib.nn.Module,), {"forward": TwoInTwoOut.forward})()
                record_hooks(lib, m, log)
                if scenario == "one-input":
                    x = x.detach()
                if scenario == "no-input":
                    x, y = x.detach(), y.detach()
                    m.register_forward_hook(lambda mod, args, out: (out[0].requires_grad_(), out[1], out[2]))
                a, b, _ = m(x, y)
                (a * b).sum().backward()
            elif scenario in ("replace", "pre-replace"):
                m = lib.nn.Linear(2, 2)
                with lib.no_grad():
                    m.weight.copy_(lib.tensor([[1.0, 2.0], [3.0, 4.0]]))
                    m.bias.copy_(lib.tensor([0.5, -0.5]))
                if scenario == "replace":
                    m.register_full_backward_hook(lambda mod, gi, go: (gi[0] * 10,))
                else:
                    m.register_full_backward_pre_hook(lambda mod, go: (go[0] * -1,))
                record_hooks(lib, m, log)
                m(x).pow(2).sum().backward()
                log.append(("weight.grad", m.weight.grad))
            elif scenario == "linear":
                m = lib.nn.Linear(2, 1)
                with lib.no_grad():
                    m.weight.fill_(0.5)
                record_hooks(lib, m, log)
                m(lib.ones(3, 2)).sum().backward()
            else:
                inner = lib.nn.Linear(2, 2)
                outer = lib.nn.Sequential(inner, lib.nn.Tanh())
                with lib.no_grad():
                    inner.weight.copy_(lib.tensor([[0.5, -1.0], [0.25, 2.0]]))
                    inner.bias.zero_()
                record_hooks(lib, inner, log)
                record_hooks(lib, outer, log)
                outer(x).sum().backward()
            log.append(("x.grad", x.grad))
        results.append(as_lists(log))
    expected, got = results
    assert_same_log(got, expected)


def test_backward_hook_handles_remove_and_deprecated_alias():
    lin = nn.Linear(2, 2)
    log = []
    handle = lin.register_backward_hook(lambda m, gi, go: log.append(len(gi)))
    lin(graphc.ones(1, 2, requires_grad=True)).sum().backward()
    assert log == [1]
    handle.remove()
    lin(graphc.ones(1, 2, requires_grad=True)).sum().backward()
    assert log == [1]


def test_wrong_number_of_replacement_grads_is_an_error():
    lin = nn.Linear(2, 2)
    lin.register_full_backward_hook(lambda m, gi, go: (gi[0], gi[0]))
    with pytest.raises(RuntimeError, match="invalid number of grad_input, got 2, but expected 1"):
        lin(graphc.ones(1, 2, requires_grad=True)).sum().backward()


def test_no_hooks_no_wrapping_and_no_grad_mode_passes_through():
    lin = nn.Linear(2, 2)
    assert lin(graphc.ones(1, 2, requires_grad=True)).grad_fn.name() != "BackwardHookFunctionBackward"
    lin.register_full_backward_hook(lambda *a: None)
    with graphc.no_grad():
        assert lin(graphc.ones(1, 2)).grad_fn is None


# ---- conversions and small methods -----------------------------------------------------------

def test_type_casts_every_tensor_including_integer_buffers():
    bn = nn.BatchNorm1d(2)
    bn.type(graphc.float64)
    assert bn.weight.dtype is graphc.float64 and bn.running_mean.dtype is graphc.float64
    assert bn.num_batches_tracked.dtype is graphc.float64  # type() casts all, unlike to()
    lin = nn.Linear(2, 2).type("torch.DoubleTensor")
    assert lin.weight.dtype is graphc.float64


def test_to_empty_share_memory_requires_grad_zero_grad():
    lin = nn.Linear(3, 2)
    weight = lin.weight
    assert lin.to_empty(device="cpu") is lin
    assert lin.weight is weight and lin.weight.shape == (2, 3)  # same Parameter, new memory
    assert lin.share_memory() is lin
    assert lin.requires_grad_(False) is lin and not lin.weight.requires_grad
    lin.requires_grad_()
    lin(graphc.ones(1, 3)).sum().backward()
    lin.zero_grad(set_to_none=False)
    assert lin.weight.grad.tolist() == [[0.0] * 3] * 2
    lin.zero_grad()
    assert lin.weight.grad is None


# ---- graphc.nn.utils ---------------------------------------------------------------------------

def params_with_grads(lib, grads):
    params = []
    for g in grads:
        p = lib.nn.Parameter(lib.zeros(len(g)))
        p.grad = lib.tensor(g)
        params.append(p)
    return params


GRADS = [[3.0, -4.0], [1.0, 2.0, -2.0], [0.5]]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_by_hand(norm_type, max_norm):
    params = params_with_grads(graphc, GRADS)
    flat = np.concatenate([np.array(g) for g in GRADS])
    want_total = np.max(np.abs(flat)) if norm_type == float("inf") else \
        np.sum(np.abs(flat) ** norm_type) ** (1 / norm_type)
    total = graphc.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type)
    assert total.shape == () and total.dtype is graphc.float32
    assert total.item() == pytest.approx(want_total, rel=1e-6)
    coef = min(1.0, max_norm / (want_total + 1e-6))
    for p, g in zip(params, GRADS):
        np.testing.assert_allclose(p.grad.numpy(), np.array(g) * coef, rtol=1e-6)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(n).astype(np.float32).tolist() for n in (5, 300, 7)]
    tp, gp = params_with_grads(torch, grads), params_with_grads(graphc, grads)
    t_total = torch.nn.utils.clip_grad_norm_(tp, 1.0, norm_type=norm_type)
    g_total = graphc.nn.utils.clip_grad_norm_(iter(gp), 1.0, norm_type=norm_type)
    np.testing.assert_allclose(g_total.numpy(), t_total.numpy(), rtol=1e-6)
    for a, b in zip(gp, tp):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6)
    t_norm = torch.nn.utils.get_total_norm([p.grad for p in tp], 3.0)
    g_norm = graphc.nn.utils.get_total_norm([p.grad for p in gp], 3.0)
    np.testing.assert_allclose(g_norm.numpy(), t_norm.numpy(), rtol=1e-6)


def test_clip_grad_norm_edge_cases():
    from graphc.nn.utils import clip_grad_norm_, clip_grads_with_norm_, get_total_norm
    assert clip_grad_norm_([nn.Parameter(graphc.zeros(2))], 1.0).item() == 0.0  # no grads
    with pytest.warns(UserWarning, match="empty generator"):
        clip_grad_norm_((p for p in []), 1.0)
    bad = params_with_grads(graphc, [[float("nan"), 1.0]])
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(bad, 1.0, error_if_nonfinite=True)
    single = params_with_grads(graphc, [[6.0, 8.0]])[0]
    clip_grads_with_norm_(single, 5.0, get_total_norm(single.grad))
    np.testing.assert_allclose(single.grad.numpy(), [3.0, 4.0], rtol=1e-6)
    with pytest.warns(FutureWarning):
        graphc.nn.utils.clip_grad_norm(single, 1.0)


def test_clip_grad_value():
    params = params_with_grads(graphc, GRADS)
    graphc.nn.utils.clip_grad_value_(params, 1.5)
    for p, g in zip(params, GRADS):
        assert p.grad.tolist() == np.clip(g, -1.5, 1.5).tolist()


def test_parameters_to_vector_and_back():
    a, b = nn.Parameter(graphc.tensor([[1.0, 2.0], [3.0, 4.0]])), nn.Parameter(graphc.tensor([5.0]))
    vec = graphc.nn.utils.parameters_to_vector([a, b])
    assert vec.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    new = graphc.arange(10.0, 15.0)
    graphc.nn.utils.vector_to_parameters(new, [a, b])
    assert a.tolist() == [[10.0, 11.0], [12.0, 13.0]] and b.tolist() == [14.0]
    assert isinstance(a, nn.Parameter) and a.requires_grad
    with graphc.no_grad():
        new.fill_(0.0)
    assert a.tolist() == [[0.0, 0.0], [0.0, 0.0]]  # views of the vector, as in PyTorch
    with pytest.raises(TypeError, match="expected graphc.Tensor"):
        graphc.nn.utils.vector_to_parameters([1.0], [a])


def test_a_version_1_batch_norm_checkpoint_without_num_batches_tracked_loads():
    """BatchNorm's state_dict version is 2 (as torch's); a version-1 checkpoint has no
    num_batches_tracked, and strict loading still succeeds: the module keeps its own count
    (torch's rule)."""
    bn = nn.BatchNorm2d(3)
    state = bn.state_dict()
    assert state._metadata[""]["version"] == 2
    old = OrderedDict((k, v) for k, v in state.items() if k != "num_batches_tracked")
    old._metadata = {"": {"version": 1}}
    fresh = nn.BatchNorm2d(3)
    fresh.num_batches_tracked.fill_(7)
    fresh.load_state_dict(old)
    assert fresh.num_batches_tracked.item() == 7
    new = OrderedDict((k, v) for k, v in state.items() if k != "num_batches_tracked")
    new._metadata = {"": {"version": 2}}
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        nn.BatchNorm2d(3).load_state_dict(new)


def test_buffer_assigned_as_an_attribute_registers_a_buffer():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.kept = nn.Buffer(graphc.ones(2))
            self.scratch = nn.Buffer(graphc.zeros(3), persistent=False)

    m = M()
    assert dict(m.named_buffers()).keys() == {"kept", "scratch"}
    assert list(m.state_dict()) == ["kept"]
    assert type(m.kept) is graphc.Tensor and not m.kept.requires_grad
    m.kept.fill_(5.0)  # the module's tensor is the buffer
    assert m.state_dict()["kept"].tolist() == [5.0, 5.0]
    with pytest.raises(TypeError, match="Buffer"):
        nn.Buffer([1.0])
