"""Snapshots of the five customer e-mails of one fixed order: subject, preheader, both parts.

A change to the wording or layout shows here as a diff to review. After an intended change:
    PEDIDOS_UPDATE_SNAPSHOTS=1 python -m pytest tests/unit/test_email_snapshots.py
then look at the diff (and `make emails` for the pictures) before committing. The snapshots
are the sample e-mails in docs/emails, so the documentation shows exactly what is tested.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pedidos.adapters.email.preview import body, sample_email
from pedidos.domain.states import ALL_STATES, OrderState

SNAPSHOTS = Path(__file__).parents[2] / "docs" / "emails"
UPDATE = os.environ.get("PEDIDOS_UPDATE_SNAPSHOTS") == "1"


def rendered(state: OrderState) -> dict[str, str]:
    message = sample_email(state)
    html = body(message, "html")
    preheader = re.search(r'<div style="display: none;[^"]*">([^<]*)</div>', html)
    assert preheader is not None, "the hidden preheader is the first element of the body"
    head = f"Subject: {message['Subject']}\nPreheader: {preheader.group(1)}\n\n"
    return {"txt": head + body(message, "plain"), "html": html}


@pytest.mark.parametrize("state", ALL_STATES, ids=lambda state: state.slug)
def test_both_parts_match_their_snapshot(state: OrderState) -> None:
    for suffix, text in rendered(state).items():
        path = SNAPSHOTS / f"{state.position + 1}-{state.slug}.{suffix}"
        if UPDATE:
            path.write_text(text, encoding="utf-8")
        assert path.exists(), f"no snapshot {path.name}: run with PEDIDOS_UPDATE_SNAPSHOTS=1"
        assert text == path.read_text(encoding="utf-8"), f"{path.name} changed"


def test_snapshots_have_no_strays() -> None:
    expected = {
        f"{state.position + 1}-{state.slug}.{suffix}"
        for state in ALL_STATES
        for suffix in ("txt", "html", "png")
    }
    assert {path.name for path in SNAPSHOTS.iterdir()} == expected
