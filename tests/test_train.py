import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import BLOBS_SCHEMA, TINY_MODEL, TINY_TRAIN, blobs_sets

from steps import StepError, models, split, train

MODEL, PARAMS = TINY_MODEL, TINY_TRAIN


@pytest.fixture(scope="module")
def sets():
    return blobs_sets(300)


def fit(sets, **over):
    return train.train(sets["train"], sets["val"], BLOBS_SCHEMA, MODEL, PARAMS | over)


def test_learns_separable_classes(sets):
    result = fit(sets)
    x = torch.from_numpy(models.features(sets["test"], BLOBS_SCHEMA))
    y = models.labels(sets["test"], "kind", result.spec["classes"])
    assert (result.model(x).argmax(1).numpy() == y).mean() > 0.95


def test_same_seed_gives_the_same_bytes_and_leaves_the_global_rng_alone(sets):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = models.to_bytes(fit(sets).model)
    assert torch.rand(1) == before  # training drew from its own generator, not the global one
    assert a == models.to_bytes(fit(sets).model)
    assert a != models.to_bytes(fit(sets, seed=2).model)


def test_normalisation_is_fitted_on_train_rows_only(sets):
    result = fit(sets, epochs=1)
    train_mean = models.features(sets["train"], BLOBS_SCHEMA).mean(axis=0)
    np.testing.assert_allclose(result.model.mean.numpy(), train_mean, rtol=1e-5)
    all_mean = np.concatenate([models.features(sets[s], BLOBS_SCHEMA) for s in split.SETS]).mean(axis=0)
    assert not np.allclose(result.model.mean.numpy(), all_mean, rtol=1e-6)


def test_early_stopping_keeps_the_best_validation_epoch(sets):
    # Separable data: validation accuracy reaches its top early and cannot improve after it.
    result = fit(sets, epochs=200, patience=3, lr=0.05, schedule="constant", monitor="val_accuracy")
    top = max(e.val_accuracy for e in result.history)
    first_top = next(e.epoch for e in result.history if e.val_accuracy == top)
    assert result.best_epoch == first_top
    assert len(result.history) == result.best_epoch + 3 < 200


def test_history_csv_has_no_timings(sets):
    text = train.history_csv(fit(sets, epochs=2).history)
    assert text.splitlines()[0] == "epoch,train_loss,val_loss,val_accuracy,lr"
    assert len(text.splitlines()) == 3


def test_weights_round_trip_through_safetensors(sets):
    result = fit(sets, epochs=2)
    again = models.from_bytes(result.spec, models.to_bytes(result.model))
    x = torch.from_numpy(models.features(sets["test"], BLOBS_SCHEMA))
    assert torch.equal(again(x), result.model(x))


def test_unknown_label_and_bad_params_are_clear_errors(sets):
    with pytest.raises(StepError, match="label 'z' in column 'kind' is not a class seen in train"):
        models.labels(pa.table({"kind": ["a", "z"]}), "kind", ["a", "b"])
    with pytest.raises(StepError, match="optimizer is 'adagrad'"):
        fit(sets, optimizer="adagrad")
    with pytest.raises(StepError, match="no module steps/models/nope.py"):
        train.train(sets["train"], sets["val"], BLOBS_SCHEMA, MODEL | {"name": "nope"}, PARAMS)
