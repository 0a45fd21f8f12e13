"""Hostile-input corpus: project SQL reading the machine (SPEC §11, see corpus.py).

Before these checks a DuckDB model could select read_text('/proc/self/environ') and publish a CI secret into
kpi_values; on PostgreSQL pg_read_file, on Spark text.`/etc/passwd`, reflect('java.lang.System', 'getenv', ...)
and '${env:NAME}' did the same. Each fault below is refused at validation with its code at its file and line
(KPI120-126, validate/access.py): exit 1, every table unchanged.

FAULTS run in test_error_catalog; ELSEWHERE: code -> where it is tested. ENGINE_FAULTS is the subset
test_trust_access runs on PostgreSQL and Spark too (a project in each engine's dialect).
"""
from __future__ import annotations

from corpus import ANY_LINE, PROFILES, Fault  # noqa: F401
from helpers_projects import kpi_yaml

BROKEN = "kpis/broken.yml"
MODEL = "models/broken.sql"
# kpi_yaml's lines: `measure` 10, the first added key (`filter`) 12
MEASURE, FILTER = 10, 12
ALLOW_DATA = PROFILES.replace("path: wh.duckdb}", "path: wh.duckdb, allowed_paths: [data]}")


def in_snippet(code: str, field: str, text: str, message: str, **files: str) -> Fault:
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return Fault(code, {BROKEN: kpi_yaml(**{field: quoted}), **files}, BROKEN,
                 MEASURE if field == "measure" else FILTER, f"KPI 'broken': `{field}` {message}")


def in_model(code: str, sql: str, line: int, message: str, files: dict[str, str] | None = None) -> Fault:
    return Fault(code, {MODEL: sql, **(files or {})}, MODEL, line, f"model 'broken' {message}")


ORDERS = "{{ source('shop', 'orders') }}"
FILE_FAULTS = [
    in_model("KPI120", f"select o.*, e.content as leaked\nfrom {ORDERS} as o\ncross join read_text('/proc/self/environ') as e\n",
             3, "calls `read_text('/proc/self/environ')`, which reads files on the machine that runs the warehouse, "
                "and the profile lists no `allowed_paths`"),
    in_model("KPI120", "select *\nfrom read_csv('/etc/passwd', sep = ':')\n", 2, "calls `read_csv('/etc/passwd')`"),
    in_model("KPI120", "select *\nfrom read_csv('/etc/passwd')\n", 2,
             "calls `read_csv('/etc/passwd')`, which reads files on the machine that runs the warehouse, outside "
             "`allowed_paths` (data)", {"profiles.yml": ALLOW_DATA}),
    in_model("KPI120", "select *\nfrom read_csv('data/../../../etc/passwd')\n", 2,
             "calls `read_csv('data/../../../etc/passwd')`, which reads files on the machine that runs the warehouse, "
             "outside `allowed_paths` (data)", {"profiles.yml": ALLOW_DATA}),  # `..` leaves the folder
    in_model("KPI120", "select *\nfrom glob('/root/.ssh/*')\n", 2, "calls `glob('/root/.ssh/*')`"),
    in_model("KPI120", "select * from read_parquet(['data/a.parquet', '/var/lib/secret.parquet'])\n", 1,
             "calls `read_parquet('/var/lib/secret.parquet')`", {"profiles.yml": ALLOW_DATA}),
    in_snippet("KPI120", "measure", "count(read_blob('/etc/shadow'))", "calls `read_blob('/etc/shadow')`"),
]
TABLE_FAULTS = [
    in_model("KPI121", "select *\nfrom '/etc/passwd'\n", 2, "reads the file '/etc/passwd' as a table"),
    in_model("KPI121", 'select * from "secrets.csv"\n', 1, "reads the file 'secrets.csv' as a table"),
    Fault("KPI121", {"sources.yml": """
        sources:
          - name: shop
            schema: main
            tables:
              - name: orders
                identifier: /etc/passwd
              - name: support_tickets
              - name: customers
        """}, "sources.yml", 6, "source 'shop' table 'orders' is named like a file ('/etc/passwd')"),
    # Spark's path-based tables, in a Spark-dialect project
    in_model("KPI121", "select *\nfrom text.`/etc/passwd`\n", 2, "reads the file '/etc/passwd' as a table",
             {"kpimetrics.yml": "name: acme_kpis\nprofile: acme\ndialect: spark\noutput_schema: kpi\n"}),
]
NETWORK_FAULTS = [
    in_model("KPI122", "select *\nfrom read_parquet('https://attacker.example/x.parquet')\n", 2,
             "calls `read_parquet('https://attacker.example/x.parquet')`, which reaches the network"),
    in_model("KPI122", "select * from 's3://bucket/orders.csv'\n", 1, "reads the file 's3://bucket/orders.csv' as a table"),
    in_model("KPI122", "select *\nfrom postgres_scan('host=db.internal', 'public', 'users')\n", 2, "calls `postgres_scan`"),
    in_snippet("KPI122", "filter", "dblink_exec('host=db.internal', 'delete from users') <> ''", "calls `dblink_exec`"),
]
ENVIRONMENT_FAULTS = [
    in_snippet("KPI123", "filter", "getenv('CI_SECRET') <> ''", "calls `getenv`, which reads the environment"),
    in_snippet("KPI123", "filter", "current_setting('data_directory') <> ''", "calls `current_setting`"),
    in_model("KPI123", f"select o.*,\n  '${{env:CI_SECRET}}' as leaked\nfrom {ORDERS} as o\n", 2,
             "holds `${`, which Spark replaces with an environment variable"),
    in_model("KPI123", "select *\nfrom duckdb_settings()\n", 2, "calls `duckdb_settings`"),
    in_model("KPI123", "select name, setting\nfrom pg_catalog.pg_settings\n", 2, "reads `pg_settings`"),
]
SERVER_FAULTS = [
    in_snippet("KPI124", "filter", "pg_read_file('/etc/passwd') <> ''",
               "calls `pg_read_file`, which reads or writes files on the database server"),
    in_model("KPI124", "select *\nfrom pg_ls_dir('.') as f\n", 2, "calls `pg_ls_dir`"),
    in_snippet("KPI124", "measure", "sum(lo_import('/etc/passwd'))", "calls `lo_import`"),
    in_model("KPI124", "select *\nfrom pg_hba_file_rules\n", 2, "reads `pg_hba_file_rules`"),
]
CODE_FAULTS = [
    in_model("KPI125", "select *\nfrom query('select * from read_text(''/etc/passwd'')')\n", 2,
             "calls `query`, which runs code or SQL text that kpimetrics cannot check"),
    in_snippet("KPI125", "filter", "reflect('java.lang.System', 'getenv', 'CI_SECRET') <> ''", "calls `reflect`"),
    in_snippet("KPI125", "filter", "java_method('java.lang.System', 'getenv', 'HOME') <> ''", "calls `java_method`"),
    in_model("KPI125", "select query_to_xml('select 1', true, false, '') as x\n", 1, "calls `query_to_xml`"),
]
COMPUTED_PATH_FAULTS = [
    in_model("KPI126", f"select o.*\nfrom {ORDERS} as o\ncross join read_text(o.region || '.txt') as r\n", 3,
             "calls `read_text` with a path that is not a string literal", {"profiles.yml": ALLOW_DATA}),
]
FAULTS: list[Fault] = (FILE_FAULTS + TABLE_FAULTS + NETWORK_FAULTS + ENVIRONMENT_FAULTS + SERVER_FAULTS + CODE_FAULTS
                       + COMPUTED_PATH_FAULTS)
ELSEWHERE: dict[str, str] = {}

# The cases test_trust_access runs on PostgreSQL and Spark as well: each engine's own ways to read the machine.
POSTGRES_FAULTS = [SERVER_FAULTS[0], SERVER_FAULTS[1], ENVIRONMENT_FAULTS[1], NETWORK_FAULTS[3], CODE_FAULTS[3]]
SPARK_FAULTS = [CODE_FAULTS[1], ENVIRONMENT_FAULTS[2], FILE_FAULTS[0]]
