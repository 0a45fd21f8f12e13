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
    shown = {f: entry[f] for f in DEFINITION_FIELDS if entry.get(f) not in (None, [], {})}
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True, width=100)


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
