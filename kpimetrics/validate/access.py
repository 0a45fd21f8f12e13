"""Project SQL cannot read the machine (SPEC §11, KPI120-129).

A KPI's published values are read by every BI user of the output schema, so SQL that reads a file, the
environment or the network of the machine that runs the warehouse would publish what it read (a CI
secret included). Each snippet and model is checked here on its sqlglot tree, with the deny lists of
every engine at once: a project compiles to any of them (a `pg_read_file` written in a DuckDB project
still runs on a PostgreSQL profile), and none of these names is a function a KPI needs.

Only reading *files* can be allowed, by the profile's `allowed_paths` (DuckDB and Spark): a path written as
a string literal under one of them passes. The environment, server files, the network and SQL run from a
string never do. On DuckDB the run enforces the same list again (adapters/duckdb.py), so SQL that got past
these names still cannot read outside it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from sqlglot import exp

from ..errors import Issue, Location, error
from ..loader import ProjectDef
from .context import Context, kpi_label

# What a denied name does, its code, and what to do instead.
FILES, TABLE_PATH, NETWORK, ENVIRONMENT, SERVER_FILES, CODE, PATH_NOT_LITERAL = (
    "KPI120", "KPI121", "KPI122", "KPI123", "KPI124", "KPI125", "KPI126")

_READS = {
    FILES: "reads files on the machine that runs the warehouse",
    NETWORK: "reaches the network from the warehouse",
    ENVIRONMENT: "reads the environment or the settings of the machine that runs the warehouse",
    SERVER_FILES: "reads or writes files on the database server",
    CODE: "runs code or SQL text that kpimetrics cannot check",
}
_FIXES = {
    FILES: "load the data into a table (a source, or `kpimetrics seed`), or list its folder under `allowed_paths` "
           "in the profile (DuckDB, Spark)",
    NETWORK: "load the data into the warehouse and declare it as a source",
    ENVIRONMENT: "pass values in with var() or env_var() in a model, where secrets are masked",
    SERVER_FILES: "load the data into a table and declare it as a source; the README lists the privileges a run needs",
    CODE: "write the SQL itself in a model (models/*.sql)",
}

# Functions whose first argument is a path: files under `allowed_paths` may be read.
PATH_FUNCTIONS = frozenset("""
    read_text read_blob read_csv read_csv_auto read_parquet parquet_scan read_json read_json_auto read_json_objects
    read_json_objects_auto read_ndjson read_ndjson_auto read_ndjson_objects glob sniff_csv parquet_metadata
    parquet_schema parquet_file_metadata parquet_kv_metadata parquet_bloom_probe read_xlsx st_read st_read_meta
    sqlite_scan iceberg_scan iceberg_metadata iceberg_snapshots delta_scan read_avro read_duckdb read_files
""".split())

# Functions never allowed, by what they reach.
DENIED: dict[str, str] = {
    **dict.fromkeys("""
        dblink dblink_exec dblink_connect dblink_connect_u dblink_open dblink_fetch dblink_send_query
        dblink_get_result postgres_scan postgres_scan_pushdown postgres_query postgres_execute postgres_attach
        mysql_scan mysql_query mysql_execute sqlite_attach http_get http_post http_head
    """.split(), NETWORK),
    **dict.fromkeys("""
        getenv current_setting set_config duckdb_settings duckdb_secrets which_secret load_aws_credentials
    """.split(), ENVIRONMENT),
    **dict.fromkeys("""
        pg_read_file pg_read_binary_file pg_ls_dir pg_ls_logdir pg_ls_waldir pg_ls_tmpdir pg_ls_archive_statusdir
        pg_ls_logicalsnapdir pg_ls_logicalmapdir pg_ls_replslotdir pg_ls_summariesdir pg_stat_file
        pg_current_logfile lo_import lo_export pg_file_write pg_file_rename pg_file_unlink pg_file_sync pg_logdir_ls
    """.split(), SERVER_FILES),
    **dict.fromkeys("""
        query query_table json_execute_serialized_sql reflect java_method try_reflect query_to_xml
        query_to_xml_and_xmlschema query_to_xmlschema cursor_to_xml cursor_to_xmlschema table_to_xml
        table_to_xmlschema table_to_xml_and_xmlschema schema_to_xml schema_to_xmlschema
        schema_to_xml_and_xmlschema database_to_xml database_to_xmlschema database_to_xml_and_xmlschema
    """.split(), CODE),
}
# Relations that read the server's files or settings (PostgreSQL's system views).
DENIED_RELATIONS: dict[str, str] = {
    **dict.fromkeys(("pg_file_settings", "pg_hba_file_rules", "pg_ident_file_mappings", "pg_config"), SERVER_FILES),
    "pg_settings": ENVIRONMENT,
}
# sqlglot parses a few file readers into typed nodes rather than Anonymous calls.
_TYPED = {exp.ReadCSV: "read_csv", exp.ReadParquet: "read_parquet"}
# Spark's path-based tables: parquet.`/path`, csv.`...`
SPARK_FORMATS = frozenset("parquet csv json text orc avro binaryfile delta xml".split())
# A table named like a file: DuckDB reads it (a "replacement scan") when no table has that name.
_FILE_NAME = re.compile(r"[/\\]|^[A-Za-z][A-Za-z0-9+.-]+:|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|xlsx|xls|avro|orc|"
                        r"arrow|feather|db|duckdb|sqlite|sqlite3|gz|zst|zstd|bz2|xz|lz4|zip|tar)$", re.I)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # a scheme: http:, s3:, file:, hf: (one letter is a drive)
_GLOB = re.compile(r"[*?\[{]")
# A fast path only: every name above is written as a word of the text, and a path needs a quote or a `${`.
_NAMES = frozenset(PATH_FUNCTIONS | set(DENIED) | set(DENIED_RELATIONS) | set(_TYPED.values()))
_WORD = re.compile(r"[a-z_][a-z0-9_]*")
_QUOTES = re.compile(r"['\"`$]")


@dataclass(frozen=True)
class AllowedPaths:
    """The profile's `allowed_paths`, resolved: folders (every file under them), files, and URL prefixes."""

    folders: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    written: tuple[str, ...] = ()  # as the profile lists them, for messages

    @classmethod
    def resolve(cls, root: Path, entries: Sequence[str]) -> "AllowedPaths":
        """Each entry relative to the project folder; an existing file allows that file, anything else a folder."""
        folders: list[str] = []
        files: list[str] = []
        urls: list[str] = []
        for entry in entries:
            if _URL.match(entry):
                urls.append(entry)
                continue
            path = Path(os.path.normpath(root.absolute() / Path(entry).expanduser()))
            (files if path.is_file() else folders).append(str(path))
        return cls(tuple(folders), tuple(files), tuple(urls), tuple(entries))

    def allows(self, root: Path, written: str) -> bool:
        if _URL.match(written):
            return any(written.startswith(u if u.endswith("/") else u + "/") or written == u for u in self.urls)
        path = os.path.normpath(root.absolute() / Path(written).expanduser())
        fixed = _GLOB.split(path, maxsplit=1)[0]  # the part before any wildcard decides the folder
        if fixed != path:
            return any(fixed.startswith(f.rstrip(os.sep) + os.sep) for f in self.folders)
        return path in self.files or any(path.startswith(f.rstrip(os.sep) + os.sep) for f in self.folders)


Allowed = AllowedPaths | Callable[[], AllowedPaths] | None


def machine_access(project: ProjectDef, ctx: Context, allowed: Allowed = None) -> list[Issue]:
    """Every call or table in the project's SQL that reads the machine, with its file and line.

    `allowed` is the profile's `allowed_paths`, or a function giving them: asked only when a file is read,
    so a project that reads none never needs its profile to validate."""
    declared = {(schema.lower(), name) for (_, schema, name) in project.relations()}
    checker = _Checker(project.root, allowed, declared)
    issues: list[Issue] = []
    found: dict[int, list[tuple[str, str]]] = {}  # by tree: parse_snippet shares one tree per text, and texts repeat
    for kpi in project.kpis:
        for snippet in (*ctx.snippets(kpi), *kpi.target_expressions()):
            tree, _ = ctx.tree(snippet)
            if tree is None:
                continue
            if id(tree) not in found:
                found[id(tree)] = checker.problems(tree, snippet.text)
            for code, message in found[id(tree)]:  # ctx.loc reads YAML: only for a problem
                issues.append(error(code, f"{kpi_label(kpi)}: `{snippet.label}` {message}", ctx.loc(snippet),
                                    _FIXES.get(code)))
    for name, model_file in project.models.items():
        if model_file.sql is None:
            continue
        tree, _ = ctx.model_tree(name)
        if tree is None:
            continue
        for node, code, message in checker.located_problems(tree, model_file.sql):
            issues.append(error(code, f"model '{name}' {message}", Location(model_file.path, *_line_col(node)),
                                _FIXES.get(code)))
    issues.extend(_source_tables(project, checker))
    return issues


def _source_tables(project: ProjectDef, checker: "_Checker") -> list[Issue]:
    """A source table named like a file (`identifier: /etc/passwd`) is read as that file on DuckDB and Spark."""
    issues = []
    for source in project.sources:
        for table in source.tables:
            name = table.identifier or table.name
            if _FILE_NAME.search(name) and not checker.allows(name):
                field = "identifier" if table.identifier else "name"
                issues.append(error(TABLE_PATH, f"source '{source.name}' table '{table.name}' is named like a file "
                                                f"({name!r}): the warehouse would read that file as a table",
                                    table.value_loc(field) or table.loc, _FIXES[FILES]))
    # a relation named by dbt's manifest (an artifact: untrusted, SPEC §11) that a KPI or model reads
    manifest = project.manifest
    for node in (manifest.nodes() if manifest is not None else ()):
        name = node.identifier
        if not node.ephemeral and _FILE_NAME.search(name) and not checker.allows(name) and _read(project, node):
            issues.append(error(TABLE_PATH, f"dbt's {node.label} is named like a file ({name!r}) in "
                                            f"{manifest.display}: the warehouse would read that file as a table",
                                Location(manifest.display, 1, 1), _FIXES[FILES]))
    return issues


def _read(project: ProjectDef, node) -> bool:
    """Whether a KPI's model or a model reads a relation dbt built."""
    from .models import model_ref

    if any(node in mf.dbt_nodes for mf in project.models.values()):
        return True
    for kpi in project.kpis:
        ref = model_ref(kpi) if isinstance(kpi.model, str) else None
        if ref is not None and ref.resolve(project).node == node:
            return True
    return False


class _Checker:
    def __init__(self, root: Path, allowed: Allowed, declared: set[tuple[str, str]] = frozenset()):
        self.root = root
        self._allowed = allowed
        self.declared = declared  # (schema, table) of the sources: json.events is a table when a source says so

    @property
    def allowed(self) -> AllowedPaths:
        if callable(self._allowed):
            self._allowed = self._allowed()
        return self._allowed or AllowedPaths()

    def allows(self, path: str) -> bool:
        return self.allowed.allows(self.root, path)

    def problems(self, tree: exp.Expression, text: str) -> list[tuple[str, str]]:
        return [(code, message) for _, code, message in self.located_problems(tree, text)]

    def located_problems(self, tree: exp.Expression, text: str) -> Iterator[tuple[exp.Expression, str, str]]:
        if not _QUOTES.search(text) and _NAMES.isdisjoint(_WORD.findall(text.lower())):
            return  # no denied name, no quoted name or string: nothing in the tree can be one (most snippets)
        for node in tree.walk():
            if isinstance(node, exp.Func):
                name = _function_name(node)
                if name in PATH_FUNCTIONS:
                    yield from self._path_call(node, name)
                elif name in DENIED:
                    yield node, DENIED[name], f"calls `{name}`, which {_READS[DENIED[name]]}"
            elif isinstance(node, exp.QueryTransform):
                yield node, CODE, f"runs a script (TRANSFORM ... USING), which {_READS[CODE]}"
            elif isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
                yield from self._table(node)
        yield from _substitutions(tree, text)

    def _path_call(self, node: exp.Func, name: str) -> Iterator[tuple[exp.Expression, str, str]]:
        paths = _literal_paths(_first_argument(node))
        if paths is None:
            yield node, PATH_NOT_LITERAL, (f"calls `{name}` with a path that is not a string literal: it {_READS[FILES]}, "
                                           "and only a written path can be checked against `allowed_paths`")
            return
        for path in paths:
            if not self.allows(path):
                code = NETWORK if _URL.match(path) and not path.lower().startswith("file:") else FILES
                yield node, code, f"calls `{name}('{path}')`, which {_READS[code]}{self._outside()}"

    def _table(self, table: exp.Table) -> Iterator[tuple[exp.Expression, str, str]]:
        name, db = table.name, table.db.lower()
        spark_path = db in SPARK_FORMATS and table.this.quoted and not table.catalog and (db, name) not in self.declared
        if _FILE_NAME.search(name) or spark_path:
            if not self.allows(name):
                code = NETWORK if _URL.match(name) and not name.lower().startswith("file:") else TABLE_PATH
                yield table, code, (f"reads the file {name!r} as a table, which "
                                    f"{_READS[NETWORK if code == NETWORK else FILES]}{self._outside()}")
        elif name.lower() in DENIED_RELATIONS and db in ("", "pg_catalog"):
            code = DENIED_RELATIONS[name.lower()]
            yield table, code, f"reads `{name}`, which {_READS[code]}"

    def _outside(self) -> str:
        listed = self.allowed.written
        return f", outside `allowed_paths` ({', '.join(listed)})" if listed else ", and the profile lists no `allowed_paths`"


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    return _TYPED.get(type(node), "")


def _first_argument(node: exp.Func) -> exp.Expression | None:
    if isinstance(node, exp.Anonymous):
        return node.expressions[0] if node.expressions else None
    first = node.args.get("this")
    if isinstance(first, exp.Expression):
        return first
    return node.expressions[0] if node.expressions else None


def _literal_paths(arg: exp.Expression | None) -> list[str] | None:
    """The path(s) a call reads: a string literal or a list of them; None when it is computed."""
    if isinstance(arg, exp.Literal) and arg.is_string:
        return [arg.this]
    if isinstance(arg, (exp.Array, exp.Tuple)) and arg.expressions and all(
            isinstance(e, exp.Literal) and e.is_string for e in arg.expressions):
        return [e.this for e in arg.expressions]
    return None


_SUBSTITUTION = re.compile(r"\$\{")


def _substitutions(tree: exp.Expression, text: str) -> Iterator[tuple[exp.Expression, str, str]]:
    """Spark replaces `${env:NAME}`, `${system:...}` and `${spark...}` in the SQL *text* before parsing it, so a
    string literal holding one publishes an environment variable. The text is what Spark sees: looked for there."""
    match = _SUBSTITUTION.search(text)
    if match is None:
        return
    line = text.count("\n", 0, match.start()) + 1
    anchor = exp.Literal.string("${")
    anchor.meta.update(line=line, col=match.start() - text.rfind("\n", 0, match.start()))
    yield anchor, ENVIRONMENT, ("holds `${`, which Spark replaces with an environment variable or a setting "
                                "(`${env:NAME}`) before running the SQL")


def _line_col(node: exp.Expression) -> tuple[int, int]:
    """Where a node was written: its own position, else the first position inside it, else line 1."""
    for sub in node.walk():
        meta = sub.meta
        if meta.get("line"):
            width = meta["end"] - meta["start"] if "end" in meta and "start" in meta else 0
            return meta["line"], max(1, meta.get("col", 1) - width)
    return 1, 1
