"""Attribute probes: what shape, colour, background and word a toyworld image shows, as metric columns.

CLIP and OCR score real checkpoints; the toyworld model (`harness.toyworld`) draws a synthetic world whose
facts we know, so its images are read by probes trained on that world's renders
(`harness.toyworld.probes`): one classifier per attribute, ≥97% accurate on renders of held-out
combinations. Metric name ``probe``; per row and attribute (``shape``, ``color``, ``background``,
``word``):

* ``probe_<attr>`` — the predicted label (text);
* ``probe_<attr>_p`` — the probability of the label prompt A names for that attribute, and
  ``probe_<attr>_ok`` — 1 when the prediction is that label (its mean is the accuracy); None when A
  names none (a sign has no shape);
* ``probe_<attr>_p_target`` — the probability of prompt B's label (LocoGen's / P3's target prompt).

and for the attribute the row is about (its ``attribute`` column: ``color``, ``shape``, ``background``,
``text``/``word``), the same three numbers under one name each, so one column ranks every group:
``probe_p_prompt``, ``probe_ok_prompt``, ``probe_p_target``. The labels a prompt names are read from its
caption with the world's own vocabulary (`harness.toyworld.probes.labels`).

With option ``words_file`` (a word list, as `text_patch` and the toxic-text baselines read) two more columns
stand in for P3's toxicity on the toyworld, where no toxicity classifier applies: ``listed_word`` — 1 when
the word probe reads a listed word (P3's per-image ``toxic`` flag) — and ``listed_word_p3`` — that flag
divided by the rate the same probe reads listed words on renders of the list itself, so its mean is P3's
score (toxic rate / the list's own rate; 1.0 = as often as the words themselves).

Directions, as for CLIP: an intervention that moves the image away from prompt A lowers A's probability
(−1) and raises B's (+1). Scores are softmax probabilities of one forward pass (eval mode, no
augmentation), deterministic on CPU.
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.metrics import ScoreBatch, Scorer, register

ATTRIBUTES = ("shape", "color", "background", "word")
ALIASES = {"text": "word", "colour": "color", "object": "shape"}  # the prompt rows' vocabulary → probe heads


def probe_attribute(attribute: str | None) -> str | None:
    """The probe head for a row's ``attribute`` value (None when no probe reads it)."""
    if not attribute:
        return None
    name = ALIASES.get(attribute.lower(), attribute.lower())
    return name if name in ATTRIBUTES else None


def _directions() -> dict[str, int]:
    signs: dict[str, int] = {}
    for attr in ATTRIBUTES:
        signs |= {f"probe_{attr}_p": -1, f"probe_{attr}_ok": -1, f"probe_{attr}_p_target": 1}
    return signs | {"probe_p_prompt": -1, "probe_ok_prompt": -1, "probe_p_target": 1, "listed_word": -1,
                    "listed_word_p3": -1}


LABEL_COLUMNS = tuple(f"probe_{attr}" for attr in ATTRIBUTES)  # text columns (harness.results.schema)


@register("probe")
class ProbeScorer(Scorer):
    """The toyworld attribute probes. Option ``weights``: a probes safetensors file (default: the shipped
    one, `harness/toyworld/probes/weights/`); ``device`` ("auto", "cpu", "cuda")."""

    name = "probe"
    metrics = ("probe",)
    directions: ClassVar[dict[str, int]] = _directions()
    heavy = False  # ~0.1M parameters: cheaper than shipping images to another actor

    def __init__(self, weights: str | None = None, device: str = "cpu", words_file: str | None = None, **options: Any):
        super().__init__(**options)
        from harness.toyworld.probes import load_probes

        self.probes = load_probes(weights, device=device, option=f"scorers.{self.name}.weights")
        self.listed, self.list_rate = None, None
        if words_file is not None:
            self.listed, self.list_rate = self._word_list(words_file)

    def _word_list(self, words_file: str) -> tuple[set[str], float]:
        """The listed words the probe can read, and the rate it reads a listed word on their renders."""
        import numpy as np

        from harness.edit.text_patch import read_words
        from harness.errors import UserError
        from harness.metrics import ScorerError
        from harness.toyworld import world

        try:
            words = {w.upper() for w in read_words(words_file)}
        except UserError as exc:
            raise ScorerError(f"scorers.{self.name}.{exc}") from None
        unknown = sorted(words - set(self.probes.labels["word"]))
        if unknown:
            raise ScorerError(f"scorers.{self.name}.words_file: the word probe cannot read {', '.join(unknown)} (it reads "
                              f"{', '.join(self.probes.labels['word'])})")
        signs = [world.Sample(None, None, "plain", w, t.format(word=w), seed) for w in sorted(words)
                 for t in world.WORD_TEMPLATES for seed in range(4)]
        read = self.probes.predict(np.stack([world.render(s, self.probes.size) for s in signs]))["word"][0]
        return words, float(np.mean([label in words for label in read]))

    def identity(self) -> dict[str, str]:
        return {"probe_model": self.probes.model_name, "probe_weights": self.probes.fingerprint}

    def score(self, batch: ScoreBatch) -> dict[str, list]:
        from harness.toyworld.probes.labels import caption_labels

        n = len(batch)
        predictions = self.probes.predict(batch.images)  # attribute -> (labels, probabilities (N, K))
        prompts = list(batch.prompts) or [None] * n
        targets = list(batch.targets) or [None] * n
        attributes = list(batch.attributes) or [None] * n
        wanted = [caption_labels(p) if p else {} for p in prompts]
        wanted_b = [caption_labels(t) if t else {} for t in targets]
        columns: dict[str, list] = {}
        for attr in ATTRIBUTES:
            if attr not in predictions:
                continue
            labels, probs = predictions[attr]
            columns[f"probe_{attr}"] = list(labels)
            columns[f"probe_{attr}_p"] = [self.probes.probability(attr, probs[i], wanted[i].get(attr)) for i in range(n)]
            columns[f"probe_{attr}_ok"] = [None if wanted[i].get(attr) is None else float(labels[i] == wanted[i][attr])
                                           for i in range(n)]
            columns[f"probe_{attr}_p_target"] = [self.probes.probability(attr, probs[i], wanted_b[i].get(attr))
                                                 for i in range(n)]
        for suffix, source in (("p_prompt", "_p"), ("ok_prompt", "_ok"), ("p_target", "_p_target")):
            values = []
            for i, attribute in enumerate(attributes):
                head = probe_attribute(attribute)
                key = f"probe_{head}{source}"
                values.append(columns[key][i] if head and key in columns else None)
            columns[f"probe_{suffix}"] = values
        if self.listed is not None:
            columns["listed_word"] = [float(label in self.listed) for label in predictions["word"][0]]
            columns["listed_word_p3"] = [v / self.list_rate for v in columns["listed_word"]]
        return columns

