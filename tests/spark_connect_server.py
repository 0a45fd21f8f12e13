"""A Spark Connect server for the tests: pyspark's own (its wheel ships the server jar), local mode, in a
subprocess listening on 127.0.0.1, with a Hive catalog in an embedded Derby metastore and a warehouse in a
folder of its own, as the README tells a Connect deployment to have them. Nothing is downloaded.

    server = ConnectServer.start(folder)   # returns once the server answers a query
    server.url                              # sc://127.0.0.1:PORT
    server.stop()

With `token`, the server requires that bearer token (spark.connect.authenticate.token); a client reaches it
as sc://localhost:PORT/;token=... (pyspark sends a token without TLS only to localhost).

Run as a script (`python tests/spark_connect_server.py FOLDER`) it starts one and waits, for trying
kpimetrics by hand.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
START_TIMEOUT = 240.0  # seconds: a JVM on a loaded two-core machine
LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{HH:mm:ss}} %p %c{{1}}: %m%n
"""


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing() -> str | None:
    """Why a Connect server cannot run here, or None."""
    import importlib.util

    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "Java is not installed (Spark needs Java 17)"
    if not list((spark_home() / "jars").glob("spark-connect_*.jar")):
        return "pyspark ships no Spark Connect server jar"
    try:
        from pyspark.sql.connect.utils import check_dependencies

        check_dependencies()
    except ImportError as exc:
        return f"pyspark's Connect client is not installed ({exc}): pip install 'kpimetrics[spark-connect]'"
    return None


@dataclass
class ConnectServer:
    folder: Path
    port: int
    process: subprocess.Popen
    token: str | None = None

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @property
    def warehouse(self) -> Path:
        return self.folder / "warehouse"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    @classmethod
    def start(cls, folder: Path, token: str | None = None, conf: dict[str, str] | None = None) -> "ConnectServer":
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log4j = folder / "log4j2.properties"
        log4j.write_text(LOG4J2.format(log=folder / "server.log"))
        settings = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(port),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": str(folder / "warehouse"),
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={folder / 'metastore_db'};create=true",
            "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j} -Dderby.stream.error.file={os.devnull}",
            **({"spark.connect.authenticate.token": token} if token else {}),
            **(conf or {}),
        }
        home = spark_home()
        command = [str(home / "bin" / "spark-submit"), "--master", "local[2]", "--class", SERVER_CLASS]
        for key, value in settings.items():
            command += ["--conf", f"{key}={value}"]
        env = {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1"}
        env.pop("SPARK_REMOTE", None)
        with open(folder / "stdout.log", "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, cwd=folder, start_new_session=True)
        server = cls(folder, port, process, token)
        try:
            server._wait()
        except BaseException:
            server.stop()
            raise
        return server

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Spark Connect server exited ({self.process.returncode}): "
                                   f"{self._tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"the Spark Connect server did not listen within {START_TIMEOUT:.0f} s: {self._tail()}")

    def _tail(self) -> str:
        texts = [p.read_text(errors="replace")[-3000:] for p in (self.folder / "stdout.log", self.log) if p.exists()]
        return "\n".join(texts)

    def stop(self) -> None:
        """Stop the server (its process group: spark-submit's JVM) and wait for it."""
        if self.process.poll() is None:
            with _ignore_lookup():
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with _ignore_lookup():
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)


class _ignore_lookup:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is ProcessLookupError


if __name__ == "__main__":
    # the server's JVM is in a process group of its own: a SIGTERM here (`timeout`, say) stops it too
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = ConnectServer.start(Path(sys.argv[1]).resolve())
    print(f"Spark Connect at {server.url} (warehouse {server.warehouse}); Ctrl-C stops it", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
