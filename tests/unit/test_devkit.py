"""devkit: the cache fills once and atomically, services report an early exit instead of a
timeout, a tied service dies with its starter, and waiting fails naming what it waited for."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devkit.cache import fill_once
from devkit.processes import ServiceError, ServiceProcess
from devkit.stack import EmbeddedStack, StackPorts
from devkit.waiting import WaitTimeout, wait_for


class FillFailed(RuntimeError):
    pass


def writer(content: str, exit_code: int = 0) -> list[str]:
    """A command that writes `content` into the folder given as its last argument."""
    script = (
        "import sys, pathlib; pathlib.Path(sys.argv[1], 'data').write_text(sys.argv[2]); "
        f"print('fetch failed: no network', file=sys.stderr); sys.exit({exit_code})"
    )
    return [sys.executable, "-c", script]


def test_a_fill_lands_whole_with_what_finish_added_and_leaves_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "libs"
    fill_once(
        target,
        lambda staging: [*writer("jars"), str(staging), "jars"],
        60,
        FillFailed,
        finish=lambda staging: (staging / "manifest.json").touch(),
    )
    assert (target / "data").read_text() == "jars"
    assert (target / "manifest.json").exists()
    assert [p.name for p in target.parent.iterdir()] == ["libs"]


def test_a_failed_fill_names_the_tool_s_last_line_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "libs"
    with pytest.raises(FillFailed, match="fetch failed: no network"):
        fill_once(
            target, lambda staging: [*writer("half", 1), str(staging), "half"], 60, FillFailed
        )
    assert list(target.parent.iterdir()) == []


def test_a_cache_another_run_filled_first_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "libs"
    target.mkdir()
    (target / "data").write_text("first")
    fill_once(target, lambda staging: [*writer("second"), str(staging), "second"], 60, FillFailed)
    assert (target / "data").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["libs"]


def test_waiting_for_a_log_line_of_a_service_that_exited_fails_at_once(tmp_path: Path) -> None:
    # json.tool reads its (empty) stdin, fails and exits: it will never log what is awaited.
    service = ServiceProcess("json.tool", {}, tmp_path).start()
    started = time.monotonic()
    with pytest.raises(ServiceError, match=r"json\.tool exited"):
        service.wait_log("ready", timeout=30)
    assert time.monotonic() - started < 10


def sleeper(tmp_path: Path, log_name: str | None = None) -> ServiceProcess:
    """A tied `python -m sleeper` that runs until it is stopped."""
    (tmp_path / "sleeper.py").write_text("import time\ntime.sleep(120)\n")
    env = {"PYTHONPATH": str(tmp_path)}
    return ServiceProcess("sleeper", env, tmp_path, log_name=log_name, tied=True).start()


def test_a_tied_service_dies_when_its_starter_goes(tmp_path: Path) -> None:
    # The tether kills it once its lifeline (the tether's stdin) closes.
    service = sleeper(tmp_path, "web")
    assert service.process is not None
    assert service.process.stdin is not None
    time.sleep(0.5)
    assert service.running
    service.process.stdin.close()  # what the starter's death does
    wait_for(lambda: not service.running, 10, "the tether and its service gone")
    assert (tmp_path / "web.log").exists()


def test_a_tied_service_stops_on_sigterm_through_its_tether(tmp_path: Path) -> None:
    service = sleeper(tmp_path)
    time.sleep(0.5)
    assert service.stop(10) == 143  # the tether reports the signal that ended its child


def test_waiting_in_vain_names_what_it_waited_for() -> None:
    with pytest.raises(WaitTimeout, match="timed out after 0s waiting for the impossible"):
        wait_for(lambda: False, 0.2, "the impossible", 0.05)
    assert wait_for(lambda: "found", 1, "something") == "found"


def test_a_stack_never_signals_a_process_that_took_over_its_services_pid(tmp_path: Path) -> None:
    """A pidfile left by a service that died names a pid the system may give to any new
    process: the stack must not take it for its service, nor stop its process group."""
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        stack = EmbeddedStack(tmp_path, StackPorts(1, 1, 1))
        pidfile = tmp_path / "run" / "smtp.pid"
        pidfile.parent.mkdir(parents=True)
        started = Path(f"/proc/{stranger.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        # The service that wrote it started at another time than the process now at that pid.
        pidfile.write_text(f"{stranger.pid} {int(started) - 1}")
        assert stack.pid("smtp") is None
        stack.stop("smtp", signal.SIGKILL, timeout=1)
        assert stranger.poll() is None, "the stack signalled a stranger's process group"
        assert not pidfile.exists()
        # Its own process (the same start time) is found and stopped.
        pidfile.write_text(f"{stranger.pid} {started}")
        assert stack.pid("smtp") == stranger.pid
        stack.stop("smtp", signal.SIGTERM, timeout=10)
        stranger.wait(5)  # gone (reaped by the stack, which waits for its own children)
        assert stack.pid("smtp") is None
    finally:
        stranger.kill()
        stranger.wait()
