"""Model-backed scorers inside sweeps (their own Ray actors, overlapped with generation) and `loco score`."""

import json

import duckdb
import pytest
from PIL import Image, ImageDraw, ImageFont

from harness.cli import main
from harness.jobs import load_job
from harness.sweep import run_sweep

OCR_COLUMNS = {f"ocr_{level}_{m}_{which}" for level in ("char", "word") for m in ("p", "r", "f1", "exact")
               for which in ("text", "target")} | {"ocr_text", "lev_text", "lev_target", "ocr_model", "ocr_weights"}
CLIP_COLUMNS = {"clip_t_prompt", "clip_t_target", "clip_cos_prompt", "clip_cos_target", "clip_image",
                "clip_image_cos", "clip_model", "clip_weights"}


def job():
    return load_job({"name": "scored", "model": "tiny:sd15", "method": "attn_patch",
                     "sites": {"kind": "cross_attn", "index": "14-15"}, "seeds": [0],
                     "prompts": [{"prompt": 'A sign that says "hello".', "target": 'A sign that says "world".'},
                                 {"prompt": 'A sign that says "stop".', "target": 'A sign that says "open".'}],
                     "metrics": ["clip_score", "ocr", "ssim"], "scorers": {"clip": {"allow_random": True}}})


def rows(run_dir):
    return duckdb.sql(f"SELECT * FROM read_parquet('{run_dir}/results/**/*.parquet') ORDER BY row_id"
                      ).to_arrow_table().to_pylist()


@pytest.fixture(scope="module")
def ray_scored(tmp_path_factory):
    return run_sweep(job(), out=tmp_path_factory.mktemp("scored") / "ray", backend="ray")


def test_a_sweep_with_clip_ocr_and_ssim_writes_every_column(ray_scored):
    records = rows(ray_scored.run_dir)
    assert len(records) == 2 * 4
    columns = set(records[0])
    assert OCR_COLUMNS | CLIP_COLUMNS | {"ssim", "mse", "psnr"} <= columns
    for record in records:
        assert record["clip_weights"] == "random" and record["clip_model"] == "ViT-B-32"
        assert record["ocr_model"].startswith("easyocr-") and record["score_seconds"] > 0
        assert 0 <= record["clip_t_prompt"] <= 2.5 and record["ocr_text"] is not None
    variant = next(r for r in records if r["role"] == "variant")
    assert variant["ocr_char_f1_target"] is not None and variant["clip_image"] is not None
    target = next(r for r in records if r["role"] == "target")  # scored against the same texts A and B
    assert (target["text"], target["target_text"]) == ("hello", "world")
    assert target["ocr_char_f1_target"] is not None and target["clip_t_target"] is not None


def test_scoring_actors_and_in_process_scoring_agree(ray_scored, tmp_path):
    local = run_sweep(job(), out=tmp_path / "local", backend="local")
    for here, there in zip(rows(local.run_dir), rows(ray_scored.run_dir), strict=True):
        assert (here["row_id"], here["ssim"], here["ocr_text"], here["ocr_char_f1_text"]) == \
            (there["row_id"], there["ssim"], there["ocr_text"], there["ocr_char_f1_text"])
        for key in ("clip_t_prompt", "clip_image_cos"):  # CPU thread counts differ: last-bit rounding
            assert here[key] == pytest.approx(there[key], abs=1e-6)


def render(path, text: str) -> str:
    image = Image.new("RGB", (360, 120), "white")
    ImageDraw.Draw(image).text((20, 20), text, fill="black", font=ImageFont.load_default(size=72))
    image.save(path)
    return str(path)


def test_loco_score_reads_rendered_text(tmp_path, capsys):
    hello, world = render(tmp_path / "hello.png", "HELLO"), render(tmp_path / "world.png", "WORLD")
    code = main(["score", hello, world, "--text", "hello", "--metrics", "ocr,ssim", "--reference", hello, "--json"])
    records = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["ocr_text"] for r in records] == ["hello", "world"]
    assert records[0]["ocr_char_f1_text"] == 1 and records[1]["ocr_char_f1_text"] < 1
    assert records[0]["ssim"] == pytest.approx(1) and records[1]["ssim"] < 1


def test_loco_score_mistakes_are_one_line(tmp_path, capsys):
    hello = render(tmp_path / "hello.png", "HELLO")
    assert main(["score", hello, "--metrics", "ssim"]) == 2
    assert "--reference: metrics ssim compare with a reference image" in capsys.readouterr().err
    assert main(["score", hello, "--metrics", "clip_score"]) == 2
    assert "scorers.clip.weights: not set" in capsys.readouterr().err
    assert main(["score", hello, "--metrics", "ocr", "--option", "clip"]) == 2
    assert "--option: expected SCORER.KEY=VALUE" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "missing.png"), "--metrics", "ocr"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_generation_workers_leave_model_backed_scorers_to_the_scoring_actors():
    from harness.metrics import ScorerError
    from harness.run.scoring import ScoringWorker
    from harness.run.worker import Worker

    spec = job().model_copy(update={"scorers": {}})  # CLIP without weights: loading it would fail
    worker = Worker(spec, score_heavy=False)  # so this worker must not load it
    assert worker.heavy_scorers == [] and worker.defers_scores
    assert [s.name for s in worker.scorers] == ["image"]
    scoring = ScoringWorker(spec)  # the error is kept for the first call, as a Ray actor must
    with pytest.raises(ScorerError, match="scorers.clip.weights: not set"):
        scoring.ready()


def test_more_workers_than_gpus_is_an_error_not_a_hang(monkeypatch):
    import ray

    from harness.errors import UserError
    from harness.run.ray_pool import ray_workers

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"GPU": 1.0, "CPU": 16.0})
    spec = job().model_copy(update={"executor": job().executor.model_copy(update={"workers": 2})})
    with pytest.raises(UserError, match="executor.workers: 2 workers need 2 GPUs; the Ray cluster has 1"):
        ray_workers(spec)
