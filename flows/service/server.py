"""The Prefect server that `make serve` starts, secure by default.

Prefect 3.8.8's server out of the box has no authentication, answers CORS from any origin and
has CSRF protection off, and its process workers run whatever pull steps a deployment names:
anything that can reach its port (another local user, a web page the operator opens) could run
commands as the worker. So cairn's server gets a generated auth string (kept in
``.cairn/prefect-auth``, readable by its owner only), CSRF protection on, CORS limited to the
UI's own origin and analytics off; clients and workers get the same string as
``PREFECT_API_AUTH_STRING``.
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path

AUTH_FILE = Path(".cairn") / "prefect-auth"


def auth_string(path: Path = AUTH_FILE) -> str:
    """The server's 'user:secret' auth string: read from ``path``, made on first use (mode 0600)."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = f"cairn:{secrets.token_urlsafe(32)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def server_env(port: int, auth: str, host: str = "127.0.0.1") -> dict[str, str]:
    """The settings of a secure local server on ``host:port``, and of its clients and workers."""
    origin = f"http://{host}:{port}"
    return {
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": origin,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"{origin}/api",
        "PREFECT_API_AUTH_STRING": auth,
        # A server restart or a network blip is transient: clients and workers retry each call
        # with exponential backoff (2, 4, ... 128 s: about four minutes in all), then fail.
        "PREFECT_CLIENT_MAX_RETRIES": "7",
        # SQLite waits this long for a busy database instead of 10 s: a loaded 2-core machine
        # (a training run beside the server) otherwise logs "database is locked".
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
    }


def shell_exports(port: int) -> str:
    """`export` lines for deploy/serve.sh (`eval "$(python -m flows server-env PORT)"`)."""
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in server_env(port, auth_string()).items())
