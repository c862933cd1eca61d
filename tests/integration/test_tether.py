"""A test stack's servers die with the process that started them, whichever of its threads did,
and survive that thread (the broker is restarted from worker threads in the chaos suite)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devkit.net import free_port
from devkit.processes import REPO
from devkit.stack import EmbeddedStack, StackPorts
from devkit.waiting import wait_for

pytestmark = pytest.mark.integration

STARTER = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from devkit.net import free_port
    from devkit.stack import EmbeddedStack, StackPorts

    stack = EmbeddedStack(
        Path(sys.argv[1]), StackPorts(free_port(), free_port(), free_port()),
        tied_to_parent=True, kafka="tansu",
    )
    worker = threading.Thread(target=stack.start, args=("smtp",))
    worker.start()
    worker.join()  # the thread that started the sink is gone now
    print(stack.pid("smtp"), flush=True)
    time.sleep(600)
    """
)


def alive(pid: int) -> bool:
    # Reaped between the two reads, or a zombie: dead for our purpose.
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return "Z" not in stat.split(")", 1)[1].split()[0]


def test_a_server_outlives_the_starting_thread_and_dies_with_the_process(tmp_path: Path) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert starter.stdout is not None
        sink = int(starter.stdout.readline())
        children = Path(f"/proc/{sink}/task/{sink}/children").read_text().split()
        assert len(children) == 1, "the tether runs the mail sink as its one child"
        server = int(children[0])
        wait_for(lambda: alive(server), 5, "the mail sink running")
        # Still up well after its starting thread ended.
        with pytest.raises(AssertionError):
            wait_for(lambda: not alive(server), 2, "the sink to stay up")
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        wait_for(lambda: not alive(server) and not alive(sink), 10, "the sink and its tether gone")
        # And its log says why, as a server gone mid-run should.
        log = (tmp_path / "logs" / "smtp.log").read_text()
        assert f"tether: the process that started pid {server} is gone; killing it" in log, log
    finally:
        starter.kill()


def test_a_stopped_mail_sink_says_which_signal_stopped_it(tmp_path: Path) -> None:
    stack = EmbeddedStack(tmp_path, StackPorts(1, 1, free_port()), tied_to_parent=True)
    stack.start("smtp")
    stack.stop("smtp")
    assert "mailsink stopping on SIGTERM" in stack.log_path("smtp").read_text()
