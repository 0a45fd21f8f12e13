"""The typed definitions of a project: strategy tree, sources, KPIs, targets.

Models are frozen and forbid unknown keys. Each one remembers the file and line
it came from (`loc`, `key_loc(field)`), copied from the `LocDict` it was built from.
Rules that span objects live in `validate/`; these models only check shape.
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    model_validator,
)

from .errors import Location
from .yamlio import LocDict

Grain = Literal["day", "week", "month", "quarter", "year"]
GRAINS: tuple[str, ...] = ("day", "week", "month", "quarter", "year")
Direction = Literal["higher_is_better", "lower_is_better"]
Indicator = Literal["leading", "lagging"]
Unit = Literal["number", "percent", "currency", "seconds", "count"]
Number = Union[int, Annotated[float, Field(allow_inf_nan=False)]]  # .nan and .inf are no target (KPI007)


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
    label: str | None = None  # shown to readers instead of the snake_case name (SPEC §10)
    description: str | None = None
    owner: str | None = None
    starts: dt.date | None = None
    ends: dt.date | None = None


class Priority(Node):
    name: str
    label: str | None = None  # shown to readers instead of the snake_case name (SPEC §10)
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


class TableTarget(Node):
    """Targets read from a warehouse table (a budget): `table` is resolved as a KPI's `model:` is; the target of a
    period (of `grain`) is the sum of `value` over the rows whose `period` falls in it and that pass `filter`, and
    with `dimensions` ({KPI dimension: column}) each slice's is the sum over its rows. Written only directly under
    `target:` (validate/targets.py, KPI153)."""

    table: str
    period: str
    value: str
    filter: str | None = None
    grain: Grain | None = None
    dimensions: dict[str, str] = Field(default_factory=dict)

    COLUMN_KEYS: ClassVar[tuple[str, ...]] = ("period", "value")

    def expressions(self) -> tuple[Expression, ...]:
        """Its SQL texts read row by row, checked as a KPI's are: the filter (a condition), then the columns."""
        out = [Expression("filter", self.filter, "rows", self, "filter", path="target.filter")] if self.filter else []
        out += [Expression(k, getattr(self, k), "rows", self, k, path=f"target.{k}") for k in self.COLUMN_KEYS]
        out += [Expression("dimension", c, "rows", self, "dimensions", path=f"target.dimensions.{d}")
                for d, c in self.dimensions.items()]
        return tuple(out)


# The union tag of a table target: not "table", its own key, which the loader's error paths would take for it (a
# tag holding "[" is skipped there, loader._is_tag).
TABLE_TAG = "table[target]"


def _target_tag(v: Any) -> str:
    if isinstance(v, BaseModel):
        return {ValueTarget: "value", ScheduleTarget: "schedule", RelativeTarget: "relative", PaceTarget: "pace",
                TableTarget: TABLE_TAG}.get(type(v), "value")
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "number"
    if isinstance(v, dict):
        if "table" in v:
            return TABLE_TAG
        if "schedule" in v:
            return "schedule"
        if "baseline" in v or "change" in v:
            return "relative"
        if "pace" in v or "by" in v:
            return "pace"
    return "value"


TargetForm = Annotated[
    Union[
        Annotated[Number, Tag("number")],
        Annotated[ValueTarget, Tag("value")],
        Annotated[ScheduleTarget, Tag("schedule")],
        Annotated[RelativeTarget, Tag("relative")],
        Annotated[PaceTarget, Tag("pace")],
        Annotated[TableTarget, Tag(TABLE_TAG)],
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



def slice_value_text(key: Any) -> str:
    """A slice value as kpi_values holds it (text): YAML reads `7:` as a number and `2026-01-01:` as a date, which
    name the slices '7' and '2026-01-01'; `true:` names 'true' and `null:` the slice of NULL, '(null)'."""
    if key is None:
        return "(null)"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, dt.date):
        return key.isoformat()
    return str(key)


def _texted(mapping: Any) -> Any:
    """A YAML mapping with its keys as text, keeping where each was written."""
    if not isinstance(mapping, dict):
        return mapping
    out = LocDict() if isinstance(mapping, LocDict) else {}
    for key, value in mapping.items():
        out[slice_value_text(key)] = value
    if isinstance(mapping, LocDict):
        out.loc = mapping.loc
        out.key_locs = {slice_value_text(k): v for k, v in mapping.key_locs.items()}
        out.value_locs = {slice_value_text(k): v for k, v in mapping.value_locs.items()}
        out.value_styles = {slice_value_text(k): v for k, v in mapping.value_styles.items()}
    return out


def _slice_targets_in(value: Any) -> Any:
    """`slice_targets:` as the model reads it: a mapping's dimension names and slice values as text."""
    if not isinstance(value, dict):
        return value
    out = _texted(value)
    for dimension, slices in list(out.items()):
        out[dimension] = _texted(slices)
    return out


# `slice_targets`: true (the total's target applies to every slice), or {dimension: {slice value: target}}. The
# YAML's shape picks the member, so a mistake in a mapping is not also reported as "not a boolean"; the tags hold a
# "[" so that the loader's error paths skip them (loader._is_tag), as they skip pydantic's own.
SliceTargets = Annotated[
    Union[Annotated[bool, Tag("flag[bool]")], Annotated[dict[str, dict[str, TargetSpec]], Tag("mapping[dimension]")]],
    Discriminator(lambda v: "mapping[dimension]" if isinstance(v, dict) else "flag[bool]"),
    BeforeValidator(_slice_targets_in),
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


class Forecast(Node):
    """`forecast:` per KPI, or project-wide in kpimetrics.yml (SPEC §10): the least-squares line goes through the
    last `periods` complete periods (kpimetrics/forecast.py)."""
    periods: int = Field(default=6, ge=3, le=1000)


class CheckIn(Node):
    date: dt.date
    author: str | None = None
    note: str


# --- KPI forms ----------------------------------------------------------------
# A KPI computes its value in one form, written under the form's own key (`measure:`, `ratio: {numerator,
# denominator}`, `derived:`). Those keys stay fields of `Kpi`, so the YAML, its error messages and their lines are
# those of any other key; `Kpi.computation` is the form as a typed value that knows its SQL expressions, and the
# definition hash, the checks of SQL and columns, the shape cache and the manifest read the expressions from it
# rather than listing fields. A new form is a subclass of `Form` here, its key as a field of `Kpi`, its entry in
# FORMS and in VALUE_FIELDS, and its rendering in sqlgen.

ExpressionKind = Literal["aggregate", "rows", "kpis"]


class Expression(NamedTuple):
    """One SQL text of a KPI, what it computes over, and where it was written (`node.value_loc(key)`, or item
    `index` of that list). A tuple: a plain class costs four times as much to make, and every KPI makes several."""

    role: str  # measure | numerator | denominator | derived | filter | time | dimension
    text: str
    kind: ExpressionKind  # aggregate: over the rows of a period; rows: of each row; kpis: over other KPIs' values
    node: Node
    key: str
    index: int | None = None
    path: str | None = None  # how messages name it when not by its role: 'ratio.numerator'

    @property
    def label(self) -> str:
        return self.path or self.role


class Form:
    """How a KPI computes its value. Each subclass is one form, named by the key that writes it. Made once per KPI
    (`Kpi.computation`) and not changed after."""

    __slots__ = ("kpi", "_expressions")
    key: ClassVar[str]
    # computed in the one scan of the KPI's `model`, its rows placed in periods by `time` (which it then needs);
    # otherwise from other KPIs' values, after the scans, and the keys in `takes_no` make no sense on it (KPI049)
    reads_model: ClassVar[bool] = True
    takes_no: ClassVar[tuple[str, ...]] = ()

    def __init__(self, kpi: Kpi):
        self.kpi = kpi
        self._expressions: tuple[Expression, ...] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kpi.name!r})"

    def expressions(self) -> tuple[Expression, ...]:
        """The form's SQL texts (`sql()`), made once: the planner, the hash and the shape cache each read them."""
        made = self._expressions
        if made is None:
            made = self._expressions = self.sql()
        return made

    def sql(self) -> tuple[Expression, ...]:
        """The form's SQL texts, by role, in a fixed order (the shape cache numbers their constants in it)."""
        raise NotImplementedError

    def written(self) -> Any:
        """The form as the YAML wrote it under its key, as JSON (the manifest shows it)."""
        return getattr(self.kpi, self.key)


class MeasureForm(Form):
    __slots__ = ()
    key = "measure"

    def sql(self) -> tuple[Expression, ...]:
        return (Expression("measure", self.kpi.measure, "aggregate", self.kpi, "measure"),)


class RatioForm(Form):
    """The numerator's aggregate over a period's rows divided by the denominator's."""

    __slots__ = ()
    key = "ratio"

    def sql(self) -> tuple[Expression, ...]:
        ratio = self.kpi.ratio
        return (Expression("numerator", ratio.numerator, "aggregate", ratio, "numerator", path="ratio.numerator"),
                Expression("denominator", ratio.denominator, "aggregate", ratio, "denominator", path="ratio.denominator"))

    def written(self) -> Any:
        return self.kpi.ratio.model_dump(mode="json")


class DerivedForm(Form):
    """An expression over other KPIs' values at the same grain and slice (`lag(k, n)` for earlier periods)."""

    __slots__ = ()
    key = "derived"
    reads_model = False
    takes_no = ("model", "time", "window", "filter", "dimensions")

    def sql(self) -> tuple[Expression, ...]:
        return (Expression("derived", self.kpi.derived, "kpis", self.kpi, "derived"),)


class MetricForm(Form):
    """A metric of dbt's semantic layer (SPEC §9), by name: dbt/resolve.py resolves it from semantic_manifest.json
    to what a measure or ratio KPI computes (its semantic model's relation and time dimension, aggregates, filters,
    window, fill), and the planner plans it as that. It writes no SQL of its own, so the checks of project SQL see
    none; validate/metrics.py checks it against the semantic manifest, and the keys in `takes_no` there (KPI174)."""

    __slots__ = ()
    key = "metric"
    reads_model = False  # no `model:` or `time:` of the KPI's: the metric's semantic model brings them
    takes_no = ()

    def sql(self) -> tuple[Expression, ...]:
        return ()


# MetricForm first: a plan gives a metric KPI a copy that also writes the measure or ratio it resolves to, and that
# copy computes (the last written form) as the measure or ratio
FORMS: tuple[type[Form], ...] = (MetricForm, MeasureForm, RatioForm, DerivedForm)
FORM_KEYS: frozenset[str] = frozenset(f.key for f in FORMS)


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
    currency: str | None = None  # ISO 4217 code of a `unit: currency` KPI's values; None: kpimetrics.yml's (KPI155)
    direction: Direction = "higher_is_better"
    model: str | None = None
    time: str | None = None
    grain: Grain | list[Grain] | None = None
    # the forms (FORMS), one per KPI
    measure: str | None = None
    ratio: Ratio | None = None
    derived: str | None = None
    metric: str | None = None  # a metric of dbt's semantic layer (MetricForm)
    filter: str | None = None
    # a column, or a list of columns: a combination, sliced by every combination of their values (SPEC §9). Items
    # of any shape are read, so that validate/combinations.py says what is wrong with one (KPI039)
    dimensions: list[Union[str, list[Any]]] = Field(default_factory=list)
    window: Window | None = None
    fill: Literal["zero"] | None = None
    target: TargetSpec | None = None
    tolerance: PerGrainBand | None = None
    at_risk_below: Union[dict[Grain, Number], Number] | None = None
    at_risk_above: Union[dict[Grain, Number], Number] | None = None
    slice_targets: SliceTargets = False
    actions: str | list[str] | None = None
    drives: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    review_by: dt.date | None = None
    check_ins: list[CheckIn] = Field(default_factory=list)
    forecast: Forecast | None = None  # None: the project's `forecast:` (kpimetrics.yml)

    _kind: str = PrivateAttr(default="kpi")
    _forms: tuple[Form, ...] | None = PrivateAttr(default=None)
    _computation: Form | None = PrivateAttr(default=None)

    @property
    def kind(self) -> str:
        return self.__pydantic_private__["_kind"]

    @property
    def written_forms(self) -> tuple[Form, ...]:
        """Every form the KPI writes, in FORMS order, made once: one in a valid project (more, or none, is KPI025)."""
        private = self.__pydantic_private__
        forms = private["_forms"]
        if forms is None:
            forms = private["_forms"] = tuple(f(self) for f in FORMS if getattr(self, f.key) is not None)
        return forms

    @property
    def computation(self) -> Form | None:
        """The KPI's form (None when it writes none). Where several are written, the last in FORMS order stands:
        a KPI that writes `derived` is checked as a derived KPI."""
        private = self.__pydantic_private__
        form = private["_computation"]
        if form is None:
            forms = self.written_forms
            form = private["_computation"] = forms[-1] if forms else None
        return form

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> Kpi:
        copy = super().model_copy(update=update, deep=deep)
        # the copy's forms are made from the copy's fields
        copy.__pydantic_private__["_forms"] = copy.__pydantic_private__["_computation"] = None
        return copy

    @property
    def form(self) -> str:
        form = self.computation
        return form.key if form is not None else "measure"

    def expressions(self) -> tuple[Expression, ...]:
        """Every SQL text of the KPI: its form's (each written form's, when there are several), then its filter,
        time column and dimensions, which are read row by row."""
        out = [e for form in self.written_forms for e in form.expressions()]
        if self.filter is not None:
            out.append(Expression("filter", self.filter, "rows", self, "filter"))
        if self.time is not None:
            out.append(Expression("time", self.time, "rows", self, "time"))
        for i, d in enumerate(self.dimensions):
            if isinstance(d, str):
                out.append(Expression("dimension", d, "rows", self, "dimensions", i))
            else:  # a combination's columns (a malformed one's texts: KPI039 says what is wrong with it)
                out.extend(Expression("combination", c, "rows", self, "dimensions", i, path="dimensions")
                           for c in _flat_texts(d))
        return tuple(out)

    @property
    def slice_dimensions(self) -> tuple[str, ...]:
        """The KPI's slice dimensions as its rows name them: a column's text, a combination's columns joined by
        ' × ' (combinations.name); each once."""
        from .combinations import name
        return tuple(dict.fromkeys(d if isinstance(d, str) else name([str(c) for c in d]) for d in self.dimensions))

    @property
    def dimension_columns(self) -> tuple[str, ...]:
        """Every column the KPI is sliced by, alone or in a combination, each once."""
        return tuple(dict.fromkeys(c for d in self.dimensions for c in ([d] if isinstance(d, str) else _flat_texts(d))))

    def target_expressions(self) -> tuple[Expression, ...]:
        """The SQL texts of a table target (`target: {table: ...}`), read from its table, not the KPI's model: checked
        for their grammar, columns (validate/targets.py) and what they read of the machine (validate/access.py)."""
        return self.target.expressions() if isinstance(self.target, TableTarget) else ()

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


def _flat_texts(item: Any) -> list[str]:
    """The texts inside a `dimensions` item, however deeply nested."""
    if isinstance(item, list):
        return [t for x in item for t in _flat_texts(x)]
    return [item] if isinstance(item, str) else []


# Which fields of a KPI change its values (SPEC §5), said once. definition_hash covers each of VALUE_FIELDS (the
# forms' keys through the form's expressions, the others as planner.HASHED_FIELDS renders them) and none of
# NO_VALUE_FIELDS, so editing an owner or a target recomputes nothing. tests/test_kpi_forms.py fails on a field of
# `Kpi` in neither, and on a value field whose change leaves the hash as it was.
VALUE_FIELDS: frozenset[str] = FORM_KEYS | {"model", "time", "grain", "filter", "dimensions", "window", "fill"}
NO_VALUE_FIELDS: frozenset[str] = frozenset({
    "name",  # a KPI's rows are keyed by its name: a renamed KPI is another KPI
    "label", "description", "owner", "strategy", "indicator", "category", "unit", "currency", "direction", "target",
    "tolerance", "at_risk_below", "at_risk_above", "slice_targets", "actions", "drives", "tags", "review_by", "check_ins",
    "forecast",  # how far back the forecast's line looks: kpi_forecast is recomputed every run (forecast.py)
})
# Which of NO_VALUE_FIELDS a KPI's kpi_status rows take besides its values: its targets and how they are judged,
# and the owner and strategy the rows carry. kpi_catalog.status_hash covers them (targets.judgement_hash): an
# incremental run keeps the statuses of the periods it does not recompute only while it is unchanged.
JUDGED_FIELDS: frozenset[str] = frozenset({
    "owner", "strategy", "direction", "target", "tolerance", "at_risk_below", "at_risk_above", "slice_targets",
})


TOP_LEVEL_KEYS = ("mission", "priorities", "sources", "kpis", "standards", "owners")
