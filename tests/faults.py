"""A fault-injecting HTTP reverse proxy for Elasticsearch (aiohttp, on its own thread).

It sits between a service and the ES stand-in and answers what a busy or failing cluster
answers: 429/503 for whole requests, or for single items inside a `_bulk` response. Items it
rejects are taken out of the request before it is forwarded, so, as with a real cluster, a
rejected item was not written. Everything it injects is counted, so a test can prove that the
faults really happened.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import ClientSession, web

from devkit.net import free_port

# Headers that belong to one hop, or that aiohttp recomputes for the body it sends.
_HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
}
_ERROR_TYPES = {
    429: "es_rejected_execution_exception",
    503: "unavailable_shards_exception",
}


@dataclass
class _RequestFault:
    status: int
    remaining: int
    path_part: str
    body_part: bytes
    # Forward first, then answer the error: the cluster did the work but the answer was lost.
    after_forward: bool


def _error_body(status: int) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "exception")
    reason = f"{kind} injected by tests.faults"
    return {"error": {"type": kind, "reason": reason}, "status": status}


def _bulk_operations(body: bytes) -> list[tuple[bytes, bytes | None]]:
    """The (action line, source line) pairs of a `_bulk` body; `delete` has no source."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    operations: list[tuple[bytes, bytes | None]] = []
    position = 0
    while position < len(lines):
        action = lines[position]
        if "delete" in orjson.loads(action):
            operations.append((action, None))
            position += 1
        else:
            operations.append((action, lines[position + 1]))
            position += 2
    return operations


class FaultyElasticsearch:
    """Listens on 127.0.0.1:`port` and forwards to `upstream`, injecting the armed faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # What was injected: "request 429", "item 503 create", ...; and every request by kind.
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._request_faults: list[_RequestFault] = []
        # (action, status) → how many more items of that action to answer with that status.
        self._item_faults: dict[tuple[str, int], int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._call(self._start())

    # -- arming (test thread) ----------------------------------------------------------------
    def fail_requests(
        self,
        count: int,
        status: int,
        path_part: str = "",
        *,
        body_part: bytes = b"",
        after_forward: bool = False,
    ) -> None:
        """Answer `status` to the next `count` requests whose path contains `path_part` and
        body `body_part`; with `after_forward`, only once the upstream has done the work."""
        fault = _RequestFault(status, count, path_part, body_part, after_forward)
        with self._lock:
            self._request_faults.append(fault)

    def reject_bulk_items(self, count: int, action: str, status: int = 429) -> None:
        """Answer `status` to the next `count` bulk items of `action` ("create", "index"...)."""
        with self._lock:
            key = (action, status)
            self._item_faults[key] = self._item_faults.get(key, 0) + count

    def armed(self) -> int:
        """Faults armed and not injected yet."""
        with self._lock:
            return sum(f.remaining for f in self._request_faults) + sum(self._item_faults.values())

    def close(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- the proxy (its own thread) ------------------------------------------------------------
    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(30)

    async def _start(self) -> None:
        self._session = ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _take_request_fault(self, path: str, body: bytes) -> _RequestFault | None:
        with self._lock:
            for fault in self._request_faults:
                if fault.remaining > 0 and fault.path_part in path and fault.body_part in body:
                    fault.remaining -= 1
                    self.injected[f"request {fault.status}"] += 1
                    return fault
        return None

    def _take_item_fault(self, action: str) -> int | None:
        with self._lock:
            for (name, status), remaining in self._item_faults.items():
                if name == action and remaining > 0:
                    self._item_faults[(name, status)] -= 1
                    self.injected[f"item {status} {action}"] += 1
                    return status
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.rel_url.path
        self.requests["bulk" if path.endswith("/_bulk") else path.rsplit("/", 1)[-1]] += 1
        fault = self._take_request_fault(path, body)
        if fault is not None and not fault.after_forward:
            return self._json(fault.status, _error_body(fault.status))
        # A request answered with an error after forwarding was done whole: no item refused.
        if fault is None and path.endswith("/_bulk") and request.method in ("POST", "PUT"):
            response = await self._bulk(request, body)
        else:
            response = await self._forward(request, body)
        if fault is not None:
            return self._json(fault.status, _error_body(fault.status))
        return response

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        status, headers, data = await self._upstream(request, body)
        return web.Response(status=status, headers=headers, body=data)

    async def _upstream(
        self, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with self._session.request(
            request.method,
            self.upstream + str(request.rel_url),
            headers=headers,
            data=body or None,
        ) as upstream:
            data = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
            return upstream.status, kept, data

    async def _bulk(self, request: web.Request, body: bytes) -> web.Response:
        operations = _bulk_operations(body)
        rejected: dict[int, dict[str, Any]] = {}
        forwarded: list[tuple[bytes, bytes | None]] = []
        for position, (action_line, source) in enumerate(operations):
            action = orjson.loads(action_line)
            name, meta = next(iter(action.items()))
            status = self._take_item_fault(name)
            if status is not None:
                rejected[position] = {
                    name: {
                        "_index": meta.get("_index", ""),
                        "_id": meta.get("_id"),
                        "status": status,
                        "error": _error_body(status)["error"],
                    }
                }
            else:
                forwarded.append((action_line, source))
        if not rejected:
            return await self._forward(request, body)
        items: list[dict[str, Any]] = []
        headers = {"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"}
        if forwarded:
            lines = [line for pair in forwarded for line in pair if line is not None]
            status, headers, data = await self._upstream(request, b"\n".join(lines) + b"\n")
            if status != 200:
                return web.Response(status=status, headers=headers, body=data)
            items = orjson.loads(data)["items"]
        merged = iter(items)
        result = [rejected.get(p) or next(merged) for p in range(len(operations))]
        return self._json(200, {"errors": True, "took": 1, "items": result}, headers)

    @staticmethod
    def _json(
        status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> web.Response:
        out = {k: v for k, v in (headers or {}).items() if k.lower() != "content-type"}
        out["X-Elastic-Product"] = "Elasticsearch"
        return web.Response(
            status=status, body=orjson.dumps(payload), content_type="application/json", headers=out
        )


class TcpCutter:
    """A loopback TCP forwarder that can be cut (refuse and drop connections) and restored.

    It takes a server away from its clients without restarting the server, for outage tests
    against servers whose own restart is not what is being tested.
    """

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target_port = target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self.restore()

    async def _pipe(self, reader: Any, writer: Any) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: Any, writer: Any) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self._target_port
            )
        except OSError:
            writer.close()
            return
        self._writers |= {writer, upstream_writer}
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )
        self._writers -= {writer, upstream_writer}

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def restore(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._run(listen())

    def cut(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

        self._run(close())
