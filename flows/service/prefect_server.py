"""Prefect's server as `make serve` runs it: `python -m flows.service.prefect_server`.

The same app `prefect server start` serves (API, UI, services, one uvicorn process), with two
changes it has no setting for:

- a Host header check (``CAIRN_ALLOWED_HOSTS``, from flows/service/server.py): only the names
  the UI is opened under are answered, so a DNS-rebinding page cannot reach the API;
- every SQLite write transaction begins IMMEDIATE. Prefect begins most of them DEFERRED: a
  transaction that reads, then writes after another writer committed, gets "database is locked"
  at once, without waiting out busy_timeout (PrefectHQ/prefect#10188), which queued runs hit
  every few minutes. IMMEDIATE takes the write lock first, so writers wait their turn (WAL and
  a 60 s busy timeout are Prefect's already).
"""

from __future__ import annotations

import os
from typing import Any


def immediate_writes() -> None:
    """Make Prefect's SQLite configuration begin every transaction IMMEDIATE."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    begin = AioSqliteConfiguration.begin_transaction
    if getattr(begin, "cairn_immediate", False):
        return

    def begin_immediate(self: Any, session: Any, with_for_update: bool = False) -> Any:
        return begin(self, session, with_for_update=True)

    begin_immediate.cairn_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_immediate  # type: ignore[method-assign]


def app(allowed_hosts: list[str]) -> Any:
    """Prefect's whole server app behind a Host header check."""
    from prefect.server.api.server import create_app
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    immediate_writes()
    return TrustedHostMiddleware(create_app(final=True), allowed_hosts=allowed_hosts)


def main() -> None:
    import uvicorn

    hosts = [h for h in os.environ.get("CAIRN_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]
    uvicorn.run(app(hosts), host=os.environ.get("PREFECT_SERVER_API_HOST", "127.0.0.1"),
                port=int(os.environ["PREFECT_SERVER_API_PORT"]), timeout_keep_alive=5, log_level="info")  # fmt: skip


if __name__ == "__main__":
    main()
