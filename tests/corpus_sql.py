"""Hostile-input corpus: the grammar of project SQL (SPEC §11, see corpus.py).

Each snippet (`measure`, a ratio part, `filter`, `derived`, `time`, a dimension) is one expression: a `;`, a
statement (KPI110) or a subquery (KPI111) in it is an error at its YAML line. A model is one SELECT: a second
statement (KPI112) or a data-modifying CTE (KPI113) is an error at its line in the .sql file. `derived` reads
its inputs now or `lag(k, n)` periods before (KPI114), never after (KPI115), aggregates nothing (KPI116),
and reads at least one KPI (KPI117).
Before these checks, each of these reached the warehouse (or gave exit 3, for `lag(k, 1.5)`), which is what
`check_fault` asserts cannot happen any more: exit 1, the code at its file and line, every table unchanged.

FAULTS run in test_error_catalog; ELSEWHERE: code -> where it is tested. ENGINE_FAULTS is the subset
test_trust_sql runs on PostgreSQL and Spark too.
"""
from __future__ import annotations

from corpus import ANY_LINE, Fault  # noqa: F401
from helpers_projects import kpi_yaml

BROKEN = "kpis/broken.yml"
MODEL = "models/broken.sql"

# kpi_yaml's lines: `time` 9, `measure` 10, the first added key 12 (after `target` on 11). A derived KPI
# (no model, time or measure) has `target` on 8 and `derived` on 9; a ratio's parts are 12 and 13.
TIME, MEASURE, FILTER, DERIVED, NUMERATOR, DENOMINATOR = 9, 10, 12, 9, 12, 13


def snippet(field: str, text: str) -> dict[str, str]:
    """kpis/broken.yml with one SQL field set to `text` (written as a YAML double-quoted string)."""
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if field == "derived":
        return {BROKEN: kpi_yaml(model=None, time=None, measure=None, derived=quoted)}
    if field in ("numerator", "denominator"):
        parts = {"numerator": '"sum(amount)"', "denominator": '"count(*)"', field: quoted}
        return {BROKEN: kpi_yaml(measure=None, ratio=f"numerator: {parts['numerator']}\n"
                                                     f"denominator: {parts['denominator']}")}
    if field == "dimension":
        return {BROKEN: kpi_yaml(dimensions=f"[region, {quoted}]")}
    return {BROKEN: kpi_yaml(**{field: quoted})}


LINE = {"time": TIME, "measure": MEASURE, "filter": FILTER, "dimension": FILTER, "derived": DERIVED,
        "numerator": NUMERATOR, "denominator": DENOMINATOR}
LABEL = {"numerator": "ratio.numerator", "denominator": "ratio.denominator"}


def in_snippet(code: str, field: str, text: str, message: str) -> Fault:
    sep = "" if message.startswith(":") else " "  # a parse problem reads "`filter`: holds ...", a rule's "`derived` uses"
    return Fault(code, snippet(field, text), BROKEN, LINE[field], f"`{LABEL.get(field, field)}`{sep}{message}")


def in_model(code: str, sql: str, line: int, message: str) -> Fault:
    return Fault(code, {MODEL: sql}, MODEL, line, f"model 'broken' {message}")


SEMICOLON = "holds a `;`: it must be one SQL expression, not statements"
SUBQUERY = "holds a subquery (SELECT ...): it must be one expression, which reads no other table"

STATEMENT_FAULTS = [
    in_snippet("KPI110", "filter", "status = 'completed'; delete from main.orders", f": {SEMICOLON}"),
    in_snippet("KPI110", "measure", "sum(amount); drop table main.orders", f": {SEMICOLON}"),
    in_snippet("KPI110", "time", "ordered_at; delete from main.customers", f": {SEMICOLON}"),
    in_snippet("KPI110", "dimension", "channel; delete from main.orders", f": {SEMICOLON}"),
    in_snippet("KPI110", "numerator", "sum(amount); update main.orders set amount = 0", f": {SEMICOLON}"),
    in_snippet("KPI110", "derived", "net_revenue; delete from main.orders", f": {SEMICOLON}"),
    in_snippet("KPI110", "filter", "amount > 0;", f": {SEMICOLON}"),  # even a harmless trailing one
    in_snippet("KPI110", "filter", "delete from main.orders", ": holds a statement (DELETE ...)"),
    in_snippet("KPI110", "measure", "select sum(amount) from main.orders", ": is a query"),
    in_snippet("KPI110", "filter", "amount > (with d as (delete from main.orders returning amount) "
                                   "select max(amount) from d)", ": holds a statement (DELETE ...)"),
]
SUBQUERY_FAULTS = [
    in_snippet("KPI111", "filter", "customer_id in (select customer_id from main.customers)", f": {SUBQUERY}"),
    in_snippet("KPI111", "filter", "exists (select 1 from main.customers as c where c.segment = 'vip')",
               f": {SUBQUERY}"),
    in_snippet("KPI111", "measure", "sum(amount) / (select count(*) from main.orders)", f": {SUBQUERY}"),
    in_snippet("KPI111", "denominator", "(select count(*) from main.customers)", f": {SUBQUERY}"),
    in_snippet("KPI111", "derived", "net_revenue / (select max(value) from kpi.kpi_values)", f": {SUBQUERY}"),
    in_snippet("KPI111", "dimension", "(select max(segment) from main.customers)", f": {SUBQUERY}"),
    in_snippet("KPI111", "time", "(select max(ordered_at) from main.orders)", f": {SUBQUERY}"),
    in_snippet("KPI111", "filter", "channel in (values ('web'), ('store'))", f": {SUBQUERY}"),
    in_snippet("KPI111", "measure", "sum(amount) filter (where customer_id = any (select customer_id from "
                                    "main.customers))", f": {SUBQUERY}"),
]
SECOND_STATEMENT = "holds 2 statements: a model is one SELECT, and nothing may follow its `;`"
MODEL_FAULTS = [
    in_model("KPI112", "select * from {{ source('shop', 'orders') }};\ndelete from main.orders\n", 2, SECOND_STATEMENT),
    in_model("KPI112", "select *\nfrom {{ source('shop', 'orders') }};\n\n-- and then\n  drop table main.customers\n",
             5, SECOND_STATEMENT),
    in_model("KPI112", "select 1 as x;\nselect 2 as x;\n", 2, SECOND_STATEMENT),
    in_model("KPI113", "with d as (\n  delete from main.orders returning *\n)\nselect * from d\n", 2,
             "holds a DELETE in a CTE: a model is one SELECT that only reads"),
    in_model("KPI113", "with d as (\n  insert into main.orders\n  select * from main.orders returning *\n)\n"
                       "select * from d\n", 2, "holds an INSERT in a CTE"),
    in_model("KPI113", "select o.*\nfrom {{ source('shop', 'orders') }} as o\nwhere o.order_id in (\n"
                       "  with u as (update main.orders set amount = 0 returning order_id)\n"
                       "  select order_id from u)\n", 4, "holds an UPDATE in a CTE"),
    in_model("KPI113", "delete from main.orders\n", 1, "is a DELETE statement: a model is one SELECT that only reads"),
    in_model("KPI113", "select *\ninto main.orders_copy\nfrom main.orders\n", 2, "holds a SELECT ... INTO in it"),
    in_model("KPI113", "with o as (\n  select * from main.orders\n  for update\n)\nselect * from o\n", 3,
             "holds a FOR UPDATE in a CTE"),
    in_model("KPI113", "{% set t = source('shop', 'orders') %}\nwith d as (\n  delete from {{ t }} returning *\n)\n"
                       "select * from d\n", 3, "holds a DELETE in a CTE"),  # the line of the template
]
LAG = "write lag(kpi_name)"
DERIVED_FAULTS = [
    in_snippet("KPI114", "derived", "lag(net_revenue, 1.5)", "gives lag(net_revenue, ...) an offset that is not a whole number"),
    in_snippet("KPI114", "derived", "lag(net_revenue, 'a')", "gives lag(net_revenue, ...) an offset that is not a whole number"),
    in_snippet("KPI114", "derived", "net_revenue / lag(net_revenue, 0) - 1", "gives lag(net_revenue, 0) an offset below 1"),
    in_snippet("KPI114", "derived", "net_revenue / lag(net_revenue, -1) - 1", "gives lag(net_revenue, -1) an offset below 1"),
    in_snippet("KPI114", "derived", "lag(net_revenue, 99999999999)",  # was a warehouse error at run time
               "gives lag(net_revenue, 99999999999) an offset over 10,000 periods"),
    in_snippet("KPI114", "derived", "lag(net_revenue + 1)", "uses lag() on something that is not a KPI name"),
    in_snippet("KPI114", "derived", "lag(net_revenue, 1, 0)", "gives lag(net_revenue, ...) a third argument"),
    in_snippet("KPI114", "derived", "lag(net_revenue, repeat_customers)",
               "gives lag(net_revenue, ...) an offset that is not a whole number"),
    in_snippet("KPI115", "derived", "lead(net_revenue) / net_revenue", "uses lead(), which reads later periods"),
    in_snippet("KPI115", "derived", "lead(net_revenue, 2)", "uses lead(), which reads later periods"),
    in_snippet("KPI116", "derived", "sum(net_revenue)", "uses the aggregate 'sum'"),
    in_snippet("KPI116", "derived", "net_revenue - avg(repeat_customers)", "uses the aggregate 'avg'"),
    in_snippet("KPI116", "derived", "count(distinct net_revenue)", "uses the aggregate 'count'"),
    in_snippet("KPI044", "derived", "net_revenue - avg(net_revenue) over ()", "uses a window function (OVER ...)"),
    in_snippet("KPI117", "derived", "0", "names no KPI"),  # was exit 3: a derived query of no inputs
    in_snippet("KPI117", "derived", "1 + 2 * 3", "names no KPI"),
]
FAULTS: list[Fault] = STATEMENT_FAULTS + SUBQUERY_FAULTS + MODEL_FAULTS + DERIVED_FAULTS
ELSEWHERE: dict[str, str] = {}

# The SQL cases test_trust_sql runs on PostgreSQL and Spark as well (each engine parses in its own dialect).
ENGINE_FAULTS = [STATEMENT_FAULTS[0], STATEMENT_FAULTS[7], SUBQUERY_FAULTS[0], SUBQUERY_FAULTS[1], MODEL_FAULTS[0],
                 MODEL_FAULTS[3], DERIVED_FAULTS[0]]
