"""The model card's causal-tracing section says, per attribute, whether the corruption worked and where P1's
text-encoder state (layer 0's self-attention at the last subject token) stands, and why."""

from analysis_fixtures import make_run

from analysis.toyworld_card import TEXT_STATE, causal_tracing_section

PROMPTS = [f"p{k:02d}" for k in range(12)]
STATES = {TEXT_STATE: 0.8, "text_self_attn#1@last_subject": 0.0, "resnet#3": 0.0}


def rows(attribute: str, corrupted: float) -> list[dict]:
    """Clean 1.0; the text state restores `corrupted` + 0.8 (capped at 1), the others nothing."""
    out = []
    noise = {"noise_rule": "subject", "noise_scale": 3.0, "noise_std": [0.05]}
    for k, p in enumerate(PROMPTS):
        base = {"prompt_id": f"{attribute}-{p}", "prompt": f"prompt {p}", "attribute": attribute, "concept": "x",
                "seed": 0}
        out.append(base | {"role": "control", "variant": "control", "probe_p_prompt": 1.0})
        value = corrupted + 0.001 * (k % 3)  # prompts differ a little
        out.append(base | noise | {"role": "corrupted", "variant": "corrupted", "noise_draw": 0, "probe_p_prompt": value})
        for i, (label, gain) in enumerate(STATES.items()):
            out.append(base | noise | {
                "role": "variant", "variant": label, "site": f"s{i}", "sites": [f"s{i}"], "kind": label.split("#")[0],
                "site_index": i, "indices": [i], "position": "last_subject" if "@" in label else None, "noise_draw": 0,
                "probe_p_prompt": min(1.0, value + gain) + 0.0001 * k})
    return out


def test_the_card_says_the_corruption_worked_and_finds_the_text_state_or_says_why_not(tmp_path):
    demo = tmp_path / "demo"
    make_run(demo / "runs", "causal-trace", "causal_trace", rows("color", 0.1) + rows("shape", 1.0), n_sites=3)
    text = causal_tracing_section(demo, 500)
    assert "κ = 3 × σ = 0.05 (`noise_std: subject`), 1 noise draw per prompt" in text
    color = next(line for line in text.splitlines() if line.startswith("| color |"))
    shape = next(line for line in text.splitlines() if line.startswith("| shape |"))
    assert "| worked |" in color and f"{TEXT_STATE}" in color and "**found**: rank 1 of 3" in color
    assert "(4 / 8)" in color  # the threshold's validation / test split
    assert "**ineffective**" in shape and "none (corruption ineffective)" in shape
    assert "not found (corruption ineffective)" in shape
