"""Metrics: scorers turn generated images into numbers for the result rows.

A scorer is built once per worker (it may hold a model), scores a whole batch at a time, and says who it
is: `identity()` returns columns such as ``clip_model``/``clip_weights`` that are written into every row
next to the values, so a number can always be traced to the weights that produced it.

Every metric column also declares its *direction*: +1 when a larger value means the intervened image is
further from the un-intervened one (MSE), −1 when smaller means further (SSIM, PSNR). Ranking uses it to
sort by effect without the user having to remember which way each metric points.

Register a scorer with `@register("metric", "other_metric")`; a job's ``metrics:`` list names metrics,
and `build_scorers` instantiates each needed scorer once.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from harness.errors import UserError, did_you_mean


@dataclass
class ScoreBatch:
    """What scorers see: row-aligned images and the texts they should be compared with."""

    images: np.ndarray  # uint8 (N, H, W, 3): the images to score
    references: np.ndarray | None = None  # uint8 (N, H, W, 3): each row's un-intervened (control) image
    prompts: list[str] = field(default_factory=list)  # the prompt each image was generated from (A)
    targets: list[str | None] = field(default_factory=list)  # the prompt fed at intervened sites (B)
    texts: list[str | None] = field(default_factory=list)  # text prompt A asks to render (P3)
    target_texts: list[str | None] = field(default_factory=list)  # text prompt B asks to render
    attributes: list[str | None] = field(default_factory=list)  # the row's `attribute` (color, style, text, ...)

    def __len__(self) -> int:
        return len(self.images)

    def select(self, rows: list[int]) -> ScoreBatch:
        """The batch of rows `rows` only."""
        pick = lambda column: [column[i] for i in rows] if column else column  # noqa: E731
        return ScoreBatch(self.images[rows], None if self.references is None else self.references[rows],
                          pick(self.prompts), pick(self.targets), pick(self.texts), pick(self.target_texts),
                          pick(self.attributes))


class Scorer(ABC):
    """Base class: subclasses set `metrics` and `directions`, and implement `score`."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # names a job may list under `metrics:`
    directions: ClassVar[dict[str, int]] = {}  # column -> +1/-1 (see module docstring); 0 = not an effect
    # Model-backed scorers (CLIP, OCR, ...) run in their own Ray actors, overlapped with generation;
    # cheap pure functions (image distances) run in the generation worker.
    heavy: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False  # compares each image with the un-intervened one

    def __init__(self, **unknown: Any):
        """Subclasses take their options as keyword arguments and pass on the rest, which are mistakes."""
        reject_unknown(self.name, unknown)

    @abstractmethod
    def score(self, batch: ScoreBatch) -> dict[str, list]:
        """Column name -> one value per row of `batch` (None where undefined for that row)."""

    def identity(self) -> dict[str, str]:
        """Columns naming the model and weights behind the values; empty for pure functions."""
        return {}


def image_digest(image: np.ndarray) -> str:
    """A content key for an image (shape included): scorers cache per-image work under it."""
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() + str(image.shape)


class ScorerError(UserError):
    """A scorer cannot be built as configured (weights missing or not cached, a bad option). The message
    is one line naming the option as the job spells it, e.g. ``scorers.clip.weights``."""


def reject_unknown(scorer: str, options: dict[str, Any]) -> None:
    """ScorerError naming ``scorers.<scorer>`` and the options a scorer's constructor did not take."""
    if options:
        raise ScorerError(f"scorers.{scorer}: unknown option(s) {', '.join(sorted(options))}")


_REGISTRY: dict[str, type[Scorer]] = {}


def register(*metric_names: str):
    """Class decorator: make `metric_names` resolvable to this scorer."""

    def wrap(cls: type[Scorer]) -> type[Scorer]:
        for name in metric_names:
            _REGISTRY[name] = cls
        return cls

    return wrap


def known_metrics() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def check_metric(name: str, where: str | None = "metrics") -> None:
    """ScorerError (a ValueError, so pydantic reports it too) naming `where` (if given) and the closest
    known metric when `name` is unknown."""
    _load_builtin()
    if name not in _REGISTRY:
        prefix = f"{where}: " if where else ""
        # a scorer's name (`clip`) suggests its first metric (`clip_score`), not whichever name is closest
        by_scorer = {cls.name: metric for metric, cls in reversed(list(_REGISTRY.items()))}
        hint = did_you_mean(name, _REGISTRY, default=by_scorer.get(name))
        raise ScorerError(f"{prefix}unknown metric '{name}'{hint}; known: {', '.join(known_metrics())}")


def check_scorer_names(options: dict[str, Any], where: str = "scorers") -> None:
    """ScorerError naming `where.<name>` and the closest scorer when an options key names no scorer
    (options of a mistyped scorer would otherwise be ignored without a word)."""
    _load_builtin()
    names = sorted({cls.name for cls in _REGISTRY.values()})
    by_metric = {metric: cls.name for metric, cls in _REGISTRY.items()}
    for key in options:
        if key not in names:
            field = f"{where}.{key}" if where else key
            hint = did_you_mean(key, names, default=by_metric.get(key))
            raise ScorerError(f"{field}: unknown scorer{hint}; scorers: {', '.join(names)}")


def build_scorers(metric_names: list[str], options: dict[str, dict] | None = None,
                  instantiate: bool = True, heavy: bool | None = None) -> list:
    """One scorer instance per scorer class needed by `metric_names`, with its job options (the classes
    themselves with `instantiate=False`); only the model-backed ones (`heavy=True`) or only the others
    (`heavy=False`) when asked."""
    _load_builtin()
    options = options or {}
    classes: list[type[Scorer]] = []
    for name in metric_names:
        check_metric(name)
        cls = _REGISTRY[name]
        if cls not in classes and heavy in (None, cls.heavy):
            classes.append(cls)
    if not instantiate:
        return classes
    return [cls(**options.get(cls.name, {})) for cls in classes]


# Metric columns measured inside the model while it generates, not scored from its images: the attention
# contribution of method `attn_contrib` (`harness.contribution`); larger = the block carries more of the concept.
MEASURED_DIRECTIONS = {"attn_contrib": +1, "attn_contrib_bias": +1}


def direction(column: str) -> int:
    """+1/-1 effect direction of a metric column (0 when the column is not an effect measure)."""
    _load_builtin()
    for cls in set(_REGISTRY.values()):
        if column in cls.directions:
            return cls.directions[column]
    return MEASURED_DIRECTIONS.get(column, 0)


def score_all(scorers: list[Scorer], batch: ScoreBatch) -> dict[str, list]:
    """Run every scorer on `batch`; identity columns are broadcast to every row. Rows that are the same image
    with the same reference and texts (a measuring method's rows: every block's row of a prompt and seed
    holds the one plain image) are scored once."""
    keys = [(image_digest(batch.images[i]),
             None if batch.references is None else image_digest(batch.references[i]),
             *(column[i] if column else None for column in (batch.prompts, batch.targets, batch.texts,
                                                             batch.target_texts, batch.attributes)))
            for i in range(len(batch))]
    first: dict = {}  # key -> its first row
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    if len(first) < len(batch):
        where = {key: j for j, key in enumerate(first)}
        distinct = score_all(scorers, batch.select(list(first.values())))
        return {column: [values[where[k]] for k in keys] for column, values in distinct.items()}
    columns: dict[str, list] = {}
    for scorer in scorers:
        for key, values in scorer.score(batch).items():
            if len(values) != len(batch):
                raise RuntimeError(f"scorer {scorer.name} returned {len(values)} values for {len(batch)} rows")
            columns[key] = list(values)
        for key, value in scorer.identity().items():
            columns[key] = [value] * len(batch)
    return columns


def _load_builtin() -> None:
    """Import the built-in scorer modules so their @register decorators run."""
    from harness.metrics import clip, image, notext, ocr, perceptual, probe, toxicity  # noqa: F401
