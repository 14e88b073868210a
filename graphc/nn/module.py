"""``Module``: the base class of every layer and model (PyTorch's ``torch.nn.Module``).

A module owns three ordered registries, filled by plain attribute assignment:
``_parameters`` (``Parameter`` objects), ``_buffers`` (tensors that are state but not
learned, such as BatchNorm's running statistics) and ``_modules`` (sub-modules). Every
recursive query (``parameters``, ``buffers``, ``state_dict`` ...) is one walk over
``named_modules``; every conversion (``to``, ``double`` ...) is one ``_apply``.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import dtype as dt
from ..autograd import no_grad
from ..autograd.graph import RemovableHandle
from ..tensor import Tensor, device
from .parameter import Parameter

_REGISTRIES = ("_parameters", "_buffers", "_modules")


class _Registry(OrderedDict):
    """A module's parameters, buffers or children. Every change counts in
    ``Module.changes``, so a compiled graph knows with one comparison per call that no
    weight it reads was replaced (any module attribute assignment counts too)."""

    __slots__ = ()

    def __setitem__(self, key, value) -> None:
        Module.changes += 1
        super().__setitem__(key, value)

    def __delitem__(self, key) -> None:
        Module.changes += 1
        super().__delitem__(key)

    def pop(self, *args):
        Module.changes += 1
        return super().pop(*args)

    def popitem(self, last: bool = True):
        Module.changes += 1
        return super().popitem(last)

    def clear(self) -> None:
        Module.changes += 1
        super().clear()

    def update(self, *args, **kwargs) -> None:
        Module.changes += 1
        super().update(*args, **kwargs)

    def setdefault(self, key, default=None):
        Module.changes += 1
        return super().setdefault(key, default)


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` returns: the keys it did not find, and the ones it did not use."""

    __slots__ = ()

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _addindent(text: str, spaces: int) -> str:
    """Indent every line but the first (the nested-repr layout)."""
    first, *rest = text.split("\n")
    return "\n".join([first] + [" " * spaces + line for line in rest])


class Module:
    """Base class of all neural-network modules.

    Subclasses call ``super().__init__()`` first, assign their parameters, buffers and
    sub-modules as attributes, and define ``forward``::

        class MLP(graphc.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = graphc.nn.Linear(4, 8)
                self.fc2 = graphc.nn.Linear(8, 2)

            def forward(self, x):
                return self.fc2(graphc.nn.functional.relu(self.fc1(x)))

    Call the module (``model(x)``), not ``forward``: calling runs the registered hooks.
    """

    changes = 0  # assignments to any module's attributes or registries (see _Registry)
    training: bool
    _parameters: dict[str, Parameter | None]
    _buffers: dict[str, Tensor | None]
    _modules: dict[str, Module | None]

    def __init__(self) -> None:
        # object.__setattr__: our own __setattr__ needs these registries to exist already
        set_ = object.__setattr__
        set_(self, "training", True)
        set_(self, "_parameters", _Registry())
        set_(self, "_buffers", _Registry())
        set_(self, "_non_persistent_buffers_set", set())
        set_(self, "_modules", _Registry())
        set_(self, "_forward_pre_hooks", OrderedDict())
        set_(self, "_forward_pre_hooks_with_kwargs", set())
        set_(self, "_forward_hooks", OrderedDict())
        set_(self, "_forward_hooks_with_kwargs", set())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation; every subclass defines it."""
        raise NotImplementedError(f'Module [{type(self).__name__}] is missing the required "forward" '
                                  "function; define forward(self, ...) in the subclass")

    # ---- registration ------------------------------------------------------------------
    def _registry(self, name: str, what: str) -> dict:
        registry = self.__dict__.get(name)
        if registry is None:
            cls = type(self).__name__
            raise AttributeError(f"cannot assign {what} to {cls} before Module.__init__() is called; "
                                 f"call super().__init__() first in {cls}.__init__")
        return registry

    def _check_new_name(self, name: Any, kind: str, registry: dict) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string, got {type(name).__name__}")
        if name == "":
            raise KeyError(f'{kind} name can\'t be empty string ""')
        if "." in name:
            raise KeyError(f'{kind} name can\'t contain ".", got: {name}')
        if hasattr(self, name) and name not in registry:
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add ``param`` as parameter ``name`` (None reserves the name: it is listed nowhere)."""
        params = self._registry("_parameters", "parameters")
        self._check_new_name(name, "parameter", params)
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign '{type(param).__name__}' object to parameter '{name}' "
                            "(graphc.nn.Parameter or None required)")
        if param is not None and param.grad_fn is not None:
            raise ValueError(f"Cannot assign non-leaf Tensor to parameter '{name}'. Model parameters "
                             f"must be created explicitly; to express '{name}' as a function of another "
                             "Tensor, compute the value in the forward() method.")
        params[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Add ``tensor`` as buffer ``name``: state that is not learned (running statistics...).

        A persistent buffer is part of ``state_dict``; ``persistent=False`` keeps it out.
        """
        buffers = self._registry("_buffers", "buffers")
        self._check_new_name(name, "buffer", buffers)
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{type(tensor).__name__}' object to buffer '{name}' "
                            "(graphc.Tensor or None required)")
        buffers[name] = tensor
        if persistent:
            self._non_persistent_buffers_set.discard(name)
        else:
            self._non_persistent_buffers_set.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Add ``module`` as sub-module ``name`` (reachable as an attribute)."""
        modules = self._registry("_modules", "modules")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        self._check_new_name(name, "module", modules)
        modules[name] = module

    register_module = add_module

    def __setattr__(self, name: str, value: Any) -> None:
        Module.changes += 1
        d = self.__dict__
        params = d.get("_parameters")
        if isinstance(value, Parameter):
            self._registry("_parameters", f"Parameter '{name}'")
            self._forget(name, keep="_parameters")
            self.register_parameter(name, value)
        elif params is not None and name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as parameter '{name}' "
                                "(graphc.nn.Parameter or None expected)")
            self.register_parameter(name, value)
        elif isinstance(value, Module):
            self._registry("_modules", f"Module '{name}'")
            self._forget(name, keep="_modules")
            d["_modules"][name] = value
        elif d.get("_modules") is not None and name in d["_modules"]:
            if value is not None:
                raise TypeError(f"cannot assign '{type(value).__name__}' as child module '{name}' "
                                "(graphc.nn.Module or None expected)")
            d["_modules"][name] = value
        elif d.get("_buffers") is not None and name in d["_buffers"]:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{type(value).__name__}' as buffer '{name}' "
                                "(graphc.Tensor or None expected)")
            d["_buffers"][name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: str) -> None:
        """Drop ``name`` from the plain attributes and from every registry but ``keep``."""
        self.__dict__.pop(name, None)
        for registry in _REGISTRIES:
            if registry != keep:
                self.__dict__[registry].pop(name, None)
        self._non_persistent_buffers_set.discard(name)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails: look in the registries
        d = self.__dict__
        for registry in _REGISTRIES:
            found = d.get(registry)
            if found is not None and name in found:
                return found[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        Module.changes += 1
        for registry in _REGISTRIES:
            if name in self.__dict__.get(registry, ()):
                del self.__dict__[registry][name]
                self._non_persistent_buffers_set.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self) -> list[str]:
        keys = list(dir(type(self))) + list(self.__dict__)
        for registry in _REGISTRIES:
            keys += list(self.__dict__[registry])
        return sorted(k for k in set(keys) if not k[0].isdigit())

    # ---- walking the tree --------------------------------------------------------------
    def named_modules(self, memo: set | None = None, prefix: str = "",
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, depth first, as (dotted name, module).

        A module reachable along several paths is listed once unless ``remove_duplicate=False``.
        """
        if memo is None:
            memo = set()
        if self in memo:
            return
        if remove_duplicate:
            memo.add(self)
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, prefix + ("." if prefix else "") + name,
                                                remove_duplicate)

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module, each once."""
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """The direct sub-modules as (name, module), each module once."""
        seen = set()
        for name, module in self._modules.items():
            if module is not None and module not in seen:
                seen.add(module)
                yield name, module

    def children(self) -> Iterator[Module]:
        """The direct sub-modules, each once."""
        for _, module in self.named_children():
            yield module

    def _named_members(self, members: Callable[[Module], Iterator[tuple[str, Any]]], prefix: str = "",
                       recurse: bool = True, remove_duplicate: bool = True) -> Iterator[tuple[str, Any]]:
        """The one walker behind named_parameters, named_buffers and state_dict."""
        seen: set[int] = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) if recurse \
            else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in members(module):
                if value is None or id(value) in seen:
                    continue
                if remove_duplicate:
                    seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) of this module and, with ``recurse``, its sub-modules.

        A parameter shared by several modules is listed once (under its first name).
        """
        return self._named_members(lambda m: iter(m._parameters.items()), prefix, recurse,
                                   remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter (shared ones once): what an optimizer takes."""
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, buffer), persistent or not."""
        return self._named_members(lambda m: iter(m._buffers.items()), prefix, recurse,
                                   remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """Every buffer, persistent or not (shared ones once)."""
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    def get_submodule(self, target: str) -> Module:
        """The sub-module at dotted path ``target`` ("" is this module)."""
        module = self
        for item in target.split(".") if target else ():
            if item not in module._modules or module._modules[item] is None:
                if hasattr(module, item):
                    raise AttributeError(f"`{item}` is not an nn.Module")
                raise AttributeError(f"{module._get_name()} has no attribute `{item}`")
            module = module._modules[item]
        return module

    def get_parameter(self, target: str) -> Parameter:
        """The parameter at dotted path ``target`` (e.g. ``"encoder.0.weight"``)."""
        return self._get_member(target, "_parameters", "nn.Parameter")

    def get_buffer(self, target: str) -> Tensor:
        """The buffer at dotted path ``target`` (e.g. ``"bn.running_mean"``)."""
        return self._get_member(target, "_buffers", "a buffer")

    def _get_member(self, target: str, registry: str, kind: str) -> Any:
        module_path, _, name = target.rpartition(".")
        module = self.get_submodule(module_path)
        if not hasattr(module, name):
            raise AttributeError(f"{module._get_name()} has no attribute `{name}`")
        if name not in module.__dict__[registry]:
            raise AttributeError(f"`{name}` is not {kind}")
        return module.__dict__[registry][name]

    # ---- modes and gradients -----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or evaluation mode on this module and all below."""
        if not isinstance(mode, bool):
            raise ValueError(f"training mode is expected to be a bool, got {type(mode).__name__}")
        self.training = mode
        for module in self.children():
            module.train(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: ``train(False)`` (Dropout is the identity, BatchNorm uses running stats)."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Set ``requires_grad`` on every parameter (``False`` freezes the module)."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter: to None (default), or to zeros in place."""
        for param in self.parameters():
            if param.grad is None:
                continue
            if set_to_none:
                param.grad = None
                continue
            if param.grad.grad_fn is not None:
                param.grad = param.grad.detach()
            else:
                param.grad.requires_grad_(False)
            with no_grad():
                param.grad.zero_()

    # ---- conversions -------------------------------------------------------------------
    def _apply(self, fn: Callable[[Tensor], Tensor]) -> Module:
        """Replace every parameter, gradient and buffer ``t`` of the tree by ``fn(t)``.

        Parameters keep their identity (optimizers hold them): their data is swapped in
        place with the ``data`` setter; buffers are replaced.
        """
        for module in self.children():
            module._apply(fn)
        with no_grad():
            for param in self._parameters.values():
                if param is None:
                    continue
                param.data = fn(param)
                if param.grad is not None:
                    param.grad.data = fn(param.grad)
            for name, buf in self._buffers.items():
                if buf is not None:
                    self._buffers[name] = fn(buf)
        return self

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call ``fn`` on every sub-module (children first), then on this module.

            >>> model.apply(lambda m: graphc.nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
        """
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)`` or ``to(tensor)``, in place.

        Only floating-point parameters and buffers change dtype (``num_batches_tracked``
        stays int64), as in PyTorch.
        """
        dtype, dev = _parse_to(args, kwargs)
        if dtype is not None and not dtype.is_floating_point:
            raise TypeError(f"nn.Module.to only accepts floating point dtypes, but got desired "
                            f"dtype={dtype}")
        return self._apply(lambda t: t.to(dtype=dtype if t.is_floating_point() else None, device=dev))

    def float(self) -> Module:
        """Cast floating-point parameters and buffers to float32."""
        return self.to(dt.float32)

    def double(self) -> Module:
        """Cast floating-point parameters and buffers to float64."""
        return self.to(dt.float64)

    def cpu(self) -> Module:
        """Move parameters and buffers to the cpu (they are there unless moved to meta)."""
        return self.to("cpu")

    # ---- calling -----------------------------------------------------------------------
    def register_forward_pre_hook(self, hook: Callable, *, prepend: bool = False,
                                  with_kwargs: bool = False) -> RemovableHandle:
        """Run ``hook(module, args)`` before every forward.

        A hook that returns something other than None replaces the positional arguments (a
        non-tuple is wrapped in one). With ``with_kwargs=True`` the hook is
        ``hook(module, args, kwargs)`` and may return ``(args, kwargs)``.
        """
        return self._add_hook(self._forward_pre_hooks, self._forward_pre_hooks_with_kwargs, hook,
                              prepend, with_kwargs)

    def register_forward_hook(self, hook: Callable, *, prepend: bool = False,
                              with_kwargs: bool = False) -> RemovableHandle:
        """Run ``hook(module, args, output)`` after every forward; a non-None result replaces
        the output. With ``with_kwargs=True`` the hook is ``hook(module, args, kwargs, output)``."""
        return self._add_hook(self._forward_hooks, self._forward_hooks_with_kwargs, hook, prepend,
                              with_kwargs)

    @staticmethod
    def _add_hook(hooks: OrderedDict, with_kwargs_ids: set, hook: Callable, prepend: bool,
                  with_kwargs: bool) -> RemovableHandle:
        handle = RemovableHandle(hooks, hook)
        if prepend:
            hooks.move_to_end(handle.id, last=False)
        if with_kwargs:
            with_kwargs_ids.add(handle.id)
        return handle

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for hook_id, hook in list(self._forward_pre_hooks.items()):
            if hook_id in self._forward_pre_hooks_with_kwargs:
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError("forward pre-hook registered with with_kwargs=True must "
                                           f"return None or a tuple (args, kwargs), got {result!r}")
                    args, kwargs = result
            else:
                result = hook(self, args)
                if result is not None:
                    args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook_id, hook in list(self._forward_hooks.items()):
            if hook_id in self._forward_hooks_with_kwargs:
                result = hook(self, args, kwargs, output)
            else:
                result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ---- state dict --------------------------------------------------------------------
    def state_dict(self, *, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Tensor]:
        """An OrderedDict of every parameter and persistent buffer, by dotted name.

        Values are detached (they share storage with the module) unless ``keep_vars``.
        Shared tensors appear under every name, so the dict loads back into the same tree.
        """
        if destination is None:
            destination = OrderedDict()
        for name, value in self._named_members(_state_members, remove_duplicate=False):
            destination[prefix + name] = value if keep_vars else value.detach()
        return destination

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> _IncompatibleKeys:
        """Copy tensors from ``state_dict`` into this module's parameters and buffers, in place.

        Values convert to each parameter's dtype. Shape mismatches are always errors; with
        ``strict`` (default) missing and unexpected keys are too. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}")
        own = self.state_dict(keep_vars=True)
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        errors = []
        with no_grad():
            for key, target in own.items():
                if key not in state_dict:
                    continue
                source = state_dict[key]
                if not isinstance(source, Tensor):
                    errors.append(f'While copying the parameter named "{key}", expected graphc.Tensor '
                                  f"from checkpoint but received {type(source).__name__}")
                elif tuple(source.shape) != tuple(target.shape):
                    errors.append(f"size mismatch for {key}: copying a param with shape {source.shape} "
                                  f"from checkpoint, the shape in current model is {target.shape}.")
                else:
                    target.copy_(source)
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                self._get_name(), "\n\t".join(errors)))
        return _IncompatibleKeys(missing, unexpected)

    # ---- printing ----------------------------------------------------------------------
    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        """The part of the repr inside the parentheses (a layer's settings); override it."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _addindent(repr(module), 2)
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{self._get_name()}({body})"


def _state_members(module: Module) -> Iterator[tuple[str, Tensor | None]]:
    """A module's own state: its parameters, then its persistent buffers."""
    yield from module._parameters.items()
    for name, buf in module._buffers.items():
        if name not in module._non_persistent_buffers_set:
            yield name, buf


def _parse_to(args: tuple, kwargs: dict) -> tuple[dt.dtype | None, device | None]:
    """(dtype, device) from Module.to's spellings: positional dtype/device/tensor, or keywords."""
    unknown = set(kwargs) - {"dtype", "device", "non_blocking", "memory_format"}
    if unknown:
        raise TypeError(f"to() got unexpected keyword argument(s) {sorted(unknown)}")
    dtype, dev = kwargs.get("dtype"), kwargs.get("device")
    for arg in args:
        if isinstance(arg, Tensor):
            dtype, dev = arg.dtype, arg.device
        elif isinstance(arg, device) or isinstance(arg, str) and _device_name(arg):
            dev = arg
        elif isinstance(arg, bool):  # to(device, dtype, non_blocking)
            continue
        else:
            dtype = arg
    return (None if dtype is None else dt.as_dtype(dtype)), (None if dev is None else device(dev))


def _device_name(name: str) -> bool:
    return name.split(":")[0] in device._KNOWN
