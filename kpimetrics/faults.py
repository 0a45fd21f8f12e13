"""Named kill points, so crash tests can stop a run at every step it takes.

The runner calls `checkpoint(name)` at each step (each staging query, each
publish statement, before and after the commit, the kpi_runs bookkeeping).
With no environment variable set it does nothing but two dictionary lookups.

    KPIMETRICS_KILL_LOG=FILE       append the name of every point reached to FILE, one a line
    KPIMETRICS_KILL_AT=NAME[:N]    signal this process the N-th time (default: the first) NAME is reached
    KPIMETRICS_KILL_SIGNAL=SIG     the signal sent: KILL (default), INT (a Ctrl-C), STOP (freeze, holding
                                   every lock, until SIGCONT)

A point is logged before the signal is sent, so the log names where a run stopped.
"""
from __future__ import annotations

import os
import signal

KILL_AT = "KPIMETRICS_KILL_AT"
KILL_LOG = "KPIMETRICS_KILL_LOG"
KILL_SIGNAL = "KPIMETRICS_KILL_SIGNAL"

_reached: dict[str, int] = {}


def checkpoint(name: str) -> None:
    """Mark that the run reached the step `name` (a test hook; a no-op unless configured)."""
    environ = os.environ
    if KILL_AT not in environ and KILL_LOG not in environ:
        return
    count = _reached[name] = _reached.get(name, 0) + 1
    log = environ.get(KILL_LOG)
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{name}\n".encode())  # one write: the line is whole even if we die next
        finally:
            os.close(fd)
    target = environ.get(KILL_AT)
    if target and parse_target(target) == (name, count):
        os.kill(os.getpid(), getattr(signal, "SIG" + environ.get(KILL_SIGNAL, "KILL").upper()))


def parse_target(text: str) -> tuple[str, int]:
    """`NAME` or `NAME:N` as (name, n); n counts from 1."""
    name, sep, n = text.rpartition(":")
    if sep and n.isdigit():
        return name, int(n)
    return text, 1


def occurrences(names: list[str]) -> list[str]:
    """Every step of a kill log as a KILL_AT value, in order: `a:1`, `b:1`, `a:2`, ..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(f"{name}:{seen[name]}")
    return out
