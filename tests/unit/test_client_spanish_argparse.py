"""The client's command line speaks Spanish: argparse's own words (usage, titles, -h, the errors
it writes) included, not only the help texts."""

from __future__ import annotations

import pytest

from client.cli import main
from client.spanish_argparse import SpanishArgumentParser, spanish_error

ENGLISH = ("usage:", "options:", "show this help", "error: argument", "required", "invalid")


def test_help_is_spanish_throughout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("uso: pedidos-client [-h]")
    assert "\nopciones:\n" in out
    assert "-h, --help            muestra esta ayuda y termina" in out
    assert not [word for word in ENGLISH if word in out]


def test_a_commands_help_is_spanish_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("uso: pedidos-client status [-h]")
    assert "\nargumentos:\n  order_id" in out
    assert not [word for word in ENGLISH if word in out]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--bogus"], "pedidos-client: error: argumentos no reconocidos: --bogus"),
        (["status"], "pedidos-client status: error: faltan los argumentos: order_id"),
        (["--count"], "pedidos-client: error: argumento --count: falta su valor"),
        (
            ["--batch", "5", "--stream", "5"],
            "pedidos-client: error: argumento --stream: no se admite junto con --batch",
        ),
        (
            ["--f"],
            "pedidos-client: error: opción ambigua: --f puede ser --follow, --follow-concurrency",
        ),
        (
            ["foo"],
            "pedidos-client: error: argumento COMANDO: 'foo' no es válido "
            "(elija entre 'status', 'watch')",
        ),
        # The client's own type errors were Spanish already; argparse's prefix now is too.
        (["--count", "x"], "pedidos-client: error: argumento --count: «x» no es un número entero"),
    ],
)
def test_usage_errors_are_spanish(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("uso: pedidos-client")
    assert err.splitlines()[-1] == line


def test_every_message_argparse_writes_itself_is_translated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each message of argparse 3.11 that the client's own parser cannot provoke."""
    parser = SpanishArgumentParser(prog="p")
    parser.add_argument("--n", type=int)
    parser.add_argument("--flag", action="store_true")
    parser.add_argument("--many", nargs="+")
    parser.add_argument("--kind", choices=["a", "b"])
    one = parser.add_mutually_exclusive_group(required=True)
    one.add_argument("--x", action="store_true")
    one.add_argument("--y", action="store_true")
    cases = {
        ("--x", "--n", "dos"): "argumento --n: 'dos' no es un valor válido",
        ("--x", "--many"): "argumento --many: necesita al menos un valor",
        ("--x", "--kind", "c"): "argumento --kind: 'c' no es válido (elija entre 'a', 'b')",
        ("--x", "--flag=1"): "argumento --flag: no admite el valor '1'",
        ("--n", "1"): "falta uno de los argumentos --x --y",
    }
    for argv, spanish in cases.items():
        with pytest.raises(SystemExit):
            parser.parse_args(list(argv))
        assert capsys.readouterr().err.splitlines()[-1] == f"p: error: {spanish}", argv


def test_an_unknown_message_is_left_as_it_is() -> None:
    assert spanish_error("something new in Python 3.14") == "something new in Python 3.14"
