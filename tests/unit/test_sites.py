"""Sites have one naming scheme across architectures and are numbered in forward-call order."""

import pytest

from harness.sites import SiteError
from tests.conftest import tiny

# docs/methods.md §2.2 and §3.2: the papers' layer maps.
SD15_CROSS_ATTN = (
    [f"unet.down_blocks.{b}.attentions.{a}.transformer_blocks.0.attn2" for b in range(3) for a in range(2)]
    + ["unet.mid_block.attentions.0.transformer_blocks.0.attn2"]
    + [f"unet.up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn2" for b in (1, 2, 3) for a in range(3)]
)


def test_sd15_has_16_cross_attention_layers_in_locogen_order():
    assert [s.name for s in tiny("sd15").sites.of_kind("cross_attn")] == SD15_CROSS_ATTN


def test_sdxl_forward_order_matches_p3_counter():
    sites = tiny("sdxl").sites.of_kind("cross_attn")
    assert len(sites) == 70
    assert sites[0].name == "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2"
    assert sites[24].name == "unet.mid_block.attentions.0.transformer_blocks.0.attn2"
    # P3's localized layers: 55, 56, 57 = up_blocks.0.attentions.2.transformer_blocks.{1,2,3}
    assert [sites[i].name for i in (55, 56, 57)] == [
        f"unet.up_blocks.0.attentions.2.transformer_blocks.{k}.attn2" for k in (1, 2, 3)]
    # LocoGen's SDXL window start 45
    assert sites[45].name == "unet.up_blocks.0.attentions.1.transformer_blocks.1.attn2"
    assert sites[69].name == "unet.up_blocks.1.attentions.2.transformer_blocks.1.attn2"


def test_if_has_22_text_attentions_and_index_17_is_in_the_up_path():
    sites = tiny("if").sites.of_kind("cross_attn")
    assert len(sites) == 22
    assert sites[17].name == "unet.up_blocks.1.attentions.3"
    assert all(s.module_type == "Attention" for s in sites)


def test_sd3_has_24_joint_attention_blocks():
    sites = tiny("sd3").sites.of_kind("joint_attn")
    assert [s.name for s in sites] == [f"transformer.transformer_blocks.{i}.attn" for i in range(24)]


def test_sd15_component_counts_match_p1_figure():
    table = tiny("sd15").sites
    # P1's 70 UNet components: 22 ResNets + 16 transformer blocks × {attn1, attn2, ff}
    assert sum(len(table.of_kind(k)) for k in ("resnet", "self_attn", "cross_attn", "ff")) == 70
    assert len(table.of_kind("text_self_attn")) == len(table.of_kind("text_mlp")) > 0


def test_forward_order_is_not_name_order():
    names = [s.name for s in tiny("sd3").sites.of_kind("joint_attn")]
    assert sorted(names)[2] == "transformer.transformer_blocks.10.attn"  # what name sorting would call #2
    assert names[2] == "transformer.transformer_blocks.2.attn"


def test_text_encoder_sites_are_named_by_component():
    sites = tiny("sdxl").sites
    encoders = {s.component for s in sites.sites if s.kind.startswith("text_")}
    assert encoders == {"text_encoder", "text_encoder_2"}
    assert sites.of_kind("text_self_attn")[0].name.startswith("text_encoder.")


def test_select_by_kind_index_and_glob():
    table = tiny("sdxl").sites
    assert [s.index for s in table.select(kinds=["cross_attn"], indices=[55, 56, 57])] == [55, 56, 57]
    picked = table.select(names=["unet.up_blocks.0.attentions.2.*.attn2"])
    assert [s.index for s in picked] == list(range(54, 64))


def test_unknown_site_names_the_closest_real_sites():
    table = tiny("sd15").sites
    with pytest.raises(SiteError, match=r"closest: unet\.mid_block\.attentions\.0\.transformer_blocks\.0\.attn2"):
        table["unet.mid_block.attentions.0.transformer_blocks.0.attn3"]
    with pytest.raises(SiteError, match="no site matches 'unet.mid_blok.*'"):
        table.select(names=["unet.mid_blok.*"])


def test_unknown_kind_and_out_of_range_index():
    table = tiny("sd15").sites
    with pytest.raises(SiteError, match="did you mean 'cross_attn'"):
        table.select(kinds=["cros_attn"])
    with pytest.raises(SiteError, match="16 is out of range; this selection has indices 0..15"):
        table.select(kinds=["cross_attn"], indices=[16])


def test_table_formats_and_records():
    table = tiny("sd3").sites
    assert "joint_attn" in table.format("joint_attn")
    record = table.to_records()[0]
    assert set(record) >= {"name", "kind", "index", "module_type", "params", "label"}


def test_sd35_image_only_attn2_is_not_a_text_reading_site():
    from diffusers.models.attention import BasicTransformerBlock, JointTransformerBlock

    from harness.sites import classify

    block = JointTransformerBlock(dim=16, num_attention_heads=2, attention_head_dim=8, context_pre_only=False,
                                  use_dual_attention=True)  # SD3.5: a second, image-only attention
    assert classify("transformer", "transformer_blocks.0.attn2", block.attn2) == "self_attn"
    assert classify("transformer", "transformer_blocks.0.attn", block.attn) == "joint_attn"
    sd = BasicTransformerBlock(dim=16, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=32)
    assert classify("unet", "down_blocks.0.attentions.0.transformer_blocks.0.attn2", sd.attn2) == "cross_attn"


def test_text_encoder_sites_are_numbered_per_encoder():
    for arch, encoders in (("sdxl", ("text_encoder", "text_encoder_2")),
                           ("sd3", ("text_encoder", "text_encoder_2", "text_encoder_3"))):
        table = tiny(arch).sites
        for component in encoders:
            for kind in ("text_self_attn", "text_mlp"):
                sites = [s for s in table.of_kind(kind) if s.component == component]
                assert [s.index for s in sites] == list(range(len(sites))) and sites, (arch, component, kind)
                # forward order within the encoder: layer l's self-attention is 2l, its MLP 2l + 1 (P1's 0..2L-1)
                assert [s.forward_index for s in sites] == [2 * i + (kind == "text_mlp") for i in range(len(sites))]
    table = tiny("sdxl").sites
    second = table.resolve("text_encoder_2.text_self_attn#3")
    assert second.component == "text_encoder_2" and second.name.endswith("layers.3.self_attn")
    assert table.resolve("text_self_attn#3").component == "text_encoder"  # no prefix: the first encoder
    assert second.label == "text_encoder_2.text_self_attn#3"
    assert table.select(names=["text_encoder_2.text_self_attn#3"]) == [second]  # a label selects too
    with pytest.raises(SiteError, match="no site 'text_encoder_2.text_self_attn#9'; this model has text_self_attn "
                                        "sites 0..3"):
        table.resolve("text_encoder_2.text_self_attn#9")


@pytest.mark.parametrize("arch,count", [("sd15", 70), ("sdxl", None)])
def test_forward_index_numbers_every_denoiser_site_in_module_call_order(arch, count):
    adapter = tiny(arch)
    unet = [s for s in adapter.sites.sites if s.component == "unet"]
    called: list[str] = []
    handles = [adapter.module(s.name).register_forward_pre_hook(
        lambda _m, _a, name=s.name: called.append(name) if name not in called else None) for s in unet]
    try:
        cond, neg = adapter.encode(["a photo"]), adapter.encode_negative(1)
        adapter.generate(cond, neg, seeds=[0], steps=1, guidance_scale=2.0, height=32, width=32, decode=False)
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(s.forward_index for s in unet) == list(range(len(unet)))  # a permutation of 0..N-1
    assert [s.name for s in sorted(unet, key=lambda s: s.forward_index)] == called
    assert count is None or len(unet) == count  # P1's Fig. 2 axis: 70 UNet components on SD1.x
    first_cross = adapter.sites.of_kind("cross_attn")[0]
    assert first_cross.index == 0 and first_cross.forward_index > 0  # beside, not instead of, the kind index


@pytest.mark.parametrize("arch", ["sd15", "sdxl", "sd3"])
def test_loco_plan_numbers_text_sites_per_encoder_as_the_sweep_does(arch):
    from harness.jobs import load_job
    from harness.methods import plan_variants
    from harness.preflight import TINY_SITES, plan, stand_in_sites

    job = load_job({"name": "t", "method": "causal_trace", "model": f"tiny:{arch}",
                    "sites": {"kind": "text_self_attn", "index": 3},
                    "prompts": [{"prompt": "a house in the style of van gogh", "concept": "van gogh"}]})
    real = plan_variants(job, tiny(arch).sites)  # layer 3 of every encoder that has one, × 4 positions
    assert len(real) == 4 * sum(1 for s in tiny(arch).sites.of_kind("text_self_attn") if s.index == 3)
    assert plan(job).generations == len(real) + 2
    stand_in = stand_in_sites(TINY_SITES[arch], arch)
    assert {(s.component, s.index) for s in stand_in.of_kind("text_mlp")} == {
        (s.component, s.index) for s in tiny(arch).sites.of_kind("text_mlp")}
