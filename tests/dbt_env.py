"""The suite's own dbt project (tests/dbt/shop), built by real dbt for the dbt tests (SPEC §8).

dbt is a test-only tool here: `make dbt-env` installs dbt-core (below 1.12), dbt-duckdb, dbt-postgres and
dbt-metricflow into `.venv-dbt` from tests/dbt/constraints.txt; the tests run `<repo>/.venv-dbt/bin/dbt`
(or `$KPIMETRICS_DBT_BIN`). Without it a dbt test fails under KPIMETRICS_REQUIRE_ENGINES, else skips,
as for a missing engine. dbt never sends anything (DO_NOT_TRACK, no usage stats, no version check),
and nothing here needs the network: the one package is local.

Once per test session (per xdist worker: each has its own basetemp) `dbt_shop` copies tests/dbt/shop and
its local package tests/dbt/shop_pkg to a temporary folder, creates the raw tables (tests/dbt/raw.sql)
in a new DuckDB file, writes profiles.yml beside dbt_project.yml and runs `dbt deps`, `dbt build` (seed,
snapshot, models, data tests; all but the mart `refunds`, which stays unbuilt) and `dbt docs generate`
(catalog.json; it also compiles every node, the ephemeral models included). `dbt_pg_shop` builds the same
project with dbt-postgres into a database of the suite's throwaway PostgreSQL server. A test never changes
the session's build: `copy(dest)` gives it a folder of its own (for DuckDB, with its own copy of the
warehouse file; the PostgreSQL copies share the one database).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from engines import engine_unavailable

DBT_DIR = Path(__file__).parent / "dbt"
REPO = Path(__file__).parent.parent
# dbt's telemetry and its check for a newer version: off, so no dbt command reaches the network
QUIET_DBT = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_VERSION_CHECK": "false"}
PG_PASSWORD_ENV = "SHOP_DBT_PG_PASSWORD"  # the dbt-postgres profile reads the password through env_var()
BUILD = (("deps",), ("build", "--exclude", "refunds"), ("docs", "generate"))


def dbt_bin() -> Path:
    """The dbt executable of the test-only environment (skips, or fails under KPIMETRICS_REQUIRE_ENGINES)."""
    path = Path(os.environ.get("KPIMETRICS_DBT_BIN") or REPO / ".venv-dbt" / "bin" / "dbt")
    if not path.is_file():
        engine_unavailable(f"dbt is not installed at {path}: run `make dbt-env` (or set KPIMETRICS_DBT_BIN)")
    return path


def run_dbt(project: Path, *args: str, profiles_dir: Path | None = None) -> str:
    """`dbt ARGS` in the dbt project folder `project`; its output. A failure fails the test with dbt's output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBT_")}
    env.update(QUIET_DBT, DBT_PROFILES_DIR=str(profiles_dir or project))
    proc = subprocess.run([str(dbt_bin()), *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"dbt {' '.join(args)} failed (exit {proc.returncode}) in {project}:\n"
                    f"{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}", pytrace=False)
    return proc.stdout


def tree_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under `folder` (to show a folder was left as it was)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class DbtShop:
    """The shop dbt project as dbt built it once for the session, on one warehouse."""

    engine: str  # duckdb | postgres
    root: Path  # the session's build: root/shop (the dbt project) and root/shop_pkg (its local package)
    profiles_yml: Callable[[Path], str]  # dbt's profiles.yml for a copy of the project in that folder
    dbname: str | None = None  # postgres: the database dbt built into (copies share it)

    @property
    def project(self) -> Path:
        return self.root / "shop"

    def manifest(self) -> dict:
        return json.loads((self.project / "target" / "manifest.json").read_text(encoding="utf-8"))

    def copy(self, dest: Path) -> Path:
        """A copy of the built project (artifacts, dbt_packages and, on DuckDB, the warehouse file) under
        `dest`, with profiles.yml rewritten for it; returns the copy's dbt project folder."""
        shutil.copytree(self.root, dest, symlinks=True, dirs_exist_ok=True)
        shop = dest / "shop"
        (shop / "profiles.yml").write_text(self.profiles_yml(shop), encoding="utf-8")
        return shop

    def relation(self, unique_id: str) -> str:
        """The relation dbt built for a node or source, as the manifest records it (quoted, qualified)."""
        m = self.manifest()
        node = m["nodes"].get(unique_id) or m["sources"][unique_id]
        return node["relation_name"]


def _duckdb_profile(shop: Path) -> str:
    # dbt-duckdb's own keys: `threads` means nothing to kpimetrics and is ignored
    return yaml.safe_dump({"shop": {"target": "dev", "outputs": {"dev": {
        "type": "duckdb", "path": str(shop / "shop.duckdb"), "threads": 4}}}}, sort_keys=False)


def _copy_sources(dest: Path) -> Path:
    shutil.copytree(DBT_DIR / "shop", dest / "shop")
    shutil.copytree(DBT_DIR / "shop_pkg", dest / "shop_pkg")
    return dest / "shop"


def _raw_statements() -> list[str]:
    text = "\n".join(line for line in (DBT_DIR / "raw.sql").read_text(encoding="utf-8").splitlines()
                     if not line.startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]


def _build(shop: Path) -> None:
    for args in BUILD:
        run_dbt(shop, *args)
    manifest = json.loads((shop / "target" / "manifest.json").read_text(encoding="utf-8"))
    ephemeral = manifest["nodes"]["model.shop.completed_orders"]
    assert ephemeral["config"]["materialized"] == "ephemeral" and ephemeral.get("compiled_code"), \
        "dbt docs generate did not compile the ephemeral model"
    assert (shop / "target" / "catalog.json").is_file()


@pytest.fixture(scope="session")
def dbt_shop(tmp_path_factory) -> DbtShop:
    """The shop dbt project built with dbt-duckdb into shop/shop.duckdb."""
    import duckdb

    dbt_bin()
    root = tmp_path_factory.mktemp("dbt_shop")
    shop = _copy_sources(root)
    con = duckdb.connect(str(shop / "shop.duckdb"))
    try:
        for statement in _raw_statements():
            con.execute(statement)
    finally:
        con.close()
    (shop / "profiles.yml").write_text(_duckdb_profile(shop), encoding="utf-8")
    _build(shop)
    return DbtShop("duckdb", root, _duckdb_profile)


@pytest.fixture(scope="session")
def dbt_pg_shop(pg_server, tmp_path_factory) -> DbtShop:
    """The shop dbt project built with dbt-postgres into a new database of the session's PostgreSQL, through
    a profile as a dbt-postgres user writes it: the password from env_var(), and keys only dbt uses."""
    dbt_bin()
    os.environ[PG_PASSWORD_ENV] = pg_server.password
    dbname = pg_server.create_database(f"dbt_shop_{uuid.uuid4().hex[:10]}")
    with pg_server.connect(dbname) as con:
        for statement in _raw_statements():
            con.execute(statement)

    def profile(shop: Path) -> str:
        return yaml.safe_dump({"shop": {"target": "pg", "outputs": {"pg": {
            "type": "postgres", "host": pg_server.host, "port": pg_server.port, "user": pg_server.user,
            "password": f"{{{{ env_var('{PG_PASSWORD_ENV}') }}}}", "dbname": dbname, "schema": "analytics",
            "threads": 2, "keepalives_idle": 0, "connect_timeout": 10, "retries": 1}}}}, sort_keys=False)

    root = tmp_path_factory.mktemp("dbt_pg_shop")
    shop = _copy_sources(root)
    (shop / "profiles.yml").write_text(profile(shop), encoding="utf-8")
    _build(shop)
    return DbtShop("postgres", root, profile, dbname)
