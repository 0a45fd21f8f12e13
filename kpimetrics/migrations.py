"""Schema migrations: how output tables written by an earlier release become the tables this one writes.

The output schema records its version in kpi_meta (key `schema_version`). `MIGRATIONS`
lists, for every version after the first, what changes from the version before, as
data: steps with sqlglot trees, no SQL text. `run` applies the pending ones in order;
how depends on the engine's publisher:

    one transaction (DuckDB, PostgreSQL): the steps and the new version number are the
        first statements of the publishing transaction, so a killed or failed run
        leaves the warehouse at its old version, every row as it was;
    versioned views (Spark): a new table is a versioned table and its view, filled
        before its view exists (a table of tables.APPEND_ONLY, a log written outside
        runs, is a plain table); a new column is added to the table beneath the view
        (every version NULL in it), then the view is made again with it; the version
        number is appended to kpi_meta last. Every step can be repeated, so a run
        killed midway is completed by the next.

A new column goes at the end of its table's columns in tables.py, as ALTER TABLE adds
it, so that a new warehouse and an upgraded one have the same columns in the same order.

Until a run applies them, the run reads the tables of the warehouse's version:
a migration must not change what staging reads (kpi_values' columns) before it
publishes.

A warehouse newer than the code is refused: an older kpimetrics cannot know what a
newer one's tables mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from . import tables
from .errors import WarehouseError
from .tables import qualified

VERSION_KEY = "schema_version"


@dataclass(frozen=True)
class CreateTable:
    """A new output table, filled from what the tables of the version before hold."""
    table: tables.Table
    backfill: Callable[[str], exp.Query] | None = None  # output schema -> the new table's first rows


@dataclass(frozen=True)
class AddColumn:
    """A new column of an output table (declared last in tables.py), NULL in the rows the table holds: the next
    run that writes a row writes its value."""
    table: tables.Table
    column: str

    @property
    def type(self) -> str:
        return dict(self.table.columns)[self.column]

    def ddl(self, schema: str, table: str | None = None, *, exists: bool = True) -> exp.Alter:
        """ALTER TABLE ... ADD COLUMN, of `table` (the output table's by default: another where an engine keeps
        its rows beneath a view); `exists`: IF NOT EXISTS, for the engines that have it."""
        column = exp.ColumnDef(this=exp.to_identifier(self.column, quoted=True), kind=exp.DataType.build(self.type),
                               exists=exists)
        return exp.Alter(this=qualified(schema, table or self.table.name), kind="TABLE", actions=[column])


Step = CreateTable | AddColumn


@dataclass(frozen=True)
class Migration:
    version: int  # the version it makes, from version - 1
    summary: str
    steps: tuple[Step, ...]


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _as(expression: exp.Expression, name: str) -> exp.Alias:
    return exp.alias_(expression, name, quoted=True)


def definitions_from_v1(schema: str) -> exp.Select:
    """kpi_definitions as far as a version-1 warehouse can tell it: one row per (name, definition_hash)
    in kpi_values or kpi_catalog.

    What it knows: version 1 keeps one hash per KPI, its current one (a changed hash recomputes the KPI
    and replaces its rows), and each value row keeps the run that last computed it. So:
      first_run_id, first_seen_at: the oldest run whose value rows survive (its computed_at). That is the
        first run with this hash unless a later run recomputed every period of the KPI (--full-refresh,
        or a lookback reaching its first period); then it is that later run. NULL run and the catalog's
        time for a KPI without value rows.
      last_seen_at: the catalog's updated_at, the last run that published the KPI.
    What it cannot know: the hashes a KPI had before its current one (their rows are gone), and when
    the current hash first appeared if no value row of that first run is left.
    """
    seen = exp.union(
        exp.select(_col("name"), _col("definition_hash"), _col("run_id"), _as(_col("computed_at"), "at"))
        .from_(qualified(schema, tables.VALUES.name)),
        exp.select(_col("name"), _col("definition_hash"), _as(exp.cast(exp.null(), "BIGINT"), "run_id"),
                   _as(_col("updated_at"), "at"))
        .from_(qualified(schema, tables.CATALOG.name)),
        distinct=False,
    )
    return (
        exp.select(
            _col("name"), _col("definition_hash"),
            _as(exp.Min(this=_col("run_id")), "first_run_id"),
            _as(exp.Min(this=_col("at")), "first_seen_at"),
            _as(exp.Max(this=_col("at")), "last_seen_at"),
        )
        .from_(exp.Subquery(this=seen, alias=exp.TableAlias(this=exp.to_identifier("__seen", quoted=True))))
        .where(exp.Not(this=exp.Is(this=_col("definition_hash"), expression=exp.null())))
        .group_by(_col("name"), _col("definition_hash"))
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "kpi_definitions: every definition_hash a KPI has had",
              (CreateTable(tables.DEFINITIONS, definitions_from_v1),)),
    # no backfill: a forecast is of the run's date, so the migrating run's publishing writes the first rows
    Migration(3, "kpi_forecast: each KPI total's forecast at the current period's end and at its target's deadline",
              (CreateTable(tables.FORECAST),)),
    # no backfill: nothing was notified before; a log appended to by `kpimetrics notify` (kpimetrics/notify/)
    Migration(4, "kpi_notifications: every notice `kpimetrics notify` sent or tried to send",
              (CreateTable(tables.NOTIFICATIONS),)),
    # no backfill: a version-4 warehouse has no combination slices (SPEC §9), whose members these rows are; its
    # single-column slices keep their rows as they are
    Migration(5, "kpi_slice_members: the members of each slice of a combination of dimensions",
              (CreateTable(tables.SLICE_MEMBERS),)),
    # NULL in the rows a version-5 warehouse holds: it never recorded a KPI's metric; each run writes its KPIs' rows
    Migration(6, "kpi_catalog.metric: the semantic-layer metric a `metric:` KPI is computed from",
              (AddColumn(tables.CATALOG, "metric"),)),
    # NULL in older rows: no KPI's statuses are kept by its first run at version 7, which writes them all
    Migration(7, "kpi_catalog.status_hash: what a KPI's statuses take besides its values (its targets, owner, "
                 "strategy), which an incremental run checks before it keeps the statuses of earlier periods",
              (AddColumn(tables.CATALOG, "status_hash"),)),
)


def columns_at(table: tables.Table, version: int) -> tuple[str, ...]:
    """The columns `table` has at schema `version`: without those the migrations after it add (a view made again
    by a migration shows what the table holds then, not what a later step of the same run adds)."""
    later = {step.column for m in MIGRATIONS if m.version > version for step in m.steps
             if isinstance(step, AddColumn) and step.table.name == table.name}
    return tuple(c for c in table.column_names if c not in later)


def added_columns(table: tables.Table) -> tuple[str, ...]:
    """The columns of `table` that a migration added (an older warehouse's table may lack them until a run)."""
    return tuple(step.column for m in MIGRATIONS for step in m.steps
                 if isinstance(step, AddColumn) and step.table.name == table.name)


def parse_version(values: list) -> int | None:
    """The schema version of kpi_meta's `schema_version` values (several where it is an append-only log:
    the highest counts); None when there is none or one is not a number."""
    if not values or not all(str(v).strip().isdigit() for v in values):
        return None
    return max(int(str(v).strip()) for v in values)


def pending(found: int | None, schema: str, migrations: tuple[Migration, ...] = MIGRATIONS,
            current: int = tables.SCHEMA_VERSION) -> tuple[Migration, ...]:
    """The migrations that take a warehouse at version `found` to `current`, in order; refuses a warehouse
    newer than the code, or one whose version is unreadable."""
    if found is None or found < 1:
        raise WarehouseError(
            f"the output tables in schema '{schema}' carry no readable schema version in kpi_meta; this kpimetrics "
            f"writes version {current}. Drop the schema (`kpimetrics run` rebuilds it) or point output_schema at a new one."
        )
    if found > current:
        raise WarehouseError(
            f"the output tables in schema '{schema}' have schema version {found}, written by a newer kpimetrics; this "
            f"kpimetrics writes version {current} and cannot read them. Upgrade kpimetrics (pip install -U kpimetrics)."
        )
    steps = tuple(m for m in migrations if found < m.version <= current)
    if [m.version for m in steps] != list(range(found + 1, current + 1)):
        raise WarehouseError(f"no migration of the output tables from schema version {found} to {current}")  # a kpimetrics bug
    return steps


def version_update(schema: str, version: int) -> exp.Update:
    """kpi_meta says `version` (engines that update rows)."""
    return exp.update(qualified(schema, tables.META.name), {"value": exp.Literal.string(str(version))},
                      where=exp.EQ(this=_col("key"), expression=exp.Literal.string(VERSION_KEY)))


def version_append(schema: str, version: int) -> exp.Insert:
    """kpi_meta says `version` (engines without UPDATE: a row more; the highest counts)."""
    row = exp.select(_as(exp.Literal.string(VERSION_KEY), "key"), _as(exp.Literal.string(str(version)), "value"))
    return exp.Insert(this=exp.Schema(this=qualified(schema, tables.META.name), expressions=[_col("key"), _col("value")]),
                      expression=row)
