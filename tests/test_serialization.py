"""graphc.save / graphc.load: round trips bit for bit, shared storages, and hostile files refused."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from collections import OrderedDict

import numpy as np
import pytest

import graphc
from graphc import serialization
from graphc.serialization import SerializationError

# ---- helpers ------------------------------------------------------------------------------------


def roundtrip(obj, **load_kwargs):
    buf = io.BytesIO()
    graphc.save(obj, buf)
    buf.seek(0)
    return graphc.load(buf, **load_kwargs)


def saved(obj) -> bytes:
    buf = io.BytesIO()
    graphc.save(obj, buf)
    return buf.getvalue()


def make_zip(entries: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def entries_of(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def with_metadata(blob: bytes, edit) -> bytes:
    """A copy of a saved archive whose metadata went through ``edit(meta)`` (which may mutate or return)."""
    entries = entries_of(blob)
    meta = json.loads(entries["metadata.json"])
    meta = edit(meta) or meta
    entries["metadata.json"] = json.dumps(meta).encode()
    return make_zip(entries)


def load_bytes(blob: bytes):
    return graphc.load(io.BytesIO(blob))


def rejected(blob: bytes, *fragments: str) -> str:
    with pytest.raises(SerializationError) as info:
        load_bytes(blob)
    message = str(info.value)
    assert message.startswith("load: "), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def same_bits(a: graphc.Tensor, b: graphc.Tensor) -> bool:
    x, y = a.detach().numpy(), b.detach().numpy()
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def matrix() -> graphc.Tensor:
    return graphc.arange(12, dtype=graphc.float32).reshape(3, 4)


VALID = saved({"w": matrix(), "wt": matrix().T})


# ---- round trips --------------------------------------------------------------------------------

EXTREMES = {
    "float32": [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-45, 3.4028235e38, -1.5],
    "float64": [np.nan, -0.0, np.inf, -np.inf, 5e-324, 1.7976931348623157e308, math.pi],
    "int32": [np.iinfo(np.int32).min, -1, 0, np.iinfo(np.int32).max],
    "int64": [np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max],
    "bool": [True, False, True],
}


@pytest.mark.parametrize("name", list(EXTREMES))
def test_dtypes_and_values_round_trip_bit_for_bit(name):
    d = getattr(graphc, name if name != "bool" else "bool_")
    x = graphc.from_numpy(np.array(EXTREMES[name], dtype=d.np))
    y = roundtrip(x)
    assert y.dtype is d and y.shape == x.shape and y.stride() == x.stride()
    assert same_bits(x, y)


def test_storage_bytes_starting_like_a_pickle_are_just_data():
    x = graphc.tensor([128, -1], dtype=graphc.int32)  # little-endian: the entry starts with 0x80
    assert entries_of(saved(x))["data/0"][:1] == b"\x80"
    assert same_bits(roundtrip(x), x)


def test_nan_payload_is_kept():
    x = graphc.from_numpy(np.array([0x7FC00001, 0xFFC12345], dtype=np.uint32).view(np.float32))
    assert same_bits(roundtrip(x), x)


@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (0, 2, 5), (1, 1, 1)])
def test_zero_dim_and_empty_tensors(shape):
    x = graphc.ones(*shape, dtype=graphc.float64) * 2.5
    y = roundtrip(x)
    assert y.shape == shape and y.dtype is graphc.float64 and y.stride() == x.stride()
    assert same_bits(x, y)


@pytest.mark.parametrize("view", [
    lambda x: x.T,
    lambda x: x[:, ::2],
    lambda x: x[1:, 1:3],
    lambda x: x[:, :1].expand(3, 5),
    lambda x: x[::-1],
    lambda x: x[1, 2],
])
def test_non_contiguous_views_keep_their_geometry(view):
    v = view(matrix())
    y = roundtrip(v)
    assert (y.shape, y.stride(), y.storage_offset()) == (v.shape, v.stride(), v.storage_offset())
    assert same_bits(y, v)


def test_negative_strides_from_numpy():
    a = np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::-1]
    x = graphc.from_numpy(a)
    assert x.stride()[1] < 0
    y = roundtrip(x)
    assert y.stride() == x.stride() and y.storage_offset() == x.storage_offset()
    assert np.array_equal(y.numpy(), a)


def test_views_saved_together_share_one_storage():
    x = matrix()
    out = roundtrip({"a": x, "b": x.T, "c": x[1:]})
    a, b, c = out["a"], out["b"], out["c"]
    assert b.stride() == (1, 4) and c.storage_offset() == 4
    assert a._storage is b._storage is c._storage
    a[1, 2] = -7.0
    assert b[2, 1].item() == -7.0 and c[0, 2].item() == -7.0
    assert a.untyped_storage().data_ptr() == c.untyped_storage().data_ptr()


def test_separate_tensors_stay_separate_and_a_repeated_tensor_is_one_object():
    x, y = matrix(), matrix()
    out = roundtrip([x, y, x])
    assert out[0] is out[2] and out[0]._storage is not out[1]._storage
    out[0][0, 0] = 100.0
    assert out[1][0, 0].item() == 0.0


def test_saving_writes_the_whole_storage_once():
    x = graphc.arange(1000, dtype=graphc.float64)
    entries = entries_of(saved([x[:2], x[5:7]]))
    assert sorted(entries) == ["data/0", "metadata.json"] and len(entries["data/0"]) == 8000


def test_requires_grad_is_restored_and_data_is_detached():
    w = graphc.ones(2, 3).requires_grad_()
    h = w * 3.0  # not a leaf: saved as its data
    out = roundtrip({"w": w, "h": h, "plain": graphc.zeros(2)})
    assert out["w"].requires_grad and out["w"].grad_fn is None and out["w"].is_leaf
    assert out["h"].requires_grad and out["h"].grad_fn is None and out["h"].tolist() == [[3.0] * 3] * 2
    assert not out["plain"].requires_grad


class _FakeParameter(graphc.Tensor):
    """Stands in for graphc.nn.Parameter (Parameter(data, requires_grad=...)) where it does not exist."""

    def __new__(cls, data, requires_grad=True):
        t = cls._make(data._storage, data._shape, data._stride, data._offset)
        t.requires_grad = requires_grad
        return t

    def __init__(self, *args, **kwargs):
        pass


_FakeParameter.__name__ = "Parameter"


def test_parameters_come_back_as_parameters(monkeypatch):
    monkeypatch.setattr(graphc.nn, "Parameter", _FakeParameter, raising=False)
    p = _FakeParameter(matrix(), requires_grad=True)
    frozen = _FakeParameter(matrix(), requires_grad=False)
    meta = json.loads(entries_of(saved({"p": p}))["metadata.json"])
    assert meta["tensors"][0]["parameter"] is True
    out = roundtrip({"p": p, "frozen": frozen, "t": matrix()})
    assert type(out["p"]) is _FakeParameter and out["p"].requires_grad
    assert type(out["frozen"]) is _FakeParameter and not out["frozen"].requires_grad
    assert type(out["t"]) is graphc.Tensor


def test_parameters_become_tensors_requiring_grad_without_nn_parameter(monkeypatch):
    blob = saved({"p": _FakeParameter(matrix(), requires_grad=True)})
    monkeypatch.delattr(graphc.nn, "Parameter", raising=False)
    out = load_bytes(blob)
    assert type(out["p"]) is graphc.Tensor and out["p"].requires_grad


@pytest.mark.skipif(not hasattr(graphc.nn, "Parameter"), reason="graphc.nn.Parameter does not exist yet")
def test_real_nn_parameter_round_trips():
    p = graphc.nn.Parameter(matrix())
    out = roundtrip({"p": p})
    assert isinstance(out["p"], graphc.nn.Parameter) and out["p"].requires_grad
    assert same_bits(out["p"], p)


def test_python_values_and_container_types_round_trip():
    obj = {
        "none": None, "t": True, "f": False, "one": 1, "big": 2**100, "neg": -(2**70),
        "floats": [1.5, float("inf"), float("-inf"), -0.0, 1e-310],
        "text": "héllo \u2603 \ud800", "bytes": b"\x00\x80\xff", "empty": [(), [], {}, OrderedDict(), ""],
        "tuple": (1, (2, [3])), "dtypes": [graphc.float32, graphc.float64, graphc.int32, graphc.int64,
                                           graphc.bool_],
    }
    out = roundtrip(obj)
    assert out == obj
    assert type(out["t"]) is bool and type(out["one"]) is int and type(out["floats"][0]) is float
    assert type(out["tuple"]) is tuple and type(out["tuple"][1][1]) is list
    assert type(out["empty"][3]) is OrderedDict and type(out["empty"][2]) is dict
    assert math.copysign(1.0, out["floats"][3]) == -1.0
    assert all(a is b for a, b in zip(out["dtypes"], obj["dtypes"]))
    assert math.isnan(roundtrip(float("nan")))


def test_dict_keys_of_every_allowed_type_and_key_order():
    d = {"z": 1, 3: 2, 2.5: 3, True: 4, None: 5, ("a", (1, None)): 6, -1: 7, "a": 8}
    out = roundtrip(d)
    assert out == d and list(out) == list(d) and type(out) is dict
    assert [type(k) for k in out] == [type(k) for k in d]
    od = OrderedDict([("b", 1), ("a", 2), ("c", OrderedDict([(2, 0), (1, 0)]))])
    out = roundtrip(od)
    assert type(out) is OrderedDict and list(out) == ["b", "a", "c"]
    assert type(out["c"]) is OrderedDict and list(out["c"]) == [2, 1]


def test_optimizer_like_state_dict_round_trips():
    state = {
        "state": {0: {"step": 3, "exp_avg": graphc.ones(4),
                      "exp_avg_sq": graphc.zeros(4, dtype=graphc.float64)}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                          "amsgrad": False, "params": [0]}],
    }
    out = roundtrip(state)
    assert out["param_groups"] == state["param_groups"]
    assert out["state"][0]["step"] == 3
    assert same_bits(out["state"][0]["exp_avg"], state["state"][0]["exp_avg"])
    assert out["state"][0]["exp_avg_sq"].dtype is graphc.float64


def test_paths_and_file_objects(tmp_path):
    x = {"w": matrix()}
    path = tmp_path / "model.gc"
    graphc.save(x, path)
    assert same_bits(graphc.load(path)["w"], x["w"])
    graphc.save(x, str(path))
    assert same_bits(graphc.load(str(path))["w"], x["w"])
    with open(path, "wb") as f:
        graphc.save(x, f)
    with open(path, "rb") as f:
        assert same_bits(graphc.load(f)["w"], x["w"])


def test_bytes_and_other_non_files_are_refused_with_a_hint():
    with pytest.raises(TypeError, match=r"load: expected a path or a binary file object, got bytes \(wrap"):
        graphc.load(VALID)
    with pytest.raises(TypeError, match="save: expected a path or a binary file object, got int"):
        graphc.save(matrix(), 3)


def test_saving_is_deterministic_and_little_endian():
    blob = saved({"x": graphc.tensor([1, 256], dtype=graphc.int32)})
    assert blob == saved({"x": graphc.tensor([1, 256], dtype=graphc.int32)})
    assert entries_of(blob)["data/0"] == struct.pack("<2i", 1, 256)


def test_map_location_and_weights_only():
    assert same_bits(roundtrip(matrix(), map_location="cpu"), matrix())
    assert same_bits(roundtrip(matrix(), map_location=graphc.device("cpu")), matrix())
    assert same_bits(roundtrip(matrix(), weights_only=False), matrix())
    for bad in ("cuda", "meta", {"cuda:0": "cpu"}, lambda s, loc: s):
        with pytest.raises(SerializationError, match="map_location"):
            roundtrip(matrix(), map_location=bad)


# ---- what save refuses --------------------------------------------------------------------------

def test_save_refuses_meta_tensors_and_writes_nothing(tmp_path):
    path = tmp_path / "out.gc"
    with pytest.raises(SerializationError, match=r"save: obj\['m'\] is a meta tensor"):
        graphc.save({"m": graphc.zeros(2, 3).to("meta")}, path)
    assert not path.exists()


@pytest.mark.parametrize("obj, fragment", [
    ({"a": [1, {2, 3}]}, "obj['a'][1] is a builtins.set"),
    ({"a": object()}, "obj['a'] is a builtins.object"),
    ({"a": np.float32(1.0)}, ".item()"),
    ({"a": np.zeros(2)}, "graphc.from_numpy"),
    ({frozenset(): 1}, "dict keys must be"),
    ({("a", graphc.float32): 1}, "dict keys must be"),
])
def test_save_refuses_unsupported_objects(obj, fragment):
    with pytest.raises(TypeError) as info:
        saved(obj)
    assert str(info.value).startswith("save: ") and fragment in str(info.value)


def test_save_refuses_a_cycle_with_a_clear_error():
    a = []
    a.append(a)
    with pytest.raises(SerializationError, match="nested more than"):
        saved(a)


# ---- pickles are never loaded -------------------------------------------------------------------

CODE_RAN = []


def _mark_code_ran():
    CODE_RAN.append(True)


class _Payload:
    def __reduce__(self):
        return (_mark_code_ran, ())


def pickle_payload() -> bytes:
    data = pickle.dumps(_Payload(), protocol=2)
    pickle.loads(data)  # the payload is live: unpickling it runs code
    assert CODE_RAN == [True]
    CODE_RAN.clear()
    return data


def test_a_raw_pickle_file_is_refused_without_running_it():
    rejected(pickle_payload(), "this looks like a PyTorch/pickle file; graphc never unpickles")
    assert CODE_RAN == []


def test_a_pytorch_style_zip_with_data_pkl_is_refused_without_running_it():
    blob = make_zip({"archive/data.pkl": pickle_payload(), "archive/data/0": b"\0" * 16,
                     "archive/version": b"3\n"})
    rejected(blob, "'archive/data.pkl'", "this looks like a PyTorch/pickle file")
    assert CODE_RAN == []


def test_a_real_pytorch_file_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2, 3)}, path)
    with pytest.raises(SerializationError, match=r"\.pkl'.*this looks like a PyTorch/pickle file"):
        graphc.load(path)


def test_a_pickle_in_the_metadata_entry_is_refused():
    rejected(make_zip({"metadata.json": pickle_payload()}), "'metadata.json'", "graphc never unpickles")
    assert CODE_RAN == []


def test_an_extra_entry_holding_a_pickle_is_refused():
    entries = entries_of(VALID) | {"extra": pickle_payload()}
    rejected(make_zip(entries), "'extra'", "graphc never unpickles")
    assert CODE_RAN == []


# ---- malformed and hostile archives -------------------------------------------------------------

def test_not_a_zip():
    rejected(b"hello, I am a text file\n" * 10, "not a zip archive")


def test_zip_without_metadata():
    rejected(make_zip({"data/0": b"\0" * 8}), "no 'metadata.json' entry", "'data/0'")


def test_unexpected_entry():
    rejected(make_zip(entries_of(VALID) | {"notes.txt": b"hi"}), "unexpected entry 'notes.txt'")


@pytest.mark.parametrize("raw, fragment", [
    (b"{not json", "not valid UTF-8 JSON"),
    (b"\xff\xfe{}", "not valid UTF-8 JSON"),
    (b'{"format": NaN}', "not valid UTF-8 JSON"),
    (b'{"format": "graphc", "format": "graphc"}', "repeated field"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"[]", "should be a JSON object"),
])
def test_bad_json(raw, fragment):
    rejected(make_zip({"metadata.json": raw}), fragment)


def _set(path, value):
    def edit(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return edit


def _drop(path):
    def edit(meta):
        target = meta
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return edit


@pytest.mark.parametrize("edit, fragments", [
    (_set(["format"], "torch"), ["format 'torch'"]),
    (_set(["version"], 2), ["version 2 is not supported"]),
    (_set(["version"], True), ["'version' should be an integer"]),
    (_drop(["root"]), ["missing ['root']"]),
    (_set(["extra"], 1), ["unknown ['extra']"]),
    (_set(["storages"], {}), ["'storages' should be an array"]),
    (_set(["root", "type"], "pickle"), ["root should be a node with a 'type' among"]),
    (_set(["root", "type"], ["dict"]), ["root should be a node"]),
    (_drop(["root", "items"]), ["root should have fields", "missing ['items']"]),
    (_set(["root", "items", 0], ["only a key"]), ["root item 0 should be a [key, value] pair"]),
    (_set(["root", "items", 0, 0], {"type": "list", "items": []}), ["(a dict key)"]),
    (_set(["root", "items", 1, 0], {"type": "str", "value": "w"}), ["has the key 'w' twice"]),
    (_set(["root", "items", 0, 1], {"type": "tensor", "index": 5}), ["refers to tensor 5"]),
    (_set(["root", "items", 0, 1], {"type": "tensor", "index": "0"}), ["'index' should be an integer"]),
    (_set(["root", "items", 0, 1], {"type": "float", "value": "1.0x"}), ["not a float.hex() string"]),
    (_set(["root", "items", 0, 1], {"type": "float", "value": 1.0}), ["'value' should be a string"]),
    (_set(["root", "items", 0, 1], {"type": "bytes", "value": "@@@"}), ["not valid base64"]),
    (_set(["root", "items", 0, 1], {"type": "int", "value": 1, "x": 0}), ["unknown ['x']"]),
    (_set(["tensors", 0, "storage"], 3), ["tensor 0 refers to storage 3"]),
    (_set(["tensors", 0, "shape"], "3,4"), ["'shape' should be an array"]),
    (_set(["tensors", 0, "shape"], [3, 4.0]), ["should be lists of integers"]),
    (_set(["tensors", 0, "stride"], [4]), ["should be lists of integers of the same length"]),
    (_set(["tensors", 0, "requires_grad"], 1), ["'requires_grad' should be a boolean"]),
    (_set(["tensors", 0, "dtype"], "float64"), ["tensor 0 is float64 but its storage holds float32"]),
    (_set(["storages", 0], [12]), ["storage 0 should be a JSON object"]),
])
def test_metadata_of_the_wrong_shape(edit, fragments):
    rejected(with_metadata(VALID, edit), *fragments)


@pytest.mark.parametrize("where", [["storages", 0, "dtype"], ["tensors", 0, "dtype"]])
def test_unknown_dtype_name(where):
    rejected(with_metadata(VALID, _set(where, "complex128")), "unknown dtype 'complex128'")


def test_unknown_dtype_in_the_object_tree():
    blob = with_metadata(saved([graphc.int32]), _set(["root", "items", 0, "name"], "torch.int32"))
    rejected(blob, "unknown dtype 'torch.int32'")


@pytest.mark.parametrize("data, found", [(b"\0" * 44, 44), (b"\0" * 52, 52), (b"", 0)])
def test_storage_bytes_must_match_the_declared_size(data, found):
    rejected(make_zip(entries_of(VALID) | {"data/0": data}),
             "storage 0 (entry 'data/0') declares 12 float32 elements (48 bytes)", f"holds {found} bytes")


def test_missing_storage_entry():
    entries = entries_of(VALID)
    del entries["data/0"]
    rejected(make_zip(entries), "storage 0 has no entry 'data/0'")


def test_negative_storage_size():
    rejected(with_metadata(VALID, _set(["storages", 0, "numel"], -12)), "negative size -12")


def test_bool_storage_with_bytes_other_than_0_and_1():
    blob = saved(graphc.tensor([True, False]))
    rejected(make_zip(entries_of(blob) | {"data/0": b"\x01\x07"}), "holds bytes other than 0 and 1")


def test_requires_grad_on_an_integer_tensor():
    blob = with_metadata(saved(graphc.arange(3)), _set(["tensors", 0, "requires_grad"], True))
    rejected(blob, "is int64 and requires grad")


@pytest.mark.parametrize("shape, stride, offset, fragment", [
    ([3, 4], [4, 1], 1, "reaches elements 1..12, outside its storage of 12 elements"),
    ([4, 4], [4, 1], 0, "reaches elements 0..15"),
    ([3, 4], [5, 1], 0, "reaches elements 0..13"),
    ([3, 4], [4, -1], 0, "reaches elements -3..8"),
    ([3, 4], [-4, 1], 7, "reaches elements -1..10"),
    ([12], [1], 12, "reaches elements 12..23"),
    ([-1, 4], [4, 1], 0, "sizes and offset must be non-negative"),
    ([3, 4], [4, 1], -1, "sizes and offset must be non-negative"),
    ([2**40, 2**40], [0, 0], 0, "too large to address"),
    ([1], [2**62], 0, "too large to address"),
    ([1] * 65, [1] * 65, 0, "at most 64 dims"),
])
def test_tensor_geometry_outside_its_storage(shape, stride, offset, fragment):
    def edit(meta):
        meta["tensors"][0].update(shape=shape, stride=stride, offset=offset)
    rejected(with_metadata(VALID, edit), "tensor 0", fragment)


def test_geometry_checks_allow_what_views_really_do():
    # a negative stride reaching down to element 0, and an empty view past the storage's end
    def edit(meta):
        meta["tensors"][0].update(shape=[3, 4], stride=[-4, 1], offset=8)
        meta["tensors"][1].update(shape=[0, 4], stride=[4, 1], offset=100)
    out = load_bytes(with_metadata(VALID, edit))
    assert out["w"].tolist()[0] == [8.0, 9.0, 10.0, 11.0] and out["wt"].shape == (0, 4)


def test_huge_declared_storage_is_refused_before_allocating():
    rejected(with_metadata(VALID, _set(["storages", 0, "numel"], 2**60)),
             f"declares {2**60} float32 elements", "holds 48 bytes")


def _patch_central_directory_size(blob: bytes, name: bytes, stored: int, size: int) -> bytes:
    """Make the central directory claim ``stored`` bytes holding ``size`` bytes of data for entry ``name``."""
    at = blob.index(b"PK\x01\x02")
    while blob[at + 46:at + 46 + len(name)] != name:
        at = blob.index(b"PK\x01\x02", at + 4)
    return blob[:at + 20] + struct.pack("<II", stored, size) + blob[at + 28:]


def test_entry_claiming_more_bytes_than_the_file_holds():
    blob = _patch_central_directory_size(VALID, b"data/0", 2**31, 2**31)
    rejected(blob, "entry 'data/0' declares 2147483648 bytes but the file holds only")


def test_stored_entry_whose_sizes_disagree():
    blob = _patch_central_directory_size(VALID, b"data/0", 48, 2**32 - 1)
    rejected(blob, "entry 'data/0' is stored but declares 4294967295 bytes of data in 48 stored bytes")


def test_metadata_size_is_capped(monkeypatch):
    monkeypatch.setattr(serialization, "MAX_METADATA_BYTES", 100)
    rejected(VALID, "'metadata.json' is", "the limit is 100")


def test_object_tree_depth_is_bounded():
    node = {"type": "none"}
    for _ in range(serialization.MAX_DEPTH + 5):
        node = {"type": "list", "items": [node]}
    blob = with_metadata(saved(None), _set(["root"], node))
    rejected(blob, "nested more than 128 levels deep")


@pytest.mark.parametrize("name", ["../evil", "/etc/passwd", "data/../../x", "C:\\evil", "data\\0", "./x",
                                  "a//b"])
def test_path_traversal_entry_names(name):
    rejected(make_zip(entries_of(VALID) | {name: b"x"}), f"entry name {name!r}",
             "not a plain relative path")


def test_duplicate_entry_names():
    entries = entries_of(VALID)
    buf = io.BytesIO()
    with pytest.warns(UserWarning), zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        zf.writestr("data/0", b"\0" * 48)
    rejected(buf.getvalue(), "entry 'data/0' appears twice")


def test_compressed_entries_are_refused():
    rejected(make_zip(entries_of(VALID), zipfile.ZIP_DEFLATED), "compressed or encrypted")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -22, -1])
def test_truncated_archive(keep):
    cut = int(len(VALID) * keep) if isinstance(keep, float) else len(VALID) + keep
    rejected(VALID[:cut], "not a zip archive, or a truncated one")


def test_every_truncation_and_every_corrupted_byte_is_a_clear_error_or_a_good_load():
    blob = saved({"w": graphc.tensor([[1.0, 2.0]]), "k": (1, "a")})
    for cut in range(len(blob)):
        with pytest.raises(SerializationError):
            load_bytes(blob[:cut])
    for i in range(len(blob)):
        corrupt = bytearray(blob)
        corrupt[i] ^= 0x55
        try:
            load_bytes(bytes(corrupt))
        except SerializationError as e:
            assert str(e).startswith("load: ")


def test_corrupted_storage_bytes_fail_the_crc_check():
    at = VALID.index(struct.pack("<4f", 0, 1, 2, 3))
    corrupt = VALID[:at] + struct.pack("<f", 99.0) + VALID[at + 4:]
    rejected(corrupt, "entry 'data/0' is corrupt")


def test_non_seekable_file_object():
    class Stream(io.RawIOBase):
        def __init__(self, data):
            self._inner = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, b):
            return self._inner.readinto(b)

    assert same_bits(graphc.load(Stream(VALID))["wt"], matrix().T)


def test_a_read_only_file_object_without_seekable():
    class Reader:
        def __init__(self, data):
            self._inner = io.BytesIO(data)

        def read(self, n=-1):
            return self._inner.read(n)

    assert same_bits(graphc.load(Reader(VALID))["w"], matrix())


@pytest.mark.parametrize("text", ["1.5", "0x1p+100000", "0x1.8p+0", " 0x1.8000000000000p+0", "-nan",
                                  "Infinity", "1e5"])
def test_floats_must_be_exactly_what_float_hex_writes(text):
    # "1.5" would read as hex 0x1.5 (1.3125), "0x1p+100000" overflows, and the others are not the
    # canonical spelling, which is all save writes
    blob = with_metadata(VALID, _set(["root", "items", 0, 1], {"type": "float", "value": text}))
    rejected(blob, f"root['w'] float {text!r} is not a float.hex() string")


# ---- bounded reading ----------------------------------------------------------------------------

def _local_header(name: bytes, data: bytes, extra: bytes = b"") -> bytes:
    return struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 33, zlib.crc32(data), len(data),
                       len(data), len(name), len(extra)) + name + extra


def _central_entry(name: bytes, data_crc: int, size: int, offset: int) -> bytes:
    return struct.pack("<4s4B4HL2L5H2L", b"PK\x01\x02", 20, 0, 20, 0, 0, 0, 0, 33, data_crc, size, size,
                       len(name), 0, 0, 0, 0, 0, offset) + name


def overlapping_zip(count: int, block: int) -> bytes:
    """A graphc file of ``count`` float64 storages that all end in one shared ``block`` of bytes:
    entry i's data runs over the local headers of entries i+1, i+2, ... and then the block, so
    the entries hold about ``count`` times the file's size between them."""
    names = [f"data/{i}".encode() for i in range(count)]
    data, entries = bytes(block), []
    for name in reversed(names):
        pad = -(30 + len(name)) % 8 or 8  # a header of whole float64s; an extra field is at least 4 bytes
        pad += 8 if pad < 4 else 0
        header = _local_header(name, data, struct.pack("<2H", 0x6767, pad - 4) + bytes(pad - 4))
        entries.append((name, zlib.crc32(data), len(data), len(header)))
        data = header + data
    entries.reverse()
    storages = [{"dtype": "float64", "numel": size // 8} for _, _, size, _ in entries]
    meta = json.dumps({"format": "graphc", "version": 1, "storages": storages, "tensors": [],
                       "root": {"type": "none"}}).encode()
    head = _local_header(b"metadata.json", meta) + meta
    directory = _central_entry(b"metadata.json", zlib.crc32(meta), len(meta), 0)
    offset = len(head)
    for name, data_crc, size, header_size in entries:
        directory += _central_entry(name, data_crc, size, offset)
        offset += header_size
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count + 1, count + 1, len(directory),
                      len(head) + len(data), 0)
    return head + data + directory + end


def test_overlapping_entries_are_refused_before_they_are_read():
    blob = overlapping_zip(count=400, block=2**18)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:  # well formed to zipfile: every CRC checks out
        assert zf.read("data/399") == bytes(2**18) and len(zf.read("data/7")) > 2**18
        assert sum(info.file_size for info in zf.infolist()) > 300 * len(blob)
    tracemalloc.start()
    try:
        rejected(blob, "entries 'data/0' and 'data/1' overlap", "refusing a hostile archive")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"load allocated {peak} bytes for a {len(blob)}-byte file"


def test_an_entry_whose_local_header_is_missing():
    at = VALID.index(b"PK\x01\x02")
    while VALID[at + 46:at + 52] != b"data/0":
        at = VALID.index(b"PK\x01\x02", at + 4)
    blob = VALID[:at + 42] + struct.pack("<L", 5) + VALID[at + 46:]  # data/0's header now "at" byte 5
    rejected(blob, "entry 'data/0' has no local header at offset 5")


def rejected_file(f, *fragments: str) -> None:
    with pytest.raises(SerializationError) as info:
        graphc.load(f)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


class _Endless(io.RawIOBase):
    """Serves ``data`` and then zeros without end; past ``limit`` bytes served it fails the test
    instead of exhausting memory. ``size`` is what seeking to the end reports, None if it cannot seek."""

    def __init__(self, data: bytes, size: int | None, limit: int = 2**26):
        self.data, self.size, self.limit, self.pos, self.served = data, size, limit, 0, 0

    def readable(self):
        return True

    def seekable(self):
        return self.size is not None

    def seek(self, offset, whence=os.SEEK_SET):
        self.pos = offset + (0, self.pos, self.size)[whence]
        return self.pos

    def tell(self):
        return self.pos

    def readinto(self, b):
        n = len(b)
        chunk = self.data[self.pos:self.pos + n]
        b[:n] = chunk + bytes(n - len(chunk))
        self.pos += n
        self.served += n
        assert self.served <= self.limit, f"load read {self.served} bytes from an endless file"
        return n


def test_an_endless_stream_is_read_up_to_the_cap(monkeypatch):
    monkeypatch.setattr(serialization, "MAX_STREAM_BYTES", 2**20)
    stream = _Endless(VALID, size=None)
    rejected_file(stream, "the stream goes on past 1048576 bytes", "MAX_STREAM_BYTES")
    assert stream.served <= 2**20 + 2**20


def test_reads_stop_at_the_size_the_file_had_when_loading_began():
    # a seekable file that goes on past its size, as /dev/zero (size 0) or a file growing while it loads
    assert same_bits(graphc.load(_Endless(VALID, size=len(VALID)))["wt"], matrix().T)
    rejected_file(_Endless(b"", size=0), "not a zip archive")


_LOAD_EACH_PATH = """
import sys, graphc
for path in sys.argv[1:]:
    try:
        graphc.load(path)
    except graphc.serialization.SerializationError as e:
        print(e)
"""


def _limit_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))


@pytest.mark.skipif(not (hasattr(os, "mkfifo") and os.path.exists("/dev/zero")), reason="needs POSIX")
def test_devices_fifos_and_directories_are_refused_before_reading(tmp_path):
    # a subprocess with a timeout and a memory limit: reading /dev/zero never ends, and opening a
    # FIFO waits for a writer, so a regression must not hang or exhaust the test run
    fifo = tmp_path / "pipe.gc"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(graphc.__file__)))
    done = subprocess.run([sys.executable, "-c", _LOAD_EACH_PATH, "/dev/zero", str(fifo), str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env, preexec_fn=_limit_memory)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "load: '/dev/zero': is a character device, not a regular file; graphc loads regular files "
        "(to read a stream, pass an open binary file object)",
        f"load: {str(fifo)!r}: is a FIFO (named pipe), not a regular file; graphc loads regular files "
        "(to read a stream, pass an open binary file object)",
        f"load: {str(tmp_path)!r}: is a directory, not a regular file; graphc loads regular files "
        "(to read a stream, pass an open binary file object)",
    ]


def test_long_values_from_the_file_are_cut_short_in_errors():
    # a path below a long key is built for every node under it: it must not carry the whole key
    key = "k" * 2**20
    bad = {"type": "list", "items": [{"type": "none"}] * 3 + [{"type": "float", "value": "1.5"}]}
    root = {"type": "dict", "items": [[{"type": "str", "value": key}, bad]]}
    message = rejected(with_metadata(VALID, _set(["root"], root)), "[3] float '1.5' is not a float.hex()")
    assert len(message) < 300, len(message)
    message = rejected(with_metadata(VALID, _set(["root"], [key])), "field 'root' should be an object")
    assert len(message) < 300, len(message)
