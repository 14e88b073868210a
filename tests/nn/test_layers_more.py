"""The layers and functions added for porting PyTorch models (1-D and transposed convolution,
padding modes, interpolate, RMSNorm, pixel shuffle, containers of parameters, ...) against
PyTorch: same state_dict, same input -> same output and gradients; and compiled vs eager."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc import nn
from graphc.nn import functional as F
from tests.nn.oracle import assert_close, check_against_torch, load_from_torch, twins

torch = pytest.importorskip("torch")
tnn = torch.nn
TF = torch.nn.functional
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")

DTYPES = ["float64", "float32"]


def randn(*shape, dtype="float64", seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


class Fn:
    """A function as a parameterless module, so check_against_torch can run it."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def named_parameters(self):
        return iter(())


def check_fn(ours, theirs, *inputs, dtype="float64"):
    """Values and input gradients of two functions of the same numpy inputs."""
    return check_against_torch(Fn(ours), Fn(theirs), *inputs, dtype=dtype)


# ---- functions -------------------------------------------------------------------------

PAD_CASES = [((2, 3, 5), (2, 3)), ((3, 4), (3, 1)), ((2, 2, 4, 5), (1, 2, 3, 0)),
             ((3, 4, 5), (0, 2, 1, 1)), ((1, 2, 3, 3, 4), (1, 1, 2, 0, 0, 2))]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("shape,pad", PAD_CASES, ids=str)
def test_pad_modes_match_torch(mode, shape, pad):
    check_fn(lambda x: F.pad(x, pad, mode=mode), lambda x: TF.pad(x, pad, mode=mode), randn(*shape))


def test_pad_mode_errors_name_the_problem():
    x = graphc.from_numpy(randn(2, 3, 4))
    with pytest.raises(ValueError, match="less than its size 4"):
        F.pad(x, (4, 0), mode="reflect")
    with pytest.raises(ValueError, match="only 'constant' takes a value"):
        F.pad(x, (1, 1), mode="reflect", value=1.0)
    with pytest.raises(ValueError, match="3-D or 4-D input"):
        F.pad(graphc.from_numpy(randn(4)), (1, 1, 1, 1), mode="replicate")


INTERPOLATE = [
    ((2, 3, 5), dict(scale_factor=2)), ((2, 3, 5), dict(size=7)),
    ((2, 3, 5), dict(scale_factor=1.7, mode="nearest-exact")),
    ((2, 3, 5), dict(size=8, mode="linear")), ((2, 3, 5), dict(size=3, mode="linear", align_corners=True)),
    ((2, 3, 5), dict(scale_factor=1.5, mode="linear", recompute_scale_factor=True)),
    ((1, 2, 4, 5), dict(scale_factor=2)), ((1, 2, 4, 5), dict(size=(7, 3))),
    ((1, 2, 4, 5), dict(scale_factor=(1.5, 0.6))),
    ((1, 2, 4, 5), dict(scale_factor=2, mode="bilinear")),
    ((1, 2, 4, 5), dict(scale_factor=2, mode="bilinear", align_corners=True)),
    ((1, 2, 4, 5), dict(size=(6, 9), mode="bilinear")),
    ((1, 2, 4, 5), dict(scale_factor=1.3, mode="bilinear")),
    ((1, 2, 4, 5), dict(scale_factor=(2.5, 0.5), mode="bicubic")),
    ((1, 2, 4, 5), dict(size=(7, 6), mode="bicubic", align_corners=True)),
    ((1, 2, 6, 6), dict(size=(4, 3), mode="area")),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kwargs", INTERPOLATE, ids=str)
def test_interpolate_matches_torch(shape, kwargs, dtype):
    check_fn(lambda x: F.interpolate(x, **kwargs), lambda x: TF.interpolate(x, **kwargs),
             randn(*shape, dtype=dtype), dtype=dtype)


def test_interpolate_source_positions_match_torch_over_many_sizes():
    """The index formulas (scale given vs size given, align_corners, PyTorch's same-size
    copies) over sizes and factors that round differently."""
    rng = np.random.default_rng(0)
    for mode in ("nearest", "nearest-exact", "linear", "bilinear", "bicubic"):
        for n_in in (1, 3, 4, 7, 10):
            for spec in (("size", 1), ("size", 5), ("size", 17), ("scale", 0.3), ("scale", 1.3),
                         ("scale", 2.7), ("scale", 1 / 3)):
                for ac in ([None] if "nearest" in mode else [False, True]):
                    shape = (2, 2, n_in) if mode in ("nearest-exact", "linear") else (1, 2, n_in, 3)
                    x = rng.standard_normal(shape)
                    kw = {"mode": mode, "align_corners": ac,
                          ("size" if spec[0] == "size" else "scale_factor"): spec[1]}
                    try:
                        expected = TF.interpolate(torch.from_numpy(x), **kw).numpy()
                    except RuntimeError:  # an empty output: both refuse
                        with pytest.raises(ValueError, match="positive"):
                            F.interpolate(graphc.from_numpy(x), **kw)
                        continue
                    actual = F.interpolate(graphc.from_numpy(x), **kw).numpy()
                    assert_close(actual, expected, "float64", f"{shape} {kw}")


def test_interpolate_errors():
    x = graphc.from_numpy(randn(1, 2, 4, 4))
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="needs a 3-D"):
        F.interpolate(x, scale_factor=2, mode="linear")


CONV1D = [dict(), dict(stride=2, padding=1), dict(padding="same", dilation=2), dict(padding="valid"),
          dict(groups=2, padding=2), dict(groups=2, stride=3, dilation=3)]


@pytest.mark.parametrize("kwargs", CONV1D, ids=str)
def test_conv1d_matches_torch(kwargs):
    groups = kwargs.get("groups", 1)
    w = randn(6, 4 // groups, 3, seed=1)
    check_fn(lambda x, w, b: F.conv1d(x, w, b, **kwargs), lambda x, w, b: TF.conv1d(x, w, b, **kwargs),
             randn(2, 4, 11), w, randn(6, seed=2))


@pytest.mark.parametrize("kwargs", [dict(stride=2), dict(stride=2, padding=1, output_padding=1),
                                    dict(stride=(2, 3), padding=(0, 1), dilation=(2, 1)),
                                    dict(groups=2, stride=3, padding=2, output_padding=(2, 0)),
                                    dict(stride=1, padding=1, dilation=3, output_padding=(2, 1))],
                         ids=str)
def test_conv_transpose2d_matches_torch(kwargs):
    groups = kwargs.get("groups", 1)
    check_fn(lambda x, w, b: F.conv_transpose2d(x, w, b, **kwargs),
             lambda x, w, b: TF.conv_transpose2d(x, w, b, **kwargs),
             randn(2, 4, 5, 4), randn(4, 6 // groups, 3, 2, seed=1), randn(6, seed=2))


def test_pools_1d_and_adaptive_max_match_torch():
    x = randn(2, 3, 11)
    check_fn(lambda x: F.max_pool1d(x, 3, 2, 1, ceil_mode=True),
             lambda x: TF.max_pool1d(x, 3, 2, 1, ceil_mode=True), x)
    check_fn(lambda x: F.avg_pool1d(x, 4, 3, 2, count_include_pad=False),
             lambda x: TF.avg_pool1d(x, 4, 3, 2, count_include_pad=False), x)
    check_fn(lambda x: F.adaptive_avg_pool1d(x, 4), lambda x: TF.adaptive_avg_pool1d(x, 4), x)
    check_fn(lambda x: F.adaptive_max_pool1d(x, 4), lambda x: TF.adaptive_max_pool1d(x, 4), x)
    for size in [(3, 4), (2, 5), 1, (None, 3)]:
        for shape in ((2, 3, 6, 8), (3, 7, 5)):
            check_fn(lambda x, size=size: F.adaptive_max_pool2d(x, size),
                     lambda x, size=size: TF.adaptive_max_pool2d(x, size), randn(*shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rms_norm_matches_torch(dtype):
    x, w = randn(3, 4, 6, dtype=dtype), randn(4, 6, dtype=dtype, seed=1)
    check_fn(lambda x, w: F.rms_norm(x, (4, 6), w), lambda x, w: TF.rms_norm(x, (4, 6), w), x, w,
             dtype=dtype)
    check_fn(lambda x: F.rms_norm(x, 6, eps=1e-3), lambda x: TF.rms_norm(x, (6,), eps=1e-3), x,
             dtype=dtype)


def test_rms_norm_default_eps_is_the_dtype_epsilon():
    x = np.full((2, 4), 1e-5, np.float32)  # mean square 1e-10: eps (1.2e-7) dominates
    expected = TF.rms_norm(torch.from_numpy(x), (4,)).numpy()
    np.testing.assert_allclose(F.rms_norm(graphc.from_numpy(x), 4).numpy(), expected, rtol=1e-5)


def test_instance_norm_pixel_shuffle_bilinear_match_torch():
    check_fn(lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
             lambda x, w, b: TF.instance_norm(x, weight=w, bias=b),
             randn(2, 3, 7), randn(3, seed=1), randn(3, seed=2))
    check_fn(lambda x: F.pixel_shuffle(x, 2), lambda x: TF.pixel_shuffle(x, 2), randn(2, 8, 3, 4))
    check_fn(lambda x: F.pixel_shuffle(x, 3), lambda x: TF.pixel_shuffle(x, 3), randn(9, 2, 3))
    check_fn(lambda x: F.pixel_unshuffle(x, 2), lambda x: TF.pixel_unshuffle(x, 2), randn(2, 3, 4, 6))
    check_fn(F.bilinear, TF.bilinear, randn(2, 5, 3), randn(2, 5, 4, seed=1), randn(6, 3, 4, seed=2),
             randn(6, seed=3))


@pytest.mark.parametrize("dropout_p", [0.0])
def test_sdpa_grouped_query_attention_matches_torch(dropout_p):
    q, k, v = randn(2, 6, 4, 8), randn(2, 2, 5, 8, seed=1), randn(2, 2, 5, 3, seed=2)
    for kw in (dict(), dict(is_causal=True), dict(scale=0.3)):
        check_fn(lambda q, k, v, kw=kw: F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kw),
                 lambda q, k, v, kw=kw: TF.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kw),
                 q, k, v)
    with pytest.raises(Exception, match="multiple"):
        F.scaled_dot_product_attention(*(graphc.from_numpy(a) for a in (q, randn(2, 4, 5, 8), v)),
                                       enable_gqa=True)


def test_channel_dropout_zeroes_whole_channels():
    graphc.manual_seed(0)
    x = graphc.ones(8, 16, 3, 4)
    y = F.dropout2d(x, 0.5).numpy()
    per_channel = y.reshape(8, 16, -1)
    assert ((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1)).all()
    assert 0.25 < (per_channel[..., 0] == 0).mean() < 0.75
    y1 = F.dropout1d(graphc.ones(16, 5), 0.5).numpy()  # unbatched (C, L)
    assert ((y1 == 0).all(-1) | (y1 == 2.0).all(-1)).all()
    assert F.dropout3d(x.reshape(8, 16, 3, 2, 2), 0.5, training=False) is not None
    m = nn.Dropout2d(0.3).eval()
    assert m(x) is x


# ---- modules ---------------------------------------------------------------------------

LAYERS = [
    ("conv1d", lambda: nn.Conv1d(4, 6, 3), lambda: tnn.Conv1d(4, 6, 3), [(2, 4, 9)]),
    ("conv1d-grouped-same", lambda: nn.Conv1d(4, 6, 4, padding="same", dilation=2, groups=2),
     lambda: tnn.Conv1d(4, 6, 4, padding="same", dilation=2, groups=2), [(2, 4, 9)]),
    ("conv1d-unbatched-strided", lambda: nn.Conv1d(3, 2, 3, stride=2, padding=1, bias=False),
     lambda: tnn.Conv1d(3, 2, 3, stride=2, padding=1, bias=False), [(3, 10)]),
    ("conv1d-reflect", lambda: nn.Conv1d(3, 2, 3, padding=2, padding_mode="reflect"),
     lambda: tnn.Conv1d(3, 2, 3, padding=2, padding_mode="reflect"), [(2, 3, 8)]),
    ("conv2d-depthwise", lambda: nn.Conv2d(4, 8, 3, padding=1, groups=4),
     lambda: tnn.Conv2d(4, 8, 3, padding=1, groups=4), [(2, 4, 6, 5)]),
    ("conv2d-dilated", lambda: nn.Conv2d(3, 4, 3, dilation=2, padding=2),
     lambda: tnn.Conv2d(3, 4, 3, dilation=2, padding=2), [(2, 3, 7, 8)]),
    ("conv2d-reflect", lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
     lambda: tnn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), [(2, 3, 5, 6)]),
    ("conv2d-replicate-same", lambda: nn.Conv2d(3, 4, (2, 3), padding="same", padding_mode="replicate"),
     lambda: tnn.Conv2d(3, 4, (2, 3), padding="same", padding_mode="replicate"), [(2, 3, 5, 6)]),
    ("conv2d-circular", lambda: nn.Conv2d(2, 4, 3, stride=2, padding=(1, 2), padding_mode="circular"),
     lambda: tnn.Conv2d(2, 4, 3, stride=2, padding=(1, 2), padding_mode="circular"), [(2, 2, 6, 7)]),
    ("convtranspose2d", lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
     lambda: tnn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), [(2, 4, 5, 4)]),
    ("convtranspose2d-groups-unbatched", lambda: nn.ConvTranspose2d(4, 2, (2, 3), groups=2, bias=False),
     lambda: tnn.ConvTranspose2d(4, 2, (2, 3), groups=2, bias=False), [(4, 3, 3)]),
    ("convtranspose1d", lambda: nn.ConvTranspose1d(3, 5, 4, stride=3),
     lambda: tnn.ConvTranspose1d(3, 5, 4, stride=3), [(2, 3, 6)]),
    ("maxpool1d", lambda: nn.MaxPool1d(3, 2, 1), lambda: tnn.MaxPool1d(3, 2, 1), [(2, 3, 10)]),
    ("avgpool1d", lambda: nn.AvgPool1d(3, 2, 1, ceil_mode=True),
     lambda: tnn.AvgPool1d(3, 2, 1, ceil_mode=True), [(2, 3, 10)]),
    ("adaptive_avgpool1d", lambda: nn.AdaptiveAvgPool1d(4), lambda: tnn.AdaptiveAvgPool1d(4), [(2, 3, 10)]),
    ("adaptive_maxpool1d", lambda: nn.AdaptiveMaxPool1d(3), lambda: tnn.AdaptiveMaxPool1d(3), [(3, 10)]),
    ("adaptive_maxpool2d", lambda: nn.AdaptiveMaxPool2d((2, 3)), lambda: tnn.AdaptiveMaxPool2d((2, 3)),
     [(2, 3, 7, 8)]),
    ("batchnorm3d", lambda: nn.BatchNorm3d(3), lambda: tnn.BatchNorm3d(3), [(2, 3, 2, 3, 4)]),
    ("batchnorm1d-2d", lambda: nn.BatchNorm1d(4), lambda: tnn.BatchNorm1d(4), [(6, 4)]),
    ("instancenorm1d", lambda: nn.InstanceNorm1d(3, affine=True), lambda: tnn.InstanceNorm1d(3, affine=True),
     [(2, 3, 7)]),
    ("instancenorm1d-unbatched", lambda: nn.InstanceNorm1d(3), lambda: tnn.InstanceNorm1d(3), [(3, 7)]),
    ("rmsnorm", lambda: nn.RMSNorm(6), lambda: tnn.RMSNorm(6), [(3, 4, 6)]),
    ("rmsnorm-2d-eps", lambda: nn.RMSNorm((4, 6), eps=1e-3), lambda: tnn.RMSNorm((4, 6), eps=1e-3),
     [(3, 4, 6)]),
    ("rmsnorm-noaffine", lambda: nn.RMSNorm(6, elementwise_affine=False),
     lambda: tnn.RMSNorm(6, elementwise_affine=False), [(3, 6)]),
    ("zeropad2d", lambda: nn.ZeroPad2d((1, 0, 2, 1)), lambda: tnn.ZeroPad2d((1, 0, 2, 1)), [(2, 3, 4)]),
    ("constantpad1d", lambda: nn.ConstantPad1d(2, 3.5), lambda: tnn.ConstantPad1d(2, 3.5), [(2, 4)]),
    ("constantpad2d", lambda: nn.ConstantPad2d((1, 2, 0, 1), -1.0),
     lambda: tnn.ConstantPad2d((1, 2, 0, 1), -1.0), [(2, 3, 4, 4)]),
    ("reflectionpad1d", lambda: nn.ReflectionPad1d((2, 3)), lambda: tnn.ReflectionPad1d((2, 3)), [(2, 3, 5)]),
    ("reflectionpad2d", lambda: nn.ReflectionPad2d(2), lambda: tnn.ReflectionPad2d(2), [(2, 3, 4, 5)]),
    ("replicationpad2d", lambda: nn.ReplicationPad2d((3, 0, 1, 2)),
     lambda: tnn.ReplicationPad2d((3, 0, 1, 2)), [(3, 4, 5)]),
    ("circularpad2d", lambda: nn.CircularPad2d(1), lambda: tnn.CircularPad2d(1), [(2, 3, 4, 5)]),
    ("upsample-nearest", lambda: nn.Upsample(scale_factor=2), lambda: tnn.Upsample(scale_factor=2),
     [(2, 3, 4, 5)]),
    ("upsample-bilinear", lambda: nn.Upsample(size=(7, 9), mode="bilinear"),
     lambda: tnn.Upsample(size=(7, 9), mode="bilinear"), [(2, 3, 4, 5)]),
    ("upsample-linear-ac", lambda: nn.Upsample(scale_factor=1.5, mode="linear", align_corners=True),
     lambda: tnn.Upsample(scale_factor=1.5, mode="linear", align_corners=True), [(2, 3, 5)]),
    ("upsampling-nearest2d", lambda: nn.UpsamplingNearest2d(scale_factor=3),
     lambda: tnn.UpsamplingNearest2d(scale_factor=3), [(1, 2, 3, 2)]),
    ("upsampling-bilinear2d", lambda: nn.UpsamplingBilinear2d(size=(5, 6)),
     lambda: tnn.UpsamplingBilinear2d(size=(5, 6)), [(1, 2, 3, 4)]),
    ("pixelshuffle", lambda: nn.PixelShuffle(2), lambda: tnn.PixelShuffle(2), [(2, 8, 3, 3)]),
    ("pixelunshuffle", lambda: nn.PixelUnshuffle(2), lambda: tnn.PixelUnshuffle(2), [(2, 2, 4, 6)]),
    ("unflatten", lambda: nn.Unflatten(1, (2, 3)), lambda: tnn.Unflatten(1, (2, 3)), [(4, 6, 5)]),
    ("bilinear", lambda: nn.Bilinear(3, 4, 5), lambda: tnn.Bilinear(3, 4, 5), [(6, 3), (6, 4)]),
    ("dropout2d-eval", lambda: nn.Dropout2d(0.5).eval(), lambda: tnn.Dropout2d(0.5).eval(), [(2, 3, 4, 4)]),
]


def _perturb_affine(gm, tm, dtype):
    """Move weights away from their (ones/zeros) defaults so the test sees them act."""
    rng = np.random.default_rng(7)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            if name.endswith(("weight", "bias")) and p.ndim <= 2:
                p.add_(torch.from_numpy(rng.standard_normal(tuple(p.shape)).astype(dtype)))
    load_from_torch(gm, tm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,torch_make,shapes", [case[1:] for case in LAYERS],
                         ids=[case[0] for case in LAYERS])
def test_layer_matches_torch(make, torch_make, shapes, dtype):
    gm, tm = twins(make, torch_make, dtype)
    assert list(gm.state_dict()) == list(tm.state_dict())
    _perturb_affine(gm, tm, dtype)
    inputs = [randn(*s, dtype=dtype, seed=i) for i, s in enumerate(shapes)]
    check_against_torch(gm, tm, *inputs, dtype=dtype)
    assert repr(gm) == repr(tm).replace("torch.", "graphc.")


def test_batchnorm3d_training_then_eval_matches_torch():
    gm, tm = twins(lambda: nn.BatchNorm3d(3, momentum=0.3), lambda: tnn.BatchNorm3d(3, momentum=0.3))
    for step in range(3):
        check_against_torch(gm, tm, randn(2, 3, 2, 2, 3, seed=step) * (step + 1), seed=step)
    for name, buf in tm.named_buffers():
        assert_close(gm.get_buffer(name).numpy(), buf.numpy(), "float64", name)
    gm.eval()
    tm.eval()
    check_against_torch(gm, tm, randn(2, 3, 2, 2, 3, seed=9))


def test_instance_norm_running_stats_match_torch():
    make = lambda m: m.InstanceNorm1d(3, track_running_stats=True, affine=True)
    gm, tm = twins(lambda: make(nn), lambda: make(tnn))
    for step in range(2):
        check_against_torch(gm, tm, randn(2, 3, 6, seed=step) + step)
    for name, buf in tm.named_buffers():
        assert_close(gm.get_buffer(name).numpy(), buf.numpy(), "float64", name)
    gm.eval()
    tm.eval()
    check_against_torch(gm, tm, randn(2, 3, 6, seed=5))


def test_conv_transpose_output_size_matches_torch():
    gm, tm = twins(lambda: nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1),
                   lambda: tnn.ConvTranspose2d(2, 3, 3, stride=2, padding=1))
    x = randn(1, 2, 4, 5)
    out = gm(graphc.from_numpy(x), output_size=(8, 10))
    expected = tm(torch.from_numpy(x), output_size=(8, 10))
    assert_close(out.detach().numpy(), expected.detach().numpy(), "float64", "output_size")


def test_parameter_list_and_dict_register_like_torch():
    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.scales = nn.ParameterList([nn.Parameter(graphc.ones(2)), graphc.zeros(3)])
            self.scales.append(nn.Parameter(graphc.ones(1)))
            self.table = nn.ParameterDict({"b": nn.Parameter(graphc.ones(2)), "a": graphc.zeros(4)})
            self.table["c"] = nn.Parameter(graphc.ones(1))

    class Theirs(tnn.Module):
        def __init__(self):
            super().__init__()
            self.scales = tnn.ParameterList([tnn.Parameter(torch.ones(2)), torch.zeros(3)])
            self.scales.append(tnn.Parameter(torch.ones(1)))
            self.table = tnn.ParameterDict({"b": tnn.Parameter(torch.ones(2)), "a": torch.zeros(4)})
            self.table["c"] = tnn.Parameter(torch.ones(1))

    ours, theirs = Ours(), Theirs()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert isinstance(ours.scales[1], nn.Parameter) and len(ours.scales) == 3
    assert list(ours.table) == list(theirs.table) and "a" in ours.table
    assert tuple(ours.scales[-1].shape) == (1,) and len(ours.scales[1:]) == 2
    load_from_torch(ours, Theirs())  # loads by key, strict
    del ours.table["c"]
    assert list(ours.table.keys()) == ["a", "b"] and "table.c" not in ours.state_dict()


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_matches_torch(norm_first):
    def make(m):
        layer = m.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, norm_first=norm_first)
        return m.TransformerEncoder(layer, 2, norm=m.LayerNorm(8))
    gm, tm = twins(lambda: make(nn), lambda: make(tnn))
    assert list(gm.state_dict()) == list(tm.state_dict())
    assert gm.layers[0].linear1.weight is not gm.layers[1].linear1.weight
    x = randn(2, 5, 8)
    mask = np.triu(np.full((5, 5), -np.inf), 1)
    padding = np.array([[False] * 5, [False] * 3 + [True] * 2])
    tm.eval()  # (torch's fast path in eval is the same math; train mode keeps the reference path)
    tm.train()
    check_against_torch(gm, tm, x, kwargs={"mask": mask})
    check_against_torch(gm, tm, x, kwargs={"src_key_padding_mask": padding})


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_masks_match_torch(batch_first):
    gm, tm = twins(lambda: nn.MultiheadAttention(8, 2, batch_first=batch_first),
                   lambda: tnn.MultiheadAttention(8, 2, batch_first=batch_first))
    q, k = randn(3, 4, 8), randn(3, 5, 8, seed=1)
    if not batch_first:
        q, k = q.transpose(1, 0, 2).copy(), k.transpose(1, 0, 2).copy()
    bool_mask = np.triu(np.ones((4, 5), bool), 2)
    float_mask = randn(3 * 2, 4, 5, seed=2)
    padding = np.array([[False] * 5, [False] * 4 + [True], [True] + [False] * 4])
    for kw in ({"attn_mask": bool_mask}, {"attn_mask": float_mask}, {"key_padding_mask": padding},
               {"attn_mask": bool_mask, "key_padding_mask": padding, "need_weights": False},
               {"attn_mask": float_mask, "average_attn_weights": False}):
        check_against_torch(gm, tm, q, k, k.copy(), kwargs=kw)


# ---- compiled vs eager ---------------------------------------------------------------------------

class Block(nn.Module):
    """A little of everything: 1-D conv with reflect padding, upsampling, RMSNorm, pools."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, padding=1, padding_mode="reflect")
        self.up = nn.Upsample(scale_factor=2, mode="linear")
        self.norm = nn.RMSNorm(16)
        self.pool = nn.AdaptiveAvgPool1d(5)
        self.conv2 = nn.Conv2d(6, 4, 3, padding=1, padding_mode="replicate")
        self.up2 = nn.Upsample(scale_factor=2)
        self.shuffle = nn.PixelUnshuffle(2)

    def forward(self, x):
        y = self.norm(self.up(self.conv(x)))                 # (N, 6, 16)
        z = self.conv2(F.pad(y.unsqueeze(2), (0, 0, 1, 1), mode="circular"))  # (N, 4, 3, 16)
        z = self.shuffle(self.up2(z))                        # (N, 16, 3, 16)
        return self.pool(y), z


def test_compiled_block_matches_eager():
    graphc.manual_seed(0)
    model = Block()
    x = graphc.from_numpy(randn(2, 4, 8, dtype="float32"))
    compiled = graphc.compile(model, fullgraph=True)  # refuses any numpy fallback
    with graphc.no_grad():
        expected, actual = model(x), compiled(x)
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(a.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)


def test_compiled_llama_block_runs_rms_norm_natively():
    graphc.manual_seed(0)

    class LlamaMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.RMSNorm(16, eps=1e-6)
            self.up = nn.Linear(16, 32, bias=False)
            self.down = nn.Linear(32, 16, bias=False)

        def forward(self, x):
            return x + self.down(F.silu(self.up(self.norm(x))))

    model = LlamaMLP()
    x = graphc.from_numpy(randn(3, 5, 16, dtype="float32"))
    compiled = graphc.compile(model, fullgraph=True)  # refuses any numpy fallback
    with graphc.no_grad():
        np.testing.assert_allclose(compiled(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
