"""Shared pytest options. Fixtures live next to the tests that use them."""

import json
import tempfile
from pathlib import Path

import pytest

# engine fixtures: a throwaway PostgreSQL server, the engines of the value suites, their oracle runs
from engines import (  # noqa: F401
    ENGINE_MARKERS, con_a, con_b, engines_of, oracle_a, oracle_b, shared_setup_group, value_engine,
)
from pg_server import pg_server  # noqa: F401
from dbt_env import dbt_pg_shop, dbt_shop  # noqa: F401  (the suite's dbt project, built by real dbt)


def pytest_configure(config):
    for name, why in ENGINE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {why} (set by conftest from the test's engine)")


def pytest_collection_modifyitems(config, items):
    """Mark each test with the engines it needs, so `-m "not postgres and not spark"` runs DuckDB alone; on an
    xdist worker under `--dist loadgroup`, write the group of the set-up each test shares (see below)."""
    for item in items:
        for engine in engines_of(item):
            item.add_marker(getattr(pytest.mark, engine))
    workerinput = getattr(config, "workerinput", None)  # on an xdist worker; xdist sets loadgroup there
    if workerinput and getattr(config.option, "loadgroup", False):
        groups = {item.nodeid: group for item in items if (group := shared_setup_group(item))}
        _groups_file(workerinput["testrunuid"], workerinput["workerid"]).write_text(json.dumps(groups))


# --- xdist: the tests that share a set-up go to one worker -------------------------------------------

# xdist's own `--dist loadgroup` groups nothing under pytest 9.2 (pytest-xdist#1386: it appends the group to
# the node id, which pytest 9.2 no longer lets it change), so with `--dist loadgroup` (as `make test` runs) this
# conftest hands the scheduler the groups itself: each worker writes {node id: group} of what it collected
# (engines.shared_setup_group) to a file of the run, and the scheduler deals a group out whole.

def _groups_file(testrunuid: str, worker: str) -> Path:
    return Path(tempfile.gettempdir()) / f"kpimetrics-xdist-groups-{testrunuid}-{worker}.json"


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedSetupScheduling(LoadScopeScheduling):
        """LoadScopeScheduling by shared set-up: a group is one unit of work (the largest first), every other
        test a unit of its own."""

        groups: dict[str, str] = {}

        def schedule(self) -> None:
            if self.collection is None and self.collection_is_completed:
                for node in self.nodes:
                    path = _groups_file(node.workerinput["testrunuid"], node.workerinput["workerid"])
                    if path.is_file():
                        self.groups.update(json.loads(path.read_text()))
                        path.unlink()
            super().schedule()

        def _split_scope(self, nodeid: str) -> str:
            return self.groups.get(nodeid, nodeid)

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
