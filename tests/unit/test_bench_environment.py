"""bench's stack: each run of several gets its own run id and its own log directory."""

from pathlib import Path

from bench.environment import BenchStack
from bench.options import parse_options


def test_each_run_has_its_own_id_and_logs_under_the_same_root(tmp_path: Path) -> None:
    stack = BenchStack(tmp_path, parse_options([]))  # built, nothing started
    assert stack.logs == stack.logs_root == tmp_path / "logs"  # a single run: the root itself
    stack.for_run("a1b2c3", 2)
    assert stack.run_id == "a1b2c3-2"
    assert stack.logs == tmp_path / "logs" / "run-2"
    stack.for_run("a1b2c3", 3)
    assert (stack.run_id, stack.logs.name) == ("a1b2c3-3", "run-3")
    assert stack.logs_root == tmp_path / "logs"  # what the results JSON points to
