"""Install an inference-time edit (neurons, text_patch) on any diffusers pipeline, yours or the harness's.

    from diffusers import StableDiffusionXLPipeline
    from harness.edit.install import install_edit

    pipe = StableDiffusionXLPipeline.from_pretrained(...)
    handle = install_edit(pipe, "out/edit.yaml")   # hooks on the edited layers
    image = pipe("A sign that says \"DOG\"").images[0]
    handle.remove()                                 # the pipeline is as before

A job's ``edit: out/edit.yaml`` installs the same hooks on the worker's pipeline, and every result row
carries the edit's id. Nothing is written into the weights.

How the hooks find their rows, whatever the batch: *neurons* act on the conditional CFG half (the
pipelines batch [uncond × B, cond × B]) or on every row. *text_patch* wraps the pipeline's own
`encode_prompt`: when a prompt contains a trigger, it also encodes the patched prompt B and remembers the
pair (A's embedding, B's embedding); the K/V hooks then recompute K and V from B for every batch row
whose input equals a remembered A embedding, exactly — so it works for CFG, several images per prompt,
and prompts encoded long before the denoising call (the harness caches encodings). The denoising step
is read from the timestep the denoiser receives (step 0 = the scheduler's first timestep). Where the K/V do
not read the prompt embeddings, the architecture's adapter says how to patch (`install_text_patch`:
DeepFloyd IF swaps the projected text states a layer reads; SD3 refuses).

The hooks are named hooks of the engine the sweeps use (`harness.hooks`): ``handle.names()`` lists them
(``neurons/<site>.<projection>``, ``text_patch/<site>.to_k``, ``text_patch/encode_prompt``, ...).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import yaml

from harness.errors import UserError
from harness.hooks import Hooks

SPEC_FILE = "edit.yaml"


def supports_injection(arch: str) -> bool:
    """Whether a text patch can be installed on `arch`'s bare pipeline (its adapter's `installs_text_patch`)."""
    from harness.models import registry

    found = registry.get(arch)
    return found is not None and found.adapter.installs_text_patch


def write_spec(produced: dict, folder: Path, manifest: dict) -> dict:
    """The inference-time spec at `folder/edit.yaml` (what jobs and `install_edit` read)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"edit_id": manifest["edit_id"], "method": manifest["method"], "source_model": manifest["source_model"],
            "source_fingerprint": manifest["source_fingerprint"], **produced}
    (folder / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))
    manifest = dict(manifest, spec_file=SPEC_FILE, edit_seconds=produced.get("detect_seconds", 0.0))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def read_spec(source: str | Path | dict) -> dict:
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.is_dir():
        if (path / "loco_edit").is_dir():
            raise UserError(f"edit: '{path}' is a weight edit (an edited model); use it as model: {path}")
        path = path / SPEC_FILE
    if not path.is_file():
        raise UserError(f"edit: '{source}' does not exist (expected an {SPEC_FILE} written by loco edit)")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    from harness.edit.baselines import BASELINES

    if not isinstance(data, dict) or data.get("kind") not in ("neurons", "text_patch", *BASELINES):
        raise UserError(f"edit: '{path}' is not an inference-time edit spec (kind neurons, text_patch, "
                        f"{', '.join(BASELINES)})")
    return data


class EditHandle(Hooks):
    """The installed hooks (`harness.hooks`); `remove()` (or leaving a `with` block) restores the pipeline."""

    def __init__(self, pipe, spec: dict):
        super().__init__()
        self.pipe, self.spec = pipe, spec
        self.edit_id = spec.get("edit_id")


def find_module(pipe, name: str) -> torch.nn.Module:
    """The module a site name (``unet.up_blocks.0...attn2``) names in a bare pipeline."""
    component, _, path = name.partition(".")
    root = getattr(pipe, component, None)
    if root is None:
        raise UserError(f"edit: this pipeline has no component '{component}' (site '{name}')")
    try:
        return root.get_submodule(path)
    except AttributeError:
        raise UserError(f"edit: site '{name}' does not exist in this pipeline (edit made for another model?)") from None


def denoiser_of(pipe) -> torch.nn.Module:
    """The denoiser of a bare pipeline: the component its architecture's adapter names (`unet`, `transformer`)."""
    from harness.models import registry

    arch = registry.for_pipeline(type(pipe).__name__)
    if arch is not None:
        return getattr(pipe, arch.adapter.denoiser_name)
    return getattr(pipe, "unet", None) or pipe.transformer


def _cond_rows(pipe, batch: int) -> slice:
    """Rows of the conditional half under CFG ([uncond × B, cond × B]); every row without CFG."""
    cfg = getattr(pipe, "do_classifier_free_guidance", False)
    return slice(batch // 2, batch) if cfg and batch % 2 == 0 else slice(0, batch)


def _install_neurons(handle: EditHandle, spec: dict) -> None:
    pipe = handle.pipe
    for site, projections in spec["sites"].items():
        attn = find_module(pipe, site)
        for proj_name, entry in projections.items():
            proj = getattr(attn, proj_name)
            index = torch.tensor(entry["indices"])
            values = torch.tensor(entry["values"], dtype=torch.float64)
            if int(index.max()) >= proj.out_features:
                raise UserError(f"edit: neuron {int(index.max())} does not exist in {site}.{proj_name}")

            def hook(_m, _args, out, index=index, values=values):
                rows = _cond_rows(pipe, out.shape[0]) if spec.get("branch", "cond") == "cond" else slice(None)
                out[rows, ..., index.to(out.device)] = values.to(out.device, out.dtype)
                return out

            handle.forward(f"neurons/{site}.{proj_name}", proj, hook)


class _StepTracker:
    """The current denoising step, from the timestep the denoiser is called with."""

    def __init__(self, pipe):
        self.pipe, self.step = pipe, 0

    def __call__(self, _module, args, kwargs):
        t = args[1] if len(args) > 1 else kwargs.get("timestep")
        first = self.pipe.scheduler.timesteps[0]
        if t is not None and float(torch.as_tensor(t).flatten()[0]) == float(first):
            self.step = 0
        else:
            self.step += 1


def triggers(spec: dict) -> list[tuple[re.Pattern, str]]:
    """(pattern, replacement) pairs: a prompt matching any pattern is patched from its replaced version."""
    if "words_file" in spec:
        from harness.edit.text_patch import read_words

        words = read_words(spec["words_file"])
        return [(re.compile(rf"(?<!\w){re.escape(w)}(?!\w)", re.IGNORECASE), spec["replacement"]) for w in words]
    return [(re.compile(rf"(?<!\w){re.escape(s['concept'])}(?!\w)", re.IGNORECASE), s["target"])
            for s in spec["swaps"]]


def patched_prompt(prompt: str, rules) -> str | None:
    """The prompt B for prompt A, or None when no trigger occurs in A."""
    out = prompt
    for pattern, replacement in rules:
        out = pattern.sub(replacement, out)
    return None if out == prompt else out


def _install_text_patch(handle: EditHandle, spec: dict) -> None:
    from harness.models import registry

    pipe = handle.pipe
    denoiser = getattr(pipe, "transformer", None)
    arch = registry.for_pipeline(type(pipe).__name__, dict(denoiser.config) if denoiser is not None else None)
    if arch is None or not arch.adapter.installs_text_patch:
        able = [a.title for a in registry.architectures() if a.adapter.installs_text_patch]
        raise UserError(f"edit: text_patch installs on {', '.join(able[:-1])} and {able[-1]} pipelines (K/V "
                        f"injection), not {type(pipe).__name__}")
    rules = triggers(spec)
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (A embedding, B embedding), 77 × d each
    original = pipe.encode_prompt

    def encode_prompt(*args, **kwargs):
        out = original(*args, **kwargs)
        prompt = kwargs.get("prompt", args[0] if args else None)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        todo = [(i, patched_prompt(p, rules)) for i, p in enumerate(prompts)]
        todo = [(i, b) for i, b in todo if b is not None]
        if todo:
            embeds = out[0]
            per = embeds.shape[0] // len(prompts)
            b_kwargs = dict(kwargs)
            b_args = list(args)
            if "prompt" in b_kwargs:
                b_kwargs["prompt"] = [b for _, b in todo]
            else:
                b_args[0] = [b for _, b in todo]
            b_embeds = original(*b_args, **b_kwargs)[0]
            for j, (i, _) in enumerate(todo):
                for r in range(per):
                    pairs.append((embeds[i * per + r].detach().clone(), b_embeds[j * per + r].detach().clone()))
        return out

    handle.replace("text_patch/encode_prompt", pipe, "encode_prompt", encode_prompt)
    tracker = _StepTracker(pipe)
    handle.pre_forward("text_patch/step_tracker", denoiser_of(pipe), tracker, with_kwargs=True)
    arch.adapter.install_text_patch(handle, pipe, spec["sites"], pairs, tracker, int(spec.get("step_start", 0)))


def kv_text_patch(hooks: Hooks, pipe, sites: list[str], projections: tuple[str, ...], pairs: list, tracker,
                  step_start: int) -> None:
    """K and V of each site recomputed from B's embedding for every batch row that is A's, from
    `step_start` on: exact where the projections read the prompt embeddings (SD1.x/2.x, SDXL)."""
    for site in sites:
        attn = find_module(pipe, site)
        for proj_name in projections:
            def hook(m, args, out):
                if tracker.step < step_start or not pairs:
                    return out
                for row, b in rows_of_a(args[0], pairs).items():
                    out[row] = linear(m, b)
                return out

            hooks.forward(f"text_patch/{site}.{proj_name}", getattr(attn, proj_name), hook)


def rows_of_a(x: torch.Tensor, pairs: list) -> dict[int, torch.Tensor]:
    """Batch rows of `x` that are exactly a remembered A embedding, each with that A's B embedding."""
    found = {}
    for row in range(x.shape[0]):
        for a, b in pairs:
            if a.shape == x[row].shape and torch.equal(x[row], a.to(x.device, x.dtype)):
                found[row] = b.to(x.device)
                break
    return found


def linear(m: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`m` applied to `x` without firing `m`'s hooks (they are what calls this)."""
    return torch.nn.functional.linear(x.to(m.weight.dtype), m.weight, m.bias)


def install_edit(pipe, spec: str | Path | dict) -> EditHandle:
    """Install the edit described by `spec` (an ``edit.yaml``, its folder, or the dict) on `pipe`."""
    data = read_spec(spec)
    handle = EditHandle(pipe, data)
    try:
        from harness.edit.baselines import INSTALLERS

        installers = {"neurons": _install_neurons, "text_patch": _install_text_patch, **INSTALLERS}
        installers[data["kind"]](handle, data)
    except BaseException:
        handle.remove()
        raise
    return handle


def prepare_job_model(adapter, edit: str | None, model: str) -> str | None:
    """The worker's one call: install a job's inference-time `edit` on its pipeline, and return the id of
    the edit the rows carry (that edit's, or the weight edit's when `model` is an edited directory)."""
    if edit:
        return install_edit(adapter.pipe, edit).edit_id
    manifest = Path(model) / "loco_edit" / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text()).get("edit_id")
    return None
