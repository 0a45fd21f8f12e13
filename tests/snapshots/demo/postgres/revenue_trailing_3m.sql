-- kpimetrics: kpi revenue_trailing_3m (measure), grains: month
-- definition_hash: 1af5c1468a561588
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "revenue_trailing_3m__rows" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(CAST(ordered_at AS DATE) AS TIMESTAMP)) AS DATE) AS "__p",
    amount,
    discount,
    status
  FROM "orders"
  WHERE
    NOT ordered_at IS NULL
), "revenue_trailing_3m__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "revenue_trailing_3m__rows"
), "revenue_trailing_3m__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "revenue_trailing_3m__bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
), "revenue_trailing_3m__map_periods_3" AS (
  SELECT
    "__a"."period_start" AS "__src",
    "__b"."period_start" AS "__dst"
  FROM "revenue_trailing_3m__spine" AS "__a"
  JOIN "revenue_trailing_3m__spine" AS "__b"
    ON "__b"."__i" BETWEEN "__a"."__i" AND "__a"."__i" + 2
), "revenue_trailing_3m__agg0_pp" AS (
  SELECT
    "__p" AS "__p",
    COUNT(*) FILTER(WHERE
      status = 'completed') AS "__q0",
    SUM(amount - discount) FILTER(WHERE
      status = 'completed') AS "__q1"
  FROM "revenue_trailing_3m__rows"
  GROUP BY
    "__p"
), "revenue_trailing_3m__agg0" AS (
  SELECT
    "__dst" AS "__p",
    SUM("__q0") AS "__n0",
    SUM("__q1") AS "__m1"
  FROM "revenue_trailing_3m__agg0_pp"
  JOIN "revenue_trailing_3m__map_periods_3"
    ON "revenue_trailing_3m__agg0_pp"."__p" = "__src"
  GROUP BY
    "__dst"
)
SELECT
  'revenue_trailing_3m' AS "name",
  'month' AS "grain",
  "__s"."period_start" AS "period_start",
  CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
  '' AS "dimension",
  CAST(NULL AS VARCHAR) AS "dimension_value",
  CASE
    WHEN COALESCE("__a"."__n0", 0) > 0
    THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
    ELSE CAST(NULL AS DOUBLE PRECISION)
  END AS "value",
  CAST(NULL AS DOUBLE PRECISION) AS "numerator",
  CAST(NULL AS DOUBLE PRECISION) AS "denominator"
FROM "revenue_trailing_3m__spine" AS "__s"
LEFT JOIN "revenue_trailing_3m__agg0" AS "__a"
  ON "__a"."__p" = "__s"."period_start";
