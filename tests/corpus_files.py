"""Hostile-input corpus: files (see corpus.py). FAULTS run in test_error_catalog; ELSEWHERE: code -> where it is tested."""
from __future__ import annotations

from corpus import ANY_LINE, Fault  # noqa: F401

FAULTS: list[Fault] = []
ELSEWHERE: dict[str, str] = {}
