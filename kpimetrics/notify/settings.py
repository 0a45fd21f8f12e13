"""The `notify:` block of kpimetrics.yml, typed: channels (a union keyed on `type`), rules, scorecard_url.

Values are kept as written: a `{{ env_var('X') }}` stays a template until a notice is sent (check.render_channel),
so `validate` and `compile` need no channel secret, and a secret never sits in the loaded project.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from ..model import Node
from ..status import Status

FORMATS = ("slack", "teams", "json")  # a webhook's message format
OWNER = "owner"  # `to: owner`: each KPI's owner


class WebhookChannel(Node):
    name: str
    type: Literal["webhook"]
    url: str
    format: str = "json"  # one of FORMATS (checked by check.py: KPI163, with did-you-mean)
    timeout: float = Field(default=10, gt=0, le=300)  # seconds


class EmailChannel(Node):
    name: str
    type: Literal["email"]
    host: str
    port: int | str = 587  # a number, or a template that renders to one
    starttls: bool | str = True
    user: str | None = None
    password: str | None = None
    from_: str = Field(alias="from")
    timeout: float = Field(default=10, gt=0, le=300)


Channel = Annotated[Union[WebhookChannel, EmailChannel], Field(discriminator="type")]


class Rule(Node):
    when: list[Status] = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    to: str | list[str] | None = None  # `owner`, an email address, or a list of them
    select: str | None = None  # a selector as `-s` takes it; every KPI and standard when absent

    @property
    def recipients(self) -> tuple[str, ...]:
        return () if self.to is None else (self.to,) if isinstance(self.to, str) else tuple(self.to)


class NotifySettings(Node):
    channels: list[Channel] = Field(default_factory=list)
    rules: list[Rule] = Field(default_factory=list)
    scorecard_url: str | None = None  # links in messages: scorecard_url + kpi/<name>.html

    @property
    def channel_by_name(self) -> dict[str, WebhookChannel | EmailChannel]:
        out: dict[str, WebhookChannel | EmailChannel] = {}
        for c in self.channels:
            out.setdefault(c.name, c)
        return out
