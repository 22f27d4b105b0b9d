"""Secure by default: params.yaml cannot reach a shell, the Prefect server refuses strangers,
workers clone only what they allow, credentials never reach a log."""

from __future__ import annotations

import copy
import os
import sys

import httpx
import pytest
from conftest import ROOT, api, make_repo, run, tiny_params

from flows.config import check_inside, check_name
from flows.runtime import workers
from steps.errors import BadInput


def only_iris(**extra) -> dict:
    params = tiny_params()
    params["workloads"] = {"iris": params["workloads"]["iris"]} | extra
    params["score"] = {}
    return params


def test_names_and_paths_are_checked():
    assert check_name("mnist-ae_2", "workload") == "mnist-ae_2"
    for bad in ("x; touch /tmp/pwned #", "../etc", "$(id)", "", "a b", "-rf", 3):
        with pytest.raises(BadInput, match="is not a valid name; use letters, digits"):
            check_name(bad, "workload")
    assert str(check_inside("data/iris/raw", "raw")) == "data/iris/raw"
    for bad in ("$(touch x)", "data/`id`", "a b", "/etc/passwd", "../outside", "data/../../x", None):
        with pytest.raises(BadInput, match="raw .* (is not a plain relative path|is outside the repository)"):
            check_inside(bad, "raw")


def test_params_yaml_cannot_run_commands_through_dvc_repro(tmp_path):
    marker = tmp_path / "pwned"
    iris = tiny_params()["workloads"]["iris"]
    evil_name = only_iris(**{f"x; touch {marker} #": copy.deepcopy(iris)})
    evil_raw = only_iris(evil=copy.deepcopy(iris) | {"raw": f"data/iris/raw$(touch {marker})"})
    for name, params in {"name": evil_name, "raw": evil_raw}.items():
        repo = make_repo(tmp_path / name, params)
        result = run(["dvc", "repro"], repo, check=False)
        assert result.returncode != 0, name
        assert not marker.exists(), f"a params value reached the shell ({name})"
        expected = "is not a valid name" if name == "name" else "is not a plain relative path"
        assert expected in result.stderr, result.stderr
        assert not (repo / "data/iris/ingest").exists()  # refused before any stage did anything


def test_credentials_are_redacted_everywhere_they_are_shown():
    assert workers.redact("https://ci:ghp_secret@git.example/org/cairn.git") == "https://git.example/org/cairn.git"
    assert workers.redact("fatal: could not read from 'https://tok@host/x' (https://a:b@c/d)") == (
        "fatal: could not read from 'https://host/x' (https://c/d)"
    )
    assert workers.redact("git@github.com:org/cairn.git") == "git@github.com:org/cairn.git"  # no secret there


def test_a_worker_clones_only_allowed_repositories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CAIRN_WORKER_REPOS", raising=False)
    with pytest.raises(workers.WorkerFailed, match="refusing to clone 'https://evil.example/x.git'"):
        workers.run_on_worker.fn("train@iris", "https://user:pw@evil.example/x.git", "0" * 40)
    assert not list(tmp_path.iterdir())  # nothing cloned
    monkeypatch.setenv("CAIRN_WORKER_REPOS", "https://evil.example/x.git")
    with pytest.raises(workers.WorkerFailed, match="is not a stage address at a commit hash"):
        workers.run_on_worker.fn("train@iris; id", "https://evil.example/x.git", "HEAD")
    # The worker clones with its own credentials for a URL it allows; the run's parameters have none.
    monkeypatch.setenv("CAIRN_WORKER_REPOS", "https://ci:secret@git.example/cairn.git")
    assert workers.allowed_repos()["https://git.example/cairn.git"] == "https://ci:secret@git.example/cairn.git"


@pytest.mark.slow
def test_the_server_refuses_what_an_attacker_sends(prefect_server):
    """The attack that ran a command through an open server: unauthenticated HTTP from a
    foreign origin creating a flow and a deployment with a shell pull step."""
    url = prefect_server["PREFECT_API_URL"]
    evil = {"Origin": "http://evil.example"}
    refused = (401, 403)  # no auth string (401), or no CSRF token, which is checked first (403)
    assert httpx.post(f"{url}/flows/", json={"name": "evil"}, headers=evil).status_code in refused
    shell_step = {"prefect.deployments.steps.run_shell_script": {"script": "touch /tmp/pwned"}}
    deployment = {"name": "evil", "flow_id": "00000000-0000-0000-0000-000000000000", "pull_steps": [shell_step]}
    assert httpx.post(f"{url}/deployments/", json=deployment, headers=evil).status_code in refused
    assert httpx.get(f"{url}/deployments/count", headers=evil).status_code == 401  # nothing to read either
    csrf = httpx.get(f"{url}/csrf-token", params={"client": "evil"}, headers=evil)
    assert csrf.status_code == 401  # and no CSRF token without the auth string
    # A browser on another origin is not allowed to read or send (CORS preflight).
    preflight = httpx.options(f"{url}/flows/", headers=evil | {"Access-Control-Request-Method": "POST"})
    assert preflight.headers.get("access-control-allow-origin") not in ("*", "http://evil.example")
    # The right auth string but no CSRF token (a forged form post): refused too.
    client = api(prefect_server)
    client.headers.pop("Prefect-Csrf-Token")
    assert client.post("flows/", json={"name": "evil"}).status_code == 403
    # Prefect's own clients, with the auth string, work; nothing the attacker sent was created.
    names = [d["name"] for d in api(prefect_server).post("deployments/filter", json={}).json()]
    assert "evil" not in names
    result = run([sys.executable, "-c", "from prefect import flow\n@flow\ndef ok(): return 1\nprint(ok())"],
                 ROOT, env=prefect_server)  # fmt: skip
    assert result.stdout.strip().endswith("1")


def test_nothing_phones_home_by_default(tmp_path):
    """Prefect's client telemetry is off in every cairn process; DVC's analytics are off in the
    repository's config."""
    import subprocess
    import sys

    probe = "import flows; from prefect._internal.analytics.enabled import is_telemetry_enabled as t; print(t())"
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "CI")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "False"
    assert "analytics = false" in (ROOT / ".dvc" / "config").read_text()
