"""Scenario 5: the mail limit — raw smtplib sends of the consumer's rendered e-mails to a
sink, on one reused connection, the way the consumer's SmtpMailer sends them."""

from __future__ import annotations

import smtplib
import time

from bench.checks import delivery_problems
from bench.environment import MailSink
from bench.figures import Figure
from devkit.orders import accepted_orders
from devkit.scenario import SENDER
from pedidos.adapters.email.render import EmailRenderer
from pedidos.domain.order import utc_now
from pedidos.domain.states import ALL_STATES
from pedidos.ports import OutgoingEmail


def state_emails(seed: int, orders: int) -> list[OutgoingEmail]:
    """The five e-mails of each order, rendered by the consumer's renderer (and its sender)."""
    renderer = EmailRenderer(SENDER)
    messages = []
    for order in accepted_orders(seed, orders):
        for state in ALL_STATES:
            at = utc_now()
            order.enter(state, at)
            messages.append(renderer.render(order, state, at))
    return messages


def mail_figure(sink: MailSink, emails: int, timeout_s: float) -> Figure:
    messages = state_emails(seed=5, orders=max(emails // 5, 1))
    figure = Figure(
        key=f"mail_limit.{sink.name}",
        scenario="5 Mail limit",
        label=f"smtplib, 1 connection → {sink.name} sink",
        unit="e-mails/s",
    )
    before = sink.inbox_count()
    sent = failed = 0
    last_error = ""
    deadline = time.monotonic() + timeout_s
    client = smtplib.SMTP("127.0.0.1", sink.port, timeout=10)
    try:
        client.ehlo()
        started = time.perf_counter()
        for message in messages:
            if time.monotonic() > deadline:
                last_error = f"timed out after {timeout_s:.0f}s"
                break
            try:
                client.sendmail(message.sender, [message.recipient], message.data)
                sent += 1
            except smtplib.SMTPException as exc:
                failed += 1
                last_error = str(exc)
        elapsed = time.perf_counter() - started
    finally:
        try:
            client.quit()
        except smtplib.SMTPException:
            client.close()
    figure.value = sent / elapsed
    figure.details = {"emails": len(messages), "elapsed_s": round(elapsed, 3)}
    problems = delivery_problems("e-mails", len(messages), sent, failed)
    after = sink.inbox_count()
    if before is not None and after is not None:
        figure.details["inbox_delta"] = after - before
        if after - before != sent:
            problems.append(f"inbox grew by {after - before}, {sent} e-mails were accepted")
    if last_error:
        problems.append(f"last error: {last_error}")
    figure.refuse(problems)
    return figure
