"""The interactive questions of the original client, in Spanish; input and output are injected."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from client.orders import InvalidEmail, check_email

# Shows the prompt and returns the line typed; raises EOFError when input ends, like input().
Ask = Callable[[str], str]
Say = Callable[[str], None]

YES = frozenset({"s", "si", "sí", "y", "yes"})
NO = frozenset({"n", "no"})


@dataclass(frozen=True, slots=True)
class Batch:
    count: int
    email: str


def ask_count(ask: Ask, say: Say) -> int:
    while True:
        answer = ask("¿Cuántos pedidos deseas enviar? ").strip()
        try:
            count = int(answer)
        except ValueError:
            count = 0
        if count > 0:
            return count
        say("Por favor, ingresa un número entero mayor que cero.")


def ask_email(ask: Ask, say: Say, default: str) -> str:
    while True:
        answer = ask(
            f"Ingresa el correo electrónico de destino (predeterminado: {default}): "
        ).strip()
        try:
            return check_email(answer or default)
        except InvalidEmail as exc:
            say(f"{exc} Inténtalo de nuevo.")


def ask_yes_no(ask: Ask, say: Say, question: str) -> bool:
    """Asks `question` until the answer is yes or no."""
    while True:
        answer = ask(f"{question} (s/n) ").strip().lower()
        if answer in YES:
            return True
        if answer in NO:
            return False
        say("Responde «s» para sí o «n» para no.")


def confirm(ask: Ask, say: Say, count: int, email: str) -> bool:
    noun = "pedido" if count == 1 else "pedidos"
    return ask_yes_no(ask, say, f"¿Estás seguro de que deseas enviar {count} {noun} a {email}?")


def ask_follow(ask: Ask, say: Say, count: int) -> bool:
    """After an interactive send: follow the accepted orders live? End of input means no."""
    what = "el pedido" if count == 1 else f"los {count} pedidos"
    try:
        return ask_yes_no(ask, say, f"¿Quieres seguir {what} en vivo hasta «Finalizado»?")
    except EOFError:
        say("")
        return False


def ask_batch(
    ask: Ask,
    say: Say,
    *,
    default_email: str,
    count: int | None = None,
    email: str | None = None,
    assume_yes: bool = False,
) -> Batch | None:
    """Ask only for what the command line left out; None when the user cancels (or input ends)."""
    try:
        chosen_count = count if count is not None else ask_count(ask, say)
        chosen_email = email if email is not None else ask_email(ask, say, default_email)
        if not assume_yes and not confirm(ask, say, chosen_count, chosen_email):
            say("Envío cancelado.")
            return None
    except EOFError:
        say("")
        say("Envío cancelado.")
        return None
    return Batch(chosen_count, chosen_email)


def stream_io(output: TextIO) -> tuple[Ask, Say]:
    """Questions and messages on `output`, answers from stdin (stderr keeps stdout for --json)."""

    def ask(prompt: str) -> str:
        output.write(prompt)
        output.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\r\n")

    def say(message: str) -> None:
        print(message, file=output)

    return ask, say
