"""The worker: holds one model for a whole sweep and turns a work unit into result rows.

For each (prompt, seed) of the unit it binds the reference rows and the unit's variants to samples
(`harness.methods`), packs them into batches (`harness.run.packing`), generates each batch in one
denoising pass (`harness.generate`, halving the batch size for good on a GPU out-of-memory error),
scores every image against the control of its own batch (`harness.metrics`), and builds each row
with `harness.results.schema.build_row`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from harness.contribution import Measurements
from harness.generate import PromptCache, generate_rows
from harness.interventions import Sample
from harness.methods import Variant, get_method, references
from harness.metrics import ScoreBatch, build_scorers, score_all
from harness.metrics.text import quoted_text
from harness.models import load_model, resolve_device, set_reproducible
from harness.results import provenance
from harness.results.schema import build_row
from harness.run.packing import Comparison, pack
from harness.run.plan import WorkUnit
from harness.run.probe import choose_batch_size
from harness.run.scoring import UnitResult, finish_scores, needs_scoring_actors
from harness.validate import validate_job

log = logging.getLogger("loco")


class Worker:
    """Holds one model for a whole sweep and runs work units on it (in-process or as a Ray actor)."""

    def __init__(self, job, threads: int | None = None, score_heavy: bool = True):
        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(job.device)
        set_reproducible(job.reproducible, cpu=device == "cpu")
        self.job = job
        self.method = get_method(job.method)
        self.adapter = load_model(job.model, device, job.dtype)
        self.lora_id = None
        if job.lora:  # a fine-tune's adapter, fused into the weights before anything else sees them
            from harness.finetune.output import attach_lora

            self.lora_id = attach_lora(self.adapter, job.lora)
        from harness.edit.install import prepare_job_model

        self.edit_id = prepare_job_model(self.adapter, job.edit, job.model)  # an edit installed, or an edited model
        self.adapter.prepare_for_job(job)  # IF: the stage II that upsamples before scoring (P3)
        self.references = references(job)
        self.config = self.adapter.defaults.with_job(job)
        self.calls = self.adapter.denoiser_calls(self.config.steps)
        tokenizers = {name: (tok, self.adapter.max_text_length(name))
                      for name, (_, tok) in self.adapter.text_encoders().items()}
        # the checks `loco plan` runs against the model's shape (harness.validate), here on the model itself
        self.variants, self.warnings = validate_job(job, self.adapter.sites, self.calls, tokenizers,
                                                    self.adapter.pipeline_text)
        self.mode = self.method.resolve_mode(job, self.adapter)
        self.noise_std = self.method.noise_std(job, self.adapter)
        # Model-backed scorers are loaded here only when running in-process; otherwise ScoringWorker
        # actors hold them and this worker leaves their columns to them.
        self.scorers = build_scorers(job.metrics, job.scorers, heavy=False)
        self.heavy_scorers = build_scorers(job.metrics, job.scorers, heavy=True) if score_heavy else []
        self.defers_scores = not score_heavy and needs_scoring_actors(job)
        self.prompt_ids = job.prompt_ids()
        self.cache = PromptCache(self.adapter)
        self.batch_size = choose_batch_size(job, self.adapter, self.config)
        info = self.adapter.info
        self.run_part = {"run_id": job.name, "job_name": job.name, "job_fingerprint": job.fingerprint(),
                         "method": job.method, "edit_id": self.edit_id, "lora_id": self.lora_id,
                         **provenance.versions(),
                         "model_id": info.model_id,
                         "model_arch": self.adapter.arch, "model_revision": info.revision,
                         "model_fingerprint": info.fingerprint, "dtype": info.dtype, "device": info.device,
                         "device_name": provenance.device_name(info.device), "worker": provenance.worker_name(),
                         "ray_node": provenance.ray_node(), **self.adapter.run_columns()}
        self.sampler_part = {"steps": self.config.steps, "guidance_scale": self.config.guidance_scale,
                             "height": self.config.height, "width": self.config.width,
                             **self.adapter.scored_columns(self.config)}

    def describe(self) -> dict:
        """What the driver needs before dispatching: the site table, the plan and the model's identity."""
        return {"sites": self.adapter.sites.to_records(), "variants": self.variants,
                "model": self.adapter.info, "config": self.config, "mode": self.mode,
                "batch_size": self.batch_size, "static": self.run_part, "warnings": self.warnings}

    # ---- one unit ----------------------------------------------------------------------------------
    def run_unit(self, unit: WorkUnit) -> UnitResult:
        start = time.perf_counter()
        # The reference rows are written by the first variant chunk of a prompt shard only; the others
        # still generate the control (and donors) their rows are measured against, in their own batches.
        refs = self.references if unit.variant_indices[0] == 0 else []
        entries = []  # (prompt index, seed, variant, sample)
        variants = [self.variants[i] for i in unit.variant_indices]
        measurements = Measurements()  # what a measuring method (attn_contrib) reads while generating
        for p in unit.prompt_indices:
            prompt = self.job.prompts[p]
            measure = self.method.measurement(self.job, prompt, variants)
            for seed in unit.seeds:
                for variant in [*refs, *variants]:
                    sample = self.method.bind(variant, self.job, prompt, seed, self.mode)
                    entries.append((p, seed, variant, sample))
                    if measure is not None and variant.role == "variant":
                        measurements.requests[sample] = measure
        items = [Comparison(sample, Sample(self.job.prompts[p].prompt, seed)) for p, seed, _, sample in entries]
        done = self._generate(items, measurements)
        t0 = time.perf_counter()
        batch = self._score_batch(entries, [done[item] for item in items])
        metrics = score_all(self.scorers, batch)
        score_seconds = (time.perf_counter() - t0) / max(1, len(entries))
        rows, saved = [], {}
        for i, ((p, seed, variant, sample), item) in enumerate(zip(entries, items)):
            image, _, seconds, batch_rows = done[item]
            row_id = f"{self.prompt_ids[p]}-s{seed}-{variant.key}".replace("/", "_")
            image_path = None
            if self.job.save_images:
                saved[row_id] = image
                image_path = f"images/{unit.unit_id}/{row_id}.png"
            rows.append(build_row(
                run=self.run_part,
                ids={"unit_id": unit.unit_id, "row_id": row_id, "created_at": provenance.now(),
                     "image_path": image_path},
                design=self._design(variant), prompt=self._prompt_part(p, seed), sampler=self.sampler_part,
                timing={"gen_seconds": seconds, "score_seconds": score_seconds, "batch_rows": batch_rows},
                metrics={k: v[i] for k, v in metrics.items()}
                | self.method.measured_columns(variant, measurements.results.get(sample))))
        result = UnitResult(unit.unit_id, rows, saved, time.perf_counter() - start, pending=batch)
        return result if self.defers_scores else finish_scores(result, self.heavy_scorers)

    def _generate(self, items: list[Comparison], measurements: Measurements | None = None,
                  ) -> dict[Comparison, tuple[np.ndarray, np.ndarray, float, int]]:
        """(image, control image of the same batch, seconds per row, batch rows) for every item; what a
        measuring method asked for goes into `measurements.results`."""
        done: dict[Comparison, tuple[np.ndarray, np.ndarray, float, int]] = {}
        pending = list(dict.fromkeys(items))
        batches = pack(pending, self.batch_size)
        while batches:
            batch = batches.pop(0)
            t0 = time.perf_counter()
            try:
                out = generate_rows(self.adapter, batch, self.config, self.cache, measurements=measurements)
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)  # kept for the units still to come
                torch.cuda.empty_cache()
                log.warning("out of memory; batch size lowered to %d", self.batch_size)
                batches = pack(pending, self.batch_size)
                continue
            per_row = (time.perf_counter() - t0) / len(batch)
            images = dict(zip(batch, out))
            for item in pending:
                if item.sample in images and item.control in images:
                    done[item] = (images[item.sample], images[item.control], per_row, len(batch))
            pending = [j for j in pending if j not in done]
        return done

    def _score_batch(self, entries, generated) -> ScoreBatch:
        """Every row — references included — is scored against the same texts: its pair's prompt A and
        text A (`*_prompt`, `*_text` columns) and prompt B and text B (`*_target`). The target row is then
        P3's "swap everything" upper bound on the `*_target` metrics."""
        prompts = [self.job.prompts[p] for p, _, _, _ in entries]
        return ScoreBatch(
            images=np.stack([g[0] for g in generated]),
            references=np.stack([g[1] for g in generated]),
            prompts=[pr.prompt for pr in prompts],
            targets=[pr.target for pr in prompts],
            texts=[text_of(pr, False) for pr in prompts],
            target_texts=[text_of(pr, True) for pr in prompts],
            attributes=[pr.attribute for pr in prompts],
        )

    def _design(self, variant: Variant) -> dict:
        """The row's design columns: the variant, then what its method records about it."""
        is_variant = variant.role == "variant"
        first = self.adapter.sites[variant.sites[0]] if variant.sites else None
        return {"role": variant.role, "variant": variant.label, "site": variant.site, "sites": list(variant.sites),
                "kind": variant.kind, "site_index": variant.indices[0] if variant.indices else None,
                "forward_index": first.forward_index if first else None, "noise_std": self.noise_std,
                "indices": list(variant.indices), "window_start": variant.window_start,
                "window_size": variant.window_size if variant.sites else None, "position": variant.position,
                "branch": self.method.applied_branch(self.job, self.mode) if is_variant else None,
                **self.method.design(variant, self.job, self.calls, self.mode)}

    def _prompt_part(self, p: int, seed: int) -> dict:
        prompt = self.job.prompts[p]
        return {"prompt_id": self.prompt_ids[p], "prompt": prompt.prompt, "target": prompt.target,
                "attribute": prompt.attribute, "concept": prompt.concept, "text": text_of(prompt, False),
                "target_text": text_of(prompt, True), "seed": seed}


def text_of(prompt, target: bool) -> str | None:
    """The text a P3 prompt asks to render: given explicitly, else the quoted part of the prompt."""
    if target:
        return prompt.target_text or (quoted_text(prompt.target) if prompt.target else None)
    return prompt.text or quoted_text(prompt.prompt)
