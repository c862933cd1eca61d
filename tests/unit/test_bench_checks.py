"""bench: the correctness checks that make a figure FAILED instead of reported."""

from datetime import datetime
from pathlib import Path

import pytest

from bench.checks import (
    STATE_NAMES,
    PipelineCounts,
    delivery_problems,
    inbox_problems,
    pipeline_problems,
    rpc_problems,
)
from bench.logscan import LogTail, consumer_pace, scan_log_text
from devkit.inbox import STATE_SLUGS


def counts(n: int, **changes: object) -> PipelineCounts:
    fields: dict[str, object] = {
        "orders_total": n,
        "orders_finalizado": n,
        "events_by_state": dict.fromkeys(STATE_NAMES, n),
        "events_email_sent": 5 * n,
        "inbox_messages": 5 * n,
    }
    fields.update(changes)
    return PipelineCounts(**fields)  # type: ignore[arg-type]


def test_a_complete_run_has_no_problems() -> None:
    assert pipeline_problems(5_000, counts(5_000)) == []
    assert pipeline_problems(5_000, counts(5_000, inbox_messages=None)) == []  # discarding sink


def test_an_order_short_of_finalizado_is_refused() -> None:
    problems = pipeline_problems(5_000, counts(5_000, orders_finalizado=4_999))
    assert problems == ["4999 of 5000 orders are Finalizado"]


def test_a_duplicate_email_is_refused() -> None:
    problems = pipeline_problems(10, counts(10, inbox_messages=51))
    assert problems == ["inbox received 51 e-mails, expected 50"]


def test_a_missing_event_is_refused_with_its_state() -> None:
    by_state = dict.fromkeys(STATE_NAMES, 10)
    by_state["Enviado"] = 9
    problems = pipeline_problems(10, counts(10, events_by_state=by_state))
    assert "events index holds 49 events, expected 50" in problems
    assert "9 Enviado events, expected 10" in problems


def test_events_for_unknown_states_and_unsent_emails_are_refused() -> None:
    by_state = {**dict.fromkeys(STATE_NAMES, 1), "Perdido": 0}
    assert any(
        "unknown states" in p for p in pipeline_problems(1, counts(1, events_by_state=by_state))
    )
    assert pipeline_problems(1, counts(1, events_email_sent=4)) == [
        "4 events say e-mail sent, expected 5"
    ]


def test_each_order_needs_each_state_email_exactly_once() -> None:
    good = list(STATE_SLUGS)
    assert inbox_problems(["a"], {"a": good}) == []
    assert inbox_problems(["a"], {"a": list(reversed(good))}) == []  # arrival order is free
    problems = inbox_problems(["a", "b", "c"], {"a": good, "b": [*good, "enviado"], "c": good[:4]})
    assert len(problems) == 1
    assert problems[0].startswith("2 orders without exactly one e-mail per state")
    assert inbox_problems(["missing"], {}) != []


def test_failed_calls_or_an_empty_window_refuse_a_rate() -> None:
    assert rpc_problems(100, {}) == []
    assert rpc_problems(0, {}) == ["no call completed in the measurement window"]
    assert rpc_problems(100, {"UNAVAILABLE": 2}) == ["2 calls failed: {'UNAVAILABLE': 2}"]


def test_every_record_must_be_confirmed() -> None:
    assert delivery_problems("records", 10, 10, 0) == []
    assert delivery_problems("records", 10, 9, 1) == [
        "1 records failed",
        "9 of 10 records confirmed",
    ]


def test_log_scan_counts_levels_and_keeps_what_looks_wrong() -> None:
    text = "\n".join(
        [
            '{"level": "INFO", "message": "order accepted"}',
            '{"level": "WARNING", "message": "sending e-mail failed"}',
            '{"level": "WARNING", "message": "sending e-mail failed"}',
            "Traceback (most recent call last):",
        ]
    )
    findings = scan_log_text(text)
    assert findings.by_level == {"INFO": 1, "WARNING": 2, "UNSTRUCTURED": 1}
    assert findings.messages["WARNING sending e-mail failed"] == 2
    assert findings.suspicious == 3


def test_log_tail_counts_matching_lines_once_even_when_cut_mid_line(tmp_path: Path) -> None:
    log = tmp_path / "consumer.log"
    tail = LogTail(
        log, {"sent": ['"order state reached"', '"email":"sent"'], "any": ['"order state']}
    )
    assert tail.poll() == {"sent": 0, "any": 0}
    sent = '{"message":"order state reached","email":"sent"}\n'
    log.write_text(sent + sent[:20])
    assert tail.poll() == {"sent": 1, "any": 1}
    with open(log, "a") as handle:
        handle.write(sent[20:] + '{"message":"order state reached","email":"rejected"}\n')
    assert tail.poll() == {"sent": 2, "any": 3}
    assert tail.poll() == {"sent": 2, "any": 3}


def test_consumer_pace_finds_the_longest_pause_between_transitions(tmp_path: Path) -> None:
    log = tmp_path / "consumer.log"
    line = (
        '{{"ts":"2026-01-01 10:00:{s},{ms:03d}","level":"INFO","message":"{m}",'
        '"state":"{state}"}}\n'
    )
    log.write_text(
        line.format(s="00", ms=0, m="order state reached", state="Procesando")
        + line.format(s="00", ms=500, m="order state reached", state="Finalizado")
        + line.format(s="01", ms=0, m="partitions assigned", state="")
        + line.format(s="03", ms=500, m="order state reached", state="Preparación")
    )
    pace = consumer_pace(log)
    assert pace is not None
    assert pace.transitions == 3
    assert pace.longest_gap_s == pytest.approx(3.0)
    assert pace.idle_seconds == 2  # seconds :01 and :02
    assert pace.last_finalizado_at == datetime(2026, 1, 1, 10, 0, 0, 500_000).timestamp()
    assert consumer_pace(tmp_path / "missing.log") is None
