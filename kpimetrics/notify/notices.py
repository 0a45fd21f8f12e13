"""`kpimetrics notify`: the notices due, one message per recipient and channel, sent, logged.

    headlines (kpi_status: each KPI's total at its latest complete period of its first grain)
      --rules--> notices due: (KPI, grain, period, status, channel, recipient) for each rule whose `when` holds
      --kpi_notifications--> less those already sent: never twice for the same KPI, period and status on a
                             channel to a recipient; a notice whose send failed is due again on the next call
      --group--> one Message per (channel, recipient)
      --send--> an outcome per message ('sent', or 'failed: why')
      --log--> a row of kpi_notifications per notice, written after each message

kpi_notifications is append-only on every engine (never updated or deleted), written outside a run: in a
transaction on DuckDB and PostgreSQL (a message's rows all or none), with plain appends on Spark, where it
is a table of its own like kpi_runs' log rather than a versioned one. The output schema's run lock is held
while notices are worked out and sent, so two calls at once do not both send the same notice. Nothing here
writes another output table: a failed notice never changes what a run published.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlglot import exp

from .. import migrations, tables
from ..dialects import generate
from ..errors import ConfigError, Issue, Level, Location, WarehouseError, error, warning
from ..outputs import OutputReader, StatusRow
from ..sqlgen import col, lit
from ..tables import qualified
from ..yamlio import shown
from .check import OWNER, owner_email, render_channel, render_link_base, rule_selection
from .messages import CheckIn, Forecast, Message, Notice
from .send import post_json, send_email
from .settings import EmailChannel, NotifySettings

SENT = "sent"
FAILED = "failed"
OUTCOME_CHARS = 500  # the most of a failure's reason kept in the log


@dataclass(frozen=True)
class Key:
    """What makes a notice the same notice: never sent twice."""

    name: str
    grain: str
    period_start: dt.date
    status: str
    channel: str
    recipient: str


@dataclass
class Outcome:
    """One message and what became of it."""

    message: Message
    keys: list[Key]
    error: str | None = None  # None: sent (or, on a dry run, would be)
    issue: Issue | None = None  # why a channel could not be made ready (an unset env_var, a bad url)

    @property
    def ok(self) -> bool:
        return self.error is None and self.issue is None


@dataclass
class NotifyResult:
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)  # a KPI168 per message not sent (and why its channel failed)
    already_sent: int = 0  # notices due by the rules and sent before

    def issues(self) -> list[Issue]:
        return list(dict.fromkeys(self.warnings + self.errors))  # a channel that failed to render: said once

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "already_sent": self.already_sent, "messages": [
            {"channel": o.message.channel, "recipient": o.message.recipient, "format": o.message.format,
             "kpis": [n.name for n in o.message.notices], "ok": o.ok, "error": o.error or (o.issue.message if o.issue else None),
             "title": o.message.title}
            for o in self.outcomes]}


def not_configured(config_path: str) -> ConfigError:
    message = "kpimetrics.yml declares no `notify:` channels and rules: nothing to send"
    return ConfigError(message, [error("KPI169", message, Location(config_path, 1, 1),
                                       "add a `notify:` block with channels and rules (see the README's Notifications)")])


def _require_log(adapter, schema: str) -> None:
    """kpi_notifications is there; else say what to run. A warehouse at an older schema version is upgraded by
    a run, never by notify (which publishes nothing)."""
    present = set(adapter.tables(schema))
    if tables.NOTIFICATIONS.name in present:
        return
    if tables.STATUS.name not in present:
        raise ConfigError(f"no output tables in schema '{schema}' yet: run `kpimetrics run` first")
    rows = adapter.fetchall(generate(exp.select(col("value")).from_(qualified(schema, tables.META.name)).where(
        exp.EQ(this=col("key"), expression=lit(migrations.VERSION_KEY))), adapter.dialect))
    found = migrations.parse_version([r[0] for r in rows])
    raise ConfigError(f"the output tables in schema '{schema}' are at schema version {found}, before "
                      f"{tables.NOTIFICATIONS.name} (version {tables.SCHEMA_VERSION}): `kpimetrics run` upgrades them in place")


def notify(project, adapter, *, select: list[str] | None = None, dry_run: bool = False,
           now: Callable[[], dt.datetime] | None = None) -> NotifyResult:
    """Work out the notices due for the KPIs `select` names (all when None), send them (unless `dry_run`), log
    them. `project` is the loaded ProjectDef; `adapter` an open connection (the caller closes it)."""
    settings: NotifySettings | None = project.config.notify
    if settings is None:
        raise not_configured(project.config_path)
    now = now or (lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0))
    schema = project.config.output_schema
    result = NotifyResult(dry_run)
    if not dry_run:
        adapter.lock(schema)
    _require_log(adapter, schema)
    reader = OutputReader(adapter, schema)
    chosen = None if select is None else set(select)
    rules = [(rule, [n for n in rule_selection(project, rule) if chosen is None or n in chosen]) for rule in settings.rules]
    kpis = project.kpi_by_name
    default = project.config.defaults.grain
    names = [k.name for k in project.kpis if any(k.name in picked for _, picked in rules)]
    if not names:
        return result
    headlines = reader.headlines({n: (kpis[n].declared_grains or (default,))[0] for n in names})

    due: dict[Key, None] = {}  # in rule, KPI, channel, recipient order
    for rule, picked in rules:
        for name in picked:
            row = headlines[name].row
            if row is None or row.status not in rule.when:
                continue
            for channel in rule.channels:
                for recipient in _recipients(project, settings, rule.recipients, channel, name, result.warnings):
                    due[Key(name, row.grain, row.period_start, str(row.status), channel, recipient)] = None
    sent = _sent(reader, schema, sorted({k.name for k in due}))
    result.already_sent = sum(1 for k in due if k in sent)
    todo = [k for k in due if k not in sent]
    if not todo:
        return result

    link, issues = render_link_base(project, settings)
    # a scorecard_url that cannot be rendered drops the links, never the notices: a warning
    result.warnings.extend(dataclasses.replace(i, level=Level.WARNING) for i in issues)
    notices = _notices(project, reader, headlines, sorted({k.name for k in todo}), link)
    channels = settings.channel_by_name
    groups: dict[tuple[str, str], list[Key]] = {}
    for k in todo:
        groups.setdefault((k.channel, k.recipient), []).append(k)
    order = {n: i for i, n in enumerate(kpis)}
    ready: dict[str, Any] = {}
    for (channel_name, recipient), keys in groups.items():
        keys.sort(key=lambda k: order.get(k.name, 0))
        channel = channels[channel_name]
        fmt = "email" if isinstance(channel, EmailChannel) else channel.format
        message = Message(project.config.name, channel_name, fmt, recipient, tuple(notices[k.name] for k in keys))
        outcome = Outcome(message, keys)
        result.outcomes.append(outcome)
        if dry_run:
            continue
        if channel_name not in ready:
            ready[channel_name] = render_channel(project, channel)
        prepared, problems = ready[channel_name]
        if prepared is None:
            outcome.issue = problems[0]
        elif isinstance(channel, EmailChannel):
            outcome.error = send_email(prepared, recipient, message.title, message.body())
        else:
            outcome.error = post_json(prepared, message.body())
        _log(adapter, schema, keys, now(), _outcome_text(outcome, project.secrets.scrub))
        if not outcome.ok:
            result.errors.extend(_failure(outcome, channel.loc or Location(project.config_path, 1, 1), project.secrets.scrub))
    return result


def _failure(outcome: Outcome, where: Location, scrub) -> list[Issue]:
    """KPI168, naming the channel, the recipient and why; after the issue that kept the channel from being ready."""
    m = outcome.message
    to = f" to {m.recipient}" if m.recipient else ""
    kpis = ", ".join(n.name for n in m.notices)
    why = outcome.error or "its settings could not be rendered (see above)"
    issue = error("KPI168", scrub(f"notify channel {shown(m.channel)}: the message{to} about {kpis} was not sent: {why}"),
                  where, "it is logged as failed in kpi_notifications and sent again by the next `kpimetrics notify`")
    return ([outcome.issue] if outcome.issue else []) + [issue]


def _outcome_text(outcome: Outcome, scrub) -> str:
    if outcome.ok:
        return SENT
    why = outcome.error or (outcome.issue.message if outcome.issue else "")
    return scrub(f"{FAILED}: {why}")[:OUTCOME_CHARS]


def _recipients(project, settings: NotifySettings, to: tuple[str, ...], channel: str, name: str,
                warnings: list[Issue]) -> list[str]:
    """Who a rule's notice about KPI `name` goes to on `channel`: '' (the webhook's own audience) for a rule
    without `to`; else each `to` entry, `owner` being the KPI's owner (an email, or the owners registry's)."""
    if not to:
        return [""]
    kpi = project.kpi_by_name[name]
    email = isinstance(settings.channel_by_name.get(channel), EmailChannel)
    out: list[str] = []
    for entry in to:
        if entry != OWNER:
            out.append(entry)
            continue
        address = owner_email(kpi.owner, project.owners)
        if address is None and email:
            warnings.append(warning("KPI167", f"{kpi.kind} {shown(name)}: owner {shown(kpi.owner)} has no email address, "
                                              f"so channel {shown(channel)} cannot reach them", kpi.value_loc("owner")))
            continue
        out.append(address or kpi.owner or "")
    return [r for r in dict.fromkeys(out) if r or not email]


def _sent(reader: OutputReader, schema: str, names: list[str]) -> set[Key]:
    if not names:
        return set()
    q = exp.select(*[col(c) for c in ("name", "grain", "period_start", "status", "channel", "recipient")]).from_(
        qualified(schema, tables.NOTIFICATIONS.name)).where(exp.and_(
            exp.In(this=col("name"), expressions=[lit(n) for n in names]),
            exp.EQ(this=col("outcome"), expression=lit(SENT))))
    rows = reader.adapter.fetchall(generate(q, reader.adapter.dialect, copy=False))
    return {Key(n, g, p if isinstance(p, dt.date) and not isinstance(p, dt.datetime) else dt.date.fromisoformat(str(p)[:10]),
                s, c, r or "") for n, g, p, s, c, r in rows}


def _forecasts(reader: OutputReader, schema: str, names: list[str]) -> dict[tuple[str, str], list[Forecast]]:
    """The latest forecasts of each KPI and grain from kpi_forecast, when the warehouse has that table."""
    table = "kpi_forecast"
    if table not in set(reader.adapter.tables(schema)):
        return {}
    cols = ("name", "grain", "as_of", "horizon_end", "forecast", "target_at_horizon", "forecast_status")
    q = exp.select(*[col(c) for c in cols]).from_(qualified(schema, table)).where(
        exp.In(this=col("name"), expressions=[lit(n) for n in names])).order_by(col("name"), col("grain"), col("horizon_end"))
    try:
        rows = reader.adapter.fetchall(generate(q, reader.adapter.dialect, copy=False))
    except WarehouseError:  # a kpi_forecast of another shape: the message goes without a forecast
        return {}
    latest: dict[tuple[str, str], Any] = {}
    for r in rows:
        key = (r[0], r[1])
        latest[key] = max(latest.get(key, r[2]), r[2])
    out: dict[tuple[str, str], list[Forecast]] = {}
    for name, grain, as_of, horizon_end, forecast, target, status in rows:
        if as_of == latest[(name, grain)] and horizon_end is not None:
            out.setdefault((name, grain), []).append(Forecast(horizon_end, forecast, target, status))
    return out


def _notices(project, reader: OutputReader, headlines, names: list[str], link: str | None) -> dict[str, Notice]:
    from ..docs.site import slug

    kpis = project.kpi_by_name
    forecasts = _forecasts(reader, project.config.output_schema, names)
    out: dict[str, Notice] = {}
    for name in names:
        k, row = kpis[name], headlines[name].row
        assert isinstance(row, StatusRow)
        latest = max(k.check_ins, key=lambda c: c.date, default=None)
        out[name] = Notice(
            name=name, label=k.label or name, grain=row.grain, period_start=row.period_start, period_end=row.period_end,
            status=row.status, value=row.value, target=row.target, change=row.change, change_pct=row.change_pct,
            unit=k.unit, owner=k.owner, actions=k.actions_text,
            check_in=CheckIn(latest.date, latest.author, latest.note) if latest else None,
            forecasts=tuple(forecasts.get((name, row.grain), ())),
            url=f"{link}kpi/{slug(name)}.html" if link else None, currency=project.currency_of(k),
        )
    return out


def _log(adapter, schema: str, keys: list[Key], at: dt.datetime, outcome: str) -> None:
    """A message's notices into kpi_notifications: one transaction where the engine has them, else one append."""
    rows = [[k.name, k.grain, k.period_start, k.status, k.channel, k.recipient, at, outcome] for k in keys]
    target = generate(qualified(schema, tables.NOTIFICATIONS.name), adapter.dialect)
    transaction = adapter.capabilities.publish == "transaction"
    if transaction:
        adapter.begin()
    try:
        adapter.insert_rows(target, tables.NOTIFICATIONS.column_names, rows)
        if transaction:
            adapter.commit()
    except BaseException:
        if transaction:
            adapter.rollback()
        raise
