"""Small example projects for tests, written into a temporary folder from a dict of files.

`VALID_PROJECT` is a realistic project that uses every KPI form (measure, ratio,
derived, standard) and every target form (number, value, schedule, relative,
pace, per grain); tests that want one mistake copy it and change one file.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import datetime as dt

# The date the example project is validated on: inside its strategies' dates and before every review_by.
TODAY = dt.date(2026, 3, 15)


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write `files` (relative path -> text, dedented) under `root`; return `root`."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def project_files(**changes: str | None) -> dict[str, str]:
    """VALID_PROJECT with some files replaced (a value of None removes the file)."""
    files = dict(VALID_PROJECT)
    for rel, text in changes.items():
        rel = rel.replace("__", "/").replace("_yml", ".yml").replace("_sql", ".sql")
        if text is None:
            files.pop(rel, None)
        else:
            files[rel] = text
    return files


KPIMETRICS_YML = """
    name: acme_kpis
    profile: acme
    dialect: duckdb
    output_schema: kpi
    vars: {start_date: "2025-01-01"}
    defaults: {grain: month, lookback: 1}
    calendar: {week_start: monday, fiscal_year_start_month: 1, timezone: UTC}
"""

STRATEGY_YML = """
    mission: Make online shopping effortless for small businesses
    priorities:
      - name: brand_loyalty
        description: Customers come back and recommend us
        owner: cmo@acme.example
        strategies:
          - name: improve_customer_experience
            description: Faster, friendlier support
            owner: head-of-support@acme.example
            starts: 2026-01-01
            ends: 2026-12-31
      - name: profitable_growth
        owner: cfo@acme.example
        strategies:
          - name: grow_repeat_purchases
            owner: vp-sales@acme.example
            starts: 2026-01-01
            ends: 2027-06-30
"""

OWNERS_YML = """
    owners:
      - {name: cmo, full_name: Chief Marketing Officer, email: cmo@acme.example, team: marketing}
      - {name: cfo, email: cfo@acme.example, team: finance}
      - {name: head_of_support, email: head-of-support@acme.example, team: support}
      - {name: vp_sales, email: vp-sales@acme.example, team: sales}
      - {name: support_ops, email: support-ops@acme.example, team: support}
"""

SOURCES_YML = """
    sources:
      - name: shop
        schema: main
        freshness: {warn_after: 2 days, error_after: 7 days}
        tables:
          - name: orders
            columns: [order_id, customer_id, ordered_at, region, channel, amount, discount, status]
          - name: support_tickets
            columns: [ticket_id, customer_id, opened_at, closed_at, channel, first_response_seconds,
                      resolution_seconds, wrap_up_seconds, csat]
          - name: customers
            columns: [customer_id, name, region, segment, signed_up_at]
"""

ORDERS_ENRICHED_SQL = """
    select o.*, c.segment
    from {{ source('shop', 'orders') }} as o
    left join {{ source('shop', 'customers') }} as c using (customer_id)
    where o.ordered_at >= '{{ var("start_date") }}'
"""

SALES_YML = """
    kpis:
      - name: net_revenue
        label: Net revenue
        description: Order amount less discounts, returns excluded
        owner: vp-sales@acme.example
        strategy: grow_repeat_purchases
        indicator: lagging
        category: financial
        unit: currency
        model: ref('orders_enriched')
        time: ordered_at
        grain: [month, quarter]
        measure: sum(amount - discount)
        filter: status <> 'returned'
        dimensions: [region, channel, segment]
        target:
          month:
            schedule:
              - {from: 2026-01-01, value: 100000}
              - {from: 2026-07-01, value: 120000}
          quarter: 330000
        tolerance: 5%
        actions: Review the promotion calendar with marketing; escalate if two months off track
        tags: [board]
        review_by: 2027-01-31
        check_ins:
          - {date: 2026-03-02, author: vp-sales@acme.example, note: February dip is the delayed campaign}

      - name: repeat_customers
        owner: vp_sales
        strategy: grow_repeat_purchases
        indicator: leading
        drives: [net_revenue, revenue_growth]
        unit: count
        model: source('shop', 'orders')
        time: ordered_at
        grain: week
        measure: count(distinct customer_id)
        target: {value: 120}
        tolerance: {week: 0.1}
        actions: Call the top lapsed customers

      - name: revenue_growth
        owner: vp-sales@acme.example
        strategy: grow_repeat_purchases
        indicator: lagging
        derived: net_revenue / lag(net_revenue) - 1
        unit: percent
        target: 0.02
        actions: Look at the revenue KPIs it is derived from

      - name: revenue_trailing_3m
        owner: vp-sales@acme.example
        strategy: grow_repeat_purchases
        indicator: leading
        drives: [net_revenue]
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        window: {periods: 3}
        target: {month: 300000}
        actions: Check the pipeline

      - name: bookings_ytd
        owner: vp-sales@acme.example
        strategy: grow_repeat_purchases
        indicator: leading
        drives: [net_revenue]
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        window: {to_date: year}
        target: {value: 1400000, by: 2026-12-31, pace: linear}
        actions: Check the pipeline
"""

SUPPORT_YML = """
    kpis:
      - name: csat
        label: Customer satisfaction
        owner: head-of-support@acme.example
        strategy: improve_customer_experience
        indicator: leading
        drives: [net_revenue]
        unit: percent
        model: source('shop', 'support_tickets')
        time: opened_at
        grain: [week, month]
        ratio:
          numerator: count(*) filter (where csat >= 4)
          denominator: count(csat)
        target: 0.85
        at_risk_below: 0.80
        actions: Review the lowest-rated tickets every Monday

      - name: first_response_p90
        owner: head-of-support@acme.example
        strategy: improve_customer_experience
        indicator: leading
        direction: lower_is_better
        model: source('shop', 'support_tickets')
        time: opened_at
        measure: quantile_cont(first_response_seconds, 0.9)
        target:
          baseline: {from: 2025-10-01, to: 2025-12-31}
          change: -20%
          by: 2026-12-31
          path: linear
        at_risk_above: 120
        actions: Add a second shift on the chat queue

      - name: resolution_hours
        owner: head-of-support@acme.example
        strategy: improve_customer_experience
        indicator: leading
        direction: lower_is_better
        model: source('shop', 'support_tickets')
        time: opened_at
        measure: avg(resolution_seconds) / 3600.0
        target:
          baseline: {value: 10, as_of: 2025-12-31}
          change: -2
          by: 2026-06-30
          path: step
        actions: Escalate tickets open longer than a day

    standards:
      - name: call_wrap_up_seconds
        owner: support-ops@acme.example
        model: source('shop', 'support_tickets')
        time: opened_at
        measure: avg(wrap_up_seconds)
        direction: lower_is_better
        target: 60
"""

VALID_PROJECT: dict[str, str] = {
    "kpimetrics.yml": KPIMETRICS_YML,
    "strategy.yml": STRATEGY_YML,
    "owners.yml": OWNERS_YML,
    "sources.yml": SOURCES_YML,
    "models/orders_enriched.sql": ORDERS_ENRICHED_SQL,
    "kpis/sales.yml": SALES_YML,
    "kpis/support.yml": SUPPORT_YML,
}


# --- one broken KPI at a time ----------------------------------------------------

# A KPI with every field a KPI should have; cases override or drop (None) single fields.
GOOD_KPI: dict[str, str] = {
    "name": "broken",
    "owner": "vp-sales@acme.example",
    "strategy": "grow_repeat_purchases",
    "indicator": "leading",
    "drives": "[net_revenue]",
    "actions": "Call the team",
    "model": "source('shop', 'orders')",
    "time": "ordered_at",
    "measure": "sum(amount)",
    "target": "10",
}


def kpi_yaml(section: str = "kpis", **fields: str | None) -> str:
    """A YAML file with one entry: GOOD_KPI with `fields` replaced (None drops a key).

    A value with a newline is written as a nested block under its key.
    """
    entry = {**GOOD_KPI, **fields}
    lines = [f"{section}:"]
    for key, value in entry.items():
        if value is None:
            continue
        prefix = "  - " if len(lines) == 1 else "    "
        if "\n" in value:
            lines.append(f"{prefix}{key}:")
            lines += ["      " + line for line in textwrap.dedent(value).strip("\n").splitlines()]
        else:
            lines.append(f"{prefix}{key}: {value}")
    return "\n".join(lines) + "\n"
