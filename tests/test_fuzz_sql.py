"""Property: whatever SQL a project holds, in any snippet field (`measure`, a ratio part, `filter`, `derived`,
`time`, a dimension) or as a Jinja model (models/*.sql), `kpimetrics run` against a DuckDB warehouse ends with
exit 0 or 1: never exit 3, a traceback or "internal error", and every issue it prints carries a code from
codes.py and the file (and line) it is about. The sources and a canary table are unchanged after every run.

The SQL is generated from pieces of the grammar, the hostile ones included (`;`, statements, subqueries,
data-modifying CTEs, lag and lead with odd offsets, windows, aggregates), glued at random, and as plain text.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import duckdb
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus import PROFILES, every_table
from corpus_sql import snippet
from helpers_projects import TODAY, VALID_PROJECT, write_project
from kpimetrics.cli import main
from kpimetrics.codes import CODES

COLUMNS = ["amount", "discount", "status", "ordered_at", "region", "channel", "customer_id", "segment",
           "net_revenue", "repeat_customers", "nope", "main.orders.amount", '"amount"']
ATOMS = st.one_of(st.sampled_from(COLUMNS), st.sampled_from(["1", "0", "-1", "1.5", "1e3", "'a'", "';'", "null",
                                                             "true", "*", "'2026-01-01'", "99999999999999999999"]))
FUNCTIONS = ["sum", "count", "avg", "min", "max", "median", "lag", "lead", "abs", "coalesce", "string_agg",
             "row_number", "exists", "read_text", "cast", "date_trunc", "quantile_cont", "nullif"]


def _call(name: str, args: list[str]) -> str:
    return f"{name}({', '.join(args)})"


EXPRESSIONS = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", ">", "=", "<>", "and", "or", "||", "in", "::"]), inner)
        .map(" ".join),
        st.tuples(st.sampled_from(FUNCTIONS), st.lists(inner, max_size=3)).map(lambda t: _call(*t)),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"(select {e} from main.orders)"),
        inner.map(lambda e: f"{e} in (select customer_id from main.customers)"),
        inner.map(lambda e: f"{e} over ()"),
        inner.map(lambda e: f"count(*) filter (where {e})"),
        inner.map(lambda e: f"case when {e} then 1 else 0 end"),
        inner.map(lambda e: f"{e}; delete from main.orders"),
        inner.map(lambda e: f"{e};"),
        st.tuples(st.sampled_from(["net_revenue", "repeat_customers", "amount"]),
                  st.sampled_from(["", ", 0", ", -2", ", 1.5", ", 'a'", ", 2", ", 1, 0", ", amount"]))
        .map(lambda t: f"lag({t[0]}{t[1]})"),
    ),
    max_leaves=6,
)
PIECES = st.lists(st.sampled_from(["select", "from", "where", "with", "as", "(", ")", ";", ",", "delete", "insert",
                                   "into", "update", "set", "drop", "table", "main.orders", "returning", "*", "union",
                                   "values", "exists", "lag", "lead", "over", "--", "/*", "*/", "'", '"', "$$", "{{",
                                   "}}", "{%", "%}", "amount", "1"]),
                  max_size=12).map(" ".join)
SNIPPETS = st.one_of(EXPRESSIONS, PIECES, st.text(max_size=40))
FIELDS = st.sampled_from(["measure", "numerator", "denominator", "filter", "derived", "time", "dimension"])

MODELS = st.one_of(
    st.tuples(st.sampled_from(["select * from {{ source('shop', 'orders') }}", "select amount, ordered_at from main.orders",
                               "with d as (delete from main.orders returning *) select * from d",
                               "with d as (insert into main.orders select * from main.orders returning *) select * from d",
                               "select * from {{ ref('fuzz') }}", "{% if true %}select 1 as x{% endif %}",
                               "select {{ var('start_date') }} as x", "{{ source('shop', 'orders') }}"]),
              st.sampled_from(["", ";", "; delete from main.orders", ";\nselect 2", "\nunion all select * from main.orders",
                               " where amount > (select 1)", "\n-- ;", " {{", "{% endif %}"]))
    .map("".join),
    PIECES,
    st.text(max_size=80),
)
# An issue line: `path:line:col: error[CODE]: ...` (a whole file: `path: error[CODE]: ...`).
ISSUE = re.compile(r"^(?P<path>[^\s:][^:]*):(?:\d+:\d+:)? (?:error|warning)\[(?P<code>[A-Z0-9]+)\]: ")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def warehouse(folder: Path) -> Path:
    """A DuckDB file with the valid project's sources (a few orders) and a canary table."""
    path = folder / "wh.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE main.orders (order_id INTEGER, customer_id INTEGER, ordered_at TIMESTAMP, region VARCHAR, "
                "channel VARCHAR, amount DOUBLE, discount DOUBLE, status VARCHAR)")
    # within the sources' freshness (warn_after 2 days) of TODAY, so the KPIs' SQL runs rather than failing as stale
    con.execute("INSERT INTO main.orders VALUES (1, 1, TIMESTAMP '2026-01-05 10:00', 'eu', 'web', 10, 1, 'completed'), "
                "(2, 2, TIMESTAMP '2026-02-07 11:00', 'us', 'store', 20, 0, 'returned'), "
                "(3, 1, TIMESTAMP '2026-03-14 09:00', 'eu', 'store', 30, 2, 'completed')")
    con.execute("CREATE TABLE main.customers (customer_id INTEGER, name VARCHAR, region VARCHAR, segment VARCHAR, "
                "signed_up_at TIMESTAMP)")
    con.execute("INSERT INTO main.customers VALUES (1, 'Ann', 'eu', 'vip', TIMESTAMP '2025-01-01 00:00')")
    con.execute("CREATE TABLE main.support_tickets (ticket_id INTEGER, customer_id INTEGER, opened_at TIMESTAMP, "
                "closed_at TIMESTAMP, channel VARCHAR, first_response_seconds DOUBLE, resolution_seconds DOUBLE, "
                "wrap_up_seconds DOUBLE, csat DOUBLE)")
    con.execute("INSERT INTO main.support_tickets VALUES (1, 1, TIMESTAMP '2026-03-14 12:00', "
                "TIMESTAMP '2026-03-14 13:00', 'web', 60, 3600, 30, 5)")
    con.execute("CREATE TABLE main.canary (alive INTEGER)")
    con.execute("INSERT INTO main.canary VALUES (42)")
    con.close()
    return path


_WAREHOUSE: list[Path] = []  # made once per process: hypothesis calls the test body many times


def check(files: dict[str, str]) -> None:
    if not _WAREHOUSE:
        _WAREHOUSE.append(warehouse(Path(tempfile.mkdtemp(prefix="fuzz_sql_"))))
    with tempfile.TemporaryDirectory() as folder:
        root = write_project(Path(folder), {**VALID_PROJECT, "profiles.yml": PROFILES})
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(text.encode("utf-8", "surrogatepass"))
        shutil.copy(_WAREHOUSE[0], root / "wh.duckdb")
        before = every_table(root / "wh.duckdb")
        out = CliRunner().invoke(main, ["run", "--as-of", TODAY.isoformat(), "--project-dir", str(root)])
        text = out.output
        assert out.exit_code in (0, 1), (out.exit_code, text, out.exception)
        assert "Traceback" not in text and "internal error" not in text.lower(), text
        issues = [line for line in text.splitlines() if re.search(r"(?:error|warning)\[", line)]
        for line in issues:
            found = ISSUE.match(line.replace(f"{root}/", ""))
            assert found and found["code"] in CODES, line
        # refused or run, project SQL never changes the sources or the canary (a run writes schema kpi only)
        after = every_table(root / "wh.duckdb")
        assert after.get("main.canary") == [(42,)], text
        assert {k: v for k, v in after.items() if k.startswith("main.")} == \
            {k: v for k, v in before.items() if k.startswith("main.")}, text


@SETTINGS
@given(FIELDS, SNIPPETS)
def test_any_sql_in_any_snippet_field(field, text):
    check(snippet(field, text))


@SETTINGS
@given(MODELS)
def test_any_jinja_model(sql):
    check({"models/fuzz.sql": sql, "kpis/fuzz.yml": "kpis:\n  - name: fuzzed\n    owner: vp_sales\n"
                                                    "    strategy: grow_repeat_purchases\n    indicator: leading\n"
                                                    "    drives: [net_revenue]\n    actions: Call\n"
                                                    "    model: ref('fuzz')\n    time: ordered_at\n"
                                                    "    measure: count(*)\n    target: 1\n"})
