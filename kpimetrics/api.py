"""The facade the CLI, the tests and orchestrators call: load, validate, compile, run, read."""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from . import compiler, dag
from .config import ALL_DIALECTS
from .errors import (ConfigError, Issue, KpiMetricsError, Level, Location, UsageError, ValidationFailed, WarehouseError,
                     bounded, error, warning)
from .loader import ProjectDef, load_project, suggest
from .planner import Plan, build_plan


def _masking(method):
    """A facade method whose errors leave it with env_var() values masked (`Project._masked`)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._masked():
            return method(self, *args, **kwargs)

    return wrapper


def manifest_adapter_warning(definition: ProjectDef, warehouse_type: str) -> Issue | None:
    """KPI143: the relation names in dbt's manifest are those of the adapter it was parsed for (SPEC §8)."""
    manifest = definition.manifest
    if manifest is None or manifest.adapter_type in (None, warehouse_type):
        return None
    return warning("KPI143", f"dbt's manifest was written for the {manifest.adapter_type} adapter, and this profile's "
                             f"warehouse is {warehouse_type}: the relations it names may not be here",
                   Location(manifest.display, 1, 1),
                   "run `dbt parse --target T` with the dbt target that points at this warehouse")


def _seeds_over_dbt(definition: ProjectDef, schema: str, files: list[Path], root: Path) -> list[Issue]:
    """KPI189: a seed whose table is a relation of the dbt project's manifest (a model, seed or snapshot dbt
    builds, or a source it reads) in the schema seeds load into: loading it would replace dbt's table with the
    CSV. Names are compared as the warehouses fold unquoted ones, without case; the database is not compared
    (a profile names it its own way), so a false alarm costs a `seed_schema`, never a table."""
    manifest = definition.manifest
    if manifest is None:
        return []
    relations = {((n.schema or "").lower(), n.identifier.lower()): n for n in manifest.nodes() if not n.ephemeral}
    found = []
    for f in files:
        node = relations.get((schema.lower(), f.stem.lower()))
        if node is not None:
            found.append(error(
                "KPI189", f"seed '{f.stem}' would replace {schema}.{node.identifier}, the dbt {node.resource_type} "
                          f"{node.label} ({node.file}): `seed` replaces the table of its name",
                Location(str(f.relative_to(root)), 1, 1),
                "set `seed_schema` in kpimetrics.yml to a schema of kpimetrics' own, or rename the seed file"))
    return found


class Project:
    def __init__(self, definition: ProjectDef, *, profiles_dir: str | Path | None = None, target: str | None = None):
        self.definition = definition
        self.profiles_dir = profiles_dir
        self.target = target
        self.issues: list[Issue] = []

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

        issues = list(self.definition.issues) + validate(self.definition, today=today or dt.date.today(),
                                                         allowed_paths=self._allowed_paths)
        if strict:
            issues = [i.as_error() if i.level is Level.WARNING else i for i in issues]
        scrub = self.definition.secrets.scrub
        return sorted((bounded(i, scrub) for i in issues), key=_issue_order)

    def _allowed_paths(self):
        """The profile's `allowed_paths`, for the machine-access check (asked only when project SQL reads a
        file): none when there is no usable profile, so `validate` needs none to refuse a file read."""
        from .validate import AllowedPaths

        try:
            output = self.profile().output
        except KpiMetricsError:
            return AllowedPaths()
        return AllowedPaths.resolve(self.root, getattr(output, "allowed_paths", ()))

    def check(self, *, strict: bool = False, today: dt.date | None = None) -> list[Issue]:
        """validate(), raising ValidationFailed when any issue is an error."""
        issues = self.validate(strict=strict, today=today)
        errors = [i for i in issues if i.is_error]
        if errors:
            raise ValidationFailed(f"{len(errors)} error(s) in the project", issues)
        return issues

    def plan(self, *, strict: bool = False, today: dt.date | None = None) -> Plan:
        """Validate (raising on errors) and resolve every KPI."""
        self.issues = self.check(strict=strict, today=today)
        return build_plan(self.definition)

    def select(self, selector: str | None, *, state: str | Path | None = None, plan: Plan | None = None) -> list[str]:
        """The KPIs `selector` picks (selection syntax), in project order. `state`: an earlier target/ folder or
        its manifest.json, which `state:modified` and `state:new` compare with; read, and the project planned
        (or `plan` used), only when the selector has such a term."""
        d = self.definition

        def changes() -> dag.StateChanges:
            from . import diff

            _, earlier = diff.load_state(Path(state))  # checked as `diff --state` checks it (KPI130-132)
            the_plan = plan or self.plan()
            # as compile writes it (JSON, dates as text, env_var() values masked): only a real difference counts
            doc = compiler.manifest(the_plan, list(the_plan.kpis), d.config.dialect, {})["kpis"]
            now = json.loads(d.secrets.scrub(json.dumps(doc, default=str)))
            found = diff.compare(earlier["kpis"], now)
            new = frozenset(k.name for k in found if k.change == "added")
            return dag.StateChanges(new, new | {k.name for k in found if k.change == "changed"})

        return dag.select(d.kpis, selector, d.strategies, d.config.dialect, changes if state is not None else None)

    # --- the warehouse ------------------------------------------------------------

    def profile(self):
        from .profiles import resolve_profile

        d = self.definition
        return resolve_profile(d.root, d.config.profile, self.profiles_dir, self.target, d.secrets, d.vars,
                               dbt_dir=d.dbt.dir if d.dbt else None, dbt_profile=d.dbt.profile if d.dbt else None)

    @_masking
    def connect(self):
        from .adapters import connect

        prof = self.profile()
        return connect(prof.output, self.root, self.definition.config.calendar.timezone, self.definition.paths.seeds)

    @contextmanager
    def _masked(self):
        """Errors raised inside have env_var() values masked, as the CLI masks everything it prints: an
        orchestrator logs them too. The original is not chained (its traceback would quote it).
        Every facade method that reaches the warehouse is wrapped in it (`_masking`)."""
        try:
            yield
        except KpiMetricsError as exc:
            scrub = self.definition.secrets.scrub
            masked = type(exc)(scrub(str(exc)), [dataclasses.replace(i, message=scrub(i.message)) for i in exc.issues])
            raise masked from None

    def target_dialect(self, dialect: str | None = None) -> str:
        """--dialect, else the profile's type, else the project's own dialect."""
        if not dialect:
            try:
                return self.profile().type
            except ConfigError:
                dialect = self.definition.config.dialect
        if dialect not in ALL_DIALECTS:
            raise UsageError(f"unknown dialect '{dialect}' (choose one of: {', '.join(ALL_DIALECTS)})")
        return dialect

    # --- compile and run ------------------------------------------------------------

    def compile(self, select: str | None = None, *, dialect: str | None = None, strict: bool = False,
                today: dt.date | None = None, state: str | Path | None = None) -> compiler.CompileResult:
        the_plan = self.plan(strict=strict, today=today)
        dialect = self.target_dialect(dialect)
        names = self.select(select, state=state, plan=the_plan)
        with self._writing_target():
            return compiler.write_target(the_plan, names, dialect, whole_project=not select, parallel=True)

    @contextmanager
    def _writing_target(self):
        """target/ that cannot be written (a file where the folder should be, a read-only disk) is the user's
        machine to fix, not a kpimetrics bug: exit 1 with KPI096, before anything reaches the warehouse."""
        folder = self.definition.paths.target
        try:
            yield
        except OSError as exc:
            where = exc.filename or folder
            message = f"cannot write {where}: {exc.strerror or exc}"
            raise ConfigError(message, [error("KPI096", message, Location(str(folder)),
                                              "make target/ a folder this user can write, or remove what is in its way")]) from None

    @_masking
    def run(self, select: str | None = None, *, full_refresh: bool = False, fail_fast: bool = False,
            as_of: dt.date | None = None, strict: bool = False, progress=None, state: str | Path | None = None):
        from .runner import Runner

        the_plan = self.plan(strict=strict, today=as_of)
        names = self.select(select, state=state, plan=the_plan)
        adapter = self.connect()
        opened = self._opened(adapter)
        if progress is not None:
            progress("connected", {"warehouse": adapter.describe()})
        try:
            with self._writing_target():  # target/ first: a run that cannot write it publishes nothing
                compiler.write_target(the_plan, names, adapter.dialect, whole_project=not select)
            runner = Runner(the_plan, adapter, selected=names, full_refresh=full_refresh, fail_fast=fail_fast,
                            as_of=as_of, whole_project=not select, progress=progress)
            result = runner.run()
        finally:
            adapter.close()
        result.warnings[:0] = opened
        path = self.definition.paths.target / "run_results.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.definition.secrets.scrub(json.dumps(result.to_dict(), indent=2, default=str)) + "\n")
        except OSError as exc:  # the run has published: losing its record is a warning, not a failed run
            result.warnings.append(warning(
                "KPI097", f"could not write {exc.filename or path}: {exc.strerror or exc}; run {result.run_id} "
                          f"is recorded in kpi_runs as '{result.status}'", Location(str(path))))
        return result

    def _opened(self, adapter) -> list[Issue]:
        """KPI143 when dbt's manifest was written for another warehouse type than this one; KPI098 when
        connecting created the DuckDB file: a mistyped `path` would otherwise show only as every source table
        missing."""
        found = [w] if (w := manifest_adapter_warning(self.definition, self.profile().type)) else []
        if not getattr(adapter, "created", False):
            return found
        prof = self.profile()
        return found + [warning("KPI098", f"the DuckDB file {adapter.path} did not exist: this run created it, empty. "
                                  f"Is `path` in profiles.yml right (a relative path is from {prof.paths_why})?",
                        Location(str(prof.path)))]

    @_masking
    def seed(self) -> list[tuple[str, int]]:
        folder = self.definition.paths.seeds
        files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
        if not files:
            raise UsageError(f"no seeds: {folder} has no .csv files")
        from .loader import seed_issues

        malformed = [issue for f in files for issue in seed_issues(f, str(f.relative_to(self.root)))]
        if malformed:  # before connecting: no warehouse reads a ragged file its own way
            raise ValidationFailed(f"{len(malformed)} seed file(s) cannot be loaded", malformed)
        adapter = self.connect()
        try:
            config = self.definition.config
            schema = config.seed_schema or adapter.capabilities.default_schema
            if schema.lower() == config.output_schema.lower():  # a seed named kpi_values would replace the KPIs
                key = "seed_schema" if config.seed_schema else "output_schema"
                message = (f"seed would load into schema '{schema}', the output schema that holds the KPI tables; "
                           f"seeds never go there. Set `seed_schema` (or `output_schema`) in kpimetrics.yml to another schema")
                where = config.key_loc(key) if key in config.model_fields_set else config.key_loc("name")
                raise ConfigError(message, [error("KPI095", message, where or Location(self.definition.config_path, 1, 1))])
            over_dbt = _seeds_over_dbt(self.definition, schema, files, self.root)
            if over_dbt:  # before the first seed loads: all of them or none
                raise ValidationFailed(f"{len(over_dbt)} seed(s) would replace a relation of the dbt project", over_dbt)
            return [(f"{schema}.{f.stem}", adapter.load_csv(f, schema, f.stem)) for f in files]
        finally:
            adapter.close()

    # --- reading the output tables, as BI tools do ------------------------------------

    @contextmanager
    def outputs(self):
        """The typed reader of the output tables (`outputs.OutputReader`), on an open connection."""
        from .outputs import OutputReader

        with self._masked():
            adapter = self.connect()
            try:
                yield OutputReader(adapter, self.definition.config.output_schema)
            finally:
                adapter.close()

    @_masking
    def status(self, select: str | None = None, *, grain: str | None = None, history: int = 8,
               state: str | Path | None = None) -> list[dict]:
        """Each selected KPI's total at its latest complete period (first listed grain unless `grain`), in YAML
        order, with `recent_values`: its values over the last `history` complete periods, oldest first; `forecast`:
        its headline row of kpi_forecast (outputs.headline_forecast) with `course` ('on course' / 'off course'), or
        None; what a reader is shown of it: `unit`, `currency`, `priority_label`, `strategy_label` (SPEC §10)."""
        from .outputs import StatusRow, as_dict, columns, headline_forecast
        from .status import course

        names = self.select(select, state=state)
        if not names:
            return []
        d = self.definition
        kpis = d.kpi_by_name
        labels = d.labels
        default = d.config.defaults.grain
        wanted = {n: grain or (kpis[n].declared_grains or (default,))[0] for n in names}
        with self.outputs() as out:
            out.require(StatusRow)
            headlines = out.headlines(wanted, history)
            forecasts = out.forecasts()
        rows = []
        for n, h in headlines.items():
            k = kpis[n]
            if h.row is None:  # no complete period at that grain yet
                r = dict.fromkeys(columns(StatusRow)) | {
                    "name": n, "grain": h.grain, "status": h.status.value, "owner": k.owner, "strategy": k.strategy}
            else:
                r = as_dict(h.row)
            r = {key: (v.isoformat() if isinstance(v, dt.date) else v) for key, v in r.items()}
            r["kind"] = k.kind
            r["recent_values"] = [x.value for x in h.recent]
            r["unit"], r["currency"] = k.unit, d.currency_of(k)
            r["priority_label"] = labels.get(r["priority"]) if r.get("priority") else None
            r["strategy_label"] = labels.get(r["strategy"]) if r.get("strategy") else None
            f = headline_forecast(forecasts, n, h.grain)
            r["forecast"] = None if f is None else {
                key: v.isoformat() if isinstance(v, dt.date) else v
                for key, v in as_dict(f).items() if key not in ("name", "grain")} | {"course": course(f.forecast_status)}
            rows.append(r)
        return rows

    @_masking
    def notify(self, select: str | None = None, *, dry_run: bool = False, state: str | Path | None = None):
        """Send the notices due under kpimetrics.yml's `notify:` rules (SPEC §10) for the KPIs `select` picks (all when
        None): one message per recipient and channel, each notice logged in kpi_notifications. `dry_run`: work
        them out and send nothing. Returns a `notify.notices.NotifyResult`; `.issues()` has a KPI168 error per
        message that was not sent (nothing is raised for it: the other messages went, and are logged)."""
        from .notify import notices

        self.check()
        if self.definition.config.notify is None:
            raise notices.not_configured(self.definition.config_path)
        names = self.select(select, state=state) if select else None
        adapter = self.connect()
        try:
            return notices.notify(self.definition, adapter, select=names, dry_run=dry_run)
        finally:
            adapter.close()

    @_masking
    def docs_generate(self):
        """The static scorecard site in target/docs/, from the output tables and the manifest."""
        from . import docs

        return docs.generate(self)

    @_masking
    def diff(self, state: str | Path, *, periods: int = 6):
        """Against an earlier target/ (its manifest): added, removed, changed and affected KPIs,
        with the recent values of changed ones under the old and the new definition."""
        from . import diff

        return diff.diff(self, Path(state), periods=periods)

    @_masking
    def show(self, name: str, *, periods: int = 6) -> dict:
        from sqlglot import exp

        from . import combinations
        from .outputs import StatusRow, as_dict, latest_slices_query

        kpis = self.definition.kpi_by_name
        if name not in kpis:
            raise UsageError(f"no KPI or standard named '{name}'{suggest(name, kpis)}")
        the_plan = self.plan()
        k = kpis[name]
        sql = compiler.render(compiler.kpi_query(the_plan, name), self.target_dialect())
        definition = yaml.safe_dump(
            compiler.jsonable(k.model_dump(mode="json", by_alias=True, exclude_defaults=True)),
            sort_keys=False, allow_unicode=True,
        )
        try:
            with self.outputs() as out:
                out.require(StatusRow)
                recent = [as_dict(r) for r in out.recent_totals([name], periods, complete_only=False)]
                # its slices at the latest complete period, each labelled 'region=EU · channel=web' (combinations.py)
                of_kpi = exp.EQ(this=exp.column("name", table="s", quoted=True), expression=exp.Literal.string(name))
                slices = [as_dict(r) | {"slice": combinations.label(r.dimension, r.dimension_value)}
                          for r in out.fetch(StatusRow, latest_slices_query(out.schema).where(of_kpi))]
        except (ConfigError, WarehouseError):  # nothing run yet: show the definition alone
            recent = slices = None
        scrub = self.definition.secrets.scrub  # a model may read env_var()
        return {"name": name, "kind": k.kind, "label": k.label or name, "location": str(k.loc),
                "definition": scrub(definition), "sql": scrub(sql), "recent": recent, "slices": slices}


def _issue_order(issue: Issue):
    loc = issue.location
    return (loc.path if loc else "", loc.line if loc else 0, loc.col if loc else 0, issue.code)
