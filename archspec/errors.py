"""The one error type users see: a message located at FILE:LINE:COL in a spec, naming the block."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Loc:
    """A position in a spec source (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class SpecError(Exception):
    """A problem with a spec, reported as `FILE:LINE:COL: block.path (type): message`."""

    def __init__(self, message: str, loc: Loc | None = None, path: str = "", block_type: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.path = path
        self.block_type = block_type

    def __str__(self) -> str:
        where = f"{self.loc}: " if self.loc else ""
        block = self.path or "spec"
        kind = f" ({self.block_type})" if self.block_type else ""
        return f"{where}{block}{kind}: {self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the choice that differs only in case, else the closest, or '' when none is close."""
    choices = [str(choice) for choice in choices]
    same = [choice for choice in choices if choice.casefold() == str(word).casefold()]
    close = same or difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's errors run to pages), or its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class UsageError(ValueError):
    """A command line a command refuses (options that do not go together, a spec the command cannot use, an
    output format it does not write): one line and exit 2, like a spec problem. A ValueError to Python callers."""


class InputError(ValueError):
    """A command's input other than the spec (an image, a labels file) that is missing, unreadable or too large:
    one line and exit 2 on the command line, like a spec problem."""
