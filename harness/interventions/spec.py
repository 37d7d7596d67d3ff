"""Intervention recipes: one image to generate (`Sample`) and the moves done to the model while it is.

Plain frozen dataclasses with no torch in them: methods build them (`harness.methods`), the packer groups
them into batches (`harness.run.packing`), the hooks carry them out (`harness.interventions.hooks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Branch = Literal["cond", "both"]
POSITIONS = ("first_subject", "middle_subject", "last_subject", "last")


@dataclass(frozen=True)
class StepWindow:
    """Denoising steps [start, end) during which an intervention is active; step 0 is the noisiest.

    A step is a *scheduler* step: one entry of the scheduler's ``timesteps``, one denoiser call (CFG halves
    are batched into the call). For most schedulers that is one inference step; SD1.x's PNDM repeats its
    first timestep as a warm-up, so its N inference steps are N + 1 steps here, and the warm-up is step 1
    (`tests/integration/test_step_counting.py`)."""

    start: int = 0
    end: int | None = None

    def active(self, step: int) -> bool:
        return step >= self.start and (self.end is None or step < self.end)

    def count(self, total: int) -> int:
        """How many of `total` steps are intervened on (P3's t_s; docs/methods.md §5 item 8)."""
        end = total if self.end is None else min(self.end, total)
        return max(0, end - self.start)


@dataclass(frozen=True)
class KVSwap:
    """Text-side K and V at `sites` computed from prompt `source` instead of the row's own prompt."""

    sites: tuple[str, ...]
    source: str
    mode: Literal["inject", "patch"] = "inject"
    heads: tuple[int, ...] | None = None
    steps: StepWindow = StepWindow()
    branch: Branch = "cond"


@dataclass(frozen=True)
class Restore:
    """Output of `site` copied from the clean row of the same prompt and seed.

    `what` is ``state`` or ``contribution`` (`harness.sites`: at a ResNet the state is the block's output
    and the contribution its residual branch's); None copies the site's output as it is (P1).
    """

    site: str
    position: str | None = None  # token position name, for text-encoder sites only
    steps: StepWindow = StepWindow()
    branch: Branch = "cond"
    what: Literal["state", "contribution"] | None = None

    @property
    def in_text_encoder(self) -> bool:
        return self.site.startswith("text_encoder")


@dataclass(frozen=True)
class Corruption:
    """Noise of `scale` × σ on the input token embeddings of `concept`'s tokens (P1's corrupted run).

    σ (`std`, per text encoder): ``subject`` = the std of the token embeddings of `subjects` (every concept
    of the job; ROME's ``collect_embedding_std``, the job default), ``embedding`` = the std of the encoder's
    whole token-embedding matrix (docs/methods.md §1.2), or a number used for every encoder. `seed` is the job's ``noise_seed``
    plus the noise draw.
    """

    concept: str  # the words whose token embeddings are noised (a prompt row's `concept`)
    scale: float = 3.0
    seed: int = 0
    std: str | float = "embedding"
    subjects: tuple[str, ...] = ()  # for std "subject"


@dataclass(frozen=True)
class Sample:
    """One image to generate: prompt, seed, and what is done to the model while generating it (not to be
    confused with a *result row*, `harness.results.schema`, which records a generated sample)."""

    prompt: str
    seed: int
    corruption: Corruption | None = None
    swaps: tuple[KVSwap, ...] = ()
    restores: tuple[Restore, ...] = ()

    @property
    def is_plain(self) -> bool:
        return self.corruption is None and not self.swaps and not self.restores

    @property
    def text_restores(self) -> tuple[Restore, ...]:
        return tuple(r for r in self.restores if r.in_text_encoder)

    @property
    def denoiser_restores(self) -> tuple[Restore, ...]:
        return tuple(r for r in self.restores if not r.in_text_encoder)

    @property
    def first_denoiser_step(self) -> float:
        """The first step at which anything acts on this row's denoiser (inf: never)."""
        starts = [s.steps.start for s in self.swaps] + [r.steps.start for r in self.denoiser_restores]
        return min(starts, default=float("inf"))

    @property
    def text_key(self) -> tuple:
        """Rows with equal keys have identical text conditioning."""
        return (self.prompt, self.corruption, self.text_restores)

