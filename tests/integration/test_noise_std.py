"""Causal tracing's noise is κ·σ on the concept's token embeddings; σ is the token-embedding matrix's std
(P1's default), the std of the job's concepts' token embeddings (ROME), or a given number — per text
encoder — and every row records it."""

import pytest
import torch

from harness.interventions import Corruption, Sample, embedding_std, input_embedding_modules, text_hooks
from harness.jobs import JobError, load_job
from harness.run.plan import plan_units
from harness.run.worker import Worker
from tests.conftest import tiny

A = "a house in the style of van gogh"
CONCEPTS = ("van gogh", "red bicycle")


def added_noise(adapter, corruption: Corruption) -> dict[str, torch.Tensor]:
    """Per text encoder: the corrupted row's token embeddings minus the clean row's."""
    seen: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _a, out, name=name: seen.setdefault(name, out))
               for name, (encoder, _) in adapter.text_encoders().items() for m in input_embedding_modules(encoder)]
    try:  # recorded before the noise hook runs; it adds the noise in place, so `seen` holds the noised output
        with torch.no_grad(), text_hooks(adapter, [Sample(A, 0), Sample(A, 0, corruption=corruption)]):
            adapter.encode([A, A])
    finally:
        for handle in handles:
            handle.remove()
    return {name: out[1] - out[0] for name, out in seen.items()}


def subject_sigma(adapter, name: str) -> float:
    encoder, tokenizer = adapter.text_encoders()[name]
    ids = [i for c in CONCEPTS for i in tokenizer(c, add_special_tokens=False)["input_ids"]]
    return float(encoder.get_input_embeddings().weight.detach()[ids].std())


@pytest.mark.parametrize("arch", ["sdxl", "sd3"])
def test_the_noise_is_kappa_times_sigma_for_each_sigma_source(arch):
    adapter = tiny(arch)
    unit = added_noise(adapter, Corruption("van gogh", 3.0, std=1.0))  # κ·z with σ = 1
    assert all(float(z.abs().max()) > 0 for z in unit.values())
    doubled = added_noise(adapter, Corruption("van gogh", 3.0, std=2.0))
    embedding = added_noise(adapter, Corruption("van gogh", 3.0))
    subject = added_noise(adapter, Corruption("van gogh", 3.0, std="subject", subjects=CONCEPTS))
    for name, (encoder, _) in adapter.text_encoders().items():
        assert torch.allclose(doubled[name], 2 * unit[name], atol=1e-6)
        assert torch.allclose(embedding[name], embedding_std(encoder) * unit[name], atol=1e-6)
        assert torch.allclose(subject[name], subject_sigma(adapter, name) * unit[name], atol=1e-6)
    sigmas = [subject_sigma(adapter, name) for name in adapter.text_encoders()]
    assert len(set(sigmas)) == len(sigmas)  # per encoder: each has its own σ


def trace_rows(**keys) -> list[dict]:
    prompts = [{"prompt": A, "attribute": "style", "concept": "van gogh"},
               {"prompt": "a red bicycle on a wall", "attribute": "object", "concept": "red bicycle"}]
    spec = load_job({"name": "sigma", "method": "causal_trace", "model": "tiny:sdxl", "prompts": prompts,
                     "steps": 2, "sites": {"kind": "resnet", "index": 0}, **keys})
    worker = Worker(spec)
    return [row for unit in plan_units(spec, worker.variants) for row in worker.run_unit(unit).rows]


def test_every_row_records_sigma_per_text_encoder():
    adapter = tiny("sdxl")
    rows = trace_rows(noise_std="subject", noise_scale=2.0)
    assert {r["role"] for r in rows} == {"control", "corrupted", "variant"}
    expected = [subject_sigma(adapter, name) for name in adapter.text_encoders()]
    for row in rows:
        assert row["noise_std"] == pytest.approx(expected) and row["noise_scale"] == 2.0
    assert {tuple(r["noise_std"]) for r in trace_rows(noise_std=0.25)} == {(0.25, 0.25)}


def test_noise_std_must_be_a_known_source_or_a_positive_number():
    base = {"name": "t", "method": "causal_trace", "prompts": [{"prompt": A, "concept": "van gogh"}]}
    with pytest.raises(JobError, match="noise_std"):
        load_job({**base, "noise_std": "vocabulary"})
    with pytest.raises(JobError, match="noise_std: expected 'embedding', 'subject' or a number > 0, got -1"):
        load_job({**base, "noise_std": -1})


def test_the_default_sigma_is_romes_subject_rule_and_rows_name_the_rule():
    adapter = tiny("sdxl")
    rows = trace_rows()  # no noise_std in the job
    expected = [subject_sigma(adapter, name) for name in adapter.text_encoders()]
    assert all(r["noise_std"] == pytest.approx(expected) and r["noise_rule"] == "subject" for r in rows)
    assert {r["noise_rule"] for r in trace_rows(noise_std="embedding")} == {"embedding"}
    assert {r["noise_rule"] for r in trace_rows(noise_std=0.25)} == {"fixed"}


def test_each_noise_draw_is_a_row_with_its_own_noise_and_draw_0_is_the_single_draw_run():
    one, three = trace_rows(), trace_rows(noise_draws=3)
    by = lambda rows, role: {(r["prompt_id"], r["noise_draw"]): r["mse"] for r in rows if r["role"] == role}  # noqa: E731
    assert sorted(by(three, "corrupted")) == [(p, d) for p in ("p00000", "p00001") for d in range(3)]
    assert sorted(by(three, "variant")) == sorted(by(three, "corrupted"))
    assert [r["noise_draw"] for r in three if r["role"] == "control"] == [None, None]  # the clean run: no noise
    for p in ("p00000", "p00001"):
        draws = [by(three, "corrupted")[(p, d)] for d in range(3)]  # each draw its own noise: seed noise_seed + d
        assert min(abs(a - b) for a, b in ((draws[0], draws[1]), (draws[1], draws[2]), (draws[0], draws[2]))) > 0.05
        # draw 0 is the single-draw run's noise (equal up to GEMM rounding between batch sizes, ~1 uint8 level)
        assert draws[0] == pytest.approx(by(one, "corrupted")[(p, 0)], abs=0.005)
    assert len({r["row_id"] for r in three}) == len(three)
