"""Generated projects of N KPIs, for timing `kpimetrics compile` on large projects.

    python bench/gen_kpis.py --kpis 10000 --out bench/data/kpis_10000

The KPIs cycle through every form over the benchmark's three tables (plain and
filtered sums, count distinct, ratios, quantiles, trailing and to-date windows,
dimensions, several grains, derived KPIs with lag), with a distinct filter each so
that no two KPIs are the same. Strategies hold at most 7 KPIs each, as the
warnings ask, so the project validates without warnings.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PER_STRATEGY = 7

# (model, time, body) templates; {i} is the KPI's number, which also varies its filter
FORMS = [
    ("orders", "ordered_at", "measure: sum(amount - discount)\n    filter: status = 'completed' and amount > {i} % 50\n    dimensions: [region, channel]\n    grain: [day, month]"),
    ("orders", "ordered_at", "measure: count(*)\n    filter: amount > {i} % 97"),
    ("orders", "ordered_at", "measure: count(distinct customer_id)\n    filter: discount >= {i} % 7\n    dimensions: [region]"),
    ("orders", "ordered_at", "ratio: {{numerator: \"count(*) filter (where status = 'returned')\", denominator: count(*)}}\n    filter: amount < 100 + {i} % 400"),
    ("orders", "ordered_at", "measure: quantile_cont(amount, 0.9)\n    filter: customer_id % 10 <> {i} % 10"),
    ("orders", "ordered_at", "measure: sum(amount)\n    filter: amount > {i} % 31\n    window: {{periods: 3}}"),
    ("orders", "ordered_at", "measure: count(distinct customer_id)\n    filter: amount > {i} % 13\n    window: {{to_date: year}}"),
    ("support_tickets", "opened_at", "ratio: {{numerator: count(*) filter (where csat >= 4), denominator: count(csat)}}\n    filter: first_response_seconds > {i} % 60\n    grain: [week, month]\n    dimensions: [channel]"),
]


def kpi_yaml(i: int, strategy: str) -> str:
    model, time, body = FORMS[i % len(FORMS)]
    head = (f"  - name: kpi_{i:05d}\n    owner: owner{i % 13}@shop.example\n    strategy: {strategy}\n"
            f"    indicator: leading\n    actions: Review it with the team\n")
    if i % 10 == 9:  # a derived KPI over the two before it
        a, b = f"kpi_{i - 1:05d}", f"kpi_{i - 8:05d}"
        return head + f"    derived: {a} / lag({a}) - {b} / nullif(lag({b}, 2), 0)\n    target: 0.1\n"
    return (head + f"    model: source('shop', '{model}')\n    time: {time}\n    "
            + body.format(i=i) + "\n    target: 100\n")


def write(out: Path, n: int) -> Path:
    if out.exists():
        shutil.rmtree(out)
    (out / "kpis").mkdir(parents=True)
    for name in ("kpimetrics.yml", "profiles.yml", "sources.yml"):
        shutil.copy(BENCH / "project" / name, out / name)
    strategies = [f"s{j:04d}" for j in range((n + PER_STRATEGY - 1) // PER_STRATEGY)]
    (out / "strategy.yml").write_text(
        "mission: Make online shopping effortless\npriorities:\n  - name: growth\n    owner: ceo@shop.example\n"
        "    strategies:\n" + "".join(f"      - {{name: {s}, owner: ceo@shop.example}}\n" for s in strategies))
    per_file = 500
    for start in range(0, n, per_file):
        entries = [kpi_yaml(i, strategies[i // PER_STRATEGY]) for i in range(start, min(n, start + per_file))]
        (out / "kpis" / f"kpis_{start // per_file:03d}.yml").write_text("kpis:\n" + "".join(entries))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kpis", type=int, required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    write(Path(args.out), args.kpis)
    print(f"wrote {args.kpis} KPIs to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
