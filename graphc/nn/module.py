"""``Module``: the base class of every layer and model (PyTorch's ``torch.nn.Module``).

A module owns three ordered registries, filled by plain attribute assignment:
``_parameters`` (``Parameter`` objects), ``_buffers`` (tensors that are state but not
learned, such as BatchNorm's running statistics) and ``_modules`` (sub-modules). Every
recursive query (``parameters``, ``buffers``, ``state_dict`` ...) is one walk over
``named_modules``; every conversion (``to``, ``double`` ...) is one ``_apply``.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict, namedtuple
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import dtype as dt
from ..autograd import no_grad
from ..autograd.graph import RemovableHandle
from ..tensor import Tensor, device
from ..utils.hooks import BackwardHook
from .parameter import Buffer, Parameter

_REGISTRIES = ("_parameters", "_buffers", "_modules")
_EXTRA_STATE_KEY_SUFFIX = "_extra_state"  # the state_dict key of get_extra_state()'s value
_HOOK_REGISTRIES = ("_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
                    "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                    "_load_state_dict_post_hooks")


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
    # the state-dict format version, saved in state_dict()._metadata; a subclass whose saved
    # state changes bumps it and reads local_metadata["version"] in _load_from_state_dict
    _version: int = 1
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
        for registry in _HOOK_REGISTRIES:
            set_(self, registry, OrderedDict())

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
        elif isinstance(value, Buffer):
            self._forget(name, keep="_buffers")
            self.register_buffer(name, Tensor._make(value._storage, value._shape, value._stride,
                                                    value._offset), persistent=value.persistent)
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
    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> Module:
        """Replace every parameter, gradient and buffer ``t`` of the tree (of this module
        alone without ``recurse``) by ``fn(t)``.

        Parameters keep their identity (optimizers hold them): their data is swapped in
        place with the ``data`` setter; buffers are replaced.
        """
        if recurse:
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

    def half(self) -> Module:
        """Cast floating-point parameters and buffers to float16 (ops compute in float32)."""
        return self.to(dt.float16)

    def bfloat16(self) -> Module:
        """Cast floating-point parameters and buffers to bfloat16 (ops compute in float32)."""
        return self.to(dt.bfloat16)

    def cuda(self, device=None) -> Module:
        """Always a ``DeviceError``: graphc runs on the CPU only (``graphc.cuda``)."""
        from ..tensor import unavailable

        unavailable("Module.cuda")

    def cpu(self) -> Module:
        """Move parameters and buffers to the cpu (they are there unless moved to meta)."""
        return self.to("cpu")

    def type(self, dst_type: dt.dtype | str) -> Module:
        """Cast every parameter and buffer to ``dst_type``, integer ones included (unlike
        ``to``): a dtype, a dtype name (``"float64"``) or a legacy tensor-type name
        (``"torch.DoubleTensor"``)."""
        dtype = _legacy_type(dst_type)
        return self._apply(lambda t: t.to(dtype))

    def to_empty(self, *, device: device | str | None, recurse: bool = True) -> Module:
        """Replace every parameter and buffer by an uninitialised tensor of the same shape
        and dtype on ``device`` (how a model built on the meta device gets real memory).

            >>> model = nn.Linear(4, 2, device="meta").to_empty(device="cpu")
        """
        from ..ops.functions import empty_like
        return self._apply(lambda t: empty_like(t, device=device), recurse=recurse)

    def share_memory(self) -> Module:
        """Return self. PyTorch moves the tensors to shared memory for worker processes;
        graphc's DataLoader loads in-process and graphc tensors are not sent to other
        processes, so there is nothing to move."""
        return self

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

    def register_full_backward_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """Run ``hook(module, grad_input, grad_output)`` when this module's input gradients
        are computed; a non-None result (a tuple as long as ``grad_input``) replaces them.

        ``grad_input`` has one entry per positional argument of the call (None for
        non-tensors, zeros for a tensor no gradient reached; keyword arguments are not
        seen), ``grad_output`` one per output (None where no gradient arrived). When no
        input requires grad the hook fires with the output gradients and ``grad_input`` all
        None; when no output requires grad it does not fire. Inputs and outputs pass through
        an identity node (``BackwardHookFunctionBackward``), so forward sees, and the caller
        gets, aliases of the tensors given.
        """
        return self._add_hook(self._backward_hooks, set(), hook, prepend, False)

    def register_full_backward_pre_hook(self, hook: Callable, prepend: bool = False) -> RemovableHandle:
        """Run ``hook(module, grad_output)`` when the gradients of this module's outputs are
        known, before they flow into the module; a non-None result replaces ``grad_output``."""
        return self._add_hook(self._backward_pre_hooks, set(), hook, prepend, False)

    def register_backward_hook(self, hook: Callable) -> RemovableHandle:
        """Deprecated in PyTorch in favour of ``register_full_backward_hook``; here it *is*
        that (PyTorch's old form reports the gradients of the last op inside the module,
        which depend on how forward was written)."""
        return self.register_full_backward_hook(hook)

    @staticmethod
    def _add_hook(hooks: OrderedDict, with_kwargs_ids: set, hook: Callable, prepend: bool,
                  with_kwargs: bool) -> RemovableHandle:
        handle = RemovableHandle(hooks, hook)
        if prepend:
            hooks.move_to_end(handle.id, last=False)
        if with_kwargs:
            with_kwargs_ids.add(handle.id)
        return handle

    def compile(self, **options: Any) -> None:
        """Compile this module's calls in place (``torch.nn.Module.compile``): from now on
        ``module(x)``, wherever it is called from (a ``generate()`` loop calling
        ``self(...)``, a parent model), runs through ``graphc.compile(module, **options)``.
        """
        from ..compiler import compile as compile_

        self.__dict__["_compiled_call"] = compile_(self, **options)
        self.__dict__["_in_compiled_call"] = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        compiled = self.__dict__.get("_compiled_call")
        if compiled is not None and not self.__dict__["_in_compiled_call"]:
            # the compiled call traces or falls back through this method: plain call then
            self.__dict__["_in_compiled_call"] = True
            try:
                return compiled(*args, **kwargs)
            finally:
                self.__dict__["_in_compiled_call"] = False
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
        backward_hook = None
        if self.__dict__.get("_backward_hooks") or self.__dict__.get("_backward_pre_hooks"):
            backward_hook = BackwardHook(self, list(self._backward_hooks.values()),
                                         list(self._backward_pre_hooks.values()))
            args = backward_hook.setup_input_hook(args)
        output = self.forward(*args, **kwargs)
        for hook_id, hook in list(self._forward_hooks.items()):
            if hook_id in self._forward_hooks_with_kwargs:
                result = hook(self, args, kwargs, output)
            else:
                result = hook(self, args, output)
            if result is not None:
                output = result
        if backward_hook is not None:
            output = backward_hook.setup_output_hook(output)
        return output

    # ---- state dict --------------------------------------------------------------------
    def state_dict(self, *args: Any, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Any]:
        """An OrderedDict of every parameter and persistent buffer, by dotted name.

        Values are detached (they share storage with the module) unless ``keep_vars``.
        Shared tensors appear under every name, so the dict loads back into the same tree.
        A module that defines ``get_extra_state`` adds its value under ``<prefix>_extra_state``.
        The dict's ``_metadata`` attribute maps each module's prefix (without the trailing
        dot) to ``{"version": module._version}``, which ``load_state_dict`` hands to
        ``_load_from_state_dict`` as ``local_metadata``.
        """
        if args:  # PyTorch's deprecated positional form: (destination, prefix, keep_vars)
            warnings.warn("Positional args are being deprecated, use kwargs instead.", FutureWarning,
                          stacklevel=2)
            destination = args[0] if destination is None else destination
            if len(args) > 1 and prefix == "":
                prefix = args[1]
            if len(args) > 2 and keep_vars is False:
                keep_vars = args[2]
        if destination is None:
            destination = OrderedDict()
            destination._metadata = OrderedDict()
        local_metadata = {"version": self._version}
        if hasattr(destination, "_metadata"):
            destination._metadata[prefix[:-1]] = local_metadata
        for hook in list(self._state_dict_pre_hooks.values()):
            hook(self, prefix, keep_vars)
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".",
                                  keep_vars=keep_vars)
        for hook in list(self._state_dict_hooks.values()):
            result = hook(self, destination, prefix, local_metadata)
            if getattr(hook, "_from_public_api", False):
                if result is not None:
                    raise RuntimeError("state_dict post-hook must return None")
            elif result is not None:
                destination = result
        return destination

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        """Put this module's own state (not its children's) into ``destination``; a subclass
        with state of another form overrides it."""
        for name, value in _state_members(self):
            if value is not None:
                destination[prefix + name] = value if keep_vars else value.detach()
        if _overrides(self, "get_extra_state"):
            destination[prefix + _EXTRA_STATE_KEY_SUFFIX] = self.get_extra_state()

    def get_extra_state(self) -> Any:
        """State beyond parameters and buffers, for ``state_dict``; override it together with
        ``set_extra_state`` (the value must be something ``graphc.save`` can store)."""
        raise RuntimeError("Reached a code path in Module.get_extra_state() that should never be "
                           "called: define get_extra_state() in the subclass to save extra state")

    def set_extra_state(self, state: Any) -> None:
        """Restore what ``get_extra_state`` returned (called by ``load_state_dict``)."""
        raise RuntimeError("Reached a code path in Module.set_extra_state() that should never be "
                           "called: define set_extra_state() in the subclass to load extra state")

    def _register_state_dict_hook(self, hook: Callable) -> RemovableHandle:
        """Run ``hook(module, state_dict, prefix, local_metadata)`` after this module's part
        of ``state_dict``; a returned dict replaces the destination (respected at the root)."""
        if getattr(hook, "_from_public_api", False):
            raise RuntimeError("Cannot register the same function as the state dict post hook that "
                               "was previously registered via register_state_dict_post_hook")
        return RemovableHandle(self._state_dict_hooks, hook)

    def register_state_dict_post_hook(self, hook: Callable) -> RemovableHandle:
        """Run ``hook(module, state_dict, prefix, local_metadata)`` after this module's part of
        ``state_dict``; it edits ``state_dict`` in place and returns None."""
        hook._from_public_api = True
        return RemovableHandle(self._state_dict_hooks, hook)

    def register_state_dict_pre_hook(self, hook: Callable) -> RemovableHandle:
        """Run ``hook(module, prefix, keep_vars)`` before this module's part of ``state_dict``."""
        return RemovableHandle(self._state_dict_pre_hooks, hook)

    def _register_load_state_dict_pre_hook(self, hook: Callable,
                                           with_module: bool = False) -> RemovableHandle:
        """Run ``hook(state_dict, prefix, local_metadata, strict, missing_keys,
        unexpected_keys, error_msgs)`` (``module`` first with ``with_module``) before this
        module loads its part; it may rename or convert keys of ``state_dict`` in place."""
        call = (lambda *args: hook(self, *args)) if with_module else hook
        return RemovableHandle(self._load_state_dict_pre_hooks, call)

    def register_load_state_dict_pre_hook(self, hook: Callable) -> RemovableHandle:
        """As ``_register_load_state_dict_pre_hook(hook, with_module=True)``: the hook is
        ``hook(module, state_dict, prefix, local_metadata, strict, missing_keys,
        unexpected_keys, error_msgs)``."""
        return self._register_load_state_dict_pre_hook(hook, with_module=True)

    def register_load_state_dict_post_hook(self, hook: Callable) -> RemovableHandle:
        """Run ``hook(module, incompatible_keys)`` after this module and its children loaded.

        ``incompatible_keys.missing_keys`` and ``.unexpected_keys`` are the lists
        ``load_state_dict`` reports: edit them in place (clearing both avoids the strict
        error). The hook must return None.
        """
        return RemovableHandle(self._load_state_dict_post_hooks, hook)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict,
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        """Load this module's own parameters and persistent buffers (not its children's)
        from the ``prefix + name`` keys of ``state_dict``; add to the three lists instead of
        raising.

        ``load_state_dict`` calls it once per module with that module's prefix; override it
        to read an older format (``local_metadata.get("version")``) or renamed keys, e.g.
        move ``state_dict[prefix + "w"]`` to ``prefix + "weight"`` and call super. With
        ``local_metadata["assign_to_params_buffers"]`` the tensors are taken as they are
        instead of copied in place.
        """
        for hook in list(self._load_state_dict_pre_hooks.values()):
            hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                 error_msgs)
        own = {name: value for name, value in _state_members(self) if value is not None}
        assign = local_metadata.get("assign_to_params_buffers", False)
        for name, target in own.items():
            key = prefix + name
            if key not in state_dict:
                if strict:
                    missing_keys.append(key)
                continue
            source = state_dict[key]
            if not isinstance(source, Tensor):
                error_msgs.append(f'While copying the parameter named "{key}", expected graphc.Tensor '
                                  f"from checkpoint but received {type(source).__name__}")
                continue
            if target.ndim == 0 and tuple(source.shape) == (1,):
                source = source[0]  # a 0-d value saved as one element
            if tuple(source.shape) != tuple(target.shape):
                error_msgs.append(f"size mismatch for {key}: copying a param with shape {source.shape} "
                                  f"from checkpoint, the shape in current model is {target.shape}.")
                continue
            try:
                with no_grad():
                    if assign:
                        self._assign(name, target, source)
                    else:
                        target.copy_(source)
            except Exception as ex:  # reported with the others, as PyTorch does
                error_msgs.append(f'While copying the parameter named "{key}", whose dimensions in '
                                  f"the model are {target.shape} and whose dimensions in the "
                                  f"checkpoint are {source.shape}, an exception occurred : {ex.args}.")
        extra_key = prefix + _EXTRA_STATE_KEY_SUFFIX
        if _overrides(self, "set_extra_state"):
            if extra_key in state_dict:
                self.set_extra_state(state_dict[extra_key])
            elif strict:
                missing_keys.append(extra_key)
        elif strict and extra_key in state_dict:
            unexpected_keys.append(extra_key)
        if strict:
            for key in state_dict:
                if not key.startswith(prefix) or key == extra_key:
                    continue
                head, dot, _ = key[len(prefix):].partition(".")
                if (head not in self._modules) if dot else (head not in own):
                    unexpected_keys.append(key)

    def _assign(self, name: str, target: Tensor, source: Tensor) -> None:
        """``load_state_dict(assign=True)``: ``source`` itself becomes the parameter or buffer
        (a Parameter where the old one was, keeping the old ``requires_grad``)."""
        if isinstance(target, Parameter):
            if isinstance(source, Parameter):
                source.requires_grad_(target.requires_grad)
            else:
                source = Parameter(source, requires_grad=target.requires_grad)
        setattr(self, name, source)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                        assign: bool = False) -> _IncompatibleKeys:
        """Copy tensors from ``state_dict`` into this module's parameters and buffers, in place.

        Values convert to each parameter's dtype. Shape mismatches are always errors; with
        ``strict`` (default) missing and unexpected keys are too. With ``assign=True`` the
        state dict's tensors become the module's (their dtype kept; parameters stay
        Parameters with their ``requires_grad``); build the optimizer afterwards. Every
        module loads its part through ``_load_from_state_dict`` (its prefix, its
        ``_metadata`` entry), children after parents. Returns ``(missing_keys,
        unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        missing: list[str] = []
        unexpected: list[str] = []
        errors: list[str] = []
        metadata = getattr(state_dict, "_metadata", None)
        state_dict = OrderedDict(state_dict)  # hooks and overrides may edit it; the caller's stays
        if metadata is not None:
            state_dict._metadata = metadata

        def load(module: Module, local: dict, prefix: str) -> None:
            local_metadata = {} if metadata is None else dict(metadata.get(prefix[:-1], {}))
            if assign:
                local_metadata["assign_to_params_buffers"] = True
            module._load_from_state_dict(local, prefix, local_metadata, True, missing, unexpected,
                                         errors)
            for name, child in module._modules.items():
                if child is not None:
                    child_prefix = prefix + name + "."
                    load(child, {k: v for k, v in local.items() if k.startswith(child_prefix)},
                         child_prefix)
            keys = _IncompatibleKeys(missing, unexpected)
            for hook in list(module._load_state_dict_post_hooks.values()):
                if hook(module, keys) is not None:
                    raise AssertionError("Hooks registered with register_load_state_dict_post_hook "
                                         "must return None; edit incompatible_keys in place instead")

        load(self, state_dict, "")
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)))
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in missing)))
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for {}:\n\t{}".format(
                type(self).__name__, "\n\t".join(errors)))
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


def _overrides(module: Module, method: str) -> bool:
    """Whether ``module``'s class defines ``method`` itself (not Module's default)."""
    return getattr(type(module), method) is not getattr(Module, method)


_LEGACY_TYPES = {"FloatTensor": dt.float32, "DoubleTensor": dt.float64, "LongTensor": dt.int64,
                 "IntTensor": dt.int32, "BoolTensor": dt.bool_}


def _legacy_type(dst_type: dt.dtype | str) -> dt.dtype:
    """A dtype from ``Module.type``'s argument (``"torch.DoubleTensor"`` spellings included)."""
    if isinstance(dst_type, str):
        name = dst_type.rpartition(".")[2]
        if name in _LEGACY_TYPES:
            return _LEGACY_TYPES[name]
    return dt.as_dtype(dst_type)
