"""A message's text in each format: pure functions from the notices it carries to what is sent.

One message goes to one recipient on one channel and carries every notice due to them there (a KPI's label,
period, value against target, status, change, forecast, actions, latest check-in and link). The same facts,
in the same order, in every format: Slack's blocks (mrkdwn), a Teams Adaptive Card, plain JSON, an email.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ..display import format_change_long, format_value
from ..status import Status, look

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Forecast:
    """A row of kpi_forecast: the KPI total's forecast at a horizon."""

    horizon_end: dt.date
    forecast: float | None
    target: float | None
    status: str | None  # forecast_status: the status rules applied to (forecast, target at the horizon)


@dataclass(frozen=True)
class CheckIn:
    date: dt.date
    author: str | None
    note: str


@dataclass(frozen=True)
class Notice:
    """One KPI's headline (its total at its latest complete period of its first grain), as a message tells it."""

    name: str
    label: str
    grain: str
    period_start: dt.date
    period_end: dt.date  # exclusive
    status: Status | str
    value: float | None
    target: float | None
    change: float | None
    change_pct: float | None
    unit: str | None
    owner: str | None
    actions: str | None
    check_in: CheckIn | None
    forecasts: tuple[Forecast, ...]
    url: str | None
    currency: str | None = None  # a currency KPI's ISO 4217 code, shown with each of its values (display.format_value)

    @property
    def headline(self) -> str:
        return f"{self.label} is {look(self.status).text}"

    @property
    def period(self) -> str:
        last = self.period_end - ONE_DAY
        if self.grain == "day":
            return self.period_start.isoformat()
        if self.grain == "month":
            return self.period_start.strftime("%B %Y")
        return f"{self.grain} {self.period_start.isoformat()} to {last.isoformat()}"

    def facts(self) -> list[tuple[str, str]]:
        """The notice's facts as (title, text), in the order every format shows them."""
        v = lambda x: format_value(x, self.unit, self.currency)  # noqa: E731
        against = f"against a target of {v(self.target)}" if self.target is not None else "with no target"
        out = [("Period", self.period), ("Value", f"{v(self.value)} {against}"), ("Status", look(self.status).text)]
        if self.change is not None:
            out.append(("Change", f"{format_change_long(self.change, self.change_pct, self.unit, self.currency)} on the period before"))
        for f in self.forecasts:
            target = f" against a target of {v(f.target)}" if f.target is not None else ""
            out.append(("Forecast", f"{v(f.forecast)} by {f.horizon_end.isoformat()}{target}: {course(f.status)}"))
        if self.actions:
            out.append(("Actions", "; ".join(line.strip() for line in self.actions.splitlines() if line.strip())))
        if self.check_in:
            c = self.check_in
            who = f", {c.author}" if c.author else ""
            out.append(("Latest check-in", f"{c.note.strip()} ({c.date.isoformat()}{who})"))
        if self.owner:
            out.append(("Owner", self.owner))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.label, "grain": self.grain, "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(), "status": str(self.status), "value": self.value,
            "target": self.target, "change": self.change, "change_pct": self.change_pct, "unit": self.unit,
            "currency": self.currency,
            "owner": self.owner,
            "forecasts": [{"horizon_end": f.horizon_end.isoformat(), "forecast": f.forecast, "target": f.target,
                           "status": f.status} for f in self.forecasts],
            "actions": self.actions,
            "check_in": None if self.check_in is None else {
                "date": self.check_in.date.isoformat(), "author": self.check_in.author, "note": self.check_in.note},
            "url": self.url,
        }


def course(forecast_status: str | None) -> str:
    """A forecast's status in words: "on course" when the forecast meets its target, else "off course"
    (within the at-risk band: "at risk")."""
    if forecast_status == Status.ON_TRACK:
        return "on course"
    if forecast_status == Status.AT_RISK:
        return look(Status.AT_RISK).text
    if forecast_status == Status.OFF_TRACK:
        return "off course"
    return look(forecast_status).text if forecast_status else "no target"


@dataclass(frozen=True)
class Message:
    """What one recipient gets on one channel."""

    project: str
    channel: str
    format: str  # slack | teams | json | email
    recipient: str  # an email address; '' for a webhook's own audience (a rule without `to`)
    notices: tuple[Notice, ...]

    @property
    def title(self) -> str:
        if len(self.notices) == 1:
            n = self.notices[0]
            return f"[{self.project}] {n.headline} ({n.period})"
        return f"[{self.project}] {len(self.notices)} KPIs: " + ", ".join(n.headline for n in self.notices)

    def body(self) -> Any:
        """What is sent: a JSON document for a webhook, the text of an email."""
        return FORMATS[self.format](self)

    def shown(self) -> str:
        """The message as `--dry-run` prints it."""
        body = self.body()
        return body if isinstance(body, str) else json.dumps(body, indent=2, ensure_ascii=False)


def email_text(m: Message) -> str:
    parts = []
    for n in m.notices:
        lines = [n.headline] + [f"  {title}: {text}" for title, text in n.facts()]
        if n.url:
            lines.append(f"  {n.url}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + f"\n\n-- \nSent by kpimetrics notify for {m.project} (channel {m.channel}).\n"


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(m: Message) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": m.title[:150]}}]
    for n in m.notices:
        name = f"<{n.url}|{_slack_escape(n.label)}>" if n.url else _slack_escape(n.label)
        s = look(n.status)
        lines = [f"*{name}* is {s.symbol} {s.text}"]
        lines += [f"*{title}:* {_slack_escape(text)}" for title, text in n.facts() if title != "Status"]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}})
    return {"text": m.title, "blocks": blocks}


def teams(m: Message) -> dict[str, Any]:
    body: list[dict[str, Any]] = [{"type": "TextBlock", "text": m.title, "weight": "Bolder", "size": "Medium", "wrap": True}]
    for n in m.notices:
        body.append({"type": "TextBlock", "text": n.headline, "weight": "Bolder", "wrap": True, "separator": True})
        body.append({"type": "FactSet", "facts": [{"title": t, "value": v} for t, v in n.facts()]})
        if n.url:
            body.append({"type": "ActionSet", "actions": [
                {"type": "Action.OpenUrl", "title": f"Open {n.label} on the scorecard", "url": n.url}]})
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
            "body": body}
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def plain_json(m: Message) -> dict[str, Any]:
    return {"project": m.project, "channel": m.channel, "recipient": m.recipient, "title": m.title,
            "notices": [n.to_dict() for n in m.notices]}


FORMATS = {"slack": slack, "teams": teams, "json": plain_json, "email": email_text}
