"""loco on Ray from any working directory, with the user's own files (issue #21).

A researcher keeps jobs, prompts, checkpoints and runs in a folder of their own. From such a folder —
outside loco's checkout — the verbs run as the README shows them, through ``uv run --project CHECKOUT``
(the way Ray's `uv run` integration used to upload the working directory and fail before any work), with
every path relative to that folder: a Ray sweep of a job whose ``prompts:`` and ``model:`` sit next to
it, ``loco edit``, ``loco edit-eval`` and ``loco regress --candidate-model REL_DIR`` (another Ray sweep).
Rows and manifests record absolute paths. From the checkout, a model under a git-ignored folder
(``runs/``, left out of the working-directory copy Ray used to make) works on Ray too.
``loco demo --out REL_DIR`` from a folder outside the checkout is `test_toyworld_demo`'s run.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pytest
import yaml

from harness.jobs import load_job
from harness.sweep import run_sweep
from tests.conftest import tiny

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = (
    "prompt,target,attribute,concept\na house in the style of van gogh,a house,style,van gogh\n"
    "a cat in the style of monet,a cat,style,monet\n")
SWEEP = {"name": "mine", "model": "models/base", "method": "locogen", "prompts": "prompts.csv", "steps": 2,
         "height": 32, "width": 32, "sites": {"kind": "cross_attn", "index": "14-15"}, "metrics": ["mse"],
         "executor": {"workers": 1}}
EDIT = {"model": "models/base", "method": "locoedit", "edits": [{"concept": "van gogh", "target": "painting"}],
        "sites": {"kind": "cross_attn", "index": 15}}


def loco_command() -> list[str]:
    """`loco` as a user outside the checkout runs it: through `uv run --project` (the `uv run`
    integration of Ray is what broke), else the installed console script."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv:
        return [uv, "run", "--project", str(ROOT), "--frozen", "--quiet", "loco"]
    return [str(Path(sys.executable).with_name("loco"))]


def loco(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "VIRTUAL_ENV")}
    return subprocess.run([*loco_command(), *args], cwd=folder, env=env, text=True, capture_output=True,
                          timeout=900)


def save_tiny_model(folder: Path) -> None:
    tiny("sd15").pipe.save_pretrained(folder, safe_serialization=True)


@pytest.fixture(scope="module")
def mine(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("my-experiments")
    assert not folder.resolve().is_relative_to(ROOT)
    save_tiny_model(folder / "models" / "base")
    (folder / "prompts.csv").write_text(PROMPTS)
    (folder / "job.yaml").write_text(yaml.safe_dump(SWEEP))
    (folder / "edit.yaml").write_text(yaml.safe_dump(EDIT))
    (folder / "eval.csv").write_text("prompt,set\na house in the style of van gogh,efficacy\na red car,specificity\n")
    return folder


def test_a_ray_sweep_of_my_job_with_relative_prompts_and_model_from_my_folder(mine):
    done = loco(mine, "sweep", "job.yaml", "--out", "runs/base", "--quiet")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((mine / "runs" / "base" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["backend"] == "ray"
    job = yaml.safe_load((mine / "runs" / "base" / "job.yaml").read_text())
    assert job["model"] == str(mine / "models" / "base")  # recorded absolute, for a resume from anywhere
    models = duckdb.sql(f"SELECT DISTINCT model_id FROM read_parquet('{mine}/runs/base/results/**/*.parquet')")
    assert [Path(m).resolve() for (m,) in models.fetchall()] == [(mine / "models" / "base").resolve()]


def test_edit_edit_eval_and_regress_on_the_edited_model_from_my_folder(mine):
    if not (mine / "runs" / "base" / "manifest.json").is_file():
        pytest.skip("needs the sweep of the test above")
    done = loco(mine, "edit", "edit.yaml", "--out", "edited")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((mine / "edited" / "loco_edit" / "manifest.json").read_text())
    assert manifest["source_model"] == str(mine / "models" / "base")
    done = loco(mine, "edit-eval", "edited", "--prompts", "eval.csv", "--steps", "2", "--out", "eval")
    assert done.returncode == 0, done.stderr
    assert (mine / "eval" / "results.parquet").is_file()
    # --local: the paths are what this test is about; a Ray sweep from this folder is the test above's
    done = loco(mine, "regress", "--baseline", "runs/base", "--candidate-model", "edited",
                "--candidate-out", "runs/candidate", "--bootstrap", "50", "--local")
    assert done.returncode in (0, 1), done.stderr  # judged: pass or regression, not a usage error
    candidate = yaml.safe_load((mine / "runs" / "candidate" / "job.yaml").read_text())
    assert candidate["model"] == str(mine / "edited")
    assert json.loads((mine / "runs" / "candidate" / "manifest.json").read_text())["status"] == "complete"


def test_from_the_checkout_a_model_under_a_git_ignored_folder_works_on_ray(tmp_path, monkeypatch):
    ignored = Path("runs") / f"test-ignored-{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(ROOT)
    check = subprocess.run(["git", "check-ignore", "-q", str(ignored)], cwd=ROOT)
    assert check.returncode in (0, 128), "runs/ is git-ignored"
    save_tiny_model(ROOT / ignored / "model")
    try:
        (tmp_path / "prompts.csv").write_text(PROMPTS)
        job = load_job({**SWEEP, "prompts": str(tmp_path / "prompts.csv")}, overrides=[f"model={ignored}/model"])
        assert job.model == str(ROOT / ignored / "model")
        summary = run_sweep(job, out=tmp_path / "run", backend="ray", quiet=True)
        assert summary.rows_written == 8 and not summary.failures  # 2 prompts × (2 sites + control + target)
    finally:
        shutil.rmtree(ROOT / ignored, ignore_errors=True)
