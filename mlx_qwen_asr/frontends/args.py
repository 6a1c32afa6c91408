"""Argument parsing shared by both command lines (cli.py and server/main.py): one-line
errors, the program's name as typed, positive numbers."""

from __future__ import annotations

import argparse
import os
import sys


class OneLineParser(argparse.ArgumentParser):
    def __init__(self, *args, nearest: dict[str, str] | None = None, **kwargs):
        """nearest: flags users write by habit (other tools' spellings) -> what to write here."""
        super().__init__(*args, **kwargs)
        self.nearest = nearest or {}

    def error(self, message: str):
        """One line naming the problem (argparse's default prints the whole usage first),
        with the flag meant when an unknown one is close to it."""
        hint = _did_you_mean(self, message)
        self.exit(2, f"error: {message}{hint} (see --help)\n")


def program_name() -> str:
    """The command as the user typed it, for usage lines: `mlx-qwen-asr` or `python -m mlx_qwen_asr`."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if name == "__main__.py":
        return "python -m mlx_qwen_asr"
    return name if name.startswith("mlx-qwen-asr") else "mlx-qwen-asr"


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    return [name for action in parser._actions for name in action.option_strings if name.startswith("--")]


def _did_you_mean(parser: OneLineParser, message: str) -> str:
    """ ", did you mean --x?" for the first unknown flag in argparse's message ("" if none is near)."""
    import difflib

    if not message.startswith("unrecognized arguments:"):
        return ""
    for given in message.split(":", 1)[1].split():
        if not given.startswith("-"):
            continue
        flag = given.split("=")[0].replace("_", "-")
        if flag in parser.nearest:
            return f"; did you mean {parser.nearest[flag]}?"
        close = difflib.get_close_matches(flag, long_options(parser), n=1, cutoff=0.6)
        if close:
            return f"; did you mean {close[0]}?"
    return ""


def number(text: str, kind):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None


def bounded(kind: type, accept, refusal: str):
    """An argparse type: a number of `kind` that `accept` takes, else "<refusal>, got TEXT"."""
    def parse(text: str):
        value = number(text, kind)
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{refusal}, got {text}")
        return value
    return parse


def number_or_none(accept, expected: str):
    """An argparse type: 'none' (None) or a number `accept` takes; one message, naming `expected`, for the rest."""
    def parse(text: str):
        if text.strip().lower() == "none":
            return None
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected} or 'none', got {text!r}")
        return value
    return parse


positive_int = bounded(int, lambda value: value >= 1, "must be at least 1")
positive_float = bounded(float, lambda value: value > 0, "must be above 0")
