"""The Kafka consumer's thread: calls run one at a time in the order asked, their results and
errors reach the awaiting task, and a call that never returns does not hold the process's exit
(librdkafka's close() with a broker that answers nothing)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading

import pytest

from pedidos.adapters.kafka.record_source import ConsumerThread


def test_calls_run_on_one_thread_in_order_and_answer_their_task() -> None:
    ran: list[tuple[int, str]] = []

    def call(n: int) -> int:
        ran.append((n, threading.current_thread().name))
        return n * 10

    def fails() -> None:
        raise KeyError("broken")

    async def scenario() -> None:
        thread = ConsumerThread("kafka-consumer-test")
        answers = [thread.run(call, n) for n in range(5)]
        assert await asyncio.gather(*answers) == [0, 10, 20, 30, 40]
        with pytest.raises(KeyError, match="broken"):
            await thread.run(fails)
        assert await thread.run(call, 5) == 50  # a failed call does not end the thread
        thread.stop()

    asyncio.run(scenario())
    assert ran == [(n, "kafka-consumer-test") for n in range(6)]


def test_a_call_that_never_returns_does_not_hold_the_exit() -> None:
    program = textwrap.dedent(
        """
        import asyncio, threading
        from pedidos.adapters.kafka.record_source import ConsumerThread

        async def main():
            thread = ConsumerThread("kafka-consumer")
            stuck = thread.run(threading.Event().wait)  # never set
            try:
                await asyncio.wait_for(stuck, 0.2)
            except TimeoutError:
                print("gave up", flush=True)

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout) == (0, "gave up\n"), done.stderr
