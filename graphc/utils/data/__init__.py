"""Data loading, as ``torch.utils.data``: datasets, samplers, ``DataLoader``, collation.

    from graphc.utils.data import DataLoader, TensorDataset, random_split

    train, val = random_split(TensorDataset(x, y), [0.9, 0.1])
    for xb, yb in DataLoader(train, batch_size=64, shuffle=True):
        ...

Shuffling and ``random_split`` draw from graphc's generators (``graphc.manual_seed`` or a
``graphc.Generator`` passed as ``generator=``): reproducible, but not PyTorch's orders.
Loading is in-process for any ``num_workers`` (see ``dataloader``).
"""

from .collate import default_collate, default_convert
from .dataloader import DataLoader, get_worker_info
from .dataset import (ChainDataset, ConcatDataset, Dataset, IterableDataset, StackDataset, Subset,
                      TensorDataset, random_split)
from .sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,
                      WeightedRandomSampler)

__all__ = ["DataLoader", "get_worker_info", "Dataset", "IterableDataset", "TensorDataset",
           "StackDataset", "ConcatDataset", "ChainDataset", "Subset", "random_split", "Sampler",
           "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler", "default_collate", "default_convert"]
