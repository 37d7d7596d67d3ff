"""A local model's fingerprint is its configs and weights: a report written beside the weights afterwards
(the model card, a loss curve) leaves it as it was, so runs made before the card still belong to the model."""

from harness.models.loading import dir_fingerprint


def test_reports_beside_the_weights_do_not_change_the_fingerprint_and_weights_and_configs_do(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 10)
    before = dir_fingerprint(tmp_path)
    for name in ("MODEL_CARD.md", "TRAINING.md", "loss.png", "eval.csv"):
        (tmp_path / name).write_text("measured")
    assert dir_fingerprint(tmp_path) == before
    (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 11)
    assert dir_fingerprint(tmp_path) != before
    changed = dir_fingerprint(tmp_path)
    (tmp_path / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    assert dir_fingerprint(tmp_path) != changed
