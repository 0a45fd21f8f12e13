"""`kpimetrics diff --state PATH`: what a change to the project does to its KPIs, for a pull request.

Two manifests are compared (the earlier one in PATH, the current one compiled now):
KPIs added, removed, changed (which fields) and affected (values change only because
a KPI they derive from changed: their own fields are equal, their definition_hash is not).
For every changed or affected KPI whose values can move, its recent values are computed in
the warehouse twice: with the earlier compiled SQL kept in PATH/compiled/<dialect>/, and
with the current definition.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

from . import compiler, sqlgen
from .config import MASK
from .errors import ConfigError, UsageError
from .scorecard import format_value
from .sqlgen import col, lit

# Manifest fields that describe where or how a KPI was written down, not what it is.
NOT_A_CHANGE = {"compiled_sql", "location", "definition_hash", "strategy_path"}
# What SecretRegistry.scrub writes over an env_var() value in target/: SQL holding it cannot be run again.
MASKED_NOTE = ("values before the change not computed: the earlier compiled SQL has env_var() values masked "
               "(target/ never keeps secrets)")


@dataclass(frozen=True)
class ValueRow:
    period_start: str
    old: float | None
    new: float | None

    @property
    def change_pct(self) -> float | None:
        if self.old in (None, 0) or self.new is None:
            return None
        return (self.new - self.old) / abs(self.old)


@dataclass
class KpiDiff:
    name: str
    change: str  # added | removed | changed | affected
    fields: dict[str, dict] = field(default_factory=dict)  # field -> {"old": ..., "new": ...}
    upstream: list[str] = field(default_factory=list)  # affected: the changed KPIs it derives from
    values_change: bool = False  # the definition_hash differs, so values may move
    grain: str | None = None
    unit: str | None = None
    values: list[ValueRow] = field(default_factory=list)
    note: str | None = None  # why some values are missing


@dataclass
class DiffResult:
    state: str
    periods: int
    kpis: list[KpiDiff]

    def of(self, change: str) -> list[KpiDiff]:
        return [k for k in self.kpis if k.change == change]

    def to_dict(self) -> dict:
        return {"state": self.state, "periods": self.periods,
                **{c: [asdict(k) for k in self.of(c)] for c in ("added", "removed", "changed", "affected")}}

    def to_markdown(self) -> str:
        return render_markdown(self)


# --- comparing manifests (pure) ------------------------------------------------------------

def compare(old: dict[str, dict], new: dict[str, dict]) -> list[KpiDiff]:
    """KPI-by-KPI differences between two manifests' `kpis` mappings, in a stable order."""
    out = [KpiDiff(n, "added") for n in new if n not in old]
    out += [KpiDiff(n, "removed") for n in old if n not in new]
    hash_changed = {n for n in new if n in old and new[n].get("definition_hash") != old[n].get("definition_hash")}
    for name in (n for n in new if n in old):
        fields = {f: {"old": old[name].get(f), "new": new[name].get(f)}
                  for f in sorted((set(old[name]) | set(new[name])) - NOT_A_CHANGE)
                  if old[name].get(f) != new[name].get(f)}
        upstream = [i for i in new[name].get("depends_on", {}).get("kpis", []) if i in hash_changed]
        moved = name in hash_changed
        if fields:
            out.append(KpiDiff(name, "changed", fields, upstream, moved))
        elif moved and upstream:
            out.append(KpiDiff(name, "affected", {}, upstream, True))
        elif moved:  # the model's SQL, a var it uses or the calendar changed: nothing the manifest lists
            out.append(KpiDiff(name, "changed", {"definition_hash": {
                "old": old[name].get("definition_hash"), "new": new[name].get("definition_hash")}}, [], True))
    order = {"changed": 0, "affected": 1, "added": 2, "removed": 3}
    return sorted(out, key=lambda k: (order[k.change], k.name))


# --- the earlier target/ -------------------------------------------------------------------

def load_state(path: Path) -> tuple[Path, dict]:
    """The earlier target/ folder and its manifest (PATH may name the folder or its manifest.json)."""
    manifest_path = path / "manifest.json" if path.is_dir() else path
    if not manifest_path.is_file():
        raise UsageError(f"--state {path}: no manifest.json there; pass the target/ folder of an earlier "
                         "`kpimetrics compile` (in CI, the main branch's)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"--state {manifest_path}: not a kpimetrics manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("kpis"), dict):
        raise UsageError(f"--state {manifest_path}: not a kpimetrics manifest (no `kpis` mapping)")
    return manifest_path.parent, manifest


def old_query(state_dir: Path, entry: dict, name: str, prefer: str) -> exp.Query | None:
    """The earlier definition's query, parsed from the compiled SQL the earlier target/ kept;
    None when that SQL had env_var() values in it, masked when it was written."""
    paths = entry.get("compiled_sql") or {}
    dialect = prefer if paths.get(prefer) else next((d for d, p in paths.items() if p), None)
    if dialect is None:
        raise ConfigError(f"--state: the earlier manifest has no compiled SQL for KPI '{name}'; "
                          "run `kpimetrics compile` on the earlier version")
    rel = Path(paths[dialect])
    candidates = [state_dir / Path(*rel.parts[1:]), state_dir.parent / rel] if len(rel.parts) > 1 else [state_dir / rel]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ConfigError(f"--state: {candidates[0]} is missing (the compiled SQL of '{name}'): keep the whole "
                          "target/ folder of the earlier compile, not only manifest.json")
    text = path.read_text(encoding="utf-8")
    return None if MASK in text else sqlglot.parse_one(text, read=dialect)


def recent_values_query(query: exp.Query, grain: str, periods: int) -> exp.Query:
    """The last `periods` totals of a KPI query at one grain: period_start, value."""
    ctes, body = sqlgen.split_ctes(query)
    alias = exp.TableAlias(this=exp.to_identifier("__kpi", quoted=True))
    last = (
        exp.select(col("period_start"), col("value"))
        .from_(exp.Subquery(this=body, alias=alias))
        .where(exp.and_(exp.EQ(this=col("grain"), expression=lit(grain)),
                        exp.EQ(this=col("dimension"), expression=lit(""))))
        .order_by(exp.Ordered(this=col("period_start"), desc=True))
        .limit(periods)
    )
    return sqlgen.cte_query(ctes, last)


def _fetch(adapter, query: exp.Query) -> dict[str, float | None]:
    rows = adapter.fetchall(compiler.render(query, adapter.dialect, pretty=False))
    return {(p.isoformat() if isinstance(p, dt.date) else str(p)): v for p, v in rows}


# --- the whole diff ------------------------------------------------------------------------

def diff(project, state: Path, *, periods: int = 6) -> DiffResult:
    if periods < 1:
        raise UsageError("--periods must be at least 1")
    state_dir, old_manifest = load_state(state)
    plan = project.plan()
    names = project.select(None)
    new_manifest = compiler.manifest(plan, names, project.target_dialect(), {})
    old, new = old_manifest["kpis"], new_manifest["kpis"]
    result = DiffResult(str(state), periods, compare(old, new))
    moving = [k for k in result.kpis if k.values_change]
    for k in result.kpis:
        entry = new.get(k.name) or old.get(k.name) or {}
        k.grain = (entry.get("declared_grains") or entry.get("grains") or [None])[0]
        k.unit = entry.get("unit")
    if not moving:
        return result
    adapter = project.connect()
    try:
        for k in moving:
            query = old_query(state_dir, old[k.name], k.name, adapter.dialect)
            before = _fetch(adapter, recent_values_query(query, k.grain, periods)) if query is not None else {}
            if query is None:
                k.note = MASKED_NOTE
            after = _fetch(adapter, recent_values_query(compiler.kpi_query(plan, k.name), k.grain, periods))
            keys = sorted(set(before) | set(after))[-periods:]
            k.values = [ValueRow(p, before.get(p), after.get(p)) for p in keys]
    finally:
        adapter.close()
    return result


# --- Markdown for a pull-request comment ---------------------------------------------------

def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _shown(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = text if len(text) <= 120 else text[:117] + "..."
    return "`" + text.replace("`", "'") + "`"


def _what(k: KpiDiff) -> str:
    if k.change == "affected":
        return "derives from " + ", ".join(f"`{u}`" for u in k.upstream)
    if k.change == "changed":
        fields = ", ".join(k.fields)
        return fields if k.values_change else f"{fields} (values unchanged)"
    return ""


def _movement(r: ValueRow, unit: str | None) -> str:
    """How a value moves: percentage points for a percent, else the relative change."""
    if unit == "percent" and r.old is not None and r.new is not None:
        return f"{(r.new - r.old) * 100:+.1f} pts"
    return "" if r.change_pct is None else f"{r.change_pct:+.1%}"


def render_markdown(result: DiffResult) -> str:
    counts = ", ".join(f"{len(result.of(c))} {c}" for c in ("changed", "affected", "added", "removed"))
    lines = ["### kpimetrics diff", "", f"Against `{_cell(result.state)}`: {counts}.", ""]
    if not result.kpis:
        return "\n".join(lines + ["No KPI or standard changed.", ""])
    lines += ["| KPI | change | what |", "| --- | --- | --- |"]
    lines += [f"| `{k.name}` | {k.change} | {_cell(_what(k))} |" for k in result.kpis]
    for k in result.kpis:
        if k.change != "changed" and not k.values:
            continue
        lines += ["", f"#### `{k.name}`" + (f" by {k.grain}, total" if k.values else "")]
        for f, v in k.fields.items():
            lines.append(f"- `{f}`: {_cell(_shown(v['old']))} → {_cell(_shown(v['new']))}")
        if k.note:
            lines.append(f"- {k.note}")
        if k.values:
            lines += ["", "| period | before | after | change |", "| --- | ---: | ---: | ---: |"]
            lines += [f"| {r.period_start} | {format_value(r.old, k.unit)} | {format_value(r.new, k.unit)} | "
                      f"{_movement(r, k.unit)} |" for r in k.values]
        elif k.values_change is False:
            lines.append("- values unchanged: the definition_hash is the same")
    return "\n".join(lines) + "\n"
