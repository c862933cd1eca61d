"""The interactive flow of the original client, driven by scripted answers."""

from __future__ import annotations

import pytest

from client.cli import main
from client.orders import DEFAULT_CUSTOMER_EMAIL
from client.prompts import Batch, ask_batch, ask_follow


class ScriptedTerminal:
    """Answers prompts from a list, remembering what was asked and said; EOF when it runs out."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.said: list[str] = []

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)

    def say(self, message: str) -> None:
        self.said.append(message)

    def run(
        self, *, count: int | None = None, email: str | None = None, assume_yes: bool = False
    ) -> Batch | None:
        return ask_batch(
            self.ask,
            self.say,
            default_email=DEFAULT_CUSTOMER_EMAIL,
            count=count,
            email=email,
            assume_yes=assume_yes,
        )


def test_invalid_counts_are_asked_again() -> None:
    terminal = ScriptedTerminal("muchos", "0", "-3", "2.5", "4", "", "s")
    assert terminal.run() == Batch(4, DEFAULT_CUSTOMER_EMAIL)
    count_prompts = [p for p in terminal.prompts if p.startswith("¿Cuántos pedidos")]
    assert len(count_prompts) == 5
    assert terminal.said.count("Por favor, ingresa un número entero mayor que cero.") == 4


def test_empty_email_takes_the_default_shown_in_the_prompt() -> None:
    terminal = ScriptedTerminal("3", "", "s")
    assert terminal.run() == Batch(3, DEFAULT_CUSTOMER_EMAIL)
    assert f"(predeterminado: {DEFAULT_CUSTOMER_EMAIL})" in terminal.prompts[1]
    assert terminal.prompts[2] == (
        f"¿Estás seguro de que deseas enviar 3 pedidos a {DEFAULT_CUSTOMER_EMAIL}? (s/n) "
    )


def test_invalid_email_is_asked_again() -> None:
    terminal = ScriptedTerminal("1", "no-es-un-correo", "ana@", "ana@ejemplo.cl", "sí")
    assert terminal.run() == Batch(1, "ana@ejemplo.cl")
    email_prompts = [p for p in terminal.prompts if p.startswith("Ingresa el correo")]
    assert len(email_prompts) == 3
    assert sum("no es válido" in message for message in terminal.said) == 2


def test_answering_n_cancels() -> None:
    terminal = ScriptedTerminal("5", "ana@ejemplo.cl", "n")
    assert terminal.run() is None
    assert terminal.said[-1] == "Envío cancelado."


def test_unclear_confirmation_is_asked_again() -> None:
    terminal = ScriptedTerminal("2", "", "quizás", "S")
    assert terminal.run() == Batch(2, DEFAULT_CUSTOMER_EMAIL)
    assert sum(p.startswith("¿Estás seguro") for p in terminal.prompts) == 2


def test_end_of_input_cancels_instead_of_crashing() -> None:
    terminal = ScriptedTerminal("2")
    assert terminal.run() is None
    assert terminal.said[-1] == "Envío cancelado."


def test_values_from_the_command_line_are_not_asked() -> None:
    terminal = ScriptedTerminal()
    batch = terminal.run(count=7, email="ana@ejemplo.cl", assume_yes=True)
    assert batch == Batch(7, "ana@ejemplo.cl")
    assert terminal.prompts == []


def test_count_from_the_command_line_still_asks_for_confirmation() -> None:
    terminal = ScriptedTerminal("n")
    assert terminal.run(count=1, email="ana@ejemplo.cl") is None
    assert terminal.prompts == [
        "¿Estás seguro de que deseas enviar 1 pedido a ana@ejemplo.cl? (s/n) "
    ]


def test_main_without_count_is_interactive_and_n_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = ScriptedTerminal("0", "2", "", "n")
    monkeypatch.setattr("builtins.input", terminal.ask)
    # Nothing listens on port 1: reaching the network would fail this test with exit code 1.
    assert main(["--address", "127.0.0.1:1", "--deadline", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "Por favor, ingresa un número entero mayor que cero." in out
    assert "Envío cancelado." in out
    assert len(terminal.prompts) == 4


def test_following_is_offered_in_spanish_and_end_of_input_means_no() -> None:
    terminal = ScriptedTerminal("quizás", "S")
    assert ask_follow(terminal.ask, terminal.say, 3) is True
    assert (
        terminal.prompts == ["¿Quieres seguir los 3 pedidos en vivo hasta «Finalizado»? (s/n) "] * 2
    )
    assert terminal.said == ["Responde «s» para sí o «n» para no."]
    terminal = ScriptedTerminal("no")
    assert ask_follow(terminal.ask, terminal.say, 1) is False
    assert terminal.prompts == ["¿Quieres seguir el pedido en vivo hasta «Finalizado»? (s/n) "]
    assert ask_follow(ScriptedTerminal().ask, print, 1) is False
