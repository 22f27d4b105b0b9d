"""The Prefect server that `make serve` starts, secure by default.

Prefect 3.8.8's server out of the box has no authentication, answers CORS from any origin and
has CSRF protection off, and its process workers run whatever pull steps a deployment names:
anything that can reach its port (another local user, a web page the operator opens) could run
commands as the worker. So cairn's server gets a generated auth string (kept in
``.cairn/prefect-auth``, readable by its owner only), CSRF protection on, CORS and the Host
header limited to the UI's own origins (localhost, 127.0.0.1, ``deploy.allowed_origins``) and
analytics off; clients and workers get the same string as ``PREFECT_API_AUTH_STRING``.
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path
from urllib.parse import urlsplit

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


def origins(port: int, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The origins the UI may be opened from: the bound host by name and by address, and ``extra``
    (``deploy.allowed_origins``: an SSH tunnel on another port, a proxy)."""
    return [f"http://localhost:{port}", f"http://127.0.0.1:{port}", *extra]


def hosts(allowed: list[str]) -> list[str]:
    """The Host header values the server answers: the host names of the ``allowed`` origins."""
    return sorted({urlsplit(o).hostname or "" for o in allowed} - {""})


def server_env(
    port: int, auth: str, host: str = "127.0.0.1", extra_origins: list[str] | tuple[str, ...] = ()
) -> dict[str, str]:
    """The settings of a secure local server on ``host:port``, and of its clients and workers."""
    allowed = origins(port, extra_origins)
    return {
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": ",".join(allowed),
        # The Host header check (flows/service/prefect_server.py): a DNS-rebinding page cannot
        # reach the server under a name of its own.
        "CAIRN_ALLOWED_HOSTS": ",".join(hosts(allowed)),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": f"http://{host}:{port}/api",
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
    from flows import config

    env = server_env(port, auth_string(), extra_origins=config.load().deploy.allowed_origins)
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
