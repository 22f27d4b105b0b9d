import numpy as np
import pyarrow as pa
import pytest
from conftest import BLOBS_SCHEMA, blobs_csv, clean_params

from steps import clean, dedupe, ingest
from steps.tally import Tally


def table(bad=None, rows=30):
    return ingest.from_csv(blobs_csv(rows, seed=0, bad=bad).encode(), "p.csv", BLOBS_SCHEMA)


def test_rows_are_conserved_and_each_quarantined_row_has_its_reason():
    result = clean.clean(table({2: "", 5: "inf", 9: "1000"}), BLOBS_SCHEMA, clean_params(0.5))
    r = result.report
    assert r["rows_in"] == 30 == r["rows_kept"] + r["rows_quarantined"]
    assert r["rows_quarantined"] == 3
    reasons = dict(
        zip(
            result.quarantined.column("key").to_pylist(),
            result.quarantined.column("reason").to_pylist(),
            strict=True,
        )
    )
    assert reasons == {
        # keys name the file line: data row n is line n + 1, below the header
        "p.csv:3": "missing or NaN value in column 'f1'",
        "p.csv:6": "infinite value in column 'f1'",
        "p.csv:10": "value 1000 in column 'f1' outside [0, 100]",
    }
    assert r["quarantined_by_reason"] == {"infinite value": 1, "missing value": 1, "out of range": 1}
    # quarantined rows keep every ingested column: nothing is lost
    assert result.quarantined.schema.names == table().schema.names + ["reason"]


def test_duplicate_keys_and_missing_labels_are_quarantined():
    t = table()
    t = pa.concat_tables([t, t.slice(0, 1)])
    labels = t.column("kind").to_pylist()
    labels[3] = None
    t = t.set_column(t.schema.get_field_index("kind"), "kind", pa.array(labels))
    result = clean.clean(t, BLOBS_SCHEMA, clean_params(0.5))
    assert sorted(result.quarantined.column("reason").to_pylist()) == [
        "duplicate key 'p.csv:2'",
        "missing label in column 'kind'",
    ]


def test_too_many_bad_rows_is_an_error_naming_the_first_and_where_all_are():
    params = clean_params(0.05)
    result = clean.clean(table({2: "", 3: "", 4: ""}), BLOBS_SCHEMA, params)
    assert result.report["quarantined_by_reason"] == {"missing value": 3}  # counted before the verdict
    with pytest.raises(
        clean.CleanError,
        match=r"3 of 30 rows \(10.0%\) are bad.*first: row 'p.csv:3': missing or NaN.*all of them, with reasons, in Q$",
    ):
        clean.check_share(result.report, result.quarantined.slice(0, 1).to_pylist()[0], params, "Q")


def test_exact_duplicate_rows_are_counted_and_quarantined_with_dedupe():
    t = table()
    t = pa.concat_tables([t, t.slice(4, 2)])
    keys = t.column("key").to_pylist()
    t = t.set_column(t.schema.get_field_index("key"), "key", pa.array(keys[:30] + ["p.csv:40", "p.csv:41"]))
    kept = clean.clean(t, BLOBS_SCHEMA, clean_params(0.5))
    assert kept.report["duplicate_rows_kept"] == 2 and kept.report["rows_kept"] == 32
    deduped = clean.clean(t, BLOBS_SCHEMA, clean_params(0.5, dedupe=True))
    assert "duplicate_rows_kept" not in deduped.report
    reasons = deduped.quarantined.column("reason").to_pylist()
    assert reasons == ["duplicate of row 'p.csv:6'", "duplicate of row 'p.csv:7'"]


def test_image_rows_with_bad_pixels_are_quarantined():
    schema = {"label": "digit", "image": {"column": "px", "shape": [2, 2]}, "range": [0.0, 1.0], "key": None}
    pixels = np.array([[0, 0.5, 1, 0], [0, np.nan, 0, 0], [0, 0, 2.0, 0]], dtype=np.float32)
    t = pa.table(
        {
            "key": ["a", "b", "c"],
            "partition": ["p"] * 3,
            "digit": [1, 2, 3],
            "px": pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1)), 4),
        }
    )
    result = clean.clean(t, schema, clean_params(1.0))
    assert result.kept.column("key").to_pylist() == ["a"]
    assert result.quarantined.column("reason").to_pylist() == [
        "pixel 1 of 'px' is nan; expected a number in [0, 1]",
        "pixel 2 of 'px' is 2; expected a number in [0, 1]",
    ]


def test_clean_does_not_change_its_input():
    t = table({2: ""})
    before = t.to_pylist()
    clean.clean(t, BLOBS_SCHEMA, clean_params(0.5))
    assert t.to_pylist() == before


def test_image_rows_are_the_same_only_when_their_pixels_are():
    schema = {"label": "digit", "image": {"column": "px", "shape": [2, 2]}, "range": [0.0, 1.0], "key": None}
    pixels = np.array([[0, 0.5, 1, 0], [0, 0.5, 1, 0], [0, 0, 0, 0.2]], dtype=np.float32)
    t = pa.table(
        {
            "key": ["a", "b", "c"],
            "partition": ["p"] * 3,
            "digit": [1, 1, 1],
            "px": pa.FixedSizeListArray.from_arrays(pa.array(pixels.reshape(-1)), 4),
        }
    )
    assert clean.clean(t, schema, clean_params(1.0)).report["duplicate_rows_kept"] == 1  # b, not c
    deduped = clean.clean(t, schema, clean_params(1.0, dedupe=True))
    assert deduped.quarantined.column("reason").to_pylist() == ["duplicate of row 'a'"]


def test_first_seen_matches_whole_digests_not_their_first_half():
    digests = np.array([[1, 2], [1, 3], [1, 2], [5, 5], [5, 5]], dtype=np.uint64)
    assert dedupe.first_seen(digests, np.ones(5, dtype=bool)).tolist() == [0, 1, 0, 3, 3]
    among = np.array([False, True, True, True, False])  # a row not among them is nobody's first
    assert dedupe.first_seen(digests, among).tolist() == [-1, 1, 2, 3, -1]


def by_bucket(bits: int):
    """A grouping of digests in 2**bits buckets, in memory: what the clean stage's spill does."""

    def group(chunks):
        chunks = list(chunks)
        for b in range(1 << bits):
            picked = [(w[dedupe.bucket_of(w, bits) == b], p[dedupe.bucket_of(w, bits) == b]) for w, p in chunks]
            yield from dedupe.together(picked)

    return group


@pytest.mark.parametrize("group", [dedupe.together, by_bucket(2)], ids=["one group", "four buckets"])
def test_partitions_settled_together_equal_one_table(group):
    t = table({2: "", 5: "inf"})
    whole = clean.clean(pa.concat_tables([t, t]), BLOBS_SCHEMA, clean_params(1.0, dedupe=True))
    parts = [clean.check(t.slice(0, 7), BLOBS_SCHEMA), clean.check(pa.concat_tables([t.slice(7), t]), BLOBS_SCHEMA)]
    dups = dedupe.duplicates(lambda column: [p.checks.column(column) for p in parts], group)
    assert len(dups.key) == t.num_rows  # the second copy of t repeats the keys of the first
    kept, key_of, offset, tally = [], {}, 0, Tally(True, dups.repeats)
    for p, source in zip(parts, [t.slice(0, 7), pa.concat_tables([t.slice(7), t])], strict=True):
        marks = dedupe.marks(dups, offset, p.parsed.num_rows, True, key_of, lambda p=p: p.parsed.column("key"))
        k, _, counts = clean.settle(lambda s=source: s, p, marks)
        offset += p.parsed.num_rows
        kept.append(k)
        tally.add(k.num_rows, counts)
    assert pa.concat_tables(kept).equals(whole.kept)
    assert tally.report() == whole.report
    assert key_of == {}  # each first row's key was forgotten after its last repeat


def test_digests_spilled_to_disk_in_buckets_give_the_repeats_found_in_memory(tmp_path, monkeypatch):
    """The clean stage's duplicate check over many rows: bucket files by digest, one bucket in
    memory at a time (flows/clean.py:spilled). Same repeats, same first rows, as all at once."""
    from flows.clean import spilled

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    pool = [rng.bytes(16) for _ in range(40)]  # few distinct digests: many repeats, across partitions

    def column(n: int) -> pa.Array:
        return pa.array([None if rng.random() < 0.1 else pool[rng.integers(len(pool))] for _ in range(n)],
                        pa.binary(16))  # fmt: skip

    parts = {name: [column(n) for n in (300, 500, 400)] for name in ("key_digest", "row_digest")}
    parts["key_digest"] = [pa.concat_arrays([c, column(100)]) for c in parts["key_digest"]]  # keys repeat less
    parts["row_digest"] = [pa.concat_arrays([c, column(100)]) for c in parts["row_digest"]]
    rows = sum(len(c) for c in parts["row_digest"])
    memory = dedupe.duplicates(lambda name: parts[name])
    disk = dedupe.duplicates(lambda name: parts[name], spilled(rows, bucket_rows=100))  # 16 buckets
    assert memory.repeats > 0 and len(memory.key) > 0
    for field in ("key", "row", "first"):
        assert np.array_equal(getattr(memory, field), getattr(disk, field)), field
    assert list((tmp_path / ".cairn").iterdir()) == []  # the bucket files are gone


def test_the_key_a_repeated_row_names_is_forgotten_after_its_last_repeat():
    # a.csv repeats its rows 2 and 6; b.csv repeats a.csv's rows 4 and 2. The reasons name the
    # first row's key, and the keys held for that go as soon as no later row needs them.
    lines = blobs_csv(8, seed=0).splitlines()
    a = [lines[0], *lines[1:7], lines[2], lines[6]]
    b = [lines[0], lines[4], lines[7], lines[8], lines[2]]
    parts = [ingest.from_csv("\n".join(a).encode(), "a.csv", BLOBS_SCHEMA),
             ingest.from_csv("\n".join(b).encode(), "b.csv", BLOBS_SCHEMA)]  # fmt: skip
    checked = [clean.check(p, BLOBS_SCHEMA) for p in parts]
    dups = dedupe.duplicates(lambda column: [c.checks.column(column) for c in checked])
    key_of: dict[int, str] = {}
    first = dedupe.marks(dups, 0, 8, True, key_of, lambda: checked[0].parsed.column("key"))
    assert first.row_text == ["duplicate of row 'a.csv:3'", "duplicate of row 'a.csv:7'"]
    assert key_of == {1: "a.csv:3", 3: "a.csv:5"}  # 'a.csv:7' has had its last repeat
    second = dedupe.marks(dups, 8, 4, True, key_of, lambda: checked[1].parsed.column("key"))
    assert second.row_text == ["duplicate of row 'a.csv:5'", "duplicate of row 'a.csv:3'"]
    assert key_of == {}


def test_a_label_seen_once_is_a_rare_class_and_one_not_in_schema_classes_is_unknown():
    """A half-written file's cut label ('vers' for 'versicolor') never reaches training: with no
    schema.classes, a text label in fewer than clean.min_class_rows rows is quarantined and named
    in the report; with schema.classes, any other label is."""
    t = table(rows=30)
    labels = t.column("kind").to_pylist()
    labels[4] = "a-cut"
    cut = t.set_column(t.schema.get_field_index("kind"), "kind", pa.array(labels))
    result = clean.clean(cut, BLOBS_SCHEMA, clean_params(0.5))
    assert result.report["quarantined_by_reason"] == {"rare class": 1}
    assert result.report["rare_classes"] == {"a-cut": 1}
    assert result.quarantined.column("reason").to_pylist() == [
        "label 'a-cut' has 1 row(s) in all, fewer than clean.min_class_rows 2; list the labels in "
        "schema.classes to keep a class this small"
    ]
    assert "a-cut" not in result.kept.column("kind").to_pylist()
    assert "rare_classes" not in clean.clean(t, BLOBS_SCHEMA, clean_params(0.5)).report  # as it was
    assert clean.clean(cut, BLOBS_SCHEMA, clean_params(0.5, min_class_rows=0)).report["rows_quarantined"] == 0
    listed = clean.clean(cut, BLOBS_SCHEMA | {"classes": ["a", "b", "c"]}, clean_params(0.5))
    assert listed.report["quarantined_by_reason"] == {"unknown class": 1}
    assert listed.quarantined.column("reason").to_pylist() == ["label 'a-cut' is not one of schema.classes (a, b, c)"]
    kept_small = clean.clean(cut, BLOBS_SCHEMA | {"classes": ["a", "b", "c", "a-cut"]}, clean_params(0.5))
    assert kept_small.report["rows_quarantined"] == 0  # listed: a class this small is the user's to keep
