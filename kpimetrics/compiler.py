"""Compile: the plan rendered as SQL files and a manifest in target/.

`target/compiled/<dialect>/<kpi>.sql` is a self-contained query returning the
rows `run` writes to kpi_values for that KPI (users paste it into BI tools);
`target/run.sql` is every scan and derived query in execution order;
`target/manifest.json` describes every KPI. Output is byte-for-byte deterministic.
"""
from __future__ import annotations

import functools
import gc
import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlglot import exp

from . import collector, sqlgen
from . import model as m
from .dialects import DISTINCT_MASKS, PARTS_RENDER_ALONE
from .planner import KpiPlan, Plan
from .shapes import RowTexts, Shapes

MANIFEST_SCHEMA_VERSION = 1


def kpi_parts(plan: Plan, name: str) -> tuple[list[tuple[str, exp.Query]], list[exp.Query]]:
    """CTEs and UNION ALL branches that compute one KPI at all its grains, self-contained. A derived KPI's
    inputs (and theirs) are computed as `run` computes them: one scan per model and time column, then each
    derived input in dependency order over the values before it."""
    pl = plan.kpis[name]
    cal = plan.project.config.calendar
    ctes: list[tuple[str, exp.Query]] = []
    if pl.scanned:
        q = sqlgen.scan_query([(pl, grain) for grain in pl.grains], cal, prefix=name)
        c, body = sqlgen.split_ctes(q)
        return c, [body]
    closure = plan.closure(name)[:-1]  # its inputs, in dependency order
    scans = plan.scans([n for n in closure if plan.kpis[n].scanned])
    bodies: list[exp.Query] = []
    for i, scan in enumerate(scans):
        prefix = name if len(scans) == 1 else f"{name}__s{i}"
        c, body = sqlgen.split_ctes(sqlgen.scan_query(scan.items, cal, prefix=prefix))
        ctes.extend(c)
        bodies.append(body)
    values = f"{name}__inputs"
    ctes.append((values, sqlgen.union_all(bodies)))
    for i, inner in enumerate(n for n in closure if not plan.kpis[n].scanned):
        ipl, more = plan.kpis[inner], f"{name}__inputs{i + 1}"
        source = exp.Table(this=sqlgen.ident(values))
        rows = [sqlgen.derived_query(ipl, g, source, derived_dimensions(plan, inner)) for g in ipl.grains]
        ctes.append((more, sqlgen.union_all([sqlgen.select_all(source)] + rows)))
        values = more
    dims = derived_dimensions(plan, name)
    source = exp.Table(this=sqlgen.ident(values))
    return ctes, [sqlgen.derived_query(pl, grain, source, dims) for grain in pl.grains]


def derived_dimensions(plan: Plan, name: str) -> tuple[str, ...]:
    """A derived KPI is sliced only by the dimensions all its inputs have."""
    pl = plan.kpis[name]
    if pl.scanned:
        return pl.dimensions
    common: list[str] | None = None
    for i in pl.input_names:
        d = derived_dimensions(plan, i)
        common = list(d) if common is None else [x for x in common if x in d]
    return tuple(common or ())


def kpi_query(plan: Plan, name: str) -> exp.Query:
    ctes, bodies = kpi_parts(plan, name)
    return sqlgen.cte_query(ctes, sqlgen.union_select(bodies))


def render(query: exp.Expression, dialect: str, pretty: bool = True) -> str:
    """Render a tree built for this purpose; the tree is used up (not copied first)."""
    from .dialects import generate

    return generate(query, dialect, pretty=pretty, copy=False)


def header(plan: Plan, pl: KpiPlan, dialect: str) -> str:
    tz = plan.project.config.calendar.timezone
    lines = [
        f"-- kpimetrics: {pl.kpi.kind} {pl.name} ({pl.form}), grains: {', '.join(pl.grains)}",
        f"-- definition_hash: {pl.definition_hash}",
        "-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.",
    ]
    if dialect in ("duckdb", "postgres", "spark"):
        lines.append(f"-- TIMESTAMPTZ values are cut into periods in time zone {tz}: run with the session time zone set to it.")
    return "\n".join(lines) + "\n"


@dataclass
class CompileResult:
    dialect: str
    files: list[Path] = field(default_factory=list)
    manifest_path: Path | None = None
    selected: list[str] = field(default_factory=list)


def run_pieces(plan: Plan, names: list[str], dialect: str) -> list[Callable[[], str]]:
    """`target/run.sql` in pieces that render independently, in order: its head (creating the staging table),
    each fused scan, then the derived KPIs. Every scan first, then every derived KPI, over one staging table."""
    from . import tables

    stage = tables.qualified(None, "kpi_stage")
    cal = plan.project.config.calendar

    def head() -> str:
        return "\n\n".join([
            f"-- kpimetrics run script for {plan.project.config.name} ({dialect}); a full refresh of {len(names)} KPI(s).",
            "-- One scan per model and time column, for all grains; derived KPIs read the staged values.",
            render(tables.staging("kpi_stage").ddl(None), dialect) + ";",
        ])

    def scan_piece(scan) -> Callable[[], str]:
        def piece() -> str:
            with collector.paused():  # the tree stays unnamed, so it is garbage when the pause ends
                rows = RowTexts(dialect) if dialect in PARTS_RENDER_ALONE else None
                masks = dialect in DISTINCT_MASKS
                text = render(sqlgen.insert_rows(stage, sqlgen.scan_query(scan.items, cal, rows=rows, masks=masks)),
                              dialect)
            return (f"-- scan: {scan.relation_key} at {', '.join(scan.grains)}: {', '.join(p.name for p in scan.plans)}\n"
                    + text + ";")
        return piece

    def inserts(p: Plan, name: str) -> str:
        pl = p.kpis[name]
        return "\n\n".join(
            f"-- derived: {name} at {grain}\n"
            + render(sqlgen.insert_rows(stage, sqlgen.derived_query(pl, grain, stage, derived_dimensions(p, name))), dialect) + ";"
            for grain in pl.grains)

    def derived() -> str:
        shapes = Shapes(plan, dialect, inserts)  # derived KPIs of one shape differ only in names: one rendering
        return "\n\n".join(shapes.text(name) for name in names if not plan.kpis[name].scanned)

    pieces = [head, *[scan_piece(scan) for scan in plan.scans(names)]]
    if any(not plan.kpis[n].scanned for n in names):
        pieces.append(derived)
    return pieces


def join_run_script(texts: list[str]) -> str:
    return "\n\n".join(texts) + "\n"


_FORM_KEYS = tuple(f.key for f in m.FORMS)


def _form_entries(form: m.Form) -> dict[str, object]:
    """The manifest's entry for each form's key: the KPI's form as written under its own key, None under the others."""
    entries: dict[str, object] = dict.fromkeys(_FORM_KEYS)
    entries[form.key] = form.written()
    return entries


def _metric_entry(pl: KpiPlan, project) -> dict | None:
    """What a metric KPI reads from dbt's semantic layer (dbt/describe.py): None for the other KPIs."""
    if pl.semantic is None:
        return None
    from .dbt.describe import metric_entry
    from .dbt.semantic import semantic_layer

    return metric_entry(pl.semantic.metric, semantic_layer(project)[0])


def manifest(plan: Plan, names: list[str], dialect: str, paths: dict[str, str]) -> dict:
    from . import __version__

    project = plan.project
    strategies = project.strategies
    kpis = {}
    for name in names:
        pl = plan.kpis[name]
        k = pl.kpi
        ref = strategies.get(k.strategy or "")
        kpis[name] = {
            "kind": k.kind,
            "form": pl.form,
            "label": k.label or k.name,
            "description": k.description,
            "owner": k.owner,
            "strategy": k.strategy,
            "priority": ref.priority.name if ref else None,
            "strategy_path": [x for x in (project.mission, ref.priority.name if ref else None, k.strategy) if x],
            "indicator": k.indicator,
            "category": k.category,
            "unit": k.unit,
            "currency": project.currency_of(k),  # shown after every value of a currency KPI (display.format_value)
            "direction": k.direction,
            "grains": list(pl.grains),
            "declared_grains": list(k.declared_grains),
            "model": k.model,
            "time": k.time,
            **_form_entries(pl.computation),
            "metric": _metric_entry(pl, project),  # a metric KPI's metric; its form keys above are what it resolves to
            "filter": k.filter,
            "dimensions": list(pl.dimensions),
            "window": k.window.model_dump(mode="json", exclude_none=True) if k.window else None,
            "fill": k.fill,
            "target": jsonable(k.target),
            "tolerance": k.tolerance,
            "at_risk_below": k.at_risk_below,
            "at_risk_above": k.at_risk_above,
            "slice_targets": jsonable(k.slice_targets),
            "actions": k.actions_text,
            "drives": list(k.drives),
            "tags": list(k.tags),
            "review_by": k.review_by.isoformat() if k.review_by else None,
            "check_ins": [c.model_dump(mode="json") for c in k.check_ins],
            "definition_hash": pl.definition_hash,
            "depends_on": {
                "kpis": pl.input_names,
                "sources": [".".join(s) for s in (pl.relation.source_tables if pl.relation else [])],
                "models": [n.removeprefix("__model_") for n, _ in (pl.relation.ctes if pl.relation else [])],
            },
            "compiled_sql": {dialect: paths.get(name)},
            "location": str(k.loc) if k.loc else None,
        }
    return {
        "manifest_schema_version": MANIFEST_SCHEMA_VERSION,
        "kpimetrics_version": __version__,
        "project": project.config.name,
        "dialect": dialect,
        "calendar": project.config.calendar.model_dump(mode="json"),
        "mission": project.mission,
        "priorities": [
            {
                # label: what a reader is shown, the `label` else the name (SPEC §10), as a KPI's label
                "name": p.name, "label": p.label or p.name, "description": p.description, "owner": p.owner,
                "strategies": [s.model_dump(mode="json") | {"label": s.label or s.name} for s in p.strategies],
            }
            for p in project.priorities
        ],
        "kpis": kpis,
    }


def jsonable(value):
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


STATE_FILE = "compile_state.json"


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """Changes whenever the code that writes SQL may have: kpimetrics' sources and sqlglot's version."""
    import hashlib

    import sqlglot

    from . import __version__

    digest = hashlib.sha256(f"{__version__}:{sqlglot.__version__}".encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _previous_state(path: Path, generator: str, dialect: str) -> dict:
    """What the last compile wrote, if it was written by this generator for this dialect (else nothing)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict) or state.get("generator") != generator or state.get("dialect") != dialect:
        return {}
    return state


def _fork_safe() -> bool:
    """Whether a forked copy of this process can render beside it: a POSIX system, and no other thread here
    (a warehouse connection's or a JVM's could hold a lock the copy needs)."""
    return hasattr(os, "fork") and threading.active_count() == 1


def _beside(work: Callable[[], None]) -> Callable[[], bool]:
    """Start `work()` in a forked copy of this process, on the other core, and return a function that waits for
    it and says whether it succeeded. Rendering is pure Python under the GIL, so a thread would not help."""
    pid = os.fork()
    if pid == 0:  # the copy: do the work, leave without running the parent's exit handlers
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return lambda: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


class _Queue:
    """The indexes 0..n-1, each handed out once: from the front to a forked copy of this process, from the back
    to this process (which then takes the cheap jobs, queued last, and the copy the large ones)."""

    def __init__(self, n: int, shared: bool):
        if shared:
            import multiprocessing

            self._ends = multiprocessing.Array("l", [0, n])  # in shared memory, with its lock
        else:
            self._ends = None
            self._local = [0, n]

    def take(self, front: bool = True) -> int | None:
        if self._ends is None:
            return self._take(self._local, front)
        with self._ends.get_lock():
            return self._take(self._ends, front)

    @staticmethod
    def _take(ends, front: bool) -> int | None:
        lo, hi = ends[0], ends[1]
        if lo >= hi:
            return None
        if front:
            ends[0] = lo + 1
            return lo
        ends[1] = hi - 1
        return hi - 1


def write_target(plan: Plan, names: list[str], dialect: str, whole_project: bool = True,
                 parallel: bool = False) -> CompileResult:
    """Write target/ for `names`. Like dbt's partial parsing, a file is rendered again only when what it
    depends on changed: a per-KPI file when its definition_hash or kind did, run.sql when any KPI did,
    and every file when the generator (kpimetrics' code, sqlglot) or the dialect differs from the one
    recorded in target/compile_state.json. With parallel=True (the `compile` command), a forked copy of the
    process renders beside this one where that is safe. The jobs are run.sql's pieces (largest first) and
    then the per-KPI files; the copy takes them from the front, this process from the back."""
    import hashlib

    root = plan.project.paths.target
    folder = root / "compiled" / dialect
    folder.mkdir(parents=True, exist_ok=True)
    generator = generator_fingerprint()
    previous = _previous_state(root / STATE_FILE, generator, dialect)
    before: dict[str, str] = previous.get("kpis", {})
    keys = {name: f"{plan.kpis[name].definition_hash}:{plan.kpis[name].kpi.kind}" for name in names}
    if whole_project:  # files of KPIs no longer in the project go
        for stale in folder.glob("*.sql"):
            if stale.stem not in keys:
                stale.unlink()
    result = CompileResult(dialect, selected=list(names))
    paths = {name: folder / f"{name}.sql" for name in names}
    result.files = list(paths.values())
    stale_kpis = [n for n in names if before.get(n) != keys[n] or not paths[n].exists()]
    run_key = hashlib.sha256(json.dumps([plan.project.config.name, [[n, keys[n]] for n in names]]).encode()).hexdigest()
    run_sql = root / "run.sql"
    pieces = run_pieces(plan, names, dialect) if previous.get("run_sql") != run_key or not run_sql.exists() else []
    piece_texts: dict[int, str] = {}
    parts = root / "run.sql.parts"  # where the copy leaves the pieces it rendered
    shapes = Shapes(plan, dialect, lambda p, n: render(kpi_query(p, n), dialect))

    manifest_path = root / "manifest.json"

    def write_manifest() -> None:
        doc = manifest(plan, names, dialect, {n: str("target" / p.relative_to(root)) for n, p in paths.items()})
        # compact, as dbt writes its manifest: with an indent, json falls back from its C encoder to Python's
        # (1.2 s for 10,000 KPIs)
        _write(manifest_path, plan.project.secrets.scrub(json.dumps(doc, sort_keys=True, default=str)) + "\n")

    def job(i: int, in_copy: bool = False) -> None:
        if i == n_jobs - 1:  # last in the queue: this process takes it first, while the copy renders a scan
            write_manifest()
            return
        if i < len(pieces):
            text = plan.project.secrets.scrub(pieces[i]())  # scrubbed before it touches target/
            if in_copy:
                _write(parts / f"{i}.sql", text)
            else:
                piece_texts[i] = text
            return
        name = stale_kpis[i - len(pieces)]
        _write(paths[name], plan.project.secrets.scrub(header(plan, plan.kpis[name], dialect) + shapes.text(name) + ";\n"))

    n_jobs = len(pieces) + len(stale_kpis) + 1
    forked = parallel and _fork_safe() and n_jobs > 2  # two files to render at least, besides the manifest
    queue = _Queue(n_jobs, shared=forked)

    def copy_work() -> None:
        # the copy ends with os._exit: its garbage is the operating system's to free, and collecting the cycles of
        # a fused scan's tree cost about 1 s per scan at 10,000 KPIs
        gc.disable()
        parts.mkdir(exist_ok=True)
        while (i := queue.take(front=True)) is not None:
            job(i, in_copy=True)

    # what lives on (the project, the plan) is kept out of the collector's passes while trees are built and
    # dropped, and the copy then shares those pages with this process (10,000 KPIs: 17.0 s -> 14.2 s)
    gc.freeze()
    try:
        mine: set[int] = set()
        wait = _beside(copy_work) if forked else None
        try:
            while (i := queue.take(front=not forked)) is not None:
                job(i)
                mine.add(i)
        except BaseException:  # Ctrl-C reaches the copy too; a failure here waits for it to end, not orphan it
            if wait is not None:
                wait()
            raise
        if wait is not None and not wait():  # the copy failed: everything it took is done again here, so its errors show
            for i in sorted(set(range(n_jobs)) - mine):
                job(i)
        if pieces:
            texts = [piece_texts[i] if i in piece_texts else (parts / f"{i}.sql").read_text() for i in range(len(pieces))]
            _write(run_sql, join_run_script(texts))
    finally:
        gc.unfreeze()
        if parts.exists():
            shutil.rmtree(parts, ignore_errors=True)
    state = {"generator": generator, "dialect": dialect, "run_sql": run_key,
             "kpis": (before if not whole_project else {}) | keys}
    result.manifest_path = manifest_path
    _write(root / STATE_FILE, json.dumps(state, sort_keys=True) + "\n")  # last: it vouches for the files above
    return result


def _write(path: Path, text: str) -> None:
    """Write only when the content changes, atomically (a reader never sees half a file)."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
