"""Which layers an edit touches: `sites` or a candidates file, checked against what each method can edit.

Defaults are the papers' layers (docs/methods.md §2.2, §3.2, §4.4), declared by each architecture's module
(`Architecture.edit_sites`, by method group): LocoEdit and neuron edits on SD1.x/2.x cross-attention layers
8–9 (P2's style window; `up_blocks.1.attentions.{1,2}`), on SDXL 45–47 (P2's window start 45, the blog's
"45–48"); UCE and TIME on every cross-attention layer; DiffQuickFix on the first text encoder's layer-0
self-attention; text patching on SDXL 55–57, IF 17, SD3 joint block 10 (P3).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from harness.errors import UserError, did_you_mean
from harness.sites import TEXT_KINDS, Site


def __getattr__(name: str):
    """Compatibility view: `DEFAULT_INDICES` ((group, arch) -> (kind, indices)) moved to the architectures."""
    if name == "DEFAULT_INDICES":
        from harness.models import registry

        return {(group, a.name): where for a in registry.architectures() for group, where in a.edit_sites.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


GROUP = {"locoedit": "window", "neurons": "window", "uce": "all", "time": "all", "diffquickfix": "text",
         "text_patch": "patch"}


class EditSiteError(UserError):
    """A site the method cannot edit, or a candidates file that does not fit the model."""


def read_candidates(path: str, spec, adapter) -> list[str]:
    """Site names from a `loco candidates` file (``loco-candidates/1``: ``{model: {id, fingerprint}, sets:
    [{attribute, concept, sites: [...]}, ...]}``; also ``model: ID`` and ``candidates:`` for ``sets``).
    The file must be for this model (same id, or same fingerprint)."""
    file = Path(path)
    if not file.is_file():
        raise EditSiteError(f"candidates: file '{path}' does not exist")
    try:
        data = (json.loads if file.suffix == ".json" else yaml.safe_load)(file.read_text(encoding="utf-8"))
    except (ValueError, yaml.YAMLError):
        raise EditSiteError(f"candidates: '{path}' is not valid YAML/JSON") from None
    if not isinstance(data, dict):
        raise EditSiteError(f"candidates: '{path}' is not a candidates file (expected a mapping)")
    made_for, fingerprint = data.get("model"), data.get("model_fingerprint")
    if isinstance(made_for, dict):  # loco-candidates/1 (analysis/candidates.py): model: {id, fingerprint, arch}
        made_for, fingerprint = made_for.get("id"), made_for.get("fingerprint")
    if made_for != spec.model and (fingerprint is None or fingerprint != adapter.info.fingerprint):
        raise EditSiteError(f"candidates: '{path}' was made for model '{made_for}', not '{spec.model}'")
    sets = data.get("candidates", data.get("sets"))
    if isinstance(sets, dict):
        sets = [{"attribute": k, **(v if isinstance(v, dict) else {"sites": v})} for k, v in sets.items()]
    if not isinstance(sets, list) or not sets:
        raise EditSiteError(f"candidates: '{path}' holds no candidate sets")
    if spec.candidate is None:
        chosen = sets[0]
    else:
        names = [str(s.get("attribute")) for s in sets] + [str(s.get("concept")) for s in sets if s.get("concept")]
        chosen = next((s for s in sets if spec.candidate in (s.get("attribute"), s.get("concept"))), None)
        if chosen is None:
            raise EditSiteError(f"candidate: no set '{spec.candidate}' in '{path}'{did_you_mean(spec.candidate, names)}")
    sites = chosen.get("sites")
    if not sites:
        raise EditSiteError(f"candidates: the chosen set in '{path}' lists no sites")
    return [s if isinstance(s, str) else s["site"] for s in sites]


def resolve_sites(spec, adapter) -> list[Site]:
    """The sites `spec` edits, each checked for the method."""
    table = adapter.sites
    if spec.candidates:
        sites = [table.resolve(name) for name in read_candidates(spec.candidates, spec, adapter)]
    elif spec.sites is not None:
        sel = spec.sites
        sites = table.select(sel.kind, sel.index, sel.names)
    else:
        from harness.models import registry

        defaults = registry.get(adapter.arch).edit_sites
        if GROUP[spec.method] not in defaults:
            refuse_architecture(spec.method, adapter)
            raise EditSiteError(f"sites: method '{spec.method}' has no default layers for {adapter.arch} "
                                "models; name them with sites: (e.g. {kind: cross_attn, index: \"8-9\"})")
        kind, indices = defaults[GROUP[spec.method]]
        sites = table.select([kind], indices)
        if kind.startswith("text_"):  # text-encoder layers count per encoder: the default is the first's (CLIP-L)
            sites = [s for s in sites if s.component == "text_encoder"]
    for site in sites:
        check_site(spec.method, site, adapter)
    if not sites:
        raise EditSiteError("sites: the selection is empty")
    return sites


CLOSED_FORM = ("locoedit", "uce", "time", "neurons")  # rewrite to_k/to_v of layers that read the prompt embeddings
WHY_NOT = {  # why a text-reading site has no fixed text K/V for a closed-form edit to rewrite
    "joint_attn": "joint attention (SD3/SD3.5, FLUX's dual-stream blocks) has no fixed text K/V to rewrite: its "
                  "text stream changes block to block",
    "single_attn": "FLUX's single-stream attention projects text and image with the same to_k/to_v, from a text "
                   "stream that changes block to block",
    "cross_attn": "its K/V projections read per-layer projected text, not the prompt embeddings",
}


def refuse_architecture(method: str, adapter) -> None:
    """A one-line refusal when `method` is a closed-form K/V edit and the model has no layer it can rewrite."""
    if method not in CLOSED_FORM or (adapter.kv_input_is_prompt_embeds and adapter.sites.of_kind("cross_attn")):
        return
    from harness.models import registry

    kinds = [k for k in WHY_NOT if adapter.sites.of_kind(k)]
    title = registry.get(adapter.arch).title
    raise EditSiteError(f"edit: {method} cannot edit {title} models: it rewrites to_k/to_v of cross-attention "
                        f"layers that read the prompt embeddings (SD1.x/2.x, SDXL), and {title} has none — "
                        + "; ".join(WHY_NOT[k] for k in kinds) + " (use attn_patch / text_patch through loco sweep)")


def check_site(method: str, site: Site, adapter) -> None:
    if method in CLOSED_FORM:
        if site.kind != "cross_attn" or not adapter.kv_input_is_prompt_embeds:
            why = WHY_NOT.get(site.kind, "it is not a cross-attention layer")
            raise EditSiteError(f"sites: {method} cannot edit '{site.name}' ({site.label}): it rewrites to_k/"
                                f"to_v of cross-attention layers that read a fixed per-prompt text (SD1.x/2.x, "
                                f"SDXL, PixArt, SANA), and {why}")
    elif method == "diffquickfix":
        module = adapter.module(site.name)
        if site.kind != "text_self_attn" or not hasattr(module, "out_proj"):
            raise EditSiteError(f"sites: diffquickfix cannot edit '{site.name}' ({site.label}): it edits the "
                                "output projection (out_proj) of a CLIP text-encoder self-attention "
                                "(default text_self_attn#0)")
    elif method == "text_patch" and site.kind not in TEXT_KINDS:
        raise EditSiteError(f"sites: text_patch cannot patch '{site.name}' ({site.label}): it patches "
                            f"text-reading attention layers ({', '.join(TEXT_KINDS)})")
