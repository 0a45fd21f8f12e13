"""Hostile-input corpus: a `diff --state` folder (see corpus.py). FAULTS run in test_error_catalog; ELSEWHERE: code ->
where it is tested.

A state folder is another branch's target/, read as untrusted input. Its faults are STATE_FAULTS: files written
over the valid project, a state folder `state/` among them, run as `kpimetrics diff --state state` from the
project's folder (the path is relative to the working directory, which test_error_catalog does not set: so they
run in test_trust_state, on DuckDB, and those that reach SQL on PostgreSQL too). Each leaves every table of the
warehouse, sources included, as it was. The state's manifest is written by hand, as small as a diff reads:
net_revenue with a definition_hash the project's is not, so its earlier SQL is what the diff would run.
"""
from __future__ import annotations

import json

from corpus import ANY_LINE, Fault  # noqa: F401

STATE = ("--state", "state")
MANIFEST = "state/manifest.json"
SQL = "state/compiled/duckdb/net_revenue.sql"


def manifest(entry: dict | None = None, **top) -> str:
    """A state manifest: net_revenue (its entry updated by `entry`) compiled for DuckDB."""
    net = {"definition_hash": "0000000000000000", "compiled_sql": {"duckdb": "target/" + SQL.removeprefix("state/")}}
    return json.dumps({"manifest_schema_version": 1, "kpis": {"net_revenue": net | (entry or {})}, **top})


# A KPI's compiled SQL as kpimetrics writes it: the rows of kpi_values (period_start, value, grain, dimension, ...)
def earlier_sql(select: str = "SELECT sum(amount) FROM main.orders", with_: str = "") -> str:
    return (f"-- kpimetrics: kpi net_revenue (measure), grains: month\n{with_}"
            f"SELECT 'month' AS grain, '' AS dimension, DATE '2026-02-01' AS period_start, ({select}) AS value\n")


def state_fault(code: str, files: dict[str, str | bytes], path: str, line: int, message: str) -> Fault:
    files = {MANIFEST: manifest(), SQL: earlier_sql()} | files
    return Fault(code, {k: v for k, v in files.items() if v is not None}, path, line, message, args=STATE,
                 command="diff")


NESTED_70 = json.loads("[" * 70 + "]" * 70)  # within what json reads, past what a manifest holds
DML_CTE = earlier_sql(with_="WITH d AS (\n  DELETE FROM main.orders RETURNING *\n)\n", select="SELECT count(*) FROM d")  # line 3: the table it deletes from

STATE_FAULTS: list[Fault] = [
    # the folder and its manifest
    state_fault("KPI130", {MANIFEST: None}, MANIFEST, 0, "no manifest.json there"),
    state_fault("KPI131", {MANIFEST: '{"kpis": {"net_revenue": \n  {"definition_hash": }}}'}, MANIFEST, 2,
                "not a kpimetrics manifest: not JSON"),
    state_fault("KPI131", {MANIFEST: b'{"kpis": {}}\n{"x": "caf\xe9"}\n'}, MANIFEST, 2, "not UTF-8 text"),
    state_fault("KPI131", {MANIFEST: "[" * 100_000 + "]" * 100_000}, MANIFEST, 0, "nested too deeply"),
    state_fault("KPI131", {MANIFEST: '{"kpis": {"net_revenue": {"definition_hash": ' + "9" * 5000 + "}}}"}, MANIFEST, 0,
                "not a kpimetrics manifest"),  # past the digits Python turns into an int
    state_fault("KPI132", {MANIFEST: "[]"}, MANIFEST, 0, "expected a JSON object (a kpimetrics manifest), got a list"),
    state_fault("KPI132", {MANIFEST: '{"kpis": ["net_revenue"]}'}, MANIFEST, 0,
                "kpis: expected an object of KPIs by name, got a list"),
    state_fault("KPI132", {MANIFEST: '{"nodes": {}}'}, MANIFEST, 0, "kpis: missing"),
    state_fault("KPI132", {MANIFEST: '{"kpis": {"net_revenue": "SELECT 1"}}'}, MANIFEST, 0,
                "kpis.net_revenue: expected an object (the KPI's definition), got a string"),
    state_fault("KPI132", {MANIFEST: manifest({"compiled_sql": SQL})}, MANIFEST, 0,
                "kpis.net_revenue.compiled_sql: expected an object of file paths by dialect, got a string"),
    state_fault("KPI132", {MANIFEST: manifest({"compiled_sql": {"duckdb": ["a.sql"]}})}, MANIFEST, 0,
                "kpis.net_revenue.compiled_sql.duckdb: expected a file path, got a list"),
    state_fault("KPI132", {MANIFEST: manifest({"compiled_sql": {"duckdb": "target/../../../../etc/passwd"}})},
                MANIFEST, 0, "'target/../../../../etc/passwd' is not a path inside the state folder"),
    state_fault("KPI132", {MANIFEST: manifest({"compiled_sql": {"duckdb": "/etc/passwd"}})}, MANIFEST, 0,
                "'/etc/passwd' is not a path inside the state folder"),
    state_fault("KPI132", {MANIFEST: manifest({"compiled_sql": {"klingon": "target/x.sql"}})}, MANIFEST, 0,
                "'klingon' is not a SQL dialect"),
    state_fault("KPI132", {MANIFEST: manifest({"definition_hash": 7})}, MANIFEST, 0,
                "kpis.net_revenue.definition_hash: expected a string, got a number"),
    state_fault("KPI132", {MANIFEST: manifest({"declared_grains": "month"})}, MANIFEST, 0,
                "kpis.net_revenue.declared_grains: expected a list of grain names, got a string"),
    state_fault("KPI132", {MANIFEST: '{"kpis": {"../../etc": {}}}'}, MANIFEST, 0,
                "'../../etc' is not a KPI name"),
    state_fault("KPI132", {MANIFEST: manifest({"label": {"a": NESTED_70}})},
                MANIFEST, 0, "values nested deeper than 64 levels"),
    # its SQL
    state_fault("KPI133", {SQL: None}, SQL, 0, "the compiled SQL of KPI 'net_revenue' is missing"),
    state_fault("KPI133", {MANIFEST: manifest({"compiled_sql": {"duckdb": None}})}, MANIFEST, 0,
                "the earlier manifest has no compiled SQL for KPI 'net_revenue'"),
    state_fault("KPI133", {SQL: b"SELECT 1 AS value\n-- caf\xe9\n"}, SQL, 2, "is not UTF-8 text"),
    state_fault("KPI134", {SQL: "SELECT FROM WHERE (\n"}, SQL, ANY_LINE, "the compiled SQL of KPI 'net_revenue' does "
                "not parse"),
    state_fault("KPI134", {SQL: "SELECT " + "(" * 20_000 + "1" + ")" * 20_000}, SQL, 0, "does not parse"),
    state_fault("KPI134", {SQL: "-- nothing but a comment\n;\n"}, SQL, 0, "holds no statement"),
    state_fault("KPI135", {SQL: DML_CTE}, SQL, 3,
                "has a data-modifying CTE: 'd' is a DELETE statement; nothing of the state was run"),
    state_fault("KPI135", {SQL: earlier_sql() + ";\nDROP TABLE main.orders;\n"}, SQL, 4, "holds 2 statements"),
    state_fault("KPI135", {SQL: "DELETE FROM main.orders"}, SQL, 1, "is a DELETE statement, not a SELECT"),
    state_fault("KPI135", {SQL: "INSERT INTO main.orders (order_id) SELECT 1"}, SQL, 1, "is an INSERT statement"),
    state_fault("KPI135", {SQL: "COPY main.orders TO '/tmp/orders.csv'"}, SQL, 1, "is a COPY statement"),
    state_fault("KPI135", {SQL: earlier_sql("SELECT sum(amount) FROM main.orders FOR UPDATE")}, SQL, ANY_LINE,
                "locks rows (FOR UPDATE / FOR SHARE)"),
    state_fault("KPI135", {SQL: "SELECT * INTO main.stolen FROM main.orders"}, SQL, 1, "selects INTO a table"),
    state_fault("KPI135", {SQL: earlier_sql(with_="WITH u AS (\n  UPDATE main.orders SET amount = 0 RETURNING *\n)\n",
                                            select="SELECT count(*) FROM u")}, SQL, 3, "'u' is an UPDATE statement"),
]

FAULTS: list[Fault] = []
ELSEWHERE: dict[str, str] = {
    code: "a `diff --state` fault: run from the project's folder in test_trust_state (corpus_state.STATE_FAULTS), "
          "DuckDB and PostgreSQL"
    for code in ("KPI130", "KPI131", "KPI132", "KPI133", "KPI134", "KPI135")
}
