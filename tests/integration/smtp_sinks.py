"""The in-process SMTP sink that defers and refuses on request (the fixture is in conftest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from admin.mailsink import Deferral

# Recipients the deferring sink refuses with 550.
REFUSED = "nadie@example.cl"


@dataclass
class DeferringSink:
    port: int
    maildir: Path
    deferrals: list[Deferral] = field(default_factory=list)
