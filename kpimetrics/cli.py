"""The command line: thin click commands over `kpimetrics.api`.

Exit codes: 0 success; 1 the project or the run has errors (or --fail-on hit);
2 the command line is wrong; 3 an internal error (a bug: please report it).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import click

from . import __version__
from .errors import Issue, KpiMetricsError, ValidationFailed

if TYPE_CHECKING:
    from .api import Project
# Each command imports what it uses (the api, sqlglot, pydantic, rich, yaml): `--version` and `--help` load click
# alone (bench/RESULTS.md has the start-up times).
from .status import FAIL_ON


class _Masked:
    """An output stream that masks env_var() values in everything written to it."""

    def __init__(self, stream, secrets):
        self._stream, self._secrets = stream, secrets

    def write(self, text: str) -> int:
        self._stream.write(self._secrets.scrub(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def mask_secrets(secrets) -> None:
    """Secrets never reach the terminal or a CI log: a last net under every message, progress line and
    (with --debug) traceback. The registry is live, so values that env_var() returns later are masked too."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, _Masked):
            stream._secrets = secrets  # a new command in the same process (tests): its project's secrets
        else:
            setattr(sys, name, _Masked(stream, secrets))


class Ctx:
    def __init__(self, opts: dict[str, Any]):
        self.opts = opts
        self.quiet = opts.get("quiet", False)
        self.json_logs = opts.get("log_format") == "json"

    # made on first use: importing rich costs ~15 ms, and `run -q` prints nothing
    @functools.cached_property
    def out(self):
        from rich.console import Console

        return Console(highlight=False, soft_wrap=True)

    @functools.cached_property
    def err(self):
        from rich.console import Console

        return Console(stderr=True, highlight=False, soft_wrap=True)

    def project(self) -> Project:
        from .api import Project

        project = Project.load(
            self.opts.get("project_dir") or ".",
            profiles_dir=self.opts.get("profiles_dir"),
            target=self.opts.get("target"),
            vars=self.opts.get("vars"),
        )
        mask_secrets(project.definition.secrets)
        return project

    def log(self, message: str, **fields: Any) -> None:
        if self.quiet:
            return
        if self.json_logs:
            click.echo(json.dumps({"level": "info", "message": message, **fields}, default=str), err=True)
        else:
            self.err.print(message)

    def issues(self, issues: list[Issue]) -> None:
        for i in issues:
            if self.quiet and not i.is_error:
                continue
            if self.json_logs:
                click.echo(json.dumps(i.to_dict()))
            else:
                style = "red" if i.is_error else "yellow"
                self.out.print(f"[{style}]{_escape(i.format())}[/{style}]")
        errors = sum(1 for i in issues if i.is_error)
        warnings = len(issues) - errors
        if not self.json_logs and (errors or warnings) and not (self.quiet and not errors):
            self.out.print(f"{errors} error(s), {warnings} warning(s)")


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def _parse_vars(ctx, param, value):
    if value is None:
        return None
    import yaml

    try:
        data = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"not YAML: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a YAML mapping, e.g. '{start_date: 2024-01-01}'")
    return data


GLOBAL_OPTIONS = [
    click.option("--project-dir", type=click.Path(file_okay=False), default=None, help="the project folder (default: .)"),
    click.option("--profiles-dir", type=click.Path(file_okay=False), default=None, help="where profiles.yml is"),
    click.option("--target", "-t", default=None, help="the profile output to use"),
    click.option("--vars", default=None, callback=_parse_vars, help="YAML mapping overriding kpimetrics.yml vars"),
    click.option("--log-format", type=click.Choice(["text", "json"]), default=None),
    click.option("--quiet", "-q", is_flag=True, default=None, help="only errors"),
    click.option("--debug", is_flag=True, default=None, help="show tracebacks"),
]
_GLOBAL_NAMES = ("project_dir", "profiles_dir", "target", "vars", "log_format", "quiet", "debug")


def command(group, *args, **kwargs):
    """A subcommand that also accepts the global options after its name, as dbt does."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(**kw):
            opts = dict(click.get_current_context().find_root().obj or {})
            for name in _GLOBAL_NAMES:
                if kw.get(name) is not None:
                    opts[name] = kw[name]
                kw.pop(name, None)
            ctx = Ctx(opts)
            try:
                with _terminate_as_interrupt():
                    return fn(ctx, **kw)
            except KpiMetricsError as exc:
                if exc.issues:
                    ctx.issues(exc.issues)
                if not isinstance(exc, ValidationFailed):  # its issues, with their count, say it all
                    ctx.err.print(f"[red]error:[/red] {_escape(str(exc))}")
                if opts.get("debug"):
                    raise
                sys.exit(exc.exit_code)
            except KeyboardInterrupt:
                ctx.err.print("[red]interrupted[/red]: the run was stopped and logged as aborted in kpi_runs. The output "
                              "tables hold the previous run's results, or this run's if it had already committed: "
                              "never a mix. It is safe to run again.")
                sys.exit(130)
            except click.exceptions.Exit:
                raise
            except click.ClickException:
                raise
            except Exception as exc:  # a bug, not a user mistake
                if opts.get("debug"):
                    raise
                ctx.err.print(f"[red]internal error:[/red] {type(exc).__name__}: {_escape(str(exc))}\n"
                              "This is a bug in kpimetrics; rerun with --debug for the traceback and report it.")
                sys.exit(3)

        for opt in reversed(GLOBAL_OPTIONS):
            wrapper = opt(wrapper)
        return group.command(*args, **kwargs)(wrapper)

    return decorate


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a CI job cancelled, `docker stop`, a scheduler's timeout) stops a command as Ctrl-C does: the run
    rolls back, is logged as aborted and exits 130, instead of dying with its staging tables left behind."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _with_globals(group):
    for opt in reversed(GLOBAL_OPTIONS):
        group = opt(group)
    return group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kpimetrics")
@click.pass_context
def main(click_ctx, **kw):
    """kpimetrics: KPIs defined in YAML + SQL, validated in CI, computed in your warehouse."""
    click_ctx.obj = {k: v for k, v in kw.items() if v is not None}


main = _with_globals(main)


def entry() -> None:
    """The console script (and `python -m kpimetrics`): the command, then an exit that skips tearing the
    interpreter down. Freeing a 10,000-KPI project object by object at shutdown took 0.9 s of a 5 s compile;
    the operating system frees the process's memory at once. Every connection a command opens is closed in its
    own `finally`, and the output streams are flushed here. A process that started Spark exits normally: its
    JVM is stopped by an exit handler."""
    try:
        main()
        code = 0
    except SystemExit as stop:
        code = stop.code
    if "pyspark" in sys.modules:
        sys.exit(code)
    if code is not None and not isinstance(code, int):  # sys.exit("message") prints it and exits 1
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    os._exit(code or 0)


# --- commands ---------------------------------------------------------------------


@command(main, "init")
@click.argument("name")
def init_cmd(ctx: Ctx, name: str):
    """Scaffold a project with demo data and a DuckDB profile."""
    from .scaffold import init_project

    dest = init_project(name, Path(ctx.opts.get("project_dir") or "."))
    ctx.out.print(f"Created {dest}. Next:\n  cd {dest}\n  kpimetrics seed\n  kpimetrics run\n  kpimetrics status")


@command(main, "seed")
def seed_cmd(ctx: Ctx):
    """Load seeds/*.csv into the warehouse."""
    for table, rows in ctx.project().seed():
        ctx.log(f"loaded {rows} rows into {table}", table=table, rows=rows)


@command(main, "validate")
@click.option("--strict", is_flag=True, help="treat warnings as errors")
def validate_cmd(ctx: Ctx, strict: bool):
    """Load and validate the project; exit 1 on any error."""
    issues = ctx.project().validate(strict=strict)
    ctx.issues(issues)
    if any(i.is_error for i in issues):
        sys.exit(1)
    if not ctx.json_logs:
        ctx.out.print("[green]OK[/green]: the project is valid")


STATE_OPTION = click.option(
    "--state", type=click.Path(exists=True), default=None,
    help="an earlier target/ folder (or its manifest.json) for -s state:modified / state:new")


@command(main, "compile")
@click.option("--select", "-s", default=None, help="KPIs to compile (selection syntax)")
@STATE_OPTION
@click.option("--dialect", default=None, help="SQL dialect (default: the profile's type)")
@click.option("--strict", is_flag=True)
def compile_cmd(ctx: Ctx, select: str | None, state: str | None, dialect: str | None, strict: bool):
    """Validate, then write target/compiled/<dialect>/*.sql, target/run.sql and target/manifest.json."""
    project = ctx.project()
    result = project.compile(select, dialect=dialect, strict=strict, state=state)
    ctx.issues([i for i in project.issues if not i.is_error])
    ctx.log(f"compiled {len(result.files)} KPI(s) for {result.dialect} into {project.definition.paths.target}",
            files=len(result.files), dialect=result.dialect)


def _as_date(ctx, param, value):
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected a date YYYY-MM-DD") from None


@command(main, "run")
@click.option("--select", "-s", default=None)
@STATE_OPTION
@click.option("--full-refresh", is_flag=True, help="recompute every period of every selected KPI")
@click.option("--fail-fast", is_flag=True, help="stop at the first failing KPI and publish nothing")
@click.option("--as-of", callback=_as_date, default=None, help="the run's date (for is_complete and freshness)")
@click.option("--strict", is_flag=True)
@click.option("--notify", "send_notices", is_flag=True, help="then send the notices due (kpimetrics.yml's notify:)")
def run_cmd(ctx: Ctx, select, state, full_refresh, fail_fast, as_of, strict, send_notices):
    """Compile, compute in the warehouse, and publish the output tables."""
    project = ctx.project()
    if send_notices and project.definition.config.notify is None:  # before the run, not after it
        from .notify.notices import not_configured

        raise not_configured(project.definition.config_path)
    show = not ctx.quiet and not ctx.json_logs

    with _progress_bar(ctx, show) as bar:
        def progress(event: str, info: dict):
            if event == "connected" and show:
                ctx.err.print(f"warehouse: {_escape(info['warehouse'])}")
            elif event == "scan":
                bar(f"scanning {info['model']} at {info['grain']} for {len(info['kpis'])} KPI(s)")
            elif event == "derived":
                bar(f"deriving {info['kpi']}")
            elif event == "publish":
                bar(f"publishing {info['kpis']} KPI(s)")
            elif event == "failed":
                ctx.err.print(f"[red]✖ {info['kpi']} failed:[/red] {_escape(info['error'])}")
            if ctx.json_logs:
                click.echo(json.dumps({"event": event, **info}, default=str), err=True)

        result = project.run(select, full_refresh=full_refresh, fail_fast=fail_fast, as_of=as_of, strict=strict,
                             progress=progress, state=state)
    ctx.issues([i for i in project.issues if not i.is_error] + result.warnings)
    if not result.kpis:  # `-s state:modified` when nothing changed
        ctx.log("the selection picked no KPI: nothing was computed", kpis=0)
    if not ctx.quiet:
        _run_summary(ctx, project, result)
    # after publishing, on a connection of its own: a notice that fails leaves the run's results as they are
    notified = _notify(ctx, project, select, state, dry_run=False) if send_notices else True
    if result.status != "success" or not notified:
        sys.exit(1)


@contextlib.contextmanager
def _progress_bar(ctx: Ctx, show: bool):
    """A transient spinner on stderr, as a function that sets its text; a no-op (rich not even imported)
    when nothing is shown."""
    if not show:
        yield lambda description: None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=ctx.err,
                  transient=True) as bar:
        task = bar.add_task("starting", total=None)
        yield lambda description: bar.update(task, description=description)


def _run_summary(ctx: Ctx, project: Project, result) -> None:
    if ctx.json_logs:
        click.echo(json.dumps(result.to_dict(), default=str))
        return
    from rich.table import Table

    from . import scorecard

    latest = {}
    try:
        latest = {r["name"]: r for r in project.status(" ".join(k.name for k in result.kpis))}
    except KpiMetricsError:
        pass
    table = Table(title=f"run {result.run_id}: {result.status}", title_justify="left")
    for c in ("KPI", "result", "rows", "seconds", "latest complete period", "value", "target", "status"):
        table.add_column(c, justify="right" if c in ("rows", "seconds", "value", "target") else "left")
    for k in result.kpis:
        row = latest.get(k.name, {})
        unit, currency = row.get("unit"), row.get("currency")
        table.add_row(
            k.name, ("[green]ok[/green]" if k.status == "success" else f"[red]{k.status}[/red]"), str(k.rows),
            f"{k.seconds:.2f}", str(row.get("period_start") or ""),
            scorecard.format_value(row.get("value"), unit, currency),
            scorecard.format_value(row.get("target"), unit, currency), scorecard.badge(row["status"]) if row else "",
        )
    ctx.out.print(table)
    for k in result.kpis:
        if k.error:
            ctx.out.print(f"[red]{k.name}[/red]: {_escape(k.error)}")
    if result.message:
        ctx.out.print(_escape(result.message))


@command(main, "status")
@click.option("--select", "-s", default=None)
@STATE_OPTION
@click.option("--grain", type=click.Choice(["day", "week", "month", "quarter", "year"]), default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--fail-on", type=click.Choice([s.value for s in FAIL_ON]), default=None)
def status_cmd(ctx: Ctx, select, state, grain, fmt, fail_on):
    """Each KPI's total at its latest complete period, from the output tables."""
    from . import scorecard

    project = ctx.project()
    rows = project.status(select, grain=grain, state=state)  # with each KPI's forecast (SPEC §10)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        scorecard.render(ctx.out, rows, project.definition.mission, project.definition.labels)
    bad = scorecard.failing(rows, fail_on)
    if bad:
        states = " or ".join(FAIL_ON[fail_on])
        ctx.err.print(f"[red]{len(bad)} KPI(s) {states}[/red]: " + ", ".join(r["name"] for r in bad))
        sys.exit(1)


@command(main, "notify")
@click.option("--select", "-s", default=None, help="only these KPIs (selection syntax); each rule's select still applies")
@STATE_OPTION
@click.option("--dry-run", is_flag=True, help="print the messages that would be sent; send and log nothing")
def notify_cmd(ctx: Ctx, select, state, dry_run):
    """Send the notices due under kpimetrics.yml's notify: rules, one message per recipient and channel."""
    if not _notify(ctx, ctx.project(), select, state, dry_run=dry_run):
        sys.exit(1)


def _notify(ctx: Ctx, project: Project, select, state, *, dry_run: bool) -> bool:
    """Notify and report; False when a message was not sent (KPI168, naming the channel)."""
    result = project.notify(select, dry_run=dry_run, state=state)
    ctx.issues(result.issues())
    if ctx.json_logs:
        click.echo(json.dumps(result.to_dict(), default=str))
    elif dry_run:
        for o in result.outcomes:
            m = o.message
            click.echo(f"--- would send on {m.channel} ({m.format}){' to ' + m.recipient if m.recipient else ''}: "
                       f"{len(m.notices)} notice(s)")
            if m.format == "email":
                click.echo(f"Subject: {m.title}\n")
            click.echo(m.shown())
    for o in result.outcomes if not (dry_run or ctx.quiet or ctx.json_logs) else ():
        m = o.message
        mark = "[green]sent[/green]" if o.ok else "[red]not sent[/red]"
        ctx.out.print(f"{mark} on {_escape(m.channel)}{' to ' + _escape(m.recipient) if m.recipient else ''}: {_escape(m.title)}")
    sent = sum(len(o.keys) for o in result.outcomes if o.ok)
    verb = "would send" if dry_run else "sent"
    ctx.log(f"notify: {verb} {sent} notice(s) in {len(result.outcomes) - len(result.failed)} message(s); "
            f"{len(result.failed)} message(s) failed; {result.already_sent} notice(s) sent before",
            sent=sent, failed=len(result.failed), already_sent=result.already_sent)
    return not result.failed


@command(main, "ls")
@click.option("--select", "-s", default=None)
@STATE_OPTION
@click.option("--output", "output", type=click.Choice(["name", "json"]), default="name")
@click.option("--metrics", "metrics", is_flag=True, help="list dbt's semantic-layer metrics and the KPIs that use each")
def ls_cmd(ctx: Ctx, select, state, output, metrics):
    """List KPIs and standards (with --metrics, the semantic layer's metrics)."""
    project = ctx.project()
    if metrics:
        from .dbt.semantic import metrics_listing

        listed = metrics_listing(project.definition)
        if output == "json":
            click.echo(json.dumps(listed, indent=2))
        else:
            for m in listed:
                click.echo(f"{m['name']}  ({m['type']}, {m['defined_at']})  kpis: {', '.join(m['kpis']) or '-'}")
        return
    names = project.select(select, state=state)
    kpis = project.definition.kpi_by_name
    if output == "json":
        strategies = project.definition.strategies
        click.echo(json.dumps([
            {"name": n, "kind": kpis[n].kind, "label": kpis[n].label, "owner": kpis[n].owner, "strategy": kpis[n].strategy,
             "priority": strategies[kpis[n].strategy].priority.name if kpis[n].strategy in strategies else None,
             "tags": list(kpis[n].tags), "form": kpis[n].form, "metric": kpis[n].metric}
            for n in names
        ], indent=2))
    else:
        for n in names:
            click.echo(n)


@command(main, "show")
@click.argument("kpi")
@click.option("--periods", default=6, show_default=True, help="how many recent periods to show")
def show_cmd(ctx: Ctx, kpi: str, periods: int):
    """A KPI's definition, its compiled SQL and its recent values."""
    from rich.syntax import Syntax
    from rich.table import Table

    from . import scorecard

    project = ctx.project()
    info = project.show(kpi, periods=periods)
    ctx.out.print(f"[bold]{info['name']}[/bold] ({info['kind']}) — {info['label']}  [dim]{info['location']}[/dim]")
    ctx.out.print(Syntax(info["definition"], "yaml", theme="ansi_dark", background_color="default"))
    ctx.out.print("[bold]compiled SQL[/bold]")
    ctx.out.print(Syntax(info["sql"], "sql", theme="ansi_dark", background_color="default"))
    if info["recent"] is None:
        ctx.out.print("[dim]no values yet: run `kpimetrics run`[/dim]")
        return
    table = Table(title="recent values", title_justify="left")
    for c in ("grain", "period", "value", "target", "status", "complete"):
        table.add_column(c)
    k = project.definition.kpi_by_name[kpi]
    unit, currency = k.unit, project.definition.currency_of(k)
    for r in info["recent"]:
        table.add_row(r["grain"], str(r["period_start"]), scorecard.format_value(r["value"], unit, currency),
                      scorecard.format_value(r["target"], unit, currency), scorecard.badge(r["status"]),
                      "yes" if r["is_complete"] else "no")
    ctx.out.print(table)
    if info.get("slices"):  # at the latest complete period; a combination reads 'region=EU · channel=web'
        table = Table(title="slices", title_justify="left")
        for c in ("grain", "period", "slice", "value", "target", "status"):
            table.add_column(c, no_wrap=c == "slice")
        for r in info["slices"]:
            table.add_row(r["grain"], str(r["period_start"]), r["slice"], scorecard.format_value(r["value"], unit, currency),
                          scorecard.format_value(r["target"], unit, currency), scorecard.badge(r["status"]))
        ctx.out.print(table)


@main.group("docs")
def docs_group():
    """The static scorecard site in target/docs/."""


@command(docs_group, "generate")
def docs_generate_cmd(ctx: Ctx):
    """Write the scorecard site (no network needed to view it) to target/docs/."""
    result = ctx.project().docs_generate()
    ctx.log(f"wrote {len(result.pages)} page(s); open {result.index}", pages=len(result.pages), index=str(result.index))


@command(docs_group, "serve")
@click.option("--port", default=8080, show_default=True, help="the port on localhost (0: any free port)")
def docs_serve_cmd(ctx: Ctx, port: int):
    """Serve target/docs/ on localhost until Ctrl-C."""
    from . import docs

    folder = ctx.project().definition.paths.target / "docs"
    docs.serve(folder, port, on_ready=lambda url: ctx.out.print(f"serving {folder} at {url} (Ctrl-C to stop)"))


@command(main, "diff")
@click.option("--state", required=True, type=click.Path(exists=True), help="an earlier target/ folder (or its manifest.json)")
@click.option("--periods", default=6, show_default=True, help="how many recent periods of values to compare")
@click.option("--output", "output", type=click.Choice(["markdown", "json"]), default="markdown")
def diff_cmd(ctx: Ctx, state: str, periods: int, output: str):
    """What changed against an earlier target/, and how the values move: Markdown for a pull-request comment."""
    result = ctx.project().diff(state, periods=periods)
    click.echo(json.dumps(result.to_dict(), indent=2, default=str) if output == "json" else result.to_markdown())


@command(main, "debug")
def debug_cmd(ctx: Ctx):
    """Check the profile and the connection; report the dbt project, its manifest and the profile's dbt settings."""
    from .dbt.debug import report

    for line in report(ctx.project()):
        text = _escape(line.text)
        if line.level == "ok":  # connection: OK (...)
            text = text.replace("OK", "[green]OK[/green]", 1)
        label = f"[yellow]{_escape(line.label)}:[/yellow]" if line.level == "warning" else f"{_escape(line.label)}:"
        ctx.out.print(f"{label} {text}")


if __name__ == "__main__":  # pragma: no cover
    main()
