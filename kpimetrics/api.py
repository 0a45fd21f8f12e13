"""The facade the CLI, the tests and orchestrators call: load, validate, compile, run."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .errors import Issue, Level, ValidationFailed
from .loader import ProjectDef, load_project


class Project:
    def __init__(self, definition: ProjectDef, *, profiles_dir: str | Path | None = None, target: str | None = None):
        self.definition = definition
        self.profiles_dir = profiles_dir
        self.target = target

    # --- loading and validation ---------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path = ".",
        *,
        profiles_dir: str | Path | None = None,
        target: str | None = None,
        vars: dict[str, Any] | None = None,
    ) -> "Project":
        return cls(load_project(Path(path), vars), profiles_dir=profiles_dir, target=target)

    @property
    def root(self) -> Path:
        return self.definition.root

    def validate(self, *, strict: bool = False, today: dt.date | None = None) -> list[Issue]:
        """Every problem of the project at once: load issues, then the cross-object rules."""
        from .validate import validate

        issues = list(self.definition.issues)
        if not any(i.is_error for i in issues if i.code in ("KPI000",)):
            issues.extend(validate(self.definition, today=today or dt.date.today()))
        if strict:
            issues = [i.as_error() if i.level is Level.WARNING else i for i in issues]
        return sorted(issues, key=_issue_order)

    def check(self, *, strict: bool = False, today: dt.date | None = None) -> list[Issue]:
        """validate(), raising ValidationFailed when any issue is an error."""
        issues = self.validate(strict=strict, today=today)
        errors = [i for i in issues if i.is_error]
        if errors:
            raise ValidationFailed(f"{len(errors)} error(s) in the project", issues)
        return issues


def _issue_order(issue: Issue):
    loc = issue.location
    return (loc.path if loc else "", loc.line if loc else 0, loc.col if loc else 0, issue.code)
