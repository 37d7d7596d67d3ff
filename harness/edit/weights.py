"""A weight edit's result: the old and new value of every edited parameter, with the solver's records.

Editors return an `EditResult`; `apply` writes it into a loaded pipeline, `delta` saves and reverts it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from harness.edit.solver import Solution, ridge_edit_shared


@dataclass
class EditResult:
    """`old`/`new`: parameter name (``unet.<path>.to_k.weight``) → tensor; `solves`: name → solver record."""

    old: dict[str, torch.Tensor] = field(default_factory=dict)
    new: dict[str, torch.Tensor] = field(default_factory=dict)
    solves: dict[str, dict] = field(default_factory=dict)
    extract_seconds: float = 0.0  # encoding prompts and gathering keys/values
    prior: dict | None = None  # a covariance prior's rank, size and ridge (`solver.covariance_prior`)

    def add(self, name: str, old: torch.Tensor, solution: Solution) -> None:
        self.old[name] = old.detach().clone()
        self.new[name] = solution.weight.detach().clone()
        self.solves[name] = solution.record()

    @property
    def solve_seconds(self) -> float:
        return sum(s["seconds"] for s in self.solves.values())

    @property
    def edit_seconds(self) -> float:
        """The edit's own time: keys and values extracted plus every solve (no model loading, no I/O)."""
        return self.extract_seconds + self.solve_seconds


def parameter(adapter, name: str) -> torch.nn.Parameter:
    component, _, path = name.partition(".")
    module_path, _, attr = path.rpartition(".")
    return getattr(adapter.components()[component].get_submodule(module_path), attr)


@torch.no_grad()
def apply(adapter, tensors: dict[str, torch.Tensor]) -> None:
    """Copy `tensors` (name → value) into the pipeline's parameters, in place."""
    for name, value in tensors.items():
        param = parameter(adapter, name)
        param.copy_(value.to(param.device, param.dtype))


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def edit_kv_projections(adapter, sites, keys: torch.Tensor, value_inputs: torch.Tensor, lambdas: dict[str, float],
                        result: EditResult, preserve: torch.Tensor | None = None, edit_scale: float = 1.0,
                        preserve_scale: float = 1.0, prior: torch.Tensor | None = None) -> EditResult:
    """Edit the K and/or V projection of every site: keys → W_old · value_inputs.

    `lambdas` maps ``to_k``/``to_v`` to its λ; a projection not in it is left alone (TIME without to_k).
    Projections with the same λ share one factorization (they share keys, preserve set and prior)."""
    groups: dict[float, list[tuple[str, torch.nn.Module]]] = {}
    for site in sites:
        k_proj, v_proj = adapter.kv_modules(site.name)
        for proj_name, proj in zip(adapter.kv_projection_names(site.name), (k_proj, v_proj)):
            role = "to_k" if proj is k_proj else "to_v"
            if role in lambdas:
                groups.setdefault(lambdas[role], []).append((f"{site.name}.{proj_name}.weight", proj))
    for lam, members in groups.items():
        weights = [proj.weight for _, proj in members]
        values = [value_inputs @ w.detach().to(torch.float64).T for w in weights]
        solutions = ridge_edit_shared(weights, keys, values, lam, preserve=preserve, edit_scale=edit_scale,
                                      preserve_scale=preserve_scale, prior=prior)
        for (name, _), weight, solution in zip(members, weights, solutions):
            result.add(name, weight, solution)
    return result
