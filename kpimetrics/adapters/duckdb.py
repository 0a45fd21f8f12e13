"""DuckDB, the embedded default.

DuckDB lets one process write a database file (or several read it); a second
writer fails to take the file lock, which we report naming the lock.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from ..config import DuckDBOutput
from ..errors import WarehouseError
from ..validate.access import AllowedPaths
from . import Capabilities

INSERT_PARAMETERS = 2000  # parameters per INSERT of insert_rows: about 100 rows of kpi_catalog, the fastest size measured


class DuckDBAdapter:
    dialect = "duckdb"
    capabilities = Capabilities(publish="transaction", default_schema="main")

    def __init__(self, output: DuckDBOutput, project_root: Path, timezone: str, seeds: Path | None = None):
        self.path = output.path
        if self.path != ":memory:" and not Path(self.path).is_absolute():
            self.path = str((project_root / self.path).resolve())
        config: dict[str, Any] = {}
        if output.memory_limit:
            config["memory_limit"] = output.memory_limit
        if output.threads:
            config["threads"] = output.threads
        # a mistyped path makes DuckDB create an empty file: `debug` and `run` say so (describe(), KPI098)
        self.created = self.path != ":memory:" and not Path(self.path).exists()
        try:
            self.con = duckdb.connect(self.path, config=config)
        except duckdb.IOException as exc:
            text = str(exc)
            if "lock" in text.lower():
                pid = re.search(r"PID (\d+)", text)
                holder = f" (held by process {pid.group(1)})" if pid else ""
                raise WarehouseError(
                    f"the DuckDB file {self.path} is locked by another process{holder}: DuckDB allows one writer "
                    "at a time. Wait for the other kpimetrics run (or close the tool reading the file) and retry."
                ) from None
            raise WarehouseError(f"cannot open DuckDB database {self.path}: {text}") from None
        except duckdb.Error as exc:
            raise WarehouseError(f"cannot open DuckDB database {self.path}: {exc}") from None
        self._close_external_access(output.allowed_paths, project_root, seeds or project_root / "seeds")
        # TIMESTAMPTZ values are cut into periods in the calendar's time zone
        self.con.execute(f"SET TimeZone = '{_quote(timezone)}'")
        # DuckDB draws its own progress bar on stdout for a statement that runs over two seconds, even when stdout
        # is a pipe and under `run -q`: the run shows one of its own, and a CI log must not fill with DuckDB's
        self.con.execute("SET enable_progress_bar = false")
        if output.schema_:
            self.capabilities = Capabilities(publish="transaction", default_schema=output.schema_)

    def _close_external_access(self, allowed_paths: list[str], project_root: Path, seeds: Path) -> None:
        """Project SQL cannot read the machine (SPEC §11): external access off, but for the profile's
        `allowed_paths`, the project's seeds/ (`seed` reads them) and what DuckDB allows itself (this file, its
        WAL and temporary folder), so SQL that got past the compile-time check (validate/access.py; a view made
        outside the project, say) cannot read files, the environment or the network either. The configuration is
        then locked, so no SQL can turn it back on; the settings a connection sets itself stay open.

        Extensions cannot be loaded once access is off: those installed are loaded first, so SQL that needs one
        works as before. DuckDB shares one database per file within a process, and its settings with it: a
        second connection while the first is open finds the database closed and locked already, as it should be."""
        locked, external = self.con.execute(
            "SELECT current_setting('lock_configuration'), current_setting('enable_external_access')").fetchone()
        if locked and external:  # locked open by other code of this process: it cannot be closed any more
            self.close()
            raise WarehouseError(f"the DuckDB database {self.path} is already open in this process with external "
                                 "access on and its configuration locked; kpimetrics needs external access off")
        if locked:
            return
        root = project_root.resolve()
        allowed = AllowedPaths.resolve(root, allowed_paths)
        folders = [*allowed.folders, str(seeds.resolve()), *allowed.urls]
        try:
            for (name,) in self.con.execute(
                    "SELECT extension_name FROM duckdb_extensions() WHERE installed AND NOT loaded").fetchall():
                try:
                    self.con.execute(f'LOAD "{_quote_ident(name)}"')
                except duckdb.Error:
                    pass  # an extension that does not load fails as before, in the SQL that needs it
            self.con.execute("SET allowed_directories = ?", [[f.rstrip("/\\") + "/" for f in folders]])
            self.con.execute("SET allowed_paths = ?", [list(allowed.files)])
            self.con.execute("SET allowed_configs = ['TimeZone', 'enable_progress_bar']")  # set below, and per connection
            self.con.execute("SET enable_external_access = false")
            self.con.execute("SET lock_configuration = true")
        except duckdb.Error as exc:
            self.close()
            raise WarehouseError(f"cannot turn off external access on DuckDB database {self.path}: {exc}") from None

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        with _warehouse_errors():
            self.con.execute(sql, params or [])

    def fetchall(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        with _warehouse_errors():
            return self.con.execute(sql, params or []).fetchall()

    def insert_rows(self, table_sql: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Parameterised multi-row insert (values are never spliced into SQL text): one `VALUES (?, ..), (?, ..)`
        statement per chunk of rows, not executemany, which runs a statement per row (15 catalog rows: 10 ms
        against 3). DuckDB binds each parameter to its target column's type, as executemany does."""
        if not rows:
            return
        cols = ", ".join(f'"{_quote_ident(c)}"' for c in columns)
        marks = "(" + ", ".join("?" for _ in columns) + ")"
        step = max(1, INSERT_PARAMETERS // len(columns))
        with _warehouse_errors():
            for i in range(0, len(rows), step):
                chunk = rows[i:i + step]
                self.con.execute(f"INSERT INTO {table_sql} ({cols}) VALUES {', '.join([marks] * len(chunk))}",
                                 [v for row in chunk for v in row])

    def tables(self, schema: str) -> list[str]:
        return [name for name, _ in self.relations(schema)]

    def relations(self, schema: str) -> list[tuple[str, str]]:
        """(name, 'table' | 'view') of every relation in a schema."""
        rows = self.con.execute(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = ?", [schema]
        ).fetchall()
        return [(r[0], "view" if "VIEW" in r[1].upper() else "table") for r in rows]

    def begin(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def commit(self) -> None:
        self.con.execute("COMMIT")

    def rollback(self) -> None:
        try:
            self.con.execute("ROLLBACK")
        except duckdb.Error:
            pass

    def lock(self, schema: str) -> None:
        """Nothing to take: the file lock DuckDB holds since connect() already admits one writer."""

    def columns(self, schema: str | None, table: str) -> list[str] | None:
        rows = self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [schema or self.capabilities.default_schema, table],
        ).fetchall()
        return [r[0] for r in rows] or None

    def load_csv(self, path: Path, schema: str, table: str) -> int:
        self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{_quote_ident(schema)}"')
        target = f'"{_quote_ident(schema)}"."{_quote_ident(table)}"'
        self.con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM read_csv(?, header = true, auto_detect = true)", [str(path.resolve())])
        return self.con.execute(f"SELECT count(*) FROM {target}").fetchone()[0]

    def describe(self) -> str:
        created = " (a new, empty file: it did not exist)" if self.created else ""
        return f"duckdb {duckdb.__version__} at {self.path}{created}"

    def close(self) -> None:
        try:
            self.con.close()
        except duckdb.Error:
            pass


@contextmanager
def _warehouse_errors():
    """DuckDB's errors as WarehouseError, as the other adapters raise theirs: a failing query is the
    warehouse's problem (exit 1 with its message), not a bug in kpimetrics. An interrupt stays one."""
    try:
        yield
    except duckdb.InterruptException:
        raise
    except duckdb.PermissionException as exc:  # the reason on the first line, which a run's summary shows
        first, newline, rest = str(exc).partition("\n")
        raise WarehouseError(f"{first} (kpimetrics turns DuckDB's external access off: a run reads only the "
                             f"warehouse and the files under the profile's `allowed_paths`){newline}{rest}") from None
    except duckdb.Error as exc:
        raise WarehouseError(str(exc)) from None


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _quote_ident(text: str) -> str:
    return text.replace('"', '""')
