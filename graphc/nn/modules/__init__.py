"""The layers of ``graphc.nn``, one file per family."""

from .activation import GELU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .linear import Flatten, Identity, Linear
from .loss import CrossEntropyLoss, MSELoss
from .normalization import BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm2d, LayerNorm
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .sparse import Embedding
from .transformer import MultiheadAttention, TransformerEncoderLayer

__all__ = [
    "Linear", "Identity", "Flatten",
    "ReLU", "GELU", "SiLU", "Sigmoid", "Tanh", "Softmax", "LogSoftmax",
    "Sequential", "ModuleList", "ModuleDict",
    "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "LayerNorm", "BatchNorm1d", "BatchNorm2d", "InstanceNorm2d", "GroupNorm",
    "Dropout", "Embedding", "MSELoss", "CrossEntropyLoss",
    "MultiheadAttention", "TransformerEncoderLayer",
]
