"""A failed run is not forgotten (#27 item 5) and the run's figures show on the pipeline run
(item 6): the deployments' pipeline flow (flows/service/deployments.py) on a real DVC repo."""

from __future__ import annotations

import base64
import re

import pytest
import yaml


def test_the_watcher_reruns_a_failed_workload_once_its_inputs_change(blobs_repo, monkeypatch):
    from flows.service.deployments import failures, pipeline, watch

    monkeypatch.chdir(blobs_repo)
    params_file = blobs_repo / "params.yaml"
    good = params_file.read_text()
    strict = yaml.safe_load(good)
    strict["workloads"]["blobs"]["clean"]["max_quarantined"] = 0.0  # part-1 has a bad row: clean fails
    params_file.write_text(yaml.safe_dump(strict, sort_keys=False))
    with pytest.raises(Exception, match="clean@blobs failed"):
        pipeline.fn(["blobs"])
    assert failures()["blobs"]["error"].startswith("clean@blobs failed")  # ingest was committed
    assert watch.fn() == {}  # nothing changed since the failure: it would only fail again
    params_file.write_text(good)  # the user fixes the params
    outcome = watch.fn()
    assert outcome["clean@blobs"] in ("ran", "restored") and "failed" not in outcome.values(), outcome
    assert failures() == {}
    assert watch.fn() == {}


def test_the_pipeline_runs_figures_are_one_markdown_document_with_the_pngs_inline(blobs_repo, monkeypatch):
    from flows.service.deployments import pictures_markdown

    monkeypatch.chdir(blobs_repo)
    markdown = pictures_markdown(["blobs"])
    images = re.findall(r"!\[blobs (\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert sorted(name for name, _ in images) == ["figure", "loss", "pairplot"]
    for name, data in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG") and png == next(blobs_repo.glob(f"data/blobs/*/{name}.png")).read_bytes()
    assert pictures_markdown(["nothing-here"]) == ""
