"""Consumer lag per group, topic and partition: committed offset, end offset and owner.

`LagReader` returns plain data and keeps one AdminClient, so the consumer's metrics endpoint
calls it on every scrape; `python -m admin lag` only formats what it returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

log = logging.getLogger(__name__)
COORDINATOR_STARTING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)
_FIRST_ATTEMPT_S = 1.0
_POLL_S = 0.05
# librdkafka's connection errors go to logging, not straight to stderr: the CLI says it in one
# line, and an application that configures logging still sees them.
log.addHandler(logging.NullHandler())


class LagError(RuntimeError):
    """Kafka could not be asked (unreachable, refused): one line for the operator."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class UnknownGroup(LagError):
    pass


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    client_id: str
    host: str


@dataclass(frozen=True, slots=True)
class PartitionLag:
    topic: str
    partition: int
    # None: the group never committed here; it starts from the log start (the consumer's
    # auto.offset.reset is earliest), so the lag counts from there.
    committed: int | None
    end: int
    lag: int
    member: Member | None


@dataclass(frozen=True, slots=True)
class GroupLag:
    group: str
    state: str
    members: tuple[Member, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def total(self) -> int:
        return sum(p.lag for p in self.partitions)


def partition_lag(committed: int | None, start: int, end: int) -> int:
    """Records the group has still to read; never negative (a commit can pass a truncated end)."""
    position = start if committed is None or committed < start else committed
    return max(end - position, 0)


class LagReader:
    def __init__(self, bootstrap_servers: str, timeout_s: float = 10) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._timeout_s = timeout_s
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "socket.timeout.ms": int(timeout_s * 1000),
            "logger": log,
        }
        self._admin = AdminClient(config)

    def _result(self, future: Future[Any], timeout_s: float | None = None) -> Any:
        try:
            return future.result(timeout=self._timeout_s * 2 if timeout_s is None else timeout_s)
        except KafkaException as exc:
            error = exc.args[0]
            if not isinstance(error, KafkaError):
                raise LagError(f"Kafka at {self.bootstrap_servers}: {exc}") from None
            detail = error.str().rstrip(": ") or error.name()
            raise LagError(
                f"Kafka at {self.bootstrap_servers}: {detail} ({error.name()})", error.code()
            ) from None
        except TimeoutError:
            raise LagError(
                f"cannot reach Kafka at {self.bootstrap_servers}", KafkaError._TIMED_OUT
            ) from None

    def _topic_partitions(self) -> dict[str, int]:
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException:
            raise LagError(f"cannot reach Kafka at {self.bootstrap_servers}") from None
        return {name: len(topic.partitions) for name, topic in metadata.topics.items()}

    def groups(self) -> list[str]:
        """Every consumer group the cluster knows, sorted."""
        self._topic_partitions()  # fails fast with one line when Kafka is unreachable
        listing = self._result(self._admin.list_consumer_groups(request_timeout=self._timeout_s))
        return sorted(g.group_id for g in listing.valid)

    def read(self, groups: Sequence[str], missing_ok: bool = False) -> list[GroupLag]:
        """Lag of each group on every partition of every topic it commits to or is assigned.

        A group without members or offsets raises UnknownGroup, or is left out if `missing_ok`.
        """
        if not groups:
            return []
        topics = self._topic_partitions()
        descriptions = self.describe(groups)
        committed: dict[str, dict[tuple[str, int], int]] = {}
        for group in groups:
            # The API takes one group per request.
            request = [ConsumerGroupTopicPartitions(group)]
            answer = self._admin.list_consumer_group_offsets(
                request, request_timeout=self._timeout_s
            )
            result = self._result(answer[group])
            committed[group] = {
                (tp.topic, tp.partition): tp.offset
                for tp in result.topic_partitions or []
                if tp.offset >= 0 and tp.error is None
            }
        partitions: dict[str, list[tuple[str, int]]] = {}
        owners: dict[str, dict[tuple[str, int], Member]] = {}
        members: dict[str, tuple[Member, ...]] = {}
        for group in groups:
            description = descriptions[group]
            group_topics = {topic for topic, _ in committed[group]}
            owners[group] = {}
            group_members = []
            for m in description.members:
                member = Member(m.member_id, m.client_id, m.host)
                group_members.append(member)
                for tp in m.assignment.topic_partitions if m.assignment else []:
                    owners[group][(tp.topic, tp.partition)] = member
                    group_topics.add(tp.topic)
            members[group] = tuple(group_members)
            if not group_members and not group_topics:
                # Kafka says Dead, Tansu says Empty: either way there is nothing to show.
                if missing_ok:
                    continue
                raise UnknownGroup(f"unknown consumer group {group!r} (no members, no offsets)")
            # Every partition of the group's topics: new ones it has not committed to yet count.
            partitions[group] = sorted(
                (t, p) for t in group_topics for p in range(topics.get(t, 0))
            )
        starts, ends = self._offsets({tp for tps in partitions.values() for tp in tps})
        return [
            GroupLag(
                group,
                descriptions[group].state.name,
                members[group],
                tuple(
                    PartitionLag(
                        topic,
                        partition,
                        committed[group].get((topic, partition)),
                        ends[(topic, partition)],
                        partition_lag(
                            committed[group].get((topic, partition)),
                            starts[(topic, partition)],
                            ends[(topic, partition)],
                        ),
                        owners[group].get((topic, partition)),
                    )
                    for topic, partition in partitions[group]
                ),
            )
            for group in groups
            if group in partitions
        ]

    def describe(
        self, groups: Sequence[str], coordinator_wait_s: float | None = None
    ) -> dict[str, Any]:
        """Each group's description, waiting up to `coordinator_wait_s` (default: three
        timeouts) for a coordinator that is still starting.

        On a cluster where no group has committed yet, the offsets topic (and so every group
        coordinator) is created by the first lookup: NOT_COORDINATOR until it is ready. And
        librdkafka ends a describe whose coordinator lookup ran out of retries only at its
        request timeout (seen: 10 s on a new broker, one run in three), so attempts start at
        1 s and double; a timeout is retried for one timeout in all, so an unreachable broker
        is still reported after about that long.
        """
        start = time.monotonic()
        wait_s = self._timeout_s * 3 if coordinator_wait_s is None else coordinator_wait_s
        attempt_s = min(_FIRST_ATTEMPT_S, self._timeout_s)
        while True:
            futures = self._admin.describe_consumer_groups(list(groups), request_timeout=attempt_s)
            try:
                return {group: self._result(futures[group], attempt_s * 2) for group in groups}
            except LagError as exc:
                elapsed = time.monotonic() - start
                starting = exc.code in COORDINATOR_STARTING and elapsed < wait_s
                timed_out = exc.code == KafkaError._TIMED_OUT and elapsed < self._timeout_s
                if not (starting or timed_out):
                    raise
            attempt_s = min(attempt_s * 2, self._timeout_s)
            time.sleep(_POLL_S)

    def _offsets(
        self, partitions: Iterable[tuple[str, int]]
    ) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
        """Log start and end offsets (the consumer reads committed records only)."""
        found: list[dict[tuple[str, int], int]] = []
        keys = sorted(partitions)
        for spec in (OffsetSpec.earliest(), OffsetSpec.latest()):
            if not keys:
                found.append({})
                continue
            futures = self._admin.list_offsets(
                {TopicPartition(t, p): spec for t, p in keys},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=self._timeout_s,
            )
            found.append(
                {(tp.topic, tp.partition): self._result(f).offset for tp, f in futures.items()}
            )
        return found[0], found[1]
