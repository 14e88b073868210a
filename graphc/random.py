"""Random number generation: one documented generator, seeded with ``manual_seed``.

graphc draws from numpy's PCG64 bit generator. A seed fixes every value that follows
(``rand``, ``randn``, ``randint``, ``normal``, ``dropout``, ``nn.init``); the values are
not bit-identical to PyTorch's (which uses a Mersenne Twister and its own transforms).
Like PyTorch, a fresh process starts from a fixed default seed, so runs are
reproducible even without ``manual_seed``.
"""

from __future__ import annotations

import copy

import numpy as np

DEFAULT_SEED = 67280421310721  # PyTorch's default initial seed


class Generator:
    """A random stream. ``graphc.default_generator`` is the one factories use by default."""

    def __init__(self, seed: int = DEFAULT_SEED):
        self.manual_seed(seed)

    def manual_seed(self, seed: int) -> Generator:
        seed = int(seed)
        self._seed = seed
        self._rng = np.random.Generator(np.random.PCG64(seed & ((1 << 128) - 1)))
        return self

    def seed(self) -> int:
        """Reseed from the operating system's entropy and return the new seed."""
        new = int(np.random.SeedSequence().entropy) & ((1 << 63) - 1)
        self.manual_seed(new)
        return new

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        """The full state (a plain dict, JSON-friendly) to restore with ``set_state``."""
        return {"seed": self._seed, "bit_generator": copy.deepcopy(self._rng.bit_generator.state)}

    def set_state(self, state: dict) -> Generator:
        self._seed = state["seed"]
        self._rng = np.random.Generator(np.random.PCG64())
        self._rng.bit_generator.state = copy.deepcopy(state["bit_generator"])
        return self

    @property
    def numpy(self) -> np.random.Generator:
        return self._rng

    def __repr__(self) -> str:
        return f"<graphc.Generator seed={self._seed}>"


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the default generator; the same seed gives the same values."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)


def _rng(generator: Generator | None) -> np.random.Generator:
    return (generator or default_generator).numpy


# The draws every random op makes, so an op and its decomposition see the same values.

def uniform(shape, np_dtype, low=0.0, high=1.0, generator: Generator | None = None) -> np.ndarray:
    """Values in [low, high); drawn in float32 for float32 so that 1.0 is never reached.
    (A 16-bit float rounds draws near ``high`` up to it: those become the largest value
    below ``high``.)"""
    draw_dtype = np.float32 if np.dtype(np_dtype) == np.float32 else np.float64
    u = _rng(generator).random(shape, dtype=draw_dtype)
    if low == 0.0 and high == 1.0:
        out = u.astype(np_dtype, copy=False)
    else:
        out = (low + (high - low) * u.astype(np.float64)).astype(np_dtype)
    if np.dtype(np_dtype).itemsize == 2 and low < high:
        top = np.array(high, np_dtype)
        below = np.nextafter(top, np.array(low, np_dtype))
        out = np.where(out.astype(np.float64) >= high, below, out)
    return out


def normal(shape, np_dtype, mean=0.0, std=1.0, generator: Generator | None = None) -> np.ndarray:
    return _rng(generator).normal(mean, std, shape).astype(np_dtype)


def integers(shape, np_dtype, low: int, high: int, generator: Generator | None = None) -> np.ndarray:
    return _rng(generator).integers(low, high, shape).astype(np_dtype)
