"""Pre-aggregates kept between runs, so an incremental run reads the rows of the periods it recomputes only.

A scan with more than one additive aggregation rolls them all up from one pre-aggregate of its rows at the
base grain with every slice (`__pp`, see sqlgen). Where publishing is one transaction (DuckDB, PostgreSQL;
publish.py) the run computes that pre-aggregate as a statement of its own into a staging table, and
publishing keeps it in `kpi_partials_<key>`, in the same transaction as the values. The next incremental
run then computes the pre-aggregate only from the first period any of the scan's KPIs recomputes, and takes
the earlier periods a trailing or to-date window needs from the kept rows instead of reading their rows again.

The kept rows are used only when they are exactly what a full read would give for those periods:
- the key names everything that shapes them: kpimetrics' code, the relation, the time column, the calendar,
  and each KPI, grain and definition_hash of the scan (another selection of KPIs keeps its own);
- the run that kept them is the last one that published any of the scan's KPIs (each kept row carries the
  run that wrote it in `__run`; a run that published them without keeping, a `-s` run of some of them, or
  a KPI retried alone after the scan failed, makes them stale);
- they reach back to the first period the windows need.
Otherwise the run reads the rows as before and keeps what it computed. Periods before the recompute range
are final by the project's `lookback`, for the kept pre-aggregate as for the published values. Spark has no
transaction over several tables, so it reads the rows each time.

`lookback` says which periods' values a run replaces; every row of those periods is read again, since any of
them may have changed. A project that knows how late its rows land says so in `defaults.late_rows` (a
duration): a row older than that, counted back from the newest day the kept pre-aggregate holds, is final. The
pre-aggregate is then by day, kept for a scan with even one additive aggregation, and computed again only
from that day: a month-grain KPI over append-only data reads the new days, not its whole month.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import TYPE_CHECKING, Callable

from sqlglot import exp

from . import calendar as cal_
from . import sqlgen
from . import units
from .planner import KpiPlan, Scan
from .sqlgen import KeptPreAggregate, ScanKpi, col, lit

if TYPE_CHECKING:
    from .config import Calendar
    from .publish import Warehouse
    from .runner import RunState

PREFIX = "kpi_partials_"
RUN = "__run"  # the column of a kept row that names the run that wrote it


def key(scan: Scan, items: list[tuple[KpiPlan, str]], cal, by_day: bool = False) -> str:
    from .compiler import generator_fingerprint

    relation = items[0][0].relation
    parts = [generator_fingerprint(), scan.relation_key, relation.sql_for_hash, scan.time_sql,
             cal.model_dump(mode="json"), sorted([p.name, g, p.definition_hash] for p, g in items)]
    if by_day:  # cut by day rather than by the scan's base grain (late_rows' value does not change the rows)
        parts.append("by_day")
    return PREFIX + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class KeptPreAggregates:
    """The pre-aggregates of one run: which kept ones a scan may read, and keeping this run's when it publishes."""

    def __init__(self, run: RunState, wh: Warehouse, cal: Calendar, late_rows: str | None, masks: bool = False):
        self.run, self.wh, self.cal, self.late_rows = run, wh, cal, late_rows
        self.masks = masks  # count(DISTINCT x) from bit masks (dialects.DISTINCT_MASKS)
        self.existing = {name for name, _ in run.relations if name.startswith(PREFIX)}  # listed as the run began
        self.kept: list[tuple[str, KeptPreAggregate]] = []
        self.names: set[str] = set()

    def stage_scan(self, scan: Scan, items: list[tuple[KpiPlan, str]], insert: Callable[[exp.Query], None]) -> None:
        """Stage one scan: its pre-aggregate into a staging table of its own first (when it has one), then its
        values through `insert`; publishing keeps the pre-aggregate when both succeeded."""
        if items[0][0].relation.shifted:  # its newest day is past the data's: new rows would pass for settled
            insert(sqlgen.scan_query(items, self.cal, self.run.since, masks=self.masks))
            return
        wh, late_rows = self.wh, self.late_rows
        by_day = late_rows is not None
        name = key(scan, items, self.cal, by_day=by_day)
        self.names.add(name)
        staged = wh.t(f"kpi_stage_pp_{self.run.run_id}_{len(self.names)}")
        newest = self._newest_kept_day(name, items)
        pre = KeptPreAggregate(staged, wh.t(name) if newest is not None else None, by_day=by_day)
        if newest is not None and by_day:
            # rows may still land on the days from the newest one's midnight less late_rows (rounded down to a day)
            settled = cal_.py_before(dt.datetime.combine(newest, dt.time()), units.parse_duration(late_rows))
            pre.settled_before = settled.date()
        # sets pre.query when the scan has one
        query = sqlgen.scan_query(items, self.cal, self.run.since, pre=pre, masks=self.masks)
        if pre.query is not None:
            wh.run_sql(exp.Create(this=pre.staged.copy(), kind="TABLE", expression=pre.query))
        insert(query)
        if pre.query is not None:
            self.kept.append((name, pre))

    def _newest_kept_day(self, name: str, items: list[tuple[KpiPlan, str]]) -> dt.date | None:
        """The last period of the kept pre-aggregate `name` when this run may read it, else None."""
        wh = self.wh
        need = sqlgen.scan_from([ScanKpi(p, g, self.run.since[(p.name, g)]) for p, g in items], self.cal)
        if need is None or name not in self.existing:
            return None
        names = [lit(n) for n in dict.fromkeys(p.name for p, _ in items)]
        last = wh.fetch(exp.select(exp.Max(this=col("run_id"))).from_(wh.t("kpi_values")).where(
            exp.In(this=col("name"), expressions=names)))
        kept = wh.fetch(exp.select(exp.Max(this=col(RUN)), exp.Min(this=col("__p")), exp.Max(this=col("__p")))
                        .from_(wh.t(name)))
        if not last or not kept or last[0][0] is None or kept[0][0] is None:
            return None
        usable = int(kept[0][0]) == int(last[0][0]) and kept[0][1] <= need
        return kept[0][2] if usable else None

    def publish(self) -> None:
        """Inside the publishing transaction: keep this run's pre-aggregates, and on a whole-project run drop
        those no scan of the project has any more."""
        wh = self.wh
        for name, pre in self.kept:
            table = wh.t(name)
            rows = exp.select(exp.Star(), sqlgen.alias(exp.Literal.number(self.run.run_id), RUN)).from_(pre.staged.copy())
            if pre.fresh_from is None:
                wh.run_sql(exp.Drop(tables=[table.copy()], kind="TABLE", exists=True))
                wh.run_sql(exp.Create(this=table, kind="TABLE", expression=rows))
            else:
                wh.run_sql(exp.delete(table.copy(), where=exp.GTE(this=col("__p"), expression=lit(pre.fresh_from))))
                wh.run_sql(exp.insert(rows, table))
        if self.run.whole_project:
            for name in sorted(self.existing - self.names):
                wh.run_sql(exp.Drop(tables=[wh.t(name)], kind="TABLE", exists=True))
