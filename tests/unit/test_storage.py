"""Part files: one schema whatever values a unit happens to produce, and atomic writes."""

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from harness.results.store import to_table


def test_a_metric_with_no_values_in_one_part_stays_numeric_across_parts(tmp_path):
    # A prompt without text to render gets None for its OCR metrics; its part must not make the column text.
    empty = to_table([{"row_id": "a", "ocr_char_f1_target": None, "ocr_text": None}])
    full = to_table([{"row_id": "b", "ocr_char_f1_target": 0.5, "ocr_text": "hello"}])
    assert empty.schema.field("ocr_char_f1_target").type == pa.float64()
    assert empty.schema.field("ocr_text").type == pa.string()
    pq.write_table(empty, tmp_path / "part-0.parquet")
    pq.write_table(full, tmp_path / "part-1.parquet")
    mean, = duckdb.connect().execute(f"select avg(ocr_char_f1_target) from read_parquet('{tmp_path}/*.parquet', "
                       "union_by_name=true)").fetchone()
    assert mean == 0.5


def test_known_columns_keep_their_types_and_numbers_become_float():
    table = to_table([{"seed": 3, "site_index": None, "ssim": 1, "sites": ["x"], "flag": True}])
    assert table.schema.field("seed").type == pa.int64()
    assert table.schema.field("site_index").type == pa.int64()
    assert table.schema.field("ssim").type == pa.float64()
    assert table.schema.field("sites").type == pa.list_(pa.string())
    assert table.schema.field("flag").type == pa.bool_()
