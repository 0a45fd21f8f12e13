"""Every error and warning code kpimetrics reports, with what it means and how to fix it.

Codes are stable: a code keeps its meaning forever, so CI scripts and docs can
rely on it. docs/errors.md is generated from `CODES` (scripts/gen_error_docs.py),
and a test checks that every code used in the package is listed here.

Ranges: 000-009 files and YAML; 010-019 names and duplicates; 020-029 required
KPI fields and links; 030-039 models, sources and columns; 040-049 SQL;
050-059 targets, grains, windows and durations; 060-069 Jinja; 070-079 the
discipline warnings; 080-089 profiles and config; 090-099 problems found while
running (in the warehouse) rather than validating; 100-109 limits and unreadable
files; 110-119 the grammar of project SQL; 120-129 reading the machine (files,
environment, network); 130-139 a `diff --state` folder; 150-154 targets per slice
and from tables; 155-159 what a reader is shown (currencies, validate/reading.py); 140-149 a dbt project and
its artifacts; 160-169 notifications (the `notify:` block of kpimetrics.yml and
`kpimetrics notify`, kpimetrics/notify/); 170-179 KPIs over dbt's semantic
layer (`metric:`, kpimetrics/dbt/semantic.py); 180-189 Spark: profiles (Spark
Connect's `remote:` and `master:`, config.SparkOutput) 180-183, runs on a shared
catalog (adapters/spark_lease.py) 184-185.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import Level

E, W = Level.ERROR, Level.WARNING


@dataclass(frozen=True)
class Code:
    level: Level
    title: str
    meaning: str
    fix: str


CODES: dict[str, Code] = {
    # --- files and YAML (loader) ---
    "KPI000": Code(E, "no kpimetrics.yml", "The folder is not a kpimetrics project: it has no kpimetrics.yml.",
                   "Run inside a project, pass `--project-dir`, or create one with `kpimetrics init NAME`."),
    "KPI001": Code(E, "YAML syntax error", "A file is not valid YAML, or holds several documents (`---`).",
                   "Fix the syntax at the line shown (often indentation or an unquoted `:`); keep one document per file."),
    "KPI002": Code(E, "unreadable file", "A file cannot be read: it is binary, not UTF-8, or not accessible.",
                   "Save the file as UTF-8 text, or move non-project files out of the project folder."),
    "KPI003": Code(E, "duplicate YAML key", "A mapping has the same key twice; YAML would silently keep only the last.",
                   "Remove or rename one of the two keys."),
    "KPI004": Code(W, "empty file", "A YAML file in the project defines nothing.", "Delete it or add definitions."),
    "KPI005": Code(E, "unknown key", "A key that kpimetrics does not know, usually a typo; the message suggests the closest one.",
                   "Rename it to one of the allowed keys listed in the hint."),
    "KPI006": Code(E, "missing required key", "A definition lacks a key it cannot do without (such as `name`).",
                   "Add the key named in the message."),
    "KPI007": Code(E, "wrong type or value", "A value has the wrong type or is not one of the allowed values "
                   "(for example a grain that is not day, week, month, quarter or year).",
                   "Change the value to the type or one of the values the message names."),
    "KPI008": Code(E, "file is not a mapping", "A project file (or kpimetrics.yml) holds a list or a scalar at the top.",
                   "Write a mapping with top-level keys such as `kpis:`, `sources:`, `priorities:`."),
    "KPI009": Code(E, "defined twice", "The mission, or a model (a models/*.sql file name), is defined more than once.",
                   "Keep one definition: one `mission:`, and one .sql file per model name."),
    # --- names and duplicates ---
    "KPI010": Code(E, "name is not snake_case", "KPI and standard names become column values and file names, so they "
                   "must match `^[a-z][a-z0-9_]*$`.", "Rename it, e.g. `NetRevenue` to `net_revenue`."),
    "KPI011": Code(E, "duplicate KPI name", "Two KPIs or standards share a name; names are unique across both.",
                   "Rename or remove one of them."),
    "KPI012": Code(E, "duplicate strategy", "Two strategies share a name (under the same or different priorities).",
                   "Rename or remove one of them."),
    "KPI013": Code(E, "duplicate priority", "Two priorities share a name.", "Rename or remove one of them."),
    "KPI014": Code(E, "duplicate source", "Two sources share a name.", "Merge their tables under one source entry."),
    "KPI015": Code(E, "duplicate source table", "A source declares the same table twice.", "Remove one of the entries."),
    "KPI016": Code(E, "duplicate owner", "Two entries under `owners:` share a name or an email.",
                   "Keep one entry per person."),
    # --- required fields, links, form ---
    "KPI020": Code(E, "no owner", "A KPI or standard has no `owner`: someone must be accountable for it.",
                   "Add `owner:` (an email, or a name from `owners:`)."),
    "KPI021": Code(E, "no target", "A KPI or standard has no `target`, so its status cannot be judged.",
                   "Add `target:` (a number, `{value}`, `{schedule}`, a relative target, or one per grain)."),
    "KPI022": Code(E, "no strategy", "A KPI is not linked to a strategy. A measure that is not tied to a strategy is a "
                   "performance standard, not a KPI.", "Add `strategy:`, or move the entry to `standards:`."),
    "KPI023": Code(E, "unknown strategy", "`strategy:` names a strategy that no priority declares.",
                   "Fix the name (see the suggestion) or declare the strategy under a priority in strategy.yml."),
    "KPI024": Code(E, "unknown owner", "`owners:` is declared and an `owner` is neither one of its names nor emails.",
                   "Use a listed name or email, or add the person to `owners:`."),
    "KPI025": Code(E, "measure, ratio or derived", "An entry must have exactly one of `measure`, `ratio` or `derived`.",
                   "Keep exactly one of the three."),
    "KPI026": Code(E, "no model", "A measure or ratio KPI has no `model:` to read rows from.",
                   "Add `model: source('source', 'table')` or `model: ref('model')`."),
    "KPI027": Code(E, "no time column", "A measure or ratio KPI has no `time:` column to place rows in periods.",
                   "Add `time:` naming a date or timestamp column of the model."),
    # --- models, sources, columns ---
    "KPI030": Code(E, "bad model reference", "`model:` is neither `source('s', 't')` nor `ref('m')`.",
                   "Write `source('shop', 'orders')` or `ref('orders_enriched')`, without `{{ }}`."),
    "KPI031": Code(E, "unknown model", "`ref('m')` (in a KPI's `model:` or in a model's SQL) names no file models/m.sql, "
                   "or a model refers to itself.", "Fix the name (see the suggestion) or add the model file."),
    "KPI032": Code(E, "unknown source table", "`source('s', 't')` names a source or table not declared under `sources:`.",
                   "Fix the name (see the suggestion) or declare the table in sources.yml."),
    "KPI033": Code(E, "unknown column", "A column in `measure`, `filter`, `ratio`, `time` or `dimensions` is not a column "
                   "of the KPI's model (a source's declared `columns:`, or a model's output columns).",
                   "Fix the column name (see the suggestion), or add it to the source's `columns:` or the model's SELECT."),
    "KPI034": Code(E, "model SQL invalid", "A model's rendered SQL does not parse, or is not a single SELECT statement.",
                   "Fix the SQL at the line shown; a model is one SELECT (CTEs allowed)."),
    "KPI035": Code(W, "model columns unknown", "The output columns of a model could not be determined (for example "
                   "`SELECT *` from a source that declares no `columns:`), so the columns of the KPIs that read it "
                   "were not checked.", "Declare the columns of the sources it reads, or list the columns in its SELECT."),
    "KPI036": Code(E, "model cycle", "Models refer to each other in a cycle (`a -> b -> a`).",
                   "Break the cycle: one of the models must read from sources or other models only."),
    "KPI037": Code(E, "unknown column in a combination", "A column of a combination of dimensions (a `dimensions` "
                   "item that is a list) is not a column of the KPI's model.",
                   "Fix the column name (see the suggestion), or add it to the source's `columns:` or the model's SELECT."),
    "KPI038": Code(E, "duplicate in a combination", "A combination of dimensions names a column twice, or the same "
                   "columns (in any order) are listed as two combinations.",
                   "Name each column once per combination, and list each combination once."),
    "KPI039": Code(E, "malformed combination", "A `dimensions` item that is a list must list two or more column "
                   "names: a list of one, an empty list, a list inside a combination, or an item that is not text is "
                   "not a combination.",
                   "Write a single column as a plain item (`region`), a combination as a flat list (`[region, channel]`)."),
    # --- SQL ---
    "KPI040": Code(E, "SQL does not parse", "A `measure`, `filter`, ratio part, `derived`, `time` or dimension is not a "
                   "valid SQL expression in the project's dialect; the message says where it broke.",
                   "Fix the expression at the character shown."),
    "KPI041": Code(E, "not an aggregate", "A measure (or ratio part) has a column outside any aggregate, or no aggregate "
                   "at all: a value must be an aggregate over the period's rows.",
                   "Wrap every column in sum, count, count(distinct ...), avg, min, max, median or quantile_cont."),
    "KPI042": Code(E, "aggregate in filter", "`filter` keeps or drops single rows, so it cannot contain an aggregate.",
                   "Move the condition into the measure, e.g. `count(*) filter (where ...)`."),
    "KPI043": Code(E, "aggregate not allowed", "The measure uses an aggregate function kpimetrics cannot compute "
                   "correctly over periods and windows (such as string_agg or approx_count_distinct).",
                   "Use sum, count, count(distinct ...), avg, min, max, median, quantile_cont or percentile_cont."),
    "KPI044": Code(E, "window function", "A measure or filter uses a window function (`OVER (...)`).",
                   "Use the KPI's `window:` (`periods: N` or `to_date:`) for trailing and to-date values."),
    "KPI045": Code(E, "nested aggregate", "An aggregate sits inside another aggregate (`sum(count(x))`).",
                   "Aggregate once; for a KPI built from other KPIs use `derived:`."),
    "KPI046": Code(E, "unknown KPI in derived", "A derived expression names a KPI that does not exist.",
                   "Fix the name (see the suggestion) or define that KPI."),
    "KPI047": Code(E, "derived cycle", "Derived KPIs depend on each other in a cycle (`a -> b -> a`).",
                   "Break the cycle: a derived KPI cannot (indirectly) read itself."),
    "KPI048": Code(E, "drives unknown KPI", "`drives:` names a KPI that does not exist.",
                   "Fix the name (see the suggestion) or remove it."),
    "KPI049": Code(E, "derived with model or window", "A derived KPI also sets `model`, `time`, `window`, `filter` or "
                   "`dimensions`; it is computed from other KPIs' values, which bring their own.",
                   "Remove those keys, or make it a measure KPI."),
    # --- targets, grains, windows, durations ---
    "KPI050": Code(E, "schedule out of order", "A target `schedule` is empty, or its entries are not in increasing "
                   "`from` order (or repeat a date).", "List the entries by date, each `from` after the previous one."),
    "KPI051": Code(E, "deadline before baseline", "A relative target's `by` is on or before the end of its baseline.",
                   "Set `by` after the baseline's `to` (or `as_of`)."),
    "KPI052": Code(E, "invalid baseline", "A baseline needs `from` and `to` (a date range, `from` not after `to`), or "
                   "`value` and `as_of`.", "Give exactly one of the two forms."),
    "KPI053": Code(E, "invalid change", "A relative target's `change` is neither a number nor a percent.",
                   "Write a number (`-120`) or a percent (`'-20%'`)."),
    "KPI054": Code(E, "invalid tolerance", "`tolerance` (or one of its per-grain values) is not a non-negative number "
                   "or percent.", "Write `5%` or `0.05`."),
    "KPI055": Code(E, "band on the wrong side", "`at_risk_below` only applies to higher_is_better KPIs, and "
                   "`at_risk_above` only to lower_is_better ones.", "Use the band that matches the KPI's `direction`."),
    "KPI056": Code(W, "unused per-grain setting", "A per-grain `target`, `tolerance` or band names a grain the KPI is not "
                   "computed at, so it is never used.", "Add the grain to `grain:`, or remove the entry."),
    "KPI057": Code(E, "pace without to-date window", "A pace target (`{value, by, pace}`) needs a to-date KPI.",
                   "Add `window: {to_date: year}` (or quarter, month), or use another target form."),
    "KPI058": Code(E, "invalid window", "`window` must have exactly one of `periods` (1 or more) or `to_date`.",
                   "Write `window: {periods: 3}` or `window: {to_date: year}`."),
    "KPI059": Code(E, "invalid duration", "`defaults.lookback` is not a whole number >= 0 nor a duration, or "
                   "`defaults.late_rows` or a source's freshness `warn_after`/`error_after` is not a duration.",
                   "Write a number of periods (`2`) or a duration (`'35 days'`, `'12 hours'`)."),
    # --- Jinja (templating) ---
    "KPI060": Code(E, "var undefined", "A template calls `var('x')` and `x` is defined nowhere.",
                   "Define it under `vars:` in kpimetrics.yml, pass `--vars`, or give a default: `var('x', 'd')`."),
    "KPI061": Code(E, "environment variable unset", "A template calls `env_var('X')` and `X` is not set.",
                   "Export the variable before running, or give a default: `env_var('X', 'd')`."),
    "KPI062": Code(E, "source/ref not available here", "`source()` or `ref()` is used where it means nothing (in a "
                   "templated YAML value rather than a model).", "Use them only in models/*.sql (or a KPI's `model:`)."),
    "KPI063": Code(E, "Jinja syntax error", "A template does not parse as Jinja.", "Fix the template at the line shown."),
    "KPI064": Code(E, "Jinja sandbox refusal", "A template tried an unsafe operation (attribute access to Python "
                   "internals, a huge repetition or power) or used one of Jinja's default globals (range, dict, lipsum, "
                   "cycler, joiner, namespace), which kpimetrics templates do not have.",
                   "Templates may only call source(), ref(), var() and env_var()."),
    "KPI065": Code(E, "Jinja error", "A template failed while rendering (an undefined name, a bad filter, ...).",
                   "Fix the template; only source(), ref(), var() and env_var() are available."),
    "KPI066": Code(E, "bad model file name", "A models/*.sql file name is not an identifier, so `ref()` cannot name it.",
                   "Rename the file to letters, digits and `_`, starting with a letter or `_`."),
    # --- the discipline warnings (errors under --strict) ---
    "KPI070": Code(W, "lagging KPI not driven", "A lagging KPI is not in the `drives:` of any leading KPI.",
                   "Add `drives: [this_kpi]` to the leading KPI that predicts it."),
    "KPI071": Code(W, "no actions", "A KPI does not say what to do when it goes off track.", "Add `actions:`."),
    "KPI072": Code(W, "no indicator", "A KPI does not say whether it is leading or lagging.",
                   "Add `indicator: leading` or `indicator: lagging`."),
    "KPI073": Code(W, "strategy without KPI", "No KPI measures whether a strategy works.",
                   "Link a KPI to it with `strategy:`, or remove the strategy."),
    "KPI074": Code(W, "strategy ended", "A strategy's `ends` date has passed.",
                   "Extend `ends`, or retire the strategy and its KPIs."),
    "KPI075": Code(W, "too many KPIs", "More than 7 KPIs are linked to one strategy; a few that tell whether it works "
                   "are easier to act on.", "Keep the few that matter; move the rest to `standards:`."),
    "KPI076": Code(W, "review overdue", "A KPI's `review_by` date has passed.",
                   "Review the definition and move `review_by` forward."),
    "KPI077": Code(W, "standard with strategy", "A standard is linked to a strategy; a measure tied to a strategy is a KPI.",
                   "Move it to `kpis:`, or drop `strategy:`."),
    # --- profiles and config ---
    "KPI080": Code(E, "profile not found", "No profiles.yml was found in the search path, or it lacks the project's "
                   "`profile`.", "Create profiles.yml (see `--profiles-dir`, $KPIMETRICS_PROFILES_DIR, the project "
                   "folder, ~/.kpimetrics/) with the profile named in kpimetrics.yml."),
    "KPI081": Code(E, "target not in profile", "The chosen target (`--target` or the profile's `target:`) is not one of "
                   "the profile's `outputs`.", "Pick one of the listed outputs, or add it."),
    "KPI082": Code(E, "invalid profile", "A profile's output has an unknown `type`, an unknown key, or a wrong value.",
                   "Fix the output as the message says; `type` is duckdb, postgres or spark."),
    "KPI083": Code(E, "unknown dialect", "`dialect:` in kpimetrics.yml is not a SQL dialect kpimetrics knows.",
                   "Use duckdb, postgres, spark, snowflake, bigquery, trino or databricks."),
    "KPI085": Code(E, "dbt connection method", "A profile output written for dbt-spark connects with `method: thrift`, "
                   "`http` or `odbc`; kpimetrics reaches Spark through a Spark session of its own (Spark Connect is "
                   "coming), not through a Thrift server or an ODBC driver.",
                   "Add an output with `method: session` (local mode) or kpimetrics' own keys (`type: spark`, "
                   "`master`, `warehouse_dir`, `conf`) and pick it with `--target`."),
    "KPI086": Code(E, "dbt filter value", "A profile value ends in dbt's `| as_number` or `| as_bool`, and the value "
                   "is not a number, or not true or false (the message never shows the value: it may be a secret).",
                   "Fix the value (often an environment variable), or drop the filter."),
    # --- found while running ---
    "KPI084": Code(E, "folder setting", "A folder under `paths:` in kpimetrics.yml (models, seeds, target) is not a "
                   "folder inside the project, or is one of the dbt project's folders (dbt_project.yml names it).",
                   "Name a folder relative to kpimetrics.yml that dbt does not use; beside dbt_project.yml the "
                   "defaults are kpi_models/, kpi_seeds/ and kpi_target/."),
    "KPI090": Code(W, "source stale", "On `run`, the newest time value a KPI reads is older than its source's "
                   "freshness `warn_after` (past `error_after` the KPI fails and keeps its previous rows).",
                   "Check the pipeline that loads the source, or relax `freshness:`."),
    "KPI091": Code(W, "no baseline periods", "On `run`, no period at a grain lies within a relative target's baseline "
                   "range, so the KPI has no target at that grain.",
                   "Move the baseline to a range with data, or give it as `{value: X, as_of: DATE}`."),
    "KPI092": Code(W, "run not recorded", "On `run`, the end of the run could not be written to `kpi_runs`; the next "
                   "run marks it as aborted.", "Check the warehouse connection and permissions on the output schema."),
    "KPI093": Code(W, "baseline not checked", "On `run`, after the values were published, the query that checks relative "
                   "targets' baseline ranges (`KPI091`) failed; the published run stands.",
                   "Check the warehouse connection; the next run checks the baselines again."),
    "KPI094": Code(E, "output schema of another project", "On `run`, the output schema records (in `kpi_meta`) that "
                   "another project's KPIs live there; this project's run would replace them. Nothing is written.",
                   "Set `output_schema` in kpimetrics.yml to a schema of this project's own."),
    "KPI095": Code(E, "seed into the output schema", "On `seed`, the schema seeds load into (`seed_schema`, or the "
                   "target's default schema) is the output schema, where a CSV could replace an output table.",
                   "Set `seed_schema` (or `output_schema`) in kpimetrics.yml so that the two differ."),
    "KPI096": Code(E, "target/ not writable", "On `compile` or `run`, target/ cannot be written (a file stands where "
                   "the folder should be, the disk is read-only, permissions). A run stops before the warehouse.",
                   "Make target/ a folder the user running kpimetrics can write, or remove what is in its way."),
    "KPI097": Code(W, "run_results.json not written", "On `run`, after the run published, target/run_results.json "
                   "could not be written; the run stands and `kpi_runs` records it.",
                   "Make target/ writable; the next run writes run_results.json again."),
    "KPI098": Code(W, "new DuckDB file", "On `run`, the profile's DuckDB `path` did not exist, so DuckDB created an "
                   "empty warehouse there: usually a mistyped path (every source table is then missing).",
                   "Check `path` in profiles.yml (a relative path is from the project folder), or `kpimetrics seed` "
                   "first for a new project."),
    # --- limits and unreadable files (SPEC §11) ---
    "KPI100": Code(E, "broken link", "A link under the project cannot be followed: what it points to does not exist, or "
                   "it loops back (to itself, or to a folder that holds it). Nothing unreadable is skipped, so the KPIs "
                   "it may hold are never taken for removed ones.", "Restore what the link points to, or remove the link."),
    "KPI101": Code(E, "line too long", "A line of a YAML file is longer than 10,000 characters.",
                   "Break the value over several lines (a block scalar `|` or `>`), or shorten it."),
    "KPI102": Code(E, "YAML aliases expand too far", "YAML aliases (`*name`) would expand a file to more than "
                   "1,000,000 values beyond those written: aliases of aliases multiply (\"billion laughs\").",
                   "Write the values out, or reuse them less; a `<<: *defaults` per entry is fine."),
    "KPI103": Code(E, "not a regular file", "A project file (a .yml or .yaml file, a model, kpimetrics.yml, "
                   "profiles.yml, a seed) is a named pipe, a socket or a device rather than a plain file.",
                   "Replace it with a plain file, or move it out of the project folder."),
    "KPI104": Code(E, "file too large", "A project file is larger than 16 MB.", "Split it into several files."),
    "KPI105": Code(E, "folder cannot be listed", "A folder under the project cannot be listed (permissions). Its files "
                   "may hold KPIs, so the project is not read without them.",
                   "Let the user that runs kpimetrics list and read it, or move it out of the project folder."),
    "KPI106": Code(E, "name too long", "A name (of a KPI, standard, strategy, priority, source, table or owner) is "
                   "longer than 128 characters; KPI names become file names under target/.", "Shorten it."),
    "KPI107": Code(E, "unknown time zone", "`calendar.timezone` in kpimetrics.yml is not an IANA time zone name.",
                   "Use a name such as `UTC`, `Europe/Paris` or `America/New_York` (see the suggestion)."),
    "KPI108": Code(E, "malformed seed", "On `seed`, a seeds/*.csv file cannot be loaded: it is not UTF-8, has no header "
                   "or an empty or repeated column name, or a row with more or fewer fields than the header.",
                   "Fix the file at the line shown; seeds are comma-separated UTF-8 with one header row."),
    # --- the grammar of project SQL (SPEC §11) ---
    "KPI110": Code(E, "statement in an expression", "A `measure`, ratio part, `filter`, `derived`, `time` or dimension "
                   "holds a `;` or a statement (SELECT, DELETE, INSERT, DROP, ...): each is exactly one SQL expression, "
                   "and nothing else reaches the warehouse.", "Keep one expression, without `;`; rows are chosen "
                   "with `filter`, and anything larger belongs in a model (models/*.sql)."),
    "KPI111": Code(E, "subquery in an expression", "A `measure`, ratio part, `filter`, `derived`, `time` or dimension "
                   "holds a subquery (`(SELECT ...)`, `IN (SELECT ...)`, `EXISTS (...)`, `VALUES`): an expression reads "
                   "only the columns of its KPI's model.", "Join what the subquery reads into a model (models/*.sql) and "
                   "point the KPI's `model:` at it."),
    "KPI112": Code(E, "second statement in a model", "A model (models/*.sql, after Jinja) holds more than one "
                   "statement; a model is one SELECT.", "Remove everything after the SELECT's end (its `;`)."),
    "KPI113": Code(E, "model changes data", "A model holds a statement that changes data or the warehouse (DELETE, "
                   "INSERT, UPDATE, MERGE, CREATE, DROP, COPY, ...), in a CTE or anywhere else, or a SELECT ... INTO "
                   "or FOR UPDATE/SHARE: a model only reads.",
                   "Keep the SELECT and its read-only CTEs; do changes to the data outside kpimetrics."),
    "KPI114": Code(E, "invalid lag", "A `derived` expression uses `lag()` on something other than a KPI name, with an "
                   "offset that is not a whole number from 1 to 10,000, or with a third argument.",
                   "Write `lag(kpi_name)` for the previous period, or `lag(kpi_name, n)` for n periods earlier."),
    "KPI115": Code(E, "lead in derived", "A `derived` expression uses `lead()`, which reads later periods: a KPI's "
                   "value can only depend on its own and earlier periods.", "Use `lag()` on the other KPI instead."),
    "KPI116": Code(E, "aggregate in derived", "A `derived` expression uses an aggregate (sum, avg, count, ...): it is "
                   "computed from one value of each input KPI per period and slice, so there is nothing to aggregate.",
                   "Aggregate in the input KPIs' `measure`, or combine their values with arithmetic."),
    "KPI117": Code(E, "derived names no KPI", "A `derived` expression reads no other KPI (a constant, say): a derived "
                   "KPI's periods and slices are those of its inputs, so without one there is nothing to compute.",
                   "Write an expression over other KPIs' names, e.g. `net_revenue / lag(net_revenue) - 1`; a constant "
                   "belongs in `target:`."),
    # --- reading the machine (SPEC §11; validate/access.py) ---
    "KPI120": Code(E, "reads files", "Project SQL calls a function that reads files of the machine running the "
                   "warehouse (read_text, read_csv, read_parquet, read_json, glob, ...) with a path outside the "
                   "profile's `allowed_paths`: what it read would be published to every reader of the output tables.",
                   "Load the data into a table (a source, or `kpimetrics seed`), or list the file or its folder under "
                   "`allowed_paths` in the DuckDB or Spark profile (relative to the project folder)."),
    "KPI121": Code(E, "table read from a file", "Project SQL (or a source's `identifier`) names a file as a table: "
                   "`FROM '/etc/passwd'` or `FROM 'x.csv'` on DuckDB, parquet.`/path` or csv.`...` on Spark, outside "
                   "the profile's `allowed_paths`.", "Read a table of the warehouse declared as a source, or list the "
                   "file's folder under `allowed_paths`."),
    "KPI122": Code(E, "reaches the network", "Project SQL reads a URL (http://, s3://, ...) or calls a function that "
                   "connects elsewhere (dblink, postgres_scan, mysql_scan, ...).",
                   "Load the data into the warehouse and declare it as a source (a URL prefix listed in "
                   "`allowed_paths` is allowed on DuckDB and Spark)."),
    "KPI123": Code(E, "reads the environment", "Project SQL reads the environment or the settings of the machine "
                   "running the warehouse: getenv, current_setting, set_config, duckdb_settings, duckdb_secrets, "
                   "pg_settings, or a `${...}` that Spark replaces with an environment variable (`${env:NAME}`) or a "
                   "setting before running the SQL.", "Pass values in with `var()` (or `env_var()`, whose values are "
                   "masked in every message) in a model; write a literal `$` and `{` apart, e.g. '$' || '{'."),
    "KPI124": Code(E, "reads server files", "Project SQL calls a PostgreSQL function or view that reads, lists or "
                   "writes the database server's files (pg_read_file, pg_read_binary_file, pg_ls_dir, pg_stat_file, "
                   "lo_import, lo_export, pg_hba_file_rules, ...). A run's role should not hold the privileges these "
                   "need (see the README), and kpimetrics refuses them whatever the role.",
                   "Load the data into a table and declare it as a source."),
    "KPI125": Code(E, "runs code or SQL text", "Project SQL runs what kpimetrics cannot check: SQL held in a string "
                   "(DuckDB's query() and query_table(), PostgreSQL's query_to_xml and friends), Java methods (Spark's "
                   "reflect and java_method) or a script (Spark's TRANSFORM ... USING).",
                   "Write the SQL itself in a model (models/*.sql)."),
    "KPI126": Code(E, "path not a literal", "Project SQL calls a function that reads files (read_csv, read_text, "
                   "...) with a path computed by SQL (a column, a concatenation): it cannot be checked against "
                   "`allowed_paths` before the run.", "Write the path as a string literal (or a list of them), under "
                   "a folder listed in `allowed_paths`."),
    # --- a dbt project and its artifacts (SPEC §8) ---
    "KPI140": Code(E, "dbt project", "`dbt.project_dir` names a folder without dbt_project.yml, or dbt_project.yml "
                   "cannot be read as kpimetrics needs it (a path setting that is not a folder name, or written "
                   "with Jinja).", "Name the folder that holds dbt_project.yml, relative to kpimetrics.yml; write "
                   "dbt_project.yml's paths as plain folder names (DBT_TARGET_PATH sets the target path)."),
    "KPI141": Code(E, "no dbt manifest", "A `ref()` or `source()` is not the kpimetrics project's own, so it names a "
                   "dbt node, and dbt has not written target/manifest.json in the dbt project.",
                   "Run `dbt parse` (or `dbt compile`, `run`, `build`) in the dbt project before kpimetrics; in CI, "
                   "run it in the same job."),
    "KPI142": Code(E, "dbt artifact unusable", "dbt's manifest.json or catalog.json cannot be used: its schema "
                   "version is not v12 (dbt 1.8 to 1.11), or it is not UTF-8 JSON of dbt's shape, or it is too large. "
                   "The message names the version found and the one read.",
                   "Run `dbt parse` with dbt 1.8 to 1.11; artifacts are written by dbt, never by hand."),
    "KPI143": Code(W, "manifest of another adapter", "On `run` and `debug`, dbt's manifest was written for another "
                   "adapter than the profile's warehouse type, so the relation names it records may not exist here.",
                   "Run `dbt parse --target T` with the dbt target that points at the same warehouse as kpimetrics' "
                   "profile."),
    "KPI144": Code(E, "ephemeral model not compiled", "A KPI or model reads an ephemeral dbt model, which has no "
                   "table of its own, and the manifest has no compiled SQL for it (after `dbt parse` alone).",
                   "Run `dbt compile` (or `run`, `build`), which writes the compiled SQL into the manifest."),
    "KPI145": Code(E, "dbt relation not built", "On `run`, a relation the manifest records for a dbt model, seed, "
                   "snapshot or source cannot be read in the warehouse: dbt has not built it on this target. The KPIs "
                   "that read it fail and keep their rows; the others publish.",
                   "Run `dbt build -s +NAME` (the message names it; the `+` builds what it reads too) on the target "
                   "kpimetrics' profile points at; for a dbt source, which dbt does not build, load the table or "
                   "correct the source's schema or identifier."),
    # --- KPIs over dbt's semantic layer (SPEC §9: `metric:`, kpimetrics/dbt/semantic.py) ---
    "KPI170": Code(E, "no semantic manifest", "A KPI names a `metric:`, and dbt has not written "
                   "target/semantic_manifest.json in the dbt project (or there is no dbt project).",
                   "Run `dbt parse` (or compile, run, build) in the dbt project, with its semantic models and metrics, "
                   "before kpimetrics; in CI, in the same job."),
    "KPI171": Code(E, "semantic manifest unusable", "dbt's semantic_manifest.json cannot be used: it is not UTF-8 "
                   "JSON of MetricFlow's shape (a value of the wrong type, a missing name), or it is too large.",
                   "Run `dbt parse` again; the artifact is written by dbt, never by hand."),
    "KPI172": Code(E, "unknown metric", "`metric:` names no metric of dbt's semantic layer (or a metric names an input "
                   "metric or a measure that the semantic manifest lacks).",
                   "Fix the name (see the suggestion), or define the metric in the dbt project and run `dbt parse`."),
    "KPI173": Code(E, "metric feature not supported", "The metric, or a metric or measure it is built from, uses a "
                   "feature of MetricFlow that kpimetrics does not compute (conversion metrics, non_additive_dimension, "
                   "offset_to_grain over several semantic models, a window or offset that is no whole number of "
                   "the KPI's periods, ...). The message names the metric, its file and line in the dbt project, "
                   "and the feature.", "Compute it another way (a measure or derived KPI over the dbt model), or "
                   "change the metric; README, KPIs over dbt's semantic layer, lists what is supported."),
    "KPI174": Code(E, "metric KPI with its own computation keys", "A KPI with `metric:` also sets `model`, `time`, "
                   "`filter` or `window`: the metric brings its semantic model, time dimension, filters and window.",
                   "Remove the key, or change the metric in dbt (a filter or a cumulative window there)."),
    "KPI175": Code(E, "unknown semantic dimension", "A metric KPI's `dimensions` item (or a metric's filter) names a "
                   "dimension or entity that the metric's semantic model lacks, or that no join by its entities reaches. "
                   "Dimensions are written as MetricFlow names them: `entity__dimension` (through several entities "
                   "`a__b__dimension`).", "Fix the name (see the suggestion), e.g. "
                   "`order__channel`."),
    "KPI176": Code(E, "metric filter not understood", "A metric's or measure's `filter` is not SQL with "
                   "{{ Dimension('entity__dim') }}, {{ TimeDimension('entity__dim', 'grain') }} or "
                   "{{ Entity('entity') }} in it, or its SQL (or a measure's or dimension's `expr`) does not parse "
                   "or is not one expression of the allowed grammar.", "Fix the filter or expression in the dbt "
                   "project's YAML at the line shown and run `dbt parse`."),
    # --- Spark profiles: Spark Connect and masters (SPEC §13, config.SparkOutput) ---
    "KPI180": Code(E, "Spark output with both remote and master", "A Spark output names a Spark Connect server "
                   "(`remote: sc://...`) and a `master`: one is a server that runs Spark, the other a driver "
                   "kpimetrics starts in its own process.", "Keep `remote` to run through Spark Connect, or `master` "
                   "(local[N], spark://, yarn, k8s://) to start a driver; make two outputs to have both."),
    "KPI181": Code(E, "Spark Connect URL given as a master", "`master:` is an sc:// URL: a Spark Connect server is "
                   "reached with `remote:`, not started as a master.", "Write `remote: \"sc://host:port\"` instead of "
                   "`master:`."),
    "KPI182": Code(E, "not a Spark Connect URL", "`remote:` is not sc://host[:port][/;name=value;...]: another "
                   "scheme, no host, a port past 65535, a path, or parameters not after a slash or not name=value.",
                   "Write sc://host:15002, and parameters as sc://host:15002/;use_ssl=true;token={{ env_var('TOKEN') "
                   "}} (the token through env_var(), never in plain)."),
    "KPI183": Code(E, "warehouse_dir on a Spark Connect output", "The output names a Spark Connect server and a "
                   "`warehouse_dir`: the server's warehouse and metastore are set where the server starts, and a "
                   "client cannot change them.", "Remove `warehouse_dir`; start the server with "
                   "spark.sql.warehouse.dir and its metastore (README, Spark Connect)."),
    # --- Spark: runs on a shared catalog (adapters/spark_lease.py) ---
    "KPI184": Code(E, "output schema in use by another run", "Another kpimetrics run holds the lease of the output "
                   "schema in the shared Spark catalog (a view kpi_lock__<n> there, with its process, host and "
                   "expiry): one run at a time writes an output schema. Nothing was written.",
                   "Wait for that run to finish and retry. A killed run's lease is free at once on its own host, "
                   "elsewhere when it expires (10 minutes after its last statement)."),
    "KPI185": Code(E, "run lost its lease", "The run stalled longer than its lease on the output schema (10 "
                   "minutes without a statement) and another run took the schema over: this run stopped before "
                   "moving the version pointer, so the other run's tables stand.",
                   "Run again once the other run is done; find what stalled the run (an executor lost, a "
                   "statement waiting on the cluster's resources)."),
    "KPI189": Code(E, "seed over a dbt relation", "On `seed`, a seed file's table in the schema seeds load into "
                   "is a relation of the dbt project (a model, seed or snapshot dbt builds, or a source it reads, "
                   "as its manifest records them): loading it would replace dbt's table. No seed is loaded.",
                   "Set `seed_schema` in kpimetrics.yml to a schema of kpimetrics' own, or rename the seed file."),
    # --- targets per slice and from tables (SPEC §10) ---
    "KPI150": Code(E, "unknown dimension in targets", "`slice_targets:` (or a table target's `dimensions:`) names a "
                   "dimension the KPI is not sliced by (a derived KPI is sliced by the dimensions all its inputs have).",
                   "Fix the name (see the suggestion), or add the dimension to the KPI's `dimensions:`."),
    "KPI151": Code(E, "unknown target table", "A table target's `table:` is not `source('s', 't')` or `ref('m')`, or "
                   "names no declared source table or model. It is resolved as a KPI's `model:` is.",
                   "Declare the table under `sources:` (with its `columns:`) or write a model, and refer to it as "
                   "`source('finance', 'budget')` (quoted in flow style)."),
    "KPI152": Code(E, "not a column of the target table", "A table target's `period`, `value` or dimension column "
                   "is not a column name, or it (or a column its `filter` reads) is not among the declared columns "
                   "of its table.", "Fix the name (see the suggestion); to compute a column, select it in a model "
                   "and point `table:` at the model."),
    "KPI153": Code(E, "table target out of place", "A table target is written per grain (`target: {month: {table: "
                   "...}}`) or per slice (in `slice_targets:`); it belongs directly under `target:`.",
                   "Write `target: {table: ..., grain: month, dimensions: {store: store_name}}`: `grain` names the "
                   "grain of its periods, `dimensions` the slices its rows give."),
    "KPI154": Code(E, "target table grain not computed", "A table target's `grain:` is not a grain the KPI is "
                   "computed at, so its rows would never be a target.",
                   "Set `grain:` to one of the KPI's grains (the default is its first), or add the grain to `grain:`."),
    # --- what a reader is shown (SPEC §10, validate/reading.py) ---
    "KPI155": Code(E, "invalid currency", "A `currency` (in kpimetrics.yml, or on a KPI) is not an ISO 4217 code: "
                   "three upper-case letters, shown after every value of a `unit: currency` KPI.",
                   "Write the code, such as `currency: EUR`, `USD` or `GBP`."),
    "KPI156": Code(W, "currency on a KPI that is not money", "A KPI names a `currency` but its unit is not "
                   "`currency`: only currency values carry a currency, so it is never shown.",
                   "Set `unit: currency` if its values are amounts of money; else remove `currency`."),
    "KPI157": Code(W, "no target at the headline grain", "A KPI's first grain, the headline that `status` and the "
                   "scorecard show, has no target while another of its grains has one (`grain: [day, month]` with "
                   "`target: {month: ...}`), so it reads 'no target' where a target was meant. The headline is the "
                   "total's row: targets `slice_targets` gives slices at that grain judge those slices only.",
                   "List the grain that has the target first in `grain:`, or add a target for the first grain."),
    "KPI146": Code(W, "column not documented", "A KPI over a dbt model reads a column that the model's schema file "
                   "does not document, and there is no catalog.json to say whether the model has it. Schema files "
                   "often document a few columns, so this is a warning; a column that does not exist fails at run.",
                   "Document the column in the model's schema file, or run `dbt docs generate` (catalog.json lists "
                   "every column, and a column missing from it is an error, KPI033)."),
    # --- notifications (SPEC §10: `notify:` in kpimetrics.yml, `kpimetrics notify`, kpimetrics/notify/) ---
    "KPI160": Code(E, "unknown notify channel", "A rule under `notify.rules` names a channel that `notify.channels` "
                   "does not declare.", "Fix the name (see the suggestion), or declare the channel under "
                   "`notify.channels`."),
    "KPI161": Code(E, "notify rule without recipients", "A rule sends email but has no `to:`, so nobody would get it; "
                   "or a `to` entry is neither `owner` nor an email address.",
                   "Add `to: owner` (each KPI's owner: an email, or the owners registry's email) or email addresses."),
    "KPI162": Code(E, "not an http(s) URL", "A webhook channel's `url` or `notify.scorecard_url` is not an http:// or "
                   "https:// URL with a host (checked as written, and again once its env_var() is rendered; the "
                   "message never quotes a rendered url, which holds the webhook's token).",
                   "Give the webhook's https:// address (http:// for a catcher on this machine), through env_var()."),
    "KPI163": Code(E, "unknown webhook format", "A webhook channel's `format` is not one of slack, teams or json.",
                   "Set `format: slack` (Slack incoming webhooks), `teams` (an Adaptive Card for a Teams workflow "
                   "webhook) or `json` (a plain document for any other receiver)."),
    "KPI164": Code(E, "invalid notify selector", "A rule's `select:` is not a selector as `kpimetrics run -s` takes "
                   "it, or picks no KPI or standard (`state:` selectors compare with a build and have no place here).",
                   "Fix the selector: a name, tag:X, owner:X, strategy:X, priority:X, +name, several separated by "
                   "spaces."),
    "KPI165": Code(E, "duplicate notify channel", "Two channels under `notify.channels` share a name.",
                   "Give each channel its own name."),
    "KPI166": Code(W, "channel secret written in plain", "A webhook `url` (which carries its token) or an SMTP "
                   "`password` is written in kpimetrics.yml instead of read with env_var(): it is committed with the "
                   "project and cannot be masked. A url on this machine (localhost, 127.0.0.1) holds no secret.",
                   "Write it as \"{{ env_var('NAME') }}\" and set the variable where kpimetrics runs."),
    "KPI167": Code(W, "owner without email", "A rule emails each KPI's `owner`, and an owner is neither an email "
                   "address nor a name with an `email` in the owners registry, so its notices have no address.",
                   "Write the owner as an email, or give the owner an `email:` under `owners:`."),
    "KPI168": Code(E, "notice not sent", "On `notify` (and `run --notify`), a channel could not deliver a message: "
                   "the webhook answered with an error or not at all, or the SMTP server refused. The message names "
                   "the channel and why; the notice is logged as failed in kpi_notifications and sent again on the "
                   "next call. What the run published is unaffected.",
                   "Fix the channel (its url, host, credentials, or the receiving service) and run `kpimetrics notify`."),
    "KPI169": Code(E, "notifications not configured", "`kpimetrics notify` (or `run --notify`) in a project whose "
                   "kpimetrics.yml has no `notify:` block.", "Add `notify:` with channels and rules (README, "
                   "Notifications), or leave out `--notify`."),
    # --- a `diff --state` folder (untrusted: another branch's target/) ---
    "KPI130": Code(E, "no state manifest", "`diff --state PATH`: PATH holds no manifest.json, or it cannot be read.",
                   "Pass the target/ folder of an earlier `kpimetrics compile` (in CI, the main branch's), or its "
                   "manifest.json."),
    "KPI131": Code(E, "state manifest not JSON", "`diff --state`: the manifest is not UTF-8 JSON (the line and column "
                   "where it breaks are shown), is nested too deeply, holds a number too long to read, or is larger "
                   "than a state may be (512 MB).", "Compile the earlier version again and pass its whole target/ "
                   "folder; a manifest is written by kpimetrics, never by hand."),
    "KPI132": Code(E, "state manifest of the wrong shape", "`diff --state`: the manifest is JSON but not of the shape "
                   "kpimetrics writes: the key named is missing, of the wrong type, a KPI name that is not one, an "
                   "unknown dialect, or a compiled-SQL path that leaves the state folder.",
                   "Compile the earlier version again and pass its whole target/ folder."),
    "KPI133": Code(E, "state SQL missing", "`diff --state`: a changed KPI's compiled SQL is not in the state folder, "
                   "cannot be read, is not UTF-8, is a link out of the folder, or is larger than 16 MB.",
                   "Keep the whole target/ folder of the earlier compile, not only manifest.json."),
    "KPI134": Code(E, "state SQL does not parse", "`diff --state`: a changed KPI's compiled SQL does not parse as SQL "
                   "of its dialect, or holds no statement. Nothing of the state was run.",
                   "Compile the earlier version again; compiled SQL is written by kpimetrics, never by hand."),
    "KPI135": Code(E, "state SQL is not one SELECT", "`diff --state`: a changed KPI's compiled SQL is more than one "
                   "statement, or a statement other than a SELECT, or has a data-modifying CTE (`WITH d AS (DELETE "
                   "... RETURNING *)`), SELECT INTO, a locking clause or a command. kpimetrics never writes such SQL; "
                   "nothing of the state was run.", "Take the state from a trusted build of the earlier version "
                   "(in CI, the main branch's own artifact)."),
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(codes: dict[str, Code] | None = None) -> str:
    """The codes as a Markdown table: code, level, title, meaning, fix."""
    rows = ["| code | level | title | meaning | fix |", "| --- | --- | --- | --- | --- |"]
    for name, code in sorted((codes or CODES).items()):
        rows.append(f"| {name} | {code.level.value} | {_cell(code.title)} | {_cell(code.meaning)} | {_cell(code.fix)} |")
    return "\n".join(rows) + "\n"


def errors_doc() -> str:
    """The whole of docs/errors.md."""
    return (
        "# Error and warning codes\n\n"
        "<!-- generated by scripts/gen_error_docs.py from kpimetrics/codes.py; do not edit by hand -->\n\n"
        "`kpimetrics validate` and `compile` print each problem as `path:line:col: error[CODE]: message` "
        "(or `warning[CODE]`). Codes are stable. Warnings become errors under `--strict`.\n\n"
        + markdown_table()
    )
