"""dbt artifacts written by the tests themselves, in the shape dbt 1.8-1.11 writes (manifest v12), for the fast
tests of how kpimetrics reads them: a handful of nodes over tables the test made. The end-to-end tests with real
dbt (tests/test_dbt_project.py) check the same reading against artifacts dbt wrote.
"""
from __future__ import annotations

import json
from typing import Any

V12 = "https://schemas.getdbt.com/dbt/manifest/v12.json"
DBT_PROJECT_YML = "name: shop\nversion: '1.0'\nprofile: acme\n"


def node(name: str, *, kind: str = "model", schema: str = "main", database: str = "wh", alias: str | None = None,
         columns: list[str] | None = None, materialized: str = "table", compiled_code: str | None = None,
         package: str = "shop", version: Any = None, latest_version: Any = None) -> tuple[str, dict]:
    """One node of `nodes`, keyed by its unique_id."""
    uid = f"{kind}.{package}.{name}" + (f".v{version}" if version is not None else "")
    entry = {
        "resource_type": kind, "package_name": package, "name": name, "database": database, "schema": schema,
        "alias": alias or (f"{name}_v{version}" if version is not None else name),
        "original_file_path": f"{'seeds' if kind == 'seed' else 'models'}/{name}.{'csv' if kind == 'seed' else 'sql'}",
        "config": {"materialized": materialized}, "version": version, "latest_version": latest_version,
        "columns": {c: {"name": c, "description": ""} for c in columns or []},
    }
    if compiled_code is not None:
        entry["compiled_code"] = compiled_code
    return uid, entry


def source(source_name: str, name: str, *, schema: str = "main", database: str = "wh", identifier: str | None = None,
           columns: list[str] | None = None, package: str = "shop") -> tuple[str, dict]:
    uid = f"source.{package}.{source_name}.{name}"
    return uid, {
        "resource_type": "source", "package_name": package, "source_name": source_name, "name": name,
        "identifier": identifier or name, "database": database, "schema": schema,
        "original_file_path": "models/sources.yml",
        "columns": {c: {"name": c, "description": ""} for c in columns or []},
    }


def manifest(*nodes: tuple[str, dict], adapter: str = "duckdb", schema_version: str = V12,
             dbt_version: str = "1.11.0") -> str:
    doc = {
        "metadata": {"dbt_schema_version": schema_version, "dbt_version": dbt_version, "adapter_type": adapter,
                     "generated_at": "2026-12-01T00:00:00Z", "project_name": "shop"},
        "nodes": {uid: e for uid, e in nodes if e["resource_type"] != "source"},
        "sources": {uid: e for uid, e in nodes if e["resource_type"] == "source"},
    }
    return json.dumps(doc, indent=2)


def catalog(*entries: tuple[str, list[str]]) -> str:
    """catalog.json (`dbt docs generate`): each (unique_id, its columns in the warehouse)."""
    nodes = {uid: {"metadata": {"type": "BASE TABLE"}, "unique_id": uid,
                   "columns": {c: {"type": "VARCHAR", "index": i + 1, "name": c} for i, c in enumerate(cols)}}
             for uid, cols in entries if not uid.startswith("source.")}
    sources = {uid: {"metadata": {"type": "BASE TABLE"}, "unique_id": uid,
                     "columns": {c: {"type": "VARCHAR", "index": i + 1, "name": c} for i, c in enumerate(cols)}}
               for uid, cols in entries if uid.startswith("source.")}
    return json.dumps({"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/catalog/v1.json"},
                       "nodes": nodes, "sources": sources, "errors": None})
