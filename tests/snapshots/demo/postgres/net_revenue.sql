-- kpimetrics: kpi net_revenue (measure), grains: month
-- definition_hash: 40d6c340856e7f12
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "net_revenue__rows" AS (
  SELECT
    CAST(DATE_TRUNC('MONTH', CAST(CAST(ordered_at AS DATE) AS TIMESTAMP)) AS DATE) AS "__p",
    COALESCE(CAST(region AS VARCHAR), '(null)') AS "__d0",
    COALESCE(CAST(channel AS VARCHAR), '(null)') AS "__d1",
    amount,
    discount,
    status
  FROM "orders"
  WHERE
    NOT ordered_at IS NULL
), "net_revenue__agg0" AS (
  SELECT
    "__p" AS "__p",
    "__d0",
    "__d1",
    COUNT(*) FILTER(WHERE
      status = 'completed') AS "__n0",
    SUM(amount - discount) FILTER(WHERE
      status = 'completed') AS "__m1"
  FROM "net_revenue__rows"
  GROUP BY
    GROUPING SETS (
      ("__p"),
      ("__p", "__d0"),
      ("__p", "__d1")
    )
), "net_revenue__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "net_revenue__agg0"
), "net_revenue__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "net_revenue__bounds"
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
    'net_revenue' AS "name",
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
  FROM "net_revenue__spine" AS "__s"
  LEFT JOIN "net_revenue__agg0" AS "__a"
    ON (
      "__a"."__p" = "__s"."period_start" AND "__a"."__d0" IS NULL
    )
    AND "__a"."__d1" IS NULL
  UNION ALL
  SELECT
    'net_revenue' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    'region' AS "dimension",
    "__a"."__d0" AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "net_revenue__agg0" AS "__a"
  WHERE
    NOT "__a"."__d0" IS NULL
  UNION ALL
  SELECT
    'net_revenue' AS "name",
    'month' AS "grain",
    "__a"."__p" AS "period_start",
    CAST("__a"."__p" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
    'channel' AS "dimension",
    "__a"."__d1" AS "dimension_value",
    CASE
      WHEN COALESCE("__a"."__n0", 0) > 0
      THEN CAST("__a"."__m1" AS DOUBLE PRECISION)
      ELSE CAST(NULL AS DOUBLE PRECISION)
    END AS "value",
    CAST(NULL AS DOUBLE PRECISION) AS "numerator",
    CAST(NULL AS DOUBLE PRECISION) AS "denominator"
  FROM "net_revenue__agg0" AS "__a"
  WHERE
    NOT "__a"."__d1" IS NULL
) AS "__u";
