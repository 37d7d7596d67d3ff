"""Verbs refuse what they would otherwise misread, in one line (issue #20 items 13, 14, 16): a job key its
method does not read, an edit evaluation of a folder `loco edit` did not write, a regression check between
runs of different jobs or architectures; and `loco edit-eval` sets its thread count as a sweep does."""

import json

import pytest
import torch
import yaml
from analysis_fixtures import make_run, swap_rows

from harness.cli import main
from harness.errors import JobError, UserError
from harness.jobs import load_job

TRACE = {"name": "t", "method": "causal_trace",
         "prompts": [{"prompt": "a house in the style of van gogh", "concept": "van gogh"}]}
SWAP = {"name": "s", "method": "locogen", "prompts": [{"prompt": "a house", "target": "a painting"}]}


@pytest.mark.parametrize("job, key, value, readers", [
    (TRACE, "window", 3, "locogen, attn_patch"),
    (TRACE, "mode", "patch", "locogen, attn_patch"),
    (SWAP, "noise_scale", 2.0, "causal_trace"),
    (SWAP, "positions", ["last"], "causal_trace"),
    (SWAP, "restore", "state", "causal_trace"),
])
def test_a_key_the_method_does_not_read_is_refused(job, key, value, readers):
    with pytest.raises(JobError, match=rf"^job: {key}: method '{job['method']}' does not read it \(only {readers}\)"):
        load_job({**job, key: value})


def test_a_key_at_its_default_is_fine_so_a_written_job_yaml_loads_again():
    job = load_job({**TRACE, "window": 1})
    assert load_job(job.model_dump(mode="json")) == job


def test_edit_eval_of_a_sweep_directory_or_a_foreign_manifest_is_one_line(tmp_path, capsys):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "manifest.json").write_text(json.dumps({"job_fingerprint": "abc", "job_name": "x"}))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text(json.dumps({"name": "something else"}))
    for folder, words in (("sweep", "is a sweep's run directory"), ("other", "is not a manifest of loco edit")):
        assert main(["edit-eval", str(tmp_path / folder), "--out", str(tmp_path / "eval")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err


def test_edit_eval_runs_on_one_thread_like_a_sweep_worker(tmp_path, monkeypatch):
    import harness.edit.evaluate as evaluate

    (tmp_path / "edit").mkdir()
    (tmp_path / "edit" / "manifest.json").write_text(json.dumps(
        {"edit_id": "e", "method": "locoedit", "spec": {}, "source_model": "tiny:sd15"}))
    (tmp_path / "p.csv").write_text("prompt,set\na house,efficacy\n")
    seen = []

    def record(*args):
        seen.append(torch.get_num_threads())
        raise UserError("stop here")

    monkeypatch.setattr(evaluate, "load_pair", record)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(UserError, match="stop here"):
            evaluate.evaluate_edit(tmp_path / "edit", str(tmp_path / "p.csv"), tmp_path / "eval")
    finally:
        torch.set_num_threads(before)
    assert seen == [1]


def two_runs(tmp_path, job_b: dict, arch_b: str = "sd15"):
    rows = swap_rows(lambda i, p: 0.1 * (i == 2), ["p0", "p1", "p2"], [0])
    a, b = make_run(tmp_path, "a", "locogen", rows), make_run(tmp_path, "b", "locogen", rows)
    manifest = json.loads((b / "manifest.json").read_text())
    (b / "manifest.json").write_text(json.dumps({**manifest, "model": {**manifest["model"], "arch": arch_b}}))
    (a / "job.yaml").write_text(yaml.safe_dump({**SWAP, "model": "/ckpt/a"}))
    (b / "job.yaml").write_text(yaml.safe_dump(job_b))
    return a, b


@pytest.mark.parametrize("job_b, arch_b, words", [
    ({**SWAP, "window": 2}, "sd15", "ran a different job than the baseline"),
    ({**SWAP, "model": "/ckpt/b"}, "sdxl", "the baseline is a sd15 model and"),
])
def test_regress_refuses_runs_of_different_jobs_or_architectures_unless_asked(tmp_path, capsys, job_b, arch_b, words):
    a, b = two_runs(tmp_path, job_b, arch_b)
    assert main(["regress", "--baseline", str(a), "--candidate", str(b), "--bootstrap", "50"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert main(["regress", "--baseline", str(a), "--candidate", str(b), "--bootstrap", "50",
                 "--allow-different-jobs"]) in (0, 1)


def test_regress_judges_the_same_job_on_another_checkpoint(tmp_path):
    a, b = two_runs(tmp_path, {**SWAP, "model": "/ckpt/b", "name": "s-candidate"})
    assert main(["regress", "--baseline", str(a), "--candidate", str(b), "--bootstrap", "50"]) == 0
