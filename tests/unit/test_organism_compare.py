"""The DiT model card's side-by-side sections, on hand-made runs with a known answer: two localizers that
find the same one block agree exactly (τ = 1, top-K overlap 1 of 1), and the comparison with the UNet
organism names each organism's top site with its effect and relative depth."""

from analysis_fixtures import make_run, swap_rows

from analysis.organism_compare import agreement_section, comparison_section

PROMPTS = [f"p{k:02d}" for k in range(12)]


def demo_with_block(root, block: int, n_sites: int = 4):
    """A demo folder whose LocoGen and patching runs both find `block` (and nothing elsewhere) for colour."""
    demo = root / f"demo-{block}"
    make_run(demo / "runs", "locogen", "locogen",
             swap_rows(lambda i, p: -0.5 if i == block else 0.0, PROMPTS, [0], n_sites, attribute="color",
                       concept="red", metric="probe_p_prompt", control=0.9), n_sites=n_sites, model_id="toyworld-dit")
    make_run(demo / "runs", "attn-patch", "attn_patch",
             swap_rows(lambda i, p: 0.5 if i == block else 0.0, PROMPTS, [0], n_sites, attribute="color",
                       concept="red", metric="probe_p_target", control=0.05, seed=1), n_sites=n_sites,
             model_id="toyworld-dit")
    return demo


def test_two_localizers_that_find_the_same_block_agree_exactly(tmp_path):
    text = agreement_section(demo_with_block(tmp_path, 2), n_boot=300)
    (row,) = [line for line in text.splitlines() if line.startswith("| color |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert sorted(cells[1:3]) == ["LocoGen", "patching"]
    assert cells[3:] == ["12", "4", "+1.00", "1 of 1", "cross_attn#2", "cross_attn#2"]


def test_the_comparison_names_each_organisms_top_site_and_its_depth(tmp_path):
    text = comparison_section(demo_with_block(tmp_path, 3), demo_with_block(tmp_path, 1), n_boot=300)
    (row,) = [line for line in text.splitlines() if line.startswith("| color |")]
    unet, unet_trace, dit, dit_trace = [c.strip() for c in row.strip("|").split("|")][1:]
    assert unet.startswith("cross_attn#1 -0.50") and unet.endswith("depth 0.33")
    assert dit.startswith("cross_attn#3 -0.50") and dit.endswith("depth 1.00")
    assert unet_trace == dit_trace == "not run"
    assert "nothing to compare" in comparison_section(tmp_path / "dit", None, n_boot=100)
