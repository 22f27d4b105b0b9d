"""What a person sees in the Prefect UI, in a real headless browser (Debian's chromium, which
`make browser` installs): the figures cairn attaches show as images, on any machine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
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


def browser(*args: str) -> subprocess.CompletedProcess:
    """Chromium, headless, given 15 s of page time for the UI's scripts to fetch and render."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=15000",
                           *args], capture_output=True, text=True, timeout=180)  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: `make browser` installs Debian's")
def test_a_figure_shows_as_an_image_in_the_runs_artifacts(tmp_path: Path):
    port = free_port()
    env = project_env(PREFECT_HOME=str(tmp_path), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
                      PREFECT_SERVER_API_PORT=str(port), PREFECT_SERVER_ANALYTICS_ENABLED="false")  # fmt: skip
    server = start_server(tmp_path, env)
    try:
        code = ATTACH.replace("PNG", repr(str(tmp_path / "figure.png")))
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
        found = httpx.post(f"{env['PREFECT_API_URL']}/artifacts/filter",
                           json={"artifacts": {"key": {"any_": ["model-card-probe-figure"]}}}).json()  # fmt: skip
        (artifact,) = found
        page = f"http://127.0.0.1:{port}/artifacts/artifact/{artifact['id']}"
        dom = browser("--dump-dom", page).stdout
        # The UI put the PNG itself in an <img>: no file:// path, no second server to reach.
        assert 'src="data:image/png;base64,iVBORw0KGgo' in dom
        assert "model-card-probe-figure" in dom
        shot = tmp_path / "artifact.png"
        browser("--window-size=1400,900", f"--screenshot={shot}", page)
        assert shot.stat().st_size > 20_000  # a page with a picture, kept for a person to look at
    finally:
        stop(server)
