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


if __name__ == "__main__":
    # bench/spark.py load DUCKDB_FILE DATA_DIR: the warehouse; bench/spark.py hand DATA_DIR: the hand-written
    # script, printing its in-engine seconds last (each a process of its own, as bench/run.py times them)
    if sys.argv[1] == "load":
        load(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        print(run_hand(Path(sys.argv[2])))
