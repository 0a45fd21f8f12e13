"""Hostile-input corpus: files (see corpus.py). FAULTS run in test_error_catalog; ELSEWHERE: code -> where it is tested.

Limits (SPEC §11): aliases that expand past a limit, over-long lines and names, over-large files, bytes that are not
UTF-8 text, each an error at its file and line; and where a message quotes the input, it quotes a clipped part.
"""
from __future__ import annotations

import textwrap

from corpus import ANY_LINE, PROFILES, Fault  # noqa: F401
from helpers_projects import VALID_PROJECT, kpi_yaml

# nine lines of nine aliases each: 9**9 values once expanded; line 7's are the first past the limit (9**7)
LAUGHS = "".join(f"{k}: &{k} [{', '.join(['*' + p] * 9) if p else ', '.join(['x'] * 9)}]\n"
                 for p, k in zip(["", *"abcdefgh"], "abcdefghi"))
LAUGHS_INDENTED = "".join("  " + line + "\n" for line in LAUGHS.splitlines())
SUPPORT = VALID_PROJECT["kpis/support.yml"]
STRATEGY = VALID_PROJECT["strategy.yml"]
SOURCES = VALID_PROJECT["sources.yml"]
CONFIG = VALID_PROJECT["kpimetrics.yml"]
MODEL = VALID_PROJECT["models/orders_enriched.sql"]


def raw(text: str) -> str:
    """A file's text as broken_project writes a str (dedented), for faults written as bytes."""
    return textwrap.dedent(text).lstrip("\n")


LONG = "x" * 9_000  # under the line limit: what a message quotes of it is clipped
LONG_KEY = "y" * 1_000  # YAML's longest simple key is 1,024 characters
SEED_HINT = "malformed seed"

FAULTS: list[Fault] = [
    # --- bytes that are not text, at their line ---
    Fault("KPI002", {"kpis/nul.yml": b"kpis:\n  - name: a\n    owner: b\x00c\n"}, "kpis/nul.yml", 3,
          "file is binary, not YAML text (a NUL byte)"),
    Fault("KPI002", {"kpis/latin1.yml": b"kpis:\n  - name: a\n    owner: b\n    label: Caf\xe9\n"}, "kpis/latin1.yml", 4,
          "file is not UTF-8 text (byte 0xe9 at offset 45)"),
    Fault("KPI002", {"kpis/bom_latin1.yml": b"\xef\xbb\xbfkpis:\n  - name: \xff\n"}, "kpis/bom_latin1.yml", 2,
          "file is not UTF-8 text (byte 0xff at offset 19)"),
    Fault("KPI002", {"models/orders_enriched.sql": raw(MODEL).replace("from", "from /* r\xe9sum\xe9 */")
                     .encode("latin-1")}, "models/orders_enriched.sql", 2, "model is not UTF-8 text (byte 0xe9"),
    Fault("KPI002", {"models/orders_enriched.sql": b"select 1 as x\nfrom t\x00\n"}, "models/orders_enriched.sql", 2,
          "model is binary, not SQL text (a NUL byte)"),
    Fault("KPI002", {"kpimetrics.yml": raw(CONFIG).replace("timezone: UTC", "timezone: \udce9").encode("utf-8", "surrogateescape")},
          "kpimetrics.yml", 7, "file is not UTF-8 text (byte 0xe9"),
    Fault("KPI002", {"profiles.yml": PROFILES.replace("wh.duckdb", "wh\x00.duckdb").encode()}, "profiles.yml", 4,
          "file is binary, not YAML text (a NUL byte)"),
    # --- over-long lines: refused at their line, the line never printed whole ---
    Fault("KPI101", {"kpis/long.yml": "kpis:\n  - name: a\n    label: " + "x" * 5_000_000 + "\n"}, "kpis/long.yml", 3,
          "line is 5,000,011 characters long, over the limit of 10,000"),
    Fault("KPI101", {"profiles.yml": PROFILES.replace("dev: {", "dev: {schema: " + "s" * 10_001 + ", ")}, "profiles.yml", 4,
          "over the limit of 10,000"),
    # --- aliases that expand past the limit, in any file ---
    Fault("KPI102", {"kpis/laughs.yml": LAUGHS}, "kpis/laughs.yml", 7, "YAML aliases expand to more than 1,000,000 values"),
    Fault("KPI102", {"sources.yml": SOURCES + "\n    x_laughs:\n" + "".join("      " + l + "\n" for l in LAUGHS.splitlines())},
          "sources.yml", 21, "YAML aliases expand to more than 1,000,000 values"),
    Fault("KPI102", {"kpimetrics.yml": CONFIG.replace("vars: {start_date: \"2025-01-01\"}",
                                                      "vars:\n      start_date: '2025-01-01'\n" + "".join(
                                                          "      " + l + "\n" for l in LAUGHS.splitlines()))},
          "kpimetrics.yml", 13, "YAML aliases expand to more than 1,000,000 values"),
    Fault("KPI102", {"profiles.yml": "".join("x" + l + "\n" for l in LAUGHS.splitlines())
                     + PROFILES.replace("path: wh.duckdb", "path: wh.duckdb, threads: *i")},
          "profiles.yml", 7, "YAML aliases expand to more than 1,000,000 values"),
    # --- over-large files ---
    Fault("KPI104", {"kpis/big.yml": b"# padding\n" * 1_700_000}, "kpis/big.yml", 1_677_722, "file is over the limit of 16 MB"),
    # a YAML error on a 20 MB line printed 40 MB: the file is refused, at the line that passes the limit
    Fault("KPI104", {"kpis/long_line.yml": b"kpis:\n  - name: a\n    label: [" + b"x" * 20_000_000 + b"\n"}, "kpis/long_line.yml", 3,
          "file is over the limit of 16 MB"),
    # --- over-long names: refused where they are written, before a name becomes a file in target/ ---
    Fault("KPI106", {"kpis/support.yml": SUPPORT.replace("call_wrap_up_seconds", "c" * 300)}, "kpis/support.yml", 51,
          "standard: name 'ccccccc"),
    Fault("KPI106", {"kpis/long_name.yml": kpi_yaml(name="k" * 129)}, "kpis/long_name.yml", 2,
          "… (129 characters) is over the limit of 128 characters"),
    Fault("KPI106", {"strategy.yml": STRATEGY.replace("name: grow_repeat_purchases", "name: " + "g" * 500)},
          "strategy.yml", 15, "strategy: name 'gggg"),
    Fault("KPI106", {"sources.yml": SOURCES.replace("name: customers", "name: " + "c" * 200)}, "sources.yml", 11,
          "table: name 'cccc"),
    # --- calendar.timezone: a validation error, not a crash when the warehouse session is set up ---
    Fault("KPI107", {"kpimetrics.yml": CONFIG.replace("timezone: UTC", "timezone: Europe/Pariss")}, "kpimetrics.yml", 7,
          "unknown time zone 'Europe/Pariss' in calendar.timezone; did you mean 'Europe/Paris'?"),
    Fault("KPI107", {"kpimetrics.yml": CONFIG.replace("timezone: UTC", "timezone: ../../etc/passwd")}, "kpimetrics.yml", 7,
          "unknown time zone '../../etc/passwd' in calendar.timezone"),
    # --- seeds: refused at the line, before any warehouse reads them ---
    Fault("KPI108", {"seeds/regions.csv": b"region,name\neu,Europe\nus,United,States\n"}, "seeds/regions.csv", 3,
          "malformed seed: the row has 3 field(s), the header 2", command="seed"),
    Fault("KPI108", {"seeds/regions.csv": b"region,name\neu,Europe\nfr,Fran\xe7e\n"}, "seeds/regions.csv", 3,
          "malformed seed: not UTF-8 text (byte 0xe7)", command="seed"),
    Fault("KPI108", {"seeds/regions.csv": b"region,,name\neu,x,Europe\n"}, "seeds/regions.csv", 1,
          "malformed seed: column 2 of the header has no name", command="seed"),
    Fault("KPI108", {"seeds/regions.csv": b"region,name\neu,\"Europe\nus,US\n"}, "seeds/regions.csv", 2,
          "malformed seed: a quoted field is not closed: it runs to the end of the file", command="seed"),
    Fault("KPI108", {"seeds/empty.csv": b""}, "seeds/empty.csv", 1, "malformed seed: no header row", command="seed"),
    # --- targets that are no number: validation errors, not a warehouse error at run time ---
    Fault("KPI007", {"kpis/support.yml": SUPPORT.replace("target: 60", "target: .nan")}, "kpis/support.yml", 57,
          "standard 'call_wrap_up_seconds': invalid value for 'target': must be a finite number (got nan)"),
    Fault("KPI007", {"kpis/support.yml": SUPPORT.replace("target: 60", "target: {value: .inf}")}, "kpis/support.yml", 57,
          "invalid value for 'target.value': must be a finite number (got inf)"),
    Fault("KPI007", {"kpis/support.yml": SUPPORT.replace("target: 60", "target: {month: -.Inf}")}, "kpis/support.yml", 57,
          "invalid value for 'target.month': must be a finite number (got -inf)"),
    Fault("KPI007", {"kpis/support.yml": SUPPORT.replace("at_risk_below: 0.80", "at_risk_below: .NaN")},
          "kpis/support.yml", 16, "invalid value for 'at_risk_below': must be a finite number (got nan)"),
    # --- a message quotes a clipped part of a long value ---
    Fault("KPI007", {"kpis/support.yml": SUPPORT.replace("target: 60", f"target: '{LONG}'")}, "kpis/support.yml", 57,
          "invalid value for 'target': "),  # the whole message is read in test_trust_files
    Fault("KPI005", {"kpis/support.yml": SUPPORT.replace("target: 60", f"target: 60\n        {LONG_KEY}: 1")},
          "kpis/support.yml", 58, "… (1,000 characters) in standard 'call_wrap_up_seconds'"),
    Fault("KPI003", {"kpis/support.yml": SUPPORT.replace("target: 60", f"target: 60\n        {LONG_KEY}: 1\n        {LONG_KEY}: 2")},
          "kpis/support.yml", 59, "… (1,000 characters) (first defined at line 58)"),
    Fault("KPI081", {}, "profiles.yml", 3, "… (9,000 characters) not found in profile 'acme' (targets: dev)",
          args=("--target", LONG)),
    # --- a rule of validate/ quoting a long value: cut to a few lines (5 MB printed before) ---
    Fault("KPI023", {"kpis/support.yml": SUPPORT.replace("strategy: improve_customer_experience\n", "strategy: |\n"
                                                          + ("            " + "y" * 100 + "\n") * 50_000, 1)},
          "kpis/support.yml", 5, "KPI 'csat': unknown strategy 'yyyyyyyy"),  # 20 lines of it (test_trust_files)
    # --- profiles.yml: found by the property test (test_fuzz_loader), exit 3 before ---
    Fault("KPI081", {"profiles.yml": PROFILES.replace("target: dev", "target: [dev]")}, "profiles.yml", 2,
          "profile 'acme': `target:` must name one of its outputs, got a list"),
]
ELSEWHERE: dict[str, str] = {
    "KPI100": "test_trust_files: a KPI file or folder replaced by a broken link or a link loop (symbolic links)",
    "KPI103": "test_trust_files: a named pipe where a KPI file is expected",
    "KPI105": "test_trust_files: a folder the user running kpimetrics cannot list (a real process without root's "
              "permission override)",
}
