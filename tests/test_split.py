import numpy as np
import pyarrow as pa
import pytest

from steps import split

PARAMS = {"seed": 7, "val": 0.2, "test": 0.2, "test_partition": None}


def rows(n, start=0, classes=3, partition="p"):
    keys = [f"{partition}:{i}" for i in range(start, start + n)]
    return pa.table({"key": keys, "partition": [partition] * n, "y": [i % classes for i in range(start, start + n)]})


def keys(t):
    return set(t.column("key").to_pylist())


def test_sets_are_disjoint_and_cover_every_row():
    t = rows(3000)
    sets = split.split(t, "y", PARAMS)
    assert sum(s.num_rows for s in sets.values()) == 3000
    assert not keys(sets["train"]) & keys(sets["val"])
    assert not keys(sets["train"]) & keys(sets["test"])
    assert not keys(sets["val"]) & keys(sets["test"])


def test_appending_rows_never_moves_an_old_row():
    before = split.split(rows(1000), "y", PARAMS)
    after = split.split(pa.concat_tables([rows(1000), rows(500, start=1000)]), "y", PARAMS)
    for name in split.SETS:
        assert keys(before[name]) <= keys(after[name])


def test_same_seed_same_sets_other_seed_other_sets():
    t = rows(500)
    assert keys(split.split(t, "y", PARAMS)["test"]) == keys(split.split(t, "y", PARAMS)["test"])
    assert keys(split.split(t, "y", PARAMS | {"seed": 8})["test"]) != keys(split.split(t, "y", PARAMS)["test"])


def test_each_class_gets_the_requested_shares():
    sets = split.Sets("y", PARAMS)
    for start in range(0, 30000, 7000):  # dealt in batches, counted over all of them
        sets.add(split.deal(rows(30000, classes=3).slice(start, 7000), "y", PARAMS)[1])
    report = sets.report()
    for c in ("0", "1", "2"):
        share = {name: report[name]["per_class"][c] / 10000 for name in split.SETS}
        assert share["test"] == pytest.approx(0.2, abs=0.015)
        assert share["val"] == pytest.approx(0.2, abs=0.015)


def test_a_test_partition_is_the_holdout_as_a_whole():
    t = pa.concat_tables([rows(300), rows(100, partition="official")])
    sets = split.split(t, "y", PARAMS | {"test": 0.0, "test_partition": "official"})
    assert set(sets["test"].column("partition").to_pylist()) == {"official"}
    assert sets["test"].num_rows == 100
    assert "official" not in set(sets["train"].column("partition").to_pylist())


def test_too_few_rows_is_a_clear_error():
    with pytest.raises(split.SplitError, match="set is empty"):
        split.split(rows(2), "y", PARAMS)


def test_unit_hash_is_uniform():
    u = split.unit_hash([str(i) for i in range(20000)], seed=1)
    assert 0 <= u.min() and u.max() < 1
    assert np.histogram(u, bins=10)[0].min() > 1800
