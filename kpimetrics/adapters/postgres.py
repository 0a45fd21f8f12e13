"""PostgreSQL, through psycopg 3.

The connection runs in autocommit mode: PostgreSQL aborts a transaction at its
first error, so staging (where one KPI may fail alone) happens outside any
transaction, and only publishing is wrapped in an explicit BEGIN ... COMMIT.

A run takes a session-level advisory lock on its output schema: a second run on
the same schema fails at once, naming the lock and the process holding it.
The password comes from the profile (through env_var()) and is scrubbed from
every message this module raises.
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlglot import exp

from ..config import PostgresOutput
from ..errors import WarehouseError
from . import Capabilities

DEFAULT_SCHEMA = "public"

# Settings of kpimetrics' own session (set_config(..., false): this connection only, the server's defaults are
# untouched). jit: PostgreSQL compiles a plan with LLVM when its cost passes jit_above_cost, and a fused scan's
# statement is one huge plan: at 3x10^6 orders EXPLAIN ANALYZE showed 320 generated functions compiled in
# 24.6 s of a 93.7 s statement on a loaded machine (about 1.3 s at 10^6 on a quiet one), to run expressions over
# a few million rows once (bench/RESULTS.md, PostgreSQL).
SESSION_SETTINGS: dict[str, str] = {"jit": "off"}


class PostgresAdapter:
    dialect = "postgres"

    def __init__(self, output: PostgresOutput, project_root: Path, timezone: str):
        self.output = output
        self._password = output.password or ""
        self.capabilities = Capabilities(publish="transaction", default_schema=output.schema_ or DEFAULT_SCHEMA)
        params: dict[str, Any] = {
            "host": output.host, "port": output.port, "dbname": output.dbname,
            "connect_timeout": output.connect_timeout, "application_name": "kpimetrics",
        }
        params |= {k: v for k, v in (("user", output.user), ("password", output.password),
                                     ("sslmode", output.sslmode)) if v}
        try:
            self.con = psycopg.connect(**params, autocommit=True)
        except psycopg.Error as exc:
            raise WarehouseError(f"cannot connect to PostgreSQL at {self._where()}: {self._clean(exc)}") from None
        try:
            # TIMESTAMPTZ values are cut into periods in the calendar's time zone
            self.fetchall("SELECT set_config('TimeZone', %s, false)", [timezone])
        except WarehouseError as exc:
            self.close()
            raise WarehouseError(f"PostgreSQL does not know the calendar time zone '{timezone}': {exc}") from None
        for name, value in SESSION_SETTINGS.items():
            self.fetchall("SELECT set_config(%s, %s, false)", [name, value])
        if output.schema_:  # unqualified sources are looked up in the profile's schema
            self.fetchall("SELECT set_config('search_path', %s, false)", [sql.Identifier(output.schema_).as_string(self.con)])

    # --- messages ----------------------------------------------------------------

    def _where(self) -> str:
        user = f"{self.output.user}@" if self.output.user else ""
        return f"{user}{self.output.host}:{self.output.port}/{self.output.dbname}"

    def _clean(self, exc: BaseException | str) -> str:
        """The server's message, first line and detail, without the password."""
        text = str(exc).strip()
        diag = getattr(exc, "diag", None)
        detail = getattr(diag, "message_detail", None) if diag else None
        if detail and detail not in text:
            text = f"{text} ({detail})"
        con = getattr(self, "con", None)
        if con is not None and con.broken:  # the server ended the session, or the network dropped it
            text = f"lost the connection to PostgreSQL at {self._where()} ({text}); the server rolls back what was not committed"
        if self._password:
            text = text.replace(self._password, "****")
        return text

    # --- statements --------------------------------------------------------------------

    def execute(self, sql_text: str, params: list[Any] | None = None) -> None:
        try:
            self.con.execute(sql_text, params)
        except psycopg.Error as exc:
            raise WarehouseError(self._clean(exc)) from None

    def fetchall(self, sql_text: str, params: list[Any] | None = None) -> list[tuple]:
        try:
            cur = self.con.execute(sql_text, params)
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise WarehouseError(self._clean(exc)) from None

    def insert_rows(self, table_sql: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Parameterised insert (values are never spliced into SQL text)."""
        if not rows:
            return
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.SQL(table_sql),  # rendered by sqlglot from quoted identifiers
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        try:
            with self.con.cursor() as cur:
                cur.executemany(statement, rows)
        except psycopg.Error as exc:
            raise WarehouseError(self._clean(exc)) from None

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        try:
            if self.con.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.con.execute("ROLLBACK")
        except psycopg.Error:
            pass

    # --- the run lock ----------------------------------------------------------------

    def lock(self, schema: str) -> None:
        """Take the session-level advisory lock of an output schema, or fail at once naming its holder."""
        name = f"kpimetrics:{self.output.dbname}.{schema}"
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        if self.fetchall("SELECT pg_try_advisory_lock(%s)", [key])[0][0]:
            return
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        holders = self.fetchall(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid::bigint = %s AND objid::bigint = %s",
            [unsigned >> 32, unsigned & 0xFFFFFFFF],
        )
        holder = f" held by PostgreSQL backend pid {holders[0][0]}" if holders else ""
        raise WarehouseError(
            f"another kpimetrics run is writing output schema '{schema}' of database '{self.output.dbname}': "
            f"the advisory lock '{name}' (pg_advisory_lock key {key}) is{holder or ' taken'}. "
            "Wait for that run to finish and retry (a killed run's lock is released when its connection closes)."
        )

    # --- introspection ----------------------------------------------------------------

    def tables(self, schema: str) -> list[str]:
        return [name for name, _ in self.relations(schema)]

    def relations(self, schema: str) -> list[tuple[str, str]]:
        """(name, 'table' | 'view') of every relation in a schema."""
        rows = self.fetchall(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = %s", [schema]
        )
        return [(r[0], "view" if "VIEW" in r[1].upper() else "table") for r in rows]

    def columns(self, schema: str | None, table: str) -> list[str] | None:
        rows = self.fetchall(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            [schema or self.capabilities.default_schema, table],
        )
        return [r[0] for r in rows] or None

    # --- seeds -------------------------------------------------------------------------

    def load_csv(self, path: Path, schema: str, table: str) -> int:
        """Replace schema.table with the CSV's rows, typed as DuckDB reads them on every engine.

        DuckDB sniffs the column types and parses the values; it writes them back as a plain
        ISO-formatted CSV that COPY reads, so dates in any format DuckDB understands arrive typed.
        """
        import duckdb  # here, not at the top: only seeds read it, and importing it cost a run 0.12 s of CPU

        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            rel = con.read_csv(str(path), header=True)
            columns = [(name, _pg_type(str(t))) for name, t in zip(rel.columns, rel.types)]
            with tempfile.TemporaryDirectory(prefix="kpimetrics-seed-") as tmp:
                clean = Path(tmp) / "seed.csv"
                rel.write_csv(str(clean), header=True)
                return self._copy_csv(clean, schema, table, columns)
        finally:
            con.close()

    def _copy_csv(self, path: Path, schema: str, table: str, columns: list[tuple[str, str]]) -> int:
        target = sql.Identifier(schema, table)
        ddl = sql.SQL("CREATE TABLE {} ({})").format(
            target, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns))
        copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv, HEADER true)").format(target)
        try:
            with self.con.transaction(), self.con.cursor() as cur:
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
                cur.execute(ddl)
                with cur.copy(copy) as writer, open(path, "rb") as src:
                    while block := src.read(1 << 16):
                        writer.write(block)
                return cur.rowcount if cur.rowcount >= 0 else self._count(target)
        except psycopg.Error as exc:
            raise WarehouseError(f"cannot load {path.name} into {schema}.{table}: {self._clean(exc)}") from None

    def _count(self, target: sql.Composable) -> int:
        return self.fetchall(sql.SQL("SELECT count(*) FROM {}").format(target).as_string(self.con))[0][0]

    def describe(self) -> str:
        version = self.con.info.server_version
        return f"postgres {version // 10000}.{version % 10000} at {self._where()} (psycopg {psycopg.__version__})"

    def close(self) -> None:
        try:
            self.con.close()
        except psycopg.Error:
            pass


def _pg_type(duckdb_type: str) -> str:
    """A DuckDB column type as PostgreSQL spells it (DOUBLE -> DOUBLE PRECISION, VARCHAR -> VARCHAR ...)."""
    return exp.DataType.build(duckdb_type, dialect="duckdb").sql(dialect="postgres")
