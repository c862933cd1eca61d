"""Whether the mail server is out for every e-mail (down, refusing our credentials, TLS...).

The steps that e-mail report here; the consumer stops fetching while an outage lasts, so orders
wait on Kafka instead of piling up half done, and the log gets one line per interval instead of
one per attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

LOG_INTERVAL_S = 10.0


class MailOutage:
    def __init__(
        self, log_interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log_interval_s = log_interval_s
        self._clock = clock
        # Steps whose last attempt failed for the outage. Each step leaves on its way out, so a
        # cancelled step cannot keep intake paused with nobody left to probe the server.
        self._failing: set[object] = set()
        self._since = 0.0
        self._last_log = 0.0
        self._attempts = 0

    @property
    def active(self) -> bool:
        return bool(self._failing)

    @contextmanager
    def step(self) -> Iterator[object]:
        """One e-mail's attempts; the token it yields is what `failed` takes."""
        token = object()
        try:
            yield token
        finally:
            self._failing.discard(token)

    def failed(self, token: object, reason: str) -> None:
        now = self._clock()
        began = not self._failing
        self._failing.add(token)
        self._attempts += 1
        if began:
            self._since, self._attempts = now, 1
        elif now - self._last_log < self._log_interval_s:
            return
        self._last_log = now
        log.warning(
            "sending e-mail failed: %s; mail server unavailable, %d e-mail(s) waiting, "
            "intake paused, retrying",
            reason,
            len(self._failing),
            extra={
                "waiting": len(self._failing),
                "failed_attempts": self._attempts,
                "outage_s": round(now - self._since, 1),
            },
        )

    def answered(self) -> None:
        """The server took a message or judged it: whatever the outage was, it is over."""
        if self._failing:
            self._failing.clear()
            log.info(
                "mail server available again after %.1fs; intake resumed",
                self._clock() - self._since,
                extra={"failed_attempts": self._attempts},
            )
