"""Finding profiles.yml, rendering its env_var() calls, and picking the output."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

from .config import Output, SecretRegistry, profile_search_path
from .errors import ConfigError, Location, error
from .loader import suggest
from .templating import TemplateContext, render
from .yamlio import ECHO_CHARS, LocDict, clip, load_yaml, shown

_OUTPUT = TypeAdapter(Output)
# each output class by its `type:` tag (the tag pydantic puts first in an error's path)
_OUTPUT_TYPES = {get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(get_args(Output)[0])}


def _output_problem(e: dict) -> str:
    """One pydantic error of a profile output as `field: problem`. The path leaves out the union's tag
    (`postgres.port` is `port`); an unknown or missing `type` names the types there are, an unknown
    setting the one it may have meant."""
    kind, ctx, loc = e["type"], e.get("ctx") or {}, e["loc"]
    known = ", ".join(_OUTPUT_TYPES)
    if kind == "union_tag_invalid":
        return f"type: unknown warehouse type {shown(ctx.get('tag'))} (types: {known})"
    if kind == "union_tag_not_found":
        return f"type: missing (types: {known})"
    if not loc:
        return "must be a mapping of settings" if kind == "model_attributes_type" else e["msg"]
    if kind == "extra_forbidden" and len(loc) == 2 and loc[0] in _OUTPUT_TYPES:
        settings = {f.alias or name for name, f in _OUTPUT_TYPES[loc[0]].model_fields.items()}
        return f"{clip(loc[1], ECHO_CHARS)}: unknown setting{suggest(loc[1], settings)}"
    return f"{'.'.join(map(str, loc[1:])) or loc[0]}: {e['msg']}"


def _names(mapping: dict, most: int = 20) -> str:
    """The keys of a mapping as a message lists them: each cut short, at most `most` of them."""
    names = sorted(map(str, mapping))
    text = ", ".join(clip(n, 40) for n in names[:most]) or "none"
    return text + (f", and {len(names) - most} more" if len(names) > most else "")


@dataclass
class ResolvedProfile:
    path: Path
    profile: str
    target: str
    output: Any  # DuckDBOutput | PostgresOutput | SparkOutput

    @property
    def type(self) -> str:
        return self.output.type


def _render_values(value: Any, ctx: TemplateContext, loc: Location) -> tuple[Any, list]:
    issues: list = []
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub_loc = value.value_loc(k) if isinstance(value, LocDict) else loc
            out[k], more = _render_values(v, ctx, sub_loc or loc)
            issues.extend(more)
        return out, issues
    if isinstance(value, list):
        out_list = []
        for v in value:
            r, more = _render_values(v, ctx, loc)
            out_list.append(r)
            issues.extend(more)
        return out_list, issues
    if isinstance(value, str) and "{" in value:
        text, more = render(value, ctx, loc)
        return text, more
    return value, issues


def resolve_profile(
    project_dir: Path,
    profile_name: str | None,
    profiles_dir: str | Path | None,
    target: str | None,
    secrets: SecretRegistry,
    vars: dict[str, Any] | None = None,
) -> ResolvedProfile:
    searched = profile_search_path(project_dir, profiles_dir)
    # a profiles.yml that cannot be read (a broken link, a folder) is an error, not a reason to look further
    path = next((p for p in searched if os.path.lexists(p)), None)
    if path is None:
        raise ConfigError(
            "profiles.yml not found; looked in: " + ", ".join(str(p.parent) for p in searched),
            [error("KPI080", "profiles.yml not found", None,
                   "create one in the project folder, or pass --profiles-dir / set KPIMETRICS_PROFILES_DIR")],
        )
    display = str(path)
    data, issues = load_yaml(path, display)
    if issues:
        raise ConfigError(f"{display}: invalid profiles file", issues)
    if not isinstance(data, dict):
        raise ConfigError(f"{display}: profiles.yml must be a mapping of profile names",
                          [error("KPI082", "profiles.yml must be a mapping of profile names", Location(display, 1, 1))])
    name = profile_name or (next(iter(data)) if len(data) == 1 else None)
    if name is None or name not in data:
        known = _names(data)
        raise ConfigError(
            f"profile {shown(profile_name)} not found in {display} (profiles: {known})",
            [error("KPI080", f"profile {shown(profile_name)} not found (profiles: {known})", Location(display, 1, 1),
                   "set `profile:` in kpimetrics.yml to one of them")],
        )
    entry = data[name]
    if not isinstance(entry, dict) or "outputs" not in entry:
        raise ConfigError(f"{display}: profile {shown(name)} needs `target:` and `outputs:`",
                          [error("KPI082", f"profile {shown(name)} needs `target:` and `outputs:`",
                                 data.key_loc(name) if isinstance(data, LocDict) else None)])
    outputs = entry["outputs"]
    chosen = target or entry.get("target")
    if isinstance(chosen, (list, dict)):  # no output's name (and cannot be looked up as one: exit 3)
        where = entry.value_loc("target") if isinstance(entry, LocDict) else None
        raise ConfigError(f"{display}: profile {shown(name)}: `target:` must name one of its outputs",
                          [error("KPI081", f"profile {shown(name)}: `target:` must name one of its outputs, got a "
                                 f"{'list' if isinstance(chosen, list) else 'mapping'}", where)])
    if not isinstance(outputs, dict) or chosen not in outputs:
        known = _names(outputs) if isinstance(outputs, dict) else "none"
        raise ConfigError(
            f"target {shown(chosen)} not found in profile {shown(name)} (targets: {known})",
            [error("KPI081", f"target {shown(chosen)} not found in profile {shown(name)} (targets: {known})",
                   entry.key_loc("outputs") if isinstance(entry, LocDict) else None)],
        )
    raw = outputs[chosen]
    loc = outputs.value_loc(chosen) if isinstance(outputs, LocDict) else Location(display)
    ctx = TemplateContext(vars=dict(vars or {}), secrets=secrets)
    rendered, issues = _render_values(raw, ctx, loc or Location(display))
    if issues:
        raise ConfigError(f"{display}: cannot render profile {shown(f'{name}.{chosen}')}", issues)
    try:
        output = _OUTPUT.validate_python(rendered)
    except ValidationError as exc:
        msgs = "; ".join(_output_problem(e) for e in exc.errors(include_url=False))
        # never echo input values: they may be secrets
        raise ConfigError(f"{display}: invalid output {shown(chosen)} in profile {shown(name)}: {msgs}",
                          [error("KPI082", f"invalid output {shown(chosen)} in profile {shown(name)}: {msgs}", loc)]) from None
    return ResolvedProfile(path, name, chosen, output)
