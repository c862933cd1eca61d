"""argparse in Spanish: the usage line, the section titles, `-h` and the errors argparse writes
itself. The help texts and the client's own type errors are written in Spanish where they are
defined; argparse has no translation of its own, and gettext would only apply one installed
for the whole process and the user's locale."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

# Each English message argparse can raise (Python 3.11-3.13), as a pattern and its Spanish.
_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), spanish)
    for pattern, spanish in (
        (r"^unrecognized arguments: (.*)$", r"argumentos no reconocidos: \1"),
        (r"^the following arguments are required: (.*)$", r"faltan los argumentos: \1"),
        (r"^one of the arguments (.*) is required$", r"falta uno de los argumentos \1"),
        (r"^ambiguous option: (\S+) could match (.*)$", r"opción ambigua: \1 puede ser \2"),
        (r"^expected one argument$", "falta su valor"),
        (r"^expected at most one argument$", "admite un valor como máximo"),
        (r"^expected at least one argument$", "necesita al menos un valor"),
        (r"^not allowed with argument (.*)$", r"no se admite junto con \1"),
        (r"^ignored explicit argument (.*)$", r"no admite el valor \1"),
        (r"^invalid \w+ value: (.*)$", r"\1 no es un valor válido"),
        (r"^invalid choice: (.*) \(choose from (.*)\)$", r"\1 no es válido (elija entre \2)"),
    )
)
_ARGUMENT = re.compile(r"^argument (\S+): (.*)$", re.DOTALL)


def spanish_error(message: str) -> str:
    """argparse's error `message` in Spanish; one it does not know stays as it is."""
    argument = _ARGUMENT.match(message)
    if argument:
        return f"argumento {argument.group(1)}: {spanish_error(argument.group(2))}"
    for pattern, spanish in _ERRORS:
        if pattern.match(message):
            return pattern.sub(spanish, message)
    return message


class SpanishHelpFormatter(argparse.HelpFormatter):
    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None = None,
    ) -> None:
        super().add_usage(usage, actions, groups, "uso: " if prefix is None else prefix)


class SpanishArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose own words are Spanish; its subparsers are of the same class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", SpanishHelpFormatter)
        kwargs["add_help"] = False
        super().__init__(*args, **kwargs)
        self._positionals.title = "argumentos"
        self._optionals.title = "opciones"
        self.add_argument(
            "-h",
            "--help",
            action="help",
            default=argparse.SUPPRESS,
            help="muestra esta ayuda y termina",
        )

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {spanish_error(message)}\n")
