"""Trust at the edges (SPEC §11), files and limits: nothing unreadable is skipped, and limits, not hangs or floods.

A KPI file replaced by a link that cannot be followed, a named pipe, or a folder the process cannot list used to
be skipped, and the run deleted those KPIs' rows as "removed from the project" with exit 0. Each is now an error
at its path, and the run publishes nothing: every table of the warehouse is unchanged. A link to a folder that
exists is followed (it was skipped as well). The permission cases run kpimetrics in a real process held to file
permissions (tests run as root, whom chmod does not stop: the process drops root's permission override).

YAML aliases that multiply ("billion laughs") hung `debug` and `run`; a long value was quoted whole in messages.
The faults of tests/corpus_files.py cover the codes at their lines; here, the processes that hung, and the size
of what is printed.
"""
from __future__ import annotations

import ctypes
import datetime as dt
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import corpus_files
from corpus import Fault, broken_project, check_fault, every_table
from helpers_run import AS_OF, insert_orders, kpi, kpis_yml, make_orders, ok, query, run, write_run_project
from kpimetrics.cli import main

REVENUE = kpi("revenue", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: sum(amount)
    target: 100
""")
ORDER_COUNT = kpi("order_count", """
    model: source('shop', 'orders')
    time: ordered_at
    measure: count(*)
    target: 10
""")
MORE = "kpis/more/orders.yml"  # the file of order_count, in a folder of its own


def published(root: Path) -> Path:
    """Two KPIs published, order_count's in kpis/more/orders.yml."""
    write_run_project(root, kpis_yml(REVENUE), files={MORE: kpis_yml(ORDER_COUNT)})
    insert_orders(root, make_orders(dt.date(2025, 10, 1), dt.date(2026, 2, 1)))
    ok(run(root))
    assert kpis_published(root) == {"revenue", "order_count"}
    return root


def kpis_published(root: Path) -> set[str]:
    return {name for (name,) in query(root, "SELECT DISTINCT name FROM kpi.kpi_values")}


def cli(root: Path, command: str = "run", *args: str):
    extra = ["--as-of", AS_OF.isoformat()] if command == "run" else []
    out = CliRunner().invoke(main, [command, *extra, "--project-dir", str(root), *args])
    return out.exit_code, out.output


def refused(root: Path, code: str, where: str, message: str, output: str, exit_code: int, before: dict) -> None:
    assert exit_code == 1, output
    assert any(line.startswith(f"{where}:") and f" error[{code}]: " in line and message in line
               for line in output.splitlines()), output
    assert "Traceback" not in output and "internal error" not in output, output
    assert every_table(root / "wh.duckdb") == before


# --- nothing unreadable is skipped --------------------------------------------------------------------------


def _broken_link(root: Path) -> None:
    (root / MORE).unlink()
    (root / MORE).symlink_to("orders_old.yml")


def _link_loop(root: Path) -> None:
    (root / MORE).unlink()
    (root / MORE).symlink_to("orders.yml")


def _named_pipe(root: Path) -> None:
    (root / MORE).unlink()
    os.mkfifo(root / MORE)


def _folder_broken_link(root: Path) -> None:
    (root / MORE).unlink()
    (root / "kpis/more").rmdir()
    (root / "kpis/more").symlink_to("/nonexistent/shared_kpis")


def _folder_link_loop(root: Path) -> None:
    (root / MORE).unlink()
    (root / "kpis/more").rmdir()
    (root / "kpis/more").symlink_to("..")  # kpis/more/more/... for ever


BREAKS = [
    (_broken_link, "KPI100", MORE, "broken link: it points to 'orders_old.yml', which does not exist"),
    (_link_loop, "KPI100", MORE, "link loop: the link points back to itself"),
    (_named_pipe, "KPI103", MORE, "not a regular file (a named pipe)"),
    (_folder_broken_link, "KPI100", "kpis/more", "broken link: it points to '/nonexistent/shared_kpis'"),
    (_folder_link_loop, "KPI100", "kpis/more", "link loop: the link points to a folder that holds it"),
]


@pytest.mark.parametrize("breaks, code, where, message", BREAKS, ids=lambda b: getattr(b, "__name__", None))
def test_a_kpi_whose_file_cannot_be_read_keeps_its_rows(tmp_path, breaks, code, where, message):
    root = published(tmp_path)
    before = every_table(root / "wh.duckdb")
    breaks(root)
    exit_code, output = cli(root)
    refused(root, code, where, message, output, exit_code, before)
    assert kpis_published(root) == {"revenue", "order_count"}


def test_a_kpis_folder_that_is_a_link_is_read(tmp_path):
    root = published(tmp_path / "project")
    shared = tmp_path / "shared_kpis"
    (root / "kpis/more").rename(shared)
    (root / "kpis/more").symlink_to(shared)
    exit_code, output = cli(root)
    assert exit_code == 0, output
    assert kpis_published(root) == {"revenue", "order_count"}


def test_project_files_that_are_broken_links_are_named(tmp_path):
    root = published(tmp_path / "project")
    before = every_table(root / "wh.duckdb")
    (root / "profiles.yml").rename(tmp_path / "profiles.yml.bak")
    (root / "profiles.yml").symlink_to("/nonexistent/profiles.yml")
    exit_code, output = cli(root, "run", "--profiles-dir", str(root))  # not looked for further, in ~/.kpimetrics
    refused(root, "KPI100", f"{root}/profiles.yml", "broken link: it points to '/nonexistent/profiles.yml'",
            output, exit_code, before)
    (root / "profiles.yml").unlink()
    (tmp_path / "profiles.yml.bak").rename(root / "profiles.yml")
    (root / "kpimetrics.yml").rename(tmp_path / "kpimetrics.yml")
    (root / "kpimetrics.yml").symlink_to(tmp_path / "kpimetrics_gone.yml")
    exit_code, output = cli(root)  # not "no kpimetrics.yml found": it is there, and cannot be read
    refused(root, "KPI100", "kpimetrics.yml", "broken link", output, exit_code, before)


def _hold_to_permissions() -> None:
    """In the child before exec: drop root's permission override (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the
    capability bounding set, so the kpimetrics process is held to file modes like any other user."""
    if os.getuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "cannot drop root's permission override")


def run_process(root: Path, command: str = "run", timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    extra = ["--as-of", AS_OF.isoformat()] if command == "run" else []
    return subprocess.run([sys.executable, "-m", "kpimetrics", command, *extra, "--project-dir", str(root)],
                          capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.parametrize("path, mode, code, message", [
    ("kpis/more", 0o000, "KPI105", "cannot list folder: Permission denied"),
    ("kpis/more", 0o311, "KPI105", "cannot list folder: Permission denied"),  # enter, not list
    (MORE, 0o000, "KPI002", "cannot read: Permission denied"),
])
def test_a_kpi_the_process_may_not_read_keeps_its_rows(tmp_path, path, mode, code, message):
    root = published(tmp_path)
    before = every_table(root / "wh.duckdb")
    (root / path).chmod(mode)
    try:
        out = run_process(root, preexec_fn=_hold_to_permissions)
        refused(root, code, path, message, out.stdout + out.stderr, out.returncode, before)
    finally:
        (root / path).chmod(0o755)
    assert kpis_published(root) == {"revenue", "order_count"}


def test_a_process_without_the_override_is_held_to_permissions(tmp_path):
    """The set-up of the test above is real: without that process, root lists the folder."""
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o000)
    probe = [sys.executable, "-c", f"import os; os.listdir({str(folder)!r})"]
    assert subprocess.run(probe, capture_output=True, preexec_fn=_hold_to_permissions).returncode == 1
    folder.chmod(0o755)


# --- limits, not hangs -----------------------------------------------------------------------------------------


def _bounded_memory() -> None:
    """A process that expands aliases runs out of memory quickly rather than taking the machine's."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("rel, text, command, line", [
    ("profiles.yml", "".join("x" + ln + "\n" for ln in corpus_files.LAUGHS.splitlines())
     + "shop:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: wh.duckdb, threads: *i}\n", "debug", 7),
    ("kpimetrics.yml", "name: shop\nprofile: shop\ndialect: duckdb\nvars:\n"
     + "".join("  " + ln + "\n" for ln in corpus_files.LAUGHS.splitlines()), "run", 11),
])
def test_yaml_aliases_that_multiply_are_refused_fast(tmp_path, rel, text, command, line):
    """Nine lines of nine aliases (9**9 values): `debug` walked a profile's values, a model quoting the variable
    rendered all of them. Both were refused at the line whose values pass the limit, in seconds."""
    root = published(tmp_path)
    before = every_table(root / "wh.duckdb")
    (root / rel).write_text(text)
    (root / "models").mkdir()
    (root / "models/shown.sql").write_text("select '{{ var(\"i\") }}' as x")
    began = time.monotonic()
    out = run_process(root, command, timeout=60, preexec_fn=_bounded_memory)
    assert time.monotonic() - began < 30
    refused(root, "KPI102", f"{root}/{rel}" if rel == "profiles.yml" else rel,
            "YAML aliases expand to more than 1,000,000 values", out.stdout, out.returncode, before)
    assert f":{line}:" in next(ln for ln in out.stdout.splitlines() if "KPI102" in ln)


def test_reused_defaults_are_not_an_alias_bomb(tmp_path):
    """A `<<: *defaults` in each of 2,000 KPIs is ordinary YAML, well under the limit."""
    defaults = "x-defaults: &defaults\n  owner: sales@shop.example\n  strategy: grow_sales\n  indicator: leading\n" \
               "  actions: Call the team\n  model: source('shop', 'orders')\n  time: ordered_at\n  target: 10\n"
    entries = "".join(f"  - <<: *defaults\n    name: k_{i}\n    measure: count(*)\n" for i in range(2000))
    root = write_run_project(tmp_path, kpis_yml(REVENUE))
    (root / "kpis/kpis.yml").write_text("kpis:\n" + entries)
    (root / "kpis/defaults.yml").write_text(defaults)
    from kpimetrics.yamlio import parse_yaml

    data, issues = parse_yaml(defaults + "kpis:\n" + entries, "k.yml")
    assert issues == [] and len(data["kpis"]) == 2000 and data["kpis"][1999]["owner"] == "sales@shop.example"


@pytest.mark.parametrize("fault", [f for f in corpus_files.FAULTS if f.code in ("KPI101", "KPI104", "KPI005", "KPI003",
                                                                                 "KPI081", "KPI007", "KPI106", "KPI023")],
                         ids=lambda f: f.id)
def test_what_a_fault_prints_is_bounded(fault, tmp_path):
    """Each long value (up to 20 MB on one line) is quoted clipped: a few lines of output, not megabytes."""
    root = broken_project(tmp_path, fault, None)
    output = check_fault(fault, root)
    assert len(output) < 3000, f"{len(output):,} characters printed"


def test_a_message_is_masked_before_it_is_cut():
    """A cut through an env_var() value would print the part of it before the cut, unmasked."""
    from kpimetrics.config import SecretRegistry
    from kpimetrics.errors import bounded, error

    secrets = SecretRegistry()
    secrets.add("s3cr3t-" * 20)
    issue = bounded(error("KPI023", "x" * 990 + "s3cr3t-" * 20), secrets.scrub)
    assert "s3cr3t" not in issue.message and issue.message.endswith("****")
    long = bounded(error("KPI023", "y" * 5000 + "\n" + "\n".join(["z"] * 100)))
    assert long.message.splitlines()[0] == "y" * 1000 + "… (5,000 characters)"
    assert long.message.splitlines()[-1] == "… (81 more lines)"


def test_a_long_value_is_quoted_clipped_with_its_length(tmp_path):
    fault = next(f for f in corpus_files.FAULTS if f.code == "KPI007" and corpus_files.LONG in str(f.files))
    output = check_fault(fault, broken_project(tmp_path, fault, None))
    line = next(ln for ln in output.splitlines() if "error[KPI007]" in ln)
    assert line.endswith(f"(got '{'x' * 79}… (9,000 characters))"), line


# --- seeds --------------------------------------------------------------------------------------------------------


def test_a_seed_that_is_not_utf8_is_an_error_at_its_line(tmp_path):
    """DuckDB's CSV reader stopped on the byte, and the seed command gave exit 3."""
    fault = Fault("KPI108", {"seeds/regions.csv": b"region,name\neu,Europe\nfr,Fran\xe7e\n"}, "seeds/regions.csv", 3,
                  "malformed seed: not UTF-8 text (byte 0xe7)", command="seed")
    check_fault(fault, broken_project(tmp_path, fault, None))


def test_a_ragged_seed_is_refused_not_read_as_one_column(tmp_path):
    """DuckDB read `region,name` with a row of three fields as a single column named 'region,name', exit 0."""
    fault = Fault("KPI108", {"seeds/regions.csv": b"region,name\neu,Europe\nus,United,States\n"}, "seeds/regions.csv",
                  3, "malformed seed: the row has 3 field(s), the header 2", command="seed")
    root = broken_project(tmp_path, fault, None)
    check_fault(fault, root)
    assert not (root / "wh.duckdb").exists()  # refused before the warehouse was opened


def test_a_seed_that_is_a_broken_link_is_named(tmp_path):
    fault = Fault("KPI100", {}, "seeds/regions.csv", 0, "broken link", command="seed")
    root = broken_project(tmp_path, fault, None)
    (root / "seeds").mkdir()
    (root / "seeds/regions.csv").symlink_to("regions_old.csv")
    check_fault(fault, root)


def test_good_seeds_still_load(tmp_path):
    fault = Fault("KPI108", {"seeds/regions.csv": b"\xef\xbb\xbfregion,name\n\neu,\"Europe, West\"\nus,\"United\nStates\"\n"},
                  "seeds/regions.csv", 0, "")
    root = broken_project(tmp_path, fault, None)
    exit_code, output = cli(root, "seed")
    assert exit_code == 0, output
    assert query(root, "SELECT region, name FROM main.regions ORDER BY 1") == [("eu", "Europe, West"), ("us", "United\nStates")]
