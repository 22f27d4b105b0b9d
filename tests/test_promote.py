import pytest

from steps import BadInput, promote


def test_higher_is_better_metrics_need_the_margin():
    assert promote.judge("accuracy", 0.98, None, 0.01).promote  # no champion yet
    assert promote.judge("accuracy", 0.985, 0.98, 0.005).promote
    verdict = promote.judge("accuracy", 0.984, 0.98, 0.005)
    assert not verdict.promote
    assert verdict.reason == "accuracy 0.984 vs champion 0.98: +0.004, less than the margin 0.005 (higher is better)"


def test_lower_is_better_metrics_turn_the_comparison_around():
    assert promote.judge("rmse", 9.8, 10.0, 0.1).promote
    assert not promote.judge("rmse", 10.2, 10.0, 0.0).promote
    assert not promote.judge("mse", 0.0062, 0.0061, 0.0).promote


def test_an_unknown_or_inapplicable_metric_is_a_clear_error():
    import numpy as np

    with pytest.raises(BadInput, match="metric 'speed' is not one of"):
        promote.score("classification", "speed", np.array([0]), np.array([[1.0, 0.0]]), [0, 1], None)
    with pytest.raises(BadInput, match="metric 'rmse' does not apply to a classification model"):
        promote.score("classification", "rmse", np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]), [0, 1], None)


def test_versions_count_up_from_one():
    assert promote.next_version({"versions": []}) == 1
    assert promote.next_version({"versions": [{"version": 1}, {"version": 4}]}) == 5


def test_a_tie_keeps_the_champion_unless_the_margin_is_negative():
    verdict = promote.judge("accuracy", 0.9375, 0.9375, 0.0)
    assert not verdict.promote and "ties the champion" in verdict.reason
    assert promote.judge("accuracy", 0.9375, 0.9375, -0.01).promote
