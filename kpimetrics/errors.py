"""Locations, issues and the exceptions that carry them.

Every problem a user can cause is an `Issue` with a place; `format()` gives the
`path:line:col: error[CODE]: message` line that editors and CI logs understand.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Location:
    path: str
    line: int = 0  # 1-based; 0 when the problem concerns the whole file
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col or 1}"
        return self.path

    def relative_to(self, root: Path) -> "Location":
        try:
            return Location(str(Path(self.path).resolve().relative_to(root.resolve())), self.line, self.col)
        except ValueError:
            return self


class Level(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Issue:
    level: Level
    code: str
    message: str
    location: Location | None = None
    hint: str | None = None

    @property
    def is_error(self) -> bool:
        return self.level is Level.ERROR

    def format(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.level.value}[{self.code}]: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def as_error(self) -> "Issue":
        return Issue(Level.ERROR, self.code, self.message, self.location, self.hint)

    def to_dict(self) -> dict:
        loc = self.location
        return {
            "level": self.level.value,
            "code": self.code,
            "message": self.message,
            "path": loc.path if loc else None,
            "line": loc.line if loc else None,
            "col": loc.col if loc else None,
            "hint": self.hint,
        }


MESSAGE_LINE_CHARS = 1_000  # the most of one line of a message that is printed
MESSAGE_LINES = 20


def bounded(issue: Issue, scrub=None) -> Issue:
    """The issue with its message cut to MESSAGE_LINES lines of MESSAGE_LINE_CHARS characters: a rule that
    quotes a value (a 5 MB block scalar named as a strategy) prints a few lines, not the value (SPEC §11).
    `scrub` (masking env_var() values) runs first, so no cut can leave a part of a secret unmasked."""
    message = scrub(issue.message) if scrub else issue.message
    if len(message) <= MESSAGE_LINE_CHARS and message.count("\n") < MESSAGE_LINES:
        return issue if message == issue.message else Issue(issue.level, issue.code, message, issue.location, issue.hint)
    lines = message.split("\n")
    kept = [line if len(line) <= MESSAGE_LINE_CHARS else f"{line[:MESSAGE_LINE_CHARS]}… ({len(line):,} characters)"
            for line in lines[:MESSAGE_LINES]]
    if len(lines) > MESSAGE_LINES:
        kept.append(f"… ({len(lines) - MESSAGE_LINES:,} more lines)")
    return Issue(issue.level, issue.code, "\n".join(kept), issue.location, issue.hint)


def error(code: str, message: str, location: Location | None = None, hint: str | None = None) -> Issue:
    return Issue(Level.ERROR, code, message, location, hint)


def warning(code: str, message: str, location: Location | None = None, hint: str | None = None) -> Issue:
    return Issue(Level.WARNING, code, message, location, hint)


class KpiMetricsError(Exception):
    """A user-facing failure: printed without a traceback, exit code `exit_code`."""

    exit_code = 1

    def __init__(self, message: str, issues: list[Issue] | None = None):
        super().__init__(message)
        self.issues: list[Issue] = issues or []


class ValidationFailed(KpiMetricsError):
    """The project has errors; `issues` holds all of them."""


class ConfigError(KpiMetricsError):
    """kpimetrics.yml, profiles.yml or the command line is wrong."""


class UsageError(KpiMetricsError):
    exit_code = 2


class WarehouseError(KpiMetricsError):
    """The warehouse refused a statement or could not be reached."""
