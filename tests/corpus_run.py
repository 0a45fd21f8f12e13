"""Hostile-input corpus: run (see corpus.py). FAULTS run in test_error_catalog; ELSEWHERE: code -> where it is tested.

The corpus warehouse is published by the example project (acme_kpis) into output schema `kpi`.
"""
from __future__ import annotations

from corpus import ANY_LINE, Fault  # noqa: F401
from helpers_projects import KPIMETRICS_YML

# a model using one of Jinja's default globals on its third line
JINJA_GLOBALS = {
    "range": "{% for i in range(3) %}{% endfor %}",
    "dict": "{{ dict(a=1) }}",
    "lipsum": "{{ lipsum(1) }}",
    "cycler": "{{ cycler('a', 'b').next() }}",
    "joiner": "{{ joiner(',')() }}",
    "namespace": "{% set ns = namespace(n=1) %}",
}


def _model_using(expression: str) -> str:
    return "select *\nfrom {{ source('shop', 'orders') }}\n" + expression + "\nwhere amount > 0\n"


def _config(**lines: str) -> str:
    """kpimetrics.yml of the example project with keys replaced or (after it) added, in its line order."""
    text = KPIMETRICS_YML
    for key, value in lines.items():
        head = f"    {key}: "
        found = [line for line in text.splitlines() if line.startswith(head)]
        text = text.replace(found[0], head + value) if found else text.rstrip("\n") + f"\n{head}{value}\n"
    return text


SEED = "seeds/regions.csv"
FAULTS: list[Fault] = [
    *[Fault("KPI064", {"models/globals.sql": _model_using(expr)}, "models/globals.sql", 3,
            f"Jinja sandbox refused '{name}': Jinja's default globals are not available")
      for name, expr in JINJA_GLOBALS.items()],
    # another project's run into the output schema the example project owns: refused, nothing written
    Fault("KPI094", {"kpimetrics.yml": _config(name="other_kpis")}, "kpimetrics.yml", 4,
          "output schema 'kpi' belongs to project 'acme_kpis', not to this project 'other_kpis'"),
    Fault("KPI094", {"kpimetrics.yml": _config(name="other_kpis")}, "kpimetrics.yml", 4,
          "Set `output_schema` in kpimetrics.yml", args=("--full-refresh",)),
    # seed would write into the output schema
    Fault("KPI095", {"kpimetrics.yml": _config(seed_schema="kpi"), SEED: "region,name\n1,north\n"}, "kpimetrics.yml", 8,
          "seed would load into schema 'kpi', the output schema", command="seed"),
    Fault("KPI095", {"kpimetrics.yml": _config(output_schema="main"), SEED: "region,name\n1,north\n"}, "kpimetrics.yml",
          4, "seed would load into schema 'main', the output schema", command="seed"),
    # target/ cannot be written: refused before the warehouse, exit 1 (it was exit 3)
    Fault("KPI096", {"target": "a file where the folder should be\n"}, "target", 0, "cannot write"),
    Fault("KPI096", {"target": "a file where the folder should be\n"}, "target", 0, "cannot write", command="compile"),
    Fault("KPI096", {"target/compiled": "a file where a folder should be\n"}, "target", 0, "cannot write"),
]
ELSEWHERE: dict[str, str] = {
    "KPI097": "a warning after publishing (run_results.json cannot be written); tested in test_trust_run",
    "KPI098": "a warning about the warehouse file a run created (a mistyped DuckDB path); tested in test_trust_run",
    "KPI184": "two runs at once on a shared Spark catalog (the lease): test_spark_cluster and test_spark_connect",
    "KPI185": "a run whose Spark lease was taken over before it published: test_spark_connect",
}
