"""The hook engine: every change loco makes to a running model — a sweep's interventions
(`harness.interventions`) and an inference-time edit (`harness.edit.install`) — is a *named* hook here.

Why one engine: an edit installed on a worker's pipeline and the sweep's own interventions act on the same
modules in the same forward pass; with one engine both are registered, listed and removed the same way, and
a reader finds what is attached to a model by asking (`Hooks.names()`), not by reading closures.

Names follow the site table (TransformerLens' ``blocks.6.attn.hook_z``; diffusers' hook registries keyed by
name): ``<what>/<module name>``, e.g. ``moves/unet.up_blocks.0.attentions.2.transformer_blocks.1.attn2.to_k``,
``text_patch/unet.encoder_hid_proj``, ``step_counter``. Each name holds one hook; `remove(name)` takes that
one off, `remove()` (or leaving a ``with`` block) takes every hook off, last registered first.

The hooks themselves are PyTorch's (`register_forward_hook`, `register_forward_pre_hook`): they work on any
`torch.nn.Module` — the diffusers denoiser and the transformers text encoders alike — and run in
registration order beside hooks other libraries add. A hook function has PyTorch's signatures:

    forward:              fn(module, args: tuple, output: Tensor | tuple) -> output | None
    forward (kwargs):     fn(module, args: tuple, kwargs: dict, output) -> output | None
    pre_forward:          fn(module, args: tuple) -> args | None
    pre_forward (kwargs): fn(module, args: tuple, kwargs: dict) -> (args, kwargs) | None
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch


class Hooks:
    """Named hooks on a model's modules, removed by name or all together (a context manager)."""

    def __init__(self):
        self._removers: dict[str, Callable[[], None]] = {}
        self._unnamed = 0  # hooks kept by `add` without a name: numbered hook#0, hook#1, ...

    # ---- registering ---------------------------------------------------------------------------------------
    def forward(self, name: str, module: torch.nn.Module, fn: Callable, with_kwargs: bool = False) -> str:
        """Run `fn` after `module`'s forward; a returned value replaces the output."""
        return self._keep(name, module.register_forward_hook(fn, with_kwargs=with_kwargs).remove)

    def pre_forward(self, name: str, module: torch.nn.Module, fn: Callable, with_kwargs: bool = False) -> str:
        """Run `fn` before `module`'s forward; a returned value replaces its inputs."""
        return self._keep(name, module.register_forward_pre_hook(fn, with_kwargs=with_kwargs).remove)

    def replace(self, name: str, owner: object, attribute: str, value: object) -> str:
        """Set the instance attribute `owner.attribute` to `value` (e.g. a wrapped ``pipe.encode_prompt``)
        until the hook is removed; then the previous instance attribute, or none, is back."""
        own = vars(owner)
        had, previous = attribute in own, own.get(attribute)
        setattr(owner, attribute, value)

        def restore():
            if had:
                setattr(owner, attribute, previous)
            else:
                delattr(owner, attribute)

        return self._keep(name, restore)

    def add(self, handle, name: str | None = None) -> str:
        """Keep a hook registered elsewhere (a PyTorch `RemovableHandle`) under `name` (default: numbered).
        Prefer `forward`/`pre_forward`, which name the hook where it is made."""
        if name is None:
            name, self._unnamed = f"hook#{self._unnamed}", self._unnamed + 1
        return self._keep(name, handle.remove)

    def _keep(self, name: str, remover: Callable[[], None]) -> str:
        if name in self._removers:
            remover()
            raise ValueError(f"hook '{name}' is already registered")
        self._removers[name] = remover
        return name

    # ---- inspecting and removing ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The hooks in place, in registration order."""
        return list(self._removers)

    def __contains__(self, name: str) -> bool:
        return name in self._removers

    def __len__(self) -> int:
        return len(self._removers)

    def remove(self, name: str | None = None) -> None:
        """Remove the hook `name`, or every hook (last registered first) when no name is given."""
        if name is None:
            for key in reversed(list(self._removers)):
                self._removers.pop(key)()
            return
        if name not in self._removers:
            close = difflib.get_close_matches(name, list(self._removers), n=1)
            raise KeyError(f"no hook '{name}'" + (f"; closest: {close[0]}" if close else ""))
        self._removers.pop(name)()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
