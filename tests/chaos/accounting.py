"""Exact counts at the end of a chaos scenario: what was lost, and every place an order's effects
can really repeat (e-mails, steps, state records, order records). See ChaosRow."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from devkit.inbox import STATE_SLUGS, Inbox
from devkit.indices import search_docs
from devkit.processes import ServiceProcess, Services
from devkit.stack import EmbeddedStack
from devkit.topics import read_topic
from devkit.waiting import wait_for
from pedidos.domain.states import ALL_STATES
from tests.chaos.conftest import ROWS, ChaosRow


def logged_steps(processes: Iterable[ServiceProcess]) -> Counter[tuple[str, str]]:
    """How many times each (order, state) step was completed, from the consumers' logs."""
    steps: Counter[tuple[str, str]] = Counter()
    for process in processes:
        if process.module != "consumer":
            continue
        for line in process.log().splitlines():
            if '"order state reached"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by SIGKILL
            steps[(entry["order_id"], entry["state"])] += 1
    return steps


def log_count(processes: Iterable[ServiceProcess], module: str, text: str) -> int:
    return sum(p.log().count(text) for p in processes if p.module == module)


def repeats(keys: Iterable[Any]) -> int:
    counts = Counter(keys)
    return sum(count - 1 for count in counts.values())


def account(
    scenario: str,
    services: Services,
    stack: EmbeddedStack,
    order_ids: list[str],
    recovery_s: float,
    faults: int,
) -> ChaosRow:
    """Orders missing a state e-mail or a document, and every repeat, counted exactly."""
    env = services.env
    wanted = set(order_ids)
    time.sleep(1.5)  # late duplicates, if any, arrive now
    states = Inbox(stack.maildir).states_by_order(order_ids)
    lost = sum(1 for o in order_ids if list(dict.fromkeys(states.get(o, []))) != STATE_SLUGS)
    duplicate_emails = sum(len(s) for s in states.values()) - 5 * len(order_ids)

    def final_docs() -> list[dict[str, Any]]:
        return search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_ORDERS_INDEX"], order_ids)

    wait_for(
        lambda: sum(d["state"] == "Finalizado" for d in final_docs()) == len(order_ids),
        60,
        "Finalizado",
    )
    events = search_docs(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_EVENTS_INDEX"], order_ids)
    per_order = Counter(d["order_id"] for d in events)
    incomplete = [o for o in order_ids if per_order.get(o) != 5]
    for order_id in incomplete[:5]:
        present = sorted(d["state"] for d in events if d["order_id"] == order_id)
        print(f"incomplete: order {order_id} has event documents for {present}")

    steps = logged_steps(services.started)
    redone_steps = sum(n - 1 for (order_id, _), n in steps.items() if order_id in wanted)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    state_records = read_topic(bootstrap, env["PEDIDOS_STATES_TOPIC"], 5 * len(wanted), 120)
    reached = []
    for key, value, _ in state_records:
        if key is not None and key.decode() in wanted and value is not None:
            reached.append((key.decode(), json.loads(value)["state"]))
    order_records = read_topic(bootstrap, env["PEDIDOS_TOPIC"], len(wanted), 120)
    row = ChaosRow(
        scenario,
        len(order_ids),
        lost + len(incomplete),
        duplicate_emails,
        redone_steps,
        repeats(reached),
        repeats(k.decode() for k, _, _ in order_records if k is not None and k.decode() in wanted),
        faults,
        recovery_s,
    )
    ROWS.append(row)
    print(row)
    return row


def stall_report(services: Services, stack: EmbeddedStack, order_ids: list[str]) -> str:
    """Where unfinished orders stopped: their last e-mail, their records on the states topic,
    and the group's committed offsets against the end of each partition."""
    env = services.env
    emailed = Inbox(stack.maildir).states_by_order(order_ids)
    stuck = {o: emailed.get(o, []) for o in order_ids if len(set(emailed.get(o, []))) < 5}
    on_topic: dict[str, list[str]] = {}
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    for key, value, _ in read_topic(bootstrap, env["PEDIDOS_STATES_TOPIC"], 1, 60):
        if key is not None and key.decode() in stuck and value is not None:
            on_topic.setdefault(key.decode(), []).append(json.loads(value)["state"])
    offsets = [f"{t}-{p} {c}/{e}" for (t, p), (c, e) in group_offsets(env).items()]
    examples = [f"{o}: e-mailed {s}, on topic {on_topic.get(o, [])}" for o, s in stuck.items()]
    return (
        f"{len(stuck)} orders unfinished, by e-mails sent: "
        f"{dict(Counter(len(set(s)) for s in stuck.values()))}; committed/end: {offsets}; "
        + "; ".join(examples[:5])
        + consumers_now(services.started)
    )


def consumers_now(processes: Iterable[ServiceProcess]) -> str:
    """Whether each consumer runs (else its exit code: -9 is a SIGKILL), its stacks if it does,
    and the end of its log without the per-step lines: where a stalled consumer waits or why it
    is gone (a CI run stalled once after a broker restart, and its logs were gone with it)."""
    consumers = [p for p in processes if p.module == "consumer"]
    for process in consumers:
        process.log_stacks()
    time.sleep(1.0)  # faulthandler writes at once; the log file is read back here
    return "".join(
        f"\n--- consumer {p.log_path.name}: "
        + ("running" if p.running else f"exited with {p.returncode}")
        + ", end of its log ---\n"
        + p.log_tail(200, skip='"order state reached"')
        for p in consumers
    )


Position = tuple[str, int]  # topic, partition
# Per partition of `Pedidos` and the states topic: the group's committed offset and the end.
Offsets = dict[Position, tuple[int, int]]


def group_offsets(env: dict[str, str], settle_s: float = 0.0) -> Offsets:
    """The consumer group's committed offsets and the ends of its partitions, now: taken right
    after a member died, or right after a rebalance, they say what may be redelivered.

    `settle_s`: the ends are read that long after the committed offsets. A member SIGKILLed
    with produce requests in flight may have records the broker appends after its death: they
    were done before the kill, only late to appear, and a snapshot must count them."""
    reader = Consumer(
        {
            "bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"],
            "group.id": env["KAFKA_CONSUMER_GROUP"],
        }
    )
    try:
        topics = [env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"]]
        partitions = [
            TopicPartition(topic, number)
            for topic in topics
            for number in reader.list_topics(topic, timeout=30).topics[topic].partitions
        ]
        committed = reader.committed(partitions, timeout=30)
        time.sleep(settle_s)
        offsets = {}
        for each in committed:
            position = (each.topic, each.partition)
            low, high = reader.get_watermark_offsets(TopicPartition(*position), timeout=30)
            offsets[position] = (each.offset if each.offset >= 0 else low, high)
        return offsets
    finally:
        reader.close()


def record_positions(env: dict[str, str]) -> dict[tuple[str, str], list[tuple[Position, int]]]:
    """Where each (order, "accepted" or state) record sits: (topic, partition) and offset."""
    reader = Consumer(
        {"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"], "group.id": "chaos-positions"}
    )
    found: dict[tuple[str, str], list[tuple[Position, int]]] = {}
    try:
        ends: dict[Position, int] = {}
        for topic in (env["PEDIDOS_TOPIC"], env["PEDIDOS_STATES_TOPIC"]):
            for number in reader.list_topics(topic, timeout=30).topics[topic].partitions:
                ends[(topic, number)] = reader.get_watermark_offsets(
                    TopicPartition(topic, number), timeout=30
                )[1]
        reader.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
        read = dict.fromkeys(ends, 0)
        deadline = time.monotonic() + 120
        while any(read[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for message in reader.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                position = (str(message.topic()), int(message.partition() or 0))
                offset = int(message.offset() or 0)
                read[position] = offset + 1
                key, value = message.key(), message.value()
                if key is None or value is None:
                    continue
                what = "accepted"
                if position[0] == env["PEDIDOS_STATES_TOPIC"]:
                    what = json.loads(value)["state"]
                found.setdefault((key.decode(), what), []).append((position, offset))
        return found
    finally:
        reader.close()


_TRIGGER = {
    state.value: ("accepted" if i == 0 else ALL_STATES[i - 1].value)
    for i, state in enumerate(ALL_STATES)
}
_RANK = {state.value: i for i, state in enumerate(ALL_STATES)}


def redeliverable_steps(snapshots: list[Offsets], env: dict[str, str]) -> int:
    """The bound on redone steps and repeated state records: per snapshot (a kill, a
    rebalance), the steps already done (their state record was on the topic) that the next
    owner does again. That is a step whose triggering record was past the committed offset, so
    that it is read again, and, in a chain, the step after a step done again: its record,
    published anew, triggers the next step anew (a redone step reads the ledger, skips the
    e-mail and walks on). Repeats beyond the bound are printed, with where their records are."""
    positions = record_positions(env)
    # State records in state order, so that a chain is followed from its first step.
    steps = sorted(
        (step for step in positions if step[1] in _TRIGGER), key=lambda step: _RANK[step[1]]
    )
    bound: Counter[tuple[str, str]] = Counter()
    for offsets in snapshots:
        again: set[tuple[str, str]] = set()
        for step in steps:
            if not any(offset < offsets[where][1] for where, offset in positions[step]):
                continue  # not done yet at the snapshot: doing it later is no repeat
            trigger = (step[0], _TRIGGER[step[1]])
            uncommitted = any(
                offsets[w][0] <= offset < offsets[w][1] for w, offset in positions.get(trigger, [])
            )
            if uncommitted or trigger in again:
                again.add(step)
        bound.update(again)
    beyond = [step for step in steps if len(positions[step]) - 1 > bound[step]]
    for step in beyond[:10]:
        trigger = (step[0], _TRIGGER[step[1]])
        print(
            f"beyond the bound: {step} on the topic {len(positions[step])} times, "
            f"allowed {bound[step]} repeats; its copies {positions[step]}, "
            f"its trigger's {positions.get(trigger, [])}"
        )
    if beyond:
        print(f"snapshots (committed, end): {snapshots}")
    return bound.total()
