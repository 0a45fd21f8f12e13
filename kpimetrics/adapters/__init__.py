"""Warehouse adapters: one small protocol, one module per engine, a plain registry.

Engines differ by data (the flags on `Capabilities`), not by subclass trees.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ..config import DuckDBOutput, PostgresOutput, SparkOutput
from ..errors import ConfigError


# How a run publishes its output tables atomically (publish.PUBLISHERS): one multi-table transaction, or,
# on an engine without those, versioned tables behind views that one pointer view swaps.
Publish = Literal["transaction", "versioned_views"]


@dataclass(frozen=True)
class Capabilities:
    publish: Publish
    default_schema: str
    # a run's small staging relations (the recompute ranges, the view derived KPIs read) as temporary views of the
    # session, not as catalog objects: where each CREATE, INSERT and DROP of a catalog object is a metastore round
    # trip (Spark), and a killed run's session takes them with it
    session_staging: bool = False
    # a run's staged rows (the values each scan and derived KPI computes, the scans' pre-aggregates) computed at once
    # and kept in the session behind a temporary view (`Adapter.stage`), not written to tables: a table's CREATE,
    # INSERT and DROP are each a file commit and a metastore round trip (Spark)
    session_rows: bool = False


class Adapter(Protocol):
    dialect: str
    capabilities: Capabilities

    def execute(self, sql: str, params: list[Any] | None = None) -> None: ...
    def fetchall(self, sql: str, params: list[Any] | None = None) -> list[tuple]: ...
    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def lock(self, schema: str) -> None: ...  # one run at a time on an output schema: take it, or fail naming the holder
    def columns(self, schema: str | None, table: str) -> list[str] | None: ...
    def load_csv(self, path: Path, schema: str, table: str) -> int: ...
    def insert_rows(self, table_sql: str, columns: list[str], rows: list[list[Any]]) -> None: ...
    # where capabilities.session_rows: the rows of query `sql`, computed now, as temporary view `name` of the session
    def stage(self, name: str, sql: str) -> None: ...
    def tables(self, schema: str) -> list[str]: ...
    def relations(self, schema: str) -> list[tuple[str, str]]: ...
    def describe(self) -> str: ...
    def close(self) -> None: ...


def connect(output, project_root: Path, timezone: str, seeds: Path | None = None) -> Adapter:
    """Open the warehouse a profile output describes. `seeds`: the project's seeds folder (`paths.seeds`), which
    an embedded engine must be allowed to read for `seed`."""
    if isinstance(output, DuckDBOutput):
        from .duckdb import DuckDBAdapter

        return DuckDBAdapter(output, project_root, timezone, seeds)
    if isinstance(output, PostgresOutput):
        from .postgres import PostgresAdapter

        return PostgresAdapter(output, project_root, timezone)
    if isinstance(output, SparkOutput):
        from .spark import SparkAdapter

        return SparkAdapter(output, project_root, timezone)
    raise ConfigError(f"unknown warehouse type {type(output).__name__}")
