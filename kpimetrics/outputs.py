"""The one reader of the output tables: typed rows, queries built with sqlglot, on any engine.

`status`, `show`, the scorecard and the Python API (`Project.outputs()`) read the published tables
through `OutputReader`, as a BI tool would. (A run's own reads while it publishes, in runner.py,
partials.py and migrations.py, are part of writing and stay there.) Each table read has a
row type whose fields are its columns in tables.py's order (a test holds the two equal): a new
output column is a field here, with its parser when the table's value is not the Python one (a
JSON list, a status word); a new table is a row type here, read with `OutputReader.read`.
Queries are sqlglot trees rendered in the adapter's dialect: DuckDB, PostgreSQL and Spark alike.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from sqlglot import exp

from . import migrations, tables
from .dialects import generate
from .errors import ConfigError
from .sqlgen import col, lit
from .status import Status


def _parsed(parse: Callable[[Any], Any]):
    """A column whose value as the table holds it is parsed on reading."""
    return field(metadata={"parse": parse})


def json_list(text: str | None) -> tuple[str, ...]:
    """A list-valued column (JSON text, so every BI tool reads it); anything else reads as empty."""
    if not text:
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _flag(value) -> bool | None:
    return None if value is None else bool(value)


@dataclass(slots=True)  # not frozen: a frozen __init__ sets each field through object.__setattr__, 10x slower
class StatusRow:
    """A row of kpi_status: one KPI, grain, period and slice (dimension '' is the total)."""

    TABLE = tables.STATUS

    name: str
    grain: str
    period_start: dt.date
    period_end: dt.date
    dimension: str
    dimension_value: str | None
    value: float | None
    target: float | None
    at_risk_threshold: float | None
    status: Status = _parsed(Status.of)
    attainment: float | None
    previous_value: float | None
    change: float | None
    change_pct: float | None
    is_complete: bool | None = _parsed(_flag)
    owner: str | None
    strategy: str | None
    priority: str | None
    run_id: int | None

    @property
    def is_total(self) -> bool:
        return self.dimension == ""


@dataclass(slots=True)
class CatalogRow:
    """A row of kpi_catalog: one KPI or standard as the last run published it."""

    TABLE = tables.CATALOG

    name: str
    kind: str
    label: str | None
    description: str | None
    owner: str | None
    strategy: str | None
    priority: str | None
    indicator: str | None
    category: str | None
    unit: str | None
    direction: str | None
    grains: tuple[str, ...] = _parsed(json_list)
    definition_hash: str | None
    tags: tuple[str, ...] = _parsed(json_list)
    drives: tuple[str, ...] = _parsed(json_list)
    actions: str | None
    form: str | None
    window: str | None
    updated_at: dt.datetime | None
    metric: str | None  # schema version 6: NULL in rows of older runs
    status_hash: str | None  # schema version 7: NULL in rows of older runs (targets.judgement_hash)


@dataclass(slots=True)
class StrategyRow:
    """A row of kpi_strategy: the mission, a priority or a strategy."""

    TABLE = tables.STRATEGY

    name: str
    level: str
    parent: str | None
    owner: str | None
    description: str | None
    starts: dt.date | None
    ends: dt.date | None


@dataclass(slots=True)
class CheckInRow:
    TABLE = tables.CHECK_INS

    name: str
    date: dt.date
    author: str | None
    note: str


@dataclass(slots=True)
class RunRow:
    """A row of kpi_runs. Its status is a run's (success, partial, error, ...), not a KPI's."""

    TABLE = tables.RUNS

    run_id: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    status: str | None
    kpis_ok: int | None
    kpis_failed: int | None
    message: str | None


@dataclass(slots=True)
class ForecastRow:
    """A row of kpi_forecast: a KPI total's forecast at one grain and horizon (forecast.py)."""

    TABLE = tables.FORECAST

    name: str
    grain: str
    horizon: str  # 'period' (the current period's end) | 'deadline' (the target's `by`)
    as_of: dt.date
    horizon_end: dt.date  # exclusive, as period_end
    forecast: float | None
    target_at_horizon: float | None
    forecast_status: Status = _parsed(Status.of)
    method: str | None  # 'least_squares' | 'run_rate'


@dataclass(slots=True)
class DefinitionRow:
    """A row of kpi_definitions: one definition_hash a KPI has had, with the first and last run that used it."""

    TABLE = tables.DEFINITIONS

    name: str
    definition_hash: str
    first_run_id: int | None
    first_seen_at: dt.datetime | None
    last_seen_at: dt.datetime | None


def headline_forecast(rows: list[ForecastRow], name: str, grain: str) -> ForecastRow | None:
    """The forecast `status` and the scorecard show for a KPI at a grain: the deadline's where the target has one
    ahead, else the current period's."""
    found = {r.horizon: r for r in rows if r.name == name and r.grain == grain}
    return found.get("deadline") or found.get("period")


Row = TypeVar("Row")
# Every row type (a test holds each to its table's columns).
ROW_TYPES = (StatusRow, CatalogRow, StrategyRow, CheckInRow, RunRow, ForecastRow, DefinitionRow)


def columns(row_type: type) -> list[str]:
    return [f.name for f in dataclasses.fields(row_type)]


def from_values(row_type: type[Row], values) -> Row:
    """A typed row from one fetched tuple, in `columns(row_type)` order."""
    values = list(values)
    for i, parse in _parsers(row_type):
        values[i] = parse(values[i])
    return row_type(*values)


@functools.cache
def _parsers(row_type: type) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
    """The columns parsed on reading, by position."""
    return tuple((i, f.metadata["parse"]) for i, f in enumerate(dataclasses.fields(row_type)) if "parse" in f.metadata)


def as_dict(row) -> dict[str, Any]:
    """A row as a mapping of its columns in plain values, as the Python API has always given them
    (a status is its word, a `str`; a JSON list column a list)."""
    return {f.name: _plain(getattr(row, f.name)) for f in dataclasses.fields(row)}


def _plain(value):
    if isinstance(value, Status):
        return value.value
    return list(value) if isinstance(value, tuple) else value


# --- queries (pure: sqlglot trees) ------------------------------------------------------------

def select(schema: str, row_type: type, where: exp.Expression | None = None, order: tuple[str, ...] = (),
           missing: frozenset[str] = frozenset()) -> exp.Select:
    """Every column of a row type's table; NULL for those `missing` (added by a migration no run has applied yet)."""
    q = exp.select(*[exp.alias_(exp.null(), c, quoted=True) if c in missing else col(c) for c in columns(row_type)]
                   ).from_(tables.qualified(schema, row_type.TABLE.name))
    if where is not None:
        q = q.where(where)
    return q.order_by(*[col(c) for c in order]) if order else q


def _is_total(alias: str | None = None) -> exp.Expression:
    return exp.EQ(this=col("dimension", alias), expression=lit(""))


def recent_totals_query(schema: str, names: list[str], periods: int, complete_only: bool) -> exp.Select:
    """The total rows of the last `periods` periods of each of `names` and each grain, oldest first."""
    cols = columns(StatusRow)
    where = exp.and_(
        _is_total(),
        exp.In(this=col("name"), expressions=[lit(n) for n in names]),
        col("is_complete") if complete_only else exp.true(),
    )
    recent = exp.Window(
        this=exp.RowNumber(),
        partition_by=[col("name"), col("grain")],
        order=exp.Order(expressions=[exp.Ordered(this=col("period_start"), desc=True)]),
    )
    inner = exp.select(*[col(c) for c in cols], exp.alias_(recent, "__rn", quoted=True)).from_(
        tables.qualified(schema, StatusRow.TABLE.name)).where(where)
    return (
        exp.select(*[col(c) for c in cols])
        .from_(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier("__s", quoted=True))))
        .where(exp.LTE(this=col("__rn"), expression=exp.Literal.number(periods)))
        .order_by(col("name"), col("grain"), col("period_start"))
    )


def latest_slices_query(schema: str) -> exp.Select:
    """Every slice row at the latest complete period of its KPI and grain, in an order every engine gives alike."""
    latest = (
        exp.select(col("name"), col("grain"), exp.alias_(exp.Max(this=col("period_start")), "period_start", quoted=True))
        .from_(tables.qualified(schema, StatusRow.TABLE.name))
        .where(exp.and_(_is_total(), col("is_complete")))
        .group_by(col("name"), col("grain"))
    )
    on = exp.and_(*[exp.EQ(this=col(c, "s"), expression=col(c, "l")) for c in ("name", "grain", "period_start")])
    return (
        exp.select(*[col(c, "s") for c in columns(StatusRow)])
        .from_(tables.qualified(schema, StatusRow.TABLE.name, alias="s"))
        .join(exp.Subquery(this=latest, alias=exp.TableAlias(this=exp.to_identifier("l", quoted=True))), on=on)
        .where(exp.NEQ(this=col("dimension", "s"), expression=lit("")))
        .order_by(*[col(c, "s") for c in ("name", "grain", "dimension", "dimension_value")])
    )


# --- reading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Headline:
    """A KPI's total at its latest complete period of one grain (SPEC §2: what `status`, `--fail-on`
    and the scorecard's headline show), with the complete periods before it."""

    name: str
    grain: str
    recent: list[StatusRow]  # oldest first; the headline is the last

    @property
    def row(self) -> StatusRow | None:
        return self.recent[-1] if self.recent else None

    @property
    def status(self) -> Status:
        """The headline's status; Status.NO_DATA when the grain has no complete period yet."""
        return self.row.status if self.row else Status.NO_DATA


class OutputReader:
    """Reads the output tables in `schema` through an open adapter (which the caller closes)."""

    def __init__(self, adapter, schema: str):
        self.adapter = adapter
        self.schema = schema
        # each table's columns, asked once a reader: migrations add columns and never drop one, so a column seen
        # stays; one added while a reader is open reads as NULL through it, as before the upgrade
        self._columns: dict[str, frozenset[str]] = {}

    def fetch(self, row_type: type[Row], query: exp.Query) -> list[Row]:
        """The rows of a query that selects `columns(row_type)`, typed."""
        return [from_values(row_type, r) for r in self.adapter.fetchall(generate(query, self.adapter.dialect, copy=False))]

    def read(self, row_type: type[Row], where: exp.Expression | None = None, order: tuple[str, ...] = ()
             ) -> list[Row]:
        """The rows of a row type's table (those `where` keeps), typed: a new table needs its row type, no more.
        A column a migration added reads as NULL while the warehouse is older (`status` before the upgrading run)."""
        added = migrations.added_columns(row_type.TABLE)
        present = self._present(row_type.TABLE.name) if added else frozenset()
        return self.fetch(row_type, select(self.schema, row_type, where, order,
                                           frozenset(c for c in added if c not in present)))

    def _present(self, table: str) -> frozenset[str]:
        if table not in self._columns:
            self._columns[table] = frozenset(self.adapter.columns(self.schema, table) or ())
        return self._columns[table]

    def require(self, *row_types: type) -> None:
        """Fail clearly when a table is not there yet (nothing run into this schema)."""
        present = set(self.adapter.tables(self.schema))
        missing = [t.TABLE.name for t in row_types if t.TABLE.name not in present]
        if missing:
            which = f" ({', '.join(missing)} missing)" if len(row_types) > 1 else ""
            raise ConfigError(f"no output tables in schema '{self.schema}' yet{which}: run `kpimetrics run` first")

    # kpi_status
    def recent_totals(self, names: list[str], periods: int, *, complete_only: bool) -> list[StatusRow]:
        """The total rows of each KPI's last `periods` periods (complete ones only if asked), per grain,
        ordered by name, grain and period."""
        return self.fetch(StatusRow, recent_totals_query(self.schema, names, periods, complete_only))

    def headlines(self, grains: dict[str, str], history: int = 1) -> dict[str, Headline]:
        """For each KPI (name -> the grain to judge it at): its headline and up to `history` complete periods."""
        series: dict[tuple[str, str], list[StatusRow]] = {}
        for r in self.recent_totals(list(grains), max(history, 1), complete_only=True):
            series.setdefault((r.name, r.grain), []).append(r)
        return {n: Headline(n, g, series.get((n, g), [])) for n, g in grains.items()}

    def totals(self) -> list[StatusRow]:
        """Every total row of every KPI, by name, grain and period."""
        return self.read(StatusRow, _is_total(), ("name", "grain", "period_start"))

    def latest_slices(self) -> list[StatusRow]:
        return self.fetch(StatusRow, latest_slices_query(self.schema))

    # the other tables, whole
    def catalog(self) -> list[CatalogRow]:
        return self.read(CatalogRow, order=("name",))

    def strategies(self) -> list[StrategyRow]:
        return self.read(StrategyRow)

    def check_ins(self) -> list[CheckInRow]:
        return self.read(CheckInRow, order=("name", "date"))

    def runs(self) -> list[RunRow]:
        return self.read(RunRow, order=("run_id",))

    def forecasts(self) -> list[ForecastRow]:
        """kpi_forecast, whole; empty where the table is not there (a warehouse no run of this release has upgraded)."""
        if ForecastRow.TABLE.name not in set(self.adapter.tables(self.schema)):
            return []
        return self.read(ForecastRow, order=("name", "grain", "horizon"))

    def definitions(self) -> list[DefinitionRow]:
        """kpi_definitions, oldest hash first per KPI; empty where the table is not there (a warehouse from
        before it)."""
        if DefinitionRow.TABLE.name not in set(self.adapter.tables(self.schema)):
            return []
        return self.read(DefinitionRow, order=("name", "first_run_id", "first_seen_at"))
