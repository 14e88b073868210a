"""The layers of ``graphc.nn``, one file per family."""

from .activation import GELU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .activation import (CELU, ELU, GLU, SELU, Hardsigmoid, Hardswish, Hardtanh, LeakyReLU,
                         LogSigmoid, Mish, PReLU, ReLU6, Softmax2d, Softplus, Softsign, Tanhshrink,
                         Threshold)
from .bilinear import Bilinear
from .container import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d
from .dropout import Dropout, Dropout1d, Dropout2d, Dropout3d
from .linear import Flatten, Identity, Linear
from .loss import CrossEntropyLoss, MSELoss
from .loss import (BCELoss, BCEWithLogitsLoss, CosineSimilarity, HuberLoss, KLDivLoss, L1Loss,
                   NLLLoss, SmoothL1Loss)
from .normalization import (BatchNorm1d, BatchNorm2d, BatchNorm3d, GroupNorm, InstanceNorm1d,
                            InstanceNorm2d, LayerNorm, RMSNorm)
from .padding import (CircularPad1d, CircularPad2d, ConstantPad1d, ConstantPad2d, ReflectionPad1d,
                      ReflectionPad2d, ReplicationPad1d, ReplicationPad2d, ZeroPad1d, ZeroPad2d)
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d,
                      AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d)
from .shape import PixelShuffle, PixelUnshuffle, Unflatten
from .sparse import Embedding
from .transformer import MultiheadAttention, TransformerEncoder, TransformerEncoderLayer
from .upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d

__all__ = [
    "Linear", "Identity", "Flatten",
    "ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "Sequential", "ModuleList", "ModuleDict",
    "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "LayerNorm", "BatchNorm1d", "BatchNorm2d", "InstanceNorm2d", "GroupNorm",
    "Dropout", "Embedding", "MSELoss", "CrossEntropyLoss",
    "MultiheadAttention", "TransformerEncoderLayer",
    # 1-D and transposed convolutions, pools, padding, resampling, more norms and containers
    "Conv1d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "AvgPool1d", "AdaptiveAvgPool1d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "BatchNorm3d", "InstanceNorm1d", "RMSNorm",
    "ZeroPad1d", "ZeroPad2d", "ConstantPad1d", "ConstantPad2d", "ReflectionPad1d", "ReflectionPad2d",
    "ReplicationPad1d", "ReplicationPad2d", "CircularPad1d", "CircularPad2d",
    "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle",
    "Unflatten", "ParameterList", "ParameterDict", "Dropout1d", "Dropout2d", "Dropout3d",
    "Bilinear", "TransformerEncoder",
    # activations and losses
    "ELU", "SELU", "CELU", "LeakyReLU", "Hardtanh", "ReLU6", "Threshold", "Mish", "Hardswish",
    "Hardsigmoid", "LogSigmoid", "Softsign", "Tanhshrink", "GLU", "Softplus", "Softmax2d", "PReLU",
    "NLLLoss", "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "BCEWithLogitsLoss", "KLDivLoss",
    "CosineSimilarity",
]
