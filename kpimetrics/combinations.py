"""Combinations of dimensions (SPEC §9): a `dimensions` item that is a list slices a KPI by every combination of
its columns' values, beside the single-column slices.

A combination is one more slice dimension of the KPI, so everything that handles a slice handles it unchanged
(the fused scan's GROUPING SETS, pre-aggregates, windows, derived KPIs, targets, incremental ranges):

    dimension        its columns joined by ' × '                         'region × channel'
    dimension_value  each column's slice value, joined by ' · '          'EU · web'

In the scan the combination is one grouping column computed row by row from its members, each read as a
single slice reads it (NULL is '(null)'); a '·' inside a value is written twice, so the text decodes back to
its members exactly (`members`). kpi_slice_members holds those members as rows, one per combination slice and
member, so that a BI tool filters one member (channel = 'web') with plain SQL; single-column slices are not in
it: their rows read exactly as before.
"""
from __future__ import annotations

from sqlglot import exp

from . import calendar as cal_

NAME_SEPARATOR = " × "
VALUE_SEPARATOR = " · "
_DOT = "·"
NULL_SLICE = "(null)"  # as sqlgen.NULL_SLICE: a member reads as its single slice does


def name(columns: list[str] | tuple[str, ...]) -> str:
    """The `dimension` of a combination's rows."""
    return NAME_SEPARATOR.join(columns)


def is_combination(dimension: str) -> bool:
    return NAME_SEPARATOR in dimension


def columns(dimension: str) -> list[str]:
    """A combination's columns, from its `dimension`."""
    return dimension.split(NAME_SEPARATOR)


def value_expr(members: list[exp.Expression]) -> exp.Expression:
    """The combination's slice value, row by row: each member's slice value, '·' doubled, joined by ' · '."""
    parts = [exp.Replace(this=exp.Coalesce(this=exp.Cast(this=m, to=cal_.data_type("VARCHAR")),
                                           expressions=[exp.Literal.string(NULL_SLICE)]),
                         expression=exp.Literal.string(_DOT), replacement=exp.Literal.string(_DOT * 2))
             for m in members]
    out = parts[0]
    for part in parts[1:]:
        out = exp.DPipe(this=exp.DPipe(this=out, expression=exp.Literal.string(VALUE_SEPARATOR)),
                        expression=part)
    return exp.Paren(this=out)


def encode(values: list[str]) -> str:
    """What value_expr computes, for member values already text (tests, targets)."""
    return VALUE_SEPARATOR.join(v.replace(_DOT, _DOT * 2) for v in values)


def members(value: str) -> list[str]:
    """A combination's `dimension_value` decoded into its members' values: '··' is one '·', a ' · ' whose dot is
    not doubled separates members."""
    out, part, i = [], [], 0
    while i < len(value):
        if value.startswith(_DOT * 2, i):
            part.append(_DOT)
            i += 2
        elif value.startswith(VALUE_SEPARATOR, i):
            out.append("".join(part))
            part = []
            i += len(VALUE_SEPARATOR)
        else:
            part.append(value[i])
            i += 1
    out.append("".join(part))
    return out


def label(dimension: str, value: str | None) -> str:
    """A slice as `status` and `show` print it: 'region=EU · channel=web', or 'region=EU'."""
    if not is_combination(dimension):
        return f"{dimension}={value}"
    return VALUE_SEPARATOR.join(f"{c}={v}" for c, v in zip(columns(dimension), members(value or "")))
