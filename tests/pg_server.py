"""A throwaway PostgreSQL server for the test session.

`initdb` into a temporary folder, start on a free local port with the unix socket
in that folder and `fsync=off` (nothing here needs to survive a crash), stop with
`pg_ctl stop -m fast` and delete the folder at the end. PostgreSQL refuses to run
as root, so as root the server runs as the unprivileged `postgres` user (Debian's
package creates it) through `runuser`.

Connections use TCP on 127.0.0.1 with a password (scram-sha-256), the way a
profile connects, so the tests exercise password handling for real.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "kpitest"


class ServerUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why."""


def find_bin_dir() -> Path:
    """The newest PostgreSQL's bin folder (PG_BIN_DIR overrides)."""
    if os.environ.get("PG_BIN_DIR"):
        return Path(os.environ["PG_BIN_DIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerUnavailable("PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH); "
                            "run scripts/install_system_deps.sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    folder: Path
    bin_dir: Path
    port: int
    user: str
    password: str
    run_as: str | None  # the unprivileged user the server runs as when we are root
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.run_as, "--"] if self.run_as else []) + list(args)

    def _run(self, *args: str) -> None:
        proc = subprocess.run(self._cmd(*args), capture_output=True, text=True, cwd=self.folder)
        if proc.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ServerUnavailable(f"{' '.join(args[:1])} failed: {proc.stderr.strip() or proc.stdout.strip()}\n{tail}")

    def start(self) -> None:
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            for p in (self.folder, pwfile):
                os.chown(p, entry.pw_uid, entry.pw_gid)
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user, "--pwfile", str(pwfile),
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-instructions")
        pwfile.unlink()
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses={self.host} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.folder / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def conninfo(self, dbname: str = "postgres") -> dict:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password, "dbname": dbname}

    def connect(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(**self.conninfo(dbname), autocommit=True)

    def create_database(self, name: str) -> str:
        from psycopg import sql

        with self.connect() as con:
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name


def start_server() -> PgServer:
    """Start a fresh server; raises ServerUnavailable with the reason when it cannot."""
    bin_dir = find_bin_dir()
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServerUnavailable("running as root and there is no 'postgres' user to run PostgreSQL as") from None
        run_as = "postgres"
    # not under pytest's basetemp: that folder is private to root, and the server user must reach it
    folder = Path(tempfile.mkdtemp(prefix="kpimetrics-pg-"))
    server = PgServer(folder, bin_dir, free_port(), SUPERUSER, "pw-" + secrets.token_hex(12), run_as)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def pg_server():
    """A PostgreSQL server for the session (skipped, or failed under KPIMETRICS_REQUIRE_ENGINES, if impossible)."""
    from engines import engine_unavailable

    try:
        server = start_server()
    except ServerUnavailable as exc:
        engine_unavailable(str(exc))
    yield server
    server.stop()
