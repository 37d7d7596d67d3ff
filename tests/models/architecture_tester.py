"""What every architecture module must declare truthfully, checked on its tiny model (as diffusers'
`ModelTesterMixin`): one test file per architecture subclasses `ArchitectureTester` and says which
architecture it tests; everything else is read from the module's declaration (`harness.models.registry`).
`PlantedSweepTester` adds the known answer through a whole sweep (job → Parquet → rank) for an architecture
that `tests/integration/test_known_answers.py` does not already sweep."""

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights

from harness.contribution import Contribution, Measurements
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


def plain_image(adapter, config: GenerationConfig, prompt: str, seed: int) -> np.ndarray:
    """The diffusers pipeline's own image for `prompt` and `seed`, called with strings as its users do."""
    plain = adapter.pipe(prompt, num_inference_steps=config.steps, guidance_scale=config.guidance_scale,
                         height=config.height, width=config.width, generator=torch.Generator().manual_seed(seed),
                         output_type="np", **adapter.plain_call_kwargs()).images
    return (np.asarray(plain) * 255).round().astype(np.uint8)[0]


class ArchitectureTester:
    """Shared specification of an architecture module. Subclasses set `arch`, and `planted` where the papers
    localized no layer on the architecture (the planted known answer then uses these sites)."""

    arch: str = ""
    batch_tolerance = 1e-5  # a row batched with others vs alone: GEMM rounding by batch size (float images)
    # The text sites planted in the known-answer tests, where no paper names a fixed layer of the architecture
    # (Zarei et al. localize per concept): `planted` (several, e.g. one per FLUX block kind) or `planted_label`
    # (one, also the sweep tester's); else the first text-reading paper layer.
    planted: tuple[str, ...] = ()
    planted_label: str | None = None
    empty_buffers = False  # build the full-size model with buffers on the meta device too (SD3's 384² pos-embed)

    def planted_labels(self) -> tuple[str, ...]:
        if self.planted or self.planted_label:
            return self.planted or (self.planted_label,)
        return tuple(label for label in self.declared.paper_sites if label.partition("#")[0] in TEXT_KINDS)[:1]

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
        if not self.declared.paper_sites:
            pytest.skip(f"no paper names a fixed layer of {self.declared.title}")
        table = tiny(self.arch).sites  # tiny models keep the real block structure and forward order
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
                adapter.generate(cond, negative, [0, 1], adapter.probe_steps, guidance, size, size, decode=False)
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
        assert np.array_equal(ours, plain_image(adapter, config, A, 3))

    # ---- attention contribution (attn_contrib): the declared reader and text sequence -------------------------
    def test_measuring_the_attention_contribution_leaves_the_image_the_plain_pipelines(self):
        adapter, config = tiny(self.arch), quick(tiny(self.arch))
        sites = tuple(text_sites(adapter))
        measured = Measurements({Sample(A, 3): Contribution("van gogh", sites)})
        ours = generate_rows(adapter, [Sample(A, 3)], config, measurements=measured)[0]
        assert np.array_equal(ours, plain_image(adapter, config, A, 3))
        values = measured.results[Sample(A, 3)]
        assert list(values) == list(sites) and all(v["attn_contrib"] > 0 for v in values.values())

    def test_the_attention_contribution_ranks_the_planted_site_first_and_reads_zero_elsewhere(self):
        for label in self.planted_labels():
            adapter = load_model(f"tiny:{self.arch}+planted={label}", "cpu")  # no other site's K/V reads the text
            sites = tuple(text_sites(adapter))
            measured = Measurements({Sample(A, 0): Contribution("van gogh", sites)})
            generate_rows(adapter, [Sample(A, 0)], quick(adapter), measurements=measured)
            values = {site: v["attn_contrib"] for site, v in measured.results[Sample(A, 0)].items()}
            assert [site for site, value in values.items() if value != 0] == [adapter.sites.resolve(label).name]
            assert max(values, key=values.get) == adapter.sites.resolve(label).name

    def test_the_attention_contribution_does_not_depend_on_the_batch(self):
        adapter = tiny(self.arch)
        sites = tuple(text_sites(adapter))
        alone = Measurements({Sample(A, 1): Contribution("van gogh", sites)})
        generate_rows(adapter, [Sample(A, 1)], quick(adapter), measurements=alone)
        batched = Measurements({Sample(B, 1): Contribution("red bicycle", sites[:2]),
                                Sample(A, 1): Contribution("van gogh", sites)})
        generate_rows(adapter, [Sample(B, 1), Sample(A, 2), Sample(A, 1)], quick(adapter), measurements=batched)
        for site in sites:
            for column, value in alone.results[Sample(A, 1)][site].items():
                assert batched.results[Sample(A, 1)][site][column] == pytest.approx(value, rel=1e-5), (site, column)

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

    def test_injection_equals_patching_from_a_donor_row(self):
        adapter = tiny(self.arch)
        if not adapter.kv_input_is_prompt_embeds:
            pytest.skip(f"{self.arch}: its text K/V are not a fixed function of the prompt; swaps patch from donors")
        sites = text_sites(adapter)
        chosen = [sites[0], sites[len(sites) // 2], sites[-1]]
        # K/V (and, where the text sites mask padding, the mask) computed from B's conditioning alone equal B's row
        rows = [Sample(B, 2), *(Sample(A, 2, swaps=(KVSwap((s,), B, mode=mode),)) for s in chosen
                                for mode in ("inject", "patch"))]
        images = generate_rows(adapter, rows, quick(adapter), as_float=True)[1:]
        for site, injected, patched in zip(chosen, images[0::2], images[1::2]):
            assert np.abs(injected - patched).max() < self.batch_tolerance, site

    def test_a_head_subset_swap_moves_the_text_mask_on_those_heads_only(self):
        if not tiny(self.arch).masks_text:
            pytest.skip(f"{self.arch}: its text sites attend to every text token (no padding mask to move)")
        adapter = load_model(f"tiny:{self.arch}", "cpu")  # its own copy: the test edits weights
        site = text_sites(adapter)[0]
        attn = adapter.module(site)
        width = attn.to_k.out_features // attn.heads
        with torch.no_grad():  # head 0's K/V no longer depend on the text: the same for A and B, at any mask
            for proj in adapter.kv_modules(site):
                proj.weight[:width] = 0
        rows = [Sample(A, 0), Sample(B, 0), Sample(A, 0, swaps=(KVSwap((site,), B, mode="patch", heads=(0,)),))]
        control, _, swapped = generate_rows(adapter, rows, quick(adapter), as_float=True)
        # so swapping head 0 is a no-op exactly when heads 1.. keep A's mask (B's padding differs from A's)
        assert np.abs(swapped - control).max() < self.batch_tolerance


class PlantedSweepTester:
    """The known answer through a whole sweep: on ``tiny:<arch>+planted=<label>`` LocoGen and P3's patching rank
    the planted block first, every other block at exactly 0 effect, for single blocks, windows, late step
    starts and head subsets. Steps and prompts are the fewest that give `loco rank` an interval."""

    arch: str = ""
    planted_label: str | None = None
    prompts = [{"prompt": "a house in the style of van gogh", "target": "a red bicycle on a beach",
                "attribute": "style", "concept": "van gogh"},
               {"prompt": "a photo of r2d2 in a street", "target": "a bowl of soup", "attribute": "object",
                "concept": "r2d2"}]

    def sweep(self, tmp_path, method: str, **extra):
        from harness.jobs import load_job
        from harness.sweep import run_sweep

        job = load_job({"name": f"planted-{self.arch}-{method}", "model": f"tiny:{self.arch}+planted={self.planted_label}",
                        "method": method, "sites": {"kind": "cross_attn"}, "prompts": self.prompts, "seeds": [0],
                        "steps": 3, **extra})
        return run_sweep(job, out=tmp_path / job.name, backend="local").run_dir

    @property
    def planted_index(self) -> int:
        return int(self.planted_label.partition("#")[2])

    @pytest.mark.parametrize("method", ["locogen", "attn_patch"])
    def test_the_planted_block_ranks_first_and_every_other_block_has_zero_effect(self, tmp_path, method):
        from analysis.rank import rank

        run_dir = self.sweep(tmp_path, method)
        ranking = rank(run_dir)
        assert ranking.sites[0].index == self.planted_index and ranking.sites[0].ci_low > 0
        per_site = variant_effects(run_dir)
        assert len(per_site) == self.declared_blocks() and all(v > 0 for v in per_site[self.planted_index])
        assert all(v == 0.0 for index, values in per_site.items() if index != self.planted_index for v in values)

    def test_windows_late_step_starts_and_head_subsets_keep_the_known_answer(self, tmp_path):
        from analysis.rank import rank

        run_dir = self.sweep(tmp_path, "attn_patch", window=3, step_start=[0, 2], heads=[0])
        sites = rank(run_dir).sites
        for site in sites:
            covers = site.window_start <= self.planted_index < site.window_start + 3
            assert (site.mean > 0) == covers, site
        assert {s.step_start for s in sites} == {0, 2}  # and both step starts were swept (the loop checked each)

    def declared_blocks(self) -> int:
        return registry.get(self.arch).tiny_sites["cross_attn"]


def variant_effects(run_dir, metric: str = "mse") -> dict[int, list[float]]:
    """Each variant site's effects (its metric against the control row), per prompt and seed."""
    import duckdb

    rows = duckdb.sql(f"SELECT site_index, list({metric}) FROM read_parquet('{run_dir}/results/**/*.parquet') "
                      "WHERE role = 'variant' GROUP BY site_index").fetchall()
    return dict(rows)


class KVEditTester:
    """The closed-form K/V edits on an architecture whose cross-attention reads a fixed per-prompt text
    (`kv_input`): LocoEdit maps the concept where the original mapped the target — on the vectors attn2 really
    reads, at the positions where the words really are —, UCE and TIME rewrite every cross-attention layer,
    and an edited model is a complete pipeline directory that loads with only the edited tensors changed."""

    arch: str = ""
    edit_label = "cross_attn#1"

    def test_locoedit_equals_a_least_squares_solve_and_maps_the_concept_where_the_target_was(self):
        # min ‖K Wᵀ − T Ŵᵀ‖² + λ‖W − Ŵ‖² is ordinary least squares on the stacked rows [K; √λ I] — K, T the
        # vectors attn2 reads at the concept's (target's) last token in each augmentation prompt, built here
        # from `kv_input` and the adapter's positions, not from the editor's own pairs.
        from harness.edit import locoedit
        from harness.edit.keys import kv_subject
        from harness.edit.spec import load_edit

        adapter, lam = tiny(self.arch), 1e-4
        site = adapter.sites.resolve(self.edit_label).name
        spec = load_edit({"model": f"tiny:{self.arch}", "method": "locoedit", "sites": [site], "lambda": lam,
                          "edits": [{"concept": "van gogh", "target": "painting"}]})
        new = locoedit.run(spec, adapter).new
        assert sorted(new) == [f"{site}.to_k.weight", f"{site}.to_v.weight"]

        def rows(words):
            prompts = [t.format(words) for t in spec.augmentations()]
            embeds = adapter.kv_input(adapter.encode(prompts)).double()
            return embeds[range(len(prompts)), [kv_subject(adapter, p, words) for p in prompts]]

        concept, target = rows("van gogh"), rows("painting")
        eye = torch.eye(concept.shape[1], dtype=torch.float64)
        for proj in ("to_k", "to_v"):
            old = getattr(adapter.module(site), proj).weight.detach().double()
            solved = torch.linalg.lstsq(torch.cat([concept, lam ** 0.5 * eye]),
                                        torch.cat([target @ old.T, lam ** 0.5 * old.T])).solution.T
            got = new[f"{site}.{proj}.weight"].double()
            torch.testing.assert_close(got, solved, rtol=1e-5, atol=1e-6)
            want = target @ old.T
            after = ((concept @ got.T - want).norm(dim=1) / want.norm(dim=1)).max()
            before = ((concept @ old.T - want).norm(dim=1) / want.norm(dim=1)).min()
            assert after < 0.02 and after < before / 10  # the edit had somewhere to go, and went there

    def test_uce_and_time_rewrite_every_cross_attention_layer(self):
        from harness.edit import time_edit, uce
        from harness.edit.spec import load_edit

        adapter, blocks = tiny(self.arch), len(tiny(self.arch).sites.of_kind("cross_attn"))
        erased = uce.run(load_edit({"model": f"tiny:{self.arch}", "method": "uce", "lambda": 1e-6,
                                    "edits": [{"concept": "van gogh", "target": "art"}]}), adapter)
        assert len(erased.new) == 2 * blocks
        assert all(r["edit_residual"] < r["edit_residual_before"] for r in erased.solves.values())
        timed = time_edit.run(load_edit({"model": f"tiny:{self.arch}", "method": "time",
                                         "edits": [{"concept": "roses", "target": "blue roses"}]}), adapter)
        assert len(timed.new) == blocks and all(n.endswith("attn2.to_v.weight") for n in timed.new)

    def test_an_edited_model_loads_with_only_the_edited_tensors_changed(self, tmp_path):
        from harness.edit.run import run_edit
        from harness.edit.spec import load_edit

        adapter = tiny(self.arch)
        site = adapter.sites.resolve(self.edit_label).name
        spec = load_edit({"model": f"tiny:{self.arch}", "method": "locoedit", "sites": [site],
                          "edits": [{"concept": "van gogh", "target": "painting"}]})
        manifest = run_edit(spec, tmp_path / "edited", adapter=adapter)
        edited = load_model(str(tmp_path / "edited"), "cpu")
        assert type(edited) is type(adapter)
        before, after = adapter.denoiser.state_dict(), edited.denoiser.state_dict()
        changed = sorted(f"transformer.{k}" for k in before if not torch.equal(before[k], after[k]))
        assert changed == [f"{site}.to_k.weight", f"{site}.to_v.weight"] == manifest["parameters"]
        assert torch.equal(adapter.encode([A])["prompt_embeds"], edited.encode([A])["prompt_embeds"])



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
