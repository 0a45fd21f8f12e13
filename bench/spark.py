"""The benchmark on Spark (local mode, in the process, as kpimetrics runs it): the generator's data, the hand-written script.

Used by `bench/run.py --engine spark`. The data is bench/generate.py's (generated in DuckDB, so every engine
sees the same rows), written out as Parquet and saved as tables of schema `main` in a local warehouse
(bench/data/spark/warehouse, with its embedded metastore). kpimetrics runs a copy of bench/project whose
profile points at that warehouse; bench/handwritten_spark.sql runs statement by statement through kpimetrics'
own Spark adapter, so both sides have one session configuration (master, shuffle partitions, time zone).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
HAND_SQL = BENCH / "handwritten_spark.sql"
MASTER = "local[2]"
TABLES = ("orders", "support_tickets", "customers")
TIMESTAMPS = {"orders": "ordered_at", "support_tickets": "opened_at", "customers": "signed_up_at"}


def warehouse(data: Path) -> Path:
    return data / "spark" / "warehouse"


def output(data: Path) -> dict:
    return {"type": "spark", "master": MASTER, "warehouse_dir": str(warehouse(data))}


def connect(data: Path):
    from kpimetrics.adapters import connect as connect_adapter
    from kpimetrics.config import SparkOutput

    return connect_adapter(SparkOutput(**output(data)), data, "UTC")


def statements(text: str) -> list[str]:
    """The script's statements (split at a ';' that ends a line), without comment-only pieces."""
    parts = (p.strip() for p in re.split(r";\s*$", text, flags=re.MULTILINE))
    return [p for p in parts if any(line.strip() and not line.strip().startswith("--") for line in p.splitlines())]


def load(duck_db: Path, data: Path) -> None:
    """A fresh warehouse with the generator's tables in schema main (timestamps as TIMESTAMP_NTZ, as kpimetrics
    reads them on Spark)."""
    import duckdb

    shutil.rmtree(data / "spark", ignore_errors=True)
    adapter = connect(data)
    src = duckdb.connect(str(duck_db), read_only=True)
    try:
        with tempfile.TemporaryDirectory(prefix="kpibench-parquet-") as tmp:
            adapter.execute("CREATE SCHEMA IF NOT EXISTS main")
            for table in TABLES:
                path = Path(tmp) / f"{table}.parquet"
                src.execute(f"COPY (SELECT * FROM main.{table}) TO '{path}' (FORMAT parquet)")
                df = adapter.spark.read.parquet(str(path))
                df = df.withColumn(TIMESTAMPS[table], df[TIMESTAMPS[table]].cast("timestamp_ntz"))
                df.write.mode("overwrite").saveAsTable(f"main.{table}")
    finally:
        src.close()
        adapter.close()


def project(data: Path) -> Path:
    """A copy of bench/project whose profile points at the warehouse (its own target/)."""
    import yaml

    folder = data / "project_spark"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(BENCH / "project", folder, ignore=shutil.ignore_patterns("target", "profiles.yml"))
    (folder / "profiles.yml").write_text(yaml.safe_dump({"bench": {"target": "dev", "outputs": {"dev": output(data)}}}))
    return folder


def compare(data: Path, compare_sql: str) -> list[tuple]:
    adapter = connect(data)
    try:
        return adapter.fetchall(compare_sql)
    finally:
        adapter.close()


def reap_jvm() -> None:
    """Stop this process's Spark and wait for its JVM to exit (it does at EOF on its stdin), so that the process's
    rusage, which bench/run.py reads by wait4, counts the JVM's CPU seconds: under load they are a steadier
    measure than wall time. pyspark itself leaves the JVM to exit after the Python process, unwaited."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    if SparkContext._active_spark_context is not None:
        SparkContext._active_spark_context.stop()
    gateway.shutdown()
    gateway.proc.stdin.close()
    try:
        gateway.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:  # counted all the same once killed and waited for
        print("the JVM did not exit at EOF in 120 s: killed", file=sys.stderr)
        gateway.proc.kill()
        gateway.proc.wait()


def run_kpimetrics(folder: Path, as_of: str) -> None:
    """`kpimetrics run --full-refresh` as `python -m kpimetrics` runs it, then the JVM reaped (see reap_jvm)."""
    from kpimetrics import cli

    try:
        cli.main(["run", "-q", "--project-dir", str(folder), "--profiles-dir", str(folder), "--as-of", as_of,
                  "--full-refresh"])  # exits with the command's code
    finally:
        reap_jvm()


def run_hand(data: Path) -> float:
    """Run the hand-written script; the seconds spent in its statements (after the session is up)."""
    adapter = connect(data)
    try:
        began = time.perf_counter()
        for statement in statements(HAND_SQL.read_text()):
            adapter.execute(statement)
        return time.perf_counter() - began
    finally:
        adapter.execute("CLEAR CACHE")
        adapter.close()


# the adapter's calls that reach Spark, timed one by one by `profile`
PROFILED = ("execute", "fetchall", "insert_rows", "stage", "relations", "columns", "lock", "close")


def profile(data: Path, as_of: str) -> None:
    """`kpimetrics run --full-refresh` in this process with every call of the Spark adapter timed: each call's
    seconds and its statement's first words (to stderr, in order), then a summary by kind. Where a run's time
    goes between the big scans and the bookkeeping and publishing calls around them."""
    from kpimetrics import cli
    from kpimetrics.adapters.spark import SparkAdapter

    calls: list[tuple[str, str, float]] = []

    def timed(name, method):
        def call(self, *args, **kwargs):
            began = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                seconds = time.perf_counter() - began
                what = " ".join(str(args[0]).split())[:110] if args else ""
                calls.append((name, what, seconds))
                print(f"{seconds:8.3f} s  {name:11} {what}", file=sys.stderr, flush=True)
        return call

    for name in PROFILED:
        setattr(SparkAdapter, name, timed(name, getattr(SparkAdapter, name)))
    folder = project(data)
    began = time.perf_counter()
    try:
        cli.main(["run", "-q", "--project-dir", str(folder), "--profiles-dir", str(folder), "--as-of", as_of,
                  "--full-refresh"], standalone_mode=False)
    finally:
        total = time.perf_counter() - began
        kinds: dict[str, list[float]] = {}
        for name, what, seconds in calls:
            first = what.split(" ", 1)[0].upper() if name in ("execute", "fetchall") else ""
            kinds.setdefault(f"{name} {first}".strip(), []).append(seconds)
        print(f"\n{total:.2f} s in the command, {sum(s for _, _, s in calls):.2f} s in {len(calls)} adapter calls:")
        for kind, secs in sorted(kinds.items(), key=lambda kv: -sum(kv[1])):
            print(f"  {sum(secs):8.2f} s  {len(secs):4} x {kind}")
        small = [s for n, w, s in calls if n != "stage" and not w.upper().startswith((
            "INSERT INTO", "CREATE OR REPLACE TEMPORARY VIEW", "CACHE", "WITH"))]
        print(f"  ({sum(small):.2f} s in {len(small)} calls that are neither an INSERT ... SELECT nor a scan)")


if __name__ == "__main__":
    # bench/spark.py load DUCKDB_FILE DATA_DIR: the warehouse; bench/spark.py hand DATA_DIR: the hand-written
    # script, printing its in-engine seconds last (each a process of its own, as bench/run.py times them);
    # bench/spark.py profile DATA_DIR AS_OF: a kpimetrics run with every adapter call timed
    # bench/spark.py run PROJECT AS_OF: kpimetrics' run, its JVM reaped as the hand-written side's is
    if sys.argv[1] == "load":
        load(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "profile":
        profile(Path(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "run":
        run_kpimetrics(Path(sys.argv[2]), sys.argv[3])
    else:
        seconds = run_hand(Path(sys.argv[2]))
        reap_jvm()
        print(seconds)
