"""The services' log lines: one JSON object each, with the fields the README documents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# In a process of its own: configure_logging replaces the root logger's handlers.
EMIT = """
import logging
from pedidos.runtime.logs import configure_logging, mask_email
configure_logging("consumer", "INFO")
logging.getLogger("pedidos.services.order_walk").info(
    "order state reached",
    extra={"order_id": "o-1", "state": "Preparación", "customer": mask_email("ana@x.cl")},
)
logging.getLogger("pedidos.services.order_walk").debug("not at INFO")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("consumer").exception("step failed")
"""


def test_each_record_is_one_json_line_with_the_documented_fields() -> None:
    result = subprocess.run(
        [sys.executable, "-c", EMIT], cwd=REPO, capture_output=True, timeout=60, check=True
    )
    lines = result.stderr.decode("utf-8").splitlines()
    assert len(lines) == 2
    # The bench's log scanner (bench/logscan.py) and some tests look for these very bytes.
    assert '"message":"order state reached"' in lines[0]
    assert lines[0].startswith('{"ts":"')
    state, failure = (json.loads(line) for line in lines)
    assert set(state) == {
        "ts", "level", "logger", "pid", "message", "component", "order_id", "state", "customer"
    }  # fmt: skip
    assert state["level"] == "INFO"
    assert state["component"] == "consumer"
    assert state["state"] == "Preparación"  # UTF-8 as it is
    assert state["customer"] == "a***@x.cl"
    assert isinstance(state["pid"], int)
    assert failure["level"] == "ERROR"
    assert "ValueError: boom" in failure["exc_info"]
