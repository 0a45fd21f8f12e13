"""A `Site` rendered as static HTML files: Jinja2 templates with autoescape, CSS inlined.

Every page carries a Content-Security-Policy that allows no network request at all,
so the site opens from file:// and nothing a label says can make it call out.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
from pathlib import Path

import jinja2
import yaml

from .. import __version__
from ..display import format_change, format_value
from ..status import ACTION, JUDGED, LOOKS, Status, look
from . import charts
from .data import KpiPage, Owner, Site

# The manifest fields shown as a KPI's definition, in this order.
DEFINITION_FIELDS = (
    "kind", "form", "model", "time", "measure", "ratio", "derived", "filter", "grains", "dimensions", "window",
    "fill", "target", "tolerance", "at_risk_below", "at_risk_above", "slice_targets", "drives", "review_by", "location",
)
# A metric KPI's: its metric as dbt defines it, in place of the measure or ratio it is planned as (whose SQL names
# kpimetrics' internal columns, `__kpim_time`), which the compiled SQL below the definition shows
METRIC_FIELDS = ("kind", "metric") + tuple(
    f for f in DEFINITION_FIELDS
    if f not in ("kind", "form", "model", "time", "measure", "ratio", "derived", "filter", "window", "fill"))
# the manifest's `metric` entry, shown in this order (file and line are shown as defined_at)
_METRIC_KEYS = ("name", "type", "label", "description", "defined_at", "definition")


def slug(text: str) -> str:
    """A file name for a KPI, strategy or owner; distinct names never share one."""
    clean = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.") or "x"
    if clean == text:
        return clean
    return f"{clean}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


def owns(o: Owner) -> str:
    """What an owner is accountable for, in a few words."""
    parts = [(len(o.kpis), "KPI"), (len(o.strategies), "strategy"), (len(o.priorities), "priority")]
    return ", ".join(f"{n} {word if n == 1 else _plural(word)}" for n, word in parts if n) or "nothing yet"


# how a combination of dimensions may be written in kpi_status.dimension ("region,channel", "region × channel", ...)
_COMBINED = re.compile(r"\s*(?:[,×*+|&]|\bx\b)\s*")


def dimension_label(dimension: str) -> str:
    """A slice table's header as a reader says it: `region` -> "Region", `sales_channel` -> "Sales channel",
    a combination `region,channel` -> "Region × channel"."""
    parts = [p.replace("_", " ").strip() for p in _COMBINED.split(dimension) if p.strip()] or [dimension]
    text = " × ".join(parts)
    return text[:1].upper() + text[1:]


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("kpimetrics.docs", "templates"),
        autoescape=True,  # labels, notes and descriptions are user text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(look=look, Status=Status, judged=JUDGED, fmt=format_value, fmt_change=format_change, slug=slug, period_label=charts.period_label,
                       dimension_label=dimension_label,
                       data_number=charts.data_number, spark_path=charts.spark_path, owns=owns)
    return env


def definition_yaml(entry: dict | None) -> str | None:
    if not entry:
        return None
    metric = entry.get("metric")
    if isinstance(metric, dict):
        shown_metric = {f: metric[f] for f in _METRIC_KEYS if metric.get(f) not in (None, [], {})}
        if isinstance(shown_metric.get("definition"), dict):
            shown_metric["definition"] = _in_dbt_order(shown_metric["definition"])
        entry = entry | {"metric": shown_metric}
    fields = METRIC_FIELDS if isinstance(metric, dict) else DEFINITION_FIELDS
    shown = {f: entry[f] for f in fields if entry.get(f) not in (None, [], {}) and entry.get(f) is not False}  # unset
    return yaml.dump(shown, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


# a metric's definition in the order dbt's YAML writes it (the manifest's keys are sorted)
_DBT_ORDER = ("type", "measure", "name", "computes", "semantic_model", "agg_time_dimension", "numerator",
              "denominator", "expr", "metrics", "alias", "offset_window", "offset_to_grain", "window", "grain_to_date",
              "filter", "fill_nulls_with", "inputs")


def _in_dbt_order(value):
    if isinstance(value, list):
        return [_in_dbt_order(v) for v in value]
    if not isinstance(value, dict):
        return value
    rank = {k: i for i, k in enumerate(_DBT_ORDER)}
    keys = sorted(value, key=lambda k: (rank.get(k, len(rank)), k))
    # `inputs` holds metrics by name: its keys are names, kept in the manifest's order
    return {k: ({n: _in_dbt_order(v) for n, v in value[k].items()} if k == "inputs" and isinstance(value[k], dict)
                else _in_dbt_order(value[k])) for k in keys}


class _Dumper(yaml.SafeDumper):
    """safe_dump's YAML, with a text holding a single quote in double quotes, as dbt projects write filters:
    "{{ Dimension('order__channel') }} = 'web'", where safe_dump would double every single quote."""


def _text(dumper: yaml.SafeDumper, value: str):
    quoted = "'" in value and "\n" not in value and not dumper.analyze_scalar(value).allow_block_plain
    style = '"' if quoted else None  # a text written plain (`status = 'completed'`) stays plain
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def _css(env: jinja2.Environment) -> str:
    # + the file's last newline, which Jinja drops
    return env.get_template("style.css.j2").render(looks=LOOKS, action=ACTION) + "\n"


def pages(site: Site, sql_dialect: str | None) -> dict[str, tuple[str, dict]]:
    """Every page: its path under the site folder -> (template, context)."""
    out: dict[str, tuple[str, dict]] = {"index.html": ("index.html", {"root": ""})}
    for k in site.kpis.values():
        out[f"kpi/{slug(k.name)}.html"] = ("kpi.html", _kpi_context(k, sql_dialect))
    for s in site.strategies:
        out[f"strategy/{slug(s.name)}.html"] = ("strategy.html", {"root": "../", "s": s})
    for o in site.owners.values():
        out[f"owner/{slug(o.key)}.html"] = ("owner.html", {"root": "../", "o": o})
    return out


def _kpi_context(k: KpiPage, sql_dialect: str | None) -> dict:
    by_grain = {s.grain: s for s in k.series}
    ordered = [by_grain[g] for g in k.grains if g in by_grain] + [s for s in k.series if s.grain not in k.grains]
    return {
        "root": "../", "k": k,
        "charts": [[charts.build_chart(s, k.unit, k.label, frame, k.currency) for frame in charts.FRAMES]
                   for s in ordered],
        "definition": definition_yaml(k.definition), "sql_dialect": sql_dialect,
    }


def write_site(site: Site, folder: Path, *, sql_dialect: str | None = None, generated_at: dt.datetime | None = None,
               scrub=lambda text: text) -> list[Path]:
    """Render every page into `folder` (replaced as a whole, so removed KPIs lose their pages)."""
    env = environment()
    common = {"site": site, "css": _css(env), "version": __version__,
              "generated_at": (generated_at or dt.datetime.now()).strftime("%Y-%m-%d %H:%M")}
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    written = []
    for rel, (template, context) in pages(site, sql_dialect).items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scrub(env.get_template(template).render(**common, **context)), encoding="utf-8")
        written.append(folder / rel)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return written
