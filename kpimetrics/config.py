"""kpimetrics.yml and profiles.yml: the project's settings and its connections.

Connections are a union keyed on `type`, so pydantic picks the class and words
the error. Secrets only ever come through `env_var()`; the values it returns
are remembered in a `SecretRegistry` so that every message can be scrubbed.
"""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from .model import Forecast, Grain, Node
from .notify.settings import NotifySettings

# --- kpimetrics.yml ----------------------------------------------------------


class Defaults(Node):
    grain: Grain = "month"
    lookback: int | str = 1  # periods, or a duration such as '35 days'
    late_rows: str | None = None  # how late a row can land (a duration): older rows are final (see partials.py)


class Calendar(Node):
    week_start: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = "monday"
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12)
    timezone: str = "UTC"


@functools.cache
def time_zones() -> dict[str, str]:
    """The IANA time zone names this machine knows, by lower-case name; empty without a tz database."""
    import zoneinfo

    return {name.lower(): name for name in zoneinfo.available_timezones()}


def known_time_zone(name: str) -> bool:
    """Whether `calendar.timezone` names a time zone (case aside, as the warehouses take it). A machine
    without a tz database cannot tell: every name passes, and the warehouse decides."""
    zones = time_zones()
    return not zones or name.lower() in zones


class Paths(Node):
    """kpimetrics' own folders, relative to kpimetrics.yml. Beside a dbt project (a dbt_project.yml in the same
    folder) the defaults move out of dbt's way: kpi_models/, kpi_seeds/, kpi_target/ (SPEC §8)."""

    models: str | None = None
    seeds: str | None = None
    target: str | None = None


class DbtSettings(Node):
    project_dir: str | None = None  # the dbt project (its dbt_project.yml); default: the nearest at or above


class ProjectConfig(Node):
    name: str
    profile: str | None = None
    dialect: str = "duckdb"
    output_schema: str = "kpi"
    seed_schema: str | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    calendar: Calendar = Field(default_factory=Calendar)
    version: int | None = None
    paths: Paths = Field(default_factory=Paths)
    dbt: DbtSettings | None = None
    forecast: Forecast = Field(default_factory=Forecast)  # kpi_forecast's settings, per KPI too (forecast.py)
    currency: str | None = None  # ISO 4217 code of every `unit: currency` KPI's values, unless the KPI names its own
    notify: NotifySettings | None = None  # channels and rules of notifications (SPEC §10, kpimetrics/notify/)


# --- profiles.yml ------------------------------------------------------------


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DuckDBOutput(_Output):
    type: Literal["duckdb"]
    path: str = ":memory:"
    schema_: str | None = Field(default=None, alias="schema")
    memory_limit: str | None = None
    threads: int | None = None
    # files and folders (relative to the project) a run may read; nothing else of the machine (validate/access.py)
    allowed_paths: list[str] = Field(default_factory=list)


class PostgresOutput(_Output):
    type: Literal["postgres"]
    host: str = "localhost"
    port: int = 5432
    dbname: str
    user: str | None = None
    password: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    sslmode: str | None = None
    connect_timeout: int = 10


# A Spark Connect endpoint as pyspark reads one: sc://host[:port][/;name=value;...] (a token, use_ssl=true, ...)
SPARK_REMOTE = re.compile(r"sc://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s:/;\[\]]+)(?::(?P<port>[0-9]{1,5}))?"
                          r"(?:/(?P<params>(?:;[^;=\s]+=[^;=]*)*))?")
DEFAULT_MASTER = "local[2]"


class SparkOutput(_Output):
    """Spark through a driver in this process (`master`: local[N], spark://, yarn, k8s://), or through a Spark
    Connect server (`remote`), which holds the warehouse, the metastore and the static settings (SPEC §13).
    Errors carry codes (KPI180-183) that profiles.py puts at the key's line; they never echo a value."""
    type: Literal["spark"]
    master: str | None = None  # DEFAULT_MASTER unless `remote` is set
    remote: str | None = None
    warehouse_dir: str = "spark-warehouse"
    schema_: str | None = Field(default=None, alias="schema")
    conf: dict[str, str] = Field(default_factory=dict)
    allowed_paths: list[str] = Field(default_factory=list)  # path-based tables a project may read

    @field_validator("master")
    @classmethod
    def _a_master(cls, value: str | None) -> str | None:
        if value is not None and value.strip().lower().startswith("sc://"):
            raise PydanticCustomError("KPI181", "a Spark Connect URL (sc://) is not a master: write it as "
                                      "`remote: \"sc://host:port\"` instead of `master:`")
        return value

    @field_validator("remote")
    @classmethod
    def _a_remote(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("master") is not None:
            raise PydanticCustomError("KPI180", "`remote` (a Spark Connect server) and `master` (a driver in this "
                                      "process) are two ways to reach Spark: keep one of them")
        if not SPARK_REMOTE.fullmatch(value) or int(SPARK_REMOTE.fullmatch(value)["port"] or 15002) > 65535:
            raise PydanticCustomError("KPI182", "not a Spark Connect URL: write sc://host:port, with parameters "
                                      "after a slash: sc://host:port/;use_ssl=true;token=...")
        return value

    @field_validator("warehouse_dir")
    @classmethod
    def _a_warehouse(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("remote") is not None:
            raise PydanticCustomError("KPI183", "a Spark Connect server has its own warehouse: set "
                                      "spark.sql.warehouse.dir (and the metastore) where the server starts, "
                                      "not in the profile")
        return value

    @property
    def driver_master(self) -> str:
        """The master of a driver in this process (`remote` unset)."""
        return self.master or DEFAULT_MASTER


Output = Annotated[Union[DuckDBOutput, PostgresOutput, SparkOutput], Field(discriminator="type")]


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    target: str
    outputs: dict[str, Output]


# The one list of dialects: those a warehouse type runs, then those compiled to but not run (SPEC §7).
DIALECT_OF_TYPE = {"duckdb": "duckdb", "postgres": "postgres", "spark": "spark"}
COMPILE_ONLY_DIALECTS = ("snowflake", "bigquery", "trino", "databricks")
ALL_DIALECTS = tuple(DIALECT_OF_TYPE.values()) + COMPILE_ONLY_DIALECTS


@dataclass(frozen=True)
class ProfilePlace:
    """One step of the profiles.yml lookup. `dbt`: one of dbt's places, where a relative DuckDB `path` is dbt's
    (resolved against the dbt project folder, where dbt runs) rather than kpimetrics'."""

    step: str  # how the lookup names it: "--profiles-dir", "$DBT_PROFILES_DIR", "the dbt project folder", ...
    folder: Path
    dbt: bool = False

    @property
    def file(self) -> Path:
        return self.folder / "profiles.yml"


# The lookup order of profiles.yml (SPEC §8): each step's name, and whether it is one of dbt's places.
PROFILE_LOOKUP = (("--profiles-dir", False), ("$KPIMETRICS_PROFILES_DIR", False), ("the kpimetrics project folder", False),
                  ("$DBT_PROFILES_DIR", True), ("the dbt project folder", True), ("~/.kpimetrics/", False),
                  ("~/.dbt/", True))


def profile_search_path(project_dir: Path, profiles_dir: str | Path | None,
                        dbt_dir: Path | None = None) -> list[ProfilePlace]:
    """Where profiles.yml is looked for, in order (SPEC §8: PROFILE_LOOKUP); the dbt project folder only when
    there is a dbt project, and a folder already looked in once only."""
    env, home = os.environ, Path.home()
    folders = (profiles_dir, env.get("KPIMETRICS_PROFILES_DIR"), project_dir, env.get("DBT_PROFILES_DIR"), dbt_dir,
               home / ".kpimetrics", home / ".dbt")
    places: list[ProfilePlace] = []
    seen: set[str] = set()
    for (step, dbt), folder in zip(PROFILE_LOOKUP, folders):
        if not folder or os.path.abspath(folder) in seen:
            continue
        seen.add(os.path.abspath(folder))
        places.append(ProfilePlace(step, Path(folder), dbt))
    return places


# --- dbt's profile outputs ---------------------------------------------------


@dataclass(frozen=True)
class DbtOutputKeys:
    """What kpimetrics makes of the keys a dbt adapter takes in a profile output (beyond kpimetrics' own keys,
    which keep their meaning). A key `a.b` is key `b` of the mapping `a`."""

    honoured: Mapping[str, str] = field(default_factory=dict)  # dbt key -> the kpimetrics setting it sets
    ignored: frozenset[str] = frozenset()  # keys kpimetrics has no use for: dropped, listed by `debug`
    # keys whose value kpimetrics can follow only when it is one of these (else KPI085), then dropped
    only: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def known(self) -> set[str]:
        return {k.split(".")[0] for k in self.honoured} | set(self.ignored) | set(self.only)


# The keys of dbt-duckdb's, dbt-postgres' and dbt-spark's credentials (and dbt's own `threads`) that are not
# kpimetrics' keys already. Keys with the same name and meaning (path, schema, host, port, user, password,
# sslmode, connect_timeout, threads on DuckDB) need no entry.
DBT_OUTPUT_KEYS: dict[str, DbtOutputKeys] = {
    "duckdb": DbtOutputKeys(
        honoured={"settings.memory_limit": "memory_limit", "settings.threads": "threads"},
        ignored=frozenset({"database", "settings", "config_options", "extensions", "secrets", "external_root",
                           "use_credential_provider", "attach", "filesystems", "remote", "plugins",
                           "disable_transactions", "keep_open", "module_paths", "retries", "flights",
                           "is_ducklake", "motherduck_token"})),
    "postgres": DbtOutputKeys(
        honoured={"pass": "password", "database": "dbname"},
        ignored=frozenset({"threads", "keepalives_idle", "retries", "search_path", "role", "sslcert", "sslkey",
                           "sslrootcert", "application_name", "autocommit"})),
    "spark": DbtOutputKeys(
        honoured={"server_side_parameters": "conf"},
        # a session (local mode, kpimetrics' default master) is the only way kpimetrics reaches Spark
        only={"method": ("session",)},
        ignored=frozenset({"threads", "host", "port", "database", "driver", "cluster", "endpoint", "token", "user",
                           "password", "auth", "kerberos_service_name", "organization", "connection_string_suffix",
                           "connect_retries", "connect_timeout", "use_ssl", "retry_all", "poll_interval"})),
}


MASK = "****"  # what an env_var() value is replaced by


class SecretRegistry:
    """Values that came from env_var(); scrubbed from every message we print or write."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str) -> None:
        if value and len(value) >= 3:
            self._values.add(value)

    def scrub(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, MASK)
        return text

    def __contains__(self, value: str) -> bool:
        return value in self._values
