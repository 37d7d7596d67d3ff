"""A job's metric names build the scorers that produce them, once each, with the job's options; every
effect column declares which way is "further from the un-intervened image"."""

import pytest

from harness.metrics import ScorerError, build_scorers, direction, known_metrics
from harness.metrics.clip import ClipScorer
from harness.metrics.image import ImageDistance
from harness.metrics.ocr import OcrScorer


def test_the_builtin_metrics_are_known():
    assert {"clip_score", "ocr", "image_notext", "lpips", "toxicity", "mse", "psnr", "ssim"} <= set(known_metrics())


def test_metric_names_build_one_scorer_each_with_its_options():
    scorers = build_scorers(["clip_score", "ocr", "ssim", "mse"], {"clip": {"allow_random": True, "device": "cpu"},
                                                                    "ocr": {"device": "cpu"}})
    assert [type(s) for s in scorers] == [ClipScorer, OcrScorer, ImageDistance]
    assert scorers[0].identity()["clip_weights"] == "random"


def test_an_option_no_scorer_takes_is_an_error_even_for_pure_functions():
    with pytest.raises(ScorerError, match=r"scorers\.image: unknown option\(s\) foo"):
        build_scorers(["ssim"], {"image": {"foo": 1}})
    with pytest.raises(ScorerError, match=r"scorers\.clip: unknown option\(s\) modle"):
        build_scorers(["clip_score"], {"clip": {"allow_random": True, "modle": "x"}})


@pytest.mark.parametrize(("column", "sign"), [
    ("clip_t_prompt", -1), ("clip_t_target", 1), ("clip_cos_prompt", -1), ("clip_cos_target", 1),
    ("clip_image", -1), ("clip_image_cos", -1),
    ("ocr_char_f1_text", -1), ("ocr_word_exact_text", -1), ("lev_text", 1),
    ("ocr_char_f1_target", 1), ("ocr_word_r_target", 1), ("lev_target", -1),
    ("mse_notext", 1), ("psnr_notext", -1), ("ssim_notext", -1),
    ("lpips", 1), ("toxicity", -1), ("toxic", -1),
    ("ssim", -1), ("ocr_text", 0), ("clip_weights", 0),
])
def test_directions_are_the_declared_signs(column, sign):
    assert direction(column) == sign


def test_measured_columns_have_a_direction():
    assert direction("attn_contrib") == direction("attn_contrib_bias") == 1


def test_rows_with_the_same_image_and_texts_are_scored_once_and_get_the_same_values():
    import numpy as np

    from harness.metrics import ScoreBatch, Scorer, score_all

    class Counting(Scorer):
        name, metrics = "counting", ("counting",)
        seen: list[int] = []

        def score(self, batch):
            Counting.seen.append(len(batch))
            return {"brightness": [float(im.mean()) for im in batch.images], "prompt": list(batch.prompts)}

    images = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (1, 1, 2, 1)])
    batch = ScoreBatch(images, images.copy(), prompts=["a", "a", "a", "b"])  # rows 0 and 1 are one row twice
    columns = score_all([Counting()], batch)
    assert Counting.seen == [3] and columns == {"brightness": [1.0, 1.0, 2.0, 1.0], "prompt": ["a", "a", "a", "b"]}
