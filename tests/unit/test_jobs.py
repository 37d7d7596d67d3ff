"""Job files are validated before anything runs; every mistake is one line naming the field."""

import pytest

from harness.jobs import JobError, default_job, load_job, parse_index

BASE = {"name": "t", "method": "locogen", "prompts": [{"prompt": "a house", "target": "a painting"}]}


def job(**changes):
    return load_job({**BASE, **changes})


def error_of(**changes) -> str:
    with pytest.raises(JobError) as info:
        job(**changes)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_are_filled_in():
    spec = job()
    assert spec.model == "tiny:sd15" and spec.window == 1 and spec.seeds == [0] and spec.step_start == [0]
    assert spec.metrics == ["mse", "psnr", "ssim"] and spec.executor.backend == "ray"


def test_branch_defaults_per_method():
    assert job().effective_branch == "cond"
    assert job(method="attn_patch").effective_branch == "both"


def test_embedded_default_job_is_valid():
    spec = default_job()
    assert spec.method == "locogen" and spec.model == "tiny:sd15+planted=cross_attn#8"


@pytest.mark.parametrize("text, expected", [
    (5, [5]), ("40-43", [40, 41, 42, 43]), ("0-1,8,10-11", [0, 1, 8, 10, 11]), ([3, 4], [3, 4]), (None, None)])
def test_index_ranges(text, expected):
    assert parse_index(text) == expected


def test_scalar_step_start_and_seed_ranges_become_lists():
    assert job(step_start=4).step_start == [4]
    assert job(seeds="0-3").seeds == [0, 1, 2, 3]


def test_unknown_key_suggests_the_closest():
    assert error_of(windw=2) == "job: windw: unknown key (did you mean 'window'?)"


def test_unknown_nested_key_suggests_the_closest():
    message = error_of(prompts=[{"prompt": "a", "targt": "b"}])
    assert message == "job: prompts[0].targt: unknown key (did you mean 'target'?)"
    assert "did you mean 'workers'" in error_of(executor={"workrs": 2})


def test_method_must_be_known():
    assert "method: got 'locogn'" in error_of(method="locogn")


def test_locogen_needs_a_target():
    assert error_of(prompts=[{"prompt": "a"}]).startswith("job: prompts[0].target: required for method 'locogen'")


def test_causal_trace_needs_a_concept_that_occurs_in_the_prompt():
    assert "prompts[0].concept: required" in error_of(method="causal_trace", prompts=[{"prompt": "a cat"}])
    message = error_of(method="causal_trace", prompts=[{"prompt": "a cat", "concept": "dog"}])
    assert "prompts[0]: concept: 'dog' is not a whole word or phrase of 'a cat'" in message
    # whole words only, with the closest words of the prompt as a hint
    message = error_of(method="causal_trace", prompts=[{"prompt": "two dogs on a sofa", "concept": "dog"}])
    assert "concept: 'dog' is not a whole word or phrase of 'two dogs on a sofa' (did you mean 'dogs'?)" in message
    assert "concept: 'red'" in error_of(method="causal_trace",
                                        prompts=[{"prompt": "a checkered background", "concept": "red"}])


def test_attribute_is_the_category_and_concept_the_words_in_the_prompt():
    row = job(prompts=[{"prompt": "a house by Van Gogh", "target": "a house", "attribute": "style",
                        "concept": "van gogh"}]).prompts[0]
    assert (row.attribute, row.concept) == ("style", "van gogh")
    assert "unknown attribute 'stlye' (did you mean 'style'?)" in error_of(
        prompts=[{"prompt": "a house", "target": "a", "attribute": "stlye"}])


@pytest.mark.parametrize("row", [
    {"prompt": "a house in the style of van gogh", "target": "a house", "attribute": "van gogh", "concept": "style"},
    {"prompt": "a house in the style of van gogh", "target": "a house", "attribute": "van gogh"},
    {"prompt": 'A sign that says "hello".', "target": 'A sign that says "bye".', "concept": "text"},
])
def test_a_row_in_the_old_schema_gets_one_line_saying_what_changed(row):
    message = error_of(prompts=[row])
    assert message.startswith("job: prompts[0]: old prompt schema")
    assert "'attribute' is now the category (style, object, fact, action, color, text, shape, background)" in message
    assert "'concept' the words in the prompt that carry it" in message


def test_an_old_schema_prompt_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "old.csv").write_text("prompt,target,attribute,concept\na cat by monet,a cat,monet,style\n")
    (tmp_path / "a.yaml").write_text("name: a\nmethod: locogen\nprompts: old.csv\n")
    with pytest.raises(JobError, match=r"a.yaml: prompts\[0\]: old prompt schema"):
        load_job(tmp_path / "a.yaml")


def test_every_shipped_prompt_file_is_in_the_new_schema():
    from pathlib import Path

    from harness.jobs import ATTRIBUTES, read_prompt_file

    files = sorted((Path(__file__).parents[2] / "jobs" / "prompts").glob("*.csv"))
    assert len(files) >= 5
    for path in files:
        rows = read_prompt_file(path)
        job(method="locogen" if all("target" in r for r in rows) else "causal_trace", prompts=rows)  # every row
        assert all(r["attribute"] in ATTRIBUTES and r["concept"].lower() in r["prompt"].lower() for r in rows), path


def test_unknown_metric_suggests_the_closest():
    assert "unknown metric 'ssmi'" in error_of(metrics=["mse", "ssmi"])
    assert "did you mean 'ssim'" in error_of(metrics=["ssmi"])


def test_bad_index_range_names_the_field():
    assert error_of(sites={"kind": "cross_attn", "index": "4-x"}).startswith("job: sites.index: expected")


def test_window_and_steps_are_checked():
    assert "window" in error_of(window=0)
    assert "step_start: expected steps >= 0" in error_of(step_start=-1)
    assert "duplicate seeds" in error_of(seeds=[1, 1])


def test_name_must_be_usable_as_a_directory():
    assert error_of(name="a/b").startswith("job: name:")


def test_yaml_syntax_error_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nprompts: [{prompt: a\n")
    with pytest.raises(JobError, match=r"bad.yaml: line \d+ not valid YAML"):
        load_job(path)


def test_prompts_from_csv_and_jsonl(tmp_path):
    (tmp_path / "p.csv").write_text("prompt,target,attribute,concept\na house by monet,a house,style,monet\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a dog", "target": "a cat"}\n')
    (tmp_path / "a.yaml").write_text("name: a\nmethod: locogen\nprompts: p.csv\n")
    (tmp_path / "b.yaml").write_text("name: b\nmethod: locogen\nprompts: p.jsonl\n")
    assert load_job(tmp_path / "a.yaml").prompts[0].concept == "monet"
    assert load_job(tmp_path / "b.yaml").prompts[0].target == "a cat"


def test_missing_prompt_file_names_the_file(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nmethod: locogen\nprompts: nope.csv\n")
    with pytest.raises(JobError, match=r"prompts: file '.*nope.csv' does not exist"):
        load_job(tmp_path / "a.yaml")


def test_fingerprint_ignores_execution_settings_only():
    assert job().fingerprint() == job(executor={"workers": 3}, batch_size=4).fingerprint()
    assert job().fingerprint() != job(window=2).fingerprint()


def test_a_step_window_that_patches_nothing_is_refused():
    assert "step_end: 2 must be above step_start (5)" in error_of(step_start=5, step_end=2)


def test_prompt_ids_must_be_unique():
    rows = [{"prompt": "a house", "target": "b", "id": "x"}, {"prompt": "a cat", "target": "b", "id": "x"}]
    assert "prompts: id 'x' is used by more than one row" in error_of(prompts=rows)


def test_options_of_an_unknown_scorer_are_refused_not_ignored():
    assert "toxicty: unknown scorer (did you mean 'toxicity'?)" in error_of(scorers={"toxicty": {}})
    assert "clip_score: unknown scorer (did you mean 'clip'?)" in error_of(scorers={"clip_score": {}})


def test_set_overrides_apply_dotted_keys_on_top_of_the_file(tmp_path):
    path = tmp_path / "j.yaml"
    path.write_text("name: t\nmethod: locogen\nprompts: [{prompt: a house, target: a painting}]\n")
    spec = load_job(path, overrides=["window=3", "executor.backend=local", "sites.kind=cross_attn"])
    assert (spec.window, spec.executor.backend, spec.sites.kind) == (3, "local", ["cross_attn"])


@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "{}\n"])
def test_an_empty_job_file_says_so_and_names_the_keys_a_job_needs(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(JobError) as info:
        load_job(path)
    message = str(info.value)
    assert message.startswith(f"{path}: empty job file: a job needs at least name, method, prompts")
    assert "NoneType" not in message and "\n" not in message
