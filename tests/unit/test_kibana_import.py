"""import_saved_objects against a stand-in for Kibana's two endpoints.

Kibana itself cannot run here (no Docker engine, and it is not on PyPI), so a stdlib HTTP server
on 127.0.0.1 imitates `/api/status` and `/api/saved_objects/_import` and records what it got.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from admin import kibana
from admin.kibana import KibanaError, import_saved_objects

NDJSON = Path(__file__).resolve().parents[2] / "admin" / "kibana" / "pedidos.ndjson"
AVAILABLE = (200, "available")
STARTING = (503, "unavailable")
IMPORTED = (200, {"success": True, "successCount": 11, "successResults": []})


@dataclass
class Recorded:
    method: str
    path: str
    headers: Message
    body: bytes


@dataclass
class FakeKibana:
    """What the server answers (status answers are consumed in order, the last one repeats)."""

    # (HTTP code, overall level) or (HTTP code, overall level, saved objects service level)
    statuses: list[tuple[Any, ...]] = field(default_factory=lambda: [AVAILABLE])
    import_answer: tuple[int, dict[str, Any]] = IMPORTED
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def next_status(self) -> tuple[Any, ...]:
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def imports(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/api/saved_objects/_import")]


def _handler(fake: FakeKibana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.requests.append(Recorded("GET", self.path, self.headers, b""))
            if self.path != "/api/status":
                self._answer(404, {"error": "Not Found"})
                return
            code, level, *saved_objects = fake.next_status()
            status: dict[str, Any] = {"overall": {"level": level}}
            if saved_objects:
                status["core"] = {"savedObjects": {"level": saved_objects[0]}}
            self._answer(code, {"status": status})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fake.requests.append(Recorded("POST", self.path, self.headers, body))
            if not self.path.startswith("/api/saved_objects/_import"):
                self._answer(404, {"error": "Not Found"})
                return
            self._answer(*fake.import_answer)

        def _answer(self, code: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest's output clean

    return Handler


@pytest.fixture
def fake_kibana(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKibana]:
    monkeypatch.setattr(kibana, "_FIRST_BACKOFF_S", 0.01)
    monkeypatch.setattr(kibana, "_MAX_BACKOFF_S", 0.05)
    fake = FakeKibana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _multipart_files(recorded: Recorded) -> dict[str, tuple[str | None, bytes]]:
    """Form field name → (filename, content) of a multipart/form-data body."""
    head = f"Content-Type: {recorded.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + recorded.body)
    assert message.is_multipart()
    parts: dict[str, tuple[str | None, bytes]] = {}
    for part in message.get_payload():
        assert isinstance(part, Message)
        name = str(part.get_param("name", header="content-disposition"))
        content = part.get_payload(decode=True)
        assert isinstance(content, bytes)
        parts[name] = (part.get_filename(), content)
    return parts


def test_posts_the_ndjson_as_multipart_with_xsrf_and_overwrite(fake_kibana: FakeKibana) -> None:
    answer = import_saved_objects(fake_kibana.url + "/", NDJSON, timeout_s=5)

    assert answer["successCount"] == 11
    (posted,) = fake_kibana.imports()
    assert posted.method == "POST"
    assert posted.path == "/api/saved_objects/_import?overwrite=true"
    assert posted.headers["kbn-xsrf"] == "true"
    assert posted.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    files = _multipart_files(posted)
    assert files == {"file": ("pedidos.ndjson", NDJSON.read_bytes())}


def test_waits_while_kibana_is_starting(fake_kibana: FakeKibana) -> None:
    fake_kibana.statuses = [STARTING, STARTING, (200, "degraded"), AVAILABLE]

    import_saved_objects(fake_kibana.url, NDJSON, timeout_s=5)

    asked = [r.path for r in fake_kibana.requests if r.method == "GET"]
    assert asked == ["/api/status"] * 4
    assert len(fake_kibana.imports()) == 1, "imports once, only after 'available'"


def test_a_degraded_kibana_whose_saved_objects_work_gets_the_dashboards(
    fake_kibana: FakeKibana,
) -> None:
    """A plugin can keep the overall level at `degraded` for long; the import needs only the
    saved objects service, so it must not wait for the overall level."""
    fake_kibana.statuses = [(503, "unavailable", "unavailable"), (200, "degraded", "available")]

    import_saved_objects(fake_kibana.url, NDJSON, timeout_s=5)

    assert len(fake_kibana.imports()) == 1


def test_waits_for_the_saved_objects_service_even_when_overall_is_available(
    fake_kibana: FakeKibana,
) -> None:
    fake_kibana.statuses = [(200, "available", "degraded"), (200, "available", "available")]

    import_saved_objects(fake_kibana.url, NDJSON, timeout_s=5)

    asked = [r.path for r in fake_kibana.requests if r.method == "GET"]
    assert asked == ["/api/status"] * 2
    assert len(fake_kibana.imports()) == 1


def test_gives_up_with_a_clear_error_when_never_available(fake_kibana: FakeKibana) -> None:
    fake_kibana.statuses = [STARTING]

    with pytest.raises(KibanaError, match=r"not available within 0\.3 s .*HTTP 503"):
        import_saved_objects(fake_kibana.url, NDJSON, timeout_s=0.3)
    assert fake_kibana.imports() == []
    assert len(fake_kibana.requests) > 1, "retried before giving up"


def test_gives_up_when_nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kibana, "_FIRST_BACKOFF_S", 0.01)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(KibanaError, match="not available within"):
            import_saved_objects(f"http://127.0.0.1:{port}", NDJSON, timeout_s=0.2)


def test_success_false_raises_naming_the_failed_objects(fake_kibana: FakeKibana) -> None:
    fake_kibana.import_answer = (
        200,
        {
            "success": False,
            "successCount": 10,
            "errors": [
                {
                    "id": "pedidos-dashboard",
                    "type": "dashboard",
                    "error": {"type": "missing_references", "references": []},
                }
            ],
        },
    )

    with pytest.raises(KibanaError, match="dashboard/pedidos-dashboard: missing_references"):
        import_saved_objects(fake_kibana.url, NDJSON, timeout_s=5)


def test_http_error_on_import_raises(fake_kibana: FakeKibana) -> None:
    fake_kibana.import_answer = (400, {"statusCode": 400, "message": "Invalid file extension"})

    with pytest.raises(KibanaError, match=r"400 .*Invalid file extension"):
        import_saved_objects(fake_kibana.url, NDJSON, timeout_s=5)


def test_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(KibanaError, match="KIBANA_URL"):
        import_saved_objects("file:///etc/passwd", NDJSON, timeout_s=1)
