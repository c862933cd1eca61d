"""`python -m admin dlq list|show|replay`: inspect the dead-letter topic and replay from it.

`list` counts dead letters by kind and reason, `show` prints them with every header, `replay`
sends `record` dead letters back to their source topic and re-sends refused e-mails
(`notification`), idempotently: the consumer's ledger keeps a step from e-mailing twice.
Reading assigns the partitions and commits nothing, so it changes nothing for anyone else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from admin.dlq_reader import TopicReadError, read_topic_to_end
from admin.dlq_records import (
    KIND_NOTIFICATION,
    KIND_RECORD,
    KINDS,
    DeadLetter,
    Filters,
    as_json,
    describe,
    iso,
    parse_time,
    summarise,
)
from pedidos.bootstrap import blocking_search_client
from pedidos.runtime.config import Settings, settings_or_exit

if TYPE_CHECKING:  # the replay's imports (Elasticsearch, SMTP) load only for `replay`
    from admin.dlq_replay import Outcome


def _time(text: str) -> Any:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Any) -> None:
    """Register `dlq` and its actions on the admin CLI's subparsers."""
    filters = argparse.ArgumentParser(add_help=False)
    group = filters.add_argument_group("filters (all given ones must match)")
    group.add_argument("--kind", choices=KINDS, help="record or notification")
    group.add_argument("--reason", help="text the reason contains (case-insensitive)")
    group.add_argument("--since", type=_time, help="dead-lettered at or after (ISO-8601, UTC)")
    group.add_argument("--until", type=_time, help="dead-lettered before (ISO-8601, UTC)")
    group.add_argument("--order", dest="order_id", help="order id (the record key)")
    group.add_argument(
        "--timeout", type=float, default=60, help="seconds without progress before giving up"
    )

    dlq = commands.add_parser("dlq", help="inspect and replay the dead-letter topic")
    actions = dlq.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "list", parents=[filters], help="count dead letters by kind and reason"
    ).set_defaults(run=cmd_list)
    show = actions.add_parser("show", parents=[filters], help="print dead letters with headers")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    show.add_argument("--limit", type=int, help="print at most this many")
    show.set_defaults(run=cmd_show)
    replay = actions.add_parser(
        "replay", parents=[filters], help="records to their topic; refused e-mails sent again"
    )
    replay.add_argument("--dry-run", action="store_true", help="say what would happen, do nothing")
    replay.set_defaults(run=cmd_replay)


def _filters(args: argparse.Namespace) -> Filters:
    if args.since and args.until and args.since >= args.until:
        print("admin: --since must be before --until", file=sys.stderr)
        raise SystemExit(2)
    return Filters(args.kind, args.reason, args.since, args.until, args.order_id)


def _selected(settings: Settings, args: argparse.Namespace) -> Iterator[DeadLetter]:
    wanted = _filters(args)
    topic = settings.pedidos_dead_letter_topic
    try:
        for record in read_topic_to_end(settings.kafka_bootstrap_servers, topic, args.timeout):
            if wanted.matches(record):
                yield record
    except TopicReadError as exc:
        print(f"admin: reading {topic}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_list(args: argparse.Namespace) -> None:
    settings = settings_or_exit("admin")
    rows = summarise(_selected(settings, args))
    if not rows:
        print(f"no dead letters in {settings.pedidos_dead_letter_topic} match")
        return
    print(f"{'kind':<13} {'count':>6}  {'first':<24}  {'last':<24}  reason")
    for row in rows:
        print(
            f"{row.kind:<13} {row.count:>6}  {iso(row.first) or '-':<24}  "
            f"{iso(row.last) or '-':<24}  {row.reason}"
        )
    print(f"total: {sum(r.count for r in rows)}")


def cmd_show(args: argparse.Namespace) -> None:
    settings = settings_or_exit("admin")
    shown = 0
    for record in _selected(settings, args):
        if args.limit is not None and shown >= args.limit:
            break
        print(json.dumps(as_json(record), ensure_ascii=False) if args.json else describe(record))
        shown += 1
    if not args.json:
        print(f"{shown} dead letters shown")


def cmd_replay(args: argparse.Namespace) -> None:
    from admin.dlq_replay import SKIPPED, Ledger, NotificationReplayer, Outcome, RecordReplayer

    settings = settings_or_exit("admin")
    records = RecordReplayer(None if args.dry_run else _producer(settings), args.dry_run)
    es = blocking_search_client(settings)
    mailer = None if args.dry_run else _mailer(settings)
    notifications = NotificationReplayer(
        mailer, Ledger(es, settings.elasticsearch_events_index), args.dry_run
    )
    outcomes: list[Outcome] = []
    try:
        for record in _selected(settings, args):
            if record.kind == KIND_RECORD:
                outcome = records.replay(record)
            elif record.kind == KIND_NOTIFICATION:
                outcome = notifications.replay(record)
            else:
                outcome = Outcome(record, SKIPPED, f"unknown kind {record.kind!r}")
            if outcome is not None:
                _report(outcome)
                outcomes.append(outcome)
        # Longer than the producer's own delivery timeout (60 s), so every record is reported.
        for outcome in records.finish(timeout_s=90):
            _report(outcome)
            outcomes.append(outcome)
    finally:
        es.close()
        if mailer is not None:
            mailer.close()
    counts = Counter(o.action for o in outcomes)
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing"
    print(f"{'dry run, nothing done: ' if args.dry_run else ''}{summary}")
    if any(not o.ok for o in outcomes):
        raise SystemExit(1)


def _report(outcome: Outcome) -> None:
    print(f"{outcome.record.position}  {outcome.action}  {outcome.detail}")


def _producer(settings: Settings) -> Any:
    from confluent_kafka import Producer

    from pedidos.adapters.kafka.publisher import producer_config

    config = producer_config(settings.kafka_bootstrap_servers, "pedidos-admin-dlq", 60)
    # A record the broker does not take is reported by its delivery report, once.
    return Producer({**config, "log_level": 2})


def _mailer(settings: Settings) -> Any:
    from pedidos.adapters.smtp_mailer import SmtpMailer, smtp_settings

    return SmtpMailer(smtp_settings(settings))
