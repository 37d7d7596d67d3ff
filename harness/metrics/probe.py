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
    return signs | {"probe_p_prompt": -1, "probe_ok_prompt": -1, "probe_p_target": 1}


LABEL_COLUMNS = tuple(f"probe_{attr}" for attr in ATTRIBUTES)  # text columns (harness.results.schema)


@register("probe")
class ProbeScorer(Scorer):
    """The toyworld attribute probes. Option ``weights``: a probes safetensors file (default: the shipped
    one, `harness/toyworld/probes/weights/`); ``device`` ("auto", "cpu", "cuda")."""

    name = "probe"
    metrics = ("probe",)
    directions: ClassVar[dict[str, int]] = _directions()
    heavy = False  # ~0.1M parameters: cheaper than shipping images to another actor

    def __init__(self, weights: str | None = None, device: str = "cpu", **options: Any):
        super().__init__(**options)
        from harness.toyworld.probes import load_probes

        self.probes = load_probes(weights, device=device, option=f"scorers.{self.name}.weights")

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
        return columns

