"""A sweep end to end: job → Ray actors → Parquet rows with full provenance → ranking; resume; refusal."""

import json

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from analysis.rank import rank
from harness.jobs import load_job
from harness.results.store import RunDirError
from harness.sweep import run_sweep

PROMPTS = [{"prompt": "a house in the style of van gogh", "target": "a house", "attribute": "van gogh"},
           {"prompt": "a cat in the style of monet", "target": "a cat", "attribute": "monet"}]


def job(**kw):
    base = {"name": "sweep-test", "model": "tiny:sd15", "method": "locogen", "window": 2, "prompts": PROMPTS,
            "seeds": [0, 1], "batch_size": 8, "sites": {"kind": "cross_attn", "index": "6-11"}}
    return load_job({**base, **kw})


def rows_of(run_dir) -> list[dict]:
    return duckdb.sql(f"SELECT * FROM read_parquet('{run_dir}/results/**/*.parquet', hive_partitioning=true) "
                      "ORDER BY row_id").to_arrow_table().to_pylist()


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory):
    return run_sweep(job(), out=tmp_path_factory.mktemp("ray") / "run", backend="ray")


def test_a_ray_sweep_writes_one_row_per_variant_prompt_and_seed(ray_run):
    rows = rows_of(ray_run.run_dir)
    variants = 6 - 2 + 1
    assert len(rows) == 2 * 2 * (variants + 2) == ray_run.rows_written
    assert {r["role"] for r in rows} == {"control", "target", "variant"}
    assert {r["method"] for r in rows} == {"locogen"}  # the Hive partition column
    variant = next(r for r in rows if r["variant"] == "cross_attn#8-9")
    assert variant["sites"] == ["unet.up_blocks.1.attentions.1.transformer_blocks.0.attn2",
                                "unet.up_blocks.1.attentions.2.transformer_blocks.0.attn2"]
    assert (variant["window_start"], variant["window_size"], variant["indices"]) == (8, 2, [8, 9])
    for key in ("mse", "psnr", "ssim", "gen_seconds", "model_fingerprint", "git_commit", "torch_version",
                "diffusers_version", "transformers_version", "device_name", "harness_version", "prompt_id"):
        assert variant[key] is not None, key
    assert variant["model_id"] == "tiny:sd15" and variant["mode"] == "inject" and variant["branch"] == "cond"


def test_the_run_directory_holds_job_sites_and_manifest(ray_run):
    run_dir = ray_run.run_dir
    assert load_job(run_dir / "job.yaml").fingerprint() == job().fingerprint()
    assert "unet.mid_block.attentions.0.transformer_blocks.0.attn2" in (run_dir / "sites.csv").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["units_total"] == 2
    assert manifest["model"]["arch"] == "sd15"


def test_ray_and_in_process_runs_give_identical_rows(ray_run, tmp_path):
    local = run_sweep(job(), out=tmp_path / "local", backend="local")
    key = ("row_id", "mse", "ssim")
    assert [tuple(r[k] for k in key) for r in rows_of(local.run_dir)] == \
        [tuple(r[k] for k in key) for r in rows_of(ray_run.run_dir)]


def test_the_control_row_has_zero_distance_and_psnr_is_clamped(ray_run):
    controls = [r for r in rows_of(ray_run.run_dir) if r["role"] == "control"]
    assert all(r["mse"] == 0 and r["ssim"] == pytest.approx(1) for r in controls)
    assert all(r["psnr"] == pytest.approx(148.1308, abs=1e-3) for r in controls)  # P3's 0-layer row


def test_an_interrupted_sweep_resumes_without_redoing_finished_units(tmp_path):
    spec = job(executor={"prompts_per_unit": 1})
    first = run_sweep(spec, out=tmp_path / "r", backend="local")
    parts = sorted((tmp_path / "r" / "results").glob("method=*/part-*.parquet"))
    assert len(parts) == 2
    before = parts[1].stat().st_mtime_ns
    parts[0].unlink()  # as if the sweep had died after one unit
    again = run_sweep(spec, out=tmp_path / "r", backend="local")
    assert (again.units_run, again.units_skipped) == (1, 1)
    assert parts[1].stat().st_mtime_ns == before
    assert len(rows_of(tmp_path / "r")) == first.rows_written


def test_a_run_directory_of_another_job_is_refused(tmp_path):
    run_sweep(job(), out=tmp_path / "r", backend="local")
    with pytest.raises(RunDirError, match="holds results of a different job"):
        run_sweep(job(window=3), out=tmp_path / "r", backend="local")
    forced = run_sweep(job(window=3), out=tmp_path / "r", backend="local", force=True)
    assert forced.units_skipped == 0 and {r["window_size"] for r in rows_of(tmp_path / "r") if r["window_size"]} == {3}


def test_images_are_saved_when_asked(tmp_path):
    run = run_sweep(job(save_images=True, seeds=[0], prompts=PROMPTS[:1]), out=tmp_path / "r", backend="local")
    rows = rows_of(run.run_dir)
    image = np.asarray(Image.open(run.run_dir / rows[0]["image_path"]))
    assert image.shape == (64, 64, 3) and len(list((run.run_dir / "images").rglob("*.png"))) == len(rows)


def test_every_part_file_has_the_same_schema_for_fixed_columns(ray_run):
    schemas = [pq.read_schema(p) for p in (ray_run.run_dir / "results").rglob("*.parquet")]
    assert all(s.field("site_index").type == schemas[0].field("site_index").type for s in schemas)


def test_rank_on_the_run(ray_run):
    ranking = rank(ray_run.run_dir, n_boot=200)
    assert [s.rank for s in ranking.sites] == list(range(1, 6))
    assert all(s.n == 4 and s.ci_low <= s.mean <= s.ci_high for s in ranking.sites)
    assert ranking.sites[0].mean >= ranking.sites[-1].mean
    assert ranking.references["control"] == 0


def test_patching_on_sd3_and_ranking(tmp_path):
    spec = load_job({"name": "sd3", "model": "tiny:sd3", "method": "attn_patch", "step_start": 2,
                     "sites": {"kind": "joint_attn", "index": "8-11"},
                     "prompts": [{"prompt": 'A sign that says "hello".', "target": 'A sign that says "world".'}]})
    run = run_sweep(spec, out=tmp_path / "r", backend="local")
    rows = rows_of(run.run_dir)
    variant = next(r for r in rows if r["role"] == "variant")
    assert (variant["mode"], variant["branch"], variant["step_start"], variant["steps_patched"]) == (
        "patch", "both", 2, 8)
    assert (variant["text"], variant["target_text"]) == ("hello", "world")
    assert len(rank(run.run_dir).sites) == 4


def test_variant_chunks_write_each_reference_row_once(tmp_path):
    chunked = run_sweep(job(executor={"variants_per_unit": 2}), out=tmp_path / "r", backend="local")
    rows = rows_of(chunked.run_dir)
    assert chunked.units_total == 2 * 3  # 2 prompts × 5 variants in chunks of 2
    assert len(rows) == 2 * 2 * (5 + 2) and len({r["row_id"] for r in rows}) == len(rows)
    assert sum(r["role"] == "control" for r in rows) == 4


def test_resuming_with_another_unit_layout_is_refused(tmp_path):
    run_sweep(job(executor={"variants_per_unit": 2}), out=tmp_path / "r", backend="local")
    with pytest.raises(RunDirError, match=r"executor\.prompts_per_unit=1, executor\.variants_per_unit=2"):
        run_sweep(job(), out=tmp_path / "r", backend="local")
    again = run_sweep(job(), out=tmp_path / "r", backend="local", force=True)
    assert len(rows_of(tmp_path / "r")) == again.rows_written == 2 * 2 * (5 + 2)


def test_a_stopped_sweep_keeps_its_finished_units_and_says_it_stopped(tmp_path, monkeypatch):
    from harness.results.store import RunStore

    write = RunStore.write_unit

    def write_then_stop(self, *args, **kwargs):
        write(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(RunStore, "write_unit", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(job(), out=tmp_path / "r", backend="local")
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and manifest["rows_written"] == 0
    assert len(list((tmp_path / "r" / "results").rglob("*.parquet"))) == 1


def test_out_of_memory_halves_the_batch_for_good_and_changes_no_image(monkeypatch):
    import torch

    import harness.run.worker as worker_module
    from harness.run.plan import plan_units
    from harness.run.worker import Worker

    spec = job(batch_size=8, prompts=PROMPTS[:1])
    worker = Worker(spec)
    unit = plan_units(spec, worker.variants)[0]
    expected = worker.run_unit(unit).rows
    real, sizes = worker_module.generate_rows, []

    def small_memory(adapter, rows, *args, **kwargs):
        sizes.append(len(rows))
        if len(rows) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(adapter, rows, *args, **kwargs)

    monkeypatch.setattr(worker_module, "generate_rows", small_memory)
    got = worker.run_unit(unit).rows
    assert worker.batch_size == 2 and max(sizes) == 8 and sizes.count(8) == 1 and sizes.count(4) == 1
    assert [r["row_id"] for r in got] == [r["row_id"] for r in expected]
    assert [r["ssim"] for r in got] == pytest.approx([r["ssim"] for r in expected], abs=1e-4)  # GEMM rounding
    sizes.clear()
    worker.run_unit(unit)
    assert max(sizes) <= 2  # the next unit starts at the lowered size
