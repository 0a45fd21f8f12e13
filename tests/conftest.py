"""Shared pytest options. Fixtures live next to the tests that use them."""

import json
import tempfile
from collections import OrderedDict
from pathlib import Path

import pytest

# engine fixtures: a throwaway PostgreSQL server, the engines of the value suites, their oracle runs
from engines import (  # noqa: F401
    ENGINE_MARKERS, con_a, con_b, engines_of, expected_seconds, oracle_a, oracle_b, shared_setup_group, value_engine,
)
from pg_server import pg_server  # noqa: F401
from dbt_env import dbt_pg_shop, dbt_shop  # noqa: F401  (the suite's dbt project, built by real dbt)


def pytest_configure(config):
    for name, why in ENGINE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {why} (set by conftest from the test's engine)")


def pytest_collection_modifyitems(config, items):
    """Mark each test with the engines it needs, so `-m "not postgres and not spark"` runs DuckDB alone; on an
    xdist worker under `--dist loadgroup`, write the group of the set-up each test shares and the seconds of
    the known long tests (see below)."""
    for item in items:
        for engine in engines_of(item):
            item.add_marker(getattr(pytest.mark, engine))
    workerinput = getattr(config, "workerinput", None)  # on an xdist worker; xdist sets loadgroup there
    if workerinput and getattr(config.option, "loadgroup", False):
        groups = {item.nodeid: group for item in items if (group := shared_setup_group(item))}
        seconds = {item.nodeid: s for item in items if (s := expected_seconds(item))}
        _groups_file(workerinput["testrunuid"], workerinput["workerid"]).write_text(
            json.dumps({"groups": groups, "seconds": seconds}))


# --- xdist: the tests that share a set-up go to one worker, the long ones first ------------------------

# xdist's own `--dist loadgroup` groups nothing under pytest 9.2 (pytest-xdist#1386: it appends the group to
# the node id, which pytest 9.2 no longer lets it change), so with `--dist loadgroup` (as `make test` runs) this
# conftest hands the scheduler the groups itself: each worker writes {node id: group} of what it collected
# (engines.shared_setup_group) to a file of the run, and the scheduler deals a group out whole.
#
# The order: LoadScopeScheduling deals its work queue front to back, a unit to whichever worker runs low
# (two tests or fewer pending: a worker starts a test only once it holds the next one). Its queue is sorted
# by test count, so a unit of one long test (the Spark crash tests: 20 minutes) came last and ran on one
# worker while the other idled. Here the queue is sorted by the known seconds of its units first
# (engines.LONG_TESTS), then by test count as before; and a worker that still holds a long test gets the
# next unit from the back of the queue (the smallest), so the long units and the big groups go to the
# other worker, and both finish near the same time.

def _groups_file(testrunuid: str, worker: str) -> Path:
    return Path(tempfile.gettempdir()) / f"kpimetrics-xdist-groups-{testrunuid}-{worker}.json"


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedSetupScheduling(LoadScopeScheduling):
        """LoadScopeScheduling by shared set-up: a group is one unit of work, every other test a unit of its
        own; the units with the longest known tests first, then the largest."""

        groups: dict[str, str] = {}
        seconds: dict[str, int] = {}
        ordered = False

        def schedule(self) -> None:
            if self.collection is None and self.collection_is_completed:
                for node in self.nodes:
                    path = _groups_file(node.workerinput["testrunuid"], node.workerinput["workerid"])
                    if path.is_file():
                        found = json.loads(path.read_text())
                        self.groups.update(found["groups"])
                        self.seconds.update(found["seconds"])
                        path.unlink()
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            return self.groups.get(nodeid, nodeid)

        def _assign_work_unit(self, node) -> None:
            if not self.ordered:  # the first assignment: the queue is complete, sorted by test count
                self.ordered = True
                self.workqueue = OrderedDict(sorted(self.workqueue.items(), key=lambda unit: -self._seconds(unit[1])))
            if self._seconds(test for unit in self.assigned_work[node].values() for test, done in unit.items() if not done):
                self.workqueue.move_to_end(next(reversed(self.workqueue)), last=False)  # it holds a long test
            super()._assign_work_unit(node)

        def _seconds(self, tests) -> int:
            return sum(self.seconds.get(test, 0) for test in tests)

    return SharedSetupScheduling(config, log)


def pytest_addoption(parser):
    parser.addoption("--update-snapshots", action="store_true", default=False,
                     help="rewrite the expected SQL files under tests/snapshots/")


@pytest.fixture
def update_snapshots(request) -> bool:
    return bool(request.config.getoption("--update-snapshots"))


@pytest.fixture(autouse=True)
def _no_user_profiles(monkeypatch, tmp_path_factory):
    """Tests never read the developer's ~/.kpimetrics or an exported profiles dir."""
    monkeypatch.delenv("KPIMETRICS_PROFILES_DIR", raising=False)
    monkeypatch.delenv("DBT_PROFILES_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.getbasetemp() / "home"))
    yield
