"""The benchmark on PostgreSQL: a throwaway server, the generator's data copied in, the hand-written script.

Used by `bench/run.py --engine postgres`. The server is started the way the tests start theirs
(tests/pg_server.py: initdb into a temporary folder, 127.0.0.1, a password, fsync off) with its
default planner and memory settings, and stopped at the end. The data is bench/generate.py's
(generated in DuckDB, so both engines see the same rows), written out as CSV and loaded with COPY,
then BRIN-indexed on the fact tables' time columns (INDEXES; both sides read the same tables) and VACUUM
ANALYZEd. kpimetrics runs a copy of bench/project whose profile points at the server;
bench/handwritten_postgres.sql runs in one psycopg session.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HAND_SQL = BENCH / "handwritten_postgres.sql"
USER_ENV, PASSWORD_ENV, PORT_ENV, DB_ENV = "KPIBENCH_PGUSER", "KPIBENCH_PGPASSWORD", "KPIBENCH_PGPORT", "KPIBENCH_PGDB"
DBNAME = "bench"

# the generator's tables as PostgreSQL columns (DuckDB's types, spelt for PostgreSQL)
TABLES = {
    "orders": "order_id bigint, customer_id integer, ordered_at timestamp, region text, channel text, "
              "amount numeric(10, 2), discount numeric(10, 2), status text",
    "support_tickets": "ticket_id bigint, customer_id integer, opened_at timestamp, channel text, "
                       "first_response_seconds integer, csat integer",
    "customers": "customer_id integer, segment text, signed_up_at timestamp",
}

# What the owner of a time-ordered fact table would have (the README's PostgreSQL section recommends it):
# a BRIN index on the time column, which lets an incremental run's `time >= …` read only the late block
# ranges. Made at load, so kpimetrics and the hand-written script read the same indexed tables.
INDEXES = {"orders": "ordered_at", "support_tickets": "opened_at"}


# runs the hand-written script in one session; prints the seconds spent in the server's statements
HAND_RUNNER = (
    "import os, sys, time, psycopg\n"
    "con = psycopg.connect(host='127.0.0.1', port=int(os.environ['KPIBENCH_PGPORT']), dbname=os.environ['KPIBENCH_PGDB'],\n"
    "                      user=os.environ['KPIBENCH_PGUSER'], password=os.environ['KPIBENCH_PGPASSWORD'], autocommit=True)\n"
    "con.execute(\"SET search_path = main\")\n"
    "began = time.perf_counter()\n"
    "con.execute(open(sys.argv[1]).read())\n"
    "print(time.perf_counter() - began)\n"
    "con.close()\n"
)


def _pg_server():
    sys.path.insert(0, str(ROOT / "tests"))
    import pg_server

    return pg_server


def start():
    """A fresh server (tests/pg_server.py's), with the benchmark's database."""
    server = _pg_server().start_server()
    server.create_database(DBNAME)
    return server


def env(server) -> dict[str, str]:
    """What the profile and the hand-written runner read (the password only through the environment)."""
    return {USER_ENV: server.user, PASSWORD_ENV: server.password, PORT_ENV: str(server.port), DB_ENV: DBNAME}


def load(server, duck_db: Path) -> None:
    """Copy the generator's tables from the DuckDB file into schema main, by COPY; then VACUUM ANALYZE."""
    import duckdb

    with tempfile.TemporaryDirectory(prefix="kpibench-csv-") as tmp, server.connect(DBNAME) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS main")
        src = duckdb.connect(str(duck_db), read_only=True)
        try:
            for table, columns in TABLES.items():
                csv = Path(tmp) / f"{table}.csv"
                src.execute(f"COPY (SELECT * FROM main.{table}) TO '{csv}' (FORMAT csv, HEADER false)")
                con.execute(f"DROP TABLE IF EXISTS main.{table}")
                con.execute(f"CREATE TABLE main.{table} ({columns})")
                with con.cursor() as cur, cur.copy(f"COPY main.{table} FROM STDIN (FORMAT csv)") as writer, \
                        open(csv, "rb") as f:
                    while block := f.read(1 << 20):
                        writer.write(block)
                csv.unlink()
        finally:
            src.close()
        for table, column in INDEXES.items():
            con.execute(f"CREATE INDEX {table}_{column}_brin ON main.{table} USING brin ({column})")
        for table in TABLES:
            con.execute(f"VACUUM ANALYZE main.{table}")


def append(server, duck_db: Path) -> int:
    """Copy the rows the DuckDB file holds past the server's newest (bench/generate.py --append-days, which
    appends orders and tickets with larger keys) into the server's tables; then ANALYZE them. Returns the rows copied."""
    import duckdb

    copied = 0
    with tempfile.TemporaryDirectory(prefix="kpibench-csv-") as tmp, server.connect(DBNAME) as con:
        src = duckdb.connect(str(duck_db), read_only=True)
        try:
            for table, key in (("orders", "order_id"), ("support_tickets", "ticket_id")):
                last = con.execute(f"SELECT coalesce(max({key}), -1) FROM main.{table}").fetchone()[0]
                csv = Path(tmp) / f"{table}.csv"
                src.execute(f"COPY (SELECT * FROM main.{table} WHERE {key} > {int(last)}) TO '{csv}' (FORMAT csv, HEADER false)")
                with con.cursor() as cur:
                    with cur.copy(f"COPY main.{table} FROM STDIN (FORMAT csv)") as writer, open(csv, "rb") as f:
                        while block := f.read(1 << 20):
                            writer.write(block)
                    copied += cur.rowcount
                con.execute(f"ANALYZE main.{table}")
        finally:
            src.close()
    return copied


def backends_cpu(server) -> float:
    """CPU seconds (user + system) of the server's backends and parallel workers that have ended so far.

    The postmaster reaps them, so their times add up in its children's times (cutime + cstime in
    /proc/<pid>/stat): sampled before and after a client process, the difference is what the server spent
    on that client's statements, which a loaded machine stretches far less than wall time. Waits (at
    most 10 s) until no backend of the benchmark's database nor parallel worker is left running."""
    pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    deadline = time.monotonic() + 10
    while _running_backends(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime: fields 16 and 17


def _running_backends(postmaster: int) -> int:
    running = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) != postmaster:
                continue
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        running += f" {DBNAME} " in cmdline or "parallel worker" in cmdline
    return running


def project(data: Path) -> Path:
    """A copy of bench/project whose profile points at the server (its own target/, apart from DuckDB's bench)."""
    folder = data / "project_postgres"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BENCH / "project", folder, ignore=shutil.ignore_patterns("target", "profiles.yml"))
    (folder / "profiles.yml").write_text(
        "bench:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n      host: 127.0.0.1\n"
        f"      port: \"{{{{ env_var('{PORT_ENV}') }}}}\"\n      dbname: \"{{{{ env_var('{DB_ENV}') }}}}\"\n"
        f"      user: \"{{{{ env_var('{USER_ENV}') }}}}\"\n      password: \"{{{{ env_var('{PASSWORD_ENV}') }}}}\"\n")
    return folder


def compare(server, compare_sql: str) -> list[tuple]:
    """bench/run.py's comparison of kpi.kpi_values with bench.hand_values, run in the server."""
    with server.connect(DBNAME) as con:
        return con.execute(compare_sql).fetchall()


def describe(server) -> str:
    with server.connect(DBNAME) as con:
        version = con.execute("SHOW server_version").fetchone()[0]
        settings = dict(con.execute(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('jit', 'shared_buffers', "
            "'work_mem', 'max_parallel_workers_per_gather')").fetchall())
    return f"PostgreSQL {version} ({', '.join(f'{k}={v}' for k, v in sorted(settings.items()))})"


if __name__ == "__main__":  # a server with the data, left running to profile by hand: bench/postgres.py DUCKDB_FILE
    s = start()
    load(s, Path(sys.argv[1]))
    print(f"port {s.port} user {s.user} password {s.password} folder {s.folder}; stop with "
          f"runuser -u postgres -- {s.bin_dir}/pg_ctl -D {s.data_dir} -m fast stop" if os.geteuid() == 0 else "")
