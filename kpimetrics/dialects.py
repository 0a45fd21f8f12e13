"""Rendering trees for each target dialect, and the few engine fixes sqlglot needs."""
from __future__ import annotations

from sqlglot import exp

RUNNABLE = ("duckdb", "postgres", "spark")
COMPILE_ONLY = ("snowflake", "bigquery", "trino", "databricks")


def generate(tree: exp.Expression, dialect: str, pretty: bool = False) -> str:
    return tree.sql(dialect=dialect, pretty=pretty, identify=False)
