"""Shared pytest options. Fixtures live next to the tests that use them."""

import pytest

# engine fixtures: a throwaway PostgreSQL server, the engines of the value suites, their oracle runs
from engines import ENGINE_MARKERS, con_a, con_b, engines_of, oracle_a, oracle_b, value_engine  # noqa: F401
from pg_server import pg_server  # noqa: F401
from dbt_env import dbt_pg_shop, dbt_shop  # noqa: F401  (the suite's dbt project, built by real dbt)


def pytest_configure(config):
    for name, why in ENGINE_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {why} (set by conftest from the test's engine)")


def pytest_collection_modifyitems(config, items):
    """Mark each test with the engines it needs, so `-m "not postgres and not spark"` runs DuckDB alone."""
    for item in items:
        for engine in engines_of(item):
            item.add_marker(getattr(pytest.mark, engine))


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
