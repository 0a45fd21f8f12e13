"""kpimetrics: a dbt-style KPI layer. KPIs in YAML + SQL, computed in the warehouse."""

__version__ = "0.1.0"

__all__ = ["Project", "__version__"]


def __getattr__(name: str):
    # `Project` is imported on first use: `kpimetrics --version` and `--help` need none of sqlglot, pydantic or duckdb
    if name == "Project":
        from .api import Project

        return Project
    raise AttributeError(f"module 'kpimetrics' has no attribute {name!r}")
