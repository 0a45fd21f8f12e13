"""Finding profiles.yml, rendering its env_var() calls, and picking the output.

kpimetrics' own profiles and dbt's are read alike (SPEC §8): the lookup runs through kpimetrics' places and
dbt's, a dbt profiles file may hold dbt's `config:` block, and an output written for dbt-duckdb, dbt-postgres
or dbt-spark is taken as it is: the dbt keys kpimetrics has a use for are honoured (config.DBT_OUTPUT_KEYS),
the others are dropped and listed (`debug`). kpimetrics' own keys stay strict.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import TypeAdapter, ValidationError

from .config import DBT_OUTPUT_KEYS, DbtOutputKeys, DuckDBOutput, Output, ProfilePlace, SecretRegistry, profile_search_path
from .errors import ConfigError, Issue, Location, error
from .loader import suggest
from .templating import TemplateContext, render
from .yamlio import ECHO_CHARS, LocDict, clip, load_yaml, shown

_OUTPUT = TypeAdapter(Output)
# each output class by its `type:` tag (the tag pydantic puts first in an error's path)
_OUTPUT_TYPES = {get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(get_args(Output)[0])}
# dbt's global settings in a profiles file (dbt before 1.8): a top-level key that is not a profile
DBT_CONFIG_KEY = "config"


def _settings(kind: str) -> set[str]:
    """The keys an output of `type: kind` may have: kpimetrics' own and those of dbt's adapter for it."""
    cls = _OUTPUT_TYPES[kind]
    return {f.alias or name for name, f in cls.model_fields.items()} | DBT_OUTPUT_KEYS.get(kind, DbtOutputKeys()).known()


def _output_problem(e: dict, written: dict[str, str] | None = None) -> str:
    """One pydantic error of a profile output as `field: problem`. The path leaves out the union's tag
    (`postgres.port` is `port`) and names a setting as it was written (dbt's `pass` for `password`); an
    unknown or missing `type` names the types there are, an unknown setting the one it may have meant."""
    kind, ctx, loc = e["type"], e.get("ctx") or {}, e["loc"]
    if len(loc) >= 2 and written and loc[1] in written:
        loc = (loc[0], written[loc[1]], *loc[2:])
    known = ", ".join(_OUTPUT_TYPES)
    if kind == "union_tag_invalid":
        return f"type: unknown warehouse type {shown(ctx.get('tag'))} (types: {known})"
    if kind == "union_tag_not_found":
        return f"type: missing (types: {known})"
    if not loc:
        return "must be a mapping of settings" if kind == "model_attributes_type" else e["msg"]
    if kind == "extra_forbidden" and len(loc) == 2 and loc[0] in _OUTPUT_TYPES:
        return f"{clip(loc[1], ECHO_CHARS)}: unknown setting{suggest(loc[1], _settings(loc[0]))}"
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
    place: ProfilePlace | None = None  # the lookup step that found the file
    named_by: str = "kpimetrics.yml"  # what chose the profile: kpimetrics.yml, dbt_project.yml, the only profile
    ignored: tuple[str, ...] = ()  # dbt keys of the output kpimetrics has no use for
    paths_from: Path | None = None  # the folder a relative DuckDB `path` of the output resolved against
    paths_why: str = "the kpimetrics project folder"

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
        return render(value, ctx, loc, native=True)
    return value, issues


def _at(mapping: Any, key: Any, default: Location) -> Location:
    return (mapping.key_loc(key) if isinstance(mapping, LocDict) else None) or default


@dataclass
class _Sorted:
    """An output's keys sorted out: what goes to kpimetrics (key -> the written value and its place), what is
    dropped, and what is wrong."""

    kept: dict[str, tuple[Any, Location]] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)  # a kpimetrics setting -> the dbt key that set it
    ignored: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


# keys of kpimetrics' own that mean something else in a profile dbt reads: dbt-duckdb's top-level `threads` is
# how many models dbt builds at once (DuckDB's own threads are `settings: {threads: N}`, honoured)
_DBT_MEANING = {"duckdb": frozenset({"threads"})}


def _sort_keys(raw: dict, kind: Any, ctx: TemplateContext, loc: Location, label: str,
               dbt_place: bool = False) -> _Sorted:
    """kpimetrics' keys as they are, dbt's honoured keys under their kpimetrics names, dbt's other keys dropped
    (never rendered: a dbt-only env_var() need not be set for kpimetrics), unknown keys kept for pydantic to
    refuse with "did you mean"."""
    out = _Sorted()
    dbt = DBT_OUTPUT_KEYS.get(kind) if isinstance(kind, str) else None
    if dbt is None:  # a type that is no text, or not one of dbt's: pydantic words what is wrong
        out.kept = {k: (v, _at(raw, k, loc)) for k, v in raw.items()}
        return out
    own = {f.alias or n for n, f in _OUTPUT_TYPES[kind].model_fields.items()}
    dbt_meaning = _DBT_MEANING.get(kind, frozenset()) if dbt_place else frozenset()
    own -= dbt_meaning
    nested = {k.split(".")[0] for k in dbt.honoured if "." in k}
    later: list[tuple[str, str, Any, Location]] = []  # honoured dbt keys, set after kpimetrics' own
    for key, value in raw.items():
        where = _at(raw, key, loc)
        if key in own or not isinstance(key, str):
            out.kept[key] = (value, where)
        elif key in dbt.only:
            text, issues = _render_values(value, ctx, where)
            out.issues += issues
            if not issues and text not in dbt.only[key]:
                out.issues.append(error(
                    "KPI085", f"{label}: {key}: {shown(text)} is not a way kpimetrics reaches {kind} (it takes "
                    f"{', '.join(dbt.only[key])})", where,
                    "kpimetrics runs Spark through a session of its own (`method: session`, or kpimetrics' `master:`) "
                    "or a Spark Connect server (`remote: sc://host:15002`): add an output for it and pick it with "
                    "--target"))
        elif key in dbt.honoured:
            later.append((key, dbt.honoured[key], value, where))
        elif key in nested and isinstance(value, dict):
            for sub, sub_value in value.items():
                name = f"{key}.{sub}"
                if name in dbt.honoured:
                    later.append((name, dbt.honoured[name], sub_value, _at(value, sub, where)))
                else:
                    out.ignored.append(name)
        elif key in dbt.ignored or key in dbt_meaning:
            out.ignored.append(key)
        else:
            out.kept[key] = (value, where)  # unknown: pydantic says so, with the nearest key
    for name, setting, value, where in later:
        if setting not in out.kept:
            out.kept[setting] = (value, where)
            out.written[setting] = name
        elif "." in name:  # a nested dbt setting gives way to the same setting written at the top
            out.ignored.append(f"{name} ({setting} is set)")
        else:  # two names of one setting (dbt refuses them too)
            out.issues.append(error("KPI082", f"{label}: {name} and {setting} both set {setting}", where,
                                    "keep one of them"))
    return out


def _relative_base(place: ProfilePlace, project_dir: Path, dbt_dir: Path | None) -> tuple[Path, str]:
    """Where a relative DuckDB `path` of a profile found at `place` points from: dbt runs in the dbt project
    folder, so a profile found in one of dbt's places means that folder; kpimetrics' places, its project folder."""
    if place.dbt and dbt_dir is not None:
        return dbt_dir, "the dbt project folder"
    return project_dir, "the kpimetrics project folder"


def resolve_profile(
    project_dir: Path,
    profile_name: str | None,
    profiles_dir: str | Path | None,
    target: str | None,
    secrets: SecretRegistry,
    vars: dict[str, Any] | None = None,
    dbt_dir: Path | None = None,
    dbt_profile: str | None = None,
) -> ResolvedProfile:
    """The output to connect with. `dbt_dir` and `dbt_profile`: the dbt project's folder and the profile its
    dbt_project.yml names, when kpimetrics lives in a dbt project."""
    searched = profile_search_path(project_dir, profiles_dir, dbt_dir)
    # a profiles.yml that cannot be read (a broken link, a folder) is an error, not a reason to look further
    place = next((p for p in searched if os.path.lexists(p.file)), None)
    if place is None:
        looked = ", ".join(f"{p.folder} ({p.step})" for p in searched)
        raise ConfigError(
            "profiles.yml not found; looked in: " + looked,
            [error("KPI080", "profiles.yml not found", None,
                   "create one in the project folder, or pass --profiles-dir / set KPIMETRICS_PROFILES_DIR "
                   "(or DBT_PROFILES_DIR); looked in: " + looked)],
        )
    path = place.file
    display = str(path)
    data, issues = load_yaml(path, display)
    if issues:
        raise ConfigError(f"{display}: invalid profiles file", issues)
    if not isinstance(data, dict):
        raise ConfigError(f"{display}: profiles.yml must be a mapping of profile names",
                          [error("KPI082", "profiles.yml must be a mapping of profile names", Location(display, 1, 1))])
    profiles = {k: v for k, v in data.items() if k != DBT_CONFIG_KEY}
    if profile_name:
        name, named_by = profile_name, "kpimetrics.yml"
    elif dbt_profile:
        name, named_by = dbt_profile, "dbt_project.yml"
    else:
        name, named_by = (next(iter(profiles)) if len(profiles) == 1 else None), "the only profile in the file"
    if name is None or name not in profiles:
        known = _names(profiles)
        hint = ("set `profile:` in kpimetrics.yml to one of them" if named_by != "dbt_project.yml" else
                "set `profile:` in kpimetrics.yml to one of them (dbt_project.yml names this one)")
        raise ConfigError(
            f"profile {shown(name)} not found in {display} (profiles: {known})",
            [error("KPI080", f"profile {shown(name)} not found (profiles: {known})", Location(display, 1, 1), hint)],
        )
    entry = profiles[name]
    if not isinstance(entry, dict) or "outputs" not in entry:
        raise ConfigError(f"{display}: profile {shown(name)} needs `target:` and `outputs:`",
                          [error("KPI082", f"profile {shown(name)} needs `target:` and `outputs:`",
                                 data.key_loc(name) if isinstance(data, LocDict) else None)])
    outputs = entry["outputs"]
    ctx = TemplateContext(vars=dict(vars or {}), secrets=secrets)
    # dbt takes an output named `default` when the profile names no target
    chosen = target or entry.get("target", "default" if isinstance(outputs, dict) and "default" in outputs else None)
    if isinstance(chosen, str) and "{" in chosen and not target:  # dbt's `target: "{{ env_var('DBT_TARGET') }}"`
        where = (entry.value_loc("target") if isinstance(entry, LocDict) else None) or Location(display)
        chosen, issues = render(chosen, ctx, where)
        if issues:
            raise ConfigError(f"{display}: cannot render the target of profile {shown(name)}", issues)
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
    loc = (outputs.value_loc(chosen) if isinstance(outputs, LocDict) else None) or Location(display)
    label = f"output {shown(chosen)} in profile {shown(name)}"
    ignored: list[str] = []
    if isinstance(raw, dict):
        kind, issues = _render_values(raw.get("type"), ctx, _at(raw, "type", loc))
        if issues:
            raise ConfigError(f"{display}: cannot render profile {shown(f'{name}.{chosen}')}", issues)
        keys = _sort_keys(raw, kind, ctx, loc, label, dbt_place=place.dbt)
        if keys.issues:
            raise ConfigError(f"{display}: invalid {label}", keys.issues)
        ignored, written = keys.ignored, keys.written
        rendered, issues = {}, []
        for key, (value, where) in keys.kept.items():
            rendered[key], more = _render_values(value, ctx, where)
            issues += more
        raw_at = {key: where for key, (_, where) in keys.kept.items()}
    else:
        rendered, issues, raw_at, written = raw, [], {}, {}
    if issues:
        raise ConfigError(f"{display}: cannot render profile {shown(f'{name}.{chosen}')}", issues)
    try:
        output = _OUTPUT.validate_python(rendered)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        msgs = "; ".join(_output_problem(e, written) for e in errors)
        # one problem with one key: at that key's line
        keys_at = {e["loc"][1] for e in errors if len(e["loc"]) >= 2}
        where = raw_at.get(next(iter(keys_at)), loc) if len(errors) == 1 and len(keys_at) == 1 else loc
        # an output's own check may name its code (config.SparkOutput: PydanticCustomError("KPI180", ...))
        code = errors[0]["type"] if len(errors) == 1 and errors[0]["type"].startswith("KPI") else "KPI082"
        # never echo input values: they may be secrets
        raise ConfigError(f"{display}: invalid output {shown(chosen)} in profile {shown(name)}: {msgs}",
                          [error(code, f"invalid output {shown(chosen)} in profile {shown(name)}: {msgs}", where)]) from None
    base, why = _relative_base(place, project_dir, dbt_dir)
    if isinstance(output, DuckDBOutput) and base != project_dir and output.path != ":memory:" \
            and not Path(output.path).is_absolute():
        # the adapter resolves a relative path against the kpimetrics project: give it dbt's file
        output = output.model_copy(update={"path": str((base / output.path).resolve())})
    return ResolvedProfile(path, name, chosen, output, place, named_by, tuple(clip(k, 60) for k in ignored), base, why)
