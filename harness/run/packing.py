"""Packing: samples into batches that keep every sample's control and donor/clean sample beside it.

Measuring every row against the control *of its own batch* makes an intervention with no effect read
exactly zero, whatever the batch size: rows of one batch share their numerics bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.interventions import Sample


def anchors(sample: Sample) -> list[Sample]:
    """Samples that must share `sample`'s batch: the donor of every patch swap, the clean sample of a
    denoiser restore."""
    need = [Sample(s.source, sample.seed) for s in sample.swaps if s.mode == "patch"]
    if sample.denoiser_restores:
        need.append(Sample(sample.prompt, sample.seed))
    return need


@dataclass(frozen=True)
class Comparison:
    """One image to produce, `sample`, measured against `control` generated in the same batch."""

    sample: Sample
    control: Sample

    @property
    def needs(self) -> list[Sample]:
        return list(dict.fromkeys([*anchors(self.sample), self.control, self.sample]))


def pack(items: list[Comparison], batch_size: int) -> list[list[Sample]]:
    """Batches of distinct samples, at most `batch_size` each, such that every item's sample, control and
    anchors share a batch (an item that alone exceeds a tiny `batch_size` gets a batch of its own)."""
    batches: list[list[Sample]] = []
    current: list[Sample] = []
    for item in items:
        new = [r for r in item.needs if r not in current]
        if current and len(current) + len(new) > batch_size:
            batches.append(current)
            current, new = [], item.needs
        current.extend(new)
    if current:
        batches.append(current)
    return batches
