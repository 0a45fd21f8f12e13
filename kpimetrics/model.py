"""The typed definitions of a project: strategy tree, sources, KPIs, targets.

Models are frozen and forbid unknown keys. Each one remembers the file and line
it came from (`loc`, `key_loc(field)`), copied from the `LocDict` it was built from.
Rules that span objects live in `validate/`; these models only check shape.
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from .errors import Location
from .yamlio import LocDict

Grain = Literal["day", "week", "month", "quarter", "year"]
GRAINS: tuple[str, ...] = ("day", "week", "month", "quarter", "year")
Direction = Literal["higher_is_better", "lower_is_better"]
Indicator = Literal["leading", "lagging"]
Unit = Literal["number", "percent", "currency", "seconds", "count"]
Number = Union[int, float]


class Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=False)

    # plain defaults, no factories: pydantic resolves a factory for every model built (10,000 KPIs: 0.2 s)
    _loc: Location | None = PrivateAttr(default=None)
    _key_locs: dict[str, Location] | None = PrivateAttr(default=None)
    _value_locs: dict[str, Location] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _stamp_location(cls, data: Any, handler):
        obj = handler(data)
        if isinstance(data, LocDict) and isinstance(obj, Node):
            obj._loc = data.loc
            aliases = _field_names(cls)
            obj._key_locs = {aliases.get(k, k): v for k, v in data.key_locs.items()}
            obj._value_locs = {aliases.get(k, k): v for k, v in data.value_locs.items()}
        return obj

    # the private attributes are read from pydantic's own slot: `self._loc` goes through its __getattr__,
    # about 1.5 us a read, and validation reads them some 100,000 times at 10,000 KPIs
    @property
    def loc(self) -> Location | None:
        return self.__pydantic_private__["_loc"]

    def key_loc(self, name: str) -> Location | None:
        private = self.__pydantic_private__
        return (private["_key_locs"] or {}).get(name, private["_loc"])

    def value_loc(self, name: str) -> Location | None:
        locs = self.__pydantic_private__["_value_locs"]
        return locs[name] if locs and name in locs else self.key_loc(name)


@functools.cache
def _field_names(cls: type[BaseModel]) -> dict[str, str]:
    """The name of the field each YAML key (a field's alias, or its name) fills."""
    return {f.alias or n: n for n, f in cls.model_fields.items()}


# --- strategy tree ----------------------------------------------------------

class Strategy(Node):
    name: str
    description: str | None = None
    owner: str | None = None
    starts: dt.date | None = None
    ends: dt.date | None = None


class Priority(Node):
    name: str
    description: str | None = None
    owner: str | None = None
    strategies: list[Strategy] = Field(default_factory=list)


class Owner(Node):
    name: str
    full_name: str | None = None
    email: str | None = None
    team: str | None = None


# --- sources ----------------------------------------------------------------

class Freshness(Node):
    warn_after: str | None = None
    error_after: str | None = None


class SourceTable(Node):
    name: str
    identifier: str | None = None  # the table's name in the warehouse when it differs
    description: str | None = None
    columns: list[str] | None = None
    freshness: Freshness | None = None


class Source(Node):
    name: str
    schema_: str | None = Field(default=None, alias="schema")
    database: str | None = None
    description: str | None = None
    freshness: Freshness | None = None
    tables: list[SourceTable] = Field(default_factory=list)


# --- targets ----------------------------------------------------------------

class ValueTarget(Node):
    value: Number


class ScheduleEntry(Node):
    from_: dt.date = Field(alias="from")
    value: Number


class ScheduleTarget(Node):
    schedule: list[ScheduleEntry]


class Baseline(Node):
    from_: dt.date | None = Field(default=None, alias="from")
    to: dt.date | None = None
    value: Number | None = None
    as_of: dt.date | None = None


class RelativeTarget(Node):
    baseline: Baseline
    change: Number | str  # 10, -120, "-20%"
    by: dt.date
    path: Literal["linear", "step"] = "linear"


class PaceTarget(Node):
    value: Number
    by: dt.date
    pace: Literal["linear"] = "linear"


def _target_tag(v: Any) -> str:
    if isinstance(v, BaseModel):
        return {ValueTarget: "value", ScheduleTarget: "schedule", RelativeTarget: "relative", PaceTarget: "pace"}.get(
            type(v), "value"
        )
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "number"
    if isinstance(v, dict):
        if "schedule" in v:
            return "schedule"
        if "baseline" in v or "change" in v:
            return "relative"
        if "pace" in v or "by" in v:
            return "pace"
    return "value"


def _number_target(v: Any) -> ValueTarget:
    return ValueTarget(value=v)


NumberTarget = Annotated[Number, Field()]

TargetForm = Annotated[
    Union[
        Annotated[Number, Tag("number")],
        Annotated[ValueTarget, Tag("value")],
        Annotated[ScheduleTarget, Tag("schedule")],
        Annotated[RelativeTarget, Tag("relative")],
        Annotated[PaceTarget, Tag("pace")],
    ],
    Discriminator(_target_tag),
]


def _is_per_grain(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(k in GRAINS for k in v)


def _spec_tag(v: Any) -> str:
    return "per_grain" if _is_per_grain(v) else "single"


TargetSpec = Annotated[
    Union[Annotated[dict[Grain, TargetForm], Tag("per_grain")], Annotated[TargetForm, Tag("single")]],
    Discriminator(_spec_tag),
]

Band = Union[Number, str]  # tolerance: 5% | 0.05 ; thresholds: numbers
PerGrainBand = Union[dict[Grain, Band], Band]


# --- KPIs -------------------------------------------------------------------

class Ratio(Node):
    numerator: str
    denominator: str


class Window(Node):
    periods: int | None = None
    to_date: Literal["month", "quarter", "year"] | None = None


class CheckIn(Node):
    date: dt.date
    author: str | None = None
    note: str


class Kpi(Node):
    """A KPI or, with kind 'standard', a performance standard (no strategy needed)."""

    name: str
    label: str | None = None
    description: str | None = None
    owner: str | None = None
    strategy: str | None = None
    indicator: Indicator | None = None
    category: str | None = None
    unit: Unit | None = None
    direction: Direction = "higher_is_better"
    model: str | None = None
    time: str | None = None
    grain: Grain | list[Grain] | None = None
    measure: str | None = None
    ratio: Ratio | None = None
    derived: str | None = None
    filter: str | None = None
    dimensions: list[str] = Field(default_factory=list)
    window: Window | None = None
    fill: Literal["zero"] | None = None
    target: TargetSpec | None = None
    tolerance: PerGrainBand | None = None
    at_risk_below: Union[dict[Grain, Number], Number] | None = None
    at_risk_above: Union[dict[Grain, Number], Number] | None = None
    slice_targets: bool = False
    actions: str | list[str] | None = None
    drives: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    review_by: dt.date | None = None
    check_ins: list[CheckIn] = Field(default_factory=list)

    _kind: str = PrivateAttr(default="kpi")

    @field_validator("grain", mode="before")
    @classmethod
    def _grain_list(cls, v: Any) -> Any:
        return v

    @property
    def kind(self) -> str:
        return self.__pydantic_private__["_kind"]

    @property
    def form(self) -> str:
        if self.derived is not None:
            return "derived"
        if self.ratio is not None:
            return "ratio"
        return "measure"

    @property
    def declared_grains(self) -> tuple[str, ...]:
        if self.grain is None:
            return ()
        if isinstance(self.grain, str):
            return (self.grain,)
        return tuple(self.grain)

    @property
    def actions_text(self) -> str | None:
        if self.actions is None:
            return None
        return self.actions if isinstance(self.actions, str) else "\n".join(self.actions)


TOP_LEVEL_KEYS = ("mission", "priorities", "sources", "kpis", "standards", "owners")
