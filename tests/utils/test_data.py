"""graphc.utils.data: datasets, samplers, DataLoader and collation, by hand and against
torch.utils.data (same structures, dtypes and values; the random orders differ by design)."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

import graphc
from graphc.utils.data import (BatchSampler, ChainDataset, ConcatDataset, DataLoader, Dataset,
                               IterableDataset, RandomSampler, SequentialSampler, StackDataset, Subset,
                               SubsetRandomSampler, TensorDataset, WeightedRandomSampler,
                               default_collate, default_convert, random_split)

Point = namedtuple("Point", ["x", "y"])


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        return {"x": np.full(2, i, dtype=np.float32), "y": i * i, "name": f"s{i}"}

    def __len__(self):
        return self.n


class Stream(IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter(range(self.n))

    def __len__(self):
        return self.n


def test_imports():
    import graphc.utils.data as data
    assert data.DataLoader is DataLoader
    assert graphc.utils.data.TensorDataset is TensorDataset


def test_tensor_dataset_and_loader_batches_in_order():
    x = graphc.arange(10.0).reshape(5, 2)
    y = graphc.arange(5)
    ds = TensorDataset(x, y)
    assert len(ds) == 5 and ds[3][0].tolist() == [6.0, 7.0] and ds[3][1].item() == 3
    loader = DataLoader(ds, batch_size=2)
    assert len(loader) == 3
    batches = list(loader)
    assert [b[1].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert batches[0][0].tolist() == [[0.0, 1.0], [2.0, 3.0]] and batches[0][0].dtype is graphc.float32
    assert isinstance(batches[0], list)  # a tuple sample collates into a list, as in PyTorch
    assert len(DataLoader(ds, batch_size=2, drop_last=True)) == 2
    assert [b[1].tolist() for b in DataLoader(ds, batch_size=2, drop_last=True)] == [[0, 1], [2, 3]]
    with pytest.raises(ValueError, match="Size mismatch between tensors"):
        TensorDataset(graphc.zeros(3), graphc.zeros(4))


def test_shuffle_is_a_new_permutation_each_pass_and_reproducible():
    ds = TensorDataset(graphc.arange(20))
    loader = DataLoader(ds, batch_size=5, shuffle=True, generator=graphc.Generator(7))
    first = [i for (b,) in loader for i in b.tolist()]
    second = [i for (b,) in loader for i in b.tolist()]
    assert sorted(first) == sorted(second) == list(range(20))
    assert first != second
    again = DataLoader(ds, batch_size=5, shuffle=True, generator=graphc.Generator(7))
    assert [i for (b,) in again for i in b.tolist()] == first
    graphc.manual_seed(3)
    a = [i for (b,) in DataLoader(ds, batch_size=20, shuffle=True) for i in b.tolist()]
    graphc.manual_seed(3)
    b = [i for (b,) in DataLoader(ds, batch_size=20, shuffle=True) for i in b.tolist()]
    assert a == b  # the default generator, seeded


def test_default_collate_by_hand():
    batch = default_collate([Squares(3)[i] for i in range(3)])
    assert batch["x"].tolist() == [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]
    assert batch["x"].dtype is graphc.float32
    assert batch["y"].tolist() == [0, 1, 4] and batch["y"].dtype is graphc.int64
    assert batch["name"] == ["s0", "s1", "s2"]
    points = default_collate([Point(1.5, True), Point(2.5, False)])
    assert isinstance(points, Point)
    assert points.x.dtype is graphc.float64 and points.y.dtype is graphc.bool
    nested = default_collate([[graphc.ones(2), (3, 4.0)], [graphc.zeros(2), (5, 6.0)]])
    assert nested[0].tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert nested[1][0].tolist() == [3, 5] and nested[1][1].tolist() == [4.0, 6.0]
    assert default_collate([np.float32(1), np.float32(2)]).dtype is graphc.float32
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="default_collate: batch must contain tensors"):
        default_collate([object(), object()])
    with pytest.raises(TypeError, match="default_collate: batch must contain"):
        default_collate([np.array(["a"]), np.array(["b"])])


def _structure(value):
    """The shape of a collated value with tensors as (dtype name, values)."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return ("namedtuple", tuple(_structure(v) for v in value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_structure(v) for v in value])
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return (str(value.dtype).split(".")[-1], value.tolist())
    return value


SAMPLES = {
    "dicts": lambda lib: [{"a": np.arange(3, dtype=np.float32) + i, "b": float(i), "s": "w"}
                          for i in range(4)],
    "tuples": lambda lib: [(lib.full((2,), float(i)), i, True) for i in range(3)],
    "lists": lambda lib: [[i, [np.int64(i), 2.0 * i]] for i in range(3)],
    "namedtuples": lambda lib: [Point(np.float64(i), i) for i in range(3)],
    "numpy-matrices": lambda lib: [np.eye(2, dtype=np.float64) * i for i in range(2)],
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_default_collate_matches_torch(name):
    torch = pytest.importorskip("torch")
    from torch.utils.data import default_collate as torch_collate
    from torch.utils.data import default_convert as torch_convert
    want = _structure(torch_collate(SAMPLES[name](torch)))
    assert _structure(default_collate(SAMPLES[name](graphc))) == want
    sample = SAMPLES[name](graphc)[1]
    assert _structure(default_convert(sample)) == _structure(torch_convert(SAMPLES[name](torch)[1]))


def test_loader_over_dicts_and_without_batching():
    loader = DataLoader(Squares(5), batch_size=2)
    batches = list(loader)
    assert [b["y"].tolist() for b in batches] == [[0, 1], [4, 9], [16]]
    unbatched = list(DataLoader(Squares(2), batch_size=None))
    assert unbatched[1]["x"].tolist() == [1.0, 1.0] and unbatched[1]["y"] == 1
    assert isinstance(unbatched[1]["x"], graphc.Tensor)  # default_convert


def test_custom_collate_and_batch_sampler():
    loader = DataLoader(range(7), batch_sampler=[[0, 1, 2], [6], [3, 5]], collate_fn=lambda b: sum(b))
    assert list(loader) == [3, 6, 8] and len(loader) == 3


def test_samplers_by_hand():
    assert list(SequentialSampler(range(4))) == [0, 1, 2, 3]
    rs = RandomSampler(range(6), generator=graphc.Generator(1))
    assert sorted(rs) == list(range(6)) and len(rs) == 6
    many = list(RandomSampler(range(3), num_samples=7, generator=graphc.Generator(1)))
    assert len(many) == 7 and sorted(many[:3]) == sorted(many[3:6]) == [0, 1, 2]
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50, generator=graphc.Generator(1)))
    assert len(drawn) == 50 and set(drawn) <= {0, 1, 2}
    assert sorted(SubsetRandomSampler([5, 7, 9], generator=graphc.Generator(2))) == [5, 7, 9]
    weighted = list(WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], 200, generator=graphc.Generator(3)))
    assert set(weighted) == {1, 3} and weighted.count(3) > weighted.count(1)
    assert list(BatchSampler(SequentialSampler(range(5)), 2, drop_last=False)) == [[0, 1], [2, 3], [4]]
    assert list(BatchSampler(range(5), 2, drop_last=True)) == [[0, 1], [2, 3]]
    assert len(BatchSampler(range(5), 2, drop_last=False)) == 3
    with pytest.raises(ValueError, match="batch_size should be a positive integer value"):
        BatchSampler(range(5), 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean value"):
        BatchSampler(range(5), 2, 1)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(3), num_samples=0)


def test_subset_concat_stack_chain():
    ds = TensorDataset(graphc.arange(10))
    sub = Subset(ds, [9, 0, 4])
    assert len(sub) == 3 and sub[0][0].item() == 9
    both = ConcatDataset([sub, Subset(ds, [1, 2])])
    assert len(both) == 5 and both.cumulative_sizes == [3, 5]
    assert [both[i][0].item() for i in range(5)] == [9, 0, 4, 1, 2] and both[-1][0].item() == 2
    assert len(sub + sub) == 6
    with pytest.raises(ValueError, match="absolute value of index"):
        both[-6]
    stacked = StackDataset(a=range(3), b="xyz")
    assert stacked[1] == {"a": 1, "b": "y"} and len(stacked) == 3
    assert StackDataset(range(2), range(2))[1] == (1, 1)
    chained = Stream(2) + Stream(3)
    assert isinstance(chained, ChainDataset) and list(chained) == [0, 1, 0, 1, 2] and len(chained) == 5


def test_iterable_dataset_loader():
    loader = DataLoader(Stream(7), batch_size=3)
    assert [b.tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6]]
    assert len(loader) == 3
    assert [b.tolist() for b in DataLoader(Stream(7), batch_size=3, drop_last=True)] == [[0, 1, 2], [3, 4, 5]]
    assert len(DataLoader(Stream(7), batch_size=3, drop_last=True)) == 2
    assert list(DataLoader(Stream(3), batch_size=None)) == [0, 1, 2]  # ints stay ints
    with pytest.raises(ValueError, match="expected unspecified shuffle option"):
        DataLoader(Stream(3), shuffle=True)


def test_random_split_lengths_and_fractions():
    ds = TensorDataset(graphc.arange(10))
    parts = random_split(ds, [3, 7], generator=graphc.Generator(0))
    assert [len(p) for p in parts] == [3, 7]
    values = sorted(v[0].item() for p in parts for v in (p[i] for i in range(len(p))))
    assert values == list(range(10))
    again = random_split(ds, [3, 7], generator=graphc.Generator(0))
    assert again[0].indices == parts[0].indices
    # fractions: floor(10 * f) each, the remainder one by one from the first split
    assert [len(p) for p in random_split(ds, [0.25, 0.25, 0.5])] == [3, 2, 5]
    assert [len(p) for p in random_split(range(11), [0.5, 0.5])] == [6, 5]
    with pytest.raises(ValueError, match="Sum of input lengths does not equal"):
        random_split(ds, [3, 3])


def test_fraction_lengths_match_torch():
    torch = pytest.importorskip("torch")
    for n, fractions in [(10, [0.25, 0.25, 0.5]), (11, [0.5, 0.5]), (7, [0.1, 0.2, 0.7]),
                         (100, [0.33, 0.67])]:
        want = [len(p) for p in torch.utils.data.random_split(range(n), fractions)]
        assert [len(p) for p in random_split(range(n), fractions)] == want


def test_loader_argument_errors_match_torchs_rules():
    ds = TensorDataset(graphc.arange(4))
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, shuffle=True, sampler=SequentialSampler(ds))
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_size=2, batch_sampler=[[0]])
    with pytest.raises(ValueError, match="batch_size=None option disables auto-batching"):
        DataLoader(ds, batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(ds, num_workers=-1)
    loader = DataLoader(ds)
    with pytest.raises(ValueError, match="batch_size attribute should not be set"):
        loader.batch_size = 3


def test_num_workers_loads_in_process_with_the_same_batches():
    seen = []
    ds = TensorDataset(graphc.arange(6))
    loader = DataLoader(ds, batch_size=4, num_workers=2, worker_init_fn=seen.append,
                        persistent_workers=True, pin_memory=True, prefetch_factor=2)
    assert [b[0].tolist() for b in loader] == [[0, 1, 2, 3], [4, 5]]
    assert seen == [0]
    assert graphc.utils.data.get_worker_info() is None


def test_training_loop_end_to_end():
    """A torch-style script with only the imports changed: it trains."""
    graphc.manual_seed(0)
    x = graphc.randn(64, 3)
    y = x @ graphc.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    train, val = random_split(TensorDataset(x, y), [0.75, 0.25], generator=graphc.Generator(1))
    model = graphc.nn.Linear(3, 1)
    opt = graphc.optim.RMSprop(model.parameters(), lr=0.05)
    sched = graphc.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    loader = DataLoader(train, batch_size=16, shuffle=True)
    for _ in range(30):
        for xb, yb in loader:
            opt.zero_grad()
            loss = graphc.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            graphc.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        sched.step()
    xv, yv = default_collate([val[i] for i in range(len(val))])
    with graphc.no_grad():
        assert graphc.nn.functional.mse_loss(model(xv), yv).item() < 1e-2
