"""params.yaml's model sections: each built-in model has its own keys and defaults, checked
before any stage runs; a user's own model module keeps keys of its own."""

from __future__ import annotations

import copy

import pytest
import yaml

from flows import config
from tests.conftest import ROOT

WORKLOADS = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]


def entry(workload: str, **model) -> dict:
    params = copy.deepcopy(WORKLOADS[workload])
    params["model"] = {k: v for k, v in (params["model"] | model).items() if v is not None}
    return params


@pytest.mark.parametrize(
    ("workload", "model", "expected"),
    [
        ("forest", {"max_depht": 3},
         "model.max_depht is not a setting cairn knows; model has: name, trees, max_depth, min_samples_leaf, "
         "normalize"),
        ("forest", {"trees": 0}, "model.trees is 0; input should be greater than or equal to 1"),
        ("sales", {"solver": "qr"}, "model.solver is 'qr'; input should be 'closed' or 'sgd'"),
        ("iris", {"hiden": [3]},
         "model.hiden is not a setting cairn knows; model has: name, hidden, dropout, normalize"),
        ("mnist-ae", {"hidden": None}, "model.hidden is missing"),
        ("loans", {"hidden": [4]}, "model.hidden is not a setting cairn knows; model has: name, normalize"),
    ],
)  # fmt: skip
def test_a_models_keys_are_checked_against_that_model(workload, model, expected):
    assert config.problems(entry(workload, **model), "w") == [f"w.{expected}"]


def test_a_models_defaults_are_filled_in_by_the_config_alone():
    forest = config.Workload.model_validate(entry("forest", max_depth=None, min_samples_leaf=None))
    assert forest.settings("model") == {
        "name": "forest", "trees": 100, "max_depth": None, "min_samples_leaf": 1, "normalize": "none"
    }  # fmt: skip
    linear = config.Workload.model_validate(entry("sales", solver=None))
    assert linear.settings("model")["solver"] == "closed"
    mlp = config.model_settings(name="mlp")
    assert mlp == {"name": "mlp", "hidden": [], "dropout": 0.0, "normalize": "feature"}


def test_a_users_own_model_keeps_its_own_keys():
    own = config.Workload.model_validate(entry("iris", name="knn", neighbours=5, hidden=None, dropout=None))
    assert own.settings("model") == {"name": "knn", "neighbours": 5, "normalize": "feature"}
    assert config.problems(entry("iris", name=None), "w") == ["w.model.name is missing"]
