"""The Module API: registration, naming, modes, conversions, hooks, state dicts and repr."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

import graphc
from graphc import nn


class Block(nn.Module):
    """A module with a parameter, a persistent and a non-persistent buffer, and a child."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(graphc.ones(3))
        self.register_buffer("count", graphc.zeros(()))
        self.register_buffer("cache", graphc.zeros(2), persistent=False)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        return self.fc(x * self.scale)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(2, 3)
        self.block = Block()
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(3, 1))

    def forward(self, x):
        return self.head(self.block(self.embed(x)))


NET_PARAMS = ["embed.weight", "embed.bias", "block.scale", "block.fc.weight", "block.fc.bias",
              "head.1.weight", "head.1.bias"]
NET_STATE = ["embed.weight", "embed.bias", "block.scale", "block.count", "block.fc.weight",
             "block.fc.bias", "head.1.weight", "head.1.bias"]


# ---- registration ---------------------------------------------------------------------

def test_attribute_assignment_registers_parameters_buffers_and_modules():
    b = Block()
    assert list(b._parameters) == ["scale"]
    assert list(b._buffers) == ["count", "cache"]
    assert list(b._modules) == ["fc"]
    b.plain = graphc.zeros(2)  # a tensor that is not a buffer is a plain attribute
    assert "plain" in b.__dict__ and "plain" not in b._buffers


def test_assigning_a_tensor_to_a_buffer_name_updates_the_buffer():
    b = Block()
    new = graphc.full((), 5.0)
    b.count = new
    assert b._buffers["count"] is new and b.count is new
    b.count = None
    assert b.count is None and "count" not in b.state_dict()
    with pytest.raises(TypeError, match="cannot assign 'int' as buffer 'cache'"):
        b.cache = 3


def test_assigning_a_plain_tensor_to_a_parameter_name_is_a_type_error():
    b = Block()
    with pytest.raises(TypeError, match=r"cannot assign 'Tensor' as parameter 'scale' \(graphc.nn.Parameter "
                                        r"or None expected\)"):
        b.scale = graphc.ones(3)
    b.scale = None  # None keeps the name reserved
    assert b.scale is None and "scale" in b._parameters
    assert [n for n, _ in b.named_parameters()] == ["fc.weight", "fc.bias"]


def test_reassignment_moves_a_name_between_registries():
    b = Block()
    b.fc = nn.Parameter(graphc.zeros(1))
    assert "fc" not in b._modules and "fc" in b._parameters
    b.count = nn.Linear(1, 1)
    assert "count" not in b._buffers and "count" in b._modules


def test_assigning_before_super_init_names_the_class_and_the_fix():
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(graphc.ones(1))
            super().__init__()

    class EarlyModule(nn.Module):
        def __init__(self):
            self.sub = nn.Linear(1, 1)
            super().__init__()

    with pytest.raises(AttributeError, match=r"cannot assign Parameter 'w' to Early before "
                                             r"Module.__init__\(\) is called; call super\(\).__init__\(\)"):
        Early()
    with pytest.raises(AttributeError, match="cannot assign Module 'sub' to EarlyModule before"):
        EarlyModule()


@pytest.mark.parametrize("register", ["register_parameter", "register_buffer", "add_module"])
def test_registration_validates_names(register):
    m = Block()
    value = {"register_parameter": nn.Parameter(graphc.ones(1)), "register_buffer": graphc.ones(1),
             "add_module": nn.ReLU()}[register]
    fn = getattr(m, register)
    with pytest.raises(KeyError, match=r'contain "\.", got: a\.b'):
        fn("a.b", value)
    with pytest.raises(KeyError, match="be empty string"):
        fn("", value)
    with pytest.raises(KeyError, match="attribute 'forward' already exists"):
        fn("forward", value)
    with pytest.raises(TypeError, match="name should be a string"):
        fn(3, value)
    fn("ok", value)
    assert m.ok is value


def test_registration_rejects_wrong_types_and_non_leaf_parameters():
    m = nn.Module()
    with pytest.raises(TypeError, match=r"cannot assign 'Tensor' object to parameter 'w' \(graphc.nn.Param"):
        m.register_parameter("w", graphc.ones(2))
    with pytest.raises(TypeError, match="cannot assign 'list' object to buffer 'b'"):
        m.register_buffer("b", [1.0])
    with pytest.raises(TypeError, match="int is not a Module subclass"):
        m.add_module("c", 3)
    m.register_module("c", nn.ReLU())  # PyTorch's alias
    assert isinstance(m.c, nn.ReLU)
    m.register_parameter("none", None)
    assert m.none is None and list(m.parameters()) == []


def test_getattr_and_delattr():
    b = Block()
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'missing'"):
        _ = b.missing
    del b.scale, b.count, b.fc
    assert not b._parameters and list(b._buffers) == ["cache"] and not b._modules
    b.extra = 1
    del b.extra
    assert not hasattr(b, "extra")


def test_dir_lists_parameters_buffers_and_modules():
    names = dir(Block())
    for name in ("scale", "count", "cache", "fc", "forward", "training"):
        assert name in names
    assert all(not n[0].isdigit() for n in dir(nn.Sequential(nn.ReLU())))


def test_forward_not_defined_names_the_class():
    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match=r"Module \[NoForward\] is missing the required \"forward"):
        NoForward()(graphc.ones(1))


# ---- walking the tree -----------------------------------------------------------------

def test_named_parameters_buffers_modules_and_children():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NET_PARAMS
    assert [n for n, _ in net.named_parameters(prefix="net")] == ["net." + n for n in NET_PARAMS]
    assert [n for n, _ in net.named_parameters(recurse=False)] == []
    assert [n for n, _ in net.block.named_parameters(recurse=False)] == ["scale"]
    assert [n for n, _ in net.named_buffers()] == ["block.count", "block.cache"]
    assert [n for n, _ in net.named_modules()] == ["", "embed", "block", "block.fc", "head", "head.0",
                                                   "head.1"]
    assert [n for n, _ in net.named_children()] == ["embed", "block", "head"]
    assert list(net.children())[1] is net.block
    assert len(list(net.parameters())) == 7 and len(list(net.modules())) == 7
    assert all(isinstance(p, nn.Parameter) for p in net.parameters())


def test_shared_parameters_and_modules_are_listed_once():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in seq.named_modules()] == ["", "0", "1"]
    assert [n for n, _ in seq.named_modules(remove_duplicate=False)] == ["", "0", "1", "2"]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    assert [n for n, _ in seq.named_parameters(remove_duplicate=False)] == \
        ["0.weight", "0.bias", "2.weight", "2.bias"]
    tied = Net()
    tied.block.fc.weight = tied.head[1].weight = nn.Parameter(graphc.ones(3, 3))
    names = [n for n, _ in tied.named_parameters()]
    assert "block.fc.weight" in names and "head.1.weight" not in names
    # a state dict lists a shared tensor under every name, so it loads back into the same tree
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_get_submodule_parameter_and_buffer():
    net = Net()
    assert net.get_submodule("block.fc") is net.block.fc
    assert net.get_submodule("") is net
    assert net.get_submodule("head.1") is net.head[1]
    assert net.get_parameter("block.fc.bias") is net.block.fc.bias
    assert net.get_buffer("block.count") is net.block.count
    with pytest.raises(AttributeError, match="Block has no attribute `nope`"):
        net.get_submodule("block.nope")
    with pytest.raises(AttributeError, match="`training` is not an nn.Module"):
        net.get_submodule("block.training")
    with pytest.raises(AttributeError, match="`count` is not nn.Parameter"):
        net.get_parameter("block.count")
    with pytest.raises(AttributeError, match="Linear has no attribute `nope`"):
        net.get_parameter("embed.nope")


# ---- modes and gradients --------------------------------------------------------------

def test_train_and_eval_recurse_and_return_self():
    net = Net()
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    assert net.train() is net
    assert all(m.training for m in net.modules())
    net.block.train(False)
    assert net.training and not net.block.fc.training and net.head.training
    with pytest.raises(ValueError, match="training mode is expected to be a bool"):
        net.train("yes")


def test_requires_grad_freezes_and_unfreezes_every_parameter():
    net = Net()
    assert net.requires_grad_(False) is net
    assert not any(p.requires_grad for p in net.parameters())
    out = net(graphc.randn(4, 2))
    assert not out.requires_grad
    net.block.requires_grad_()
    assert [n for n, p in net.named_parameters() if p.requires_grad] == \
        ["block.scale", "block.fc.weight", "block.fc.bias"]


def test_zero_grad_sets_none_or_zeros_in_place():
    net = Net()
    net(graphc.randn(4, 2)).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    grad = net.embed.weight.grad
    net.zero_grad(set_to_none=False)
    assert net.embed.weight.grad is grad and not grad.numpy().any()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_parameters_get_gradients_through_the_module():
    lin = nn.Linear(3, 2)
    x = graphc.randn(5, 3)
    lin(x).sum().backward()
    np.testing.assert_allclose(lin.weight.grad.numpy(), np.tile(x.numpy().sum(0), (2, 1)), rtol=1e-5)
    np.testing.assert_allclose(lin.bias.grad.numpy(), [5.0, 5.0])


# ---- conversions ----------------------------------------------------------------------

def test_double_keeps_parameter_identity_and_converts_grads_and_buffers():
    bn_net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    weight = bn_net[0].weight
    bn_net(graphc.randn(4, 2)).sum().backward()
    grad_values = weight.grad.numpy().copy()
    assert bn_net.double() is bn_net
    assert bn_net[0].weight is weight and isinstance(weight, nn.Parameter)
    assert weight.dtype is graphc.float64 and weight.requires_grad and weight.is_leaf
    assert weight.grad.dtype is graphc.float64
    np.testing.assert_allclose(weight.grad.numpy(), grad_values, rtol=1e-7)
    assert bn_net[1].running_mean.dtype is graphc.float64
    assert bn_net[1].num_batches_tracked.dtype is graphc.int64  # integers keep their dtype
    out = bn_net(graphc.randn(4, 2, dtype=graphc.float64))
    assert out.dtype is graphc.float64
    bn_net.float()
    assert weight.dtype is graphc.float32 and bn_net[1].running_var.dtype is graphc.float32


def test_to_accepts_dtype_device_and_tensor_spellings():
    lin = nn.Linear(2, 2)
    assert lin.to(graphc.float64).weight.dtype is graphc.float64
    assert lin.to(dtype=graphc.float32).weight.dtype is graphc.float32
    assert lin.to(graphc.zeros(1, dtype=graphc.float64)).bias.dtype is graphc.float64
    assert lin.to("cpu", graphc.float32).weight.dtype is graphc.float32
    assert lin.to("meta").weight.is_meta
    with pytest.raises(TypeError, match="only accepts floating point dtypes"):
        lin.to(graphc.int64)


def test_apply_visits_children_first_and_returns_self():
    net = Net()
    seen = []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    assert seen == ["Linear", "Linear", "Block", "ReLU", "Linear", "Sequential", "Net"]
    net.apply(lambda m: nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
    assert not any(m.bias.numpy(force=True).any() for m in net.modules() if isinstance(m, nn.Linear))


def test_deepcopy_gives_independent_parameters():
    net = Net()
    twin = copy.deepcopy(net)
    assert isinstance(twin.block.scale, nn.Parameter) and twin.block.scale is not net.block.scale
    with graphc.no_grad():
        twin.block.scale.fill_(7.0)
    assert net.block.scale.numpy(force=True).tolist() == [1.0, 1.0, 1.0]
    x = graphc.randn(2, 2)
    np.testing.assert_allclose(copy.deepcopy(net)(x).detach().numpy(), net(x).detach().numpy())


# ---- hooks ----------------------------------------------------------------------------

def test_forward_pre_hook_can_replace_arguments_and_be_removed():
    lin = nn.Linear(2, 2)
    calls = []
    h1 = lin.register_forward_pre_hook(lambda m, args: calls.append(("pre", m, args)))
    h2 = lin.register_forward_pre_hook(lambda m, args: args[0] * 0)  # a non-tuple is wrapped
    x = graphc.ones(1, 2)
    out = lin(x)
    np.testing.assert_allclose(out.detach().numpy(), lin.bias.detach().numpy()[None])
    assert calls[0][1] is lin and calls[0][2][0] is x
    h2.remove()
    np.testing.assert_allclose(lin(x).detach().numpy(), (x.numpy() @ lin.weight.detach().numpy().T
                                                         + lin.bias.detach().numpy()), rtol=1e-6)
    h1.remove()
    lin(x)
    assert len(calls) == 2


def test_forward_hook_sees_arguments_and_can_replace_the_output():
    lin = nn.Linear(2, 2)
    seen = {}

    def record(module, args, output):
        seen.update(module=module, args=args, output=output)

    lin.register_forward_hook(record)
    handle = lin.register_forward_hook(lambda m, args, out: out + 100)
    x = graphc.zeros(1, 2)
    out = lin(x)
    assert seen["module"] is lin and seen["args"][0] is x
    np.testing.assert_allclose(out.detach().numpy(), seen["output"].detach().numpy() + 100)
    handle.remove()
    np.testing.assert_allclose(lin(x).detach().numpy(), lin.bias.detach().numpy()[None])


def test_hooks_run_in_order_with_prepend_and_kwargs():
    class AddK(nn.Module):
        def forward(self, x, k=0):
            return x + k

    m = AddK()
    order = []
    m.register_forward_pre_hook(lambda mod, args: order.append("a"))
    m.register_forward_pre_hook(lambda mod, args: order.append("b"), prepend=True)
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"k": kwargs["k"] * 10}), with_kwargs=True)
    m.register_forward_hook(lambda mod, args, kwargs, out: out + kwargs["k"], with_kwargs=True)
    out = m(graphc.zeros(1), k=2)
    assert order == ["b", "a"]
    assert out.item() == 40.0  # k: 2 -> 20 by the pre-hook; output 20 + 20 by the hook


# ---- state dict -----------------------------------------------------------------------

def test_state_dict_keys_order_and_persistence():
    net = Net()
    state = net.state_dict()
    assert isinstance(state, OrderedDict)
    assert list(state) == NET_STATE  # own parameters, own persistent buffers, then children
    assert "block.cache" not in state
    assert all(not v.requires_grad and v.grad_fn is None for v in state.values())
    assert state["embed.weight"].data_ptr() == net.embed.weight.data_ptr()  # detached, not copied
    assert net.state_dict(keep_vars=True)["embed.weight"] is net.embed.weight
    assert list(net.block.state_dict(prefix="model.block.")) == \
        ["model.block.scale", "model.block.count", "model.block.fc.weight", "model.block.fc.bias"]
    net.block.register_buffer("cache", graphc.zeros(2), persistent=True)
    assert "block.cache" in net.state_dict()


def test_load_state_dict_round_trip_copies_in_place():
    src, dst = Net(), Net()
    weight = dst.embed.weight
    result = dst.load_state_dict(src.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    assert dst.embed.weight is weight and weight.is_leaf and weight.grad_fn is None
    for key, value in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[key].numpy(), value.numpy())
    x = graphc.randn(3, 2)
    np.testing.assert_array_equal(dst(x).detach().numpy(), src(x).detach().numpy())


def test_load_state_dict_converts_to_the_model_dtype():
    lin = nn.Linear(2, 2)
    state = {"weight": graphc.ones(2, 2, dtype=graphc.float64), "bias": graphc.zeros(2, dtype=graphc.float64)}
    lin.load_state_dict(state)
    assert lin.weight.dtype is graphc.float32
    assert lin.weight.numpy(force=True).tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_strict_loading_lists_every_problem_in_pytorch_wording():
    lin = nn.Linear(2, 3)
    state = {"weight": graphc.zeros(3, 4), "extra": graphc.zeros(1), "more": graphc.zeros(1)}
    with pytest.raises(RuntimeError) as info:
        lin.load_state_dict(state)
    assert str(info.value) == (
        "Error(s) in loading state_dict for Linear:\n"
        '\tMissing key(s) in state_dict: "bias". \n'
        '\tUnexpected key(s) in state_dict: "extra", "more". \n'
        "\tsize mismatch for weight: copying a param with shape graphc.Size([3, 4]) from checkpoint, "
        "the shape in current model is graphc.Size([3, 2]).")


def test_non_strict_loading_returns_the_keys_but_still_rejects_size_mismatches():
    net = Net()
    state = net.state_dict()
    del state["block.count"]
    state["block.unused"] = graphc.zeros(1)
    state["embed.bias"] = graphc.full((3,), 9.0)
    result = net.load_state_dict(state, strict=False)
    assert result == (["block.count"], ["block.unused"])
    assert result.missing_keys == ["block.count"] and result.unexpected_keys == ["block.unused"]
    assert net.embed.bias.numpy(force=True).tolist() == [9.0, 9.0, 9.0]
    state["embed.bias"] = graphc.zeros(4)
    with pytest.raises(RuntimeError, match=r"Error\(s\) in loading state_dict for Net:\n\tsize mismatch "
                                           r"for embed.bias"):
        net.load_state_dict(state, strict=False)
    with pytest.raises(RuntimeError, match="expected graphc.Tensor from checkpoint but received list"):
        net.load_state_dict({**net.state_dict(), "embed.bias": [0.0] * 3})


# ---- repr -----------------------------------------------------------------------------

def test_nested_repr_golden():
    assert repr(Net()) == """\
Net(
  (embed): Linear(in_features=2, out_features=3, bias=True)
  (block): Block(
    (fc): Linear(in_features=3, out_features=3, bias=True)
  )
  (head): Sequential(
    (0): ReLU()
    (1): Linear(in_features=3, out_features=1, bias=True)
  )
)"""


def test_repr_with_multiline_extra_repr_and_children():
    class Fancy(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = nn.GELU()

        def extra_repr(self):
            return "alpha=1\nbeta=2"

    assert repr(Fancy()) == "Fancy(\n  alpha=1\n  beta=2\n  (act): GELU(approximate='none')\n)"
    assert repr(nn.Module()) == "Module()"
