"""Forecasts (SPEC §10, kpimetrics/forecast.py), checked against the spec's formulas computed here in plain Python.

One small shop (orders of known amounts, January to mid-July 2026; the run's date is 2026-07-15) run on DuckDB,
PostgreSQL and Spark. The expected rows are worked out below from the monthly amounts alone, not from the
generator: least squares by the textbook sums (x the period's index, the horizon's period at 0), the run rate
as value so far × days to the horizon ÷ days elapsed, the targets as SPEC §2 defines them, the statuses by §2's
rules.

- rev_ols: month (target 100, tolerance 10%), quarter (300) and week (25): the project's `forecast: {periods: 5}`;
  only two quarters are complete, so no quarter row; weeks (Monday to Sunday) have gaps: three of the last five
  complete weeks have orders, x counting weeks in days / 7; day has no target, so no day row.
- rev_rel: a relative target (baseline January to March, +20% by 2026-10-31, linear), its own `forecast:
  {periods: 4}`: the current period and the deadline (October), each with its own target on the glide path.
- bookings_ytd: year to date with a pace target: the run rate, to the end of July and to the deadline.
- past_deadline: lower is better, a deadline (2026-03-31) before the run's date: the current period only,
  judged against the goal with an absolute band (at_risk_above).
- sparse: April's rows filtered out (no_data): the line goes through the other four of the last five complete
  months, April keeping its place on the x axis.
- new_product: rows from May only (its model has rows from January): two complete values, no forecast.
- rev_budget: a target from a warehouse table (finance.budget): the horizon's (July's) row, 120.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

import engines
from helpers_projects import write_project
from helpers_run import kpi, kpis_yml, oracle_project, run_on_engine
from kpimetrics import Project
from kpimetrics.cli import main
from kpimetrics.outputs import ForecastRow, columns

AS_OF = dt.date(2026, 7, 15)
# the shop's amount per month, January to July (July's orders fall before the run's date); two orders a month
MONTHLY = [100.0, 110.0, 95.0, 120.0, 130.0, 125.0, 60.0]

KPIS = kpis_yml(
    kpi("rev_ols", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        grain: [month, quarter, week, day]
        target: {month: 100, quarter: 300, week: 25}
        tolerance: 10%
    """, strategy="s_forecast"),
    kpi("rev_rel", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        target: {baseline: {from: 2026-01-01, to: 2026-03-31}, change: 20%, by: 2026-10-31, path: linear}
        tolerance: 5%
        forecast: {periods: 4}
    """, strategy="s_forecast"),
    kpi("bookings_ytd", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        window: {to_date: year}
        target: {value: 1500, by: 2026-12-31, pace: linear}
    """, strategy="s_forecast"),
    kpi("past_deadline", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        direction: lower_is_better
        target: {baseline: {value: 150, as_of: 2026-01-31}, change: -10%, by: 2026-03-31, path: step}
        at_risk_above: 140
    """, strategy="s_forecast"),
    kpi("sparse", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        filter: "ordered_at < '2026-04-01' or ordered_at >= '2026-05-01'"
        target: 100
    """, strategy="s_forecast"),
    kpi("new_product", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        filter: "ordered_at >= '2026-05-01'"
        target: 100
    """, strategy="s_forecast"),
    kpi("rev_budget", """
        model: source('shop', 'orders')
        time: ordered_at
        measure: sum(amount)
        target: {table: "source('shop', 'budget')", period: period_start, value: amount}
        tolerance: 10%
    """, strategy="s_forecast"),
)
BUDGET = [(dt.date(2026, 6, 1), 110.0), (dt.date(2026, 7, 1), 120.0), (dt.date(2026, 8, 1), 130.0)]

SOURCES = """
sources:
  - name: shop
    schema: {schema}
    tables:
      - name: orders
        columns: [order_id, ordered_at, amount]
      - name: budget
        columns: [period_start, amount]
"""


def project_files(profiles: str, source_schema: str = "main", output_schema: str = "kpi", kpis: str = KPIS) -> dict:
    return oracle_project("forecasts", "s_forecast", SOURCES, kpis, profiles, source_schema, output_schema,
                          config="forecast: {periods: 5}")


def order_rows() -> list[tuple]:
    rows = []
    for m, amount in enumerate(MONTHLY, start=1):
        for day in (3, 10):
            rows.append((len(rows) + 1, dt.datetime(2026, m, day, 10), amount / 2))
    return rows


def load_data(path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute("create table if not exists main.orders (order_id integer, ordered_at timestamp, amount double)")
        con.executemany("insert into main.orders values (?, ?, ?)", order_rows())
        con.execute("create table if not exists main.budget (period_start date, amount double)")
        con.executemany("insert into main.budget values (?, ?)", BUDGET)
    finally:
        con.close()


# --- the spec's formulas, in plain Python ---------------------------------------------------------

def month(m: int) -> dt.date:
    """The first day of month m of 2026 (m > 12 runs into 2027)."""
    return dt.date(2026 + (m - 1) // 12, (m - 1) % 12 + 1, 1)


def least_squares(points: list[tuple[float, float]], at: float) -> float:
    """The ordinary least-squares line through (x, y) points, evaluated at x = at."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return mean_y + slope * (at - mean_x)


def status(value: float, target: float, threshold: float, higher: bool = True) -> str:
    better = (lambda a, b: a >= b) if higher else (lambda a, b: a <= b)
    if better(value, target):
        return "on_track"
    return "at_risk" if better(value, threshold) else "off_track"


def monthly_fit(values: dict[int, float | None], last_complete: int, periods: int, horizon: int) -> float | None:
    """The forecast at month `horizon` through the last `periods` complete months up to `last_complete`."""
    window = [m for m in range(last_complete - periods + 1, last_complete + 1) if m >= 1]
    points = [(float(m), values[m]) for m in window if values.get(m) is not None]
    return least_squares(points, horizon) if len(points) >= 3 else None


def expected_rows() -> list[tuple]:
    """(name, grain, horizon, as_of, horizon_end, forecast, target_at_horizon, forecast_status, method)."""
    rev = dict(enumerate(MONTHLY, start=1))
    rows = []
    # rev_ols: months 2..6 (periods 5), horizon July (month 7), ending August 1
    f = monthly_fit(rev, 6, 5, 7)
    rows.append(("rev_ols", "month", "period", AS_OF, month(8), f, 100.0, status(f, 100.0, 90.0), "least_squares"))
    # rev_rel: the baseline is January to March's mean; the goal +20%; the glide path from April 1 to November 1
    base = sum(MONTHLY[:3]) / 3
    goal = base * 1.2
    t0, t1 = dt.date(2026, 4, 1), dt.date(2026, 11, 1)

    def glide(end: dt.date) -> float:
        return base + (goal - base) * min(max((end - t0).days / (t1 - t0).days, 0.0), 1.0)

    for kind, horizon in (("period", 7), ("deadline", 10)):
        f = monthly_fit(rev, 6, 4, horizon)
        target = glide(month(horizon + 1))
        rows.append(("rev_rel", "month", kind, AS_OF, month(horizon + 1), f, target,
                     status(f, target, target - abs(target) * 0.05), "least_squares"))
    # bookings_ytd: July's value is the year to date (January to the run's date); s = January 1
    so_far = sum(MONTHLY)
    s = dt.date(2026, 1, 1)
    elapsed = (AS_OF - s).days
    for kind, end in (("period", month(8)), ("deadline", month(13))):
        f = so_far * (end - s).days / elapsed
        target = 1500 * (end - s).days / (dt.date(2027, 1, 1) - s).days
        rows.append(("bookings_ytd", "month", kind, AS_OF, end, f, target, status(f, target, target), "run_rate"))
    # past_deadline: the deadline (March) passed; the current period, against the goal 150 - 10%
    f = monthly_fit(rev, 6, 5, 7)
    rows.append(("past_deadline", "month", "period", AS_OF, month(8), f, 135.0, status(f, 135.0, 140.0, higher=False),
                 "least_squares"))
    # sparse: April (month 4) without a value
    f = monthly_fit({**rev, 4: None}, 6, 5, 7)
    rows.append(("sparse", "month", "period", AS_OF, month(8), f, 100.0, status(f, 100.0, 100.0), "least_squares"))
    # rev_ols by week: the weeks from the first order's to the last's, each with its orders' sum or none
    weekly: dict[dt.date, float] = {}
    for _, at, amount in order_rows():
        start = at.date() - dt.timedelta(days=at.weekday())
        weekly[start] = weekly.get(start, 0.0) + amount
    weeks = [min(weekly) + dt.timedelta(weeks=i) for i in range((max(weekly) - min(weekly)).days // 7 + 1)]
    complete = [w for w in weeks if w + dt.timedelta(weeks=1) <= AS_OF][-5:]
    horizon = AS_OF - dt.timedelta(days=AS_OF.weekday())
    points = [((w - horizon).days / 7, weekly[w]) for w in complete if w in weekly]
    assert len(points) == 3  # two of the five weeks have no orders
    f = least_squares(points, 0.0)
    rows.append(("rev_ols", "week", "period", AS_OF, horizon + dt.timedelta(weeks=1), f, 25.0, status(f, 25.0, 22.5),
                 "least_squares"))
    # rev_budget: July's budget row
    f = monthly_fit(rev, 6, 5, 7)
    rows.append(("rev_budget", "month", "period", AS_OF, month(8), f, 120.0, status(f, 120.0, 108.0), "least_squares"))
    # new_product: May and June only: fewer than 3 values, no row
    assert monthly_fit({m: (v if m >= 5 else None) for m, v in rev.items()}, 6, 5, 7) is None
    return rows


def rounded(rows) -> list[tuple]:
    return sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows)


# --- the project run on each engine ---------------------------------------------------------------

@pytest.fixture(scope="module", params=engines.VALUE_ENGINES)
def ran(request, tmp_path_factory) -> Project:
    """The project run once on each engine."""
    engine = engines.make_engine(request.param, request, tmp_path_factory)
    root = tmp_path_factory.mktemp(f"forecast_{engine.name}")
    write_project(root, project_files(engine.profiles_yml(root), engine.source_schema, engine.output_schema))
    load_data(root / "wh.duckdb")
    return run_on_engine(root, engine, ("orders", "budget"), AS_OF)


def forecasts(project: Project) -> list[tuple]:
    with project.outputs() as out:
        rows = out.forecasts()
    # the reader's row: kpi_forecast's columns, in the order expected_rows() writes them
    assert columns(ForecastRow) == ["name", "grain", "horizon", "as_of", "horizon_end", "forecast", "target_at_horizon",
                                    "forecast_status", "method"]
    return [tuple(getattr(r, c) for c in columns(ForecastRow)) for r in rows]


def test_forecasts_match_the_spec_formulas(ran):
    got = forecasts(ran)
    assert rounded(got) == rounded(expected_rows())


def test_the_cases_written_out(ran):
    """What the formulas give here, literally: a check on the Python above."""
    got = {(r[0], r[1], r[2]): r for r in forecasts(ran)}
    # no quarter (two complete quarters), no day (no target), no new_product (two values), no past deadline
    assert {k for k in got if k[0] == "rev_ols"} == {("rev_ols", "month", "period"), ("rev_ols", "week", "period")}
    assert not [k for k in got if k[0] == "new_product"]
    assert ("past_deadline", "month", "deadline") not in got
    # bookings: 740 so far in 195 days; 212 days to August 1, 365 to the deadline
    assert got[("bookings_ytd", "month", "period")][5] == pytest.approx(740 * 212 / 195)
    assert got[("bookings_ytd", "month", "deadline")][5] == pytest.approx(740 * 365 / 195)
    assert got[("bookings_ytd", "month", "deadline")][6] == pytest.approx(1500.0)
    # rev_rel's deadline: October, x = 0 four months after the last of March..June, ends November 1, at the goal
    deadline = got[("rev_rel", "month", "deadline")]
    assert deadline[4] == dt.date(2026, 11, 1) and deadline[6] == pytest.approx(122.0)


# --- shown by `status` ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def duckdb_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("forecast_status")
    write_project(root, project_files(engines.duckdb_engine().profiles_yml(root)))
    load_data(root / "wh.duckdb")
    assert Project.load(root).run(as_of=AS_OF).status == "success"
    return root


def test_status_json_carries_each_headline_forecast(duckdb_project):
    out = CliRunner().invoke(main, ["status", "--project-dir", str(duckdb_project), "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)}
    expected = {(r[0], r[2]): r for r in expected_rows() if r[1] == "month"}
    # the deadline's forecast where the target has one ahead, else the current period's; none for new_product
    for name, horizon in (("rev_ols", "period"), ("rev_rel", "deadline"), ("bookings_ytd", "deadline"),
                          ("past_deadline", "period"), ("sparse", "period")):
        want = expected[(name, horizon)]
        f = rows[name]["forecast"]
        assert (f["horizon"], f["as_of"], f["horizon_end"], f["forecast_status"], f["method"]) == \
            (horizon, AS_OF.isoformat(), want[4].isoformat(), want[7], want[8]), name
        assert f["forecast"] == pytest.approx(want[5]) and f["target_at_horizon"] == pytest.approx(want[6]), name
        assert f["course"] == ("on course" if want[7] == "on_track" else "off course"), name
    assert rows["new_product"]["forecast"] is None
    # the headline itself is the latest complete period, as before
    assert rows["rev_ols"]["period_start"] == "2026-06-01" and rows["rev_ols"]["value"] == 125.0


def test_status_table_shows_on_course_and_off_course(duckdb_project):
    out = CliRunner().invoke(main, ["status", "--project-dir", str(duckdb_project)], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.output.splitlines() if line.strip()}
    assert "forecast" in lines["KPI"]
    # rev_rel is heading for 172.5 by its deadline, on course; bookings_ytd for 1,385 of 1,500, off course
    assert "172.50 by 2026-10-31" in lines["rev_rel"] and "on course" in lines["rev_rel"]
    assert "1,385 by 2026-12-31" in lines["bookings_ytd"] and "off course" in lines["bookings_ytd"]
    assert "off course" in lines["past_deadline"] and "by 2026-07-31" in lines["past_deadline"]
    assert "course" not in lines["new_product"]


# --- drawn on the scorecard -------------------------------------------------------------------------

def test_the_scorecard_draws_a_dotted_projection_to_the_horizon(duckdb_project):
    import re

    out = CliRunner().invoke(main, ["docs", "generate", "--project-dir", str(duckdb_project)])
    assert out.exit_code == 0, out.output
    pages = duckdb_project / "target" / "docs" / "kpi"
    expected = {(r[0], r[2]): r for r in expected_rows() if r[1] == "month"}

    def projection(name: str) -> dict[str, str] | None:
        """The projection on the KPI's month chart."""
        html = (pages / f"{name}.html").read_text(encoding="utf-8")
        # the month chart as a laptop shows it (the page also holds a narrow variant of each chart for phones)
        html = next(c.split("</svg>")[0] for c in html.split('<svg class="chart"')[1:]
                    if 'data-grain="month"' in c.split(">")[0])
        found = re.findall(r'<g class="projection s-(\w+)"([^>]*)>.*?<path class="projection-line" d="M([\d.]+) ([\d.]+) '
                           r'L([\d.]+) ([\d.]+)"/><circle cx="([\d.]+)" cy="([\d.]+)"', html)
        assert len(found) <= 1, name
        if not found:
            return None
        status, attrs, *xy = found[0]
        return {**dict(re.findall(r'data-([\w-]+)="([^"]*)"', attrs)), "status": status, "xy": [float(v) for v in xy]}

    def point(name: str, period: str) -> tuple[float, float]:
        """The centre of a period's marker: a circle's, or a cross's (its first stroke's middle)."""
        html = (pages / f"{name}.html").read_text(encoding="utf-8")
        g = re.search(rf'<g class="point [^"]*" data-period="{period}"[^>]*><title>[^<]*</title>(<[^>]*>)', html).group(1)
        if g.startswith("<circle"):
            return tuple(float(v) for v in re.search(r'cx="([\d.]+)" cy="([\d.]+)"', g).groups())
        x0, y0, x1, y1 = (float(v) for v in re.search(r'd="M([\d.]+) ([\d.]+) L([\d.]+) ([\d.]+)', g).groups())
        return (x0 + x1) / 2, (y0 + y1) / 2

    for name, horizon in (("rev_rel", "deadline"), ("bookings_ytd", "deadline"), ("rev_ols", "period")):
        want = expected[(name, horizon)]
        p = projection(name)
        assert p is not None, name
        assert (p["horizon"], p["horizon-end"], p["status"]) == (horizon, want[4].isoformat(), want[7]), name
        assert float(p["forecast"]) == pytest.approx(want[5]) and float(p["target"]) == pytest.approx(want[6]), name
        # from the last complete value (June's point) to the marker at the horizon, right of every period drawn
        x0, y0, x1, y1, cx, cy = p["xy"]
        assert (x0, y0) == pytest.approx(point(name, "2026-06-01"), abs=0.1) and (x1, y1) == (cx, cy), name
        june, july = point(name, "2026-06-01")[0], point(name, "2026-07-01")[0]
        # the horizon's band: July's own for the current period, the deadline's (October, December) months on
        bands = (want[4].year - 2026) * 12 + want[4].month - 8
        assert bands == {"rev_rel": 3, "bookings_ytd": 5, "rev_ols": 0}[name]
        assert x1 == pytest.approx(july + bands * (july - june), abs=0.1 * (bands + 2)), name  # coordinates to 0.1
    assert projection("new_product") is None
    legend = '<span class="lg-forecast">forecast</span>'
    assert legend in (pages / "rev_rel.html").read_text() and legend not in (pages / "new_product.html").read_text()


# --- the setting, checked -----------------------------------------------------------------------------

@pytest.mark.parametrize("file, old, new, code, needle", [
    ("kpis/kpis.yml", "forecast: {periods: 4}", "forecast: {periods: 2}", "KPI007", "forecast.periods"),
    ("kpis/kpis.yml", "forecast: {periods: 4}", "forecast: {periods: many}", "KPI007", "forecast.periods"),
    ("kpimetrics.yml", "forecast: {periods: 5}", "forecast: {period: 5}", "KPI005", "did you mean 'periods'"),
])
def test_a_bad_forecast_setting_is_an_error_at_its_line(tmp_path, file, old, new, code, needle):
    files = project_files(engines.duckdb_engine().profiles_yml(tmp_path))
    assert old in files[file]
    files[file] = files[file].replace(old, new)
    write_project(tmp_path, files)
    line = next(i for i, text in enumerate((tmp_path / file).read_text().splitlines(), start=1) if new in text)
    out = CliRunner().invoke(main, ["validate", "--project-dir", str(tmp_path)])
    assert out.exit_code == 1, out.output
    errors = [e for e in out.output.splitlines() if f"error[{code}]" in e]
    assert len(errors) == 1 and errors[0].startswith(f"{file}:{line}:") and needle in errors[0], out.output


def test_chunks_of_kpis_give_the_same_rows(tmp_path, monkeypatch):
    """The set queries cut the project's (KPI, grain) pairs into chunks: two pairs a chunk gives the same rows."""
    from kpimetrics import forecast

    monkeypatch.setattr(forecast, "CHUNK", 2)
    write_project(tmp_path, project_files(engines.duckdb_engine().profiles_yml(tmp_path)))
    load_data(tmp_path / "wh.duckdb")
    project = Project.load(tmp_path)
    assert project.run(as_of=AS_OF).status == "success"
    assert rounded(forecasts(project)) == rounded(expected_rows())
