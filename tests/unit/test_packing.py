"""Rows are packed into batches that keep every row's donor or clean row beside it."""

from harness.interventions import Corruption, KVSwap, Restore, Sample
from harness.jobs import load_job
from harness.methods import Variant
from harness.run.packing import Comparison, anchors, pack
from harness.run.plan import plan_units

A, B = "a house", "a painting"


def swap(site: str, mode: str) -> Sample:
    return Sample(A, 0, swaps=(KVSwap((site,), B, mode=mode),))


def test_inject_rows_need_no_anchor_and_patch_rows_need_their_donor():
    assert anchors(swap("s0", "inject")) == []
    assert anchors(swap("s0", "patch")) == [Sample(B, 0)]


def test_restores_need_the_clean_row_but_text_restores_do_not():
    c = Corruption("house")
    assert anchors(Sample(A, 1, corruption=c, restores=(Restore("unet.x"),))) == [Sample(A, 1)]
    assert anchors(Sample(A, 1, corruption=c, restores=(Restore("text_encoder.x", "last"),))) == []


def items(rows):
    return [Comparison(row, Sample(A, row.seed)) for row in rows]


def test_every_batch_holds_the_donor_and_the_control_of_its_rows():
    rows = [Sample(A, 0), Sample(B, 0)] + [swap(f"s{i}", "patch") for i in range(10)]
    batches = pack(items(rows), 4)
    assert all(len(b) <= 4 for b in batches)
    for item in items(rows):
        assert any(all(r in batch for r in item.needs) for batch in batches)
    assert {r for b in batches for r in b} == set(rows)


def test_rows_fill_batches_in_order_each_with_its_control():
    rows = [Sample(A, 0, swaps=(KVSwap((f"s{i}",), B),)) for i in range(5)]
    control = Sample(A, 0)
    assert pack(items(rows), 3) == [[control, *rows[0:2]], [control, *rows[2:4]], [control, rows[4]]]
    assert pack(items(rows + rows[:1]), 10) == [[control, *rows]]


def test_an_item_larger_than_the_batch_size_gets_a_batch_of_its_own():
    assert pack(items([swap("s0", "patch")]), 1) == [[Sample(B, 0), Sample(A, 0), swap("s0", "patch")]]


def test_units_cover_prompt_shards_and_variant_chunks_with_stable_ids():
    job = load_job({"name": "t", "method": "locogen", "seeds": [0, 1],
                    "prompts": [{"prompt": f"p{i}", "target": "t"} for i in range(5)],
                    "executor": {"prompts_per_unit": 2, "variants_per_unit": 3}})
    variants = [Variant(f"v{i}") for i in range(7)]
    units = plan_units(job, variants)
    assert len(units) == 3 * 3
    assert {p for u in units for p in u.prompt_indices} == set(range(5))
    assert sorted(v for u in units[:3] for v in u.variant_indices) == list(range(7))
    assert len({u.unit_id for u in units}) == len(units)
    assert [u.unit_id for u in plan_units(job, variants)] == [u.unit_id for u in units]
