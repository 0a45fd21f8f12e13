"""Durations and percentages as written in YAML: '35 days', '12 hours', '-20%', '5%'."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+)\s*(minute|hour|day|week)s?\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*[+-]?\d+(\.\d+)?\s*%\s*$")


def parse_duration(text: Any) -> dt.timedelta | None:
    """'2 days', '12 hours', '35 days', '1 week' -> timedelta; None when it does not parse, or is longer than a
    timedelta holds (999,999,999 days), which no calendar needs."""
    if not isinstance(text, str):
        return None
    match = _DURATION.match(text)
    if not match:
        return None
    try:
        return dt.timedelta(**{match.group(2).lower() + "s": int(match.group(1))})
    except OverflowError:
        return None


def parse_percent(text: Any) -> float | None:
    """'-20%' -> -0.2; None when it is not a percent string."""
    if isinstance(text, str) and _PERCENT.match(text):
        return float(text.strip().rstrip("%").strip()) / 100
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
