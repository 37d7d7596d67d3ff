"""Text editing and toxic-text prevention (P3, docs/methods.md §3.3, §3.7, §7.5).

P3 finds that rendered text enters the image through very few attention layers (SDXL cross-attention
55–57, IF 17, SD3 joint block 10). Editing the text is then free at inference: while generating prompt A,
those layers' text-side K and V are computed from a target prompt B from denoising step `step_start` on
(SDXL 4, IF 2, SD3 2 by default; toxic prevention 0 on SD3), the rest of the model still sees A, so
layout and style stay those of A.

* **Text edit**: `edits: [{concept: "DOG", target: "CAT"}]` — a prompt that contains the concept gets B =
  the prompt with the concept replaced by the target.
* **Toxic-text prevention**: `words_file:` a user's own word list (one word or phrase per line; loco ships
  none), `replacement:` a benign word — any prompt containing a listed word is patched from the prompt
  with every listed word replaced.

This module only decides the spec (layers, step, triggers); `harness.edit.install` carries it out on a
pipeline. The spec references the word list by path and hash rather than copying its words.
"""

from __future__ import annotations

from pathlib import Path

from harness.edit.delta import sha256
from harness.edit.targets import resolve_sites
from harness.errors import UserError


def __getattr__(name: str):
    """Compatibility view: `STEP_START` (arch -> P3's edit step_start) moved to the architectures."""
    if name == "STEP_START":
        from harness.models import registry

        return {a.name: a.text_patch_step_start for a in registry.architectures()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def read_words(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"words_file: '{path}' does not exist")
    words = [w.strip() for w in file.read_text(encoding="utf-8").splitlines() if w.strip() and not w.startswith("#")]
    if not words:
        raise UserError(f"words_file: '{path}' lists no words")
    return words


def run(spec, adapter) -> dict:
    from harness.edit.install import supports_injection

    if not supports_injection(adapter.arch):
        raise UserError(f"text_patch: installing on {adapter.arch} is not supported: its text-side K/V read "
                        "per-layer text (SD3's joint blocks update the text stream), so P3 patches them from a "
                        "donor run; use `loco sweep` with method attn_patch (target prompts, step_start) for this "
                        "model")
    sites = resolve_sites(spec, adapter)
    out = {"kind": "text_patch", "sites": [s.name for s in sites],
           "step_start": spec.step_start if spec.step_start is not None else _default_step_start(adapter.arch)}
    if spec.words_file:
        read_words(spec.words_file)  # fail now, not at install time
        out |= {"words_file": spec.words_file, "words_sha256": sha256(Path(spec.words_file)),
                "replacement": spec.replacement}
    else:
        out["swaps"] = [{"concept": e.concept, "target": e.target} for e in spec.edits]
    return out


def _default_step_start(arch: str) -> int:
    """P3's text-edit step_start for `arch` (t_s = steps − step_start), as its module declares."""
    from harness.models import registry

    return registry.get(arch).text_patch_step_start
