"""``repr(tensor)`` in PyTorch's format: ``tensor([[1., 2.], [3., 4.]])``.

The rules (same as PyTorch's printer): floats print with 4 decimals, as integers with a
trailing ``.`` when every value is integral, and in scientific notation when the finite
non-zero magnitudes span more than 1000× or leave [1e-4, 1e8]; all values share one
width. More than 1000 elements are summarised with ``...`` (3 edge items per dim).
The dtype is shown when it is not implied (float32, int64 and bool are implied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import dtype as dt


@dataclass
class PrintOptions:
    precision: int = 4
    threshold: int = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None


PRINT_OPTS = PrintOptions()


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None,
                     profile=None, sci_mode=None) -> None:
    """Set how tensors print; ``profile`` is 'default', 'short' or 'full' (as in PyTorch)."""
    if profile is not None:
        presets = {"default": (4, 1000, 3, 80), "short": (2, 1000, 2, 80),
                   "full": (4, math.inf, 3, 80)}
        PRINT_OPTS.precision, PRINT_OPTS.threshold, PRINT_OPTS.edgeitems, PRINT_OPTS.linewidth = \
            presets[profile]
    for name, value in (("precision", precision), ("threshold", threshold),
                        ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None:
            setattr(PRINT_OPTS, name, value)
    PRINT_OPTS.sci_mode = sci_mode


class _Formatter:
    """Chooses one number format and width for all the values that will be printed."""

    def __init__(self, values: np.ndarray, floating: bool):
        self.floating = floating
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        p = PRINT_OPTS.precision
        flat = values.reshape(-1)
        if not floating:
            for v in flat.tolist():
                self.max_width = max(self.max_width, len(str(v)))
            return
        finite = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
        if finite.size:
            mags = np.abs(finite)
            lo, hi = float(mags.min()), float(mags.max())
            self.int_mode = bool(np.all(finite == np.ceil(finite)))
            if self.int_mode:
                if hi / lo > 1000.0 or hi > 1.0e8:
                    self.sci_mode = True
                    self._widen(finite, lambda v: f"{v:.{p}e}")
                else:
                    self._widen(finite, lambda v: f"{v:.0f}", extra=1)
            else:
                if hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4:
                    self.sci_mode = True
                    self._widen(finite, lambda v: f"{v:.{p}e}")
                else:
                    self._widen(finite, lambda v: f"{v:.{p}f}")
        if PRINT_OPTS.sci_mode is not None:
            self.sci_mode = PRINT_OPTS.sci_mode

    def _widen(self, values: np.ndarray, fmt, extra: int = 0) -> None:
        for v in values.tolist():
            self.max_width = max(self.max_width, len(fmt(v)) + extra)

    def width(self) -> int:
        return self.max_width

    def format(self, value) -> str:
        p = PRINT_OPTS.precision
        if self.floating:
            if self.sci_mode:
                text = f"{value:{self.max_width}.{p}e}"
            elif self.int_mode:
                text = f"{value:.0f}"
                if not (math.isinf(value) or math.isnan(value)):
                    text += "."
            else:
                text = f"{value:.{p}f}"
        else:
            text = str(value)
        return " " * (self.max_width - len(text)) + text


def _summarized(a: np.ndarray) -> np.ndarray:
    """Only the values that will be shown (edge items of every dim)."""
    e = PRINT_OPTS.edgeitems
    if a.ndim == 0:
        return a
    if a.shape[0] > 2 * e:
        a = np.concatenate([a[:e], a[-e:]])
    if a.ndim == 1:
        return a
    return np.stack([_summarized(x) for x in a])


def _vector(a: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    per_line = max(1, int(math.floor((PRINT_OPTS.linewidth - indent) / (fmt.width() + 2))))
    e = PRINT_OPTS.edgeitems
    if summarize and a.shape[0] > 2 * e:
        items = [fmt.format(v) for v in a[:e].tolist()] + [" ..."] + \
                [fmt.format(v) for v in a[-e:].tolist()]
    else:
        items = [fmt.format(v) for v in a.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(a: np.ndarray, indent: int, summarize: bool, fmt: _Formatter) -> str:
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        return _vector(a, indent, summarize, fmt)
    e = PRINT_OPTS.edgeitems
    if summarize and a.shape[0] > 2 * e:
        rows = [_nested(a[i], indent + 1, summarize, fmt) for i in range(e)] + ["..."] + \
               [_nested(a[i], indent + 1, summarize, fmt) for i in range(a.shape[0] - e, a.shape[0])]
    else:
        rows = [_nested(a[i], indent + 1, summarize, fmt) for i in range(a.shape[0])]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def format_values(a: np.ndarray, indent: int) -> str:
    """The bracketed value text of an array, as PyTorch prints it."""
    if a.size == 0:
        return "[]"
    summarize = a.size > PRINT_OPTS.threshold
    if a.dtype == dt.bfloat16.np:  # numpy knows it as a void kind ("V"): print its floats
        a = a.astype(np.float32)
    floating = a.dtype.kind == "f"
    fmt = _Formatter(_summarized(a) if summarize else a, floating)
    return _nested(a, indent, summarize, fmt)


def _with_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    parts = [text]
    last_line = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line + len(suffix) + 2 > PRINT_OPTS.linewidth:
            parts.append(",\n" + " " * indent + suffix)
            last_line = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line += len(suffix) + 2
    parts.append(")")
    return "".join(parts)


def tensor_repr(t, prefix: str = "tensor(") -> str:
    indent = len(prefix)
    suffixes = []
    implied = t.dtype in (dt.get_default_dtype(), dt.int64, dt.bool_)
    if t.is_meta:
        body = "..."
        suffixes.append("device='meta'")
        suffixes.append(f"size={tuple(t.shape)}")
        if t.dtype is not dt.get_default_dtype():
            suffixes.append(f"dtype={t.dtype}")
    elif t.numel() == 0:
        body = "[]"
        if t.ndim != 1:
            suffixes.append(f"size={tuple(t.shape)}")
        if t.dtype is not dt.get_default_dtype():
            suffixes.append(f"dtype={t.dtype}")
    else:
        body = format_values(t._data(), indent)
        if not implied:
            suffixes.append(f"dtype={t.dtype}")
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(prefix + body, suffixes, indent)
