"""Models named by ``FILE:OBJ``: a Python file and a name in it (a ``graphc.nn.Module``
instance, a function, or a zero-argument factory returning a module), and their example
inputs. The CLI's ``bench``, ``explain`` and ``dump`` and ``graphc.benchmark``'s fresh
processes load models this way.

The file runs as a module of its own (not ``__main__``), with its folder on ``sys.path``.
Example inputs are ``OBJ.example_inputs`` if it exists, else ``example_inputs`` in FILE:
a tuple of tensors, or a zero-argument function returning one.

    model, inputs, label = load_target("model.py:MLP")
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import traceback
from pathlib import Path

import numpy as np

from ..nn.module import Module
from ..tensor import Tensor


class TargetError(Exception):
    """A FILE:OBJ or its example inputs cannot be used; the message says what was expected."""


EXPECTED = ("a graphc.nn.Module instance, a function, or a zero-argument factory returning "
            "a module")
INPUTS_EXPECTED = "a tuple of graphc tensors, or a zero-argument function returning one"


def load_target(spec: str) -> tuple[object, tuple, str]:
    """The model ``FILE:OBJ`` names, its example inputs, and its label (``file.py:OBJ``)."""
    module, obj, label = _load_object(spec)
    model = _as_model(obj, label, module.__file__)
    return model, _example_inputs(module, obj, model, label), label


def load_model(spec: str):
    """The model ``FILE:OBJ`` names (a factory is called); no inputs."""
    module, obj, label = _load_object(spec)
    return _as_model(obj, label, module.__file__)


def _load_object(spec: str):
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name:
        raise TargetError(f"expected FILE:OBJ (a Python file and a name in it, e.g. "
                          f"model.py:MLP), got {spec!r}")
    module = _run_file(file)
    label = f"{Path(file).name}:{name}"
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            found = _candidates(module)
            listed = (f"; it defines {', '.join(found)}" if found else
                      f"; it defines no module, function or factory (expected {EXPECTED})")
            raise TargetError(f"{file} has no {name!r}{listed}")
        obj = getattr(obj, part)
    return module, obj, label


def _run_file(file: str):
    path = Path(file)
    if not path.exists():
        raise TargetError(f"no such file: {file} (expected FILE:OBJ, FILE a Python file)")
    if not path.is_file():
        raise TargetError(f"{file} is not a file (expected FILE:OBJ, FILE a Python file)")
    path = path.resolve()
    # a name of its own, not __main__: the file's `if __name__ == "__main__":` part does not run
    name = "_graphc_target_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"{file} is not a Python file (expected FILE:OBJ, FILE ending in .py)")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:  # as `python FILE` would: its neighbours import
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        del sys.modules[name]
        raise TargetError(f"{file}:{e.lineno}: SyntaxError: {e.msg}") from None
    except (Exception, SystemExit) as e:
        del sys.modules[name]
        raise TargetError(f"running {file} raised {one_line(e)}{line_in(e, path)}") from None
    return module


def _candidates(module) -> list[str]:
    """The names in a file that could be an OBJ: modules, and functions and Module classes
    defined there."""
    out = []
    for name, value in vars(module).items():
        here = getattr(value, "__module__", None) == module.__name__
        if name.startswith("_"):
            continue
        if isinstance(value, Module) or (here and inspect.isfunction(value)) or \
                (here and isinstance(value, type) and issubclass(value, Module)):
            out.append(name)
    return out


def _as_model(obj, label: str, file: str):
    from .compiled import CompiledFunction
    if isinstance(obj, (Module, CompiledFunction)):
        return obj
    if isinstance(obj, type):
        if not issubclass(obj, Module):
            raise TargetError(f"{label} is a class, not a graphc.nn.Module subclass; expected "
                              f"{EXPECTED}")
        required = _required(obj)
        if required:
            raise TargetError(f"{label} is a Module class whose constructor needs arguments "
                              f"({', '.join(required)}); expected {EXPECTED}: add e.g. "
                              f"`model = {obj.__name__}(...)` to the file and name that")
        return _build(obj, label, file)
    if not callable(obj):
        raise TargetError(f"{label} is {_a(obj)}; expected {EXPECTED}")
    if _required(obj):
        return obj  # a function: the model itself
    model = _build(obj, label, file)
    if not isinstance(model, Module):
        raise TargetError(f"{label} takes no arguments, so it is a factory, but it returned "
                          f"{_a(model)}; expected a graphc.nn.Module")
    return model


def _required(fn) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.default is p.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _build(factory, label: str, file: str):
    try:
        return factory()
    except Exception as e:
        raise TargetError(f"{label}() raised {one_line(e)}{line_in(e, file)}") from None


def _example_inputs(module, obj, model, label: str) -> tuple:
    from .benchmark import original
    holders = [] if isinstance(obj, type) else [(obj, f"{label}.example_inputs")]
    if model is not obj:
        holders.append((model, f"{type(model).__name__}.example_inputs"))
    holders.append((module, f"{label.rpartition(':')[0]}:example_inputs"))
    found = next(((v, where) for holder, where in holders
                  if (v := getattr(holder, "example_inputs", None)) is not None), None)
    if found is None:
        raise TargetError(f"no example inputs for {label}: expected `example_inputs = "
                          f"(graphc.randn(8, 32),)` in {Path(module.__file__).name} "
                          f"({INPUTS_EXPECTED}), or an attribute example_inputs on "
                          f"{label.rpartition(':')[2]}")
    value, where = found
    verb = "is"
    if callable(value) and not isinstance(value, Tensor):
        try:
            value = value()
        except Exception as e:
            raise TargetError(f"{where}() raised {one_line(e)}{line_in(e, module.__file__)}"
                              ) from None
        where, verb = where + "()", "returned"
    if isinstance(value, Tensor):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise TargetError(f"{where} {verb} {_a(value)}; expected {INPUTS_EXPECTED}")
    for k, v in enumerate(value):
        if isinstance(v, np.ndarray):
            raise TargetError(f"{where}[{k}] is a numpy array; expected a graphc.Tensor "
                              "(wrap it: graphc.from_numpy(a))")
        if not isinstance(v, (Tensor, bool, int, float, str, type(None))):
            raise TargetError(f"{where}[{k}] is {_a(v)}; expected a graphc.Tensor")
    target = original(model)
    try:
        signature = inspect.signature(target.forward if isinstance(target, Module)
                                      else target)
    except (TypeError, ValueError):
        return tuple(value)  # no signature to check against
    try:
        signature.bind(*value)
    except TypeError as e:
        count = f"{len(value)} value" + ("" if len(value) == 1 else "s")
        raise TargetError(f"{label} takes {signature} but {where} has {count}: {e}") from None
    return tuple(value)


def _a(value) -> str:
    name = type(value).__name__
    return ("an " if name[0].lower() in "aeiou" else "a ") + name


def one_line(e: BaseException) -> str:
    """An exception as ``Type: its message's first line``."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def line_in(e: BaseException, file) -> str:
    """`` at file.py:line``: the innermost frame of the traceback in ``file``, unless the
    message names it already (graphc's errors name the user's line)."""
    found = ""
    for frame in traceback.extract_tb(e.__traceback__):
        if frame.filename == str(file):
            found = f"{Path(file).name}:{frame.lineno}"
    return f" at {found}" if found and found not in str(e) else ""
