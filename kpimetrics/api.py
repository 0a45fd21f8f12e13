"""The facade the CLI, the tests and orchestrators call: load, validate, compile, run."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .errors import Issue, Level, ValidationFailed
from .loader import ProjectDef, load_project


class Project:
    def __init__(self, definition: ProjectDef, *, profiles_dir: str | Path | None = None, target: str | None = None):
        self.definition = definition
        self.profiles_dir = profiles_dir
        self.target = target

    # --- loading and validation ---------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path = ".",
        *,
        profiles_dir: str | Path | None = None,
        target: str | None = None,
        vars: dict[str, Any] | None = None,
    ) -> "Project":
        return cls(load_project(Path(path), vars), profiles_dir=profiles_dir, target=target)

    @property
    def root(self) -> Path:
        return self.definition.root

    def validate(self, *, strict: bool = False, today: dt.date | None = None) -> list[Issue]:
        """Every problem of the project at once: load issues, then the cross-object rules."""
        from .validate import validate

        issues = list(self.definition.issues)
        if not any(i.is_error for i in issues if i.code in ("KPI000",)):
            issues.extend(validate(self.definition, today=today or dt.date.today()))
        if strict:
            issues = [i.as_error() if i.level is Level.WARNING else i for i in issues]
        return sorted(issues, key=_issue_order)

    def check(self, *, strict: bool = False, today: dt.date | None = None) -> list[Issue]:
        """validate(), raising ValidationFailed when any issue is an error."""
        issues = self.validate(strict=strict, today=today)
        errors = [i for i in issues if i.is_error]
        if errors:
            raise ValidationFailed(f"{len(errors)} error(s) in the project", issues)
        return issues


def _issue_order(issue: Issue):
    loc = issue.location
    return (loc.path if loc else "", loc.line if loc else 0, loc.col if loc else 0, issue.code)


# --- compile and run ---------------------------------------------------------------

from .errors import ConfigError, UsageError  # noqa: E402


def _check_dialect(dialect: str) -> str:
    from .config import ALL_DIALECTS

    if dialect not in ALL_DIALECTS:
        raise UsageError(f"unknown dialect '{dialect}' (choose one of: {', '.join(ALL_DIALECTS)})")
    return dialect


def _project_methods():
    import json

    from . import compiler, dag
    from .planner import build_plan

    def plan(self, *, strict: bool = False, today: dt.date | None = None):
        """Validate (raising on errors) and resolve every KPI."""
        self.issues = self.check(strict=strict, today=today)
        return build_plan(self.definition)

    def select(self, selector: str | None) -> list[str]:
        d = self.definition
        return dag.select(d.kpis, selector, d.strategies, d.config.dialect)

    def profile(self):
        from .profiles import resolve_profile

        d = self.definition
        return resolve_profile(d.root, d.config.profile, self.profiles_dir, self.target, d.secrets, d.vars)

    def target_dialect(self, dialect: str | None = None) -> str:
        if dialect:
            return _check_dialect(dialect)
        try:
            return self.profile().type
        except ConfigError:
            return _check_dialect(self.definition.config.dialect)

    def compile(self, select: str | None = None, *, dialect: str | None = None, strict: bool = False,
                today: dt.date | None = None) -> compiler.CompileResult:
        the_plan = self.plan(strict=strict, today=today)
        dialect = self.target_dialect(dialect)
        names = self.select(select)
        return compiler.write_target(the_plan, names, dialect, whole_project=not select)

    def connect(self):
        from .adapters import connect as _connect

        prof = self.profile()
        return _connect(prof.output, self.root, self.definition.config.calendar.timezone, self.definition.secrets)

    def run(self, select: str | None = None, *, full_refresh: bool = False, fail_fast: bool = False,
            as_of: dt.date | None = None, strict: bool = False, progress=None):
        from .runner import Runner

        the_plan = self.plan(strict=strict, today=as_of)
        names = self.select(select)
        adapter = self.connect()
        try:
            compiler.write_target(the_plan, names, adapter.dialect, whole_project=not select)
            runner = Runner(the_plan, adapter, selected=names, full_refresh=full_refresh, fail_fast=fail_fast,
                            as_of=as_of, whole_project=not select, progress=progress)
            result = runner.run()
        finally:
            adapter.close()
        path = self.root / "target" / "run_results.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.definition.secrets.scrub(json.dumps(result.to_dict(), indent=2, default=str)) + "\n")
        return result

    def seed(self) -> list[tuple[str, int]]:
        folder = self.root / "seeds"
        files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
        if not files:
            raise UsageError(f"no seeds: {folder} has no .csv files")
        adapter = self.connect()
        try:
            schema = self.definition.config.seed_schema or adapter.capabilities.default_schema
            return [(f"{schema}.{f.stem}", adapter.load_csv(f, schema, f.stem)) for f in files]
        finally:
            adapter.close()

    for fn in (plan, select, profile, target_dialect, compile, connect, run, seed):
        setattr(Project, fn.__name__, fn)


_project_methods()


def _reading_methods():
    """status and show: read the output tables, as BI tools do."""
    import yaml as _yaml

    from . import compiler

    def _read(self, sql: str, params: list) -> list[dict]:
        adapter = self.connect()
        try:
            schema = self.definition.config.output_schema
            if "kpi_status" not in adapter.tables(schema):
                raise ConfigError(f"no output tables in schema '{schema}' yet: run `kpimetrics run` first")
            cur_sql = sql.replace("{schema}", '"' + schema.replace('"', '""') + '"')
            rows = adapter.fetchall(cur_sql, params)
            cols = [c for c in _STATUS_COLUMNS]
            return [dict(zip(cols, r)) for r in rows]
        finally:
            adapter.close()

    def status(self, select: str | None = None, *, grain: str | None = None) -> list[dict]:
        """Each selected KPI's total at its latest complete period (first listed grain unless `grain`)."""
        names = self.select(select)
        kpis = self.definition.kpi_by_name
        default = self.definition.config.defaults.grain
        wanted = {n: grain or (kpis[n].declared_grains or (default,))[0] for n in names}
        if not names:
            return []
        marks = ", ".join("?" for _ in names)
        rows = _read(
            self,
            f"SELECT {', '.join(_STATUS_COLUMNS)} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY name, grain "
            f"ORDER BY period_start DESC) AS __rn FROM {{schema}}.kpi_status WHERE dimension = '' AND is_complete "
            f"AND name IN ({marks})) AS __s WHERE __rn = 1",
            list(names),
        )
        found = {(r["name"], r["grain"]): r for r in rows}
        out = []
        for n in names:
            r = found.get((n, wanted[n]))
            if r is None:
                k = kpis[n]
                r = {c: None for c in _STATUS_COLUMNS} | {"name": n, "grain": wanted[n], "status": "no_data",
                                                          "owner": k.owner, "strategy": k.strategy}
            r = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in r.items()}
            r["kind"] = kpis[n].kind
            out.append(r)
        return out

    def show(self, name: str, *, periods: int = 6) -> dict:
        kpis = self.definition.kpi_by_name
        if name not in kpis:
            from .loader import suggest

            raise UsageError(f"no KPI or standard named '{name}'{suggest(name, kpis)}")
        the_plan = self.plan()
        k = kpis[name]
        dialect = self.target_dialect()
        sql = compiler.render(compiler.kpi_query(the_plan, name), dialect)
        definition = _yaml.safe_dump(
            compiler._jsonable(k.model_dump(mode="json", by_alias=True, exclude_defaults=True)),
            sort_keys=False, allow_unicode=True,
        )
        recent = None
        try:
            rows = _read(
                self,
                f"SELECT {', '.join(_STATUS_COLUMNS)} FROM {{schema}}.kpi_status WHERE dimension = '' AND name = ? "
                f"ORDER BY grain, period_start DESC",
                [name],
            )
            recent = []
            for g in the_plan.kpis[name].grains:
                recent.extend(sorted([r for r in rows if r["grain"] == g][:periods], key=lambda r: r["period_start"]))
        except (ConfigError, KeyError):
            recent = None
        except Exception:  # noqa: BLE001 — no warehouse yet is not an error for `show`
            recent = None
        return {"name": name, "kind": k.kind, "label": k.label or name, "location": str(k.loc),
                "definition": definition, "sql": sql, "recent": recent}

    for fn in (status, show):
        setattr(Project, fn.__name__, fn)


_STATUS_COLUMNS = (
    "name", "grain", "period_start", "period_end", "dimension", "dimension_value", "value", "target",
    "at_risk_threshold", "status", "attainment", "previous_value", "change", "change_pct", "is_complete",
    "owner", "strategy", "priority", "run_id",
)

_reading_methods()
