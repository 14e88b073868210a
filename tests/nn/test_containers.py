"""Sequential, ModuleList and ModuleDict."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import graphc
from graphc import nn


def test_sequential_runs_modules_in_order():
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = graphc.randn(5, 3)
    expected = seq[2](seq[1](seq[0](x)))
    np.testing.assert_array_equal(seq(x).detach().numpy(), expected.detach().numpy())
    assert len(seq) == 3 and [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert seq[-1] is seq[2]
    with pytest.raises(IndexError, match="index 3 is out of range for Sequential of length 3"):
        seq[3]


def test_sequential_with_names_and_slices():
    seq = nn.Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.Tanh()), ("out", nn.Linear(2, 1))]))
    assert seq.fc is seq[0] and [n for n, _ in seq.named_children()] == ["fc", "act", "out"]
    head = seq[1:]
    assert isinstance(head, nn.Sequential) and list(head._modules) == ["act", "out"]
    assert head.out is seq.out
    assert list(seq.state_dict()) == ["fc.weight", "fc.bias", "out.weight", "out.bias"]


def test_sequential_editing():
    seq = nn.Sequential(nn.ReLU(), nn.Tanh())
    sig = nn.Sigmoid()
    seq.append(sig)
    assert seq[2] is sig
    seq.insert(0, nn.Identity())
    assert [type(m).__name__ for m in seq] == ["Identity", "ReLU", "Tanh", "Sigmoid"]
    assert list(seq._modules) == ["0", "1", "2", "3"]
    del seq[1]
    assert [type(m).__name__ for m in seq] == ["Identity", "Tanh", "Sigmoid"]
    assert list(seq._modules) == ["0", "1", "2"]  # renumbered, as in PyTorch
    seq[0] = nn.GELU()
    assert isinstance(seq[0], nn.GELU)
    assert seq.pop(1).__class__ is nn.Tanh and len(seq) == 2
    seq.extend([nn.ReLU(), nn.ReLU()])
    assert len(seq) == 4


def test_module_list_registers_and_indexes():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3 and len(list(layers.parameters())) == 6
    assert [n for n, _ in layers.named_parameters()][:2] == ["0.weight", "0.bias"]
    assert layers[-1] is layers[2]
    sub = layers[:2]
    assert isinstance(sub, nn.ModuleList) and sub[1] is layers[1]
    layers.append(nn.ReLU())
    layers += [nn.Tanh()]
    assert len(layers) == 5 and isinstance(layers[4], nn.Tanh)
    both = layers + nn.ModuleList([nn.Sigmoid()])
    assert len(both) == 6 and both[0] is layers[0]
    del layers[0]
    assert list(layers._modules) == ["0", "1", "2", "3"]
    layers.insert(1, nn.Identity())
    assert isinstance(layers[1], nn.Identity)
    with pytest.raises(IndexError, match="index -9 is out of range for ModuleList of length 5"):
        layers[-9]
    with pytest.raises(NotImplementedError, match=r"Module \[ModuleList\] is missing the required"):
        layers(graphc.zeros(1))


def test_module_list_repr_compresses_repeats():
    layers = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)])
    assert repr(layers) == (
        "ModuleList(\n"
        "  (0-1): 2 x Linear(in_features=2, out_features=2, bias=True)\n"
        "  (2): ReLU()\n"
        "  (3): Linear(in_features=2, out_features=2, bias=True)\n"
        ")")
    assert repr(nn.ModuleList()) == "ModuleList()"


def test_module_dict():
    heads = nn.ModuleDict({"cls": nn.Linear(4, 2), "box": nn.Linear(4, 4)})
    assert list(heads) == ["cls", "box"] and "cls" in heads and len(heads) == 2
    assert heads["box"] is heads.box
    assert [n for n, _ in heads.named_parameters()] == ["cls.weight", "cls.bias", "box.weight", "box.bias"]
    heads["extra"] = nn.ReLU()
    heads.update([("mask", nn.Tanh())])
    assert list(heads.keys()) == ["cls", "box", "extra", "mask"]
    assert isinstance(heads.pop("extra"), nn.ReLU) and "extra" not in heads
    del heads["mask"]
    assert [type(m).__name__ for m in heads.values()] == ["Linear", "Linear"]
    assert [k for k, _ in heads.items()] == ["cls", "box"]
    with pytest.raises(ValueError, match="element #0 should be a \\(name, module\\) pair"):
        heads.update(["oops"])
    with pytest.raises(KeyError, match="attribute 'forward' already exists"):
        heads["forward"] = nn.ReLU()
    heads.clear()
    assert len(heads) == 0


def test_containers_nest_and_train_together():
    model = nn.Sequential(nn.ModuleDict({"a": nn.ModuleList([nn.Dropout(0.5)])}))
    model.eval()
    assert not model[0]["a"][0].training
    assert [n for n, _ in model.named_modules()] == ["", "0", "0.a", "0.a.0"]
