"""The status vocabulary: the words kpi_status holds, their order and how every output shows them.

This module is the only place in kpimetrics that spells a status word (a test greps the package
for them). The SQL that decides a period's status (targets.status_query), the terminal scorecard,
the site's templates and CSS, `--fail-on` and the Python API all take the words from `Status`.
It imports nothing of ours and nothing heavy: the CLI imports it for `--fail-on`'s choices.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    """A period's status (SPEC §2): a `str`, so a member is the very word the table holds."""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    OFF_TRACK = "off_track"
    NO_TARGET = "no_target"  # a value and no target
    NO_DATA = "no_data"  # no value

    @classmethod
    def of(cls, word: str | None) -> "Status | str | None":
        """The member a word read from a table names; a word this release does not know (a newer
        release wrote it) is kept as text, so it shows as unknown rather than failing the read."""
        return cls._value2member_map_.get(word, word) if word is not None else None


@dataclass(frozen=True)
class StatusLook:
    """How a status is shown: always by symbol and words as well as colour, so it reads in a
    monochrome terminal, for colour-blind readers and in screenshots."""

    symbol: str
    text: str
    colour: str  # a rich colour name, for the terminal
    css: str  # the site's CSS custom properties for it: --{css} and --{css}-bg
    border: str  # the site's badge border colour
    marker: str  # its point on the site's charts: dot | triangle | cross | hollow


LOOKS: dict[Status, StatusLook] = {
    Status.ON_TRACK: StatusLook("●", "on track", "green", "on", "#a6dcb5", "dot"),
    Status.AT_RISK: StatusLook("▲", "at risk", "yellow", "risk", "#eed27a", "triangle"),
    Status.OFF_TRACK: StatusLook("✖", "off track", "red", "off", "#f4b1ab", "cross"),
    Status.NO_TARGET: StatusLook("○", "no target", "blue", "nt", "#a7cdf5", "hollow"),
    Status.NO_DATA: StatusLook("·", "no data", "bright_black", "nd", "#cdd5dd", "dot"),
}
UNKNOWN = StatusLook("?", "unknown", "white", "nd", "#cdd5dd", "dot")

# The statuses that judge a value against a target, best first (the charts' legend).
JUDGED = (Status.ON_TRACK, Status.AT_RISK, Status.OFF_TRACK)
# The roll-up (SPEC §6): worst first; a strategy or priority takes the first its KPIs have.
ROLLUP_ORDER = tuple(reversed(JUDGED))
# Counted beside the roll-up, never mixed into it; the first present stands in when nothing is judged.
BESIDE = (Status.NO_TARGET, Status.NO_DATA)
# `--fail-on S` fails on S and everything worse.
FAIL_ON: dict[Status, tuple[Status, ...]] = {
    s: ROLLUP_ORDER[: ROLLUP_ORDER.index(s) + 1] for s in (Status.OFF_TRACK, Status.AT_RISK)
}
# The statuses that call for the KPI's `actions` (highlighted on its page).
ACTION = FAIL_ON[Status.AT_RISK]


# A forecast's status as `status` and the scorecard say it (SPEC §10): a KPI is on course when its forecast
# meets the target at the horizon; at_risk or off_track there, it is off course (the symbol and colour tell which).
COURSE: dict[Status, str] = {Status.ON_TRACK: "on course", Status.AT_RISK: "off course", Status.OFF_TRACK: "off course"}


def course(status: str | None) -> str | None:
    """'on course' / 'off course' for a forecast_status; None where nothing is judged (no target at the horizon)."""
    return COURSE.get(status) if status is not None else None


def look(status: str | None) -> StatusLook:
    return LOOKS.get(status, UNKNOWN) if status is not None else UNKNOWN
