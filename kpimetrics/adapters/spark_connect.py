"""Reaching Spark through a Spark Connect server (`remote: sc://host:port` in a Spark profile, SPEC §13).

The server runs Spark: its driver, its warehouse, its metastore and its static settings are its own, set
where it starts. kpimetrics talks to it through pyspark's Connect client (gRPC) alone, never a JVM of its
own: each connection is a Connect session of its own on the server, with kpimetrics' session settings
(spark.py, `session_settings`), released when the connection closes. Files of this machine (seeds) travel
as data, since the server cannot read them.

The URL may carry a token and TLS (`sc://host:15002/;use_ssl=true;token={{ env_var('SPARK_TOKEN') }}`):
whatever kpimetrics shows of it has the parameter values masked.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from ..config import MASK, SPARK_REMOTE
from ..errors import WarehouseError

DEFAULT_PORT = 15002  # pyspark's, when the URL names none
PROBE_TIMEOUT = 10.0  # seconds to reach the server's port before pyspark's own retries (minutes) take over
# URL parameters that are no secret, shown as they are; every other value (a token, a header) is masked
_SHOWN_PARAMETERS = frozenset({"use_ssl", "user_id", "user_agent", "grpc_max_message_size"})
_PROXY_VARIABLES = ("grpc_proxy", "https_proxy", "http_proxy", "GRPC_PROXY", "HTTPS_PROXY", "HTTP_PROXY")
INSTALL_HINT = "pip install 'kpimetrics[spark-connect]' (pyspark's Connect client: grpcio, pyarrow, pandas)"


def endpoint(url: str) -> tuple[str, int]:
    """The host and port of a Spark Connect URL (config.SparkOutput has checked it)."""
    match = SPARK_REMOTE.fullmatch(url)
    if match is None:
        raise WarehouseError("not a Spark Connect URL (sc://host:port)")
    return match["host"].strip("[]"), int(match["port"] or DEFAULT_PORT)


def shown(url: str) -> str:
    """The URL as kpimetrics prints it: parameter values masked but those that are no secret."""
    match = SPARK_REMOTE.fullmatch(url)
    if match is None:
        return "sc://(not a Spark Connect URL)"
    base = url[:match.start("params") - 1] if match["params"] is not None else url
    if not match["params"]:
        return base
    params = []
    for part in match["params"].split(";")[1:]:
        name, _, value = part.partition("=")
        params.append(f"{name}={value if name in _SHOWN_PARAMETERS else MASK}")
    return base + "/;" + ";".join(params)


def _probe(url: str) -> None:
    """Fail at once, naming the server, when nothing listens at its address: pyspark would retry for ten
    minutes. Behind a proxy (gRPC goes through it) the server is not ours to reach directly: no probe."""
    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        return
    host, port = endpoint(url)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise WarehouseError(f"cannot reach the Spark Connect server at {host}:{port} ({reason}): is it started "
                             "(sbin/start-connect-server.sh), and does `remote:` name its address?") from None


def open_session(url: str):
    """A new Connect session on the server at `url` (kpimetrics' own: released by `close_session`)."""
    try:
        from pyspark.sql.connect.session import SparkSession
        from pyspark.sql.connect.utils import check_dependencies

        check_dependencies()
    except ImportError as exc:
        raise WarehouseError(f"a Spark Connect profile needs pyspark's Connect client ({exc}): {INSTALL_HINT}") from None
    _probe(url)
    try:
        return SparkSession.builder.remote(url).create()
    except Exception as exc:  # noqa: BLE001 — pyspark's words (a malformed parameter, say)
        raise WarehouseError(f"cannot connect to the Spark Connect server {shown(url)}: {first_line(exc)}") from None


def close_session(spark: Any) -> None:
    """Release the session on the server (its temporary state) and close the channel."""
    try:
        spark.stop()
    except Exception:  # noqa: BLE001 — a server already gone has nothing left to release
        pass


def read_csv(spark: Any, path: Path):
    """A seed file as a DataFrame, its types inferred by Spark as from a file: the server cannot read this
    machine's files, so the lines travel as data and the server parses them."""
    from pyspark.sql.types import StringType, StructField, StructType

    schema = StructType([StructField("value", StringType())])
    text = spark.createDataFrame([[record] for record in csv_records(path)], schema)
    return spark.read.csv(text, header=True, inferSchema=True)


def csv_records(path: Path) -> list[str]:
    """The records of a CSV file as written, one string each: a quoted field may span lines (a record ends
    where its quotes are balanced)."""
    records, pending = [], ""
    with open(path, encoding="utf-8", newline="") as f:
        for line in f:
            pending += line
            if pending.count('"') % 2 == 0:
                record = pending.rstrip("\r\n")
                if record:
                    records.append(record)
                pending = ""
    if pending.rstrip("\r\n"):
        records.append(pending.rstrip("\r\n"))
    return records


def first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
