"""Errors for people: what was expected, what was given, and where in the user's code.

Every op error names the op and ends with the first stack frame outside the graphc
package, e.g. ``add: shapes (3, 4) and (5,) do not broadcast (dim -1: 4 vs 5) at model.py:14``.
"""

from __future__ import annotations

import functools
import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


# graphc's command line is a user of the library: its frames count as the caller's
_CALLER_FILES = {os.path.join(_PACKAGE_DIR, name) for name in ("cli.py", "demo.py", "__main__.py")}


def _is_user(filename: str) -> bool:
    """A frame in this file is the user's: outside graphc (or graphc's command line)."""
    if filename.startswith("<frozen"):
        return False
    if os.path.isabs(filename):  # asked for every frame of every traced op: remembered
        return _is_user_path(filename)
    return _is_user_path.__wrapped__(filename)  # relative: depends on the current directory


@functools.lru_cache(maxsize=4096)
def _is_user_path(filename: str) -> bool:
    path = os.path.abspath(filename)
    return not path.startswith(_PACKAGE_DIR) or path in _CALLER_FILES


def user_location() -> str | None:
    """``file:line`` of the innermost frame outside graphc (the user's call site)."""
    frame = sys._getframe(1)
    while frame is not None:
        if _is_user(frame.f_code.co_filename):
            return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def user_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel that points at the user's frame."""
    frame, level = sys._getframe(1), 1
    while frame is not None and not _is_user(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level


def user_location_in(e: BaseException) -> str | None:
    """``file:line`` of the deepest frame of ``e``'s traceback in the user's code."""
    found = None
    tb = e.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if _is_user(code.co_filename):
            found = f"{os.path.basename(code.co_filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


class OpError(RuntimeError):
    """An op was called with arguments it cannot accept.

    Attributes: ``op`` (the op name), ``detail`` (what was wrong) and ``location``
    (``file:line`` of the user's call).
    """

    def __init__(self, op: str, detail: str, location: str | None = None):
        self.op = op
        self.detail = detail
        self.location = location if location is not None else user_location()
        where = f" at {self.location}" if self.location else ""
        super().__init__(f"{op}: {detail}{where}")


class ShapeError(OpError):
    """Shapes that do not fit the op (broadcasting, matmul, view, ...)."""


class DTypeError(OpError):
    """A dtype the op does not accept."""


class OpTypeError(OpError, TypeError):
    """An argument of the wrong Python type (a string where a dim was expected, ...)."""


class OpIndexError(OpError, IndexError):
    """An index or dim out of range."""


class OpValueError(OpError, ValueError):
    """A value the op cannot compute with (integer division by zero, a negative probability...)."""


class WeightChanged(RuntimeError):
    """A weight the program reads was replaced or changed layout since compiling.
    ``attr`` is its dotted name, ``old`` and ``new`` describe it before and now."""

    def __init__(self, message: str, attr: str, old: str, new: str):
        super().__init__(message)
        self.attr, self.old, self.new = attr, old, new
