-- kpimetrics: kpi revenue_yoy_growth (derived), grains: month
-- definition_hash: 4eac7edf5647b910
-- Returns the rows `kpimetrics run` writes to kpi_values for this KPI.
-- TIMESTAMPTZ values are cut into periods in time zone UTC: run with the session time zone set to it.
WITH "revenue_yoy_growth__rows" AS (
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
), "revenue_yoy_growth__agg0" AS (
  SELECT
    "__p" AS "__p",
    "__d0",
    "__d1",
    COUNT(*) FILTER(WHERE
      status = 'completed') AS "__n0",
    SUM(amount - discount) FILTER(WHERE
      status = 'completed') AS "__m1"
  FROM "revenue_yoy_growth__rows"
  GROUP BY
    GROUPING SETS (
      ("__p"),
      ("__p", "__d0"),
      ("__p", "__d1")
    )
), "revenue_yoy_growth__bounds" AS (
  SELECT
    MIN("__p") AS "lo",
    MAX("__p") AS "hi"
  FROM "revenue_yoy_growth__agg0"
), "revenue_yoy_growth__spine" AS (
  SELECT
    CAST("__s" AS DATE) AS "period_start",
    ROW_NUMBER() OVER (ORDER BY CAST("__s" AS DATE)) AS "__i"
  FROM "revenue_yoy_growth__bounds"
  CROSS JOIN GENERATE_SERIES(CAST("lo" AS TIMESTAMP), CAST("hi" AS TIMESTAMP), INTERVAL '1 MONTH') AS "__series"("__s")
), "revenue_yoy_growth__inputs" AS (
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
    FROM "revenue_yoy_growth__spine" AS "__s"
    LEFT JOIN "revenue_yoy_growth__agg0" AS "__a"
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
    FROM "revenue_yoy_growth__agg0" AS "__a"
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
    FROM "revenue_yoy_growth__agg0" AS "__a"
    WHERE
      NOT "__a"."__d1" IS NULL
  ) AS "__u"
)
SELECT
  'revenue_yoy_growth' AS "name",
  'month' AS "grain",
  "__k"."period_start" AS "period_start",
  CAST("__k"."period_start" + INTERVAL '1 MONTH' AS DATE) AS "period_end",
  "__k"."dimension" AS "dimension",
  "__k"."dimension_value" AS "dimension_value",
  CAST(CAST("__i0"."value" AS DOUBLE PRECISION) / NULLIF(CAST("__i1"."value" AS DOUBLE PRECISION), 0) - 1 AS DOUBLE PRECISION) AS "value",
  CAST(NULL AS DOUBLE PRECISION) AS "numerator",
  CAST(NULL AS DOUBLE PRECISION) AS "denominator"
FROM (
  SELECT DISTINCT
    "period_start",
    "dimension",
    "dimension_value"
  FROM "revenue_yoy_growth__inputs"
  WHERE
    "grain" = 'month'
    AND "name" IN ('net_revenue')
    AND "dimension" IN ('', 'region', 'channel')
) AS "__k"
LEFT JOIN "revenue_yoy_growth__inputs" AS "__i0"
  ON "__i0"."name" = 'net_revenue'
  AND "__i0"."grain" = 'month'
  AND "__i0"."period_start" = "__k"."period_start"
  AND "__i0"."dimension" = "__k"."dimension"
  AND COALESCE("__i0"."dimension_value", '') = COALESCE("__k"."dimension_value", '')
  AND (
    "__i0"."dimension_value" IS NULL
  ) = (
    "__k"."dimension_value" IS NULL
  )
LEFT JOIN "revenue_yoy_growth__inputs" AS "__i1"
  ON "__i1"."name" = 'net_revenue'
  AND "__i1"."grain" = 'month'
  AND "__i1"."period_start" = CAST("__k"."period_start" + INTERVAL '-12 MONTH' AS DATE)
  AND "__i1"."dimension" = "__k"."dimension"
  AND COALESCE("__i1"."dimension_value", '') = COALESCE("__k"."dimension_value", '')
  AND (
    "__i1"."dimension_value" IS NULL
  ) = (
    "__k"."dimension_value" IS NULL
  );
