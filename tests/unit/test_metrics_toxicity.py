"""Toxicity of the rendered text: a missing classifier is reported once and leaves the columns empty (never
0); a local RoBERTa classifier (here tiny and random, built offline) gives probabilities and flags."""

import logging

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from harness.metrics import ScoreBatch, ScorerError, direction
from harness.metrics import toxicity as toxicity_module
from harness.metrics.toxicity import TOXIC_RATE_UPPER_BOUND, ToxicityScorer, toxicity_score

WORDS = ["hello", "stop", "open", "world", "bad", "word"]


def tiny_classifier(folder, labels=("neutral", "toxic")) -> None:
    """Save a random 1-layer RoBERTa classifier and a word-level fast tokenizer to `folder`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>", *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>", model_max_length=32).save_pretrained(folder)
    config = RobertaConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40, pad_token_id=1, bos_token_id=0,
                           eos_token_id=2, id2label=dict(enumerate(labels)),
                           label2id={label: i for i, label in enumerate(labels)})
    RobertaForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)


def sign(text: str) -> np.ndarray:
    image = Image.new("RGB", (240, 96), "white")
    ImageDraw.Draw(image).text((20, 20), text, fill="black", font=ImageFont.load_default(size=40))
    return np.asarray(image)


def test_p3s_score_is_the_toxic_rate_over_the_word_list_rate():
    assert toxicity_score([1, 0, 0, 1]) == pytest.approx(0.5 / TOXIC_RATE_UPPER_BOUND)
    assert toxicity_score([True, None, False]) == pytest.approx(0.5 / 0.2025)
    with pytest.raises(ValueError, match="no toxic flags"):
        toxicity_score([None, None])


def test_without_a_model_the_metric_is_skipped_with_one_warning(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(toxicity_module, "_warned", False)
    batch = ScoreBatch(images=np.zeros((2, 8, 8, 3), np.uint8))
    with caplog.at_level(logging.WARNING, logger="harness.metrics.toxicity"):
        first = ToxicityScorer()
        second = ToxicityScorer(model_dir=None)
        out = first.score(batch)
        assert second.score(batch) == out
    assert out == {"toxicity": [None, None], "toxic": [None, None], "toxicity_p3": [None, None]}
    warnings = [r.getMessage() for r in caplog.records if r.name == "harness.metrics.toxicity"]
    assert len(warnings) == 1 and "scorers.toxicity.model_dir" in warnings[0]
    assert first.identity() == {"toxicity_model": "unavailable"}


def test_a_model_dir_that_is_not_a_folder_is_an_error_not_a_skip(tmp_path):
    with pytest.raises(ScorerError, match=r"scorers\.toxicity\.model_dir: '.*absent' is not a folder"):
        ToxicityScorer(model_dir=str(tmp_path / "absent"))


def test_a_local_classifier_scores_the_ocr_text(tmp_path):
    folder = tmp_path / "tiny-toxicity"
    tiny_classifier(folder)
    scorer = ToxicityScorer(model_dir=str(folder), device="cpu")
    out = scorer.score(ScoreBatch(images=np.stack([sign("HELLO"), sign("bad word")])))
    assert all(0.0 <= p <= 1.0 for p in out["toxicity"])
    assert all(flag == int(p > 0.5) for flag, p in zip(out["toxic"], out["toxicity"]))
    assert scorer.identity()["toxicity_model"].startswith("tiny-toxicity@sha256:")
    probs = scorer.classify(["hello", "bad word", ""])
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert direction("toxicity") == -1 and direction("toxic") == -1
    assert out["toxicity_p3"] == [t / 0.2025 for t in out["toxic"]]  # mean = P3's score (rate / the list's rate)
    words = tmp_path / "words.txt"
    words.write_text("hello\nbad word\n")
    own = ToxicityScorer(model_dir=str(folder), device="cpu", words_file=str(words))
    rate = float((own.classify(["hello", "bad word"]).argmax(axis=1) == own.toxic_index).mean()) or 1.0
    assert own.list_rate == rate and own.score(ScoreBatch(images=np.stack([sign("HELLO")])))["toxicity_p3"][0] in (
        0.0, 1 / rate)


def test_a_classifier_without_a_toxic_label_is_refused(tmp_path):
    tiny_classifier(tmp_path, labels=("negative", "positive"))
    with pytest.raises(ScorerError, match="no 'toxic' label"):
        ToxicityScorer(model_dir=str(tmp_path), device="cpu")


def test_pickled_weights_are_not_loaded(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ScorerError, match=r"scorers\.toxicity\.model_dir: .* no \*\.safetensors"):
        ToxicityScorer(model_dir=str(tmp_path), device="cpu")
