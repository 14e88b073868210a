"""``DataLoader``: a dataset read in batches, as ``torch.utils.data.DataLoader``.

Loading runs in the calling process. ``num_workers > 0`` is accepted and loads the same
batches in the same order in-process (PyTorch's workers would only load them in
parallel); ``worker_init_fn(0)`` runs at the start of each pass, and ``get_worker_info()``
is None, as in PyTorch's main process. ``pin_memory`` has no effect (there is no GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...random import Generator
from .collate import default_collate, default_convert
from .dataset import Dataset, IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "get_worker_info"]

# attributes that fix which batches come out; PyTorch refuses to change them once built
_FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")


def get_worker_info() -> None:
    """Information about the loading worker; None here, since loading is in-process."""
    return None


class DataLoader:
    """Batches of ``dataset``, optionally shuffled.

    ``batch_size=None`` turns batching off (each sample goes through ``default_convert``);
    otherwise ``collate_fn`` (``default_collate`` by default) batches each list of samples.
    ``shuffle=True`` draws a new order from ``generator`` (or graphc's default generator)
    on every pass::

        loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
        for epoch in range(10):
            for xb, yb in loader:
                ...
    """

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | Iterable | None = None,
                 batch_sampler: Sampler | Iterable | None = None, num_workers: int = 0,
                 collate_fn: Callable[[list], Any] | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable[[int], None] | None = None, multiprocessing_context=None,
                 generator: Generator | None = None, *, prefetch_factor: int | None = None,
                 persistent_workers: bool = False, pin_memory_device: str = "",
                 in_order: bool = True) -> None:
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to "
                             "disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing."
                             "let num_workers > 0 to enable multiprocessing, otherwise set "
                             "prefetch_factor to None.")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")

        if isinstance(dataset, IterableDataset):
            # an iterable dataset decides its own order
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle "
                                 f"option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler "
                                 f"option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified "
                                 f"batch_sampler option, but got batch_sampler={batch_sampler}")
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")

        if sampler is None:
            if isinstance(dataset, IterableDataset):
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        if collate_fn is None:
            collate_fn = default_collate if batch_sampler is not None else default_convert

        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.generator = generator
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.in_order = in_order
        self.__initialized = True

    def __setattr__(self, name: str, value: Any) -> None:
        if self.__dict__.get("_DataLoader__initialized") and name in _FROZEN:
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is "
                             "initialized")
        super().__setattr__(name, value)

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self) -> Iterable:
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self) -> Iterator:
        return _Pass(self)

    def __len__(self) -> int:
        if isinstance(self.dataset, IterableDataset):
            length = len(self.dataset)  # TypeError when the dataset has no length, as in PyTorch
            if self.batch_size is not None:
                length = length // self.batch_size if self.drop_last else -(-length // self.batch_size)
            return length
        return len(self._index_sampler)


class _InfiniteConstantSampler(Sampler):
    """The sampler of an iterable dataset: None forever (the dataset gives the samples)."""

    def __iter__(self) -> Iterator[None]:
        while True:
            yield None


class _Pass:
    """One pass over a DataLoader (what ``iter(loader)`` returns)."""

    def __init__(self, loader: DataLoader):
        self._loader = loader
        self._collate = loader.collate_fn
        self._batches = iter(loader._index_sampler)
        self._samples = iter(loader.dataset) if isinstance(loader.dataset, IterableDataset) else None
        self._num_yielded = 0
        if loader.num_workers > 0 and loader.worker_init_fn is not None:
            loader.worker_init_fn(0)

    def __iter__(self) -> _Pass:
        return self

    def __len__(self) -> int:
        return len(self._loader)

    def __next__(self) -> Any:
        data = self._fetch(next(self._batches))
        self._num_yielded += 1
        return data

    def _fetch(self, keys: Any) -> Any:
        loader = self._loader
        if self._samples is not None:  # iterable dataset: keys only say how many to take
            if not loader._auto_collation:
                return self._collate(next(self._samples))
            batch = []
            for _ in keys:
                try:
                    batch.append(next(self._samples))
                except StopIteration:
                    break
            if not batch or (loader.drop_last and len(batch) < len(keys)):
                raise StopIteration
            return self._collate(batch)
        if not loader._auto_collation:
            return self._collate(loader.dataset[keys])
        getitems = getattr(loader.dataset, "__getitems__", None)
        batch = getitems(keys) if callable(getitems) else [loader.dataset[k] for k in keys]
        return self._collate(batch)
