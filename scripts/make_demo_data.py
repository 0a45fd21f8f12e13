#!/usr/bin/env python3
"""Generate the demo data that `kpimetrics init` ships in project_template/seeds/.

A small online shop selling supplies to small businesses, from 2025-01-01 to
2026-10-31 inclusive:

  customers.csv        ~400 customers who sign up over time (growth)
  orders.csv           their orders: seasonality, weekday rhythm, a growing
                       mobile channel, a few orders with no region captured
  support_tickets.csv  tickets raised about orders: first response improves
                       through 2026 (the support strategy working), resolution
                       time drifts up as volume grows, CSAT sags a little

Stdlib only and seeded, so running it twice writes byte-identical files:

    python scripts/make_demo_data.py            # writes project_template/seeds/
    python scripts/make_demo_data.py --out DIR

The expected KPI values the demo produces are written down in
scripts/DEMO_EXPECTED.md; re-check them there if you change this script.
"""

from __future__ import annotations

import argparse
import csv
import math
import random
from datetime import date, datetime, timedelta
from pathlib import Path

SEED = 42
FIRST_DAY = date(2025, 1, 1)
LAST_DAY = date(2026, 10, 31)  # inclusive: no time value after this day
CUTOFF = datetime(2026, 11, 1)  # exclusive end of the data

REGIONS = ["north", "south", "east", "west"]
REGION_WEIGHTS = [0.31, 0.26, 0.25, 0.18]
SEGMENTS = ["micro", "small", "mid_market"]
SEGMENT_WEIGHTS = [0.45, 0.40, 0.15]
SEGMENT_BASKET = {"micro": 70.0, "small": 120.0, "mid_market": 260.0}  # median order value
SEGMENT_RATE = {"micro": 0.75, "small": 1.0, "mid_market": 1.5}  # relative order frequency

# Order volume by calendar month: a summer lull and a strong run into year end.
SEASON = {1: 0.85, 2: 0.90, 3: 1.00, 4: 1.00, 5: 1.05, 6: 1.00,
          7: 0.85, 8: 0.80, 9: 1.05, 10: 1.10, 11: 1.25, 12: 1.35}
WEEKDAY = [1.15, 1.15, 1.15, 1.10, 1.05, 0.70, 0.50]  # Monday .. Sunday
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 10, 11, 11, 10, 9, 8, 8, 7, 5, 3, 2]
# Survey score: base, penalty per log(1 + days to resolve), a 2026 dent, noise.
# Tuned so that CSAT lands just under its 85% target in October 2026 (DEMO_EXPECTED.md).
CSAT_BASE, CSAT_SLOW, CSAT_2026, CSAT_NOISE = 4.60, 0.40, 0.10, 0.65

NAME_FIRST = ["Amber", "Birch", "Blue", "Bright", "Cedar", "Copper", "Coral", "Crest", "Delta",
              "Echo", "Fern", "Golden", "Granite", "Harbor", "Hazel", "Iron", "Juniper", "Lark",
              "Linden", "Maple", "Meadow", "North", "Oak", "Orchid", "Pine", "Quartz", "River",
              "Rowan", "Sage", "Silver", "Stone", "Summit", "Willow", "Zephyr"]
NAME_SECOND = ["Bakery", "Books", "Cafe", "Ceramics", "Cycles", "Design", "Florist", "Goods",
               "Hardware", "Kitchen", "Labs", "Market", "Print Shop", "Studio", "Supply",
               "Tailors", "Tea House", "Toys", "Workshop", "Yoga"]


def elapsed(day: date) -> float:
    """How far into the data a day is: 0.0 on 2025-01-01, 1.0 on 2026-10-31."""
    return (day - FIRST_DAY).days / (LAST_DAY - FIRST_DAY).days


def fmt_ts(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method; lam stays small here.
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def make_customers(rng: random.Random) -> list[dict]:
    """About 90 customers from the 2024 launch, then a rising stream of sign-ups."""
    signups: list[date] = []
    for _ in range(88):  # the launch cohort
        signups.append(date(2024, 3, 1) + timedelta(days=rng.randrange(306)))
    month = date(2025, 1, 1)
    while month <= LAST_DAY:
        nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        t = elapsed(month)
        n = poisson(rng, 11.0 + 6.5 * t)
        for _ in range(n):
            day = month + timedelta(days=rng.randrange((nxt - month).days))
            if day <= LAST_DAY:
                signups.append(day)
        month = nxt
    signups.sort()

    used: set[str] = set()
    customers = []
    for i, signed_up in enumerate(signups, start=1):
        while True:
            name = f"{rng.choice(NAME_FIRST)} {rng.choice(NAME_SECOND)}"
            if name in used:
                name = f"{name} {rng.choice(REGIONS).title()}"
            if name not in used:
                used.add(name)
                break
        segment = rng.choices(SEGMENTS, SEGMENT_WEIGHTS)[0]
        # How often this customer orders (orders a month when active), heavy-tailed.
        rate = SEGMENT_RATE[segment] * rng.lognormvariate(0.0, 0.6) * 1.12
        # Monthly chance of drifting away for good; improves for 2026 sign-ups.
        churn = 0.030 if signed_up < date(2026, 1, 1) else 0.022
        customers.append({
            "customer_id": i,
            "name": name,
            "region": rng.choices(REGIONS, REGION_WEIGHTS)[0],
            "segment": segment,
            "signed_up_at": signed_up,
            "_rate": rate,
            "_churn": churn,
        })
    return customers


def pick_channel(rng: random.Random, day: date) -> str:
    t = elapsed(day)
    mobile = 0.17 + 0.12 * t  # the mobile app launch slowly takes share
    marketplace = 0.22 - 0.04 * t
    return rng.choices(["web", "mobile", "marketplace"], [1 - mobile - marketplace, mobile, marketplace])[0]


def make_orders(rng: random.Random, customers: list[dict]) -> list[dict]:
    orders = []
    churned_at: dict[int, date] = {}
    day = FIRST_DAY
    while day <= LAST_DAY:
        season = SEASON[day.month] * WEEKDAY[day.weekday()]
        day_orders = []
        for c in customers:
            cid = c["customer_id"]
            if c["signed_up_at"] > day or cid in churned_at:
                continue
            if day.day == 1 and rng.random() < c["_churn"]:
                churned_at[cid] = day
                continue
            if rng.random() < c["_rate"] * season / 30.0:
                day_orders.append(c)
        for c in day_orders:
            hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
            ts = datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60))
            amount = SEGMENT_BASKET[c["segment"]] * rng.lognormvariate(0.0, 0.55)
            amount = round(max(amount, 8.0), 2)
            discount = 0.0
            if rng.random() < 0.28:
                discount = round(amount * rng.choice([0.05, 0.10, 0.10, 0.15, 0.20]), 2)
            channel = pick_channel(rng, day)
            # Returns creep up on the marketplace channel; a few orders are cancelled.
            p_return = 0.05 + (0.04 if channel == "marketplace" else 0.0)
            r = rng.random()
            status = "returned" if r < p_return else "cancelled" if r < p_return + 0.035 else "completed"
            region = c["region"] if rng.random() > 0.003 else ""  # region not captured
            orders.append({
                "ordered_at": ts, "customer_id": c["customer_id"], "region": region,
                "channel": channel, "amount": amount, "discount": discount, "status": status,
            })
        day += timedelta(days=1)
    orders.sort(key=lambda o: (o["ordered_at"], o["customer_id"]))
    for i, o in enumerate(orders, start=1):
        o["order_id"] = 100000 + i
    return orders


def make_tickets(rng: random.Random, orders: list[dict]) -> list[dict]:
    tickets = []
    for o in orders:
        p = {"completed": 0.58, "returned": 0.95, "cancelled": 0.65}[o["status"]]
        if rng.random() >= p:
            continue
        opened = o["ordered_at"] + timedelta(seconds=rng.randrange(3600, 9 * 86400))
        if opened >= CUTOFF:
            continue
        day = opened.date()
        t = elapsed(day)
        in_2026 = day >= date(2026, 1, 1)
        # The support strategy (2026) speeds up first responses month by month.
        progress = min(1.0, (day - date(2026, 1, 1)).days / 270) if in_2026 else 0.0
        speed = 1.0 - 0.30 * progress
        channel = rng.choices(["email", "chat", "phone"], [0.46 - 0.08 * t, 0.32 + 0.08 * t, 0.22])[0]
        if channel == "email":
            first = 7200 * rng.lognormvariate(0.0, 0.8) * speed
            resolution = 3600 * 26 * rng.lognormvariate(0.0, 0.7)
        elif channel == "chat":
            first = 75 * rng.lognormvariate(0.0, 0.6) * speed
            resolution = 3600 * 6 * rng.lognormvariate(0.0, 0.9)
        else:
            first = 45 * rng.lognormvariate(0.0, 0.5) * speed
            resolution = 3600 * 3 * rng.lognormvariate(0.0, 1.0)
        # Growing volume without new hires: resolution drifts up through 2026.
        resolution *= 1.0 + 0.28 * max(0.0, t - 0.55) / 0.45
        first = max(5, int(first))
        resolution = max(first + 60, int(resolution))
        wrap_up = max(10, int(rng.gauss(52 if channel == "phone" else 35, 14)))
        closed = opened + timedelta(seconds=resolution)
        still_open = closed >= CUTOFF
        # Satisfaction falls with slow resolution, and a little more in busy 2026.
        score = CSAT_BASE - CSAT_SLOW * math.log1p(resolution / 86400) - (CSAT_2026 if in_2026 else 0.0)
        score += rng.gauss(0, CSAT_NOISE)
        # Unhappy customers spread over 1-3 more than the score's thin tail suggests.
        csat = 5 if score >= 4.5 else 4 if score >= 3.5 else 3 if score >= 3.2 else 2 if score >= 2.95 else 1
        if still_open or rng.random() < 0.30:
            csat = None  # no survey answer
        tickets.append({
            "customer_id": o["customer_id"], "opened_at": opened,
            "closed_at": None if still_open else closed, "channel": channel,
            "first_response_seconds": first,
            "resolution_seconds": None if still_open else resolution,
            "wrap_up_seconds": wrap_up, "csat": csat,
        })
    tickets.sort(key=lambda k: (k["opened_at"], k["customer_id"]))
    for i, k in enumerate(tickets, start=1):
        k["ticket_id"] = 500000 + i
    return tickets


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def opt(value, fmt=str) -> str:
    return "" if value is None else fmt(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_out = Path(__file__).resolve().parent.parent / "project_template" / "seeds"
    parser.add_argument("--out", type=Path, default=default_out)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)

    rng = random.Random(SEED)
    customers = make_customers(rng)
    orders = make_orders(rng, customers)
    tickets = make_tickets(rng, orders)

    write_csv(out / "customers.csv",
              ["customer_id", "name", "region", "segment", "signed_up_at"],
              [[c["customer_id"], c["name"], c["region"], c["segment"], c["signed_up_at"].isoformat()]
               for c in customers])
    write_csv(out / "orders.csv",
              ["order_id", "customer_id", "ordered_at", "region", "channel", "amount", "discount", "status"],
              [[o["order_id"], o["customer_id"], fmt_ts(o["ordered_at"]), o["region"], o["channel"],
                f"{o['amount']:.2f}", f"{o['discount']:.2f}", o["status"]] for o in orders])
    write_csv(out / "support_tickets.csv",
              ["ticket_id", "customer_id", "opened_at", "closed_at", "channel", "first_response_seconds",
               "resolution_seconds", "wrap_up_seconds", "csat"],
              [[k["ticket_id"], k["customer_id"], fmt_ts(k["opened_at"]), opt(k["closed_at"], fmt_ts),
                k["channel"], k["first_response_seconds"], opt(k["resolution_seconds"]),
                k["wrap_up_seconds"], opt(k["csat"])] for k in tickets])
    print(f"wrote {len(customers)} customers, {len(orders)} orders, {len(tickets)} tickets to {out}")


if __name__ == "__main__":
    main()
