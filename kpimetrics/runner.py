"""Execute a plan in the warehouse and publish the output tables atomically.

    stage:   every scan and derived KPI is computed into a staging table;
             a failing query is retried KPI by KPI so one bad KPI fails alone
    publish: the recomputed rows of every KPI that succeeded replace its published
             ones, and its targets and status are rebuilt from the YAML, atomically:
             how is the engine's publisher (publish.py: one transaction, or
             versioned tables behind swapped views), chosen by its capabilities

The run's state (its run_id, what the output schema held as it began, the
recompute ranges) is a RunState made as the run takes its run_id, passed to the
steps, to the pre-aggregates kept between runs (partials.py) and to the publisher.

Incremental runs recompute, per KPI and grain, from `lookback` periods before
the last period already computed; the scans read what earlier rows the windows
need. A changed definition_hash or --full-refresh recomputes a KPI in full.
"""
from __future__ import annotations

import datetime as dt
import json
import time as _time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from sqlglot import exp

from . import calendar as cal_
from . import collector, combinations, migrations, sqlgen, tables, units
from .compiler import derived_dimensions
from .dialects import DISTINCT_MASKS, STAGED_PRE_AGGREGATE, generate
from .errors import Issue, Location, WarehouseError, error, warning
from .faults import checkpoint
from .forecast import forecast_queries
from .partials import KeptPreAggregates
from .planner import KpiPlan, Plan, Scan
from .publish import OWNER_KEY, PUBLISHERS, Migrations, TableWrite, Warehouse, is_running
from .sqlgen import KeptPreAggregate, col, ident, lit
from .tables import qualified
from .targets import (KeptPeriods, baseline_range, judgement_hash, keeps_statuses, plain_targets_queries,
                      status_query, table_probe, targets_query, with_baseline_query)

FULL = dt.date(1, 1, 1)  # `since` of a full recompute: every period
RANGE_COLUMNS = (("name", "VARCHAR"), ("grain", "VARCHAR"), ("since", "DATE"))  # what this run recomputes


def _temporary() -> exp.Properties:
    """CREATE TEMPORARY VIEW: the session's own (Capabilities.session_staging)."""
    return exp.Properties(expressions=[exp.TemporaryProperty()])


def first_line(exc: BaseException | str) -> str:
    """What a failed KPI reports of an exception (or a message): its first line, or the exception's type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _name_in(names: list[str]) -> exp.Expression:
    return exp.In(this=col("name"), expressions=[lit(n) for n in names])


def _before_range(run: RunState, rows: exp.Identifier, names: list[str] | None = None) -> exp.Expression:
    """Whether a row of an output table (`rows`: the table's name or alias) lies before the range the run
    recomputes at its KPI and grain: a period an incremental run keeps (of a KPI in `names`, when given). Said as
    one EXISTS, so that `NOT` of it in a conjunction is an anti-join (PostgreSQL plans an EXISTS under an OR as
    a subquery per row, and JIT-compiles the statement for that estimate)."""
    within = [exp.EQ(this=col("name", "__r"), expression=exp.column("name", table=rows.copy())),
              exp.EQ(this=col("grain", "__r"), expression=exp.column("grain", table=rows.copy())),
              exp.LT(this=exp.column("period_start", table=rows.copy()), expression=col("since", "__r"))]
    if names is not None:
        within.append(exp.In(this=col("name", "__r"), expressions=[lit(n) for n in names]))
    return exp.Exists(this=exp.select(exp.Literal.number(1)).from_(sqlgen.aliased(run.ranges, "__r")).where(
        exp.and_(*within)))


def _recomputed(run: RunState, rows: exp.Identifier, names: list[str], within: list[str] | None = None) -> exp.Expression:
    """The rows of an output table (`rows`) that the run replaces: NOT _before_range(run, rows, within). Led by a
    plain condition on the row that already keeps those of `names` (KPIs whose ranges the run recorded) before the
    earliest range at their grain: the rows the EXISTS keeps, most of them in an incremental run, which then skip
    its anti-join (DuckDB, kpi_status of 2,000 slices over two years: 250 ms to 25 ms a DELETE)."""
    earliest: dict[str, dt.date] = {}
    by_grain: dict[str, list[str]] = {}
    wanted = set(names)  # a list's `in` made this quadratic in a project's KPIs
    for (name, grain), since in run.since.items():
        if name in wanted and since is not None:
            earliest[grain] = min(since, earliest.get(grain, since))
            by_grain.setdefault(grain, []).append(name)
    recomputed = exp.Not(this=_before_range(run, rows, within))
    if not by_grain:
        return recomputed
    kept = exp.or_(*[exp.and_(exp.EQ(this=exp.column("grain", table=rows.copy()), expression=lit(g)),
                              exp.In(this=exp.column("name", table=rows.copy()), expressions=[lit(n) for n in by_grain[g]]),
                              exp.LT(this=exp.column("period_start", table=rows.copy()), expression=lit(earliest[g])))
                     for g in by_grain])
    return exp.and_(exp.Not(this=exp.Paren(this=kept)), recomputed)


@dataclass
class KpiResult:
    name: str
    kind: str
    status: str = "pending"  # success | error | skipped
    seconds: float = 0.0
    rows: int = 0
    error: str | None = None
    mode: str = "full"  # full | incremental
    since: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "status": self.status, "seconds": round(self.seconds, 3),
            "rows": self.rows, "error": self.error, "mode": self.mode, "since": self.since,
        }


@dataclass
class RunResult:
    run_id: int
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    as_of: dt.date | None = None
    kpis: list[KpiResult] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    message: str | None = None
    statements: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # KPIs no longer in the project whose rows this run deleted
    # seconds: "warehouse" inside the engine's statements, "stage" and "publish" the two phases, "run" all of it
    timing: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "message": self.message,
            "removed_kpis": self.removed,
            "warnings": [w.to_dict() for w in self.warnings],
            "results": [k.to_dict() for k in self.kpis],
            "timing": {k: round(v, 3) for k, v in self.timing.items()},
        }


@dataclass
class RunState:
    """What one run knows, made as it takes its run_id and passed to its steps, to the pre-aggregates kept
    between runs (partials.py) and to the publisher (publish.py)."""
    run_id: int
    schema: str
    as_of: dt.date
    whole_project: bool
    relations: list[tuple[str, str]]  # (name, 'table' | 'view') in the output schema as the run began
    migrations: Migrations  # the schema migrations the publisher applies (migrations.py)
    result: RunResult
    results: dict[str, KpiResult]  # of the selected KPIs, by name
    # the first period each KPI and grain recomputes (None: every period), decided as staging begins
    since: dict[tuple[str, str], dt.date | None] = field(default_factory=dict)
    adopts: bool = False  # the output schema records no owner yet: publishing records this project as its owner
    staged_pre_aggregates: int = 0  # scans' pre-aggregates staged as tables so far (Runner._scan_query)
    # the ranges and the inputs view are temporary views of the session, not of the output schema
    # (Capabilities.session_staging); the ranges' view shows `ranged`, the rows recorded so far
    in_session: bool = False
    ranged: list[list[Any]] = field(default_factory=list)
    # the staged rows are kept in the session (Capabilities.session_rows): run.stage is a temporary view of `parts`,
    # each scan's or derived KPI's rows staged by Adapter.stage, and the scans' pre-aggregates are staged the same way
    session_rows: bool = False
    parts: list[exp.Table] = field(default_factory=list)

    @property
    def stage(self) -> exp.Table:
        """The staged rows of this run's values."""
        return qualified(None if self.session_rows else self.schema, f"kpi_stage_{self.run_id}")

    @property
    def ranges(self) -> exp.Table:
        """The recompute range of each KPI and grain staged (RANGE_COLUMNS)."""
        return qualified(None if self.in_session else self.schema, f"kpi_stage_ranges_{self.run_id}")

    @property
    def inputs(self) -> exp.Table:
        """The view derived KPIs read (Runner._make_inputs_view)."""
        return qualified(None if self.in_session else self.schema, f"kpi_stage_inputs_{self.run_id}")


ProgressFn = Callable[[str, dict[str, Any]], None]

# adapter calls that do the warehouse's work, timed as "warehouse" in run_results.json
_WAREHOUSE_CALLS = frozenset({"execute", "fetchall", "insert_rows", "stage", "begin", "commit", "rollback"})


class _TimedAdapter:
    """The adapter, with the seconds spent in its statements added up in timing["warehouse"]."""

    def __init__(self, adapter, timing: dict[str, float]):
        self._adapter, self._timing = adapter, timing

    def __getattr__(self, name: str):
        value = getattr(self._adapter, name)
        if name not in _WAREHOUSE_CALLS:
            return value

        def timed(*args, **kwargs):
            began = _time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self._timing["warehouse"] += _time.perf_counter() - began
        return timed


class Runner:
    def __init__(self, plan: Plan, adapter, *, selected: list[str], full_refresh: bool = False,
                 fail_fast: bool = False, as_of: dt.date | None = None, whole_project: bool = True,
                 progress: ProgressFn | None = None, now: Callable[[], dt.datetime] | None = None):
        self.plan = plan
        self.project = plan.project
        self.timing: dict[str, float] = {"warehouse": 0.0}
        self.adapter = _TimedAdapter(adapter, self.timing)
        self.dialect = adapter.dialect
        self.schema = self.project.config.output_schema
        self.cal = self.project.config.calendar
        self.selected = selected
        self.full_refresh = full_refresh
        self.fail_fast = fail_fast
        self.whole_project = whole_project
        self.as_of = as_of or dt.date.today()
        self.progress = progress or (lambda event, info: None)
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0))
        self.statements: list[str] = []
        self.staging: dict[str, tuple[exp.Table, str]] = {}  # the staging relations this run created (table, kind)
        self.adopts = False  # set up by ensure_tables
        self.wh = Warehouse(self.adapter, self.schema, self.sql, self.run_sql, self.fetch, self.insert, self.project.config.name)
        self.publisher = PUBLISHERS[adapter.capabilities.publish](self.wh)  # how this engine publishes

    def _timed(self, phase: str, fn: Callable[[], Any]) -> Any:
        began = _time.perf_counter()
        try:
            return fn()
        finally:
            self.timing[phase] = self.timing.get(phase, 0.0) + _time.perf_counter() - began

    # --- plumbing ------------------------------------------------------------

    def sql(self, tree: exp.Expression) -> str:
        return generate(tree, self.dialect)

    def run_sql(self, tree: exp.Expression) -> None:
        text = self.sql(tree)
        self.statements.append(text)
        created = tree.this.this if isinstance(tree, exp.Create) and isinstance(tree.this, exp.Schema) else tree.this
        if isinstance(tree, exp.Create) and isinstance(created, exp.Table) and created.name.startswith("kpi_stage_"):
            self.staging[self.sql(created)] = (created.copy(), tree.kind)  # dropped as the run ends, not listed
        checkpoint("sql." + tree.key)  # a kill point before every statement
        self.adapter.execute(text)

    def stage_rows(self, view: exp.Table, query: exp.Query) -> None:
        """`query`'s rows computed now and kept in the session as temporary view `view` (Capabilities.session_rows,
        Adapter.stage); recorded as the CREATE TEMPORARY VIEW it amounts to, and dropped as the run ends."""
        text = self.sql(query)
        # the record only, around the text rendered once (a fused scan's tree is large)
        self.statements.append(f"CREATE TEMPORARY VIEW {self.sql(view)} AS {text}")
        self.staging[self.sql(view)] = (view.copy(), "VIEW")
        checkpoint("sql.create")
        self.adapter.stage(self.sql(view), text)

    def fetch(self, tree: exp.Expression) -> list[tuple]:
        text = self.sql(tree)
        self.statements.append(text)
        return self.adapter.fetchall(text)

    def t(self, name: str, alias: str | None = None) -> exp.Table:
        return qualified(self.schema, name, alias)

    def tsql(self, name: str) -> str:
        return self.sql(self.t(name))

    def insert(self, table: tables.Table, query: exp.Query) -> None:
        columns = [ident(c) for c in table.column_names]
        self.run_sql(exp.Insert(this=exp.Schema(this=self.t(table.name), expressions=columns), expression=query))

    # --- setup -----------------------------------------------------------------

    def ensure_tables(self) -> tuple[list[tuple[str, str]], Migrations]:
        """Create what is missing of the output tables; return the relations the schema held before, which
        is also what the start of the run needs to know of kpi_stage_* and kpi_partials_* (one listing, not three),
        and the schema migrations left for publishing to apply."""
        self.run_sql(exp.Create(this=exp.Table(this=ident(self.schema)), kind="SCHEMA", exists=True))
        relations = self.adapter.relations(self.schema)
        existing = {name for name, _ in relations}
        pending: Migrations = ()
        owners: list[str] = []
        if "kpi_meta" in existing:
            rows = self.fetch(exp.select(col("key"), col("value")).from_(self.t("kpi_meta")).where(
                exp.In(this=col("key"), expressions=[lit(migrations.VERSION_KEY), lit(OWNER_KEY)])))
            pending = migrations.pending(migrations.parse_version([v for k, v in rows if k == migrations.VERSION_KEY]),
                                         self.schema)  # a newer kpimetrics' schema first: it may record owners otherwise
            owners = sorted({str(v) for k, v in rows if k == OWNER_KEY})
            self._check_owner(owners)  # before anything is written, the schema migrated included
            existing |= {s.table.name for m in pending for s in m.steps}  # the migrations create them
        elif existing & {t.name for t in tables.OUTPUT_TABLES}:
            raise WarehouseError(
                f"schema '{self.schema}' holds kpi_* tables without kpimetrics' schema version (kpi_meta): "
                "they are from an older kpimetrics or another tool. Drop them or use another output_schema."
            )
        # a new kpi_meta is made with the owner's row; one written before owners were recorded is adopted by the
        # run's publishing (self.adopts), with its migrations
        self.adopts = "kpi_meta" in existing and not owners
        return relations, self.publisher.ensure_tables(existing, pending)

    def _check_owner(self, owners: list[str]) -> None:
        """One output schema holds one project's KPIs: another project's run would replace its catalog, strategy
        tree and KPIs (as removed from the project) with its own."""
        name = self.project.config.name
        others = [o for o in owners if o != name]
        if not others:
            return
        message = (f"output schema '{self.schema}' belongs to project '{others[0]}', not to this project '{name}': "
                   f"a run would replace its KPIs with this project's. Set `output_schema` in kpimetrics.yml to a "
                   f"schema of this project's own")
        config = self.project.config
        where = config.key_loc("output_schema" if "output_schema" in config.model_fields_set else "name") \
            or Location(self.project.config_path, 1, 1)
        raise WarehouseError(message, [error("KPI094", message, where)])

    def drop_staging(self, relations: list[tuple[str, str]] | None = None) -> None:
        """Drop the staging tables and views in `relations` (default: those the schema holds now)."""
        if relations is None:
            relations = self.adapter.relations(self.schema)
        found = [r for r in relations if r[0].startswith("kpi_stage_")]
        for name, kind in sorted(found, key=lambda r: r[1] != "view"):  # views first: they read the tables
            self.run_sql(exp.Drop(tables=[self.t(name)], kind=kind.upper(), exists=True))

    def _drop_own_staging(self) -> None:
        """Drop the staging relations this run created: a listing of the schema would be a round trip more on Spark,
        and a killed run's are dropped by the next run's start (drop_staging), the session's by the session's end."""
        created = sorted(self.staging.values(), key=lambda c: c[1] != "VIEW")  # views first: they read the tables
        self.staging = {}
        for table, kind in created:
            self.run_sql(exp.Drop(tables=[table], kind=kind, exists=True))

    # --- the run ---------------------------------------------------------------

    def run(self) -> RunResult:
        return self._timed("run", self._run)

    def _run(self) -> RunResult:
        started = self._now()
        checkpoint("run.start")
        self.adapter.lock(self.schema)
        relations, pending = self.ensure_tables()
        # the last run's id and how many runs are still 'running' (killed ones), in one query: a round trip on Spark
        # costs a second or so
        last = exp.Coalesce(this=exp.Max(this=col("run_id")), expressions=[exp.Literal.number(0)])
        running = exp.Count(this=exp.Case(ifs=[exp.If(this=is_running(), true=exp.Literal.number(1))]))
        (last_id, killed), = self.fetch(exp.select(last, running).from_(self.t("kpi_runs")))
        if killed:
            self.publisher.mark_aborted(started)
        run_id = int(last_id) + 1
        checkpoint("runs.insert")
        self.adapter.insert_rows(
            self.tsql(self.publisher.runs_table), ["run_id", "started_at", "status", "kpis_ok", "kpis_failed"],
            [[run_id, started, "running", 0, 0]],
        )
        result = RunResult(run_id, "running", started, as_of=self.as_of, statements=self.statements, timing=self.timing)
        results = {n: KpiResult(n, self.plan.kpis[n].kpi.kind) for n in self.selected}
        result.kpis = list(results.values())
        run = RunState(run_id, self.schema, self.as_of, self.whole_project, relations, pending, result, results,
                       adopts=self.adopts, in_session=self.adapter.capabilities.session_staging,
                       session_rows=self.adapter.capabilities.session_rows)
        kept = (KeptPreAggregates(run, self.wh, self.cal, self.project.config.defaults.late_rows,
                                  masks=self.dialect in DISTINCT_MASKS)
                if self.publisher.keeps_pre_aggregates else None)  # kept in step with the values they sum
        try:
            self.drop_staging(relations)
            self._timed("stage", lambda: self._stage_all(run, kept))
            failed = [r for r in results.values() if r.status == "error"]
            if failed and self.fail_fast:
                result.status = "error"
                result.message = f"--fail-fast: {failed[0].name} failed; nothing was published"
                for r in results.values():
                    if r.status != "error":  # staged, or never reached
                        r.status = "skipped"
            else:
                ok = [n for n, r in results.items() if r.status == "success"]
                self.progress("publish", {"kpis": len(ok)})
                self._timed("publish", lambda: self._publish(run, kept, ok))
                result.status = "success" if not failed else ("partial" if ok else "error")
                notes = []
                if failed:
                    notes.append(f"{len(failed)} KPI(s) failed: " + ", ".join(r.name for r in failed))
                if result.removed:
                    notes.append(f"deleted the rows of {len(result.removed)} KPI(s) removed from the project: "
                                 + ", ".join(result.removed))
                result.message = "; ".join(notes) or None
                try:
                    result.warnings.extend(self._baseline_warnings(ok))
                except WarehouseError as exc:  # after publishing: the values stand, only the check is lost
                    result.warnings.append(warning(
                        "KPI093", f"could not check the baseline ranges of relative targets: {self.project.secrets.scrub(str(exc))}"))
        except BaseException as exc:
            self.adapter.rollback()
            result.status = "aborted" if isinstance(exc, KeyboardInterrupt) else "error"
            # kpi_runs is an output table: a secret quoted by the warehouse's message must not reach it
            result.message = self.project.secrets.scrub(str(exc)) if not isinstance(exc, KeyboardInterrupt) else "interrupted"
            self._finish(run)
            raise
        self._finish(run)
        return result

    def _finish(self, run: RunState) -> None:
        checkpoint("run.finish")
        result = run.result
        result.finished_at = self._now()
        ok = sum(1 for r in run.results.values() if r.status == "success")
        bad = sum(1 for r in run.results.values() if r.status == "error")
        try:
            self._drop_own_staging()
            values = {"status": result.status, "finished_at": result.finished_at, "kpis_ok": ok, "kpis_failed": bad,
                      "message": (result.message or "")[:4000]}
            self.publisher.record_end(result.run_id, result.started_at, values)
        except Exception as exc:  # the log is best effort; the next run marks a 'running' row as aborted
            result.warnings.append(warning("KPI092", f"could not record the end of run {result.run_id}: {exc}"))

    # --- staging ---------------------------------------------------------------

    def _state(self) -> dict[tuple[str, str], tuple[dt.date, str, dt.date]]:
        """(last period, definition_hash or '' when mixed, first period) of each KPI and grain already computed."""
        rows = self.fetch(
            exp.select(col("name"), col("grain"), exp.Max(this=col("period_start")), exp.Min(this=col("definition_hash")),
                       exp.Max(this=col("definition_hash")), exp.Min(this=col("period_start")))
            .from_(self.t("kpi_values"))
            .where(exp.EQ(this=col("dimension"), expression=lit("")))
            .group_by(col("name"), col("grain"))
        )
        return {(r[0], r[1]): (r[2], r[3] if r[3] == r[4] else "", r[5]) for r in rows}

    def _since(self, pl: KpiPlan, grain: str, state) -> dt.date | None:
        if self.full_refresh:
            return None
        entry = state.get((pl.name, grain))
        if entry is None or entry[1] != pl.definition_hash:
            return None
        last, first = entry[0], entry[2]
        lookback = self.project.config.defaults.lookback
        if isinstance(lookback, int):
            since = cal_.py_add_periods(last, -lookback, grain)
        else:
            since = cal_.py_period_start(cal_.py_before(last, units.parse_duration(lookback) or dt.timedelta(0)), grain,
                                            self.cal)
        if pl.semantic is not None and pl.semantic.offsets:  # its last periods are an offset past the data's
            since = cal_.py_add_periods(since, -pl.semantic.offset_periods(grain), grain)
        # a range reaching the first period recomputes everything: the periods must start where the data does
        return since if since > first else None

    def _stage_all(self, run: RunState, kept: KeptPreAggregates | None) -> None:
        """Stage every selected KPI; `kept`: the pre-aggregates kept between runs, where the publisher keeps them."""
        if run.session_rows:
            self._show_stage(run)
        else:
            self.run_sql(tables.staging(run.stage.name).ddl(self.schema))
        if run.in_session:
            self._show_ranges(run)
        else:
            self.run_sql(tables.Table(run.ranges.name, RANGE_COLUMNS, "").ddl(self.schema))
        self._make_inputs_view(run)
        state = self._state()
        run.since.update({
            (n, g): self._since(self.plan.kpis[n], g, state) for n in self.selected for g in self.plan.kpis[n].grains
        })
        results = run.results
        for n in self.selected:
            r = results[n]
            r.since = {g: (s.isoformat() if s else None) for (k, g), s in run.since.items() if k == n}
            r.mode = "full" if all(s is None for (k, _), s in run.since.items() if k == n) else "incremental"
        self._check_freshness(run)
        self._check_dbt_relations(run)
        self._check_target_tables(run)
        for scan in self.plan.scans(self.selected):
            scan.items = [(p, g) for p, g in scan.items if results[p.name].status != "error"]
            if scan.items:
                self._stage_scan(run, kept, scan)
                if self.fail_fast and any(results[p.name].status == "error" for p in scan.plans):
                    return
        for name in self.selected:
            pl = self.plan.kpis[name]
            if not pl.scanned and results[name].status != "error":
                self._stage_derived(run, pl)
                if self.fail_fast and results[name].status == "error":
                    return
        for name in self.selected:
            if results[name].status == "pending":
                results[name].status = "success"

    def _insert_stage(self, run: RunState, query: exp.Query) -> None:
        if not run.session_rows:
            self.run_sql(sqlgen.insert_rows(run.stage, query))
            return
        q = "__q"  # the query's columns by position, cast to the stage's types, as an INSERT into it takes them
        self._stage_part(run, exp.select(*[sqlgen.alias(sqlgen.cast(col(c, q), t), c) for c, t in tables.VALUE_ROW]).from_(
            exp.Subquery(this=query, alias=exp.TableAlias(this=ident(q), columns=[ident(c) for c in tables.VALUE_COLUMNS]))))

    def _stage_part(self, run: RunState, query: exp.Query) -> None:
        """One more part of run.stage, and run.stage shown again. Every part stays one: merging them past a count (a
        checkpoint of their union, so that a project of many derived KPIs does not plan a union of all of them in each
        derived KPI's query) failed on Spark 4.3: the KPIs staged after a merge failed with NoSuchElementException: key
        not found: period_start#N (the demo's incremental run, merging every 2 parts; the cause was not found)."""
        part = qualified(None, f"{run.stage.name}_p{len(run.parts) + 1}")
        self.stage_rows(part, query)
        run.parts = run.parts + [part]
        self._show_stage(run)

    def _show_stage(self, run: RunState) -> None:
        """run.stage as a temporary view of the parts staged so far (run.parts; a statement the engine only plans)."""
        if run.parts:
            query = sqlgen.union_all([exp.select(exp.Star()).from_(p.copy()) for p in run.parts])
        else:
            query = exp.select(*[sqlgen.alias(sqlgen.cast(exp.null(), t), c) for c, t in tables.VALUE_ROW]).where(exp.false())
        self.run_sql(exp.Create(this=run.stage, kind="VIEW", expression=query, replace=True, properties=_temporary()))

    def _record_ranges(self, run: RunState, items: list[tuple[KpiPlan, str]]) -> None:
        rows = []
        for p, grain in items:
            since = run.since[(p.name, grain)]
            rows.append([p.name, grain, since or FULL])
        checkpoint("stage.ranges")
        if run.in_session:
            run.ranged += rows
            self._show_ranges(run)
        else:
            self.adapter.insert_rows(self.sql(run.ranges), [c for c, _ in RANGE_COLUMNS], rows)

    def _show_ranges(self, run: RunState) -> None:
        """run.ranges as a temporary view of the rows recorded so far (run.ranged): a statement the engine only
        plans, where each INSERT into a table was a job and a metastore update (a view reading it re-reads it)."""
        none = [[None] * len(RANGE_COLUMNS)]
        rows = [exp.select(*[sqlgen.alias(sqlgen.cast(lit(v), t), c)
                             for v, (c, t) in zip(row, RANGE_COLUMNS)]) for row in run.ranged or none]
        query = sqlgen.union_all(rows) if run.ranged else rows[0].where(exp.false())
        self.run_sql(exp.Create(this=run.ranges, kind="VIEW", expression=query, replace=True, properties=_temporary()))

    def _scan_query(self, run: RunState, items: list[tuple[KpiPlan, str]]) -> exp.Query:
        """A scan's query; where the dialect asks for it (dialects.STAGED_PRE_AGGREGATE), its shared pre-aggregate
        is first computed into a staging table of its own, which the query reads."""
        masks = self.dialect in DISTINCT_MASKS
        if self.dialect not in STAGED_PRE_AGGREGATE:
            return sqlgen.scan_query(items, self.cal, run.since, masks=masks)
        run.staged_pre_aggregates += 1
        # `s`: never a kept pre-aggregate's staging table (partials.py numbers those), were a dialect to have both
        name = f"kpi_stage_pp_{run.run_id}_s{run.staged_pre_aggregates}"
        pre = KeptPreAggregate(qualified(None, name) if run.session_rows else self.t(name))
        query = sqlgen.scan_query(items, self.cal, run.since, pre=pre, masks=masks)
        if pre.query is not None and run.session_rows:
            self.stage_rows(pre.staged, pre.query)
        elif pre.query is not None:
            self.run_sql(exp.Create(this=pre.staged, kind="TABLE", expression=pre.query))
        return query

    def _stage_scan(self, run: RunState, kept: KeptPreAggregates | None, scan: Scan) -> None:
        began = _time.perf_counter()
        plans, items, grains = scan.plans, scan.items, ", ".join(scan.grains)
        names = ", ".join(p.name for p in plans)
        self.progress("scan", {"grain": grains, "kpis": [p.name for p in plans], "model": plans[0].kpi.model})
        try:
            with collector.paused():  # a fused scan can be a tree of millions of nodes
                if kept is None:
                    self._insert_stage(run, self._scan_query(run, items))
                else:
                    kept.stage_scan(scan, items, lambda query: self._insert_stage(run, query))
            self._record_ranges(run, items)
        except Exception as exc:  # noqa: BLE001 — the database's message is reported as is
            if len(plans) == 1:
                self._fail(run, plans[0], exc)
                return
            # find the KPI at fault: each alone (at all its grains), so the others still publish
            for p in plans:
                alone = [(q, g) for q, g in items if q is p]
                try:
                    self._insert_stage(run, self._scan_query(run, alone))
                    self._record_ranges(run, alone)
                except Exception as exc2:  # noqa: BLE001 — the database's message is reported as is
                    self._fail(run, p, exc2)
                    if self.fail_fast:
                        return
            return
        spent = _time.perf_counter() - began
        for p in plans:
            run.results[p.name].seconds += spent / len(plans)
        self.progress("scanned", {"grain": grains, "kpis": names, "seconds": spent})

    def _fail(self, run: RunState, pl: KpiPlan, exc: BaseException | str) -> None:
        msg = self.project.secrets.scrub(first_line(exc))
        r = run.results[pl.name]
        r.status, r.error = "error", msg
        self.progress("failed", {"kpi": pl.name, "error": msg})
        # derived KPIs that read it cannot be computed either, nor those derived from them
        for other in self.selected:
            op = self.plan.kpis[other]
            if not op.scanned and pl.name in op.input_names and run.results[other].status == "pending":
                self._fail(run, op, f"input KPI {pl.name} failed")

    def _make_inputs_view(self, run: RunState) -> None:
        """run.inputs, the values derived KPIs read: this run's staged rows, and the published rows they do not replace."""
        v, r = "__v", "__r"
        superseded = exp.Exists(
            this=exp.select(exp.Literal.number(1)).from_(sqlgen.aliased(run.ranges, r)).where(
                exp.and_(
                    exp.EQ(this=col("name", r), expression=col("name", v)),
                    exp.EQ(this=col("grain", r), expression=col("grain", v)),
                    exp.GTE(this=col("period_start", v), expression=col("since", r)),
                )
            )
        )
        staged = exp.select(*[col(c) for c in tables.VALUE_COLUMNS]).from_(run.stage)
        published = (
            exp.select(*[col(c, v) for c in tables.VALUE_COLUMNS])
            .from_(self.t("kpi_values", v))
            .where(exp.Not(this=superseded))
        )
        self.run_sql(exp.Create(this=run.inputs, kind="VIEW", expression=exp.union(staged, published, distinct=False), replace=True,
                                properties=_temporary() if run.in_session else None))

    def _stage_derived(self, run: RunState, pl: KpiPlan) -> None:
        began = _time.perf_counter()
        self.progress("derived", {"kpi": pl.name})
        inputs = run.inputs
        dims = derived_dimensions(self.plan, pl.name)
        try:
            for grain in pl.grains:
                self._insert_stage(run, sqlgen.derived_query(pl, grain, inputs, dims, run.since[(pl.name, grain)]))
                self._record_ranges(run, [(pl, grain)])
        except Exception as exc:  # noqa: BLE001
            self._fail(run, pl, exc)
        run.results[pl.name].seconds += _time.perf_counter() - began

    # --- dbt's relations ---------------------------------------------------------

    def _check_dbt_relations(self, run: RunState) -> None:
        """A relation dbt built that this warehouse does not have fails the KPIs that read it, with the dbt
        command that builds it (KPI145); the others run. The manifest names relations of the target dbt last
        parsed, which need not be built, nor be this one (SPEC §8)."""
        missing: dict[str, str | None] = {}
        for name in self.selected:
            pl = self.plan.kpis[name]
            if pl.relation is None or run.results[name].status == "error":
                continue
            for node in pl.relation.dbt_nodes:
                if node.unique_id not in missing:
                    probe = exp.select(exp.Literal.number(1)).from_(node.table()).where(exp.false())
                    try:
                        self.fetch(probe)
                        missing[node.unique_id] = None
                    except Exception as exc:  # noqa: BLE001 - the warehouse says why; the message says what to do
                        first = first_line(exc)
                        # dbt builds models, seeds and snapshots; a source is loaded by whatever feeds it
                        todo = (f"dbt does not build sources: load it, or correct the source's schema or identifier "
                                f"in the dbt project" if node.resource_type == "source" else
                                f"run `dbt build -s +{node.selector}` on the same target")
                        missing[node.unique_id] = (
                            f"KPI145: dbt's {node.label} ({node.table().sql(dialect=self.adapter.dialect)}) cannot be "
                            f"read in this warehouse: {todo} ({first[:300]})")
                if missing[node.unique_id]:
                    self._fail(run, pl, missing[node.unique_id])
                    break

    def _check_target_tables(self, run: RunState) -> None:
        """A KPI whose target table (`target: {table: ...}`) cannot be read fails alone and keeps its rows, as one
        whose model cannot be read does; the others publish (their targets are computed while publishing)."""
        for name in self.selected:
            pl = self.plan.kpis[name]
            probe = table_probe(pl.kpi, self.project) if run.results[name].status != "error" else None
            if probe is None:
                continue
            try:
                self.fetch(probe)
            except Exception as exc:  # noqa: BLE001 - the warehouse says why
                first = first_line(exc)
                self._fail(run, pl, f"its target table {pl.kpi.target.table} cannot be read: {first}")

    # --- freshness -----------------------------------------------------------

    def _check_freshness(self, run: RunState) -> None:
        checked: dict[tuple[str, str], Any] = {}
        for name in self.selected:
            pl = self.plan.kpis[name]
            if pl.relation is None:
                continue
            rule = None
            for s_name, t_name in pl.relation.source_tables:
                found = self.project.source_table(s_name, t_name)
                if found and (found[1].freshness or found[0].freshness):
                    rule = found[1].freshness or found[0].freshness
            if rule is None:
                continue
            key = (pl.relation.key, pl.time_sql)
            if key not in checked:
                q = sqlgen.cte_query(sqlgen.model_ctes(pl.relation), exp.select(sqlgen.cast(exp.Max(this=pl.time.copy()), "TIMESTAMP")).from_(pl.relation.table.copy()))
                try:
                    checked[key] = self.fetch(q)[0][0]
                except Exception as exc:  # noqa: BLE001
                    self._fail(run, pl, exc)
                    continue
            newest = checked[key]
            now = dt.datetime.combine(run.as_of, dt.time()) + dt.timedelta(days=1)
            if newest is None:
                continue
            if isinstance(newest, dt.date) and not isinstance(newest, dt.datetime):
                newest = dt.datetime.combine(newest, dt.time())
            age = now - newest.replace(tzinfo=None)
            error_after, warn_after = units.parse_duration(rule.error_after), units.parse_duration(rule.warn_after)
            if error_after is not None and age > error_after:
                self._fail(run, pl, f"source is stale: newest {pl.kpi.time} is {newest} ({age.days} days old), past error_after {rule.error_after}")
            elif warn_after is not None and age > warn_after:
                run.result.warnings.append(warning("KPI090", f"{name}: source is stale: newest {pl.kpi.time} is {newest}, past warn_after {rule.warn_after}"))

    # --- publishing ------------------------------------------------------------

    def _publish(self, run: RunState, kept: KeptPreAggregates | None, ok: list[str]) -> None:
        now = self._now()
        self.publisher.publish(run, lambda: self._writes(run, ok, now), kept)
        counts = self.fetch(
            exp.select(col("name"), exp.Count(this=exp.Star())).from_(run.stage).group_by(col("name"))
        )
        for name, n in counts:
            if name in run.results:
                run.results[name].rows = int(n)

    def _writes(self, run: RunState, ok: list[str], now: dt.datetime) -> list[TableWrite]:
        """What publishing does to every output table, in this order: targets read the new values; status
        reads the new values, targets and catalog. The same on every engine; only how it is applied differs
        (publish.py). Made once publishing has begun: inside the transaction where there is one."""
        replaced = self._replaced(run, ok)
        judged = {n: self._judgement_hash(n) for n in ok}
        kept = self._kept(run, ok, judged)
        writes = [
            TableWrite(tables.VALUES, self._replaced_values(run, ok) if ok else exp.false(),
                       [self._values_query(run, ok, now)] if ok else [], []),
            TableWrite(tables.SLICE_MEMBERS, replaced, [], self._slice_member_rows(run, ok)),
            TableWrite(tables.CATALOG, replaced, [], self._catalog_rows(ok, now, judged)),
            self._definitions_write(run, ok, now),
            TableWrite(tables.CHECK_INS, replaced, [], self._check_in_rows(ok)),
            self._judged_write(tables.TARGETS, run, replaced, kept, self._targets_queries(ok, kept)),
            self._judged_write(tables.STATUS, run, replaced, kept,
                               [status_query(ok, run.schema, run.as_of, kept)] if ok else []),
            TableWrite(tables.FORECAST, replaced, self._forecast_queries(run, ok), []),  # reads the new status
            TableWrite(tables.STRATEGY, exp.true(), [], self._strategy_rows()),
        ]
        if not run.whole_project:
            return writes
        removed = self._removed_kpis()  # a KPI removed from the project leaves every table
        run.result.removed = self._removed_names(removed)
        # where every KPI succeeded, the drops of kpi_values, kpi_targets and kpi_status are `NOT <a kept period>` (or
        # TRUE): a removed KPI has no range, so its rows go already; an OR beside the EXISTS would be a subquery per
        # row on PostgreSQL
        dropping = {tables.VALUES.name, tables.TARGETS.name, tables.STATUS.name} if replaced == exp.true() else set()
        return [replace(w, dropped=removed if w.dropped == exp.false() else exp.or_(exp.Paren(this=w.dropped), exp.Paren(this=removed)))
                if w.table in tables.PER_KPI and w.dropped != exp.true() and w.table.name not in dropping else w
                for w in writes]

    def _replaced(self, run: RunState, ok: list[str]) -> exp.Expression:
        """The rows of a per-KPI table that the run rewrites: its KPIs that succeeded. Every row when the run is of
        the whole project and every KPI succeeded (a KPI removed from the project leaves too), said as TRUE so that
        no engine reads the published rows for ones to keep (Spark's new version of each table would read the
        previous one for none: `name IN (...) OR NOT name IN (...)` is not folded, `name` being nullable)."""
        if not ok:
            return exp.false()
        if run.whole_project and set(ok) == {k.name for k in self.project.kpis}:
            return exp.true()
        return _name_in(ok)

    def _replaced_values(self, run: RunState, ok: list[str]) -> exp.Expression:
        """The kpi_values rows a run replaces: a succeeded KPI keeps only its rows before the range of a grain it still has.
        Where the run recomputes every period of each of them (a first run, --full-refresh), that is all their rows
        (_replaced), with no search for rows to keep."""
        replaced = self._replaced(run, ok)
        if all(run.since[(n, g)] is None for n in ok for g in self.plan.kpis[n].grains):
            return replaced
        recomputed = _recomputed(run, self.t("kpi_values").this, ok)
        return recomputed if replaced == exp.true() else exp.and_(_name_in(ok), recomputed)

    def _kept(self, run: RunState, ok: list[str], judged: dict[str, str]) -> KeptPeriods | None:
        """What an incremental run keeps of kpi_targets and kpi_status: the rows of the KPIs _kept_statuses names
        before each one's range. It writes those of the periods it recomputes alone, so that what an incremental
        run writes grows with the new periods, not with the KPI's history."""
        names = self._kept_statuses(run, ok, judged) if ok else []
        if not names:
            return None
        earliest = min(run.since[(n, g)] for n in names for g in self.plan.kpis[n].grains)
        return KeptPeriods(tuple(names), run.run_id, earliest)

    def _judged_write(self, table: tables.Table, run: RunState, replaced: exp.Expression, kept: KeptPeriods | None,
                      queries: list[exp.Select]) -> TableWrite:
        """kpi_targets or kpi_status of the KPIs that succeeded, but the rows `kept` keeps (before their ranges)."""
        if kept is None:
            return TableWrite(table, replaced, queries, [])
        recomputed = _recomputed(run, self.t(table.name).this, list(kept.names), list(kept.names))
        return TableWrite(table, recomputed if replaced == exp.true() else exp.and_(replaced, recomputed), queries, [])

    def _kept_statuses(self, run: RunState, ok: list[str], judged: dict[str, str]) -> list[str]:
        """The KPIs whose published statuses of the periods before the run's range stay as they are. Such a status
        reads its period's value and the previous period's (kept: before the range), its target and threshold, the
        KPI's owner, strategy and priority, and as_of: it stands where no target of the KPI reads what the run
        recomputes (targets.keeps_statuses), its judgement_hash is the one kpi_catalog holds (nothing else it reads
        changed), and no kept status says another is_complete than this run's as_of gives (as_of moved past its
        period's end)."""
        grains = {n: self.plan.kpis[n].grains for n in ok}
        default = self.project.config.defaults.grain
        candidates = [n for n in ok if all(run.since[(n, g)] is not None for g in grains[n])
                      and keeps_statuses(self.plan.kpis[n].kpi, {g: run.since[(n, g)] for g in grains[n]}, default)]
        if not candidates:
            return []
        same = exp.select(col("name"), sqlgen.alias(lit("same"), "found")).from_(self.t(tables.CATALOG.name)).where(
            exp.and_(_name_in(candidates), exp.EQ(this=col("status_hash"), expression=exp.Case(
                this=col("name"), ifs=[exp.If(this=lit(n), true=lit(judged[n])) for n in candidates]))))
        complete = exp.LTE(this=col("period_end"), expression=lit(run.as_of))
        moved = exp.select(col("name"), sqlgen.alias(lit("moved"), "found")).distinct().from_(
            self.t(tables.STATUS.name)).where(exp.and_(
                _name_in(candidates), exp.NullSafeNEQ(this=col("is_complete"), expression=exp.Paren(this=complete)),
                _before_range(run, self.t(tables.STATUS.name).this)))
        found = self.fetch(exp.union(same, moved, distinct=False))
        return sorted({str(n) for n, f in found if f == "same"} - {str(n) for n, f in found if f == "moved"})

    def _judgement_hash(self, name: str) -> str:
        kpi = self.plan.kpis[name].kpi
        ref = self.project.strategies.get(kpi.strategy or "")
        return judgement_hash(kpi, ref.priority.name if ref else None, self.project)

    def _removed_kpis(self) -> exp.Expression:
        """The rows of KPIs that are no longer in the project."""
        keep = [lit(k.name) for k in self.project.kpis]
        return exp.Not(this=exp.In(this=col("name"), expressions=keep)) if keep else exp.true()

    def _removed_names(self, removed: exp.Expression) -> list[str]:
        """The KPIs whose rows `removed` selects, as the published tables hold them: named in the run's summary,
        run_results.json and kpi_runs, so that no KPI's history goes without a word."""
        found = exp.union(*[exp.select(col("name")).from_(self.t(t.name)).where(removed.copy())
                            for t in (tables.CATALOG, tables.VALUES)], distinct=True)
        return sorted(str(r[0]) for r in self.fetch(found))

    def _values_query(self, run: RunState, ok: list[str], now: dt.datetime) -> exp.Select:
        """The staged rows of the KPIs that succeeded, as kpi_values rows."""
        hashes = exp.Case(
            this=col("name"),
            ifs=[exp.If(this=lit(n), true=lit(self.plan.kpis[n].definition_hash)) for n in ok],
        )
        return exp.select(
            *[col(c) for c in tables.VALUE_COLUMNS],
            sqlgen.alias(hashes, "definition_hash"),
            sqlgen.alias(exp.Literal.number(run.run_id), "run_id"),
            sqlgen.alias(lit(now), "computed_at"),
        ).from_(run.stage).where(_name_in(ok))

    def _slice_member_rows(self, run: RunState, ok: list[str]) -> list[list[Any]]:
        """kpi_slice_members of the KPIs that succeeded: each combination slice their new kpi_values rows have (the
        published rows the run keeps, and the staged ones), its members decoded from its text (combinations.py).
        Slice keys, not fact rows: a KPI has as many as its combinations have values. Read before any write."""
        combos = sorted({d for pl in self.plan.kpis.values() for d in pl.dimensions if combinations.is_combination(d)})
        if not ok or not combos:
            return []
        key = [col("name"), col("dimension"), col("dimension_value")]

        def keys(table: exp.Table, where: exp.Expression) -> exp.Select:
            of = exp.In(this=col("dimension"), expressions=[lit(d) for d in combos])
            return exp.select(*[k.copy() for k in key]).distinct().from_(table).where(exp.and_(where, of))

        kept = keys(self.t("kpi_values"), exp.and_(_name_in(ok), exp.Not(this=exp.Paren(this=self._replaced_values(run, ok)))))
        found = self.fetch(exp.union(kept, keys(run.stage.copy(), _name_in(ok)), distinct=True))
        return [[n, d, v, c, m] for n, d, v in sorted(found)
                for c, m in zip(combinations.columns(d), combinations.members(v))]

    def _catalog_rows(self, ok: list[str], now: dt.datetime, judged: dict[str, str]) -> list[list[Any]]:
        strategies = self.project.strategies
        rows = []
        for n in ok:
            pl = self.plan.kpis[n]
            k = pl.kpi
            ref = strategies.get(k.strategy or "")
            rows.append([
                k.name, k.kind, k.label or k.name, k.description, k.owner, k.strategy,
                ref.priority.name if ref else None, k.indicator, k.category, k.unit, k.direction,
                json.dumps(list(k.declared_grains or pl.grains[:1])), pl.definition_hash, json.dumps(list(k.tags)),
                json.dumps(list(k.drives)), k.actions_text, pl.form,
                json.dumps(list(pl.window)) if pl.window else None, now, k.metric, judged[n],
            ])
        return rows

    def _definitions_write(self, run: RunState, ok: list[str], now: dt.datetime) -> TableWrite:
        """kpi_definitions: a hash seen before gets this run as its last_seen_at, a new one a row of its own."""
        if not ok:
            return TableWrite(tables.DEFINITIONS, exp.false(), [], [])
        hashes = {n: self.plan.kpis[n].definition_hash for n in ok}
        current = exp.EQ(this=col("definition_hash"), expression=exp.Case(
            this=col("name"), ifs=[exp.If(this=lit(n), true=lit(h)) for n, h in hashes.items()]))
        seen = self.fetch(exp.select(col("name"), col("definition_hash"), col("first_run_id"), col("first_seen_at"))
                          .from_(self.t(tables.DEFINITIONS.name)).where(exp.and_(_name_in(ok), current)))
        first = {r[0]: (r[2], r[3]) for r in seen}
        rows = [[n, h, *first.get(n, (run.run_id, now)), now] for n, h in hashes.items()]
        return TableWrite(tables.DEFINITIONS, exp.and_(_name_in(ok), current.copy()), [], rows)

    def _check_in_rows(self, ok: list[str]) -> list[list[Any]]:
        return [[n, c.date, c.author, c.note] for n in ok for c in self.plan.kpis[n].kpi.check_ins]

    def _strategy_rows(self) -> list[list[Any]]:
        p = self.project
        rows: list[list[Any]] = []
        if p.mission:
            rows.append([p.mission, "mission", None, None, None, None, None])
        for pr in p.priorities:
            rows.append([pr.name, "priority", p.mission, pr.owner, pr.description, None, None])
            for s in pr.strategies:
                rows.append([s.name, "strategy", pr.name, s.owner, s.description, s.starts, s.ends])
        return rows

    def _targets_queries(self, ok: list[str], kept: KeptPeriods | None) -> list[exp.Select]:
        """kpi_targets' rows: the targets that are expressions of the period for every KPI at once (of the kept
        KPIs, those of the periods the run recomputes), then each KPI's relative and table targets (targets.py)."""
        pairs = [(self.plan.kpis[n].kpi, g) for n in ok for g in self.plan.kpis[n].grains]
        queries = plain_targets_queries(pairs, self.cal, self.schema, self.project.config.defaults.grain, kept)
        for kpi, grain in pairs:
            q = targets_query(kpi, grain, self.cal, self.schema, self.project, plain=False, kept=kept)
            if q is not None:
                queries.append(q)
        return queries

    def _forecast_queries(self, run: RunState, ok: list[str]) -> list[exp.Select]:
        return forecast_queries([(self.plan.kpis[n].kpi, list(self.plan.kpis[n].grains)) for n in ok], self.schema,
                                run.as_of, self.project)

    def _baseline_warnings(self, ok: list[str]) -> list[Issue]:
        ranges = {(n, g): r for n in ok for g in self.plan.kpis[n].grains
                  if (r := baseline_range(self.plan.kpis[n].kpi, g)) is not None}
        if not ranges:
            return []
        found = {tuple(row) for row in self.fetch(with_baseline_query(list(ranges.values()), self.schema))}
        return [warning("KPI091", f"{n}: no {g} period lies within the baseline range, so it has no target at that grain",
                        self.plan.kpis[n].kpi.key_loc("target"))
                for n, g in ranges if (n, g) not in found]
