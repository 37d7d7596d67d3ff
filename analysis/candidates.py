"""Candidate layer sets: the file that carries a localization's answer to the editors.

`loco candidates RUN_DIR... [--out FILE]` ranks every attribute (and concept) of the runs under the
paper's rule (`analysis.selection`) and writes one set of sites per group, with its evidence. The
format is YAML (or JSON when FILE ends in .json), version ``loco-candidates/1``::

    format: loco-candidates/1
    model: {id: tiny:sd15, fingerprint: 3f2a..., arch: sd15}   # edits on another model are refused
    runs: [{run: demo, path: runs/demo, method: locogen, job_fingerprint: ...}]
    sets:
      - attribute: style          # the papers' category
        concept: van gogh         # the words that carry it; null = every concept of the attribute
        method: locogen
        rule: "locogen/style: lowest clip_t_prompt (mean), paired with control rows [P2 §2.1: ...]"
        metric: clip_t_prompt
        kind: cross_attn
        sites: [unet.up_blocks.1.attentions.1.transformer_blocks.0.attn2]   # what an edit should touch
        indices: [8]
        separated: true           # false: the runner-up is as good; look at `evidence` before editing
        status: selected          # or why `sites` is empty: "nothing distinguishable from 0", "one prompt",
                                  # "constant metric", "corruption ineffective"
        n_prompts: 12             # the prompts behind every interval (none with 1; a warning below 10)
        warning: null
        threshold: null           # causal tracing: {value, how, validation_prompts, test_prompts}
        corruption: null          # causal tracing: {metric, clean, clean_ci_low, clean_ci_high, corrupted, effective}
        evidence:                 # the strongest variants, best first
          - {variant: cross_attn#8, sites: [...], value: 0.61, reference: 0.83, effect: -0.22,
             ci_low: -0.25, ci_high: -0.19, p_top: 0.97, n_prompts: 12, selected: true}

A set holds only variants whose effect is distinguishable from 0 (`analysis.choose`): `sites` may be
empty, and `warning` then says why. `load_candidates(path, model_fingerprint=...)` reads it back for `loco edit`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from analysis.agreement import agreement_table
from analysis.effects import GroupRanking, rank_run
from analysis.intervals import N_BOOT
from analysis.runs import AnalysisError, Run, open_runs, require_results
from harness.results import provenance

FORMAT = "loco-candidates/1"
EVIDENCE_FIELDS = ("variant", "sites", "indices", "value", "reference", "effect", "ci_low", "ci_high", "p_top",
                   "n_prompts", "selected")


class CandidateSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attribute: str | None
    concept: str | None
    method: str
    rule: str
    metric: str
    kind: str | None
    sites: list[str]
    indices: list[int]
    separated: bool
    status: str = "selected"
    n_prompts: int | None = None
    warning: str | None = None
    threshold: dict | None = None
    corruption: dict | None = None
    evidence: list[dict]
    minimal: dict | None = None  # with --minimal-set: the smallest top-ranked set reaching a share of the all-layer effect


class CandidatesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str
    created_at: str | None = None
    model: dict
    runs: list[dict]
    sets: list[CandidateSet]
    # runs of different methods, per attribute and concept, on their common prompts: Kendall tau over the sites,
    # top-k overlap (`analysis.agreement`, the `agreement` view of `loco sql`)
    agreement: list[dict] = []

    def find(self, attribute: str | None = None, concept: str | None = None) -> list[CandidateSet]:
        """The sets of `attribute` (any when None); with `concept`, that concept's set when it names sites,
        else the attribute's (a concept with one prompt has no interval and so no sites of its own)."""
        sets = [s for s in self.sets if attribute is None or s.attribute == attribute]
        if concept is not None:
            sets = [s for s in sets if s.concept == concept and s.sites] or [s for s in sets if s.concept is None]
        return sets


def group_to_set(group: GroupRanking, evidence: int = 5) -> CandidateSet:
    chosen = [v for v in group.variants if v.selected]
    sites = list(dict.fromkeys(s for v in chosen for s in (v.sites or ([v.site] if v.site else []))))
    indices = list(dict.fromkeys(i for v in chosen for i in (v.indices or ([v.index] if v.index is not None else []))))
    chosen_names = {v.variant for v in chosen}
    shown = [v for v in group.variants if v.variant in chosen_names] + \
            [v for v in group.variants if v.variant not in chosen_names][: max(0, evidence - len(chosen))]
    ev = [{k: getattr(v, k) for k in EVIDENCE_FIELDS} | {"selected": v.variant in chosen_names} for v in shown]
    return CandidateSet(attribute=group.attribute or None, concept=group.concept or None, method=group.method,
                        rule=group.rule.description, metric=group.rule.metric,
                        kind=next((v.kind for v in chosen), None), sites=sites, indices=indices,
                        separated=group.separated, status=group.status, n_prompts=group.n_prompts,
                        warning=group.warning, threshold=group.threshold, corruption=group.corruption, evidence=ev)


def model_of(runs: list[Run]) -> dict:
    """The one model every run was made with; runs of different models cannot share a candidates file."""
    models = {(r.model_id, r.model_fingerprint) for r in runs}
    if len(models) > 1:
        listed = ", ".join(f"{r.name}: {r.model_id} ({r.model_fingerprint})" for r in runs)
        raise AnalysisError(f"runs of different models cannot share a candidates file ({listed})")
    run = runs[0]
    return {"id": run.model_id, "fingerprint": run.model_fingerprint, "arch": run.model.get("arch")}


def build_candidates(paths, metric: str | None = None, top: int | None = None, n_boot: int = N_BOOT,
                     groups: list[GroupRanking] | None = None) -> CandidatesFile:
    """The candidates file of `paths`; `top` replaces the papers' set sizes of top-k rules."""
    runs = open_runs(paths)
    for run in runs:
        require_results(run)
    if top is not None and top < 1:
        raise AnalysisError(f"--top: expected at least 1 variant per set, got {top}")
    groups = groups if groups is not None else [g for run in runs for g in rank_run(run, metric, n_boot, top=top)]
    return CandidatesFile(
        format=FORMAT, created_at=provenance.now(), model=model_of(runs),
        runs=[{"run": r.name, "path": str(r.path), "method": r.method,
               "job_fingerprint": r.manifest.get("job_fingerprint")} for r in runs],
        sets=[group_to_set(g) for g in groups],
        agreement=[asdict(a) for a in agreement_table(groups, runs)])


def dump_candidates(candidates: CandidatesFile, path: str | Path | None = None) -> str:
    """YAML text (JSON when `path` ends in .json), written to `path` when given."""
    data = candidates.model_dump(mode="json")
    text = (json.dumps(data, indent=2) + "\n" if path and str(path).endswith(".json")
            else yaml.safe_dump(data, sort_keys=False, width=120))
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return text


def load_candidates(path: str | Path, model_fingerprint: str | None = None,
                    model_id: str | None = None) -> CandidatesFile:
    """Read a candidates file; one from another model (fingerprint mismatch) is refused."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"candidates file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except yaml.YAMLError as exc:
        raise AnalysisError(f"{path}: not valid YAML or JSON ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise AnalysisError(f"{path}: not a candidates file (expected format: {FORMAT}, got {found!r}); "
                            "write one with `loco candidates RUN_DIR --out FILE`")
    try:
        candidates = CandidatesFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise AnalysisError(f"{path}: {loc}: {err['msg']}") from None
    theirs = candidates.model.get("fingerprint")
    if model_fingerprint is not None and theirs != model_fingerprint:
        raise AnalysisError(f"{path}: candidates were found on model {candidates.model.get('id')} (fingerprint {theirs}), "
                            f"not on {model_id or 'this model'} (fingerprint {model_fingerprint}); localize this model first")
    return candidates
