"""Step windows count scheduler steps: the entries of the scheduler's `timesteps`, one denoiser call each,
step 0 the noisiest — for every scheduler the tiny models use, PNDM's warm-up call included (SD1.x's PNDM
with skip_prk_steps repeats its first timestep, so 10 inference steps are 11 scheduler steps)."""

import numpy as np
import pytest

from harness.generate import generate_rows
from harness.interventions import KVSwap, Sample, StepWindow
from harness.jobs import JobError, load_job
from harness.run.plan import plan_units
from harness.run.worker import Worker
from tests.conftest import tiny

A = "a house in the style of van gogh"
B = "a red bicycle leaning on a wall"
SCHEDULERS = {"sd15": "PNDMScheduler", "sdxl": "EulerDiscreteScheduler", "if": "DDPMScheduler",
              "sd3": "FlowMatchEulerDiscreteScheduler"}


@pytest.mark.parametrize("arch", list(SCHEDULERS))
def test_one_step_is_one_scheduler_timestep_and_one_denoiser_call(arch):
    adapter = tiny(arch)
    assert type(adapter.pipe.scheduler).__name__ == SCHEDULERS[arch]
    timesteps = []
    handle = adapter.denoiser.register_forward_pre_hook(
        lambda _m, args, kwargs: timesteps.append(float((args[1] if len(args) > 1 else kwargs["timestep"]).flatten()[0])),
        with_kwargs=True)
    try:
        generate_rows(adapter, [Sample(A, 0)], adapter.defaults)
    finally:
        handle.remove()
    steps = adapter.defaults.steps
    assert timesteps == [float(t) for t in adapter.pipe.scheduler.timesteps]  # call i runs timesteps[i]
    assert len(timesteps) == adapter.denoiser_calls(steps) == steps + (arch == "sd15")
    if arch == "sd15":  # PNDM's warm-up: the first timestep is run twice, and each run is a step
        assert timesteps[1] == timesteps[2] and len(set(timesteps)) == steps


def test_the_last_scheduler_step_of_pndm_can_be_patched_and_is_recorded_as_one_step():
    adapter = tiny("sd15")
    calls = adapter.denoiser_calls(adapter.defaults.steps)
    site = adapter.sites.of_kind("cross_attn")[8].name
    rows = [Sample(A, 0), Sample(B, 0)] + [Sample(A, 0, swaps=(KVSwap((site,), B, steps=StepWindow(s, s + 1)),))
                                             for s in (calls - 1, calls)]
    images = generate_rows(adapter, rows, adapter.defaults, as_float=True)
    assert np.abs(images[2] - images[0]).max() > 0  # step 10 (the 11th call) exists and is patched
    assert np.array_equal(images[3], images[0])  # step 11 does not exist: nothing is patched
    job = {"name": "steps", "method": "attn_patch", "steps": adapter.defaults.steps,
           "sites": {"kind": "cross_attn", "index": 8},
           "prompts": [{"prompt": A, "target": B, "attribute": "text"}]}
    spec = load_job({**job, "step_start": [0, calls - 1]})
    worker = Worker(spec)
    rows = [r for unit in plan_units(spec, worker.variants) for r in worker.run_unit(unit).rows]
    assert {(r["step_start"], r["steps_patched"]) for r in rows if r["role"] == "variant"} == {(0, 11), (10, 1)}
    with pytest.raises(JobError, match="step_start: 11 is not below the 11 denoising steps"):
        Worker(load_job({**job, "step_start": calls}))
