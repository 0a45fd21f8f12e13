"""`kpimetrics diff --state PATH`: what a change to the project does to its KPIs, for a pull request.

Two manifests are compared (the earlier one in PATH, the current one compiled now):
KPIs added, removed, changed (which fields) and affected (values change only because
a KPI they derive from changed: their own fields are equal, their definition_hash is not).
For every changed or affected KPI whose values can move, its recent values are computed in
the warehouse twice: with the earlier compiled SQL kept in PATH/compiled/<dialect>/, and
with the current definition.

PATH is untrusted input (SPEC §11): an artifact of another branch, which anyone who can push may have written.
Its manifest is checked for the shape this module reads, and its SQL is checked on sqlglot trees before any of
it runs: one SELECT (CTEs allowed), nothing that writes, locks or runs a command, and nothing read or called
that the project itself does not read or call. A malformed state is an error naming its file (KPI130-135);
earlier SQL that reads beyond the project is not run, and the KPI's earlier values are left out with a note.
Why check rather than recompile: see README, design notes.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from . import compiler, sqlgen, targets
from . import model as m
from .config import MASK
from .errors import ConfigError, Location, UsageError, WarehouseError, error
from .display import change_of, format_change, format_value
from .sqlgen import alias, col, lit
from .status import look
from .tables import qualified

# Manifest fields that describe where or how a KPI was written down, not what it is.
NOT_A_CHANGE = {"compiled_sql", "location", "definition_hash", "strategy_path"}
# Manifest fields that judge a KPI total's values without changing them: a change to one moves statuses (status_moves).
STATUS_FIELDS = ("target", "tolerance", "at_risk_below", "at_risk_above", "direction")
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
        return change_of(self.old, self.new)[1]


@dataclass(frozen=True)
class StatusMove:
    """One recent complete period of a KPI total under its earlier and its current target (`diff`'s target effect):
    the published value, each definition's target and the status it gives that value."""

    period_start: str
    value: float | None
    old_target: float | None
    new_target: float | None
    old_status: str
    new_status: str


@dataclass
class KpiDiff:
    name: str
    change: str  # added | removed | changed | affected
    fields: dict[str, dict] = field(default_factory=dict)  # field -> {"old": ..., "new": ...}
    upstream: list[str] = field(default_factory=list)  # affected: the changed KPIs it derives from
    values_change: bool = False  # the definition_hash differs, so values may move
    grain: str | None = None
    unit: str | None = None
    currency: str | None = None
    values: list[ValueRow] = field(default_factory=list)
    note: str | None = None  # why some values are missing
    # a change to what judges the values (STATUS_FIELDS): the recent periods' statuses before and after, newest first
    statuses: list[StatusMove] = field(default_factory=list)
    status_note: str | None = None  # why they are not there


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


# --- the earlier target/ ------------------------------------------------------------------

KPI_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_MANIFEST_BYTES = 512 * 2**20  # 10,000 KPIs write about 30 MB
MAX_SQL_BYTES = 16 * 2**20  # one KPI's compiled SQL
MAX_DEPTH = 64  # nesting of a manifest's values: kpimetrics writes 6 at most (a target by grain with a schedule)
# Nodes that write, lock, or run something other than a query: none may appear anywhere in a state's SQL.
STATEMENTS: tuple[type[exp.Expression], ...] = tuple(c for c in (getattr(exp, n, None) for n in (
    "DML", "DDL", "Command", "Into", "Lock", "Pragma", "Set", "Transaction", "Commit", "Rollback", "Use", "Describe",
    "Attach", "Detach", "Alter", "Drop", "Cache", "Uncache", "Refresh", "Grant", "Revoke", "Analyze", "Kill",
    "Execute", "Declare", "Show", "Install", "TruncateTable", "Summarize", "Export")) if c is not None)
# Functions sqlglot knows that read files or the network, or change state; the state may call one only where the
# project does too. Every other function sqlglot knows computes a value from its arguments; one it does not know
# (exp.Anonymous: read_text, pg_read_file, nextval, ...) the state may call only where the project does too.
DENIED_FUNCTIONS = frozenset({"ReadCSV", "ReadParquet", "ToFile", "NextValueFor", "Secret", "Predict",
                              "GenerateEmbedding", "GenerateText", "GenerateTable", "VectorSearch", "FeaturesAtTime"})


def _refuse(code: str, message: str, path: Path, line: int = 0, col: int = 0, hint: str | None = None) -> ConfigError:
    return ConfigError("--state: not a usable earlier target/ folder; nothing in it was run",
                       [error(code, message, Location(str(path), line, col), hint)])



def _state_text(real: Path, where: Path, limit: int, what: str, *, unreadable: str, malformed: str) -> str:
    """A state file's text, read from `real` (a link resolved) and reported at `where`: refused when it cannot
    be read (`unreadable`), or is over `limit` bytes or not UTF-8 (`malformed`, at the line of the first bad byte)."""
    try:
        size = real.stat().st_size
        if size > limit:
            raise _refuse(malformed, f"{what} is {size:,} bytes, more than the {limit:,} it may have", where)
        raw = real.read_bytes()
    except OSError as exc:
        raise _refuse(unreadable, f"{what} cannot be read: {exc.strerror or exc}", where) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _refuse(malformed, f"{what} is not UTF-8 text", where, raw.count(b"\n", 0, exc.start) + 1) from None

def _kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), "null")


def _too_deep(doc) -> bool:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((v, depth + 1) for v in children if isinstance(v, (dict, list)))
    return False


def _is_dialect(name: str) -> bool:
    try:
        Dialect.get_or_raise(name)
    except Exception:  # noqa: BLE001 — sqlglot says ValueError today; any failure means "not a dialect"
        return False
    return True


def _shape_problem(doc) -> tuple[str, str] | None:
    """(key, what is wrong) for the first part of a manifest not of the shape this module reads."""
    if not isinstance(doc, dict):
        return "", f"expected a JSON object (a kpimetrics manifest), got {_kind(doc)}"
    if _too_deep(doc):
        return "", f"values nested deeper than {MAX_DEPTH} levels"
    kpis = doc.get("kpis")
    if not isinstance(kpis, dict):
        return "kpis", "missing" if kpis is None else f"expected an object of KPIs by name, got {_kind(kpis)}"
    for name, entry in kpis.items():
        where = f"kpis.{name}"
        if not KPI_NAME.match(name) or len(name) > 255:
            return where, f"{name[:80]!r} is not a KPI name (snake_case)"
        if not isinstance(entry, dict):
            return where, f"expected an object (the KPI's definition), got {_kind(entry)}"
        for key in ("definition_hash", "unit"):
            if entry.get(key) is not None and not isinstance(entry[key], str):
                return f"{where}.{key}", f"expected a string, got {_kind(entry[key])}"
        for key in ("grains", "declared_grains"):
            value = entry.get(key)
            if value is not None and not (isinstance(value, list) and all(isinstance(g, str) for g in value)):
                return f"{where}.{key}", f"expected a list of grain names, got {_kind(value)}"
        paths = entry.get("compiled_sql")
        if paths is not None and not isinstance(paths, dict):
            return f"{where}.compiled_sql", f"expected an object of file paths by dialect, got {_kind(paths)}"
        for dialect, rel in (paths or {}).items():
            if not _is_dialect(dialect):
                return f"{where}.compiled_sql", f"{dialect[:80]!r} is not a SQL dialect"
            if rel is not None and not isinstance(rel, str):
                return f"{where}.compiled_sql.{dialect}", f"expected a file path, got {_kind(rel)}"
            if rel is not None and (Path(rel).is_absolute() or ".." in Path(rel).parts or "\0" in rel):
                return f"{where}.compiled_sql.{dialect}", f"{rel[:200]!r} is not a path inside the state folder"
    return None


def load_state(path: Path) -> tuple[Path, dict]:
    """The earlier target/ folder and its manifest (PATH may name the folder or its manifest.json), checked for
    the shape this module reads: a state is another branch's artifact, not a file kpimetrics wrote here."""
    manifest_path = path / "manifest.json" if path.is_dir() else path
    if not manifest_path.is_file():
        raise _refuse("KPI130", "no manifest.json there: pass the target/ folder of an earlier `kpimetrics compile` "
                                "(in CI, the main branch's)", manifest_path)
    text = _state_text(manifest_path, manifest_path, MAX_MANIFEST_BYTES, "the manifest", unreadable="KPI130",
                       malformed="KPI131")
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse("KPI131", f"not a kpimetrics manifest: not JSON ({exc.msg})", manifest_path,
                      exc.lineno, exc.colno) from None
    except RecursionError:
        raise _refuse("KPI131", "not a kpimetrics manifest: values nested too deeply", manifest_path) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise _refuse("KPI131", f"not a kpimetrics manifest: {str(exc)[:200]}", manifest_path) from None
    problem = _shape_problem(manifest)
    if problem is not None:
        key, what = problem
        raise _refuse("KPI132", f"not a kpimetrics manifest: {key + ': ' if key else ''}{what}", manifest_path)
    return manifest_path.parent, manifest


@dataclass(frozen=True)
class ProjectReads:
    """What the project's own SQL reads and calls: the most a state's SQL may read and call."""

    tables: frozenset[tuple[str, str, str]]
    functions: frozenset[str]


def _function_key(node: exp.Func) -> str:
    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        schema = node.parent.this.sql() + "." if isinstance(node.parent, exp.Dot) and node.parent.expression is node else ""
        return (schema + node.name).lower()
    return type(node).__name__


def _table_key(node: exp.Table, dialect: str) -> tuple[str, str, str]:
    t = normalize_identifiers(node.copy(), dialect=dialect)
    return t.catalog, t.db, t.name


def _is_cte(table: exp.Table, name: str, dialect: str) -> bool:
    """Whether `table` (unqualified, `name` normalized) names a CTE in scope: one of a query around it defines it.
    A CTE of a subquery elsewhere does not hide a table of that name."""
    node = table.parent
    while node is not None:
        with_ = node.args.get("with_") or node.args.get("with") if isinstance(node, exp.Query) else None
        if with_ is not None and any(
                normalize_identifiers(exp.to_identifier(c.alias_or_name), dialect=dialect).name == name
                for c in with_.expressions):
            return True
        node = node.parent
    return False


def _reads(tree: exp.Expression, dialect: str) -> tuple[set[tuple[str, str, str]], set[str]]:
    """The tables (not CTEs in scope) a tree reads and the functions it calls."""
    tables = set()
    for t in tree.find_all(exp.Table):
        if isinstance(t.this, exp.Func):
            continue  # a table function: a function, checked as one
        key = _table_key(t, dialect)
        if not (key[0] == key[1] == "" and _is_cte(t, key[2], dialect)):
            tables.add(key)
    return tables, {_function_key(f) for f in tree.find_all(exp.Func)}


def project_reads(plan, dialect: str, queries: list[exp.Query]) -> ProjectReads:
    """What the project reads: its models, sources and snippets, and `queries` (its own compiled SQL, which
    holds what the SQL generator adds)."""
    trees: list[exp.Expression] = list(queries)
    seen: set[int] = set()
    for pl in plan.kpis.values():
        trees += [t for t in (pl.time, pl.filter, *pl.trees.values(), *pl.dimension_exprs.values()) if t is not None]
        if pl.relation is not None and id(pl.relation) not in seen:
            seen.add(id(pl.relation))
            trees += [pl.relation.table, *(q for _, q in pl.relation.ctes)]
    tables: set[tuple[str, str, str]] = set()
    functions: set[str] = set()
    for tree in trees:
        t, f = _reads(tree, dialect)
        tables |= t
        functions |= f
    return ProjectReads(frozenset(tables), frozenset(functions))


def _place(node: exp.Expression | None) -> tuple[int, int]:
    """The line and column where the first token under `node` the parser placed starts (identifiers and
    literals carry their place; sqlglot's column is a token's last character), else under its parent."""
    while node is not None:
        places = [(m["line"], max(m.get("col", 1) - (m.get("end", 0) - m.get("start", 0)), 1))
                  for m in (n._meta or {} for n in node.walk()) if m.get("line")]
        if places:
            return min(places)
        node = node.parent
    return 0, 0


def _statement(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        what = f"{str(node.this).upper()[:40]} command"
    else:
        what = f"{node.key.upper()} statement"
    return ("an " if what[:1] in "AEIOU" else "a ") + what


def _not_one_select(tree: exp.Expression) -> tuple[str, exp.Expression] | None:
    """Why a statement is not one SELECT that only reads, and where."""
    if not isinstance(tree, exp.Query):
        return f"is {_statement(tree)}, not a SELECT", tree
    for node in tree.walk():
        if isinstance(node, exp.CTE) and not isinstance(node.this, exp.Query):
            return f"has a data-modifying CTE: {node.alias_or_name!r} is {_statement(node.this)}", node.this
        if isinstance(node, exp.Subquery) and not isinstance(node.this, exp.Query):
            return f"has {_statement(node.this)} in a subquery", node.this
        if isinstance(node, exp.Into):
            return "selects INTO a table", node
        if isinstance(node, exp.Lock):
            return "locks rows (FOR UPDATE / FOR SHARE)", node
        if isinstance(node, STATEMENTS):
            return f"holds {_statement(node)}", node
    return None


def beyond_the_project(tree: exp.Query, reads: ProjectReads, dialect: str) -> str | None:
    """What a state's query reads or calls that the project does not, in words; None when nothing."""
    tables, functions = _reads(tree, dialect)
    extra_tables = sorted(".".join(p for p in key if p) for key in tables - reads.tables)
    # a function sqlglot knows is named by its class (CamelCase), one it does not by its name, lowercased
    extra_functions = sorted(f for f in functions - reads.functions if not f[:1].isupper() or f in DENIED_FUNCTIONS)
    if extra_tables:
        return "reads " + ", ".join(f"`{t[:80]}`" for t in extra_tables[:3])
    if extra_functions:
        return "calls " + ", ".join(f"`{f[:80]}`" for f in extra_functions[:3])
    return None


@dataclass(frozen=True)
class EarlierSql:
    """A KPI's earlier query, checked; None with a note where it is not run."""

    query: exp.Query | None
    note: str | None = None


def old_query(state_dir: Path, manifest_path: Path, entry: dict, name: str, prefer: str,
              reads: ProjectReads) -> EarlierSql:
    """The earlier definition's query, parsed from the compiled SQL the earlier target/ kept and checked: one
    SELECT that only reads, and only what the project reads (else it is not run: a note says why)."""
    paths = entry.get("compiled_sql") or {}
    dialect = prefer if paths.get(prefer) else next((d for d, p in paths.items() if p), None)
    if dialect is None:
        raise _refuse("KPI133", f"kpis.{name}.compiled_sql: the earlier manifest has no compiled SQL for KPI '{name}'",
                      manifest_path, hint="run `kpimetrics compile` on the earlier version")
    rel = Path(paths[dialect])
    path = state_dir / Path(*rel.parts[1:]) if len(rel.parts) > 1 else state_dir / rel
    if not path.is_file():
        raise _refuse("KPI133", f"the compiled SQL of KPI '{name}' is missing", path,
                      hint="keep the whole target/ folder of the earlier compile, not only manifest.json")
    real = path.resolve()
    if not real.is_relative_to(state_dir.resolve()):
        raise _refuse("KPI133", f"the compiled SQL of KPI '{name}' is a link out of the state folder (to {real})", path)
    text = _state_text(real, path, MAX_SQL_BYTES, f"the compiled SQL of KPI '{name}'", unreadable="KPI133",
                       malformed="KPI133")
    if MASK in text:
        return EarlierSql(None, MASKED_NOTE)
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None and not isinstance(s, exp.Semicolon)]
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        desc = str(first.get("description") or exc).split(". Line")[0][:200]
        raise _refuse("KPI134", f"the compiled SQL of KPI '{name}' does not parse: {desc}", path,
                      first.get("line") or 0, first.get("col") or 0) from None
    except Exception as exc:  # noqa: BLE001 — sqlglot raises TokenError, RecursionError, ... on malformed text
        raise _refuse("KPI134", f"the compiled SQL of KPI '{name}' does not parse: {str(exc)[:200]}", path) from None
    if not statements:
        raise _refuse("KPI134", f"the compiled SQL of KPI '{name}' holds no statement", path)
    if len(statements) > 1:
        raise _refuse("KPI135", f"the compiled SQL of KPI '{name}' holds {len(statements)} statements, not one SELECT",
                      path, *_place(statements[1]))
    tree = statements[0]
    problem = _not_one_select(tree)
    if problem is not None:
        why, node = problem
        raise _refuse("KPI135", f"the compiled SQL of KPI '{name}' {why}; nothing of the state was run", path,
                      *_place(node))
    beyond = beyond_the_project(tree, reads, dialect)
    if beyond is not None:
        return EarlierSql(None, f"values before the change not computed: the earlier compiled SQL {beyond}, which "
                                "this project does not (a state's SQL may read only what the project reads)")
    return EarlierSql(tree)

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


def _reparsed(query: exp.Query, dialect: str) -> exp.Expression | None:
    """The project's query as the state's SQL is read: rendered in `dialect` and parsed back (a function the
    generator writes may parse back as one sqlglot does not know). None if it does not parse back: the state
    may then call less, never more."""
    try:
        return sqlglot.parse_one(compiler.render(query, dialect, pretty=False), read=dialect)
    except Exception:  # noqa: BLE001 — sqlglot's own output; a failure only narrows what the state may call
        return None


def _number(value) -> float | None:
    """A value the earlier SQL gave, as a number (None when it is not one: that SQL is another branch's)."""
    if isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool):
        return float(value)
    return None


# --- a target change's effect on recent statuses --------------------------------------------

def earlier_judge(kpi: m.Kpi, entry: dict, changed: list[str]) -> tuple[m.Kpi | None, str | None]:
    """The KPI as the earlier manifest `entry` judged it: the current definition with the earlier value of each of
    `changed` (STATUS_FIELDS). (None, why) when that cannot be read, or would run SQL the state wrote (a table
    target's column expressions): a state is untrusted input, and only literals of it reach the warehouse."""
    written = kpi.model_dump(by_alias=True, exclude_unset=True)
    for f in changed:
        written.pop(f, None)
        if entry.get(f) is not None:
            written[f] = entry[f]
    try:
        earlier = m.Kpi.model_validate(written)
    except ValueError:
        return None, "the earlier definition's target is not one this release reads"
    if isinstance(earlier.target, m.TableTarget) or (
            isinstance(earlier.target, dict) and any(isinstance(t, m.TableTarget) for t in earlier.target.values())):
        return None, "the earlier target is read from a table: its SQL is another branch's, and is not run"
    return earlier, None


def status_moves_query(definition, earlier: m.Kpi, current: m.Kpi, grain: str, periods: int) -> exp.Select:
    """The last `periods` complete totals of a KPI at `grain` in kpi_status, each with the target and status its
    earlier and its current definition give it: the targets as kpi_targets computes them (targets.targets_query),
    the status by kpi_status's rule (targets.status_expression)."""
    config = definition.config
    schema, cal = config.output_schema, config.calendar
    s = "__s"
    value = col("value", s)
    picked: list[exp.Expression] = [col("period_start", s), value]
    query = exp.select(*picked).from_(qualified(schema, "kpi_status", s))
    statuses = []
    for side, kpi in (("__old", earlier), ("__new", current)):
        targets_rows = targets.targets_query(kpi, grain, cal, schema, definition)
        higher = exp.true() if kpi.direction != "lower_is_better" else exp.false()
        if targets_rows is None:  # no target at that grain
            target, threshold = exp.Null(), exp.Null()
        else:
            query = query.join(
                exp.Subquery(this=targets_rows, alias=exp.TableAlias(this=exp.to_identifier(side, quoted=True))),
                on=exp.and_(*[exp.EQ(this=col(c, side), expression=col(c, s))
                              for c in ("name", "grain", "period_start", "dimension")]),
                join_type="LEFT", copy=False)
            target, threshold = col("target", side), col("at_risk_threshold", side)
        query = query.select(alias(target.copy(), f"{side[2:]}_target"), copy=False)
        statuses.append(alias(targets.status_expression(value, target, threshold, higher), f"{side[2:]}_status"))
    return (
        query.select(*statuses, copy=False)
        .where(exp.and_(
            exp.EQ(this=col("name", s), expression=lit(current.name)),
            exp.EQ(this=col("grain", s), expression=lit(grain)),
            exp.EQ(this=col("dimension", s), expression=lit("")),
            exp.EQ(this=col("is_complete", s), expression=exp.true()),
        ), copy=False)
        .order_by(exp.Ordered(this=col("period_start", s), desc=True), copy=False)
        .limit(periods, copy=False)
    )


def status_moves(project, adapter, k: KpiDiff, entry: dict, periods: int) -> None:
    """Fill `k.statuses` (or `k.status_note`): how the change to its STATUS_FIELDS moves the statuses of the KPI
    total's last `periods` complete periods, judged on the values the output tables hold."""
    definition = project.definition
    current = definition.kpi_by_name[k.name]
    earlier, why = earlier_judge(current, entry, [f for f in STATUS_FIELDS if f in k.fields])
    if earlier is None:
        k.status_note = f"statuses before the change not computed: {why}"
        return
    if "kpi_status" not in set(adapter.tables(definition.config.output_schema)):
        k.status_note = "statuses not computed: no output tables yet (run `kpimetrics run` first)"
        return
    query = status_moves_query(definition, earlier, current, k.grain, periods)
    try:
        rows = adapter.fetchall(compiler.render(query, adapter.dialect, pretty=False))
    except WarehouseError as exc:
        k.status_note = f"statuses not computed: the warehouse refused the query ({exc})"
        return
    k.statuses = [StatusMove(p.isoformat() if isinstance(p, dt.date) else str(p), _number(v), _number(ot),
                             _number(nt), os_, ns) for p, v, ot, nt, os_, ns in rows]


# --- the whole diff ------------------------------------------------------------------------

def diff(project, state: Path, *, periods: int = 6) -> DiffResult:
    if periods < 1:
        raise UsageError("--periods must be at least 1")
    state_dir, old_manifest = load_state(state)
    manifest_path = state / "manifest.json" if state.is_dir() else state
    plan = project.plan()
    names = project.select(None)
    new_manifest = compiler.manifest(plan, names, project.target_dialect(), {})
    old, new = old_manifest["kpis"], new_manifest["kpis"]
    result = DiffResult(str(state), periods, compare(old, new))
    moving = [k for k in result.kpis if k.values_change]
    judged = [k for k in result.kpis if k.change == "changed" and any(f in k.fields for f in STATUS_FIELDS)]
    for k in result.kpis:
        entry = new.get(k.name) or old.get(k.name) or {}
        k.grain = (entry.get("declared_grains") or entry.get("grains") or [None])[0]
        k.unit, k.currency = entry.get("unit"), entry.get("currency")
    if not (moving or judged):
        return result
    adapter = project.connect()
    try:
        # every earlier query is checked before any runs: a malformed state stops the diff with nothing run
        new_queries = {k.name: compiler.kpi_query(plan, k.name) for k in moving}
        reads = project_reads(plan, adapter.dialect, [t for q in new_queries.values()
                                                      if (t := _reparsed(q, adapter.dialect)) is not None])
        earlier = {k.name: old_query(state_dir, manifest_path, old[k.name], k.name, adapter.dialect, reads)
                   for k in moving}
        for k in judged:
            status_moves(project, adapter, k, old[k.name], periods)
        for k in moving:
            before: dict[str, float | None] = {}
            query, k.note = earlier[k.name].query, earlier[k.name].note
            if query is not None:
                try:
                    got = _fetch(adapter, recent_values_query(query, k.grain, periods))
                except WarehouseError as exc:
                    k.note = f"values before the change not computed: the warehouse refused the earlier SQL ({exc})"
                else:
                    before = {p: _number(v) for p, v in got.items()}
                    if any(v is not None and before[p] is None for p, v in got.items()):
                        before, k.note = {}, "values before the change not computed: the earlier SQL gave values " \
                                             "that are not numbers"
            after = _fetch(adapter, recent_values_query(new_queries[k.name], k.grain, periods))
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
    """How a value moves: percentage points for a percent, else the relative change (display.format_change)."""
    change, change_pct = change_of(r.old, r.new)
    return format_change(change, change_pct, unit)


def status_summary(k: KpiDiff) -> str:
    """A target change's effect in words: '3 of the last 6 months move on track → at risk'."""
    n, grains = len(k.statuses), f"{k.grain}s"
    moves = Counter((r.old_status, r.new_status) for r in k.statuses if r.old_status != r.new_status)
    if not moves:
        return f"none of the last {n} complete {grains} changes status"
    return "; ".join(f"{c} of the last {n} complete {grains} {'moves' if c == 1 else 'move'} "
                     f"{look(a).text} → {look(b).text}" for (a, b), c in moves.items())


def _status_lines(k: KpiDiff) -> list[str]:
    if not k.statuses:
        return [f"- {k.status_note}"] if k.status_note else []
    shown = lambda v: format_value(v, k.unit, k.currency)  # noqa: E731
    lines = [f"- statuses: {status_summary(k)}", "",
             "| period | value | target before | target after | status before | status after |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    lines += [f"| {r.period_start} | {shown(r.value)} | {shown(r.old_target)} | {shown(r.new_target)} | "
              f"{look(r.old_status).text} | {look(r.new_status).text} |" for r in k.statuses]
    return lines + [""]


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
        lines += ["", f"#### `{k.name}`" + (f" by {k.grain}, total" if k.values or k.statuses else "")]
        for f, v in k.fields.items():
            lines.append(f"- `{f}`: {_cell(_shown(v['old']))} → {_cell(_shown(v['new']))}")
        if k.note:
            lines.append(f"- {k.note}")
        lines += _status_lines(k)
        if k.values:
            lines += ["", "| period | before | after | change |", "| --- | ---: | ---: | ---: |"]
            lines += [f"| {r.period_start} | {format_value(r.old, k.unit, k.currency)} | "
                      f"{format_value(r.new, k.unit, k.currency)} | "
                      f"{_movement(r, k.unit)} |" for r in k.values]
        elif k.values_change is False:
            lines.append("- values unchanged: the definition_hash is the same")
    return "\n".join(lines) + "\n"
