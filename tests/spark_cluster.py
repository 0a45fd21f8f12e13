"""A Spark cluster for the tests, as a team runs one: a standalone master and two workers (each its own JVM)
on 127.0.0.1, one application on it that serves Spark Connect and the Spark Thrift server (JDBC, the hive
protocol a BI tool speaks), and a Hive metastore in the test PostgreSQL (tests/pg_server.py), reached with
Debian's JDBC driver (libpostgresql-jdbc-java, scripts/install_system_deps.sh). Every JVM is pyspark's
own (its wheel ships the master, worker, Connect and Thrift server jars), nothing is downloaded.

    cluster = SparkCluster.start(folder, pg)   # returns once a Connect client reads the catalog
    cluster.master_url                         # spark://127.0.0.1:PORT: a driver of its own (master: in a profile)
    cluster.url                                # sc://127.0.0.1:PORT
    cluster.jdbc_url                           # jdbc:hive2://127.0.0.1:PORT/default
    cluster.conf                               # what a driver of its own needs: the metastore, warehouse, JDBC jar
    cluster.stop()

Each JVM runs in a process group of its own; stop() ends them all (SIGTERM, then SIGKILL), the server first.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from spark_connect_server import LOG4J2, _ignore_lookup, free_port, spark_home

JDBC_JAR = Path("/usr/share/java/postgresql.jar")  # Debian's libpostgresql-jdbc-java
SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
START_TIMEOUT = 300.0  # seconds: five JVMs on a loaded two-core machine
WORKERS = 2
WORKER_CORES = 2  # task slots of a worker: the server's application and one driver of a test's take 2 each
EXECUTOR = {"spark.executor.cores": "1", "spark.executor.memory": "512m", "spark.cores.max": "2"}


def missing() -> str | None:
    """Why the cluster cannot run here, or None."""
    import spark_connect_server as scs

    why = scs.missing()
    if why:
        return why
    if not JDBC_JAR.exists():
        return f"no PostgreSQL JDBC driver at {JDBC_JAR}: run scripts/install_system_deps.sh (libpostgresql-jdbc-java)"
    if not list((spark_home() / "jars").glob("spark-hive-thriftserver_*.jar")):
        return "pyspark ships no Spark Thrift server jar"
    return None


@dataclass
class SparkCluster:
    folder: Path
    master_port: int
    connect_port: int
    thrift_port: int
    metastore: dict[str, str]  # the spark.hadoop.* settings of the shared metastore
    database: str  # the metastore's PostgreSQL database
    server_conf: dict[str, str] = field(default_factory=dict)  # the server's own settings besides `conf`
    processes: list[subprocess.Popen] = field(default_factory=list)  # master, workers, then the server

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.connect_port}"

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:hive2://127.0.0.1:{self.thrift_port}/default"

    @property
    def warehouse(self) -> Path:
        return self.folder / "warehouse"

    @property
    def conf(self) -> dict[str, str]:
        """What any driver on this cluster sets: the shared metastore and warehouse, the JDBC driver, executors
        small enough that two applications share the workers, every address on 127.0.0.1."""
        return {
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(self.warehouse),
            "spark.driver.extraClassPath": str(JDBC_JAR),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            **self.metastore,
            **EXECUTOR,
        }

    @classmethod
    def start(cls, folder: Path, pg, server_conf: dict[str, str] | None = None) -> "SparkCluster":
        folder.mkdir(parents=True, exist_ok=True)
        database = pg.create_database("spark_metastore")
        metastore = {
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:postgresql://{pg.host}:{pg.port}/{database}",
            "spark.hadoop.javax.jdo.option.ConnectionDriverName": "org.postgresql.Driver",
            "spark.hadoop.javax.jdo.option.ConnectionUserName": pg.user,
            "spark.hadoop.javax.jdo.option.ConnectionPassword": pg.password,
            # an empty database: the metastore creates its tables (Hive's schematool is not in pyspark), but not
            # their foreign keys: DataNucleus adds one (ALTER TABLE on TBLS) while its own transaction holds a row
            # of TBLS, and waits for itself forever on PostgreSQL. The unique key on a table's name is added by
            # _wait_for_catalog, as schematool's script has it
            # (autoCreateAll would turn them on again)
            "spark.hadoop.datanucleus.schema.autoCreateTables": "true",
            "spark.hadoop.datanucleus.schema.autoCreateColumns": "true",
            "spark.hadoop.datanucleus.schema.autoCreateConstraints": "false",
            "spark.hadoop.hive.metastore.schema.verification": "false",
        }
        cluster = cls(folder, free_port(), free_port(), free_port(), metastore, database, dict(server_conf or {}))
        try:
            cluster._start_master_and_workers()
            cluster._start_server()
            cluster._wait_for_catalog(pg)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_LOG_DIR": str(self.folder / "logs"), "SPARK_NO_DAEMONIZE": "1"}
        env.pop("SPARK_REMOTE", None)
        return env

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=self._env(), cwd=self.folder, start_new_session=True)
        self.processes.append(process)
        return process

    def _start_master_and_workers(self) -> None:
        spark_class = str(spark_home() / "bin" / "spark-class")
        self._spawn("master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(self.master_port), "--webui-port", str(free_port())])
        self._wait_port(self.master_port, "the master")
        for i in range(WORKERS):
            work = self.folder / f"worker{i}"
            work.mkdir(exist_ok=True)
            self._spawn(f"worker{i}", [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                       "--port", str(free_port()), "--webui-port", str(free_port()),
                                       "--cores", str(WORKER_CORES), "--memory", "1g", "--work-dir", str(work),
                                       self.master_url])

    def _start_server(self) -> None:
        log4j = self.folder / "log4j2.properties"
        log4j.write_text(LOG4J2.format(log=self.folder / "server_log4j.log"))
        settings = {
            **self.conf,
            "spark.app.name": "kpimetrics-test-server",
            "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",  # Connect beside the Thrift server
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.connect_port),
            "spark.ui.enabled": "false",
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j}",
            **self.server_conf,
        }
        command = [str(spark_home() / "bin" / "spark-submit"), "--master", self.master_url, "--class", SERVER_CLASS]
        for key, value in settings.items():
            command += ["--conf", f"{key}={value}"]
        command += ["spark-internal", "--hiveconf", f"hive.server2.thrift.port={self.thrift_port}",
                    "--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1"]
        self._spawn("server", command)
        self._wait_port(self.connect_port, "the Connect server")
        self._wait_port(self.thrift_port, "the Thrift server")

    def _wait_port(self, port: int, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for p in self.processes:
                if p.poll() is not None:
                    raise RuntimeError(f"a JVM of the Spark cluster exited ({p.returncode}) before {what} "
                                       f"listened: {self._tail()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"{what} did not listen within {START_TIMEOUT:.0f} s: {self._tail()}")

    def _wait_for_catalog(self, pg) -> None:
        """A query that reads the metastore through Connect: the metastore's tables exist before any test
        (a second driver creating them at the same time could collide)."""
        from pyspark.sql.connect.session import SparkSession  # not pyspark.sql's: it turns the process to Connect mode

        spark = SparkSession.builder.remote(self.url).create()
        try:
            spark.sql("CREATE DATABASE IF NOT EXISTS kpimetrics_probe").collect()
            spark.sql("CREATE VIEW kpimetrics_probe.probe AS SELECT 1 AS one").collect()
            spark.sql("DROP VIEW kpimetrics_probe.probe").collect()
        finally:
            spark.stop()
        # one table of a name per schema, also between drivers (what kpimetrics' lease stands on)
        with pg.connect(self.database) as con:
            con.execute('CREATE UNIQUE INDEX IF NOT EXISTS "UNIQUETABLE" ON "TBLS" ("TBL_NAME", "DB_ID")')

    def _tail(self) -> str:
        texts = [f"--- {p.name}\n" + p.read_text(errors="replace")[-2000:] for p in sorted(self.folder.glob("*.log"))]
        return "\n".join(texts)

    def beeline(self, script: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run SQL statements through the Thrift server with Hive's own JDBC client (beeline, from pyspark's
        jars), rows as CSV: the way a BI tool connects."""
        jars = spark_home() / "jars"
        path = self.folder / f"beeline-{time.monotonic_ns()}.sql"
        path.write_text(script)
        command = ["java", "-cp", f"{jars}/*", "org.apache.hive.beeline.BeeLine", "-u", self.jdbc_url,
                   "--outputformat=csv2", "--showHeader=false", "--silent=true", "-f", str(path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=self._env())

    def stop(self) -> None:
        """Stop every JVM, the server first (its executors go with it), then the workers and the master."""
        for process in reversed(self.processes):
            if process.poll() is None:
                with _ignore_lookup():
                    os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with _ignore_lookup():
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


if __name__ == "__main__":
    # by hand: python tests/spark_cluster.py FOLDER (a PostgreSQL of its own for the metastore)
    import pg_server

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    pg = pg_server.start_server()
    began = time.monotonic()
    cluster = None
    try:
        cluster = SparkCluster.start(Path(sys.argv[1]).resolve(), pg)
        print(f"up in {time.monotonic() - began:.0f} s: master {cluster.master_url}, Connect {cluster.url}, "
              f"Thrift {cluster.jdbc_url}; Ctrl-C stops it", flush=True)
        cluster.processes[-1].wait()
    except KeyboardInterrupt:
        pass
    finally:
        if cluster is not None:
            cluster.stop()
        pg.stop()
