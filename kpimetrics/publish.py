"""Publishing a run's output tables atomically: two protocols, one chosen per engine as data.

The runner stages every KPI, then hands publishing the writes of every output table (`TableWrite`: the
rows a run drops and the rows it adds, the same on every engine). How they are applied so that a reader sees
the previous complete run or the new one, never a mix, depends on what the engine can do, and is named by
`Capabilities.publish` of its adapter:

    "transaction"      (DuckDB, PostgreSQL) one multi-table transaction deletes the replaced rows and
                       inserts the new ones, and keeps the scans' pre-aggregates (partials.py)
    "versioned_views"  (Spark: no multi-table transactions, no UPDATE or DELETE on parquet tables)
                       each output table is a view over `<name>__versions`; a run writes a new version
                       of every table, then moves one pointer view

A publisher also owns what differs by protocol around publishing: creating the output tables, applying
the schema migrations (migrations.py: inside the publishing transaction, or as versioned tables at
setup), and the `kpi_runs` log (updated in place, or appended to where rows cannot be updated).

A new engine needs an adapter module (adapters/) whose `Capabilities.publish` names one of `PUBLISHERS`;
the runner never asks which. An engine that can do neither adds a publisher here, with the same steps.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from sqlglot import exp

from . import migrations, sqlgen, tables
from .faults import checkpoint
from .sqlgen import col, ident, lit
from .tables import qualified

if TYPE_CHECKING:
    from .partials import KeptPreAggregates
    from .runner import RunState

UNION_CHUNK = 200  # queries per INSERT ... SELECT: bounded statement size for large projects

# publishing by versions (see VersionedViewsPublisher)
VERSIONED = (tables.VALUES, tables.CATALOG, tables.CHECK_INS, tables.TARGETS, tables.STATUS, tables.STRATEGY,
             tables.DEFINITIONS, tables.FORECAST, tables.SLICE_MEMBERS)
OWNER_KEY = "project"  # kpi_meta's row naming the project that owns the output schema (SPEC §11: one project)
VERSION_COLUMN = "kpi_version"
POINTER = "kpi_current_version"  # a view: SELECT <the published run_id> AS version, <a bound> AS oldest
OLDEST = "oldest"  # the pointer's lowest version any versioned table may still hold (see _drop_versions)
LISTED_BEYOND = 32  # more candidate versions than this (failed runs in a row): list the partitions instead
RUNS_LOG = "kpi_runs__log"
# the output tables readers query, in the order a first run creates them (after the tables beneath them and the
# pointer): kpi_runs first, so a reader that finds any output table finds the log saying no run has succeeded yet
FIRST_RUN_ORDER = ("kpi_runs", *(t.name for t in tables.APPEND_ONLY), *(t.name for t in VERSIONED))


@dataclass(frozen=True)
class TableWrite:
    """What publishing does to one output table: drop the published rows `dropped`, add the rows of
    `queries` (SQL) and `rows` (from the YAML)."""
    table: tables.Table
    dropped: exp.Expression
    queries: list[exp.Query]
    rows: list[list[Any]]


@dataclass(frozen=True)
class Warehouse:
    """The output schema, reached through the run's plumbing: every statement is logged in the run's
    results, and `run_sql` passes a kill point (faults.py) before each one."""
    adapter: Any  # the run's adapter (adapters.Adapter), its statements timed
    schema: str
    sql: Callable[[exp.Expression], str]
    run_sql: Callable[[exp.Expression], None]
    fetch: Callable[[exp.Expression], list[tuple]]
    insert: Callable[[tables.Table, exp.Query], None]  # INSERT INTO an output table (column names in order)
    project: str = ""  # the project whose output schema this is: kpi_meta's OWNER_KEY row

    @property
    def meta_rows(self) -> list[list[str]]:
        """kpi_meta's rows in a new output schema: the schema version, the owning project."""
        return [[migrations.VERSION_KEY, str(tables.SCHEMA_VERSION)], [OWNER_KEY, self.project]]

    def t(self, name: str, alias: str | None = None) -> exp.Table:
        return qualified(self.schema, name, alias)

    def tsql(self, name: str) -> str:
        return self.sql(self.t(name))


Migrations = tuple[migrations.Migration, ...]


class Publisher(Protocol):
    """The steps of a run that differ by publishing protocol, in the order a run takes them."""
    runs_table: str  # the table a run's first row is written to
    keeps_pre_aggregates: bool  # whether scans' pre-aggregates are kept between runs (partials.py)

    def ensure_tables(self, existing: set[str], pending: Migrations) -> Migrations:
        """Create the output tables missing from `existing`; return the migrations left for `publish`."""
    def mark_aborted(self, now: dt.datetime) -> None:
        """Mark the runs still 'running' (killed ones) as aborted; called when kpi_runs has such a run."""
    def publish(self, run: RunState, writes: Callable[[], list[TableWrite]],
                pre_aggregates: KeptPreAggregates | None) -> None:
        """Apply run.migrations and `writes()` (made once publishing has begun) so that a reader sees all of
        them or none; keep `pre_aggregates` with them."""
    def record_end(self, run_id: int, started_at: dt.datetime, values: dict[str, Any]) -> None:
        """Record a run's end (`values`: status, finished_at, counts, message) in kpi_runs."""


def is_running() -> exp.Expression:
    """kpi_runs' rows of runs that have not ended: running, or killed while they ran."""
    return exp.EQ(this=col("status"), expression=lit("running"))


class TransactionPublisher:
    """One transaction replaces the recomputed rows of every KPI that succeeded (engines with multi-table
    transactions: DuckDB, PostgreSQL)."""
    runs_table = "kpi_runs"
    keeps_pre_aggregates = True  # in the same transaction as the values

    def __init__(self, wh: Warehouse):
        self.wh = wh

    def ensure_tables(self, existing: set[str], pending: Migrations) -> Migrations:
        """Create what is missing of the output tables; the `pending` migrations are applied when publishing."""
        wh = self.wh
        # all the tables or none: a run killed halfway must not leave kpi_* tables without kpi_meta
        atomic = "kpi_meta" not in existing
        if atomic:
            wh.adapter.begin()
        for table in tables.ALL_TABLES:
            if table.name not in existing:
                wh.run_sql(table.ddl(wh.schema))
        if "kpi_meta" not in existing:
            checkpoint("setup.meta")
            wh.adapter.insert_rows(wh.tsql("kpi_meta"), ["key", "value"], wh.meta_rows)
        if atomic:
            wh.adapter.commit()
        return pending

    def mark_aborted(self, now: dt.datetime) -> None:
        """A run still 'running' was killed: the next run says so."""
        self.wh.run_sql(exp.update(self.wh.t("kpi_runs"), {"status": lit("aborted"), "finished_at": lit(now)},
                                   where=is_running()))

    def publish(self, run: RunState, writes: Callable[[], list[TableWrite]],
                pre_aggregates: KeptPreAggregates | None) -> None:
        wh = self.wh
        wh.adapter.begin()
        checkpoint("publish.begin")
        try:
            self._migrate(run.migrations)
            if run.adopts:
                checkpoint("publish.owner")
                wh.adapter.insert_rows(wh.tsql("kpi_meta"), ["key", "value"], [[OWNER_KEY, wh.project]])
            for w in writes():
                if w.dropped != exp.false():
                    wh.run_sql(exp.delete(wh.t(w.table.name), where=None if w.dropped == exp.true() else w.dropped))
                if w.rows:  # a kill point of its own: insert_rows does not pass through run_sql
                    checkpoint("publish." + w.table.name.removeprefix("kpi_"))
                    wh.adapter.insert_rows(wh.tsql(w.table.name), w.table.column_names, w.rows)
                for i in range(0, len(w.queries), UNION_CHUNK):  # bounded statement size for large projects
                    wh.insert(w.table, sqlgen.union_all(w.queries[i:i + UNION_CHUNK]))
            if pre_aggregates is not None:
                checkpoint("publish.partials")
                pre_aggregates.publish()
            checkpoint("publish.commit")
            wh.adapter.commit()
            checkpoint("publish.committed")
        except BaseException:
            wh.adapter.rollback()
            raise

    def _migrate(self, pending: Migrations) -> None:
        """The pending schema migrations: the first statements of the publishing transaction, so a run that
        does not commit leaves the tables at their old version."""
        wh = self.wh
        for migration in pending:
            checkpoint(f"migrate.v{migration.version}")
            for step in migration.steps:
                if isinstance(step, migrations.AddColumn):
                    wh.run_sql(step.ddl(wh.schema))
                    continue
                wh.run_sql(step.table.ddl(wh.schema))
                if step.backfill is not None:
                    wh.insert(step.table, step.backfill(wh.schema))
            wh.run_sql(migrations.version_update(wh.schema, migration.version))

    def record_end(self, run_id: int, started_at: dt.datetime, values: dict[str, Any]) -> None:
        self.wh.run_sql(exp.update(self.wh.t("kpi_runs"), {k: lit(v) for k, v in values.items()},
                                   where=exp.EQ(this=col("run_id"), expression=lit(run_id))))


# --- publishing by versions (engines without multi-table transactions: Spark) ------------------


def versions_name(table: str) -> str:
    return f"{table}__versions"


def _partition(version: int) -> exp.Partition:
    """PARTITION (kpi_version = <version>): one run's version of a versioned table."""
    return exp.Partition(expressions=[exp.EQ(this=col(VERSION_COLUMN), expression=exp.Literal.number(version))])


def _versions_ddl(table: tables.Table, schema: str) -> exp.Create:
    """`<table>__versions`: the table's columns, partitioned by kpi_version."""
    ddl = tables.Table(versions_name(table.name), table.columns + ((VERSION_COLUMN, "BIGINT"),), "").ddl(schema)
    ddl.set("properties", exp.Properties(expressions=[
        exp.FileFormatProperty(this=exp.Var(this="PARQUET")),
        exp.PartitionedByProperty(this=exp.Schema(expressions=[ident(VERSION_COLUMN)])),
    ]))
    return ddl


class VersionedViewsPublisher:
    """Each output table is a view over `<name>__versions`, a table partitioned by kpi_version, that shows
    the partition named by the view kpi_current_version. A run writes partition run_id of every table,
    complete, drops the partitions no reader is on (neither the published one nor its own), then replaces
    kpi_current_version: one statement, so readers see every table of the previous run or every table of this
    one. The published partition stays until the run after this one (a query still reading it keeps working).
    kpi_runs is a view over an append-only log."""
    runs_table = RUNS_LOG  # rows cannot be updated: a newer row of a run supersedes the older
    keeps_pre_aggregates = False  # no transaction to keep them in step with the values: scans read the rows

    def __init__(self, wh: Warehouse):
        self.wh = wh

    def ensure_tables(self, existing: set[str], pending: Migrations) -> Migrations:
        """Create what is missing of the output tables and apply the `pending` migrations: none is left."""
        self._ensure_tables(existing)
        self._migrate(pending)
        return ()

    def _ensure_tables(self, existing: set[str]) -> None:
        """A new output schema, in an order a reader on another client of a shared catalog can rely on (the
        metastore has no multi-object transaction, so the names appear one by one):

        1. kpi_meta with its rows, in one statement (a CTAS: Spark writes the data before the catalog entry), so
           a run killed later finds it and completes the rest;
        2. the tables beneath the views, which no reader queries by name;
        3. kpi_current_version at 0, a version no run writes;
        4. the output tables readers query, in FIRST_RUN_ORDER: each readable at once and empty.

        So until the first run's swap no output table has a row, and once kpi_current_version is above 0 every
        output table exists and shows that run whole. Every step is skipped when done: the next run completes a
        run killed midway."""
        wh = self.wh
        if "kpi_meta" not in existing:
            meta = sqlgen.union_all([exp.select(sqlgen.alias(lit(k), "key"), sqlgen.alias(lit(v), "value")) for k, v in wh.meta_rows])
            wh.run_sql(exp.Create(this=wh.t("kpi_meta"), kind="TABLE", expression=meta))
        for table in VERSIONED:  # a table whose view exists (or a pending migration makes) has its versions
            if table.name not in existing and versions_name(table.name) not in existing:
                wh.run_sql(_versions_ddl(table, wh.schema))
        if RUNS_LOG not in existing:
            wh.run_sql(tables.Table(RUNS_LOG, tables.RUNS.columns, "").ddl(wh.schema))
        if POINTER not in existing:
            self._point_at(0)
        for name in FIRST_RUN_ORDER:
            if name in existing:
                continue
            if name == "kpi_runs":
                self._create_runs_view()
            elif name in tables.BY_NAME and tables.BY_NAME[name] in tables.APPEND_ONLY:  # logs written outside runs
                wh.run_sql(tables.BY_NAME[name].ddl(wh.schema))
            else:
                self._create_view(tables.BY_NAME[name])

    def _create_runs_view(self) -> None:
        """kpi_runs: the latest row of each run in the log, its end, or while it runs (or when it was killed) its start."""
        wh = self.wh
        latest = exp.Window(this=exp.RowNumber(), partition_by=[col("run_id")], order=exp.Order(
            expressions=[exp.Ordered(this=col("finished_at"), desc=True, nulls_first=False)]))
        rows = exp.select(*[col(c) for c in tables.RUNS.column_names], sqlgen.alias(latest, "__n")).from_(wh.t(RUNS_LOG))
        shown = exp.select(*[col(c) for c in tables.RUNS.column_names]).from_(
            exp.Subquery(this=rows, alias=exp.TableAlias(this=ident("__l")))).where(
            exp.EQ(this=col("__n"), expression=exp.Literal.number(1)))
        wh.run_sql(exp.Create(this=wh.t("kpi_runs"), kind="VIEW", expression=shown, replace=True))

    def _create_view(self, table: tables.Table, columns: tuple[str, ...] | None = None) -> None:
        """The view of the published version of `table` (of its `columns`, where a migration says which)."""
        wh = self.wh
        current = exp.select(col("version")).from_(wh.t(POINTER))
        shown = exp.select(*[col(c) for c in columns or table.column_names]).from_(wh.t(versions_name(table.name))).where(
            exp.EQ(this=col(VERSION_COLUMN), expression=exp.Subquery(this=current)))
        wh.run_sql(exp.Create(this=wh.t(table.name), kind="VIEW", expression=shown, replace=True))

    def _migrate(self, pending: Migrations) -> None:
        """The pending schema migrations, by versions: a new table's versioned table is filled (at the published
        version) before its view exists; kpi_meta gets the new version last. Every statement can run again, so
        the next run completes a migration killed midway."""
        if not pending:
            return
        wh = self.wh
        published = self._published_version()
        for migration in pending:
            checkpoint(f"migrate.v{migration.version}")
            for step in migration.steps:
                if isinstance(step, migrations.AddColumn):
                    self._add_column(step, migration.version)
                    continue
                if step.table in tables.APPEND_ONLY:  # a log written outside runs: a plain table (IF NOT EXISTS)
                    wh.run_sql(step.table.ddl(wh.schema))
                    continue
                wh.run_sql(_versions_ddl(step.table, wh.schema))
                if step.backfill is not None:
                    target = wh.t(versions_name(step.table.name))
                    target.set("partition", _partition(published))
                    wh.run_sql(exp.Insert(this=exp.Schema(this=target, expressions=[ident(c) for c in step.table.column_names]),
                                          expression=step.backfill(wh.schema), overwrite=True))
                self._create_view(step.table)
            wh.run_sql(migrations.version_append(wh.schema, migration.version))

    def _add_column(self, step: migrations.AddColumn, version: int) -> None:
        """A new column: added to the table that holds the rows (the versions beneath a view, the runs' log, or a
        plain log table), unless a run killed after adding it did; then the view is made again to show it, with
        the columns of `version` (the migration's: a later one adds its own column after it)."""
        wh = self.wh
        table = step.table
        holder = (table.name if table in tables.APPEND_ONLY else RUNS_LOG if table is tables.RUNS
                  else versions_name(table.name))
        if step.column not in (wh.adapter.columns(wh.schema, holder) or []):
            wh.run_sql(step.ddl(wh.schema, holder, exists=False))  # Spark has no ADD COLUMN IF NOT EXISTS
        if table is tables.RUNS:
            self._create_runs_view()
        elif table not in tables.APPEND_ONLY:
            self._create_view(table, migrations.columns_at(table, version))

    def mark_aborted(self, now: dt.datetime) -> None:
        """A run still 'running' was killed: the next run says so, with a newer row in the log."""
        wh = self.wh
        aborted = {"finished_at": lit(now), "status": lit("aborted")}
        rows = exp.select(*[sqlgen.alias(aborted[c], c) if c in aborted else col(c) for c in tables.RUNS.column_names])
        wh.run_sql(exp.Insert(this=exp.Schema(this=wh.t(RUNS_LOG), expressions=[ident(c) for c in tables.RUNS.column_names]),
                              expression=rows.from_(wh.t("kpi_runs")).where(is_running())))

    def record_end(self, run_id: int, started_at: dt.datetime, values: dict[str, Any]) -> None:
        row = {"run_id": run_id, "started_at": started_at} | values
        self.wh.adapter.insert_rows(self.wh.tsql(RUNS_LOG), list(row), [list(row.values())])

    def _point_at(self, version: int, oldest: int = 0, *, swap: bool = False) -> None:
        """kpi_current_version says `version`, and `oldest`, the lowest version a versioned table may still hold:
        made (set-up), or moved (`swap`) by ALTER VIEW ... AS, one alter_table of the metastore. Not CREATE OR
        REPLACE VIEW: Spark drops the view and creates it again, and a reader on another client querying in between
        fails with TABLE_OR_VIEW_NOT_FOUND (seen on the cluster)."""
        pointer = exp.select(sqlgen.alias(sqlgen.cast(exp.Literal.number(version), "BIGINT"), "version"),
                             sqlgen.alias(sqlgen.cast(exp.Literal.number(oldest), "BIGINT"), OLDEST))
        if swap:  # sqlglot has no ALTER VIEW ... AS: kpimetrics' own names and numbers only
            self.wh.run_sql(exp.Command(this="ALTER", expression=exp.Literal.string(
                f"VIEW {self.wh.tsql(POINTER)} AS {self.wh.sql(pointer)}")))
        else:
            self.wh.run_sql(exp.Create(this=self.wh.t(POINTER), kind="VIEW", expression=pointer, replace=True))

    def _published_version(self) -> int:
        return self._pointer()[0]

    def _pointer(self) -> tuple[int, int | None]:
        """The published version and the pointer's `oldest` (None where a release before it made the pointer)."""
        (row,) = self.wh.fetch(exp.select(exp.Star()).from_(self.wh.t(POINTER)))
        return int(row[0]), (int(row[1]) if len(row) > 1 and row[1] is not None else None)

    def publish(self, run: RunState, writes: Callable[[], list[TableWrite]],
                pre_aggregates: KeptPreAggregates | None) -> None:
        previous, oldest = self._pointer()
        if run.adopts:  # kpi_meta is a log here: a row more
            checkpoint("publish.owner")
            self.wh.adapter.insert_rows(self.wh.tsql("kpi_meta"), ["key", "value"], [[OWNER_KEY, self.wh.project]])
        written: set[str] = set()  # the tables whose new version is complete, which later queries read
        for w in writes():
            checkpoint("publish.version")
            self._write_version(run.run_id, w, written)
            written.add(w.table.name)
        self.wh.adapter.lock(self.wh.schema)  # still this run's (a shared catalog's lease): else nothing moves
        self._drop_versions(run.run_id, previous, oldest)
        checkpoint("publish.swap")
        self._point_at(run.run_id, previous, swap=True)  # below `previous` nothing is left (_drop_versions)
        checkpoint("publish.swapped")

    def _write_version(self, version: int, w: TableWrite, written: set[str]) -> None:
        """Partition `version` of a table: the published rows but those dropped, and the new rows, the queries
        reading the new versions of the tables `written` before."""
        wh, table, rows = self.wh, w.table, w.rows
        if rows:
            wh.adapter.insert_rows(wh.tsql(versions_name(table.name)), [*table.column_names, VERSION_COLUMN],
                                   [[*r, version] for r in rows])
        parts: list[exp.Query] = [] if w.dropped == exp.true() else [
            sqlgen.select_all(wh.t(table.name), table.column_names).where(exp.Not(this=exp.Paren(this=w.dropped)))]
        parts += [self._retarget(q, version, written) for q in w.queries]
        target = wh.t(versions_name(table.name))
        target.set("partition", _partition(version))
        for i in range(0, len(parts), UNION_CHUNK):
            wh.run_sql(exp.Insert(this=exp.Schema(this=target.copy(), expressions=[ident(c) for c in table.column_names]),
                                  expression=sqlgen.union_all(parts[i:i + UNION_CHUNK])))

    def _version(self, table: str, version: int) -> exp.Select:
        shown = tables.BY_NAME[table]
        return sqlgen.select_all(self.wh.t(versions_name(table)), shown.column_names).where(
            exp.EQ(this=col(VERSION_COLUMN), expression=exp.Literal.number(version)))

    def _retarget(self, query: exp.Query, version: int, written: set[str]) -> exp.Query:
        """`query` reading version `version` of each output table `written` so far."""
        def swap(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and node.db == self.wh.schema and node.name in written:
                return exp.Subquery(this=self._version(node.name, version),
                                    alias=exp.TableAlias(this=ident(node.alias or node.name)))
            return node

        return query.transform(swap)

    def _drop_versions(self, version: int, published: int, oldest: int | None) -> None:
        """Drop the partitions of every version but `published` (readers are on it) and `version` (this run's, being
        written): those of the version published before it, and of failed or killed runs. Before the swap, so that
        the pointer can say that nothing below `published` is left (its `oldest`).

        Which versions may be left is known without listing them: a run writes its run_id, ids grow, and the pointer
        says the lowest a versioned table may hold (each swap's drops came before it), so they are those from
        `oldest` up to this run's. They are listed (SHOW PARTITIONS, a statement a table) only where the pointer does
        not say (made by an earlier release) or failed runs left too many between. One statement a table."""
        wh = self.wh
        known = oldest is not None and version - oldest <= LISTED_BEYOND
        candidates = set(range(max(oldest or 0, 1), version)) - {published} if known else set()  # from 1: no run writes 0
        if known and not candidates:
            return
        for table in VERSIONED:
            versions = wh.t(versions_name(table.name))
            if known:
                old = sorted(candidates)
            else:
                listed = exp.Command(this="SHOW", expression=exp.Literal.string(f"PARTITIONS {wh.sql(versions)}"))
                old = sorted({int(str(spec).rpartition("=")[2]) for (spec,) in wh.fetch(listed)} - {version, published})
            if old:
                wh.run_sql(exp.Alter(this=versions, kind="TABLE", actions=[
                    exp.DropPartition(expressions=[_partition(v) for v in old], exists=True)]))


# The publishing protocols, by the name an adapter's Capabilities.publish gives.
PUBLISHERS: dict[str, Callable[[Warehouse], Publisher]] = {
    "transaction": TransactionPublisher,
    "versioned_views": VersionedViewsPublisher,
}
