"""What a person sees in the Prefect UI, in a real headless browser (Debian's chromium, which
`make browser` installs): the figures cairn attaches show as images, on any machine, and the
pipeline run of the deployments shows its workloads' figures in its own Artifacts tab; a failed
run is announced as an event a notification can follow."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import ROOT, free_port, project_env, start_server, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

ATTACH = """
from pathlib import Path
from prefect import flow
from flows.tracking import attach
from steps.figures import confusion_png

@flow(name="ui-probe")
def probe(png: str) -> None:
    Path(png).write_bytes(confusion_png([[5, 1], [0, 4]], ["a", "b"], "probe: test holdout"))
    attach("model-card-probe", "# Model card: probe", {"figure": Path(png)})

probe(PNG)
"""

# The pipeline flow as a deployment of `make serve` runs it (flows/service/deployments.py).
DEPLOYED_PIPELINE = "from flows.service.deployments import pipeline\npipeline(['blobs'])\n"


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    """One Prefect server with its UI for this file's tests, unsecured (the browser logs in to
    nothing): (port, the environment that points a process at it)."""
    home = tmp_path_factory.mktemp("ui-server")
    port = free_port()
    env = project_env(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
                      PREFECT_SERVER_API_PORT=str(port), PREFECT_SERVER_ANALYTICS_ENABLED="false")  # fmt: skip
    server = start_server(home, env)
    yield port, env
    stop(server)


def browser(*args: str) -> subprocess.CompletedProcess:
    """Chromium, headless, given 15 s of page time for the UI's scripts to fetch and render."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                           *args], capture_output=True, text=True, timeout=180)  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `make browser` installs Debian's")
def test_a_figure_shows_as_an_image_in_the_runs_artifacts(ui_server, tmp_path: Path):
    port, env = ui_server
    code = ATTACH.replace("PNG", repr(str(tmp_path / "figure.png")))
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
    (artifact,) = _artifacts(env["PREFECT_API_URL"], "model-card-probe-figure")
    page = f"http://127.0.0.1:{port}/artifacts/artifact/{artifact['id']}"
    dom = browser("--dump-dom", page).stdout
    # The UI put the PNG itself in an <img>: no file:// path, no second server to reach.
    assert 'src="data:image/png;base64,iVBORw0KGgo' in dom
    assert "model-card-probe-figure" in dom
    shot = tmp_path / "artifact.png"
    browser("--window-size=1400,900", f"--screenshot={shot}", page)
    assert shot.stat().st_size > 20_000  # a page with a picture, kept for a person to look at


def _artifacts(api: str, key: str) -> list[dict]:
    """The artifacts of ``key``, newest first."""
    body = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC"}
    return httpx.post(f"{api}/artifacts/filter", json=body, timeout=60).json()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `make browser` installs Debian's")
def test_a_failed_run_is_an_event_and_a_runs_figures_show_on_the_pipeline_run(ui_server, blobs_repo: Path):
    """#27 items 8 and 9 on a real server: the deployed pipeline flow fails (clean refuses), and
    the server receives `cairn.pipeline.failed` for the workload with the one-line error; after
    the fix, the run's Artifacts tab holds `pictures-blobs`, whose page shows the pair plot, the
    confusion matrix and the loss curve as images."""
    port, env = ui_server
    api = env["PREFECT_API_URL"]
    params = blobs_repo / "params.yaml"
    good = params.read_text()
    strict = yaml.safe_load(good)
    strict["workloads"]["blobs"]["clean"]["max_quarantined"] = 0.0  # part-1 has a bad row
    params.write_text(yaml.safe_dump(strict, sort_keys=False))
    failed = subprocess.run([sys.executable, "-c", DEPLOYED_PIPELINE], cwd=blobs_repo, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert failed.returncode != 0 and "clean@blobs failed" in failed.stderr, failed.stderr[-2000:]
    query = {"filter": {"event": {"name": ["cairn.pipeline.failed"]}}, "limit": 10}
    for _ in range(60):  # the server's event persister writes events a moment after they arrive
        events = httpx.post(f"{api}/events/filter", json=query, timeout=60).json()["events"]
        if events:
            break
        time.sleep(0.5)
    (event,) = events
    assert event["resource"]["prefect.resource.id"] == "cairn.workload.blobs"
    assert event["payload"]["error"].startswith("clean@blobs failed: clean: 1 of 150 rows")

    params.write_text(good)
    subprocess.run([sys.executable, "-c", DEPLOYED_PIPELINE], cwd=blobs_repo, env=env, check=True,
                   capture_output=True)  # fmt: skip
    pictures = _artifacts(api, "pictures-blobs")[0]  # the failed run showed its figures too
    run = httpx.get(f"{api}/flow_runs/{pictures['flow_run_id']}", timeout=60).json()
    assert run["name"].startswith("pipeline: blobs") and run["parent_task_run_id"] is None  # the run itself
    dom = browser("--dump-dom", f"http://127.0.0.1:{port}/artifacts/artifact/{pictures['id']}").stdout
    assert dom.count('src="data:image/png;base64,iVBORw0KGgo') == 3, dom[-2000:]  # pair plot, figure, loss
