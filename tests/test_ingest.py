import gzip
import io
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import BLOBS_SCHEMA, IRIS_SCHEMA, blobs_csv

from steps import ingest
from steps.read import columns, records


def test_csv_gets_the_explicit_schema_and_stable_keys():
    table = ingest.from_csv(blobs_csv(6, seed=0).encode(), "part-1.csv", BLOBS_SCHEMA)
    assert table.schema.names == ["key", "partition", "kind", "f1", "f2", "problem"]
    assert table.schema.field("f1").type == pa.float64()
    assert table.column("key").to_pylist()[:2] == ["part-1.csv:2", "part-1.csv:3"]  # file lines; 1 is the header
    assert table.num_rows == 6


def test_csv_blanks_and_nan_become_nulls_for_clean_to_quarantine():
    data = blobs_csv(4, seed=0, bad={2: "", 3: "NaN"}).encode()
    table = ingest.from_csv(data, "p.csv", BLOBS_SCHEMA)
    assert table.column("f1").null_count == 2
    assert table.num_rows == 4


def test_empty_csv_is_an_error_naming_the_file():
    with pytest.raises(ingest.IngestError, match=r"ingest: p\.csv is empty"):
        ingest.from_csv(b"\n", "p.csv", BLOBS_SCHEMA)


def test_csv_without_label_column_names_the_column_and_what_it_has():
    with pytest.raises(ingest.IngestError, match=r"p\.csv has no column 'kind'.*it has: f1, f2"):
        ingest.from_csv(b"f1,f2\n1,2\n", "p.csv", BLOBS_SCHEMA)


def test_non_numeric_feature_names_file_column_line_and_value_and_the_fix():
    data = blobs_csv(8, seed=0, bad={5: "abc"}).encode()
    hint = "If the column holds text such as '12.5%', '$1,200' or '700-704', name it in schema.parse"
    with pytest.raises(ingest.IngestError, match=r"p\.csv column 'f1' has 'abc' on line 6; expected a number\.") as err:
        ingest.from_csv(data, "p.csv", BLOBS_SCHEMA)
    assert hint in str(err.value)


def test_parquet_partition_is_projected_and_checked():
    sink = io.BytesIO()
    pq.write_table(pa.table({"f1": [1.0], "f2": [2], "kind": ["a"], "extra": [0]}), sink)
    table = ingest.from_parquet(sink.getvalue(), "x.parquet", BLOBS_SCHEMA)
    assert table.schema.names == ["key", "partition", "kind", "f1", "f2", "problem"]
    assert table.column("f2").type == pa.float64()
    sink = io.BytesIO()
    pq.write_table(pa.table({"f1": [1.0], "kind": ["a"]}), sink)
    with pytest.raises(ingest.IngestError, match="x.parquet has no column 'f2'"):
        ingest.from_parquet(sink.getvalue(), "x.parquet", BLOBS_SCHEMA)


def test_iris_builtin_has_150_rows_in_three_classes():
    table = ingest.iris(IRIS_SCHEMA)["iris"]
    assert table.num_rows == 150
    assert sorted(set(table.column("species").to_pylist())) == ["setosa", "versicolor", "virginica"]


def test_mnist_refuses_a_file_with_the_wrong_hash_before_unpickling():
    fake = io.BytesIO()
    with gzip.open(fake, "wb") as f:
        pickle.dump(((np.zeros((1, 4)), np.zeros(1)),) * 3, f)
    schema = {"label": "digit", "image": {"column": "pixels", "shape": [2, 2]}, "key": None}
    with pytest.raises(ingest.IngestError, match="mnist.pkl.gz has sha256 .* expected f11bb9e4"):
        ingest.mnist(fake.getvalue(), schema)


def test_image_schema_is_a_fixed_size_list_not_784_columns():
    schema = columns.arrow_schema({"label": "digit", "image": {"column": "pixels", "shape": [28, 28]}}, pa.int64())
    assert schema.field("pixels").type == pa.list_(pa.float32(), 784)
    assert len(schema) == 5  # key, partition, label, pixels, problem


def test_profile_counts_missing_and_ranges():
    table = ingest.from_csv(blobs_csv(6, seed=0, bad={1: ""}).encode(), "p.csv", BLOBS_SCHEMA)
    prof = ingest.profile(table)
    assert prof["f1"]["missing"] == 1
    assert prof["f2"]["min"] <= prof["f2"]["mean"] <= prof["f2"]["max"]


def test_a_parquet_partition_read_a_row_group_at_a_time_is_the_same_rows_as_read_whole():
    """Scoring streams Parquet row groups: their keys continue across groups, and together they
    are the table that reading the file whole gives."""
    rows = ingest.from_csv(blobs_csv(25, seed=3).encode(), "p.csv", BLOBS_SCHEMA).select(["f1", "f2", "kind"])
    sink = io.BytesIO()
    pq.write_table(rows, sink, row_group_size=10)
    data = sink.getvalue()
    groups = list(ingest.parquet_row_groups(data, "new.parquet", BLOBS_SCHEMA))
    assert [g.num_rows for g in groups] == [10, 10, 5]
    whole = ingest.from_parquet(data, "new.parquet", BLOBS_SCHEMA)
    assert pa.concat_tables(groups).equals(whole)
    assert whole.column("key").to_pylist()[9:11] == ["new.parquet:10", "new.parquet:11"]
    with pytest.raises(ingest.IngestError, match="new.parquet has no column 'f3'"):
        list(ingest.parquet_row_groups(data, "new.parquet", {**BLOBS_SCHEMA, "features": ["f1", "f3"]}))


IMAGES = {"key": None, "label": None, "features": None, "image": {"column": "pixels", "shape": [2, 3]}, "range": [0, 1]}


def test_images_of_another_shape_are_an_error_naming_the_file_and_the_row():
    """Arrow's own cast error says only that list sizes differ; the user needs the file, the row
    and the two shapes. A missing image is not an error (clean quarantines it)."""

    def parquet(pixels: pa.Array) -> bytes:
        sink = io.BytesIO()
        pq.write_table(pa.table({"pixels": pixels}), sink, row_group_size=2)
        return sink.getvalue()

    fine = parquet(pa.array([[0.0] * 6, None, [1.0] * 6], pa.list_(pa.float32())))
    assert ingest.from_parquet(fine, "ok.parquet", IMAGES).column("pixels").null_count == 1
    small = parquet(pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(8, np.float32)), 4))
    ragged = parquet(pa.array([[0.0] * 6, None, [0.0] * 6, [0.0] * 5], pa.list_(pa.float32())))
    sh = "the schema's image shape 2×3 in params.yaml needs 6"
    for read in (ingest.from_parquet, lambda *a: list(ingest.parquet_row_groups(*a))):
        with pytest.raises(ingest.IngestError, match=f"small.parquet column 'pixels' holds images of 4 values; {sh}"):
            read(small, "small.parquet", IMAGES)
        with pytest.raises(ingest.IngestError, match="ragged.parquet row 4 of column 'pixels' is an image of 5 values"):
            read(ragged, "ragged.parquet", IMAGES)


def test_record_lines_counted_with_numpy_match_pythons_csv_reader():
    # Quoted fields holding newlines, escaped quotes, CRLF, blank lines, a missing last newline:
    # the fast count must give every record's line as csv.reader does (keys name those lines).
    rng = np.random.default_rng(1)
    cells = ["a", "1.5", '"x;y"', '"multi\nline"', '"say ""hi"""', "", '"12;000.00"', '"a\r\nb"']
    for _ in range(300):
        lines = ["" if rng.random() < 0.2 else ";".join(rng.choice(cells, 3)) for _ in range(rng.integers(1, 8))]
        data = ("h1;h2;h3\n" + rng.choice(["\n", "\r\n"]).join(lines) + rng.choice(["", "\n"])).encode()
        fast, slow = records.record_lines(data, ";"), records.csv_record_lines(data, ";")
        assert (fast.rows.tolist(), fast.blank) == (slow.rows.tolist(), slow.blank), data


def test_a_quote_inside_a_field_is_text_and_rows_keep_their_lines():
    data = b'f1,f2,kind\n5\'10",2,a\n\n"3,5",4,b\n'
    table = ingest.from_csv(data, "p.csv", {**BLOBS_SCHEMA, "categorical": ["f1"]})
    assert table.column("key").to_pylist() == ["p.csv:2", "p.csv:4"]
    assert table.column("f1").to_pylist() == ["5'10\"", "3,5"]


def test_a_csv_read_in_chunks_has_the_rows_keys_and_problems_of_one_read_whole():
    lines = ["kind,f1,f2", "", "a,1,2", '"b\nc",3,4', "a,5", "b,7,8", "", "", '"x ""y""",9,10', "a,11,12,13", "b,13,14"]
    data = ("\r\n\n" + "\n".join(lines) + "\n").encode()
    whole = ingest.from_csv(data, "p.csv", BLOBS_SCHEMA)
    chunks = list(ingest.csv_chunks(data, "p.csv", BLOBS_SCHEMA, rows=2))
    assert len(chunks) == 5  # two records a chunk, blank lines counted as records
    chunked = pa.concat_tables(chunks)
    assert chunked.sort_by("key").equals(whole.sort_by("key"))
    assert chunked.column("key").to_pylist()[:2] == ["p.csv:5", "p.csv:6"]  # lines 1, 2, 4: blank
    malformed = chunked.filter(pc.is_valid(chunked.column("problem")))
    assert malformed.column("key").to_pylist() == ["p.csv:8", "p.csv:13"]
