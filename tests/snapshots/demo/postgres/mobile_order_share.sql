-- kpimetrics: kpi mobile_order_share (ratio), grains: month
-- definition_hash: e75b6143b812cf0c
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "mobile_order_share__rows" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(CAST(ordered_at AS DATE) AS TIMESTAMP)) AS DATE) AS "__p",
    COALESCE(CAST(region AS VARCHAR), '(null)') AS "__d0",
    channel
  FROM "orders"
  WHERE
    NOT ordered_at IS NULL
), "mobile_order_share__agg0" AS (
  SELECT
    "__p" AS "__p",
    "__d0",
    COUNT(*) FILTER(WHERE
      channel = 'mobile') AS "__m0",
    COUNT(*) AS "__m1"
  FROM "mobile_order_share__rows"
  GROUP BY
    GROUPING SETS (
      ("__p"),
      ("__p", "__d0")
    )
), "mobile_order_share__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "mobile_order_share__agg0"
), "mobile_order_share__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "mobile_order_share__bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
)
SELECT
  "name",
  "grain",
  "period_start",
  "period_end",
  "dimension",
  "dimension_value",
  "value",
  "numerator",
  "denominator"
FROM (
  SELECT
    'mobile_order_share' AS "name",
    'month' AS "grain",
    "__s"."period_start" AS "period_start",
    CAST("__s"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    '' AS "dimension",
    CAST(NULL AS VARCHAR) AS "dimension_value",
    CAST(CAST("__a"."__m0" AS DOUBLE PRECISION) AS DOUBLE PRECISION) / NULLIF(CAST(CAST("__a"."__m1" AS DOUBLE PRECISION) AS DOUBLE PRECISION), 0) AS "value",
    CAST("__a"."__m0" AS DOUBLE PRECISION) AS "numerator",
    CAST("__a"."__m1" AS DOUBLE PRECISION) AS "denominator"
  FROM "mobile_order_share__spine" AS "__s"
  LEFT JOIN "mobile_order_share__agg0" AS "__a"
    ON "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'mobile_order_share' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    'region' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CAST(CAST("__a"."__m0" AS DOUBLE PRECISION) AS DOUBLE PRECISION) / NULLIF(CAST(CAST("__a"."__m1" AS DOUBLE PRECISION) AS DOUBLE PRECISION), 0) AS "value",
    CAST("__a"."__m0" AS DOUBLE PRECISION) AS "numerator",
    CAST("__a"."__m1" AS DOUBLE PRECISION) AS "denominator"
  FROM "mobile_order_share__agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL
) AS "__u";
