"""Apache Spark through pyspark: a driver in this process (`master: local[N]` on one machine, or a cluster's
spark://, yarn, k8s://), or a Spark Connect server (`remote: sc://host:port`, spark_connect.py).

Spark has no multi-table transactions, and its plain (parquet) tables take no
UPDATE or DELETE, so a run publishes by writing new versions of the output
tables and then moving one pointer view (publish.py). This module runs
statements and moves rows; it knows nothing of KPIs.

One SparkSession serves the whole process: starting one starts a JVM and costs
seconds, and a run, `status` and the tests open many connections. `close()`
leaves it running. A connection that needs another warehouse or configuration
(static settings in Spark) stops it and starts a new one, in the same JVM.

A local warehouse keeps its catalog in an embedded Derby metastore inside
warehouse_dir, which one process at a time can open. The adapter therefore
holds an exclusive lock file there (`.kpimetrics.lock`, with the holder's pid)
while it is connected: a second process fails at once with a message naming
the holder. The operating system releases the lock when its process dies, so a
killed run never leaves a stale lock. Its JVM outlives it by a moment (it
exits when it sees the Python process gone), with the metastore still booted:
the next process, once it has the lock, waits for Derby's own lock on the
metastore to go (METASTORE_WAIT seconds at most). When its last connection closes, the
process also shuts the Derby database down (the JVM and the session stay up):
a booted Derby keeps other processes out of the metastore even without the
lock. Every new connection on a kept session drops Spark's cached relations and
file listings, so it sees what other processes wrote meanwhile, not what this
session read before. On a cluster (warehouse_dir on hdfs://,
s3a://, ..., or a metastore set in `conf`) and through Spark Connect no file
lock is possible: a run holds a lease in the output schema instead, a view of
the shared catalog (spark_lease.py).

What differs between those ways of reaching Spark is data (`MODES`): whether the driver runs in this process
(its JVM: kpimetrics starts it with the static settings, and reaches the metastore and the caches through
it) or on a Connect server, which has its own warehouse, metastore and static settings and takes only
session settings; and kpimetrics' number of shuffle partitions for each.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ..config import SparkOutput
from ..errors import WarehouseError
from . import Capabilities, spark_connect
from .spark_lease import CatalogLease

DEFAULT_SCHEMA = "default"
INSERT_PARAMETERS = 20000  # parameters per INSERT ... VALUES of insert_rows (each statement writes files of its own)


@dataclass(frozen=True)
class Mode:
    """A way of reaching Spark, and what kpimetrics does on it."""
    name: str
    # the driver runs in this process: kpimetrics starts its JVM with the static settings (warehouse,
    # metastore) and keeps it for the process, quiets its log, drops its cached relations, shuts an embedded
    # metastore down through it, and it reads seed files by path. Otherwise (Connect) each connection is a
    # session of its own on the server, which holds all that, and seed files travel as data.
    driver_here: bool
    # spark.sql.shuffle.partitions unless the profile's `conf` sets it (None: the server's or Spark's)
    shuffle_partitions: str | None


# KPI outputs are small, and Spark's 200 shuffle partitions cost a task each per shuffle. On one machine 4
# is plenty. A cluster's scans can be large: 64 keeps tasks of a few million rows at 10^8 rows, and adaptive
# execution (on by default) coalesces the small shuffles; a profile's `conf` sets another number. A Connect
# server is sized by whoever runs it: its setting stands.
MODES = {
    "local": Mode("local", driver_here=True, shuffle_partitions="4"),
    "cluster": Mode("cluster", driver_here=True, shuffle_partitions="64"),
    "connect": Mode("connect", driver_here=False, shuffle_partitions=None),
}


def mode_of(output: SparkOutput) -> Mode:
    if output.remote is not None:
        return MODES["connect"]
    return MODES["local" if output.driver_master.startswith("local") else "cluster"]


LOCK_FILE = ".kpimetrics.lock"
METASTORE_DIR = ".metastore_db"
METASTORE_WAIT = 60.0  # seconds the JVM of a killed process may take to let go of the metastore
# settings in `conf` that say the catalog lives elsewhere than the embedded Derby metastore
_EXTERNAL_CATALOG_KEYS = (
    "spark.hadoop.hive.metastore.uris",
    "spark.hadoop.javax.jdo.option.ConnectionURL",
    "spark.sql.catalogImplementation",
)
# ERROR only, and none of the metastore's "already exists" noise: kpimetrics reports failures itself.
# The root level stays WARN (the level Spark assumes for Python), else Spark announces the change on
# stderr; the console's threshold filter is what keeps warnings out.
LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} spark %p %c{1}: %m%n
appender.console.filter.threshold.type = ThresholdFilter
appender.console.filter.threshold.level = error
logger.hive.name = org.apache.hadoop.hive
logger.hive.level = off
logger.datanucleus.name = DataNucleus
logger.datanucleus.level = off
"""


class SparkAdapter:
    dialect = "spark"
    capabilities = Capabilities(publish="versioned_views", default_schema=DEFAULT_SCHEMA, session_staging=True,
                                session_rows=True)

    def __init__(self, output: SparkOutput, project_root: Path, timezone: str):
        self.mode = mode_of(output)
        self.master = output.driver_master if self.mode.driver_here else None
        self.remote = output.remote
        self.warehouse = _warehouse_uri(output.warehouse_dir, project_root) if self.mode.driver_here else None
        self.timezone = timezone
        if output.schema_:
            self.capabilities = replace(SparkAdapter.capabilities, default_schema=output.schema_)
        self._lock: WarehouseLock | None = None
        self._lease: CatalogLease | None = None  # a shared catalog's run lock (spark_lease.py), taken by lock()
        self._metastore: Path | None = None
        self._own_session = False  # a Connect session of this connection's, stopped when it closes
        self._staged: dict[str, Any] = {}  # stage()'s checkpoints by view: Connect releases one when its DataFrame goes
        embedded = self.mode.driver_here and _is_local(self.warehouse) and \
            not any(k in output.conf for k in _EXTERNAL_CATALOG_KEYS)
        if embedded:
            folder = Path(self.warehouse.removeprefix("file:"))
            folder.mkdir(parents=True, exist_ok=True)
            self._lock = WarehouseLock.take(folder)
            self._metastore = _metastore_path(self.warehouse)
        try:
            if self.mode.driver_here:
                self.spark = _session(self.master, _static_conf(output, self.mode, self.warehouse, embedded), self._lock)
                self._forget_cached_relations()
            else:
                self.spark = spark_connect.open_session(self.remote)
                self._own_session = True
                self._check_server_catalog()
            self._set_session_conf(output)
        except BaseException:
            self.close()
            raise

    def _forget_cached_relations(self) -> None:
        """Drop the session's cached table relations and file listings: since its last connection, other
        processes may have written new versions and moved kpi_current_version (a kept session would read
        the files of the version it saw last). A Connect session is new for each connection: nothing to drop."""
        self.spark.catalog.clearCache()
        self.spark._jsparkSession.sessionState().catalog().invalidateAllCachedTables()

    def _check_server_catalog(self) -> None:
        """The output tables must outlive a Connect server: its catalog must be a metastore, not memory."""
        try:
            catalog = self.spark.conf.get("spark.sql.catalogImplementation", "in-memory")
        except Exception as exc:  # noqa: BLE001 — the first call: an unusable server says so here
            raise WarehouseError(f"the Spark Connect server {spark_connect.shown(self.remote)} does not answer: "
                                 f"{_clean(exc)}") from None
        if catalog != "hive":
            raise WarehouseError(
                f"the Spark Connect server {spark_connect.shown(self.remote)} keeps its catalog in memory "
                f"(spark.sql.catalogImplementation={catalog}): kpimetrics' output tables would go with it. Start "
                "the server with spark.sql.catalogImplementation=hive and a metastore (README, Spark Connect).")

    def _set_session_conf(self, output: SparkOutput) -> None:
        """Settings of this session: kpimetrics' own, and on Connect the profile's `conf` too (a driver of this
        process took it when it started); a static one is the server's, and its refusal says so."""
        conf = self.spark.conf
        if not self.mode.driver_here:
            for key, value in session_settings(output, self.mode).items():
                try:
                    conf.set(key, value)
                except Exception as exc:  # noqa: BLE001
                    raise WarehouseError(
                        f"the Spark Connect server {spark_connect.shown(self.remote)} does not take the setting {key} "
                        f"from a client (a static setting is set where the server starts): {_clean(exc)}") from None
        # ANSI mode: a bad cast or an overflow is an error, as on DuckDB and PostgreSQL, not a silent NULL
        conf.set("spark.sql.ansi.enabled", output.conf.get("spark.sql.ansi.enabled", "true"))
        try:
            # TIMESTAMP (instant) values are cut into periods in the calendar's time zone
            conf.set("spark.sql.session.timeZone", self.timezone)
            self.spark.sql("SELECT current_timestamp()").collect()
        except Exception as exc:  # noqa: BLE001 — Spark's own words
            raise WarehouseError(f"Spark does not accept the calendar time zone '{self.timezone}': {_clean(exc)}") from None

    # --- statements --------------------------------------------------------------

    def execute(self, sql: str, params: list[Any] | None = None) -> None:
        if self._lease is not None:
            self._lease.renew()  # a long run keeps its lease (every few minutes at most)
        self._sql(sql, params)

    def fetchall(self, sql: str, params: list[Any] | None = None) -> list[tuple]:
        df = self._sql(sql, params)
        try:
            return [tuple(r) for r in df.collect()]
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(_clean(exc)) from None

    def _sql(self, sql: str, params: list[Any] | None):
        try:
            return self.spark.sql(sql, args=params) if params else self.spark.sql(sql)
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(_clean(exc)) from None

    def insert_rows(self, table_sql: str, columns: list[str], rows: list[list[Any]]) -> None:
        """Rows into a table by INSERT ... VALUES whose values are parameters (never SQL text), each cast to its
        column's type; other columns get NULL.

        Not a DataFrame made in Python (createDataFrame): Spark reads such rows through Python workers, and
        starting them cost 2 to 10 s of a run's first insert (bench/RESULTS.md, Spark); a statement runs in the
        JVM alone."""
        if not rows:
            return
        try:
            fields = {f.name: f for f in self.spark.table(table_sql).schema.fields}
            types = [fields[c].dataType for c in columns]
        except KeyError as exc:
            raise WarehouseError(f"table {table_sql} has no column {exc}") from None
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(_clean(exc)) from None
        row_sql = "(" + ", ".join(f"CAST(? AS {t.simpleString()})" for t in types) + ")"
        head = f"INSERT INTO {table_sql} ({', '.join(_name(c) for c in columns)}) VALUES "
        per_statement = max(1, INSERT_PARAMETERS // len(columns))
        for i in range(0, len(rows), per_statement):
            chunk = rows[i:i + per_statement]
            params = [self._parameter(v, t) for row in chunk for v, t in zip(row, types)]
            self._sql(head + ", ".join([row_sql] * len(chunk)), params)

    def stage(self, name: str, sql: str) -> None:
        """The rows of query `sql`, computed now and kept in the session as temporary view `name`
        (Capabilities.session_rows): a local checkpoint, whose plan is its rows. A table would cost a file commit and
        metastore updates at its CREATE, each INSERT and its DROP; and a view cached by CACHE TABLE is not read from
        the cache where a CTE references it (dialects.STAGED_PRE_AGGREGATE), while a checkpoint has no plan to match.
        The rows are in the executors' storage (memory, then disk) until the view is dropped and the connection
        closed; a killed run's session takes them with it. In as many partitions as a shuffle makes at most: a
        scan's rows are a union of a part a branch, and a version of kpi_values written from them was a file a part
        (29 files at 2x10^5 orders where a table of them gave 2)."""
        if self._lease is not None:
            self._lease.renew()
        df = self._sql(sql, None)
        try:
            kept = df.coalesce(1).localCheckpoint(eager=True)
            kept.createOrReplaceTempView(name)
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(_clean(exc)) from None
        self._staged[name] = kept

    def _parameter(self, value: Any, dtype) -> Any:
        """A Python value as a parameter of CAST(? AS <its column's type>): times as text (a datetime parameter
        would be read in the Python process's local zone), the rest as pyspark's literals."""
        if value is None:
            return None
        kind = type(dtype).__name__
        if kind in ("DoubleType", "FloatType"):
            return float(value)
        if kind == "DecimalType":
            return Decimal(str(value))
        if kind in ("IntegerType", "LongType", "ShortType", "ByteType") and not isinstance(value, bool):
            return int(value)
        if kind == "TimestampType" and isinstance(value, dt.datetime):
            # a naive time written to an instant column is a time in the session's zone, as on DuckDB
            aware = value if value.tzinfo is not None else value.replace(tzinfo=ZoneInfo(self.timezone))
            return aware.isoformat(sep=" ")
        if kind == "TimestampNTZType" and isinstance(value, dt.datetime):
            naive = value.astimezone(ZoneInfo(self.timezone)).replace(tzinfo=None) if value.tzinfo else value
            return naive.isoformat(sep=" ")
        if kind == "DateType" and isinstance(value, dt.date):
            return (value.date() if isinstance(value, dt.datetime) else value).isoformat()
        if kind == "StringType" and not isinstance(value, str):
            return str(value)
        return value

    # --- transactions: none (publish.py publishes by versions instead) ---------------

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def lock(self, schema: str) -> None:
        """One run at a time on `schema`. A local warehouse's lock file is held since the connection opened;
        a shared catalog (Connect, a cluster) holds a lease in the schema (spark_lease.py), taken here, or
        renewed when this connection holds it (the publisher asks again before it moves the pointer)."""
        if self._lock is not None:
            return
        if self._lease is None or self._lease.schema != schema:
            if self._lease is not None:
                self._lease.release()
            self._lease = CatalogLease(schema, lambda sql: self._sql(sql, None), self.fetchall, self.relations)
        self._lease.take()

    # --- the catalog ----------------------------------------------------------------

    def relations(self, schema: str) -> list[tuple[str, str]]:
        """(name, 'table' | 'view') of every relation in a schema (a missing schema has none).

        Two listings of the catalog (SHOW TABLES, SHOW VIEWS), not catalog.listTables: that reads every
        table's whole metadata from the metastore, one relation after the other (2 to 4 s a call on a run's
        output schema, bench/RESULTS.md, Spark). A missing schema is asked about only when the first listing
        fails (catalog.databaseExists before every listing was a round trip more on every run)."""
        quoted = _name(schema)
        try:
            shown = self.fetchall(f"SHOW VIEWS IN {quoted}")
        except WarehouseError:
            if not self.spark.catalog.databaseExists(schema):
                return []
            raise
        views = {r[1] for r in shown if not r[2]}
        return [(r[1], "view" if r[1] in views else "table")
                for r in self.fetchall(f"SHOW TABLES IN {quoted}") if not r[2]]

    def tables(self, schema: str) -> list[str]:
        return [name for name, _ in self.relations(schema)]

    def columns(self, schema: str | None, table: str) -> list[str] | None:
        try:
            return list(self.spark.table(_name(schema or self.capabilities.default_schema, table)).columns) or None
        except Exception:  # noqa: BLE001 — no such table or schema
            return None

    def load_csv(self, path: Path, schema: str, table: str) -> int:
        """A seed file as a table (replaced if it exists), types inferred from the data."""
        target = _name(schema, table)
        try:
            self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {_name(schema)}")
            if self.mode.driver_here:
                df = self.spark.read.csv(str(Path(path).resolve()), header=True, inferSchema=True)
            else:
                df = spark_connect.read_csv(self.spark, Path(path))
            df.write.mode("overwrite").saveAsTable(target)
            return self.spark.table(target).count()
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(f"cannot load {path} into {schema}.{table}: {_clean(exc)}") from None

    def describe(self) -> str:
        import pyspark

        if not self.mode.driver_here:
            return f"spark {self.spark.version} through Spark Connect ({spark_connect.shown(self.remote)})"
        return f"spark {pyspark.__version__} ({self.master}), warehouse {self.warehouse}"

    def close(self) -> None:
        """Release the warehouse; the SparkSession stays up for the next connection of this process.

        The last connection of the process shuts the embedded metastore down before it releases the lock:
        another process can boot it once the lock is free. A Connect session is released on the server."""
        self._staged = {}
        if self._lease is not None:
            lease, self._lease = self._lease, None
            lease.release()
        if self._own_session:
            self._own_session = False
            spark_connect.close_session(self.spark)
        if self._lock is None:
            return
        try:
            if self._lock.last_user() and self._metastore is not None and hasattr(self, "spark"):
                _shut_down_derby(self.spark, self._metastore)
        finally:
            self._lock.release()
            self._lock = None


# --- the session -------------------------------------------------------------------


@dataclass
class _Live:
    key: tuple
    spark: Any


_live: _Live | None = None  # the process's SparkSession and the settings it was started with


def _session(master: str, conf: dict[str, str], own: "WarehouseLock | None" = None):
    """The process's SparkSession for these settings, started (or restarted) if needed; `own` is the lock the
    new connection has just taken on its warehouse (not another connection's)."""
    global _live
    key = (master, tuple(sorted(conf.items())))
    if _live is not None:
        if _live.key == key and _live.spark.sparkContext._jsc is not None:
            return _live.spark
        if _live.key != key and WarehouseLock.held_here(other_than=own):
            raise WarehouseError(
                "this process already has another Spark warehouse or configuration open; one process uses one "
                "SparkSession at a time: close that connection first")
        _live.spark.stop()  # static settings (warehouse, metastore, master) need a new session
        _live = None
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise WarehouseError("the spark profile needs pyspark: pip install 'kpimetrics[spark]' (and Java 17)") from None
    connect_mode = [k for k in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED") if k in os.environ]
    if connect_mode:  # pyspark's builder would go to Spark Connect and ask for a URL, whatever the master
        raise WarehouseError(
            f"cannot start Spark ({master}): the environment sets {' and '.join(connect_mode)}, which turns pyspark "
            "to Spark Connect (a Connect session made by pyspark.sql's builder in this process sets the second). "
            "Unset it for a driver of kpimetrics' own, or name the server with `remote: sc://...` in the profile.")
    builder = SparkSession.builder.master(master)
    for k, v in conf.items():
        builder = builder.config(k, v)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 — e.g. no Java
        raise WarehouseError(f"cannot start Spark ({master}): {_clean(exc)}. Spark needs Java 17 (JAVA_HOME or java on PATH).") from None
    spark.sparkContext.setLogLevel("ERROR")
    _live = _Live(key, spark)
    return spark


def session_settings(output: SparkOutput, mode: Mode) -> dict[str, str]:
    """What kpimetrics sets on a Connect session of its own: the settings it needs that a session can take,
    then the profile's `conf` (which wins)."""
    conf = {"spark.sql.legacy.createHiveTableByDefault": "false"}  # CREATE TABLE makes parquet tables
    if mode.shuffle_partitions:
        conf["spark.sql.shuffle.partitions"] = mode.shuffle_partitions
    return conf | dict(output.conf)


def _static_conf(output: SparkOutput, mode: Mode, warehouse: str, embedded: bool) -> dict[str, str]:
    """Settings fixed when a driver of this process starts; `conf` from the profile comes last and wins."""
    conf = {
        "spark.app.name": "kpimetrics",
        "spark.sql.warehouse.dir": warehouse,
        "spark.sql.catalogImplementation": "hive",  # tables and views outlive the process
        "spark.sql.legacy.createHiveTableByDefault": "false",  # CREATE TABLE makes parquet tables
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{_log_config()} -Dderby.stream.error.file={os.devnull}",
    }
    if embedded:
        conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = f"jdbc:derby:;databaseName={_metastore_path(warehouse)};create=true"
    if mode.shuffle_partitions:
        conf["spark.sql.shuffle.partitions"] = mode.shuffle_partitions  # see MODES
    return conf | dict(output.conf)


def _metastore_path(warehouse: str) -> Path:
    return Path(warehouse.removeprefix("file:")) / METASTORE_DIR


# Derby's SQLSTATEs for "the database is shut down" and "it was not booted" (a connection that never read the catalog)
_DERBY_SHUT_DOWN = ("08006", "XJ004")


def _shut_down_derby(spark, metastore: Path) -> None:
    """Shut down the embedded Derby database of `metastore` in this JVM (it boots again on the next catalog
    access). Only that database: shutting down the whole Derby system would unregister its JDBC driver."""
    from py4j.protocol import Py4JJavaError

    if spark.sparkContext._jsc is None:
        return  # the session was stopped: nothing of it is open
    try:
        spark._jvm.java.sql.DriverManager.getConnection(f"jdbc:derby:;databaseName={metastore};shutdown=true")
    except Py4JJavaError as exc:  # Derby reports a successful shutdown as an SQLException
        state = exc.java_exception.getSQLState()
        if state not in _DERBY_SHUT_DOWN:
            raise WarehouseError(f"cannot close the Spark metastore {metastore} (SQLSTATE {state}): {_clean(exc)}") from None


def _log_config() -> Path:
    path = Path(tempfile.gettempdir()) / f"kpimetrics-log4j2-{hashlib.sha256(LOG4J2.encode()).hexdigest()[:12]}.properties"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(LOG4J2)
        tmp.replace(path)
    return path


def _warehouse_uri(folder: str, project_root: Path) -> str:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", folder) and not re.match(r"^[A-Za-z]:[\\/]", folder):
        return folder  # hdfs://, s3a://, file:/...
    path = Path(folder)
    return str((path if path.is_absolute() else project_root / path).resolve())


def _is_local(warehouse: str) -> bool:
    return not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", warehouse) or warehouse.startswith("file:")


def _name(*parts: str) -> str:
    return ".".join("`" + p.replace("`", "``") + "`" for p in parts)


def _clean(exc: BaseException) -> str:
    """Spark's message without the JVM stack trace and the query plan."""
    lines = [ln.strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("at ", "An error occurred while calling", "JVM stacktrace"))]
    text = lines[0] if lines else type(exc).__name__
    if text.endswith(":") and len(lines) > 1:
        # a wrapper whose causes follow, such as STAGE_MATERIALIZATION_MULTIPLE_FAILURES when two stages of one
        # query fail at once: its first cause says what is wrong
        text = f"{text} {lines[1]}"
    return text.removeprefix(": ")


# --- the lock ---------------------------------------------------------------------------


class WarehouseLock:
    """An exclusive flock on warehouse_dir/.kpimetrics.lock, shared by this process's connections."""

    _held: dict[Path, tuple["WarehouseLock", int]] = {}  # path -> (lock, connections using it)

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    @classmethod
    def take(cls, folder: Path) -> "WarehouseLock":
        """This process's lock on `folder`, taken now, or WarehouseError naming the process that has it."""
        path = (folder / LOCK_FILE).resolve()
        lock, users = cls._held.get(path, (None, 0))
        if lock is None:
            lock = cls(path)
            lock._acquire()
        cls._held[path] = (lock, users + 1)
        return lock

    @classmethod
    def held_here(cls, other_than: "WarehouseLock | None" = None) -> bool:
        """Whether connections of this process hold a warehouse lock (one other than `other_than`)."""
        return any(lock is not other_than for lock, _ in cls._held.values())

    def last_user(self) -> bool:
        """Whether releasing it now frees the lock (no other connection of this process uses it)."""
        lock, users = self._held.get(self.path, (None, 0))
        return lock is self and users == 1

    def _acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise WarehouseError(
                f"the Spark warehouse {self.path.parent} is in use by another kpimetrics process "
                f"({holder or 'pid unknown'}; lock file {self.path}). Its embedded metastore admits one process "
                "at a time: wait for that run to finish and retry."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {dt.datetime.now().isoformat(timespec='seconds')}\n".encode(), 0)
        self._fd = fd
        try:
            wait_for_metastore(self.path.parent / METASTORE_DIR)
        except BaseException:
            self._fd = None
            os.close(fd)
            raise

    def release(self) -> None:
        lock, users = self._held.get(self.path, (None, 0))
        if lock is not self:
            return
        if users > 1:
            self._held[self.path] = (self, users - 1)
            return
        del self._held[self.path]
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def metastore_booted(metastore: Path) -> bool:
    """Whether a JVM (of another process) has the embedded Derby database booted: Derby holds a POSIX lock on
    dbex.lck while it does."""
    try:
        fd = os.open(metastore / "dbex.lck", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def wait_for_metastore(metastore: Path, timeout: float | None = None) -> None:
    """Wait until no JVM has `metastore` booted, or fail naming it."""
    deadline = time.monotonic() + (METASTORE_WAIT if timeout is None else timeout)
    while metastore_booted(metastore):
        if time.monotonic() > deadline:
            raise WarehouseError(
                f"the Spark metastore {metastore} is still open in another JVM (a kpimetrics process that was "
                "killed, or a Spark session outside kpimetrics): stop it and retry.")
        time.sleep(0.05)
