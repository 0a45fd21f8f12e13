"""The output tables: their columns and types, declared once, with a schema version.

BI tools read these; list-valued columns are JSON text so that every tool can.
SCHEMA_VERSION is the version these declarations make; a change to them raises it and
ships a migration from the version before (migrations.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

SCHEMA_VERSION = 7


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    description: str

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self.columns]

    def ddl(self, schema: str) -> exp.Create:
        return exp.Create(
            this=exp.Schema(
                this=qualified(schema, self.name),
                expressions=[
                    exp.ColumnDef(this=exp.to_identifier(c, quoted=True), kind=exp.DataType.build(t))
                    for c, t in self.columns
                ],
            ),
            kind="TABLE",
            exists=True,
        )


def qualified(schema: str | None, name: str, alias: str | None = None) -> exp.Table:
    """A table reference, every part quoted; `schema` None for a CTE or the search path."""
    return exp.Table(
        this=exp.to_identifier(name, quoted=True),
        db=exp.to_identifier(schema, quoted=True) if schema else None,
        alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)) if alias else None,
    )


_KEY = (
    ("name", "VARCHAR"),
    ("grain", "VARCHAR"),
    ("period_start", "DATE"),
    ("period_end", "DATE"),
    ("dimension", "VARCHAR"),
    ("dimension_value", "VARCHAR"),
)

_MEASURED = (("value", "DOUBLE"), ("numerator", "DOUBLE"), ("denominator", "DOUBLE"))
# The rows every KPI query returns (and staging holds): kpi_values without its bookkeeping columns.
VALUE_ROW = _KEY + _MEASURED
VALUE_COLUMNS = tuple(c for c, _ in VALUE_ROW)


def staging(name: str) -> "Table":
    return Table(name, VALUE_ROW, "a run's computed rows before they are published")


CATALOG = Table(
    "kpi_catalog",
    (
        ("name", "VARCHAR"), ("kind", "VARCHAR"), ("label", "VARCHAR"), ("description", "VARCHAR"),
        ("owner", "VARCHAR"), ("strategy", "VARCHAR"), ("priority", "VARCHAR"), ("indicator", "VARCHAR"),
        ("category", "VARCHAR"), ("unit", "VARCHAR"), ("direction", "VARCHAR"), ("grains", "VARCHAR"),
        ("definition_hash", "VARCHAR"), ("tags", "VARCHAR"), ("drives", "VARCHAR"), ("actions", "VARCHAR"),
        ("form", "VARCHAR"), ("window", "VARCHAR"), ("updated_at", "TIMESTAMP"),
        ("metric", "VARCHAR"),  # version 6 (migrations.AddColumn: a new column goes last)
        ("status_hash", "VARCHAR"),  # version 7
    ),
    "one row per KPI and standard: its definition",
)
STRATEGY = Table(
    "kpi_strategy",
    (
        ("name", "VARCHAR"), ("level", "VARCHAR"), ("parent", "VARCHAR"), ("owner", "VARCHAR"),
        ("description", "VARCHAR"), ("starts", "DATE"), ("ends", "DATE"),
    ),
    "the mission, priorities and strategies",
)
VALUES = Table(
    "kpi_values",
    _KEY + _MEASURED + (("definition_hash", "VARCHAR"), ("run_id", "BIGINT"), ("computed_at", "TIMESTAMP")),
    "the value of every KPI, grain, period and slice",
)
STATUS = Table(
    "kpi_status",
    _KEY + (
        ("value", "DOUBLE"), ("target", "DOUBLE"), ("at_risk_threshold", "DOUBLE"), ("status", "VARCHAR"),
        ("attainment", "DOUBLE"), ("previous_value", "DOUBLE"), ("change", "DOUBLE"), ("change_pct", "DOUBLE"),
        ("is_complete", "BOOLEAN"), ("owner", "VARCHAR"), ("strategy", "VARCHAR"), ("priority", "VARCHAR"),
        ("run_id", "BIGINT"),
    ),
    "values joined with targets: status, attainment, change",
)
TARGETS = Table(
    "kpi_targets",
    (
        ("name", "VARCHAR"), ("grain", "VARCHAR"), ("period_start", "DATE"), ("dimension", "VARCHAR"),
        ("dimension_value", "VARCHAR"), ("target", "DOUBLE"), ("at_risk_threshold", "DOUBLE"),
        ("target_source", "VARCHAR"),
    ),
    "the target of every period, as the current YAML defines it",
)
CHECK_INS = Table(
    "kpi_check_ins",
    (("name", "VARCHAR"), ("date", "DATE"), ("author", "VARCHAR"), ("note", "VARCHAR")),
    "dated commentary kept with each definition",
)
RUNS = Table(
    "kpi_runs",
    (
        ("run_id", "BIGINT"), ("started_at", "TIMESTAMP"), ("finished_at", "TIMESTAMP"), ("status", "VARCHAR"),
        ("kpis_ok", "INTEGER"), ("kpis_failed", "INTEGER"), ("message", "VARCHAR"),
    ),
    "append-only log of runs",
)
DEFINITIONS = Table(
    "kpi_definitions",
    (
        ("name", "VARCHAR"), ("definition_hash", "VARCHAR"), ("first_run_id", "BIGINT"),
        ("first_seen_at", "TIMESTAMP"), ("last_seen_at", "TIMESTAMP"),
    ),
    "every definition_hash each KPI has had: the first and the last run that published values with it",
)
FORECAST = Table(
    "kpi_forecast",
    (
        ("name", "VARCHAR"), ("grain", "VARCHAR"), ("horizon", "VARCHAR"), ("as_of", "DATE"), ("horizon_end", "DATE"),
        ("forecast", "DOUBLE"), ("target_at_horizon", "DOUBLE"), ("forecast_status", "VARCHAR"), ("method", "VARCHAR"),
    ),
    "each KPI total's forecast at the end of the current period and at its target's deadline (forecast.py)",
)
NOTIFICATIONS = Table(
    "kpi_notifications",
    (
        ("name", "VARCHAR"), ("grain", "VARCHAR"), ("period_start", "DATE"), ("status", "VARCHAR"),
        ("channel", "VARCHAR"), ("recipient", "VARCHAR"), ("sent_at", "TIMESTAMP"), ("outcome", "VARCHAR"),
    ),
    "append-only log of every notice `kpimetrics notify` sent or tried to send (kpimetrics/notify/): "
    "recipient '' is a webhook's own audience, outcome 'sent' or 'failed: <why>'",
)
SLICE_MEMBERS = Table(
    "kpi_slice_members",
    (("name", "VARCHAR"), ("dimension", "VARCHAR"), ("dimension_value", "VARCHAR"), ("member", "VARCHAR"),
     ("member_value", "VARCHAR")),
    "one row per slice of a combination of dimensions (dimension 'region × channel') and member (region, channel): "
    "the member's value, joined to kpi_values, kpi_status and kpi_targets by (name, dimension, dimension_value)",
)
META = Table(
    "kpi_meta",
    (("key", "VARCHAR"), ("value", "VARCHAR")),
    "kpimetrics' own bookkeeping: the schema version of these tables",
)

OUTPUT_TABLES = (CATALOG, STRATEGY, VALUES, STATUS, TARGETS, CHECK_INS, RUNS, DEFINITIONS, FORECAST, NOTIFICATIONS,
                 SLICE_MEMBERS)
ALL_TABLES = OUTPUT_TABLES + (META,)
BY_NAME = {t.name: t for t in ALL_TABLES}
# Tables whose rows belong to one KPI (deleted when the KPI is removed).
PER_KPI = (CATALOG, VALUES, STATUS, TARGETS, CHECK_INS, DEFINITIONS, FORECAST, SLICE_MEMBERS)
# Logs written outside a run, whose rows are only ever added: a plain table on every engine (never a versioned one,
# which only a run's publishing writes), appended to in a transaction of its own where the engine has them.
APPEND_ONLY = (NOTIFICATIONS,)
