"""Sites: every place an intervention can act, with one naming scheme across architectures.

A site's **name** is its dotted module path prefixed by the pipeline component that owns it
(``unet.up_blocks.1.attentions.1.transformer_blocks.0.attn2``, ``transformer.transformer_blocks.10.attn``,
``text_encoder.text_model.encoder.layers.0.self_attn``). Its **kind** says what it computes, and its
**index** is its position in *forward-call order* among the sites of that kind.

Why forward order and not name order: the papers number layers by when they run (P3's counter, LocoGen's
sorted list that only happens to match for single-digit indices). In SDXL ``up_blocks.0`` runs after
``mid_block``, and ``attentions.10`` sorts before ``attentions.2``. So the table is built by running the
pipeline once for one step with a hook on every candidate module and recording the order of first calls.

Kinds:
  cross_attn       UNet attention that reads text (SD/SDXL ``attn2``; IF's fused AttnAddedKV attentions)
  joint_attn       MM-DiT joint attention (SD3/SD3.5 blocks, FLUX's dual-stream blocks); its text side
                   (``add_k_proj``/``add_v_proj``) is the text path
  single_attn      FLUX single-stream attention over one joint sequence, text first (the first 512 T5 tokens,
                   then the image); the text slice of ``to_k``/``to_v`` is the text path. Its output is the
                   attention output of the whole sequence before the block's ``proj_out`` mixes it with the MLP
  self_attn        UNet self-attention (``attn1``; also SD3.5's image-only ``attn2``)
  ff               feed-forward of a transformer block (image stream)
  ff_context       MM-DiT feed-forward of the text stream
  resnet           UNet ResNet block
  block            a DiT's transformer block (PixArt, SANA): attention, cross-attention and feed-forward
                   inside one residual block
  text_self_attn   text-encoder self-attention sublayer (output before the residual add)
  text_mlp         text-encoder MLP sublayer (output before the residual add)

What a site's output holds, and so what restoring it means (P1 copies "a component's output"):
  state         the output already includes the residual: restoring it restores the whole hidden state
                there, so nothing of the corrupted run before the site survives it. ResNet blocks
                (``(shortcut(x) + conv2(...)) / output_scale_factor``), IF's AttnAddedKV attentions (their
                processor adds the input back) and a DiT's transformer blocks (``block``: each sublayer's
                output is added to the stream inside the block, and the block returns the stream) are of
                this kind.
  contribution  the output is what the sublayer adds to a residual stream that the enclosing block owns
                (``attn1``/``attn2``/``ff`` of a transformer block, MM-DiT joint attention and feed-forwards,
                the text encoders' self-attention and MLP sublayers): restoring it replaces the sublayer's
                contribution, while the corrupted stream it is added to stays.
At a *state* site the contribution can be restored too: it is the output of its residual branch's last
module (`Site.contribution`: ``conv2`` of a ResNet, ``to_out.0`` of an AttnAddedKV attention); a DiT block
has three residual branches, whose contributions are its ``self_attn``/``cross_attn``/``ff`` sites. At a
*contribution* site the state after it is computed inside the enclosing block and cannot be restored.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import asdict, dataclass

import torch

from harness.errors import UserError, did_you_mean

TEXT_KINDS = ("cross_attn", "joint_attn", "single_attn")
DENOISER_KINDS = ("cross_attn", "joint_attn", "single_attn", "self_attn", "ff", "ff_context", "resnet", "block")
TEXT_ENCODER_KINDS = ("text_self_attn", "text_mlp")
KINDS = DENOISER_KINDS + TEXT_ENCODER_KINDS
STATE, CONTRIBUTION = "state", "contribution"


class SiteError(UserError):
    """A site selector that matches nothing; the message names the closest real sites."""


@dataclass(frozen=True)
class Site:
    """One intervention site.

    `index` counts forward calls among sites of the same kind (for text-encoder sites: of the same kind
    in the same encoder, so ``text_encoder_2``'s layers are numbered from 0 as the encoder's own layers
    are); `forward_index` counts forward calls among all sites of the component (P1's one axis of 70 UNet
    components, 0..2L-1 over a text encoder's L layers × {self-attention, MLP}). `output` says whether
    the output is the hidden state or a contribution to it; `contribution` is the submodule whose output
    is the contribution at a state site (None at a contribution site).
    """

    name: str
    kind: str
    index: int
    component: str
    module_type: str
    params: int
    forward_index: int = 0
    output: str = CONTRIBUTION
    contribution: str | None = None

    @property
    def module_path(self) -> str:
        """The path inside the component (the name without the component prefix)."""
        return self.name[len(self.component) + 1 :]

    @property
    def label(self) -> str:
        """Short alias, e.g. ``cross_attn#55``; a text-encoder site of a second or third encoder carries the
        encoder's name (``text_encoder_2.text_self_attn#3``), as its index counts within that encoder."""
        prefix = f"{self.component}." if self.kind in TEXT_ENCODER_KINDS and self.component != "text_encoder" else ""
        return f"{prefix}{self.kind}#{self.index}"

    @property
    def restores(self) -> tuple[str, ...]:
        """What a restore at this site can copy from the clean run (see the module docstring)."""
        if self.output == STATE:
            return (STATE, CONTRIBUTION) if self.contribution else (STATE,)
        return (CONTRIBUTION,)

    def restore_module(self, what: str) -> str:
        """The module whose output is copied to restore `what` (``state`` or ``contribution``) here."""
        if what not in self.restores and self.output == STATE:
            raise SiteError(f"restore: '{self.name}' is a {self.kind} site with several residual branches; restore "
                            "its state (output), or a contribution at its self_attn, cross_attn or ff sites")
        if what not in self.restores:
            raise SiteError(f"restore: '{self.name}' is a {self.kind} site whose output is a contribution (the "
                            "residual is added outside it), so its state cannot be restored; use restore: "
                            "contribution or output")
        return f"{self.name}.{self.contribution}" if what != self.output else self.name


def output_semantics(kind: str, module: torch.nn.Module) -> tuple[str, str | None]:
    """(what the module's output holds, the submodule whose output is the contribution at a state site)."""
    if kind == "resnet":
        return STATE, "conv2"
    if kind == "block":
        return STATE, None
    processor = type(getattr(module, "processor", None)).__name__
    if kind in ("cross_attn", "self_attn") and (processor.startswith("AttnAddedKV")
                                                or getattr(module, "residual_connection", False)):
        return STATE, "to_out.0"
    return CONTRIBUTION, None


def classify(component: str, path: str, module: torch.nn.Module) -> str | None:
    """The kind of a module, or None when it is not a site."""
    cls = type(module).__name__
    leaf = path.rsplit(".", 1)[-1]
    if component.startswith("text_encoder"):
        if cls == "CLIPAttention" or (cls == "T5Attention" and leaf == "SelfAttention"):
            return "text_self_attn"
        if cls == "CLIPMLP" or (cls.startswith("T5Dense") and leaf == "DenseReluDense"):
            return "text_mlp"
        return None
    if cls == "Attention":
        if hasattr(module, "add_k_proj") and getattr(module, "add_k_proj", None) is not None:
            return "joint_attn" if component == "transformer" else "cross_attn"
        if leaf == "attn2":  # SD3.5's JointTransformerBlock.attn2 is an image-only self-attention
            return "cross_attn" if getattr(module, "is_cross_attention", True) else "self_attn"
        if leaf == "attn1":
            return "self_attn"
        return None
    if cls == "FeedForward":
        return "ff_context" if leaf == "ff_context" else "ff"
    if cls == "ResnetBlock2D":
        return "resnet"
    return None


class SiteTable:
    """All sites of one model, in forward order per kind; the job's selectors resolve against it."""

    def __init__(self, sites: list[Site]):
        self.sites = sites
        self._by_name = {s.name: s for s in sites}

    def __len__(self) -> int:
        return len(self.sites)

    def __getitem__(self, name: str) -> Site:
        if name not in self._by_name:
            raise SiteError(f"unknown site '{name}'{self.suggest(name)}")
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def resolve(self, name_or_label: str) -> Site:
        """A site by name or by its label (``kind#index``, ``text_encoder_2.text_mlp#3``)."""
        kind, sep, index = name_or_label.partition("#")
        if sep and index.isdigit():
            for site in self.sites:
                if site.label == name_or_label:
                    return site
            kind = kind.rpartition(".")[2]
            raise SiteError(f"no site '{name_or_label}'; this model has {kind} sites 0.."
                            f"{max(s.index for s in self.of_kind(kind))}" if self.of_kind(kind) else
                            f"no site '{name_or_label}': this model has no '{kind}' sites")
        return self[name_or_label]

    def of_kind(self, kind: str) -> list[Site]:
        """Sites of `kind` in forward order (text-encoder kinds: encoder by encoder)."""
        return [s for s in self.sites if s.kind == kind]

    def kinds(self) -> list[str]:
        return [k for k in KINDS if any(s.kind == k for s in self.sites)]

    def suggest(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._by_name), n=3, cutoff=0.5)
        return f"; closest: {', '.join(close)}" if close else ""

    def select(self, kinds: list[str] | None = None, indices: list[int] | None = None,
               names: list[str] | None = None) -> list[Site]:
        """Sites matching every given criterion, in (kind, forward index) order.

        `names` are exact names, globs (``unet.up_blocks.0.*``) or labels (``text_encoder_2.text_mlp#3``);
        `indices` are forward indices within the selected kind(s) (per encoder for text-encoder kinds).
        Unknown kinds, names and out-of-range indices raise SiteError.
        """
        pool = self.sites
        if kinds:
            for kind in kinds:
                if kind not in self.kinds():
                    raise SiteError(f"sites.kind: this model has no '{kind}' sites{did_you_mean(kind, self.kinds())}; "
                                    f"it has {', '.join(self.kinds())}")
            pool = [s for s in pool if s.kind in kinds]
        if names:
            chosen = []
            for pattern in names:
                hits = [s for s in pool if fnmatch.fnmatchcase(s.name, pattern) or s.label == pattern]
                if not hits:
                    raise SiteError(f"sites.names: no site matches '{pattern}'{self.suggest(pattern)}")
                chosen.extend(h for h in hits if h not in chosen)
            pool = chosen
        if indices is not None:
            available = {s.index for s in pool}
            missing = sorted(set(indices) - available)
            if missing:
                top = max(available) if available else -1
                raise SiteError(f"sites.index: {missing[0]} is out of range; this selection has indices "
                                f"0..{top}")
            pool = [s for s in pool if s.index in set(indices)]
        order = {k: i for i, k in enumerate(KINDS)}
        position = {s.name: i for i, s in enumerate(self.sites)}
        return sorted(pool, key=lambda s: (order[s.kind], position[s.name]))

    def to_records(self) -> list[dict]:
        return [asdict(s) | {"label": s.label} for s in self.sites]

    def format(self, kind: str | None = None) -> str:
        """A fixed-width table for the terminal."""
        rows = [s for s in self.sites if kind is None or s.kind == kind]
        width = max((len(s.name) for s in rows), default=4)
        lines = [f"{'kind':<15} {'index':>5} {'fwd':>4}  {'name':<{width}}  {'module':<22} {'output':<12} "
                 f"{'params':>12}"]
        lines += [f"{s.kind:<15} {s.index:>5} {s.forward_index:>4}  {s.name:<{width}}  {s.module_type:<22} "
                  f"{s.output:<12} {s.params:>12,}" for s in rows]
        return "\n".join(lines)


def discover(components: dict[str, torch.nn.Module], run_once, kind_of=classify) -> SiteTable:
    """Build the table: hook every candidate module of `components` (`kind_of(component, path, module)`: the
    architecture's classifier, default `classify`), call `run_once()` (one short generation), and number the
    sites in the order they were first called: per kind (per encoder for text-encoder kinds) and across all
    sites of a component (`forward_index`)."""
    candidates = []
    for component, root in components.items():
        for path, module in root.named_modules():
            kind = kind_of(component, path, module)
            if kind is not None:
                candidates.append((f"{component}.{path}", kind, component, module))
    calls: list[str] = []
    seen: set[str] = set()

    def recorder(name):
        def hook(_module, _args):
            if name not in seen:
                seen.add(name)
                calls.append(name)
        return hook

    handles = [module.register_forward_pre_hook(recorder(name)) for name, _, _, module in candidates]
    try:
        with torch.no_grad():
            run_once()
    finally:
        for handle in handles:
            handle.remove()
    info = {name: (kind, component, module) for name, kind, component, module in candidates}
    counters: dict[tuple[str, str], int] = {}
    forward: dict[str, int] = {}
    sites = []
    for name in calls:
        kind, component, module = info[name]
        key = (kind, component if kind in TEXT_ENCODER_KINDS else "")
        index = counters.get(key, 0)
        counters[key] = index + 1
        forward[component] = forward.get(component, -1) + 1
        output, contribution = output_semantics(kind, module)
        sites.append(Site(name=name, kind=kind, index=index, component=component,
                          module_type=type(module).__name__,
                          params=sum(p.numel() for p in module.parameters()), forward_index=forward[component],
                          output=output, contribution=contribution))
    return SiteTable(sites)
