"""Start-up cost: `kpimetrics --version`, `--help` and `run` on an empty project, as whole processes.

    .venv/bin/python bench/startup.py                    # this checkout, 15 rounds
    .venv/bin/python bench/startup.py --against 446d597  # and another commit, alternating round by round

Each round runs every command once for each checkout (this one, then the other, in turn), so both see
the same machine; the medians are reported, and the goal (--version in 0.1 s or less) is checked on this
checkout's median. `--against REV` checks REV out into a temporary git worktree and runs it from there
with this venv's interpreter (PYTHONPATH first), so only kpimetrics' own code differs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_VERSION_S = 0.1
COMMANDS = {
    "--version": ["--version"],
    "--help": ["--help"],
    "run (empty project)": ["run", "--as-of", "2026-01-15"],
}
EMPTY_PROJECT = {
    "kpimetrics.yml": "name: empty\nprofile: empty\n",
    "profiles.yml": "empty:\n  target: dev\n  outputs:\n    dev: {type: duckdb, path: wh.duckdb}\n",
    "strategy.yml": "mission: Nothing yet\n",
}


def empty_project(folder: Path) -> Path:
    for name, text in EMPTY_PROJECT.items():
        (folder / name).write_text(text)
    return folder


def once(code: Path, args: list[str], project: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(code)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "kpimetrics", *args, "--project-dir", str(project)]
                          if args[0] == "run" else [sys.executable, "-m", "kpimetrics", *args],
                          env=env, cwd=project, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{code}: kpimetrics {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="a git revision to time beside this checkout")
    parser.add_argument("--rounds", type=int, default=15)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkouts = {"this checkout": ROOT}
        if opts.against:
            other = tmp / "against"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), opts.against],
                           check=True, capture_output=True)
            checkouts[opts.against] = other
        try:
            projects = {label: empty_project(Path(tempfile.mkdtemp(dir=tmp))) for label in checkouts}
            times = {(label, cmd): [] for label in checkouts for cmd in COMMANDS}
            for label, code in checkouts.items():  # a first, unmeasured round: byte-compiled files written
                for cmd, args in COMMANDS.items():
                    once(code, args, projects[label])
            for _ in range(opts.rounds):
                for cmd, args in COMMANDS.items():
                    for label, code in checkouts.items():
                        times[label, cmd].append(once(code, args, projects[label]))
        finally:
            if opts.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "against")],
                               capture_output=True)
    labels = list(checkouts)
    print(f"medians of {opts.rounds} alternating rounds, whole processes ({sys.executable})")
    print("| command | " + " | ".join(labels) + " |")
    print("| --- |" + " --- |" * len(labels))
    for cmd in COMMANDS:
        print(f"| `{cmd}` | " + " | ".join(f"{statistics.median(times[label, cmd]):.3f} s" for label in labels) + " |")
    version = statistics.median(times["this checkout", "--version"])
    met = version <= GOAL_VERSION_S
    print(f"goal: --version <= {GOAL_VERSION_S} s: {version:.3f} s, {'met' if met else 'missed'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
