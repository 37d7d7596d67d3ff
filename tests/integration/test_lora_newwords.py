"""The toyworld LoRA comparison (analysis.lora_newwords), CI-sized: three arms on the same data and steps, the
base model beside them, every measure with an interval over prompts and the paired difference to the localized
arm. (Two steps teach nothing: this checks the pipeline and the bookkeeping; the full run's numbers are in the
model card.)"""

import numpy as np

from analysis.lora_newwords import MARKER, MEASURES, NEW_WORDS, PROBES, SHORT, record, report, run


def test_the_new_word_probes_read_renders_of_old_and_new_words():
    from harness.toyworld import world
    from harness.toyworld.probes import load_probes

    probes = load_probes(PROBES)
    words = [*world.WORDS, *NEW_WORDS]
    assert probes.labels["word"] == words
    signs = [world.Sample(None, None, "plain", w, t.format(word=w), 7 + i) for i, w in enumerate(words)
             for t in world.WORD_TEMPLATES]
    read = probes.predict(np.stack([world.render(s, 32) for s in signs]))["word"][0]
    assert read == [s.word for s in signs]


def test_three_arms_same_data_and_steps_with_intervals_over_prompts(tmp_path):
    summary = run(tmp_path, SHORT, log=lambda *_: None)
    arms = summary["arms"]
    assert list(arms) == ["base", "localized", "all_attention", "random"]
    assert arms["localized"]["sites"] == ["cross_attn#1"] and arms["random"]["sites"] == ["cross_attn#5"]  # seed 42
    # rank 4 on to_q/k/v/out, r x (in + out) each: the 64-wide layer 4 x 4 x (64 + 64); the 32-wide one reads 64-wide text
    assert arms["localized"]["trainable_params"] == 4 * 4 * (64 + 64)
    assert arms["random"]["trainable_params"] == 2 * 4 * (32 + 32) + 2 * 4 * (64 + 32)
    assert arms["all_attention"]["trainable_params"] > 10 * arms["localized"]["trainable_params"]
    for arm, table in summary["accuracy"].items():
        for name, _, _ in MEASURES:
            entry = table[name]
            assert entry["prompts"] > 0 and entry["ci"][0] <= entry["accuracy"] <= entry["ci"][1]
            assert ("minus_localized" in entry) == (arm in ("all_attention", "random"))
    assert summary["accuracy"]["base"]["new words"]["accuracy"] == 0.0  # the model never drew them
    text = (tmp_path / "report.md").read_text()
    assert text == report(summary) + "\n" and "| localized | cross_attn#1 | 2,048" in text
    assert (tmp_path / "rows.csv").is_file() and (tmp_path / "adapters" / "random" / "manifest.json").is_file()
    card, readme = tmp_path / "card.md", tmp_path / "readme.md"
    card.write_text("# card\n")
    readme.write_text(f"intro\n{MARKER}\nmore\n")
    longer = {**summary, "settings": {**summary["settings"], "steps": 4}}
    for run_summary in (summary, summary, longer):  # the same steps again replace that run; other steps are added
        record(run_summary, card, readme, keep=tmp_path / "kept.json")
    assert card.read_text().count("## Teaching new words") == 1 and "| localized | cross_attn#1" in card.read_text()
    assert card.read_text().count("### 2 steps") == 1 and card.read_text().index("### 2 steps") < card.read_text().index(
        "### 4 steps")
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("more\n")
    assert readme.read_text().count("### Teaching new words") == 1 and "#### 4 steps" in readme.read_text()


def test_the_shipped_job_is_the_full_runs_localized_arm():
    from pathlib import Path

    from analysis.lora_newwords import Settings, arm_specs
    from harness.finetune import load_finetune

    job = load_finetune(Path(__file__).parents[2] / "jobs" / "finetune" / "toyworld_new_words.yaml")
    assert job.fingerprint() == load_finetune(arm_specs(Settings(), None)["localized"]).fingerprint()
