"""`python devkit/tether.py CMD ARGS...`: run CMD, and kill it when the process that started the
tether dies, whichever of its threads started it.

The tether's stdin is a pipe whose only writer is the starting process, so end-of-file means that
process is gone. (PR_SET_PDEATHSIG fires when the starting *thread* exits, and setting it needs a
`preexec_fn`, which is unsafe in a process running gRPC threads: forked children crashed.) The
stacks, services and clients that tests, the bench and the demo start use it (via `spawn`), so a
killed pytest or bench leaves no server behind. Kept free of project imports: it runs as a plain
script.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any


def spawn(argv: list[str], tied: bool, **popen: Any) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own (a signal to its process group reaches it and any
    tether, not the caller). `tied`: through the tether, which kills it when this process dies;
    keep the returned Popen, whose stdin is the tether's lifeline, for as long as it should run.
    """
    if tied:
        argv = [sys.executable, str(Path(__file__).resolve()), *argv]
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if tied else subprocess.DEVNULL,
        start_new_session=True,
        **popen,
    )


def _watch_parent(child: subprocess.Popen[bytes]) -> None:
    while os.read(0, 4096):
        pass
    if child.poll() is None:
        # Said in the server's log, so a server gone mid-run tells why (a CI run once lost its
        # mail sink without a line).
        print(f"tether: the process that started pid {child.pid} is gone; killing it", flush=True)
        child.kill()


def main(argv: list[str]) -> int:
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    # Both share a process group: a signal to the group reaches the child itself, and the tether
    # leaves with it. Ignored only now, since an ignored signal stays ignored across exec.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGUSR1 asks the services for their stacks; by default it would end the tether.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(child,), daemon=True).start()
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
