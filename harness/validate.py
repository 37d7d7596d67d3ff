"""One validation of a job against a model, shared by `loco plan` (against the model's shape, read without
weights: `harness.model_shape`) and the sweep's worker (against the loaded model), so the two agree on what
a job may ask of a model:

* the site selection, the window, the explicit site sets — the method's own planner over the model's site
  table (a window of 12 on the toyworld's 7 layers is refused by both);
* the step window against the denoiser's calls for the job's steps (PNDM makes one more call than steps,
  so ``step_start: 10`` of 10 steps is valid on tiny SD1.x, for the plan as for the sweep);
* the prompts against the text encoders' token limits (`harness.prompt_limits`): a causal-tracing concept
  past them is refused, a prompt or target the pipeline cuts is returned as a warning.
"""

from __future__ import annotations

from harness.methods import Variant, plan_variants
from harness.prompt_limits import check_token_limits
from harness.run.plan import check_step_window
from harness.sites import SiteTable


def validate_job(job, table: SiteTable, calls: int, tokenizers: dict, text=lambda prompt: prompt
                 ) -> tuple[list[Variant], list[str]]:
    """The job's variants on `table` and its warnings; `JobError` for what the model cannot run."""
    variants = plan_variants(job, table)
    check_step_window(job, calls)
    return variants, check_token_limits(job, tokenizers, text)
