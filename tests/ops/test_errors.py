"""Bad input gets an error that names the op, what was given, what was expected, and the
caller's line — in eager and meta mode alike, before any kernel runs."""

from __future__ import annotations

import inspect

import pytest

import graphc
import graphc.nn.functional as F
from graphc.errors import DTypeError, OpIndexError, OpTypeError, OpValueError, ShapeError


def _line() -> str:
    """file:line of the caller's next line (where the failing call is)."""
    frame = inspect.currentframe().f_back
    return f"test_errors.py:{frame.f_lineno + 2}"


CASES = [
    (lambda: graphc.ones(3, 4) + graphc.ones(5), ShapeError,
     [r"^add: shapes \(3, 4\) and \(5,\) do not broadcast \(dim -1: 4 vs 5\)"]),
    (lambda: graphc.ones(8, 32) @ graphc.ones(64, 10), ShapeError,
     [r"^matmul: shapes \(8, 32\) and \(64, 10\) cannot be multiplied \(32 columns vs 64 rows\)"]),
    (lambda: graphc.ones(3) @ graphc.ones(3, dtype=graphc.float64), DTypeError,
     ["matmul: expected all operands to have the same dtype", r"float32\[3\], float64\[3\]"]),
    (lambda: F.linear(graphc.ones(8, 32), graphc.ones(10, 64)), ShapeError,
     [r"linear: input of shape \(8, 32\) does not fit weight of shape \(10, 64\)"]),
    (lambda: graphc.softmax(graphc.arange(3), 0), DTypeError,
     [r"softmax: expected a floating-point tensor, got int64\[3\]", r"\.float\(\)"]),
    (lambda: -graphc.tensor([True]), DTypeError, ["neg: ", "logical_not"]),
    (lambda: graphc.ones(2, 3).sum(2), OpIndexError,
     [r"sum: dim 2 is out of range for a tensor of 2 dims \(expected a dim in \[-2, 1\]\)"]),
    (lambda: graphc.ones(6).view(4, -1), ShapeError,
     [r"view: shape \(4, -1\) is invalid for input of size 6"]),
    (lambda: graphc.ones(2, 3).expand(4, 3), ShapeError,
     ["expand: the expanded size 4 must match the existing size 2"]),
    (lambda: graphc.ones(2, 3).permute(0, 0), ShapeError, ["permute: dims"]),
    (lambda: graphc.cat([graphc.ones(2, 2), graphc.ones(2, 3)]), ShapeError,
     [r"cat: expected matching sizes except in dim 0, but tensor 1 has shape \(2, 3\)"]),
    (lambda: graphc.tensor([1, 2]) // 0, OpValueError, ["div: integer division by zero"]),
    (lambda: graphc.tensor([2]) ** -1, OpValueError, ["pow: integers to negative"]),
    (lambda: graphc.ones(3).gather(0, graphc.tensor([5])), OpIndexError,
     ["gather: index 5 is out of bounds for dim 0 with size 3"]),
    (lambda: F.cross_entropy(graphc.ones(2, 3), graphc.tensor([0, 7])), OpIndexError,
     ["cross_entropy: target 7 is out of bounds for 3 classes"]),
    (lambda: F.embedding(graphc.tensor([9]), graphc.ones(4, 2)), OpIndexError,
     ["embedding: index 9 is out of range for 4 embeddings"]),
    (lambda: F.layer_norm(graphc.ones(2, 5), (4,)), ShapeError,
     [r"layer_norm: expected an input of shape \(\*, 4\), got \(2, 5\)"]),
    (lambda: graphc.ones(2).amax(0, keepdim=True)[0:0].amax(0), ShapeError,
     ["amax: expected reduction dim 0 to have non-zero size"]),
    (lambda: graphc.add("a", graphc.ones(1)), OpTypeError, ["add: expected tensors or numbers, got str"]),
    (lambda: graphc.where(graphc.ones(2), 1, 0), DTypeError,
     [r"where: expected condition to be a bool tensor, got float32\[2\]"]),
    (lambda: graphc.ones(2).bmm(graphc.ones(2)), ShapeError, ["bmm: expected two 3-D tensors"]),
    (lambda: graphc.ones(3).mean(dtype=graphc.int64), DTypeError, ["mean: could not infer"]),
    (lambda: graphc.arange(4).float().var(correction=0, dim=5), OpIndexError, ["var: dim 5"]),
]


@pytest.mark.parametrize("make, kind, patterns", CASES)
def test_errors_name_op_inputs_and_the_callers_line(make, kind, patterns):
    with pytest.raises(kind) as info:
        make()
    message = str(info.value)
    for p in patterns:
        assert info.match(p), f"{p!r} not in {message!r}"
    # the location is the user's lambda (this file), never graphc's own code
    assert info.value.location.startswith("test_errors.py:"), message
    assert message.endswith(info.value.location)


def _meta(shape, dtype=graphc.float32):
    return graphc.empty(shape, dtype=dtype, device="meta")


@pytest.mark.parametrize("make, kind", [
    (lambda: _meta((3, 4)) + _meta((5,)), ShapeError),
    (lambda: _meta((8, 32)) @ _meta((64, 10)), ShapeError),
    (lambda: _meta((3,)) @ _meta((3,), graphc.float64), DTypeError),
    (lambda: graphc.softmax(_meta((3,), graphc.int64), 0), DTypeError),
    (lambda: _meta((2, 3)).sum(2), OpIndexError),
    (lambda: _meta((3, 4)).T.view(12), ShapeError),
    (lambda: _meta((3, 4))[5], OpIndexError),
])
def test_meta_mode_raises_the_same_errors(make, kind):
    """The rules validate, so shape and dtype errors need no data."""
    with pytest.raises(kind):
        make()


def test_the_location_is_the_exact_line():
    x = graphc.ones(2, 3)
    where = _line()
    with pytest.raises(ShapeError) as info:
        x.view(4, 4)
    assert info.value.location == where
    assert str(info.value).endswith(f"at {where}")


def test_whose_frame_a_relative_file_name_is_follows_the_current_directory(tmp_path, monkeypatch):
    # absolute file names are remembered (asked for every frame of every traced op); a
    # relative one (a script run as `python3 model.py`) depends on where the process is
    import os

    from graphc import errors

    package = os.path.dirname(errors.__file__)
    assert not errors._is_user(errors.__file__) and errors._is_user(__file__)
    monkeypatch.chdir(package)
    assert not errors._is_user("errors.py")  # graphc/errors.py, seen from inside graphc
    monkeypatch.chdir(tmp_path)
    assert errors._is_user("errors.py")      # the user's own errors.py
