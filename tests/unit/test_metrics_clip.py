"""CLIP scores: P3's CLIP-T formula, cosine properties on random weights, and offline-only weight lookup.

Random weights say nothing about alignment, but every property here (ranges, symmetry, an image matching
itself, batch independence, determinism) must hold for any weights.
"""

import hashlib
import json
import socket
import time

import numpy as np
import pytest
import torch

from harness.metrics import ScoreBatch, ScorerError
from harness.metrics.clip import ClipScorer, ClipWeights, build_model, clipscore, resolve_weights

PROMPT = 'A sign that says "hello".'
TARGET = 'A sign that says "world".'


@pytest.fixture(scope="module")
def scorer() -> ClipScorer:
    return ClipScorer(allow_random=True, device="cpu", batch_size=2)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)


def batch_of(images, references=None, prompts=None, targets=None) -> ScoreBatch:
    n = len(images)
    return ScoreBatch(images=images, references=references, prompts=prompts or [PROMPT] * n,
                      targets=targets or [TARGET] * n)


def test_clip_t_is_two_and_a_half_times_the_cosine_clamped_at_zero():
    image, text = np.array([1.0, 0.0, 0.0]), np.array([0.6, 0.8, 0.0])  # unit vectors, cos 0.6
    assert clipscore(image @ text) == pytest.approx(1.5)
    assert clipscore(np.array([-0.3, 0.0, 0.4, 1.0])).tolist() == pytest.approx([0.0, 0.0, 1.0, 2.5])


def test_scores_lie_in_their_ranges(scorer, images):
    out = scorer.score(batch_of(images, images[::-1]))
    for key in ("clip_t_prompt", "clip_t_target", "clip_image"):
        assert all(0.0 <= v <= 2.5 for v in out[key]), key
    for key in ("clip_cos_prompt", "clip_cos_target", "clip_image_cos"):
        assert all(-1.0 <= v <= 1.0 for v in out[key]), key
    assert out["clip_t_prompt"] == pytest.approx([2.5 * max(c, 0) for c in out["clip_cos_prompt"]])


def test_an_image_matches_itself_perfectly(scorer, images):
    out = scorer.score(batch_of(images, images))
    assert out["clip_image_cos"] == pytest.approx([1.0] * 3, abs=1e-5)
    assert out["clip_image"] == pytest.approx([2.5] * 3, abs=1e-5)


def test_image_similarity_is_symmetric(scorer, images):
    a, b = images[:1], images[1:2]
    out = scorer.score(batch_of(np.concatenate([a, b]), np.concatenate([b, a])))
    assert out["clip_image_cos"][0] == pytest.approx(out["clip_image_cos"][1], abs=1e-6)


def test_a_row_scores_the_same_alone_and_in_a_batch(scorer, images):
    prompts, targets = [PROMPT, "a dog", PROMPT], [TARGET, None, "a cat"]
    together = scorer.score(batch_of(images, images[[0, 0, 0]], prompts, targets))
    for i in range(3):
        alone = scorer.score(batch_of(images[i:i + 1], images[:1], prompts[i:i + 1], targets[i:i + 1]))
        for key, values in alone.items():
            assert values[0] == pytest.approx(together[key][i], abs=1e-5), key


def test_rows_without_a_target_or_reference_get_none(scorer, images):
    out = scorer.score(batch_of(images[:2], None, targets=[None, TARGET]))
    assert out["clip_t_target"][0] is None and out["clip_cos_target"][0] is None
    assert out["clip_t_target"][1] is not None
    assert out["clip_image"] == [None, None] and out["clip_image_cos"] == [None, None]


def test_random_weights_are_the_same_in_every_construction(scorer, images):
    again = ClipScorer(allow_random=True, device="cpu")
    assert np.array_equal(again.encode_images(list(images[:1])), scorer.encode_images(list(images[:1])))
    assert scorer.identity() == {"clip_model": "ViT-B-32", "clip_weights": "random"}


def test_without_weights_random_must_be_asked_for():
    with pytest.raises(ValueError, match=r"scorers\.clip\.weights.*allow_random"):
        ClipScorer()


def test_an_uncached_tag_fails_at_once_without_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    start = time.perf_counter()
    with pytest.raises(ScorerError) as error:
        ClipScorer(weights="openai", cache_dir=str(tmp_path))
    message = str(error.value)
    assert time.perf_counter() - start < 5
    assert "'openai'" in message and "'ViT-B-32'" in message and str(tmp_path) in message
    assert "\n" not in message


def test_an_unknown_tag_or_model_names_the_option():
    with pytest.raises(ScorerError, match=r"scorers\.clip\.weights: 'no-such-tag'"):
        ClipScorer(weights="no-such-tag")
    with pytest.raises(ScorerError, match=r"scorers\.clip\.model"):
        ClipScorer(model="ViT-Q-99", allow_random=True)
    with pytest.raises(ScorerError, match=r"scorers\.clip: unknown option\(s\) weigths"):
        ClipScorer(weigths="openai")


def test_a_cached_tag_resolves_to_the_hub_cache_file(tmp_path):
    snapshot = tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"weights")
    (tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "refs").mkdir()
    (tmp_path / "models--timm--vit_base_patch32_clip_224.openai" / "refs" / "main").write_text("abc123")
    weights = resolve_weights("ViT-B-32", "openai", False, str(tmp_path))
    assert weights.path == snapshot / "open_clip_model.safetensors"
    assert weights.label.startswith("openai@") and len(weights.label) == len("openai@") + 16
    assert weights.tag_cfg["quick_gelu"] is True  # OpenAI weights need QuickGELU


TINY = {"embed_dim": 32, "vision_cfg": {"image_size": 224, "layers": 1, "width": 64, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> ClipScorer:
    """A 1-layer CLIP registered with open_clip as 'loco-tiny-clip', its weights moved off the seeded init."""
    import open_clip

    config = tmp_path_factory.mktemp("config") / "loco-tiny-clip.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    scorer = ClipScorer(model="loco-tiny-clip", allow_random=True, device="cpu")
    with torch.no_grad():
        for p in scorer.model.parameters():
            p.add_(0.01)
    return scorer


def test_a_checkpoint_file_loads_exactly_its_weights(tmp_path, tiny, images):
    from safetensors.torch import save_file

    source = tiny
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in source.model.state_dict().items()}, str(path))
    loaded = ClipScorer(model="loco-tiny-clip", weights=str(path), device="cpu")
    batch = batch_of(images[:2], images[:2])
    assert loaded.score(batch) == source.score(batch)
    assert loaded.identity()["clip_weights"].startswith("sha256:")


def test_openais_torchscript_file_loads_only_with_its_pinned_hash(tmp_path, tiny, images):
    path = tmp_path / "tiny.pt"
    torch.jit.script(tiny.model).save(str(path))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    pinned = ClipWeights(path, "openai@test", {"url": f"https://openaipublic.azureedge.net/clip/models/{sha}/tiny.pt"})
    net, _ = build_model("loco-tiny-clip", pinned)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), tiny.model.state_dict().values()))
    tampered = ClipWeights(path, "openai@test", {"url": f"https://openaipublic.azureedge.net/clip/models/{'0' * 64}/tiny.pt"})
    with pytest.raises(ScorerError, match="TorchScript archive"):
        build_model("loco-tiny-clip", tampered)
    with pytest.raises(ScorerError, match="TorchScript archive"):
        ClipScorer(model="loco-tiny-clip", weights=str(path), device="cpu")
