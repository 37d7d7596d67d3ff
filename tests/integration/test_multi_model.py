"""Several models in one sweep: the tiny SD1.x and its planted variant (text reaches the image only through
cross-attention layer 8). Each model's run directory holds exactly its rows, tagged with its model; the
planted model's known answer (only layer 8 moves its image) shows no row landed under the wrong model;
resume works per model; Ray runs both models' actors side by side and writes the same rows."""

import json

import duckdb
import pytest
import yaml

from harness.cli import main
from harness.errors import UserError
from harness.jobs import load_job
from harness.multisweep import run_multi_sweep
from harness.run.progress import SweepProgress

PLANTED = "tiny:sd15+planted=cross_attn#8"
DIRS = {"tiny:sd15": "tiny-sd15", PLANTED: "tiny-sd15-planted-cross_attn-8"}
JOB = {"name": "two-models", "model": ["tiny:sd15", PLANTED], "method": "locogen",
       "sites": {"kind": "cross_attn", "index": "7-8"}, "seeds": [0], "metrics": ["mse"],
       "steps": 2, "height": 32, "width": 32,
       "prompts": [{"prompt": "a house in the style of van gogh", "target": "a red bicycle on a beach",
                    "attribute": "style", "concept": "van gogh"}]}


def rows_of(run_dir) -> list[dict]:
    return duckdb.sql(f"SELECT model_id, model_fingerprint, role, variant, mse, row_id FROM "
                      f"read_parquet('{run_dir}/results/**/*.parquet') ORDER BY row_id").to_arrow_table().to_pylist()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi") / "run"
    return root, run_multi_sweep(load_job(JOB), out=root, backend="local", quiet=True)


def test_each_model_has_its_own_run_directory_with_exactly_its_rows(local_run):
    root, summaries = local_run
    assert [s.model for s in summaries] == ["tiny:sd15", PLANTED]
    assert [s.run_dir.name for s in summaries] == list(DIRS.values())
    index = json.loads((root / "models.json").read_text())
    assert index["models"] == [{"model": m, "dir": d} for m, d in DIRS.items()]
    fingerprints = set()
    for model, directory in DIRS.items():
        rows = rows_of(root / directory)
        assert len(rows) == 2 + 2  # variants cross_attn#7, #8 + control and target
        assert {r["model_id"] for r in rows} == {model}
        assert sorted(r["variant"] or r["role"] for r in rows) == ["control", "cross_attn#7", "cross_attn#8", "target"]
        fingerprints |= {r["model_fingerprint"] for r in rows}
        assert load_job(root / directory / "job.yaml").model == model
        assert json.loads((root / directory / "manifest.json").read_text())["status"] == "complete"
    assert len(fingerprints) == 2


def test_the_planted_models_rows_show_its_known_answer(local_run):
    root, _ = local_run
    mse = {m: {r["variant"]: r["mse"] for r in rows_of(root / d) if r["role"] == "variant"} for m, d in DIRS.items()}
    assert mse[PLANTED]["cross_attn#7"] == 0.0 and mse[PLANTED]["cross_attn#8"] > 0.0  # only layer 8 reads text
    assert mse["tiny:sd15"]["cross_attn#7"] > 0.0


def test_resume_reruns_only_the_model_whose_part_is_missing(local_run, tmp_path):
    root, _ = local_run
    before = {d: rows_of(root / d) for d in DIRS.values()}
    for part in (root / DIRS[PLANTED] / "results").rglob("*.parquet"):
        part.unlink()
    again = run_multi_sweep(load_job(JOB), out=root, backend="local", quiet=True)
    assert [(s.units_run, s.units_skipped) for s in again] == [(0, 1), (1, 0)]
    assert {d: rows_of(root / d) for d in DIRS.values()} == before


def test_ray_runs_both_models_side_by_side_and_writes_the_same_rows(local_run, tmp_path, monkeypatch):
    root, _ = local_run
    seen: list[dict[str, tuple[str, str]]] = []  # every snapshot of the workers the display was given
    record = SweepProgress.workers
    monkeypatch.setattr(SweepProgress, "workers", lambda self, states: (
        seen.append({n: (s, detail) for n, s, detail in states}), record(self, states))[1])
    summaries = run_multi_sweep(load_job(JOB), out=tmp_path / "ray", backend="ray", quiet=True)
    assert [s.rows_written for s in summaries] == [4, 4]
    for directory in DIRS.values():
        assert rows_of(tmp_path / "ray" / directory) == rows_of(root / directory)
    workers = {f"{d}/worker-0" for d in DIRS.values()}  # each model's own actor, named after its directory
    assert all(any("1 done" in snap.get(w, ("", ""))[1] for snap in seen) for w in workers)  # its own unit
    assert any(all(snap.get(w, ("",))[0] in ("idle", "busy") for w in workers) for snap in seen), \
        "the two models' actors were never up at the same time"


def test_loco_plan_shows_every_model_and_the_totals(capsys):
    assert main(["plan", "jobs/nightly.yaml", "--set", f"model=[tiny:sd15, '{PLANTED}']"]) == 0
    out = capsys.readouterr().out
    assert "nightly: locogen on tiny:sd15 (sd15)" in out and f"nightly: locogen on {PLANTED} (sd15)" in out
    assert "2 models: 20 units · 720 generations" in out  # 10 prompts × 2 seeds × (16 + 2) per model


def test_rank_on_the_root_names_the_model_directories(local_run, capsys):
    root, _ = local_run
    assert main(["rank", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{root / DIRS[PLANTED]}" in err and "multi-model sweep" in err


def test_loco_sweep_prints_one_line_per_model(local_run, tmp_path, capsys):
    root, _ = local_run
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(JOB))
    assert main(["sweep", str(tmp_path / "two.yaml"), "--local", "--quiet", "--out", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["two-models [tiny", "two-models [tiny"]
    assert all("0 rows from 0 units (1 already done)" in line for line in lines[:2])
    assert lines[1].endswith(str(root / DIRS[PLANTED]))


def test_a_single_model_run_directory_is_not_mixed_with_a_multi_model_sweep(local_run):
    root, _ = local_run
    single = root / DIRS["tiny:sd15"]  # a finished single-model run
    with pytest.raises(UserError, match="holds a single-model run; .* pass --force"):
        run_multi_sweep(load_job(JOB), out=single, backend="local", quiet=True)
    assert not (single / "models.json").exists()
