"""bench: profiles and overrides from the command line; phases of a long end-to-end run."""

from pathlib import Path

from bench.environment import MailSink
from bench.options import SINKS, parse_options
from bench.pipeline import phase_sizes


def test_long_run_goes_to_the_discard_sink_in_phases_of_ten_thousand() -> None:
    options = parse_options(["--long"])
    assert options.orders == 100_000
    assert options.sinks == ("discard",)
    assert options.phase_orders == 10_000


def test_sinks_and_phases_can_be_overridden() -> None:
    assert parse_options(["--long", "--sinks", "both"]).sinks == SINKS
    assert parse_options(["--sinks", "maildir"]).sinks == ("maildir",)
    assert parse_options([]).sinks == SINKS
    assert parse_options([]).phase_orders is None
    assert parse_options(["--orders", "900", "--phase-orders", "400"]).phase_orders == 400


def test_phases_cover_every_order_once() -> None:
    assert phase_sizes(100_000, 10_000) == [10_000] * 10
    assert phase_sizes(900, 400) == [400, 400, 100]
    assert phase_sizes(5_000, None) == [5_000]
    assert phase_sizes(300, 1_000) == [300]


def test_clearing_a_maildir_sink_empties_its_inbox(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    for n in range(3):
        (tmp_path / "new" / f"m{n}").write_bytes(b"Subject: x\r\n\r\n")
    sink = MailSink("maildir", 2525, tmp_path)
    assert sink.inbox_count() == 3
    sink.clear()
    assert sink.inbox_count() == 0
    MailSink("discard", 2526, None).clear()  # nothing kept, nothing to clear
