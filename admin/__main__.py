"""`python -m admin`: setup, topics, the embedded stack and its mail sink."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pedidos.bootstrap import blocking_search_client
from pedidos.runtime.config import settings_or_exit
from pedidos.runtime.retry import Backoff, retry_blocking

if TYPE_CHECKING:  # the stack commands import the devkit only when run
    from devkit.stack import EmbeddedStack, StackPorts

STACK_DIR = Path(".stack")
_SETUP_BACKOFF = Backoff(initial_s=0.5, max_s=2.0)
T = TypeVar("T")


def _retry(what: str, action: Callable[[], T], wait_s: float) -> T:
    """Dependencies may still be starting (compose, CI): retry until `wait_s` has passed."""
    try:
        return retry_blocking(
            what, action, retry_on=(Exception,), backoff=_SETUP_BACKOFF, within_s=wait_s
        )
    except Exception as exc:
        print(f"admin: {what} failed: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_setup(args: argparse.Namespace) -> None:
    from admin import setup

    settings = settings_or_exit("admin")
    topics = _retry("creating topics", lambda: setup.create_topics(settings), args.wait)
    for name, outcome in topics.items():
        print(f"topic {name}: {outcome}")
    group = _retry(
        "readying the consumer group", lambda: setup.ready_group_coordinator(settings), args.wait
    )
    print(f"consumer group {settings.kafka_consumer_group}: {group}")
    es = blocking_search_client(settings)
    indices = _retry(
        "creating index templates", lambda: setup.create_index_templates(settings, es), args.wait
    )
    for name, outcome in indices.items():
        print(f"index {name}: {outcome} (template applied)")
    if settings.kibana_url and not args.skip_kibana:
        from admin.kibana import KibanaError, import_saved_objects

        ndjson = Path(__file__).parent / "kibana" / "pedidos.ndjson"
        try:
            result = import_saved_objects(
                settings.kibana_url, ndjson, timeout_s=max(args.wait, 120)
            )
        except KibanaError as exc:
            print(f"admin: importing Kibana saved objects failed: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        print(f"kibana: imported {result.get('successCount', 0)} saved objects")


def cmd_topics(args: argparse.Namespace) -> None:
    from admin import setup

    settings = settings_or_exit("admin")
    if args.partitions is not None:
        try:
            changes = setup.add_partitions(settings, args.partitions)
        except setup.SetupError as exc:
            print(f"admin: {exc}", file=sys.stderr)
            raise SystemExit(2 if isinstance(exc, setup.PartitionsRefused) else 1) from None
        for name, change in changes.items():
            print(f"topic {name}: {change}")
        return
    try:
        topics = setup.list_topics(settings)
    except setup.SetupError as exc:
        print(f"admin: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    for name, partitions in topics.items():
        print(f"{name}\t{partitions} partitions")


def cmd_lag(args: argparse.Namespace) -> None:
    from admin.lag import format_table, to_json
    from pedidos.adapters.kafka.lag import LagError, LagReader, UnknownGroup

    settings = settings_or_exit("admin")
    reader = LagReader(settings.kafka_bootstrap_servers)
    try:
        groups = reader.groups() if args.all else [args.group or settings.kafka_consumer_group]
        lags = reader.read(groups, missing_ok=args.all)
    except LagError as exc:
        print(f"admin: {exc}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, UnknownGroup) else 1) from None
    print(to_json(lags) if args.json else format_table(lags) or "no consumer groups")


def cmd_stack(args: argparse.Namespace) -> None:
    from devkit.stack import EmbeddedStack, StackError, StackSetupError

    try:
        stack = EmbeddedStack(args.dir, _stack_ports(args), kafka=args.kafka, inbox=args.inbox)
        if args.action == "up":
            if stack.broker.note:
                print(stack.broker.note, file=sys.stderr)
            stack.up()
        elif args.action == "down":
            stack.down()
    except StackSetupError as exc:
        print(f"admin: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except StackError as exc:
        print(f"admin: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    _print_stack(stack, args.action)


def _stack_ports(args: argparse.Namespace) -> StackPorts | None:
    """The ports given on the command line, the defaults for the others; None if none given."""
    from devkit.stack import StackPorts

    ports = None
    if args.kafka_port or args.elasticsearch_port or args.smtp_port:
        ports = StackPorts(
            args.kafka_port or 9092, args.elasticsearch_port or 9200, args.smtp_port or 1025
        )
    if args.mail_web_port:
        ports = (
            replace(ports, mail_web=args.mail_web_port)
            if ports
            else StackPorts(mail_web=args.mail_web_port)
        )
    return ports


def _print_stack(stack: EmbeddedStack, action: str) -> None:
    from devkit.credentials import stored_credentials

    # A key for the producer and the client run by hand on this stack (README, "Security").
    env = stack.env()
    if action in ("up", "env"):
        env |= stored_credentials(stack.root / "credentials.env")
    if action == "env":
        for key, value in env.items():
            print(f"{key}={value}")
        return
    for name, status in stack.status().items():
        print(f"{name:14} {status}")
    if action == "up":
        if stack.web_inbox_url:
            print(f"mail: MailDev web inbox at {stack.web_inbox_url}/")
        else:
            print(f"mail lands in {stack.maildir} (Maildir: new/ holds one file per e-mail)")
        for key, value in env.items():
            print(f"export {key}={value}")


def cmd_retention(args: argparse.Namespace) -> None:
    from admin import setup

    settings = settings_or_exit("admin")
    if settings.elasticsearch_retention_days is None:
        print("admin: ELASTICSEARCH_RETENTION_DAYS is not set: nothing to delete", file=sys.stderr)
        raise SystemExit(2)
    es = blocking_search_client(settings)
    deleted = _retry(
        "deleting expired documents", lambda: setup.delete_expired_documents(settings, es), 30
    )
    for index, count in deleted.items():
        print(f"index {index}: {count} documents older than the retention deleted")


def cmd_demo(args: argparse.Namespace) -> None:
    from admin.setup import SetupError
    from devkit.demo import run_demo
    from devkit.stack import StackError, StackSetupError

    try:
        run_demo(args.orders, args.keep_running, args.inbox)
    except StackSetupError as exc:
        print(f"admin: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except StackError as exc:
        print(f"admin: the embedded stack did not start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except SetupError as exc:
        print(f"admin: the demo's topics and indices: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m admin", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    setup = commands.add_parser("setup", help="create topics, index templates, Kibana objects")
    setup.add_argument("--wait", type=float, default=60, help="seconds to wait for Kafka/ES")
    setup.add_argument("--skip-kibana", action="store_true")
    setup.set_defaults(run=cmd_setup)

    topics = commands.add_parser("topics", help="list topics with their partitions")
    topics.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="grow the three co-partitioned topics to N partitions each (never shrinks)",
    )
    topics.set_defaults(run=cmd_topics)

    lag = commands.add_parser("lag", help="consumer lag per group, topic and partition")
    which = lag.add_mutually_exclusive_group()
    which.add_argument("--group", help="consumer group (default $KAFKA_CONSUMER_GROUP)")
    which.add_argument("--all", action="store_true", help="every consumer group")
    lag.add_argument("--json", action="store_true", help="machine-readable output")
    lag.set_defaults(run=cmd_lag)

    stack = commands.add_parser("stack", help="embedded Kafka/Elasticsearch/SMTP without Docker")
    stack.add_argument("action", choices=["up", "down", "status", "env"])
    stack.add_argument("--dir", type=Path, default=STACK_DIR)
    stack.add_argument(
        "--kafka",
        choices=["apache", "tansu", "auto"],
        help="embedded broker: Apache Kafka (needs Java 17+ and Maven once) or Tansu; "
        "default $PEDIDOS_EMBEDDED_KAFKA, else apache when it can run",
    )
    stack.add_argument(
        "--inbox",
        choices=["sink", "maildev"],
        default="sink",
        help="SMTP server: the aiosmtpd Maildir sink, or MailDev with its web inbox",
    )
    stack.add_argument("--mail-web-port", type=int, help="MailDev's web inbox (default 1080)")
    stack.add_argument("--kafka-port", type=int)
    stack.add_argument("--elasticsearch-port", type=int)
    stack.add_argument("--smtp-port", type=int)
    stack.set_defaults(run=cmd_stack)

    retention = commands.add_parser(
        "retention",
        help="delete ES documents of orders older than ELASTICSEARCH_RETENTION_DAYS (run daily)",
    )
    retention.set_defaults(run=cmd_retention)

    from admin import api_key, dlq

    dlq.add_parser(commands)
    api_key.add_parser(commands)

    demo = commands.add_parser("demo", help="run the whole pipeline locally and watch it")
    demo.add_argument("--orders", type=int, default=5)
    demo.add_argument("--keep-running", action=argparse.BooleanOptionalAction, default=None)
    demo.add_argument(
        "--inbox",
        choices=["maildev", "maildir"],
        help="where e-mails go: MailDev's web inbox (default when npm and Node.js are present) "
        "or a Maildir",
    )
    demo.set_defaults(run=cmd_demo)

    mailsink = commands.add_parser(
        "mailsink", help="run the SMTP sink in the foreground", add_help=False
    )
    mailsink.set_defaults(run=None)

    args, rest = parser.parse_known_args(argv)
    if args.command == "mailsink":
        from admin.mailsink import main as mailsink_main

        mailsink_main(rest)
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.run(args)


if __name__ == "__main__":
    main()
