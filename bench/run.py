"""The kpimetrics benchmark: one script, one run, every number measured side by side.

    .venv/bin/python bench/run.py                     # 10^7 orders, compile 100/1,000/10,000 KPIs, heap 10^6 vs 10^7
    .venv/bin/python bench/run.py --rows 1000000 --compile-sizes 100,1000 --heap-rows ""   # quicker
    .venv/bin/python bench/run.py --huge              # also 10^8 rows under a 4 GB DuckDB memory_limit
    .venv/bin/python bench/run.py --metricflow        # also MetricFlow on the same data (builds its own venv)
    .venv/bin/python bench/run.py --rows 10000 --check-only   # correctness only (CI: tests/test_bench_smoke.py)
    .venv/bin/python bench/run.py --handwritten bench/handwritten_masks.sql   # against a script that counts
                                                      # distinct values from bit masks, as kpimetrics does on DuckDB
    .venv/bin/python bench/run.py --engine postgres   # 3x10^6 orders on a throwaway PostgreSQL (bench/postgres.py)
    .venv/bin/python bench/run.py --engine spark      # 10^6 orders on local[2] Spark (bench/spark.py)
    /path/to/other-venv/bin/python bench/run.py --compile-only --data-dir /tmp/d   # compile only, in another venv

What it does, in order:
1. generates the data (bench/generate.py) into bench/data/;
2. one untimed warm-up run of each, then alternating, `--repeat` times: `kpimetrics run --full-refresh` and
   bench/handwritten.sql, each as a whole process (the goal's ratio is the median of each round's ratio); then
   checks that kpimetrics' kpi_values equal the hand-written bench.hand_values;
3. `--repeat` times: appends one day, times an incremental `kpimetrics run`; then runs the hand-written
   SQL on the grown data and checks the values again (so incremental == full refresh == by hand);
4. times `kpimetrics compile` of generated projects (bench/gen_kpis.py) as whole processes, cold;
5. measures the Python heap (tracemalloc peak) of a full run at each of `--heap-rows`;
6. prints the ratios, writes bench/data/results.json, and exits 1 when a goal is missed or a value differs.

With `--engine postgres` (default 3x10^6 orders): starts a PostgreSQL server as the tests do (tests/pg_server.py,
127.0.0.1), COPYs the generated data in, then alternates `kpimetrics run --full-refresh` and
bench/handwritten_postgres.sql, each a whole process, `--repeat` times; checks the values equal; reports the
medians and the ratios whole-process, inside the engine (run_results.json's warehouse time against the
script's own statements) and in the server's CPU seconds (bench/postgres.backends_cpu); then an incremental
round (the additive KPIs in full, one more day, the same incrementally; one more day, every KPI incrementally;
the hand-written script on the grown data, the values checked again); writes bench/data/results_postgres.json;
exits 1 on a missed goal or a differing value.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DATA = BENCH / "data"
PROJECT = BENCH / "project"
PY = sys.executable
AS_OF = "2026-01-15"  # after all the data (and the appended days): every run sees the same "today"

GOALS = {
    "full_vs_hand": 1.2,       # kpimetrics run --full-refresh / hand-written SQL
    "incremental_vs_full": 0.05,
    "compile_1000_s": 1.0,
    "compile_10000_s": 5.0,
    "heap_growth": 1.25,       # tracemalloc peak at the largest size / at the smallest (100x the rows; the same run varies by about 1 MB in 7)
}

# kpimetrics' values against the hand-written ones: every row on both sides, values equal to 1e-9
COMPARE_SQL = """
WITH k AS (SELECT name, grain, period_start, dimension, coalesce(dimension_value, '') AS dv, value FROM kpi.kpi_values),
     h AS (SELECT name, grain, period_start, dimension, coalesce(dimension_value, '') AS dv, value FROM bench.hand_values)
SELECT coalesce(k.name, h.name) AS name, coalesce(k.grain, h.grain) AS grain, count(*) AS n_rows,
       count(*) FILTER (WHERE k.name IS NULL) AS only_by_hand,
       count(*) FILTER (WHERE h.name IS NULL) AS only_kpimetrics,
       count(*) FILTER (WHERE k.name IS NOT NULL AND h.name IS NOT NULL AND NOT (
           k.value IS NOT DISTINCT FROM h.value
           OR abs(k.value - h.value) <= 1e-9 * greatest(abs(k.value), abs(h.value)))) AS differ
FROM k FULL JOIN h USING (name, grain, period_start, dimension, dv)
GROUP BY 1, 2 ORDER BY 1, 2
"""  # the same on DuckDB and PostgreSQL (bench/postgres.py)


@dataclass
class Timing:
    seconds: float
    max_rss_mb: float
    output: str
    cpu_seconds: float = 0.0  # user + system, of the process and the children it waited for (compile's forked copy)


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float | None = None) -> Timing:
    """Run `cmd` as a whole process; its wall time and its own peak RSS (from wait4)."""
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    killed: list[bool] = []
    timer = threading.Timer(timeout, lambda: (killed.append(True), proc.kill())) if timeout else None
    if timer:
        timer.start()
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - began
    if timer:
        timer.cancel()
        if killed:
            raise subprocess.TimeoutExpired(cmd, timeout)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    return Timing(seconds, usage.ru_maxrss / 1024, out, usage.ru_utime + usage.ru_stime)


def kpimetrics(*args: str) -> list[str]:
    return [PY, "-m", "kpimetrics", *args]


def bench_env(db: Path, memory_limit: str | None = None, threads: int | None = None) -> dict[str, str]:
    env = {"KPIBENCH_DB": str(db), "KPIMETRICS_PROFILES_DIR": str(PROJECT)}
    if memory_limit:
        env["KPIBENCH_MEMORY_LIMIT"] = memory_limit
    if threads:
        env["KPIBENCH_THREADS"] = str(threads)
    return env


def generate(db: Path, rows: int, memory_limit: str | None = None) -> None:
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    cmd = [PY, str(BENCH / "generate.py"), "--db", str(db), "--orders", str(rows)]
    if memory_limit:
        cmd += ["--memory-limit", memory_limit]
    print(timed(cmd).output.strip(), flush=True)


def append_day(db: Path) -> None:
    timed([PY, str(BENCH / "generate.py"), "--db", str(db), "--append-days", "1"])


HAND_RUNNER = (
    "import duckdb, sys\n"
    "config = {'threads': int(sys.argv[3])} if sys.argv[3] != '0' else {}\n"
    "con = duckdb.connect(sys.argv[1], config=config)\n"
    "con.execute(open(sys.argv[2]).read())\n"
    "con.close()\n"
)


HAND_SQL = BENCH / "handwritten.sql"  # the baseline; --handwritten names another script of the same values


def run_hand(db: Path, threads: int | None) -> Timing:
    return timed([PY, "-c", HAND_RUNNER, str(db), str(HAND_SQL), str(threads or 0)])


def run_kpimetrics(db: Path, *flags: str, memory_limit: str | None = None, threads: int | None = None) -> Timing:
    return timed(kpimetrics("run", "-q", "--project-dir", str(PROJECT), "--as-of", AS_OF, *flags),
                 env=bench_env(db, memory_limit, threads))


def compared(db: Path, sql: str = COMPARE_SQL) -> list[tuple]:
    """Every (name, grain, n_rows, only_by_hand, only_kpimetrics, differ) of the comparison (`sql`: bench/run.py's,
    or bench/semantic.py's for its own output schema)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _unequal(rows: list[tuple]) -> list[tuple]:
    if not rows:
        return [("(no rows)", "", 0, 0, 0, 1)]
    return [r for r in rows if r[3] or r[4] or r[5]]


def compare(db: Path, sql: str = COMPARE_SQL) -> list[tuple]:
    """Rows (name, grain, n_rows, only_by_hand, only_kpimetrics, differ) that are not all equal."""
    return _unequal(compared(db, sql))


def check(db: Path, label: str, sql: str = COMPARE_SQL) -> bool:
    rows = compared(db, sql)
    bad = _unequal(rows)
    if bad:
        print(f"VALUES DIFFER ({label}): name, grain, rows, only by hand, only kpimetrics, differing", flush=True)
        for r in bad:
            print("   ", r)
        return False
    print(f"values equal the hand-written SQL ({label}): {len(rows)} KPI-grain pairs", flush=True)
    return True


def run_results() -> dict:
    return json.loads((PROJECT / "target" / "run_results.json").read_text())


def incremental_modes() -> set[str]:
    return {r["mode"] for r in run_results()["results"]}


def warehouse_seconds(project: Path = PROJECT) -> float:
    """Seconds the last kpimetrics run spent inside the engine's statements (run_results.json's timing)."""
    return float(json.loads((project / "target" / "run_results.json").read_text())["timing"]["warehouse"])


# --- the stages ------------------------------------------------------------------------

# The goal's subject: "incremental run <= 5 % of a full run for additive KPIs and trailing windows". These are
# the benchmark project's additive KPIs, ratios of additive measures and trailing windows (and the derived KPIs
# over them); the rest (count distinct, quantiles, the year-to-date count distinct) are timed with everything.
ADDITIVE = ("net_revenue orders avg_order_value return_rate revenue_trailing_3m revenue_growth segment_revenue "
            "csat tickets tickets_per_order")


def runs(db: Path, n: int, threads: int | None, *flags: str, memory_limit: str | None = None, append: bool = False,
         label: str = "") -> tuple[list[Timing], list[float]]:
    """n timed `kpimetrics run`s (appending a day before each when `append`), and the seconds each spent in DuckDB."""
    timings, warehouse = [], []
    for i in range(n):
        if append:
            append_day(db)
        timings.append(run_kpimetrics(db, *flags, memory_limit=memory_limit, threads=threads))
        warehouse.append(warehouse_seconds())
        if label:
            print(f"  {label} {i + 1}: {timings[-1].seconds:.2f} s ({warehouse[-1]:.2f} s of it in DuckDB's statements)",
                  flush=True)
    return timings, warehouse


def ratios(full: list[Timing], full_sql: list[float], incremental: list[Timing], incremental_sql: list[float]) -> dict:
    med = lambda ts: statistics.median(t.seconds for t in ts)  # noqa: E731
    return {
        "full_refresh_s": med(full), "incremental_s": med(incremental),
        "incremental_all_s": [round(t.seconds, 3) for t in incremental],
        "incremental_vs_full": med(incremental) / med(full),
        # the same ratio without the fixed cost of a process (interpreter, imports, connecting): only the time
        # inside the warehouse's statements, as run_results.json records it
        "full_refresh_warehouse_s": statistics.median(full_sql), "incremental_warehouse_s": statistics.median(incremental_sql),
        "incremental_vs_full_warehouse": statistics.median(incremental_sql) / statistics.median(full_sql),
    }


def bench_runs(db: Path, repeat: int, threads: int | None, report: dict) -> bool:
    full, hand, full_sql = [], [], []
    # one untimed run of each side first, as a user's earlier run would have been: kpimetrics' target/ is then warm in
    # every timed round (a cold one renders run.sql again, about 0.2 s, whenever kpimetrics' code changed since the
    # last run), and both sides start with the database file and the interpreter's files in the page cache
    run_kpimetrics(db, "--full-refresh", threads=threads)
    run_hand(db, threads)
    for i in range(repeat):  # alternating, so both see the same machine
        full.append(run_kpimetrics(db, "--full-refresh", threads=threads))
        full_sql.append(warehouse_seconds())
        hand.append(run_hand(db, threads))
        print(f"  round {i + 1}: kpimetrics --full-refresh {full[-1].seconds:.2f} s, hand-written {hand[-1].seconds:.2f} s",
              flush=True)
    ok = check(db, "full refresh")
    incremental, incremental_sql = runs(db, repeat, threads, append=True, label="incremental, every KPI, one more day")
    modes = incremental_modes()
    if modes != {"incremental"}:
        print(f"the incremental run recomputed some KPIs in full: modes {sorted(modes)}")
        ok = False
    # the goal's subject: additive KPIs and trailing windows, full and incremental
    full_add, full_add_sql = runs(db, repeat, threads, "--full-refresh", "-s", ADDITIVE, label="full refresh, additive")
    inc_add, inc_add_sql = runs(db, repeat, threads, "-s", ADDITIVE, append=True, label="incremental, additive, one more day")
    runs(db, 1, threads)  # every KPI up to date again, for the check
    run_hand(db, threads)
    ok = check(db, f"incremental, after {2 * repeat} appended day(s)") and ok
    report["runs"] = ratios(full, full_sql, incremental, incremental_sql) | {
        "hand_written_s": statistics.median(t.seconds for t in hand),
        "full_refresh_all_s": [round(t.seconds, 3) for t in full], "hand_written_all_s": [round(t.seconds, 3) for t in hand],
        "full_refresh_peak_rss_mb": max(t.max_rss_mb for t in full),
        "values_equal": ok,
    }
    # each round's kpimetrics run against the hand-written script right after it, then the median of those ratios:
    # the pairs see the same machine, which on a shared 2-core VM drifts by a fifth within minutes (the ratio of
    # the two medians, which may take them from different rounds, is reported beside it)
    report["runs"]["full_vs_hand_each_round"] = [round(f.seconds / h.seconds, 3) for f, h in zip(full, hand)]
    report["runs"]["full_vs_hand"] = statistics.median(f.seconds / h.seconds for f, h in zip(full, hand))
    report["runs"]["full_vs_hand_of_medians"] = report["runs"]["full_refresh_s"] / report["runs"]["hand_written_s"]
    report["runs"]["additive"] = ratios(full_add, full_add_sql, inc_add, inc_add_sql)
    return ok


def bench_compile(sizes: list[int], report: dict, timeout: float, repeat: int = 1) -> None:
    """Cold compile `repeat` times (the median is reported, with each run's CPU seconds: on a shared machine
    the wall time of one run varies by a third), then warm, then with one KPI changed."""
    report["compile"] = {}
    for n in sizes:
        folder = DATA / f"kpis_{n}"
        timed([PY, str(BENCH / "gen_kpis.py"), "--kpis", str(n), "--out", str(folder)])
        compile_cmd = kpimetrics("compile", "-q", "--project-dir", str(folder))
        try:
            colds = []
            for _ in range(repeat):
                shutil.rmtree(folder / "target", ignore_errors=True)
                colds.append(timed(compile_cmd, env=bench_env(DATA / "unused.duckdb"), timeout=timeout))
            t = sorted(colds, key=lambda c: c.seconds)[len(colds) // 2]
            entry = {"seconds": t.seconds, "peak_rss_mb": t.max_rss_mb, "cpu_seconds": t.cpu_seconds,
                     "cold_runs_s": [round(c.seconds, 2) for c in colds]}
            # warm: target/ is kept, so only what changed is rendered again (nothing, then one KPI's filter)
            entry["warm_seconds"] = timed(compile_cmd, env=bench_env(DATA / "unused.duckdb"), timeout=timeout).seconds
            first = sorted((folder / "kpis").glob("*.yml"))[0]
            first.write_text(first.read_text().replace("amount > 1 % 97", "amount > 2 % 97", 1))
            entry["one_changed_seconds"] = timed(compile_cmd, env=bench_env(DATA / "unused.duckdb"), timeout=timeout).seconds
        except subprocess.TimeoutExpired:
            entry = {"seconds": None, "timeout_s": timeout}
        report["compile"][str(n)] = entry
        shown = (f"{entry['seconds']:.2f} s cold ({entry['cpu_seconds']:.2f} s CPU), {entry['warm_seconds']:.2f} s warm, "
                 f"{entry['one_changed_seconds']:.2f} s with one KPI changed"
                 if entry["seconds"] is not None else f"more than {timeout:.0f} s (stopped)")
        print(f"  compile {n:>6,} KPIs: {shown}", flush=True)


HEAP_PROBE = (
    "import datetime as dt, sys, tracemalloc\n"
    "from kpimetrics import Project\n"
    "tracemalloc.start()\n"
    "result = Project.load(sys.argv[1]).run(full_refresh=True, as_of=dt.date.fromisoformat(sys.argv[2]))\n"
    "assert result.ok, result.message\n"
    "print(tracemalloc.get_traced_memory()[1])\n"
)


def heap_probe(db: Path, n: int, memory_limit: str | None, threads: int | None) -> dict:
    t = timed([PY, "-c", HEAP_PROBE, str(PROJECT), AS_OF], env=bench_env(db, memory_limit, threads))
    peak = int(t.output.strip().splitlines()[-1])
    print(f"  {n:>11,} rows: Python heap peak {peak / 2**20:.1f} MB, process peak RSS {t.max_rss_mb:.0f} MB, "
          f"{t.seconds:.1f} s", flush=True)
    return {"tracemalloc_peak_mb": peak / 2**20, "peak_rss_mb": t.max_rss_mb, "seconds": t.seconds, "memory_limit": memory_limit}


def drop_db(db: Path) -> None:
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)


def bench_heap(sizes: list[int], report: dict, memory_limit: str | None, threads: int | None) -> None:
    report["heap"] = {}
    for n in sizes:
        db = DATA / f"heap_{n}.duckdb"
        generate(db, n, memory_limit)
        report["heap"][str(n)] = heap_probe(db, n, memory_limit, threads)
        drop_db(db)


def bench_huge(report: dict, memory_limit: str, threads: int | None, n: int = 100_000_000, repeat: int = 1) -> None:
    """n orders under a DuckDB memory_limit: the Python heap of a full run, then full refresh and incremental runs
    (one appended day), of every KPI once and of the additive ones in `repeat` alternating rounds (the goal's
    subject: medians, as at 10^7), as whole processes."""
    db = DATA / f"huge_{n}.duckdb"
    generate(db, n, memory_limit)
    entry = heap_probe(db, n, memory_limit, threads)
    full, full_sql = runs(db, 1, threads, "--full-refresh", memory_limit=memory_limit, label="full refresh, every KPI")
    inc, inc_sql = runs(db, 1, threads, memory_limit=memory_limit, append=True, label="incremental, every KPI")
    entry["incremental_modes"] = sorted(incremental_modes())
    full_add, full_add_sql, inc_add, inc_add_sql = [], [], [], []
    for _ in range(repeat):
        t, w = runs(db, 1, threads, "--full-refresh", "-s", ADDITIVE, memory_limit=memory_limit, label="full refresh, additive")
        full_add += t
        full_add_sql += w
        t, w = runs(db, 1, threads, "-s", ADDITIVE, memory_limit=memory_limit, append=True, label="incremental, additive")
        inc_add += t
        inc_add_sql += w
    entry |= ratios(full, full_sql, inc, inc_sql) | {"full_refresh_peak_rss_mb": full[0].max_rss_mb,
                                                   "additive": ratios(full_add, full_add_sql, inc_add, inc_add_sql)}
    report["huge"] = {str(n): entry}
    drop_db(db)


def goals(report: dict) -> list[str]:
    """The goals missed, as sentences."""
    missed = []
    runs = report.get("runs")
    if runs:
        if not runs["values_equal"]:
            missed.append("kpimetrics' values differ from the hand-written SQL")
        if runs["full_vs_hand"] > GOALS["full_vs_hand"]:
            missed.append(f"full run is {runs['full_vs_hand']:.2f}x the hand-written SQL (goal <= {GOALS['full_vs_hand']})")
        # The goal is about additive KPIs and trailing windows: whether their scans cost what the new data costs.
        # It is checked on the time inside the warehouse's statements, at the largest size measured: a process's
        # fixed cost (interpreter, imports, connecting, about 0.45 s) and the few statements of every run
        # (publishing, status: about 0.1 s) are not scans, and weigh less the larger the data. The whole-process
        # ratios are printed beside it (see bench/RESULTS.md).
        n, sized = max(((report.get("rows", 0), runs), *((int(k), v) for k, v in report.get("huge", {}).items())),
                       key=lambda x: x[0])
        additive = sized["additive"]["incremental_vs_full_warehouse"]
        if additive > GOALS["incremental_vs_full"]:
            missed.append(f"incremental run of the additive KPIs spends {additive:.1%} of a full run's time in the "
                          f"warehouse at {n:,} rows (goal <= {GOALS['incremental_vs_full']:.0%})")
    for n, key in ((1000, "compile_1000_s"), (10000, "compile_10000_s")):
        entry = report.get("compile", {}).get(str(n))
        if entry and (entry["seconds"] is None or entry["seconds"] > GOALS[key]):
            shown = f"{entry['seconds']:.2f} s" if entry["seconds"] is not None else "timed out"
            missed.append(f"compile of {n:,} KPIs took {shown} (goal <= {GOALS[key]} s)")
    heap = report.get("heap", {})
    if len(heap) >= 2:
        sizes = sorted(heap, key=int)
        growth = heap[sizes[-1]]["tracemalloc_peak_mb"] / heap[sizes[0]]["tracemalloc_peak_mb"]
        report["heap_growth"] = growth
        if growth > GOALS["heap_growth"]:
            missed.append(f"Python heap grew {growth:.2f}x from {int(sizes[0]):,} to {int(sizes[-1]):,} rows")
    huge = report.get("huge", {})
    if heap and huge:
        small, (n, entry) = min(heap, key=int), next(iter(huge.items()))
        growth = entry["tracemalloc_peak_mb"] / heap[small]["tracemalloc_peak_mb"]
        report["heap_growth_huge"] = growth
        if growth > GOALS["heap_growth"]:
            missed.append(f"Python heap grew {growth:.2f}x from {int(small):,} to {int(n):,} rows")
    for n, entry in huge.items():
        if entry["incremental_modes"] != ["incremental"]:
            missed.append(f"at {int(n):,} rows the incremental run recomputed some KPIs in full: {entry['incremental_modes']}")
    return missed


def load_average() -> float:
    """The 1-minute load average (the machine is shared: every round records what it ran beside)."""
    return float(Path("/proc/loadavg").read_text().split()[0]) if Path("/proc/loadavg").exists() else float("nan")


def alternate(engine: str, project: Path, env: dict[str, str], hand_cmd: list[str], repeat: int,
              run_cmd: list[str] | None = None, engine_cpu: Callable[[], float] | None = None) -> dict:
    """`repeat` alternating rounds of `kpimetrics run --full-refresh` (or `run_cmd`, a process that runs it) and the
    hand-written script (whose process prints the seconds spent in its statements last), each a whole process; the
    times, the CPU seconds of each process and the children it waited for, and their ratios."""
    run_cmd = run_cmd or kpimetrics("run", "-q", "--project-dir", str(project), "--profiles-dir", str(project),
                                    "--as-of", AS_OF, "--full-refresh")
    full, hand, full_sql, hand_sql, loads = [], [], [], [], []
    full_cpu, hand_cpu = [], []  # the engine's CPU seconds for each process's statements (engine_cpu's differences)
    for i in range(repeat):  # alternating, so both see the same machine
        before = load_average()
        cpu = engine_cpu() if engine_cpu else 0.0
        full.append(timed(run_cmd, env=env))
        full_sql.append(warehouse_seconds(project))
        cpu_full = engine_cpu() if engine_cpu else 0.0
        hand.append(timed(hand_cmd, env=env))
        hand_sql.append(float(hand[-1].output.strip().splitlines()[-1]))
        if engine_cpu:
            full_cpu.append(cpu_full - cpu)
            hand_cpu.append(engine_cpu() - cpu_full)
            print(f"  round {i + 1}: CPU seconds of {engine}'s backends: kpimetrics {full_cpu[-1]:.2f} s, "
                  f"hand-written {hand_cpu[-1]:.2f} s", flush=True)
        loads.append((before, load_average()))
        print(f"  round {i + 1}: kpimetrics --full-refresh {full[-1].seconds:.2f} s ({full_sql[-1]:.2f} s in "
              f"{engine}; {full[-1].cpu_seconds:.1f} CPU s), hand-written {hand[-1].seconds:.2f} s ({hand_sql[-1]:.2f} s in "
              f"{engine}; {hand[-1].cpu_seconds:.1f} CPU s); load average {loads[-1][0]:.1f} -> {loads[-1][1]:.1f}",
              flush=True)
    med = statistics.median
    return {
        "full_refresh_s": med(t.seconds for t in full), "hand_written_s": med(t.seconds for t in hand),
        "full_refresh_warehouse_s": med(full_sql), "hand_written_warehouse_s": med(hand_sql),
        "full_refresh_all_s": [round(t.seconds, 3) for t in full], "hand_written_all_s": [round(t.seconds, 3) for t in hand],
        "full_refresh_warehouse_all_s": [round(x, 3) for x in full_sql],
        "hand_written_warehouse_all_s": [round(x, 3) for x in hand_sql],
        "load_average_before_after": loads,
        # each round's pair, then the median of those ratios (the pairs see the same machine)
        "full_vs_hand_each_round": [round(f.seconds / h.seconds, 3) for f, h in zip(full, hand)],
        "full_vs_hand": med(f.seconds / h.seconds for f, h in zip(full, hand)),
        "full_vs_hand_warehouse_each_round": [round(f / h, 3) for f, h in zip(full_sql, hand_sql)],
        "full_vs_hand_warehouse": med(f / h for f, h in zip(full_sql, hand_sql)),
        "full_refresh_cpu_all_s": [round(t.cpu_seconds, 3) for t in full],
        "hand_written_cpu_all_s": [round(t.cpu_seconds, 3) for t in hand],
        "full_vs_hand_cpu": med(f.cpu_seconds / h.cpu_seconds for f, h in zip(full, hand)),
    } | ({
        "full_refresh_engine_cpu_all_s": [round(x, 3) for x in full_cpu],
        "hand_written_engine_cpu_all_s": [round(x, 3) for x in hand_cpu],
        "full_vs_hand_engine_cpu_each_round": [round(f / h, 3) for f, h in zip(full_cpu, hand_cpu)],
        "full_vs_hand_engine_cpu": med(f / h for f, h in zip(full_cpu, hand_cpu)),
    } if engine_cpu else {})


def checked(compared: list[tuple]) -> bool:
    """Print and judge COMPARE_SQL's rows: every row of every KPI on both sides, values equal."""
    bad = [r for r in compared if r[3] or r[4] or r[5]] if compared else [("(no rows)", "", 0, 0, 0, 1)]
    if bad:
        print("VALUES DIFFER (name, grain, rows, only by hand, only kpimetrics, differing):", flush=True)
        for r in bad:
            print("   ", r)
    else:
        print("values equal the hand-written SQL (every row of every KPI)", flush=True)
    return not bad


def bench_postgres(rows: int, repeat: int, report: dict) -> bool:
    """kpimetrics against bench/handwritten_postgres.sql on a throwaway PostgreSQL server, alternating rounds."""
    import postgres as pg  # bench/postgres.py

    db = DATA / f"bench_{rows}.duckdb"
    generate(db, rows)
    server = pg.start()
    try:
        began = time.perf_counter()
        pg.load(server, db)
        report["engine_version"] = pg.describe(server)
        print(f"loaded into {report['engine_version']} in {time.perf_counter() - began:.1f} s", flush=True)
        project, env, hand_cmd = pg.project(DATA), pg.env(server), [PY, "-c", pg.HAND_RUNNER, str(pg.HAND_SQL)]
        report["runs"] = alternate("PostgreSQL", project, env, hand_cmd, repeat, engine_cpu=lambda: pg.backends_cpu(server))
        ok = checked(pg.compare(server, COMPARE_SQL))
        report["runs"]["incremental"] = incremental_round(
            "PostgreSQL", project, env, hand_cmd, lambda: (append_day(db), pg.append(server, db))[1],
            engine_cpu=lambda: pg.backends_cpu(server))
        ok = checked(pg.compare(server, COMPARE_SQL)) and ok
    finally:
        server.stop()
    report["runs"]["values_equal"] = ok and report["runs"].get("incremental", {}).get("modes_incremental", True)
    return report["runs"]["values_equal"]


def incremental_round(engine: str, project: Path, env: dict[str, str], hand_cmd: list[str],
                      grow: Callable[[], int], engine_cpu: Callable[[], float] | None = None) -> dict:
    """After the full rounds, as on DuckDB: the additive KPIs and trailing windows in full, one more day
    (`grow` appends it to the engine's tables), the same KPIs incrementally; one more day, every KPI
    incrementally; then the hand-written script on the grown data, for the caller's value check. With
    `engine_cpu`, also the engine's CPU seconds for the two additive runs (steadier than wall time)."""
    run_cmd = kpimetrics("run", "-q", "--project-dir", str(project), "--profiles-dir", str(project), "--as-of", AS_OF)
    add = ["-s", ADDITIVE]
    cpu = [engine_cpu()] if engine_cpu else []
    full_add = timed(run_cmd + ["--full-refresh"] + add, env=env)
    full_add_sql = warehouse_seconds(project)
    cpu += [engine_cpu()] if engine_cpu else []
    print(f"  one more day: {grow()} rows", flush=True)  # not counted: the append's COPY and ANALYZE
    cpu += [engine_cpu()] if engine_cpu else []
    inc_add = timed(run_cmd + add, env=env)
    inc_add_sql = warehouse_seconds(project)
    cpu += [engine_cpu()] if engine_cpu else []
    modes = {r["mode"] for r in json.loads((project / "target" / "run_results.json").read_text())["results"]}
    print(f"  one more day: {grow()} rows", flush=True)
    inc = timed(run_cmd, env=env)
    inc_sql = warehouse_seconds(project)
    modes |= {r["mode"] for r in json.loads((project / "target" / "run_results.json").read_text())["results"]}
    hand = timed(hand_cmd, env=env)
    print(f"  incremental ({engine}): additive KPIs and trailing windows {inc_add.seconds:.2f} s ({inc_add_sql:.2f} s in "
          f"{engine}) against {full_add.seconds:.2f} s ({full_add_sql:.2f} s) in full; every KPI {inc.seconds:.2f} s "
          f"({inc_sql:.2f} s); hand-written on the grown data {hand.seconds:.2f} s; modes {sorted(modes)}", flush=True)
    if modes != {"incremental"}:
        print(f"the incremental runs recomputed some KPIs in full: modes {sorted(modes)}", flush=True)
    engine_cpus = {}
    if engine_cpu:  # full and incremental additive runs: the backends' CPU seconds and their ratio
        full_cpu, inc_cpu = cpu[1] - cpu[0], cpu[3] - cpu[2]
        print(f"  incremental ({engine}), CPU seconds of the backends: additive {inc_cpu:.2f} s against "
              f"{full_cpu:.2f} s in full = {inc_cpu / full_cpu:.1%}", flush=True)
        engine_cpus = {"additive_full_refresh_engine_cpu_s": full_cpu, "additive_incremental_engine_cpu_s": inc_cpu,
                       "additive_incremental_vs_full_engine_cpu": inc_cpu / full_cpu}
    return engine_cpus | {
        "additive_full_refresh_s": full_add.seconds, "additive_incremental_s": inc_add.seconds,
        "additive_full_refresh_warehouse_s": full_add_sql, "additive_incremental_warehouse_s": inc_add_sql,
        "additive_incremental_vs_full": inc_add.seconds / full_add.seconds,
        "additive_incremental_vs_full_warehouse": inc_add_sql / full_add_sql,
        "every_kpi_incremental_s": inc.seconds, "every_kpi_incremental_warehouse_s": inc_sql,
        "hand_written_grown_s": hand.seconds, "modes_incremental": modes == {"incremental"},
    }


def bench_spark(rows: int, repeat: int, report: dict) -> bool:
    """kpimetrics against bench/handwritten_spark.sql on local Spark (a warehouse in bench/data/spark)."""
    import spark  # bench/spark.py

    db = DATA / f"bench_{rows}.duckdb"
    generate(db, rows)
    began = time.perf_counter()
    timed([PY, str(BENCH / "spark.py"), "load", str(db), str(DATA)])
    report["engine_version"] = f"Spark {spark.MASTER}"
    print(f"loaded into a local Spark warehouse in {time.perf_counter() - began:.1f} s", flush=True)
    project = spark.project(DATA)
    # both sides' processes wait for their JVM to exit, so that their CPU seconds count the JVM's (bench/spark.py)
    report["runs"] = alternate("Spark", project, {}, [PY, str(BENCH / "spark.py"), "hand", str(DATA)], repeat,
                               run_cmd=[PY, str(BENCH / "spark.py"), "run", str(project), AS_OF])
    ok = checked(spark.compare(DATA, COMPARE_SQL))
    report["runs"]["values_equal"] = ok
    return ok


def engine_goals(report: dict) -> list[str]:
    """The goals missed on a server engine, as sentences: values equal, and <= 1.2x whole-process and in the engine."""
    runs, missed = report["runs"], []
    if not runs["values_equal"]:
        missed.append("kpimetrics' values differ from the hand-written SQL")
    for key, label in (("full_vs_hand", "whole-process"), ("full_vs_hand_warehouse", "inside the engine")):
        if runs[key] > GOALS["full_vs_hand"]:
            missed.append(f"full run is {runs[key]:.2f}x the hand-written SQL {label} (goal <= {GOALS['full_vs_hand']})")
    inc = runs.get("incremental")
    if inc and inc["additive_incremental_vs_full_warehouse"] > GOALS["incremental_vs_full"]:
        missed.append(f"incremental run of the additive KPIs is {inc['additive_incremental_vs_full_warehouse']:.1%} of a "
                      f"full one inside the engine (goal <= {GOALS['incremental_vs_full']:.0%})")
    return missed


def machine() -> dict:
    import duckdb
    import sqlglot

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    from sqlglot.expressions import core

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "duckdb": duckdb.__version__,
            "sqlglot": sqlglot.__version__, "sqlglot_compiled": not core.__file__.endswith(".py"),  # sqlglotc installed
            "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    global DATA
    ap = argparse.ArgumentParser(description="kpimetrics against hand-written SQL (and MetricFlow)")
    ap.add_argument("--engine", choices=("duckdb", "postgres", "spark"), default="duckdb",
                    help="the warehouse (postgres, spark: full-refresh rounds only; see bench/postgres.py, bench/spark.py)")
    ap.add_argument("--rows", type=int, default=None,
                    help="orders rows for the run benchmark (default 10^7; 3x10^6 on postgres, 10^6 on spark)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds of each timing (default 5; medians are reported)")
    ap.add_argument("--compile-sizes", default="100,1000,10000", help="KPI counts to compile ('' to skip)")
    ap.add_argument("--compile-timeout", type=float, default=600, help="seconds before a compile is stopped")
    ap.add_argument("--heap-rows", default="1000000,10000000", help="row counts for the Python heap check ('' to skip)")
    ap.add_argument("--huge", action="store_true", help="add 10^8 rows to the heap check, under --memory-limit")
    ap.add_argument("--memory-limit", default="4GB", help="DuckDB memory_limit for --huge (default 4GB)")
    ap.add_argument("--threads", type=int, default=None, help="DuckDB threads for every engine (default: all cores)")
    ap.add_argument("--handwritten", type=Path, default=None,
                    help="DuckDB: another hand-written script of the same values as the baseline "
                         "(bench/handwritten_masks.sql: its distinct counts from bit masks, as kpimetrics')")
    ap.add_argument("--metricflow", action="store_true", help="also time MetricFlow (builds bench/.venv-metricflow)")
    ap.add_argument("--check-only", action="store_true", help="only check values (full and incremental); no goals")
    ap.add_argument("--compile-only", action="store_true",
                    help="only time compile (say in a venv without sqlglotc, to compare sqlglot's builds)")
    ap.add_argument("--data-dir", type=Path, default=DATA, help="where generated data goes (default bench/data)")
    args = ap.parse_args(argv)
    global HAND_SQL
    if args.handwritten is not None:
        HAND_SQL = args.handwritten.resolve()
    DATA = args.data_dir
    DATA.mkdir(parents=True, exist_ok=True)
    # the bytecode of kpimetrics' own modules, as an installed wheel has it: an editable install under
    # PYTHONDONTWRITEBYTECODE=1 (set on this machine) compiles 34 modules from source in every process (~50 ms)
    compileall.compile_dir(str(ROOT / "kpimetrics"), quiet=1)
    if args.rows is None:
        args.rows = {"postgres": 3_000_000, "spark": 1_000_000}.get(args.engine, 10_000_000)
    report: dict = {"machine": machine(), "rows": args.rows, "repeat": args.repeat, "engine": args.engine}
    print(f"machine: {report['machine']}", flush=True)
    if args.engine != "duckdb":
        return main_engine(args, report)

    if not args.compile_only:
        db = DATA / f"bench_{args.rows}.duckdb"
        generate(db, args.rows)
        print(f"runs over {args.rows:,} orders:", flush=True)
        ok = bench_runs(db, 1 if args.check_only else args.repeat, args.threads, report)
        if args.check_only:
            return 0 if ok else 1

    if args.metricflow and not args.compile_only:
        import metricflow as mf  # bench/metricflow.py

        report["metricflow"] = mf.bench(db, min(args.repeat, 3), report["runs"])  # minutes a round
    sizes = [int(s) for s in args.compile_sizes.split(",") if s.strip()]
    if sizes:
        print("compile (whole CLI process, cold, fresh target/):", flush=True)
        bench_compile(sizes, report, args.compile_timeout, args.repeat)
    heap_rows = [int(s) for s in args.heap_rows.split(",") if s.strip()] if not args.compile_only else []
    if heap_rows:
        print("Python heap of a full run (tracemalloc peak):", flush=True)
        bench_heap(heap_rows, report, None, args.threads)
    if args.huge and not args.compile_only:
        print(f"10^8 orders under a DuckDB memory_limit of {args.memory_limit}:", flush=True)
        bench_huge(report, args.memory_limit, args.threads, repeat=args.repeat)

    missed = goals(report)
    runs = report.get("runs")
    if runs:
        print("\nratios (medians of alternating rounds):")
        print(f"  full refresh / hand-written SQL, each round: "
              f"{', '.join(f'{r:.2f}x' for r in runs['full_vs_hand_each_round'])}; median {runs['full_vs_hand']:.2f}x  "
              f"(goal <= {GOALS['full_vs_hand']}x)")
        print(f"    medians of the times: {runs['full_refresh_s']:.2f} s / {runs['hand_written_s']:.2f} s = "
              f"{runs['full_vs_hand_of_medians']:.2f}x")
        print(f"  incremental / full refresh:      {runs['incremental_s']:.2f} s / {runs['full_refresh_s']:.2f} s = "
              f"{runs['incremental_vs_full']:.1%}  (goal <= {GOALS['incremental_vs_full']:.0%})")
        print(f"    the same, in DuckDB's statements only: {runs['incremental_warehouse_s']:.2f} s / "
              f"{runs['full_refresh_warehouse_s']:.2f} s = {runs['incremental_vs_full_warehouse']:.1%}")
        sizes = [(f"{report['rows']:,} rows", runs)] + [(f"{int(k):,} rows", v) for k, v in report.get("huge", {}).items()]
        for label, r in sizes:
            a = r["additive"]
            print(f"  additive KPIs and trailing windows at {label}: incremental / full refresh {a['incremental_s']:.2f} s / "
                  f"{a['full_refresh_s']:.2f} s = {a['incremental_vs_full']:.1%} (in DuckDB's statements "
                  f"{a['incremental_vs_full_warehouse']:.1%}; goal <= {GOALS['incremental_vs_full']:.0%})")
    if "metricflow" in report and report["metricflow"].get("ratio_vs_hand"):
        m = report["metricflow"]
        print(f"  MetricFlow / hand-written SQL (on its subset: {m['queries_timed']} of its queries finished): "
              f"{m['ratio_vs_hand']:.2f}x; MetricFlow / kpimetrics: {m['ratio_vs_kpimetrics']:.2f}x")
    return finish(report, missed, DATA / "results.json")


def finish(report: dict, missed: list[str], out: Path) -> int:
    """Write the report; 1 when a goal is missed or a value differs."""
    report["goals_missed"] = missed
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    if missed:
        print("GOALS MISSED:\n  " + "\n  ".join(missed))
        return 1
    print("all goals met")
    return 0


def main_engine(args: argparse.Namespace, report: dict) -> int:
    """`--engine postgres|spark`: full-refresh rounds against the engine's hand-written SQL, the values checked equal
    (on PostgreSQL an incremental round after them, checked the same way)."""
    print(f"runs over {args.rows:,} orders on {args.engine}:", flush=True)
    bench = bench_postgres if args.engine == "postgres" else bench_spark
    ok = bench(args.rows, 1 if args.check_only else args.repeat, report)
    if args.check_only:
        return 0 if ok else 1
    runs, missed = report["runs"], engine_goals(report)
    print(f"\nratios ({args.engine}, {args.repeat} alternating rounds; load average before -> after each: "
          f"{', '.join(f'{a:.1f} -> {b:.1f}' for a, b in runs['load_average_before_after'])}):")
    print(f"  full refresh / hand-written SQL, whole process, each round: "
          f"{', '.join(f'{r:.2f}x' for r in runs['full_vs_hand_each_round'])}; median {runs['full_vs_hand']:.2f}x "
          f"(medians {runs['full_refresh_s']:.2f} s / {runs['hand_written_s']:.2f} s; goal <= {GOALS['full_vs_hand']}x)")
    print(f"  the same inside {args.engine}, each round: "
          f"{', '.join(f'{r:.2f}x' for r in runs['full_vs_hand_warehouse_each_round'])}; median "
          f"{runs['full_vs_hand_warehouse']:.2f}x (medians {runs['full_refresh_warehouse_s']:.2f} s / "
          f"{runs['hand_written_warehouse_s']:.2f} s)")
    print(f"  CPU seconds of the processes (and the children they waited for: Spark's JVM), each round: kpimetrics "
          f"{', '.join(f'{c:.1f}' for c in runs['full_refresh_cpu_all_s'])}, hand-written "
          f"{', '.join(f'{c:.1f}' for c in runs['hand_written_cpu_all_s'])}; median ratio {runs['full_vs_hand_cpu']:.2f}x")
    if "full_vs_hand_engine_cpu" in runs:  # steadier than wall time on a loaded machine
        print(f"  CPU seconds of {args.engine}'s backends, each round: "
              f"{', '.join(f'{r:.2f}x' for r in runs['full_vs_hand_engine_cpu_each_round'])}; median "
              f"{runs['full_vs_hand_engine_cpu']:.2f}x")
    if "incremental" in runs:
        inc = runs["incremental"]
        print(f"  incremental / full refresh, additive KPIs and trailing windows, one more day: "
              f"{inc['additive_incremental_vs_full']:.1%} whole process, {inc['additive_incremental_vs_full_warehouse']:.1%} "
              f"inside {args.engine} (goal <= {GOALS['incremental_vs_full']:.0%})"
              + (f", {inc['additive_incremental_vs_full_engine_cpu']:.1%} in the backends' CPU"
                 if "additive_incremental_vs_full_engine_cpu" in inc else "") + "; every KPI, one more day: "
              f"{inc['every_kpi_incremental_s']:.2f} s against the hand-written {inc['hand_written_grown_s']:.2f} s")
    return finish(report, missed, DATA / f"results_{args.engine}.json")


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    sys.exit(main())
