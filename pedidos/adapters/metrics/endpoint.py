"""One small HTTP server per process: `/metrics` (Prometheus), `/healthz` (liveness: the event
loop is turning) and `/readyz` (readiness: the caller's check, e.g. broker reachable and
partitions held).

It runs on its own thread so a scrape is answered even while the event loop is busy, and a
stuck loop is what `/healthz` reports instead of hanging with it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)

# The loop beats this often; it is live while its last beat is younger than STALL_S.
BEAT_S = 1.0
STALL_S = 15.0
# The check's verdict: ready or not, and one line saying why.
Readiness = Callable[[], tuple[bool, str]]
StartResponse = Callable[..., Any]


class Heartbeat:
    """Beats from a task on the event loop; `/healthz` reads it from the HTTP thread."""

    def __init__(self, stall_s: float = STALL_S, beat_s: float = BEAT_S) -> None:
        self._stall_s = stall_s
        self._beat_s = beat_s
        self._last = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            self._last = time.monotonic()
            await asyncio.sleep(self._beat_s)

    def live(self) -> tuple[bool, str]:
        age = time.monotonic() - self._last
        if age > self._stall_s:
            return False, f"event loop stalled for {age:.0f} s"
        return True, "ok"

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Every scrape would be an access-log line on stderr."""


class MetricsEndpoint:
    def __init__(
        self,
        registry: CollectorRegistry,
        heartbeat: Heartbeat,
        ready: Readiness,
        host: str = "0.0.0.0",
        port: int = 0,
    ) -> None:
        self._metrics_app = make_wsgi_app(registry)
        self._heartbeat = heartbeat
        self._ready = ready
        self._server = make_server(host, port, self._app, _Server, handler_class=_QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-endpoint", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsEndpoint:
        self._thread.start()
        log.info("metrics endpoint listening", extra={"port": self.port})
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _verdict(self._heartbeat.live, start_response)
        if path == "/readyz":
            return _verdict(self._ready, start_response)
        if path in ("/metrics", "/"):
            return self._metrics_app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics, /healthz, /readyz\n"]


def _verdict(check: Readiness, start_response: StartResponse) -> Iterable[bytes]:
    try:
        ok, why = check()
    except Exception as exc:  # a failing check means not ready, never a 500 with a traceback
        ok, why = False, f"{exc.__class__.__name__}: {exc}"
    start_response(
        "200 OK" if ok else "503 Service Unavailable",
        [("Content-Type", "text/plain; charset=utf-8")],
    )
    return [f"{why}\n".encode()]
