"""What every architecture module must declare truthfully, checked on its tiny model (as diffusers'
`ModelTesterMixin`): one test file per architecture subclasses `ArchitectureTester` and says which
architecture it tests; everything else is read from the module's declaration (`harness.models.registry`)."""

import numpy as np
import torch
from accelerate import init_empty_weights

from harness.generate import generate_rows
from harness.interventions import KVSwap, Sample
from harness.models import GenerationConfig, load_model, registry
from harness.sites import STATE, TEXT_KINDS
from tests.conftest import tiny

A = "a house in the style of van gogh"
B = "a red bicycle leaning on a wall"


def quick(adapter) -> GenerationConfig:
    """Two steps at the site-discovery size: enough to compare images exactly, cheap on every architecture."""
    size = adapter.probe_size()
    return GenerationConfig(2, adapter.defaults.guidance_scale, size, size)


def text_sites(adapter) -> list[str]:
    return [s.name for kind in TEXT_KINDS for s in adapter.sites.of_kind(kind)]


def traced_counts(table) -> dict:
    """Site counts per kind as the plan tables write them (text-encoder kinds: one count per encoder)."""
    counts: dict = {}
    for site in table.sites:
        if site.kind.startswith("text_"):
            per = counts.setdefault(site.kind, {})
            per[site.component] = per.get(site.component, 0) + 1
        else:
            counts[site.kind] = counts.get(site.kind, 0) + 1
    return {k: tuple(v.values()) if isinstance(v, dict) else v for k, v in counts.items()}


def structural_counts(pipe, components: tuple[str, ...], kind_of) -> dict:
    """The same counts read from the modules' types alone (no forward pass: works on empty weights)."""
    counts: dict = {}
    for component in components:
        root = getattr(pipe, component, None)
        for path, module in (root.named_modules() if root is not None else []):
            kind = kind_of(component, path, module)
            if kind is not None and kind.startswith("text_"):
                counts.setdefault(kind, {}).setdefault(component, 0)
                counts[kind][component] += 1
            elif kind is not None:
                counts[kind] = counts.get(kind, 0) + 1
    return {k: tuple(v.values()) if isinstance(v, dict) else v for k, v in counts.items()}


class ArchitectureTester:
    """Shared specification of an architecture module. Subclasses set `arch`, and `planted` where the papers
    localized no layer on the architecture (the planted known answer then uses these sites)."""

    arch: str = ""
    batch_tolerance = 1e-5  # a row batched with others vs alone: GEMM rounding by batch size (float images)
    planted: tuple[str, ...] = ()  # site labels planted in the known-answer test (default: a paper layer)
    empty_buffers = False  # build the full-size model with buffers on the meta device too (SD3's 384² pos-embed)

    def planted_labels(self) -> tuple[str, ...]:
        paper = [label for label in self.declared.paper_sites if label.partition("#")[0] in TEXT_KINDS]
        return self.planted or tuple(paper[:1])

    @property
    def declared(self) -> registry.Architecture:
        return registry.get(self.arch)

    def test_the_registry_finds_it_by_name_pipeline_class_and_cost_variant(self):
        declared = self.declared
        assert declared is not None and declared.name == self.arch == declared.adapter.arch
        config = dict(tiny(self.arch).denoiser.config)  # a pipeline class shared by two: the config decides
        assert all(registry.for_pipeline(p, config) is declared for p in declared.pipelines)
        assert all(registry.for_variant(v) is declared for v in declared.costs)
        assert set(declared.hub_ids.values()) <= set(declared.costs)

    def test_tiny_loads_through_its_adapter(self):
        adapter = tiny(self.arch)
        assert type(adapter) is self.declared.adapter
        assert adapter.info.arch == self.arch and type(adapter.pipe).__name__ in self.declared.pipelines

    def test_the_plan_table_counts_the_sites_the_tiny_model_traces(self):
        assert traced_counts(tiny(self.arch).sites) == self.declared.tiny_sites

    def test_state_kinds_are_the_kinds_whose_output_holds_the_state(self):
        table = tiny(self.arch).sites  # `loco plan`'s stand-in tables mark these kinds' sites as state sites
        assert all((s.output == STATE) == (s.kind in self.declared.state_kinds) for s in table.sites)

    def test_the_papers_layers_are_the_modules_the_papers_name(self):
        table = tiny(self.arch).sites  # tiny models keep the real block structure and forward order
        if not self.declared.paper_sites:  # no paper localized a layer here: the planted sites stand in
            assert self.planted and all(table.resolve(label).kind in TEXT_KINDS for label in self.planted)
            return
        for label, name in self.declared.paper_sites.items():
            assert table.resolve(label).name == name, label

    def test_edit_defaults_select_sites_of_their_kind(self):
        table = tiny(self.arch).sites
        for group, (kind, indices) in self.declared.edit_sites.items():
            sites = table.select([kind], indices)
            assert sites and {s.kind for s in sites} == {kind}, group
            if indices is not None:
                assert sorted({s.index for s in sites}) == indices, group

    def test_text_enters_through_the_declared_kv_projections(self):
        adapter = tiny(self.arch)
        for site in text_sites(adapter):
            k, v = adapter.kv_modules(site)
            assert isinstance(k, torch.nn.Linear) and isinstance(v, torch.nn.Linear), site

    def test_a_guided_call_runs_the_declared_cfg_layout(self):
        adapter = tiny(self.arch)
        seen: list[int] = []

        def record(_module, args, kwargs):
            sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
            seen.append(sample.shape[0])

        handle = adapter.denoiser.register_forward_pre_hook(record, with_kwargs=True)
        size = adapter.probe_size()
        try:
            for guidance in (1.0, 4.0):
                cond = adapter.encode(["a photo", "a sign"])
                negative = adapter.encode_negative(2) if adapter.cfg_batch(guidance) else None
                adapter.generate(cond, negative, [0, 1], 1, guidance, size, size, decode=False)
        finally:
            handle.remove()
        assert seen[0] == 2 and seen[-1] == (4 if adapter.has_cfg_batch else 2)

    def test_the_full_size_builder_has_the_cost_tables_site_counts(self):
        if self.declared.fullsize is None:
            return
        with init_empty_weights(include_buffers=self.empty_buffers):  # the real configuration, no memory for weights
            pipe = self.declared.fullsize()
        adapter = self.declared.adapter
        counts = structural_counts(pipe, (adapter.denoiser_name, *adapter.text_encoder_names), adapter.site_kind)
        assert counts == self.declared.costs[self.declared.default_variant].sites

    def test_an_unintervened_row_is_the_plain_pipelines_image(self):
        adapter, config = tiny(self.arch), quick(tiny(self.arch))
        ours = generate_rows(adapter, [Sample(A, 3)], config)[0]
        plain = adapter.pipe(A, num_inference_steps=config.steps, guidance_scale=config.guidance_scale,
                             height=config.height, width=config.width, generator=torch.Generator().manual_seed(3),
                             output_type="np", **adapter.plain_call_kwargs()).images
        assert np.array_equal(ours, (np.asarray(plain) * 255).round().astype(np.uint8)[0])

    def test_a_batched_patch_equals_the_same_patch_run_alone(self):
        adapter = tiny(self.arch)
        sites = text_sites(adapter)
        variant = Sample(A, 1, swaps=(KVSwap((sites[len(sites) // 2],), B, mode="patch", branch="both"),))
        others = [Sample(A, 1, swaps=(KVSwap((s,), B, mode="patch"),)) for s in sites[:3]]
        batched = generate_rows(adapter, [Sample(A, 1), Sample(B, 1), *others, variant], quick(adapter), as_float=True)
        alone = generate_rows(adapter, [Sample(B, 1), variant], quick(adapter), as_float=True)
        assert np.abs(batched[-1] - alone[-1]).max() < self.batch_tolerance
        assert not np.array_equal(batched[-1], batched[0])  # and the patch does something

    def test_on_a_planted_model_only_the_planted_site_moves_the_image(self):
        for label in self.planted_labels():
            adapter = load_model(f"tiny:{self.arch}+planted={label}", "cpu")  # every other text path cut
            sites = text_sites(adapter)
            rows = [Sample(A, 0), *(Sample(A, 0, swaps=(KVSwap((s,), B, mode="patch", branch="both"),))
                                    for s in sites)]
            image_b, control, *patched = generate_rows(adapter, [Sample(B, 0), *rows], quick(adapter), as_float=True)
            moved = [site for site, image in zip(sites, patched) if not np.array_equal(image, control)]
            assert moved == [adapter.sites.resolve(label).name], label
            # and that site is the only way text reaches the image (`cut_pooled_text` cut the others): B's image
            assert np.array_equal(patched[sites.index(moved[0])], image_b), label


def refused_edit(arch: str, method: str, out) -> str:
    """The one-line message a closed-form edit on `arch`'s default layers is refused with (nothing written)."""
    from harness.edit.run import run_edit
    from harness.edit.spec import load_edit
    from harness.errors import UserError

    spec = load_edit({"model": f"tiny:{arch}", "method": method, "edits": [{"concept": "van gogh", "target": "painting"}]})
    try:
        run_edit(spec, out, adapter=tiny(arch))
    except UserError as err:
        assert "\n" not in str(err) and not out.exists()
        return str(err)
    raise AssertionError(f"{method} on {arch} was not refused")
