"""The rules of the `notify:` block that need more than its shape (KPI160-167), and a channel made ready to send.

`notify_rules` is one of validate's RULES: every problem at once, each at its line of kpimetrics.yml.
`render_channel` renders a channel's env_var() values when a notice is about to go (never at load: `validate`
needs no secret), registering each as a secret, and checks what only the rendered value can tell (a url that
is not http(s), a port that is not a number). A message never quotes a rendered value: it may be a secret.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .. import dag
from ..errors import Issue, KpiMetricsError, Location, error, warning
from ..templating import TemplateContext, render
from ..yamlio import shown
from .settings import FORMATS, OWNER, EmailChannel, NotifySettings, Rule, WebhookChannel

if TYPE_CHECKING:
    from ..loader import ProjectDef

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")  # a catcher on this machine: its url holds no secret


def _suggest(word: str, candidates) -> str:
    from ..loader import suggest

    return suggest(word, candidates)


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def url_problem(url: str) -> str | None:
    """What is wrong with a url as a link or a webhook (None: an http(s) URL with a host). Never quotes the url."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "is not a URL"
    if parts.scheme.lower() not in ("http", "https"):
        return f"is not an http(s) URL (its scheme is {shown(parts.scheme)})" if parts.scheme else "is not an http(s) URL"
    if not parts.hostname:
        return "is an http(s) URL without a host"
    return None


def owner_email(owner: str | None, owners) -> str | None:
    """The address that reaches a KPI's owner: the owner itself when it is an email, else the owners registry's."""
    if not owner:
        return None
    if "@" in owner:
        return owner
    for o in owners or ():
        if o.name == owner and o.email:
            return o.email
    return None


def notify_rules(project: ProjectDef, ctx: Any = None) -> list[Issue]:
    settings = project.config.notify
    if settings is None:
        return []
    return [*_channels(settings), *_links(settings), *_rules(project, settings)]


def _channels(settings: NotifySettings) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[str] = set()
    for c in settings.channels:
        if c.name in seen:
            issues.append(error("KPI165", f"notify channel {shown(c.name)} is declared twice", c.value_loc("name"),
                                "give each channel its own name: rules name channels"))
        seen.add(c.name)
        if isinstance(c, WebhookChannel):
            if c.format not in FORMATS:
                issues.append(error("KPI163", f"notify channel {shown(c.name)}: unknown webhook format {shown(c.format)}"
                                              f"{_suggest(c.format, FORMATS)}", c.value_loc("format"),
                                    f"format is one of: {', '.join(FORMATS)}"))
            if not is_template(c.url):
                problem = url_problem(c.url)
                if problem:
                    issues.append(error("KPI162", f"notify channel {shown(c.name)}: url {problem}", c.value_loc("url"),
                                        "a webhook url starts with https:// (or http:// for a local catcher)"))
                elif (urlsplit(c.url.strip()).hostname or "") not in LOCAL_HOSTS:
                    issues.append(_plain_secret(c.name, "url", c.value_loc("url")))
        else:
            if c.password is not None and not is_template(c.password):
                issues.append(_plain_secret(c.name, "password", c.value_loc("password")))
            if isinstance(c.port, int) and not 0 < c.port < 65536:
                issues.append(error("KPI007", f"notify channel {shown(c.name)}: port {c.port} is not a port number",
                                    c.value_loc("port"), "the SMTP submission port is usually 587 (STARTTLS)"))
    return issues


def _plain_secret(channel: str, key: str, where: Location | None) -> Issue:
    why = " (a webhook's url carries its token)" if key == "url" else ""
    return warning("KPI166", f"notify channel {shown(channel)}: its {key} is written in kpimetrics.yml; it is a secret{why} "
                             "and would be committed with the project and shown unmasked",
                   where, f"write it as \"{{{{ env_var('{channel.upper().replace('-', '_')}_{key.upper()}') }}}}\" and set "
                          "the variable where kpimetrics runs")


def _links(settings: NotifySettings) -> list[Issue]:
    url = settings.scorecard_url
    if url is None or is_template(url):
        return []
    problem = url_problem(url)
    return [error("KPI162", f"notify.scorecard_url {problem}", settings.value_loc("scorecard_url"),
                  "the address where the scorecard site (kpimetrics docs generate) is published, such as "
                  "https://kpi.example.com/")] if problem else []


def rule_label(i: int) -> str:
    return f"notify rule {i + 1}"


def _rules(project: ProjectDef, settings: NotifySettings) -> list[Issue]:
    issues: list[Issue] = []
    channels = settings.channel_by_name
    for i, rule in enumerate(settings.rules):
        label = rule_label(i)
        for name in rule.channels:
            if name not in channels:
                issues.append(error("KPI160", f"{label}: unknown channel {shown(name)}{_suggest(name, channels)}",
                                    rule.value_loc("channels"),
                                    f"channels declared under notify.channels: {', '.join(channels) or 'none'}"))
        for to in rule.recipients:
            if to != OWNER and "@" not in to:
                issues.append(error("KPI161", f"{label}: `to` entry {shown(to)} is neither `owner` nor an email address",
                                    rule.value_loc("to"), "write `to: owner` (each KPI's owner) or email addresses"))
        mail = [n for n in rule.channels if isinstance(channels.get(n), EmailChannel)]
        if mail and not rule.recipients:
            issues.append(error("KPI161", f"{label} sends email (channel {shown(mail[0])}) but has no recipients",
                                rule.loc, "add `to: owner` (each KPI's owner) or a list of email addresses"))
        names = rule_selection(project, rule, issues, label)
        if mail and OWNER in rule.recipients and names:
            issues.extend(_unreachable_owners(project, names, label, mail[0]))
    return issues


def rule_selection(project: ProjectDef, rule: Rule, issues: list[Issue] | None = None, label: str = "") -> list[str]:
    """The KPIs a rule covers, in project order (all of them without `select`); none, with an issue in `issues`,
    when its selector is wrong (KPI164)."""
    try:
        if any(term.strip("+").startswith("state:") for term in (rule.select or "").split()):
            raise KpiMetricsError("state: selectors compare with an earlier build, which a rule has none of")
        return dag.select(project.kpis, rule.select, project.strategies, project.config.dialect)
    except KpiMetricsError as exc:
        if issues is not None:
            issues.append(error("KPI164", f"{label}: select {shown(rule.select)}: {exc}", rule.value_loc("select"),
                                "a selector as `kpimetrics run -s` takes it: name, tag:X, owner:X, strategy:X, +name"))
        return []


def _unreachable_owners(project: ProjectDef, names: list[str], label: str, channel: str) -> list[Issue]:
    kpis = project.kpi_by_name
    return [
        warning("KPI167", f"{label} emails each KPI's owner (channel {shown(channel)}), and {kpis[n].kind} {shown(n)} "
                          f"has owner {shown(kpis[n].owner)}, which is no email address and has none under `owners:`",
                kpis[n].value_loc("owner"), "write the owner as an email, or give it an `email` in the owners registry")
        for n in names if kpis[n].owner and owner_email(kpis[n].owner, project.owners) is None
    ]


# --- a channel made ready to send --------------------------------------------------------


@dataclass(frozen=True)
class Ready:
    """A channel with its env_var() values rendered (each registered as a secret)."""

    channel: WebhookChannel | EmailChannel
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


_RENDERED = {"webhook": ("url",), "email": ("host", "port", "starttls", "user", "password", "from_")}


def render_channel(project: ProjectDef, channel: WebhookChannel | EmailChannel) -> tuple[Ready | None, list[Issue]]:
    ctx = TemplateContext(vars=project.vars, secrets=project.secrets)
    fallback = Location(project.config_path, 1, 1)
    values: dict[str, Any] = dict(channel)
    issues: list[Issue] = []
    for key in _RENDERED[channel.type]:
        value = values[key]
        if isinstance(value, str):
            values[key], more = render(value, ctx, channel.value_loc(key) or fallback, native=True)
            issues.extend(more)
    if issues:
        return None, issues
    name = shown(channel.name)
    if isinstance(channel, WebhookChannel):
        problem = url_problem(str(values["url"]))
        if problem:
            issues.append(error("KPI162", f"notify channel {name}: url {problem}", channel.value_loc("url"),
                                "set the variable to the webhook's https:// address"))
    else:
        port = values["port"]
        if isinstance(port, str) and port.strip().isdigit():
            values["port"] = port = int(port.strip())
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            issues.append(error("KPI007", f"notify channel {name}: port is not a port number", channel.value_loc("port")))
        tls = values["starttls"]
        if isinstance(tls, str) and tls.strip().lower() in ("true", "false"):
            values["starttls"] = tls = tls.strip().lower() == "true"
        if not isinstance(tls, bool):
            issues.append(error("KPI007", f"notify channel {name}: starttls is not true or false", channel.value_loc("starttls")))
    return (None, issues) if issues else (Ready(channel, values), [])


def render_link_base(project: ProjectDef, settings: NotifySettings) -> tuple[str | None, list[Issue]]:
    """scorecard_url, rendered and checked, with a trailing slash."""
    url = settings.scorecard_url
    if url is None:
        return None, []
    where = settings.value_loc("scorecard_url") or Location(project.config_path, 1, 1)
    text, issues = render(url, TemplateContext(vars=project.vars, secrets=project.secrets), where)
    if issues:
        return None, issues
    problem = url_problem(str(text))
    if problem:
        return None, [error("KPI162", f"notify.scorecard_url {problem}", where)]
    text = str(text).strip()
    return (text if text.endswith("/") else text + "/"), []
