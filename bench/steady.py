"""10 steady load: orders arriving one by one at a fixed rate, not queued all at once.

The end-to-end figures (6, 7) send every order up front, so the consumer works through a
backlog and every request it makes (a bulk, a produce, a fetch) carries many steps. A shop sees
orders arrive over time: at 40 a second with stage delays 0 the steps hardly overlap, and what
each request costs is paid by one or two steps. This is the consumer's CPU per order there.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from bench.figures import Figure
from bench.load import order_requests
from bench.logscan import TransitionTail
from bench.resources import CpuMeter, cpu_ms_per_unit
from devkit.credentials import producer_channel
from pedidos.v1 import orders_pb2_grpc

STEADY_RATE = 40.0  # orders/s
CALL_TIMEOUT_S = 30.0
# After the last order is sent, how long its walk (and the rest) may take.
DRAIN_TIMEOUT_S = 60.0
POLL_S = 0.05


def _finalizado(tail: TransitionTail, order_ids: set[str], deadline: float) -> None:
    left = set(order_ids)
    while left:
        done = (seen for seen, state, _ in tail.transitions() if state == "Finalizado")
        left.difference_update(done)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(left)} of {len(order_ids)} orders did not reach Finalizado")
        time.sleep(POLL_S)


def measure_steady(
    figure: Figure, address: str, tail: TransitionTail, consumer_pid: int, orders: int
) -> None:
    """`orders` orders, one every 1/STEADY_RATE s (each CreateOrder on a thread of its own, so
    a slow answer does not delay the next); the consumer's CPU from the first send until the
    last order is Finalizado."""
    meter = CpuMeter({"consumer": [consumer_pid]})
    with producer_channel(address) as channel, ThreadPoolExecutor(32) as pool:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        request = order_requests(seed=400, key_prefix=f"steady-{uuid.uuid4().hex[:6]}")

        def call(number: int) -> str:
            return str(stub.CreateOrder(request(number), timeout=CALL_TIMEOUT_S).order_id)

        meter.start()
        started = time.monotonic()
        calls = []
        for number in range(orders):
            time.sleep(max(0.0, started + number / STEADY_RATE - time.monotonic()))
            calls.append(pool.submit(call, number))
        sent_s = time.monotonic() - started
        order_ids = {each.result() for each in calls}
    _finalizado(tail, order_ids, time.monotonic() + DRAIN_TIMEOUT_S)
    usage = meter.stop()
    figure.value = cpu_ms_per_unit(usage, "consumer", orders)
    figure.notes.append(
        f"{orders:,} orders sent over {sent_s:.1f}s ({orders / sent_s:.1f}/s), all Finalizado "
        f"{usage.wall_s:.1f}s after the first"
    )
    figure.details = {"orders": orders, "rate": STEADY_RATE, "sent_s": round(sent_s, 2)}
