"""Rendering trees for each target dialect, and the few engine fixes sqlglot needs."""
from __future__ import annotations

from sqlglot import exp

from .calendar import data_type
from .config import COMPILE_ONLY_DIALECTS

# dialects whose generator renders a query without analysing it as a whole (sqlglot's Snowflake, BigQuery and
# Trino generators build scopes over the whole query to rewrite UNNEST): a part of such a query renders the same
# alone as inside it, so the compiler may render repeated parts once (shapes.RowTexts; test_shapes checks it)
PARTS_RENDER_ALONE = ("duckdb", "postgres", "spark", "databricks")

# dialects where a scan's shared pre-aggregate (`__pp`, sqlgen) is computed by a statement of its own into a
# staging table that the scan's query reads, rather than as a CTE of it. Spark inlines every deterministic CTE at
# each reference (a view cached by CACHE TABLE ... AS WITH ... was not read from the cache where a CTE referenced
# it), so the benchmark's orders scan planned about 50 scans of `orders`: staged, the scan took 8-9 s where it
# took 11-15 s (2x10^5 orders, a warm JVM; bench/RESULTS.md, Spark). DuckDB and PostgreSQL keep their CTE (a
# pre-aggregate kept between runs is staged there anyway: partials.py). Databricks (compile only): unmeasured.
STAGED_PRE_AGGREGATE = ("spark",)

# dialects where count(DISTINCT x) by period, for KPIs without a window, is counted from bit masks of each x's
# periods (scan.agg_key, sqlgen._render_masks): DuckDB 2.0 groups 10^7 orders by customer and region with a mask
# in about half the time it groups them by month, region and customer (bench/RESULTS.md). PostgreSQL and Spark
# have the operators (sqlglot renders them) but are unmeasured: they keep count(DISTINCT x).
DISTINCT_MASKS = ("duckdb",)


def generate(tree: exp.Expression, dialect: str, pretty: bool = False, copy: bool = True) -> str:
    """SQL text of `tree` in `dialect`. copy=False hands the tree over: rendering may change it,
    and it saves a copy of the whole tree (half the cost of rendering) when the caller is done with it."""
    fixes = FIXES.get(dialect)
    if fixes:
        tree = tree.copy() if copy else tree
        for fix in fixes:
            tree = tree.transform(fix, copy=False)
        copy = False
    return tree.sql(dialect=dialect, pretty=pretty, identify=False, copy=copy)


def _postgres_date_series(node: exp.Expression) -> exp.Expression:
    """A date series joined to the table of its bounds, as a set-returning function in FROM.

    sqlglot writes UNNEST(GENERATE_DATE_ARRAY(lo, hi, step)) as a subquery over
    GENERATE_SERIES, and a subquery in FROM cannot see the preceding FROM items in
    PostgreSQL (without LATERAL); a function call in FROM can. The bounds are cast to
    TIMESTAMP so that the steps are plain calendar arithmetic, whatever the session time zone.
    """
    if not (isinstance(node, exp.Unnest) and isinstance(node.parent, exp.Join) and len(node.expressions) == 1
            and isinstance(node.expressions[0], exp.GenerateDateArray)):
        return node
    dates = node.expressions[0]
    series = exp.GenerateSeries(
        start=exp.cast(dates.args["start"].copy(), "TIMESTAMP"),
        end=exp.cast(dates.args["end"].copy(), "TIMESTAMP"),
        step=dates.args["step"].copy(),
    )
    alias = node.args.get("alias")
    return exp.Table(this=series, alias=alias.copy() if alias else None)


def _postgres_trunc_timestamp(node: exp.Expression) -> exp.Expression:
    """CAST(DATE_TRUNC(unit, d) AS DATE) with `d` cast to TIMESTAMP first.

    kpimetrics truncates DATEs (calendar.period_start_of_date), and PostgreSQL has no date_trunc of a DATE: it
    casts the DATE to TIMESTAMPTZ and truncates in the session's time zone, about 1 s more per 3x10^6 rows than
    through a plain TIMESTAMP (bench/RESULTS.md, PostgreSQL). A DATE is midnight either way, so the DATE cast back
    gives the same day; for a TIMESTAMP the cast changes nothing, and for a TIMESTAMPTZ it takes the wall time in
    the session's time zone, the one date_trunc would have used.
    """
    if (isinstance(node, exp.DateTrunc) and isinstance(node.parent, exp.Cast) and node.parent.to.is_type("date")
            and not (isinstance(node.this, exp.Cast) and node.this.to.is_type("timestamp"))):
        node.set("this", exp.Cast(this=node.this, to=data_type("TIMESTAMP")))
    return node


def _spark_naive_timestamps(node: exp.Expression) -> exp.Expression:
    """TIMESTAMP as Spark's TIMESTAMP_NTZ: a plain wall-clock time, as on DuckDB and PostgreSQL.

    Spark's own TIMESTAMP is an instant shown in the session time zone (our TIMESTAMPTZ);
    sqlglot renders both types as TIMESTAMP.
    """
    if isinstance(node, exp.DataType) and node.this == exp.DataType.Type.TIMESTAMP:
        return data_type("TIMESTAMPNTZ")
    return node


def _spark_exact_percentile(node: exp.Expression) -> exp.Expression:
    """percentile_cont as Spark's exact PERCENTILE (sqlglot writes PERCENTILE_APPROX or a form Spark lacks)."""
    if isinstance(node, exp.WithinGroup) and isinstance(node.this, exp.PercentileCont):
        order = node.expression.expressions[0] if isinstance(node.expression, exp.Order) else None
        if order is None or node.this.expression is not None:
            return node
        q = node.this.this.copy()
        if order.args.get("desc"):
            q = exp.Sub(this=exp.Literal.number(1), expression=q)
        return exp.Quantile(this=order.this.copy(), quantile=q)
    if isinstance(node, exp.PercentileCont) and node.expression is not None and not isinstance(node.parent, exp.WithinGroup):
        return exp.Quantile(this=node.this.copy(), quantile=node.expression.copy())
    return node


# marks a null-safe equality of two TEXT values (`null_safe_text_eq`)
_TEXT_KEY = "kpimetrics_null_safe_text_key"


def null_safe_text_eq(a: exp.Expression, b: exp.Expression) -> exp.NullSafeEQ:
    """`a IS NOT DISTINCT FROM b` of two TEXT values, as a join key: the slice of two rows of the output tables
    (dimension_value, NULL on a KPI's total row)."""
    eq = exp.NullSafeEQ(this=a, expression=b)
    eq.meta[_TEXT_KEY] = True
    return eq


def _postgres_hashable_null_safe(node: exp.Expression) -> exp.Expression:
    """`a IS NOT DISTINCT FROM b` (TEXT) as `COALESCE(a, '') = COALESCE(b, '') AND (a IS NULL) = (b IS NULL)`,
    the same truth in two equalities. PostgreSQL can neither hash nor merge on IS NOT DISTINCT FROM: it joins on
    the other keys and filters each pair, so joining the rows of a KPI's slices (a period's values to their
    targets, to the previous period's) compared every slice of a dimension with every other. With 2,000 slice
    values over 60 days that join took 27 s, and 0.8 s split (DuckDB hashes on the null-safe form: 0.05 s)."""
    if isinstance(node, exp.NullSafeEQ) and node.meta.get(_TEXT_KEY):
        a, b = node.this, node.expression
        empty = exp.Literal.string("")
        split = exp.and_(
            exp.EQ(this=exp.Coalesce(this=a.copy(), expressions=[empty.copy()]),
                   expression=exp.Coalesce(this=b.copy(), expressions=[empty.copy()])),
            exp.EQ(this=exp.Paren(this=exp.Is(this=a.copy(), expression=exp.Null())),
                   expression=exp.Paren(this=exp.Is(this=b.copy(), expression=exp.Null()))),
            copy=False,
        )
        return split if isinstance(node.parent, exp.And) else exp.Paren(this=split)
    return node


# marks a query that, as a CTE, kpimetrics asks DuckDB alone not to materialize (see `duckdb_inlined`)
_DUCKDB_ONLY_HINT = "kpimetrics_duckdb_only_hint"


def duckdb_inlined(query: exp.Query) -> exp.Query:
    """Ask for `query`, wherever it becomes a CTE (sqlgen.cte_query, also after split_ctes), to be NOT MATERIALIZED,
    where DuckDB was measured faster with it. The mark travels with the query; rendered in any other dialect the
    hint is left out (`_no_duckdb_hints`), while a hint the user wrote in a model stays."""
    query.meta[_DUCKDB_ONLY_HINT] = True
    return query


def cte_hint(cte: exp.CTE) -> None:
    """Give a CTE the hint its query asks for."""
    if cte.this.meta.get(_DUCKDB_ONLY_HINT):
        cte.set("materialized", False)


def _no_duckdb_hints(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.CTE) and node.this.meta.get(_DUCKDB_ONLY_HINT):
        node.set("materialized", None)
    return node


# Rewrites applied to a tree before it is rendered in a dialect, where sqlglot's output does not run there
# or was not measured there.
FIXES = {
    "postgres": (_postgres_date_series, _postgres_trunc_timestamp, _postgres_hashable_null_safe, _no_duckdb_hints),
    "spark": (_spark_naive_timestamps, _spark_exact_percentile, _no_duckdb_hints),
    "databricks": (_spark_naive_timestamps, _spark_exact_percentile, _no_duckdb_hints),  # Spark SQL underneath
}
for _dialect in COMPILE_ONLY_DIALECTS:
    FIXES.setdefault(_dialect, (_no_duckdb_hints,))
