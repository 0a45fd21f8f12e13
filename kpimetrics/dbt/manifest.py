"""dbt's artifacts read as data: manifest.json (dbt 1.8-1.11: schema v12) and catalog.json when present.

An artifact is untrusted input, like a `diff --state` folder (SPEC §11): it is size-limited, parsed as
JSON only, and every value kpimetrics uses is type-checked. A relation name from it only ever reaches SQL
as quoted identifiers of a sqlglot tree; an ephemeral model's compiled SQL is checked like a project
model (grammar, machine access) before anything runs it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlglot import exp

from ..errors import Issue, Location, error
from ..yamlio import shown
from .project import DbtProject

# dbt 1.8, 1.9, 1.10 and 1.11 all write manifest v12; 1.7 wrote v11, 1.6 v10
SUPPORTED_MANIFEST = "https://schemas.getdbt.com/dbt/manifest/v12.json"
SUPPORTED_DBT = "1.8-1.11"
MAX_ARTIFACT_BYTES = 1 << 30  # a large dbt project's manifest runs to hundreds of MB
REFABLE = ("model", "seed", "snapshot")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class DbtNode:
    """A model, seed, snapshot or source of the manifest: what kpimetrics needs of it."""

    unique_id: str
    resource_type: str  # model | seed | snapshot | source
    package: str
    name: str  # the table's name for a source
    database: str | None
    schema: str | None
    identifier: str  # the relation's name: a model's alias, a source's identifier
    file: str  # its file, relative to the kpimetrics project (for messages)
    source_name: str | None = None
    version: str | None = None
    latest_version: str | None = None
    materialized: str | None = None
    compiled_code: str | None = None
    columns: tuple[str, ...] | None = None  # documented in the manifest, and those catalog.json found
    cataloged: bool = False  # catalog.json listed its columns: `columns` is all of them
    checksum: str = ""  # dbt's checksum of its file (a seed's data, a model's SQL)
    # which of (database, schema, identifier) dbt quotes in the relation_name it records (its `quoting:`): an
    # unquoted name is folded by the warehouse (PostgreSQL: to lower case), as dbt's SQL has it
    quoted: tuple[bool, bool, bool] = (True, True, True)
    depends_on: tuple[str, ...] = ()  # the unique_ids of the nodes it reads

    @property
    def ephemeral(self) -> bool:
        return self.materialized == "ephemeral"

    @property
    def label(self) -> str:
        if self.resource_type == "source":
            return f"source('{self.source_name}', '{self.name}')"
        version = f", v={self.version}" if self.version is not None else ""
        return f"ref('{self.name}'{version})"

    @property
    def selector(self) -> str:
        """How `dbt build -s` names it."""
        if self.resource_type == "source":
            return f"source:{self.source_name}.{self.name}"
        return self.name if self.version is None else f"{self.name}.v{self.version}"

    def table(self) -> exp.Table:
        """The relation dbt built, as the manifest records it: each part quoted as dbt quotes it."""
        database, schema, identifier = self.quoted
        return exp.table_(
            exp.to_identifier(self.identifier, quoted=identifier),
            db=exp.to_identifier(self.schema, quoted=schema) if self.schema else None,
            catalog=exp.to_identifier(self.database, quoted=database) if self.database else None,
        )


@dataclass
class Manifest:
    path: Path
    display: str
    dbt_version: str
    adapter_type: str | None
    generated_at: str | None
    project_name: str | None
    refable: dict[str, list[DbtNode]] = field(default_factory=dict)  # by name: models, seeds, snapshots
    sources: dict[tuple[str, str], DbtNode] = field(default_factory=dict)
    catalog: str | None = None  # catalog.json's display path when it was read
    _ids: dict[str, DbtNode] | None = field(default=None, repr=False)

    def nodes(self):
        for nodes in self.refable.values():
            yield from nodes
        yield from self.sources.values()

    def lineage(self, node: DbtNode) -> str:
        """A digest of the definitions of `node` and of everything upstream of it in dbt: it changes when dbt's
        SQL or seed data that produces the relation changes, so a KPI reading it is recomputed in full, as it
        is when a kpimetrics model's SQL changes (SPEC §5)."""
        import hashlib

        by_id = self._by_id()
        seen: set[str] = set()
        todo = [node.unique_id]
        parts: list[str] = []
        while todo:
            uid = todo.pop()
            if uid in seen:
                continue
            seen.add(uid)
            found = by_id.get(uid)
            if found is not None:
                parts.append(f"{uid}:{found.checksum}:{found.materialized}")
                todo.extend(found.depends_on)
        return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]

    def built_upstream(self, node: DbtNode) -> list[DbtNode]:
        """The relations an ephemeral model reads: its inputs, through other ephemeral models, that dbt builds
        (the relations a run checks before reading them, KPI145)."""
        by_id = self._by_id()
        out: list[DbtNode] = []
        seen: set[str] = set()
        todo = list(node.depends_on)
        while todo:
            found = by_id.get(uid := todo.pop(0))
            if found is None or uid in seen:
                continue
            seen.add(uid)
            if found.ephemeral:
                todo.extend(found.depends_on)
            else:
                out.append(found)
        return out

    def _by_id(self) -> dict[str, DbtNode]:
        if self._ids is None:
            self._ids = {n.unique_id: n for n in self.nodes()}
        return self._ids

    def ref(self, name: str, package: str | None = None, version: str | None = None) -> tuple[DbtNode | None, str | None]:
        """The node `ref()` names, as dbt resolves it, or None and why not (None: no such name)."""
        found = [n for n in self.refable.get(name, ()) if package is None or n.package == package]
        if not found:
            return None, None
        versioned = [n for n in found if n.version is not None]
        if versioned:
            if version is None:
                latest = versioned[0].latest_version
                pick = [n for n in versioned if n.version == latest] or [max(versioned, key=lambda n: _version_key(n.version))]
            else:
                pick = [n for n in versioned if n.version == version]
                if not pick:
                    have = ", ".join(sorted((str(n.version) for n in versioned), key=_version_key))
                    return None, f"model '{name}' has no version {version} (versions: {have})"
            found = pick
        elif version is not None:
            return None, f"model '{name}' has no versions"
        if len(found) > 1:
            root = [n for n in found if n.package == self.project_name]
            if len(root) == 1:
                return root[0], None
            packages = ", ".join(sorted(n.package for n in found))
            return None, f"'{name}' is in several packages ({packages}): write ref('package', '{name}')"
        return found[0], None


def _version_key(v: str | None) -> tuple:
    text = str(v)
    return (0, float(text)) if re.fullmatch(r"\d+(\.\d+)?", text) else (1, text)


class ArtifactProblem(Exception):
    def __init__(self, issue: Issue):
        super().__init__(issue.message)
        self.issue = issue


def _problem(display: str, message: str, hint: str, line: int = 1, col: int = 1) -> ArtifactProblem:
    return ArtifactProblem(error("KPI142", message, Location(display, line, col), hint))


_REBUILD = "run `dbt parse` (or compile, run, build) with dbt 1.8 to 1.11 again; an artifact is written by dbt, never by hand"


def _read_json(path: Path, display: str, what: str) -> Any:
    try:
        size = os.stat(path).st_size
        if size > MAX_ARTIFACT_BYTES:
            raise _problem(display, f"{what} is {size:,} bytes, over the limit of {MAX_ARTIFACT_BYTES:,}", _REBUILD)
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise _problem(display, f"cannot read {what}: {exc.strerror or exc}", "let the user that runs kpimetrics read it")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _problem(display, f"{what} is not UTF-8 text", _REBUILD, line) from None
    except json.JSONDecodeError as exc:
        raise _problem(display, f"{what} is not JSON ({exc.msg})", _REBUILD, exc.lineno, exc.colno) from None
    except (RecursionError, ValueError) as exc:
        raise _problem(display, f"{what} cannot be read as JSON ({type(exc).__name__})", _REBUILD) from None


def _text(entry: dict, key: str, where: str, display: str, *, required: bool = True) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("version", "latest_version"):
        value = str(value).removesuffix(".0") if isinstance(value, float) else str(value)
    if not isinstance(value, str) or (key != "compiled_code" and (_CONTROL.search(value) or len(value) > 1024)):
        raise _problem(display, f"not a dbt manifest: {where}.{key} is not a name (got {shown(value, 40)})", _REBUILD)
    return value


def _columns(entry: dict, where: str, display: str) -> tuple[str, ...] | None:
    cols = entry.get("columns")
    if cols is None or cols == {}:
        return None
    if not isinstance(cols, dict):
        raise _problem(display, f"not a dbt manifest: {where}.columns is not an object", _REBUILD)
    names = []
    for key, col in cols.items():
        name = col.get("name", key) if isinstance(col, dict) else key
        if not isinstance(name, str) or _CONTROL.search(name) or len(name) > 1024:
            raise _problem(display, f"not a dbt manifest: {where}.columns holds a column that is not a name", _REBUILD)
        names.append(name)
    return tuple(names)


def _node(uid: str, entry: Any, dbt: DbtProject, root: Path, display: str, project: str | None,
          adapter: str | None = None) -> DbtNode | None:
    where = f"nodes.{uid[:80]}"
    if not isinstance(entry, dict):
        raise _problem(display, f"not a dbt manifest: {where} is not an object", _REBUILD)
    kind = entry.get("resource_type")
    if kind not in (*REFABLE, "source"):
        return None
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    materialized = config.get("materialized") if isinstance(config.get("materialized"), str) else None
    if kind == "source":
        identifier = _text(entry, "identifier", where, display, required=False) or _text(entry, "name", where, display)
    else:
        identifier = _text(entry, "alias", where, display, required=False) or _text(entry, "name", where, display)
    file = _text(entry, "original_file_path", where, display, required=False) or "manifest.json"
    package = _text(entry, "package_name", where, display)
    # a package's files are under its install folder: named by package, as dbt's messages do
    shown_file = os.path.relpath(dbt.dir / file, root) if package == project else f"{package}:{file}"
    return DbtNode(
        unique_id=uid, resource_type=kind, package=package,
        name=_text(entry, "name", where, display), database=_text(entry, "database", where, display, required=False),
        schema=_text(entry, "schema", where, display, required=False), identifier=identifier,
        file=shown_file,
        source_name=_text(entry, "source_name", where, display) if kind == "source" else None,
        version=_text(entry, "version", where, display, required=False),
        latest_version=_text(entry, "latest_version", where, display, required=False),
        materialized=materialized,
        compiled_code=_text(entry, "compiled_code", where, display, required=False) if kind == "model" else None,
        columns=_columns(entry, where, display),
        checksum=_checksum(entry),
        quoted=_quoting(entry, adapter),
        depends_on=_depends_on(entry),
    )


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _quoting(entry: dict, adapter: str | None) -> tuple[bool, bool, bool]:
    """Which parts of the relation dbt quotes, read from the relation_name it wrote. A part is left unquoted only
    where dbt left it so and it is a plain name (letters, digits, _): anything else stays quoted, so a name from
    the artifact can never be read as SQL."""
    name = entry.get("relation_name")
    if not isinstance(name, str) or len(name) > 3 * 1024:
        return (True, True, True)
    try:
        table = exp.to_table(name, dialect=adapter if adapter in _SQLGLOT_ADAPTERS else None)
    except Exception:  # noqa: BLE001 - sqlglot's errors: a name it cannot read is quoted
        return (True, True, True)
    parts = (table.args.get("catalog"), table.args.get("db"), table.args.get("this"))
    return tuple(not (isinstance(p, exp.Identifier) and not p.quoted and _PLAIN.fullmatch(p.name)) for p in parts)


_SQLGLOT_ADAPTERS = {"duckdb", "postgres", "spark", "databricks", "snowflake", "bigquery", "trino", "redshift"}


def _checksum(entry: dict) -> str:
    found = entry.get("checksum")
    value = found.get("checksum") if isinstance(found, dict) else None
    return value[:128] if isinstance(value, str) else ""


def _depends_on(entry: dict) -> tuple[str, ...]:
    found = entry.get("depends_on")
    nodes = found.get("nodes") if isinstance(found, dict) else None
    return tuple(n for n in nodes if isinstance(n, str)) if isinstance(nodes, list) else ()


def load_manifest(dbt: DbtProject, root: Path) -> tuple[Manifest | None, Issue | None]:
    """dbt's manifest (None, None when dbt has not written one), with catalog.json's columns where the
    manifest documents none; or None and why it cannot be used (KPI142)."""
    path = dbt.manifest_path
    display = os.path.relpath(path, root)
    if not path.exists():
        return None, None
    try:
        return _manifest(dbt, root, path, display), None
    except ArtifactProblem as problem:
        return None, problem.issue


def _manifest(dbt: DbtProject, root: Path, path: Path, display: str) -> Manifest:
    data = _read_json(path, display, "dbt's manifest.json")
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        raise _problem(display, "not a dbt manifest: no `metadata` object", _REBUILD)
    meta = data["metadata"]
    version = meta.get("dbt_schema_version")
    dbt_version = meta.get("dbt_version") if isinstance(meta.get("dbt_version"), str) else "unknown"
    if version != SUPPORTED_MANIFEST:
        raise _problem(display, f"dbt's manifest is schema {shown(version, 80)} (dbt {shown(dbt_version, 20)}); kpimetrics "
                                f"reads {SUPPORTED_MANIFEST} (dbt {SUPPORTED_DBT})",
                       f"run `dbt parse` with dbt {SUPPORTED_DBT}")
    out = Manifest(path, display, dbt_version,
                   meta.get("adapter_type") if isinstance(meta.get("adapter_type"), str) else None,
                   meta.get("generated_at") if isinstance(meta.get("generated_at"), str) else None,
                   meta.get("project_name") if isinstance(meta.get("project_name"), str) else None)
    for section in ("nodes", "sources"):
        entries = data.get(section, {})
        if not isinstance(entries, dict):
            raise _problem(display, f"not a dbt manifest: `{section}` is not an object", _REBUILD)
        for uid, entry in entries.items():
            node = _node(str(uid), entry, dbt, root, display, out.project_name, out.adapter_type)
            if node is None:
                continue
            if node.resource_type == "source":
                out.sources[(node.source_name, node.name)] = node
            else:
                out.refable.setdefault(node.name, []).append(node)
    _add_catalog(out, dbt, root)
    return out


def _add_catalog(out: Manifest, dbt: DbtProject, root: Path) -> None:
    """Columns from catalog.json (`dbt docs generate`): what the warehouse had when dbt last looked. They are
    added to the documented ones, which a team often writes for a few columns only (so documented columns
    alone would call a real column a typo)."""
    path = dbt.catalog_path
    if not path.exists():
        return
    display = os.path.relpath(path, root)
    data = _read_json(path, display, "dbt's catalog.json")
    if not isinstance(data, dict):
        raise _problem(display, "not a dbt catalog: not an object", "run `dbt docs generate` again")
    found: dict[str, tuple[str, ...]] = {}
    for section in ("nodes", "sources"):
        entries = data.get(section) or {}
        if not isinstance(entries, dict):
            raise _problem(display, f"not a dbt catalog: `{section}` is not an object", "run `dbt docs generate` again")
        for uid, entry in entries.items():
            if isinstance(entry, dict) and isinstance(entry.get("columns"), dict):
                cols = _columns(entry, f"{section}.{str(uid)[:80]}", display)
                if cols:
                    found[uid] = cols
    out.catalog = display
    for name, nodes in out.refable.items():
        out.refable[name] = [_with_columns(n, found) for n in nodes]
    out.sources = {k: _with_columns(n, found) for k, n in out.sources.items()}


def _with_columns(node: DbtNode, found: dict[str, tuple[str, ...]]) -> DbtNode:
    if node.unique_id not in found:
        return node
    documented = node.columns or ()
    known = {c.lower() for c in documented}
    return replace(node, columns=documented + tuple(c for c in found[node.unique_id] if c.lower() not in known),
                   cataloged=True)
