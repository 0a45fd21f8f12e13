"""A KPI's model: source() and ref() references, model SQL, and the columns a model offers (KPI030-039)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from .. import dag
from .. import model as m
from ..errors import Issue, Location, error, warning
from ..loader import MODEL_CTE_PREFIX, ProjectDef, Resolved, ref_label, suggest
from ..planner import parse_model_ref
from .context import Columns, Context, kpi_label


@dataclass(frozen=True)
class ModelRef:
    """A KPI's `model:` parsed: source('s', 't') or ref('m') (with a package and version, as dbt writes it)."""

    source: str | None = None
    table: str | None = None
    model: str | None = None
    package: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.model is None:
            return f"source('{self.source}', '{self.table}')"
        return f"model '{self.model}'" if self.package is None and self.version is None else \
            ref_label(self.model, self.package, self.version)

    def resolve(self, project: ProjectDef) -> Resolved:
        if self.model is None:
            return project.resolve_source(self.source, self.table)
        return project.resolve_ref(self.model, self.package, self.version)


def model_ref(kpi: m.Kpi) -> ModelRef | None:
    """The KPI's `model:` read with the planner's grammar, so what validates is what gets planned."""
    parsed = parse_model_ref(kpi.model)
    if parsed is None:
        return None
    kind, args = parsed
    if kind == "source":
        return ModelRef(source=args[0], table=args[1])
    return ModelRef(model=args[0], package=args[1] or None, version=args[2] or None)


def _columns_in(tree: exp.Expression) -> list[str]:
    """Column names a snippet reads; lambda parameters (x -> x > 1) are not columns."""
    seen: dict[str, None] = {}
    for col in tree.find_all(exp.Column):
        lam = col.find_ancestor(exp.Lambda)
        if lam is not None and col.name in {e.name for e in lam.expressions}:
            continue
        seen.setdefault(col.name, None)
    return list(seen)


def _reads_model(kpi: m.Kpi) -> bool:
    """Whether the KPI's form reads its model (true too of a KPI that writes no form: KPI025 says what is missing)."""
    form = kpi.computation
    return form is None or form.reads_model


def model_references(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    for kpi in project.kpis:
        if kpi.model is None or not _reads_model(kpi):
            continue
        ref, where = model_ref(kpi), kpi.value_loc("model")
        if ref is None:
            hint = "write it without {{ }}" if "{{" in kpi.model else None
            issues.append(error("KPI030", f"{kpi_label(kpi)}: model must be source('source', 'table') or ref('model'), "
                                          f"got {kpi.model!r}", where, hint))
        elif (problem := ref.resolve(project).problem) is not None and problem[0]:  # '': said at the manifest
            code, message, hint = problem
            issues.append(error(code, f"{kpi_label(kpi)}: {message}", where, hint))
    return issues


def _unknown_source_table(project: ProjectDef, ref: ModelRef) -> str:
    """Why source() names no table: of the project's sources or, in a dbt project, of dbt's."""
    problem = ref.resolve(project).problem
    return problem[1] if problem and problem[1] else f"unknown {ref}"


def model_sql(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues = [ctx.model_tree(name)[1] for name, mf in project.models.items() if mf.sql is not None]
    deps = {name: list(mf.refs) for name, mf in project.models.items()}
    for cycle in dag.find_cycles(deps):
        issues.append(error("KPI036", f"models refer to each other in a cycle: {' -> '.join(cycle)}",
                            project.models[cycle[0]].loc))
    return [i for i in issues if i is not None]


def model_columns(ctx: Context, name: str, trail: tuple[str, ...] = ()) -> Columns:
    """A model's output columns, inferred once however many KPIs and models ask."""
    if name not in ctx.columns_by_model:
        ctx.columns_by_model[name] = _infer_model_columns(ctx, name, trail + (name,))
    return ctx.columns_by_model[name]


def _infer_model_columns(ctx: Context, name: str, trail: tuple[str, ...]) -> Columns:
    """A model's output columns, from its SQL qualified against the declared columns of what it reads."""
    model_file = ctx.project.models[name]
    if model_file.sql is None:
        return Columns(None, reason="its SQL did not render")
    tree, problem = ctx.model_tree(name)
    if tree is None:
        return Columns(None, reason="its SQL does not parse")
    tree = tree.copy()
    relations = ctx.project.relations()
    schema: dict[str, dict[str, str]] = {}
    unknown: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        label, cols = _table_columns(ctx, table, relations, trail)
        if label is None:
            continue  # a CTE, or a table the model names directly: qualify resolves what it can
        # Flatten every relation to one placeholder name so the schema has a single level.
        placeholder = f"__kpimetrics_rel_{len(schema) + len(unknown)}"
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
        table.set("this", exp.to_identifier(placeholder))
        table.set("db", None)
        table.set("catalog", None)
        if cols is None:
            unknown.append(label)
        else:
            schema[placeholder] = {c: "UNKNOWN" for c in cols}
    try:
        query = qualify(tree, schema=schema, dialect=ctx.dialect, validate_qualify_columns=False,
                        quote_identifiers=False, identify=False)
    except Exception as exc:  # sqlglot cannot resolve some SQL; say so rather than guess
        return Columns(None, reason=f"sqlglot could not resolve its SQL ({exc})")
    if any(isinstance(s, exp.Star) or (isinstance(s, exp.Column) and isinstance(s.this, exp.Star)) for s in query.selects):
        what = ", ".join(unknown) if unknown else "a table that is not a declared source or model"
        return Columns(None, reason=f"it selects * from {what}, whose columns are not declared")
    if any(s.find(exp.Columns) is not None for s in query.selects):  # DuckDB's COLUMNS(...) expands like a star
        return Columns(None, reason="it selects COLUMNS(...), whose columns are only known in the warehouse")
    return Columns(frozenset(n.lower() for n in query.named_selects), tuple(query.named_selects))


def _table_columns(ctx: Context, table: exp.Table, relations, trail) -> tuple[str | None, list[str] | None]:
    """(a label for the relation, its columns or None) for a declared source table or a ref()'d model."""
    key = (table.catalog or "", table.db or "", table.name)
    if key in relations:  # a declared source table, or a relation dbt built
        return relations[key]
    if not table.db and table.name.startswith(MODEL_CTE_PREFIX):
        ref = table.name[len(MODEL_CTE_PREFIX):]
        if ref not in ctx.project.models or ref in trail:
            return f"model '{ref}'", None
        cols = model_columns(ctx, ref, trail)
        return f"model '{ref}'", list(cols.declared) if cols.names is not None else None
    return None, None


def kpi_columns(project: ProjectDef, ctx: Context, kpi: m.Kpi) -> Columns:
    """The columns a KPI's model offers (names None: not known, nothing is checked)."""
    ref = model_ref(kpi)
    if ref is None:
        return Columns(None)
    resolved = ref.resolve(project)
    if resolved.model is not None:
        return model_columns(ctx, resolved.model)
    if resolved.source is not None:
        cols = resolved.source[1].columns
    elif resolved.node is not None:  # a relation dbt built: its documented columns, and catalog.json's
        node = resolved.node
        if node.columns is None:
            return Columns(None)
        return Columns(frozenset(c.lower() for c in node.columns), node.columns, complete=node.cataloged)
    else:
        return Columns(None)
    if cols is None:
        return Columns(None)  # columns are optional on a source: declaring them is what turns the check on
    return Columns(frozenset(c.lower() for c in cols), tuple(cols))


def columns_exist(project: ProjectDef, ctx: Context) -> list[Issue]:
    issues: list[Issue] = []
    unchecked: dict[str, list[str]] = {}
    dbt_unchecked: dict[str, list[str]] = {}
    for kpi in project.kpis:
        if not _reads_model(kpi):
            continue
        cols = kpi_columns(project, ctx, kpi)
        if cols.names is None:
            ref = model_ref(kpi)
            resolved = ref.resolve(project) if ref is not None else None
            if resolved is not None and resolved.model is not None and project.models[resolved.model].sql is not None:
                unchecked.setdefault(resolved.model, []).append(kpi.name)
            elif resolved is not None and resolved.node is not None:
                dbt_unchecked.setdefault(resolved.node.label, []).append(kpi.name)
            continue
        for snippet in ctx.snippets(kpi):
            if snippet.kind == "kpis":
                continue  # names other KPIs, not columns
            tree, _ = ctx.tree(snippet)
            if tree is None:
                continue
            for name in _columns_in(tree):
                if name.lower() not in cols.names:
                    what = f"time column '{name}'" if snippet.role == "time" else f"column '{name}' in `{snippet.label}`"
                    if not cols.complete:  # a dbt model's schema file documents a few of its columns, often
                        issues.append(warning("KPI146", f"{kpi_label(kpi)}: {what} is not among the documented "
                                              f"columns of {model_ref(kpi)}{suggest(name, cols.declared)}",
                                              ctx.loc(snippet), "if it is a column, document it, or run `dbt docs "
                                              "generate` so that catalog.json lists every column"))
                        continue
                    code = "KPI033"
                    if snippet.role == "combination":  # a column of a combination of dimensions (SPEC §9)
                        code, what = "KPI037", f"column '{name}' in the combination of dimensions"
                    issues.append(error(code, f"{kpi_label(kpi)}: {what} is not a column of "
                                              f"{model_ref(kpi)}{suggest(name, cols.declared)}", ctx.loc(snippet),
                                        f"its columns: {', '.join(cols.declared)}"))
    for name, kpis in unchecked.items():
        reason = model_columns(ctx, name).reason
        issues.append(warning("KPI035", f"the columns of model '{name}' could not be determined ({reason}), so the columns "
                                        f"used by {', '.join(kpis)} were not checked", project.models[name].loc,
                              "declare the columns of the sources it reads, or list its columns instead of *"))
    manifest = project.manifest
    for label, kpis in dbt_unchecked.items():
        issues.append(warning("KPI035", f"the columns of dbt's {label} are not known (not documented in its schema "
                                        f"file, and no catalog.json), so the columns used by {', '.join(kpis)} were "
                                        "not checked", Location(manifest.display, 1, 1) if manifest else None,
                              "run `dbt docs generate` to write catalog.json, or document the model's columns"))
    return issues
