"""The run directory as a shared, long-lived place (issue #20): one sweep at a time holds it, every part is
the unit its name says, files follow the umask, and a job that fails before its model loads leaves
nothing behind."""

import os
import socket
import stat

import pytest

from harness.cli import main
from harness.jobs import load_job
from harness.results.lock import RunLock
from harness.results.store import RunStore
from harness.sweep import SweepRun, run_sweep

JOB = {"name": "lock", "model": "tiny:sd15", "method": "locogen", "steps": 1, "height": 16, "width": 16,
       "metrics": ["mse"], "sites": {"kind": "cross_attn", "index": "15"},
       "prompts": [{"prompt": "a house", "target": "a painting"}, {"prompt": "a cat", "target": "a dog"}]}


def rows(unit: str, n: int) -> list[dict]:
    return [{"unit_id": unit, "row_id": f"{unit}-{i}", "mse": float(i)} for i in range(n)]


def test_a_second_sweep_into_a_held_directory_is_one_line_naming_the_holder_before_any_model_loads(
        tmp_path, monkeypatch, capsys):
    import yaml

    import harness.run.worker as worker

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the lock was checked")

    monkeypatch.setattr(worker, "load_model", no_load)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(JOB))
    held = RunLock(tmp_path / "run").acquire()
    try:
        status = main(["sweep", str(tmp_path / "job.yaml"), "--out", str(tmp_path / "run"), "--local"])
    finally:
        held.release()
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and f"pid {os.getpid()} on host {socket.gethostname()}" in err, err
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".loco-lock"]


def test_the_lock_is_released_when_the_sweep_ends(tmp_path):
    run_sweep(load_job(JOB), out=tmp_path / "run", backend="local")
    RunLock(tmp_path / "run").acquire().release()  # free again


def test_a_part_copied_over_another_units_name_is_found_and_run_again(tmp_path):
    store = RunStore(tmp_path)
    store.write_unit("locogen", "aaa", rows("aaa", 4))
    store.write_unit("locogen", "bbb", rows("bbb", 4))
    (store.unit_path("locogen", "aaa")).replace(store.unit_path("locogen", "bbb"))  # same row count
    store.write_unit("locogen", "aaa", rows("aaa", 4))
    good, problems = store.verify_units({"aaa": 4, "bbb": 4})
    assert good == {"aaa"}
    assert len(problems) == 1 and "holds rows of unit aaa, not of unit bbb" in problems[0]
    assert store.unit_path("locogen", "bbb").with_name("part-bbb.parquet.corrupt").is_file()


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_run_files_follow_the_umask(tmp_path, mask):
    before = os.umask(mask)
    try:
        store = RunStore(tmp_path)
        files = [store.write_unit("locogen", "u1", rows("u1", 2))]
        store.write_manifest({"status": "running"})
        store.write_sites([{"kind": "cross_attn", "index": 0}])
        files += [tmp_path / "manifest.json", tmp_path / "sites.csv", store.write_failures([])]
    finally:
        os.umask(before)
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o666 & ~mask}


def test_a_job_that_fails_before_its_model_loads_leaves_no_directory(tmp_path, capsys):
    model = tmp_path / "pickled"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    status = main(["sweep", "--set", f"model={model}", "--out", str(tmp_path / "run"), "--local"])
    assert status == 2 and capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_an_early_error_leaves_a_directory_that_existed_as_it_was(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    sweep = SweepRun(load_job({**JOB, "sites": "cross_attn#99"}), tmp_path / "run")
    sweep.open()
    sweep.stop()  # as run_sweep does when the backend refuses the job
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]
