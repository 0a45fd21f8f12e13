"""kpimetrics: a dbt-style KPI layer. KPIs in YAML + SQL, computed in the warehouse."""

__version__ = "0.1.0"

from .api import Project  # noqa: E402

__all__ = ["Project", "__version__"]
